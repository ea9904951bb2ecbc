//! ECS's replica scheduler as pure arithmetic: from a service's limits and what its tasks are
//! doing now, how many tasks to start for the primary deployment and which tasks to stop.
//! The controller in `berth-ecs` maps store records to [`TaskView`]s, asks [`step`], and carries
//! the answer out; the deterministic simulation asks the same function.
//!
//! The rules, as ECS documents them for the rolling update (`ECS` deployment controller):
//! - `maximumPercent` caps the tasks in RUNNING, PENDING *or STOPPING* state at
//!   `floor(desired × max / 100)`: a task being stopped still counts until it is STOPPED.
//! - `minimumHealthyPercent` floors the *healthy* tasks at `ceil(desired × min / 100)` while old
//!   tasks are replaced; a task without a health check is healthy once RUNNING.
//! - Unhealthy tasks (past the grace period) and old tasks that are not healthy may always be
//!   stopped: stopping them cannot lower the healthy count.
//!
//! **Architecture Invariant:** pure; no clock, no I/O. The same views give the same step.

/// Where one of the service's tasks stands, as the scheduler needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    /// Whether the task belongs to the primary (newest) deployment.
    pub primary: bool,
    pub phase: Phase,
    /// RUNNING and passing its health checks (or without any).
    pub healthy: bool,
    /// Failed its health checks after the grace period: to be replaced.
    pub unhealthy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Placed, not yet RUNNING; desired RUNNING.
    Pending,
    /// RUNNING, desired RUNNING.
    Running,
    /// Asked to stop (desired STOPPED), not yet STOPPED: still counts against `maximumPercent`.
    Stopping,
}

/// A service's counts and percentages, as `deploymentConfiguration` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub desired: u32,
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
}

impl Limits {
    /// The most tasks that may be RUNNING, PENDING or STOPPING at once (rounded down), never
    /// less than one while any task is wanted, so a service can always make progress.
    pub fn max_tasks(&self) -> u32 {
        let cap = (u64::from(self.desired) * u64::from(self.maximum_percent) / 100) as u32;
        if self.desired > 0 { cap.max(1) } else { cap }
    }

    /// The fewest healthy tasks while old ones are replaced (rounded up).
    pub fn min_healthy(&self) -> u32 {
        (u64::from(self.desired) * u64::from(self.minimum_healthy_percent)).div_ceil(100) as u32
    }
}

/// Why the scheduler stops a task; each becomes ECS's wording in the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhy {
    /// The task belongs to an older deployment and the new one replaces it.
    Replaced,
    /// The primary deployment has more tasks than desired.
    ScaleIn,
    /// The task failed its health checks.
    Unhealthy,
}

/// What to do now: start `start` tasks of the primary deployment, stop `stop`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub start: u32,
    pub stop: Vec<(String, StopWhy)>,
}

/// One reconciliation step of a REPLICA service. Level-triggered: it reads only the current
/// views, so calling it again after a partial application (a crash, a conflict) is safe.
pub fn step(limits: Limits, tasks: &[TaskView]) -> Step {
    let mut out = Step::default();
    // Views are handled by index: unhealthy ones are stopped first, then old-deployment ones,
    // then primary ones, three disjoint sets, so no task is stopped twice and large services
    // stay linear.
    let stop = |out: &mut Step, i: usize, why| out.stop.push((tasks[i].id.clone(), why));
    let live = |(_, t): &(usize, &TaskView)| t.phase != Phase::Stopping;

    // Unhealthy tasks are replaced whatever the limits: they serve nothing.
    let unhealthy: Vec<usize> = tasks
        .iter()
        .enumerate()
        .filter(live)
        .filter(|(_, t)| t.unhealthy)
        .map(|(i, _)| i)
        .collect();
    for i in unhealthy {
        stop(&mut out, i, StopWhy::Unhealthy);
    }
    let mut healthy = tasks
        .iter()
        .enumerate()
        .filter(live)
        .filter(|(i, t)| t.healthy && !tasks[*i].unhealthy)
        .count() as u32;
    let min_healthy = limits.min_healthy();

    // Old deployments: tasks that are not healthy go first (they do not hold the floor up),
    // then healthy ones while the healthy count stays at or above the floor.
    let mut old: Vec<usize> = tasks
        .iter()
        .enumerate()
        .filter(live)
        .filter(|(i, t)| !t.primary && !tasks[*i].unhealthy)
        .map(|(i, _)| i)
        .collect();
    old.sort_by_key(|i| (tasks[*i].healthy, tasks[*i].phase));
    for i in old {
        if !tasks[i].healthy {
            stop(&mut out, i, StopWhy::Replaced);
        } else if healthy > min_healthy {
            healthy -= 1;
            stop(&mut out, i, StopWhy::Replaced);
        }
    }

    // Primary above desired: scale in, pending tasks first, then the newest running ones
    // (the view order is oldest first).
    let mut primary: Vec<usize> = tasks
        .iter()
        .enumerate()
        .filter(live)
        .filter(|(i, t)| t.primary && !tasks[*i].unhealthy)
        .map(|(i, _)| i)
        .collect();
    let excess = (primary.len() as u32).saturating_sub(limits.desired);
    if excess > 0 {
        primary.reverse();
        primary.sort_by_key(|i| tasks[*i].phase != Phase::Pending);
        for &i in primary.iter().take(excess as usize) {
            stop(&mut out, i, StopWhy::ScaleIn);
        }
    }

    // Start what the primary lacks, within the cap on tasks that still hold a place.
    let primary_live = (primary.len() as u32).saturating_sub(excess);
    let holding = tasks.len() as u32; // every view holds a place until STOPPED
    let room = limits.max_tasks().saturating_sub(holding);
    out.start = limits.desired.saturating_sub(primary_live).min(room);
    out
}

/// The number of failed tasks after which ECS's deployment circuit breaker trips:
/// half the desired count, at least 3 and at most 200.
pub fn circuit_breaker_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// How long to wait before launching again after `failures` consecutive task failures: ECS
/// retries at once a few times, then throttles with a growing delay (capped at 5 minutes).
pub fn launch_backoff_ms(failures: u32) -> i64 {
    if failures < 3 {
        return 0;
    }
    let exp = (failures - 3).min(10);
    (5_000i64 << exp).min(300_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(id: &str, primary: bool, phase: Phase, healthy: bool) -> TaskView {
        TaskView {
            id: id.into(),
            primary,
            phase,
            healthy,
            unhealthy: false,
        }
    }

    fn limits(desired: u32, min: u32, max: u32) -> Limits {
        Limits {
            desired,
            minimum_healthy_percent: min,
            maximum_percent: max,
        }
    }

    #[test]
    fn rounding_follows_ecs() {
        // 3 tasks at 50%/150%: floor(4.5) = 4 at most, ceil(1.5) = 2 healthy at least.
        let l = limits(3, 50, 150);
        assert_eq!(l.max_tasks(), 4);
        assert_eq!(l.min_healthy(), 2);
        assert_eq!(limits(0, 100, 200).max_tasks(), 0);
        assert_eq!(limits(1, 100, 50).max_tasks(), 1);
    }

    #[test]
    fn fresh_service_starts_desired_count() {
        let s = step(limits(3, 100, 200), &[]);
        assert_eq!(s.start, 3);
        assert!(s.stop.is_empty());
    }

    #[test]
    fn rolling_100_200_starts_new_then_stops_old() {
        let l = limits(2, 100, 200);
        let old = [
            t("a", false, Phase::Running, true),
            t("b", false, Phase::Running, true),
        ];
        let s = step(l, &old);
        assert_eq!(s.start, 2);
        assert!(s.stop.is_empty());
        // New tasks pending: nothing to stop yet (the floor is 2 healthy).
        let mut v = old.to_vec();
        v.push(t("c", true, Phase::Pending, false));
        v.push(t("d", true, Phase::Pending, false));
        assert_eq!(step(l, &v), Step::default());
        // New tasks healthy: both old ones go.
        v[2] = t("c", true, Phase::Running, true);
        v[3] = t("d", true, Phase::Running, true);
        let s = step(l, &v);
        assert_eq!(s.start, 0);
        assert_eq!(
            s.stop,
            vec![
                ("a".to_string(), StopWhy::Replaced),
                ("b".to_string(), StopWhy::Replaced)
            ]
        );
    }

    #[test]
    fn rolling_50_100_stops_first() {
        let l = limits(4, 50, 100);
        let v: Vec<TaskView> = (0..4)
            .map(|i| t(&format!("o{i}"), false, Phase::Running, true))
            .collect();
        let s = step(l, &v);
        assert_eq!(s.stop.len(), 2);
        // The two being stopped still hold their places: nothing starts until they are gone.
        assert_eq!(s.start, 0);
        let mut v2: Vec<TaskView> = v.clone();
        v2[0].phase = Phase::Stopping;
        v2[1].phase = Phase::Stopping;
        assert_eq!(step(l, &v2).start, 0);
        v2.drain(0..2);
        let s = step(l, &v2);
        assert_eq!(s.start, 2);
        assert!(s.stop.is_empty());
    }

    #[test]
    fn unhealthy_and_pending_old_tasks_go_regardless_of_the_floor() {
        let l = limits(2, 100, 200);
        let mut sick = t("s", true, Phase::Running, false);
        sick.unhealthy = true;
        let v = [
            sick,
            t("p", false, Phase::Pending, false),
            t("h", true, Phase::Running, true),
        ];
        let s = step(l, &v);
        assert!(s.stop.contains(&("s".to_string(), StopWhy::Unhealthy)));
        assert!(s.stop.contains(&("p".to_string(), StopWhy::Replaced)));
        assert_eq!(s.start, 1);
    }

    #[test]
    fn scale_in_stops_pending_first_then_newest() {
        let l = limits(1, 100, 200);
        let v = [
            t("old", true, Phase::Running, true),
            t("new", true, Phase::Running, true),
            t("pend", true, Phase::Pending, false),
        ];
        let s = step(l, &v);
        assert_eq!(
            s.stop,
            vec![
                ("pend".to_string(), StopWhy::ScaleIn),
                ("new".to_string(), StopWhy::ScaleIn)
            ]
        );
        assert_eq!(s.start, 0);
    }

    #[test]
    fn circuit_breaker_threshold_is_half_clamped() {
        assert_eq!(circuit_breaker_threshold(1), 3);
        assert_eq!(circuit_breaker_threshold(10), 5);
        assert_eq!(circuit_breaker_threshold(11), 6);
        assert_eq!(circuit_breaker_threshold(1000), 200);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(launch_backoff_ms(0), 0);
        assert_eq!(launch_backoff_ms(2), 0);
        assert_eq!(launch_backoff_ms(3), 5_000);
        assert_eq!(launch_backoff_ms(4), 10_000);
        assert_eq!(launch_backoff_ms(40), 300_000);
    }

    fn phase() -> impl Strategy<Value = Phase> {
        prop_oneof![
            Just(Phase::Pending),
            Just(Phase::Running),
            Just(Phase::Stopping)
        ]
    }

    proptest! {
        /// Whatever the tasks are doing, a step never leads above the cap, never stops healthy
        /// old tasks below the floor, and stops each task at most once.
        #[test]
        fn steps_respect_the_limits(
            desired in 0u32..12,
            min in 0u32..=100,
            max in 100u32..=200,
            raw in proptest::collection::vec((any::<bool>(), phase(), any::<bool>()), 0..30),
        ) {
            let l = limits(desired, min, max);
            let tasks: Vec<TaskView> = raw.iter().enumerate().map(|(i, (primary, phase, healthy))| {
                t(&i.to_string(), *primary, *phase, *healthy && *phase == Phase::Running)
            }).collect();
            let s = step(l, &tasks);
            let mut ids: Vec<&String> = s.stop.iter().map(|(id, _)| id).collect();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), s.stop.len());
            // Starting never pushes the tasks holding a place above the cap.
            if s.start > 0 {
                prop_assert!(tasks.len() as u32 + s.start <= l.max_tasks());
            }
            // Healthy tasks that stay are at least the floor, or as many as there were.
            let healthy_before = tasks.iter().filter(|t| t.phase != Phase::Stopping && t.healthy).count() as u32;
            let healthy_after = tasks.iter().filter(|t| t.phase != Phase::Stopping && t.healthy
                && !s.stop.iter().any(|(id, w)| *id == t.id && *w == StopWhy::Replaced)).count() as u32;
            prop_assert!(healthy_after >= l.min_healthy().min(healthy_before));
            // Never a stopping task stopped again.
            for (id, _) in &s.stop {
                let task = tasks.iter().find(|t| &t.id == id);
                prop_assert!(task.is_some_and(|t| t.phase != Phase::Stopping));
            }
        }
    }
}
