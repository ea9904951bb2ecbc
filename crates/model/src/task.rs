//! The ECS task lifecycle: the ordered statuses a task passes through, the desired statuses a
//! user or scheduler sets, and the rule that observed status only ever moves forward.
//!
//! **Architecture Invariant:** a task's last status is monotone. Agents report what they observe,
//! reports can arrive late, twice or out of order, and none of that may move a task backwards —
//! so every report goes through [`advance`].

use std::fmt;

/// An ECS task's `lastStatus`, in lifecycle order (the derive of `Ord` follows declaration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Provisioning,
        TaskStatus::Pending,
        TaskStatus::Activating,
        TaskStatus::Running,
        TaskStatus::Deactivating,
        TaskStatus::Stopping,
        TaskStatus::Deprovisioning,
        TaskStatus::Stopped,
    ];

    /// ECS's wire name (`RUNNING`…).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    /// The status named `s` (exactly as ECS spells it), or `None`.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the task still holds resources on its instance (everything before STOPPED).
    pub fn is_stopped(self) -> bool {
        self == TaskStatus::Stopped
    }

    /// Counted in `pendingTasksCount` (before RUNNING) rather than `runningTasksCount`.
    pub fn is_pending(self) -> bool {
        self < TaskStatus::Running
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status a task should reach: RUNNING until someone (StopTask, a scheduler, the liveness
/// sweep) asks it to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesiredStatus {
    Running,
    Stopped,
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Running => "RUNNING",
            DesiredStatus::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<DesiredStatus> {
        match s {
            "RUNNING" => Some(DesiredStatus::Running),
            "STOPPED" => Some(DesiredStatus::Stopped),
            _ => None,
        }
    }
}

impl fmt::Display for DesiredStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status after an observation of `reported`: `Some(reported)` when it is later in the
/// lifecycle than `current`, `None` when the report changes nothing (same or earlier status).
pub fn advance(current: TaskStatus, reported: TaskStatus) -> Option<TaskStatus> {
    (reported > current).then_some(reported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip_in_order() {
        for w in TaskStatus::ALL.windows(2) {
            assert!(w[0] < w[1]);
        }
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskStatus::parse("running"), None);
        assert_eq!(TaskStatus::parse(""), None);
        assert_eq!(
            DesiredStatus::parse("STOPPED"),
            Some(DesiredStatus::Stopped)
        );
        assert_eq!(DesiredStatus::parse("PENDING"), None);
    }

    #[test]
    fn only_forward() {
        use TaskStatus::*;
        assert_eq!(advance(Pending, Running), Some(Running));
        assert_eq!(advance(Running, Pending), None);
        assert_eq!(advance(Running, Running), None);
        assert_eq!(advance(Provisioning, Stopped), Some(Stopped));
        assert_eq!(advance(Stopped, Running), None);
    }

    proptest! {
        /// Whatever order reports arrive in, the status never goes back, and it ends at the
        /// latest status reported (or where it started).
        #[test]
        fn any_report_sequence_is_monotone(reports in proptest::collection::vec(0usize..8, 0..40)) {
            let mut status = TaskStatus::Provisioning;
            for r in &reports {
                let next = advance(status, TaskStatus::ALL[*r]).unwrap_or(status);
                prop_assert!(next >= status);
                status = next;
            }
            let max = reports.iter().map(|r| TaskStatus::ALL[*r]).max().unwrap_or(TaskStatus::Provisioning);
            prop_assert_eq!(status, max.max(TaskStatus::Provisioning));
        }
    }
}
