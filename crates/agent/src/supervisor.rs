//! The decisions of one task's supervisor, as pure functions of what it wants and what it sees:
//! which containers to pull, create, start or stop next, when the task has failed, and which
//! ECS status it is in. `task.rs` carries the decisions out against the runtime.
//!
//! **Architecture Invariant:** no I/O and no clock here; every rule of the ECS lifecycle that
//! can be decided from a snapshot is decided here and tested table-driven.

use crate::translate::{Condition, TaskPlan};
use berth_runtime::Health;

/// What the supervisor last saw of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not created (yet).
    Absent,
    /// Created, never started.
    Created,
    Running {
        health: Option<Health>,
    },
    /// Ran and ended.
    Exited {
        exit_code: Option<i64>,
    },
}

impl Status {
    fn has_started(self) -> bool {
        matches!(self, Status::Running { .. } | Status::Exited { .. })
    }
}

/// Everything a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub plan: &'a TaskPlan,
    /// The server wants the task stopped, or the supervisor decided it must stop (a failure).
    pub stopping: bool,
    /// Every image of the task is present.
    pub pulled: bool,
    /// The task's named volumes exist.
    pub volumes_ready: bool,
    /// The `awsvpc` namespace holder (`Absent` when the task has none).
    pub holder: Status,
    /// One per `plan.containers`, same order.
    pub containers: &'a [Status],
}

/// ECS stop codes the agent decides (the server adds `UserInitiated` and the like).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCode {
    EssentialContainerExited,
    TaskFailedToStart,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCode::EssentialContainerExited => "EssentialContainerExited",
            StopCode::TaskFailedToStart => "TaskFailedToStart",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: StopCode,
    /// The task's `stoppedReason`.
    pub reason: String,
    /// The container the failure belongs to and its `reason`, if any.
    pub container: Option<(usize, String)>,
}

/// The essential-exit reason ECS gives, word for word.
pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Pull,
    CreateVolumes,
    CreateHolder,
    StartHolder,
    Create(usize),
    Start(usize),
    /// Stop these containers, in parallel, each with its own stop timeout.
    Stop(Vec<usize>),
    StopHolder,
    /// The task cannot go on; it stops.
    Fail(Failure),
    /// Every container has stopped: the task is STOPPED.
    Finish,
}

/// The next step(s), or none when the supervisor only has to wait (for a container to start,
/// become healthy or exit). Doing them and deciding again converges, whatever happened in
/// between: the function looks at the whole snapshot each time.
pub fn next_actions(s: &Snapshot<'_>) -> Vec<Action> {
    let containers = &s.plan.containers;
    if s.stopping {
        // Reverse dependency order: a container stops once nothing that depends on it runs.
        let running = |i: usize| matches!(s.containers[i], Status::Running { .. });
        let stop: Vec<usize> = (0..containers.len())
            .rev()
            .filter(|&i| running(i))
            .filter(|&i| {
                !(0..containers.len()).any(|j| {
                    running(j) && containers[j].depends_on.iter().any(|d| d.container == i)
                })
            })
            .collect();
        if !stop.is_empty() {
            return vec![Action::Stop(stop)];
        }
        if (0..containers.len()).any(running) {
            // Unreachable in a well-formed plan (dependencies are acyclic), but waiting is the
            // safe answer to a state we do not understand.
            return vec![];
        }
        if matches!(s.holder, Status::Running { .. }) {
            return vec![Action::StopHolder];
        }
        return vec![Action::Finish];
    }

    if let Some(f) = failure(s) {
        return vec![Action::Fail(f)];
    }
    if !s.pulled {
        return vec![Action::Pull];
    }
    if !s.volumes_ready {
        return vec![Action::CreateVolumes];
    }
    if s.plan.holder.is_some() {
        match s.holder {
            Status::Absent => return vec![Action::CreateHolder],
            Status::Created => return vec![Action::StartHolder],
            Status::Running { .. } | Status::Exited { .. } => {}
        }
    }
    // Create in start order: `volumesFrom` needs its source to exist at create time.
    if let Some(i) = s.containers.iter().position(|c| *c == Status::Absent) {
        return vec![Action::Create(i)];
    }
    (0..containers.len())
        .filter(|&i| s.containers[i] == Status::Created)
        .filter(|&i| {
            containers[i]
                .depends_on
                .iter()
                .all(|d| satisfied(d.condition, s.containers[d.container]) == Some(true))
        })
        .map(Action::Start)
        .collect()
}

/// Whether `condition` holds for a dependency in `status`: `Some(false)` while it may still
/// come true, `None` when it never can.
fn satisfied(condition: Condition, status: Status) -> Option<bool> {
    match (condition, status) {
        (Condition::Start, st) => Some(st.has_started()),
        (Condition::Complete, Status::Exited { .. }) => Some(true),
        (Condition::Complete, _) => Some(false),
        (Condition::Success, Status::Exited { exit_code: Some(0) }) => Some(true),
        (Condition::Success, Status::Exited { .. }) => None,
        (Condition::Success, _) => Some(false),
        (
            Condition::Healthy,
            Status::Running {
                health: Some(Health::Healthy),
            },
        ) => Some(true),
        (
            Condition::Healthy,
            Status::Running {
                health: Some(Health::Unhealthy),
            },
        )
        | (Condition::Healthy, Status::Exited { .. }) => None,
        (Condition::Healthy, _) => Some(false),
    }
}

fn failure(s: &Snapshot<'_>) -> Option<Failure> {
    let containers = &s.plan.containers;
    for (i, c) in containers.iter().enumerate() {
        if c.essential && matches!(s.containers[i], Status::Exited { .. }) {
            return Some(Failure {
                code: StopCode::EssentialContainerExited,
                reason: ESSENTIAL_EXITED.into(),
                container: None,
            });
        }
    }
    if s.plan.holder.is_some() && matches!(s.holder, Status::Exited { .. }) {
        return Some(Failure {
            code: StopCode::EssentialContainerExited,
            reason: "Task network namespace holder exited".into(),
            container: None,
        });
    }
    // An essential container whose dependency can never be met would wait forever; ECS fails
    // the task instead. (A non-essential one just never starts.)
    for (i, c) in containers.iter().enumerate() {
        if !c.essential || s.containers[i].has_started() {
            continue;
        }
        for d in &c.depends_on {
            if satisfied(d.condition, s.containers[d.container]).is_none() {
                let dep = &containers[d.container].name;
                let reason = format!(
                    "dependency on {dep} ({}) can no longer be satisfied",
                    d.condition.as_str()
                );
                return Some(Failure {
                    code: StopCode::TaskFailedToStart,
                    reason: format!("Container {}: {reason}", c.name),
                    container: Some((i, format!("DependencyNotSatisfied: {dep}"))),
                });
            }
        }
    }
    None
}

/// The ECS status of the task: PENDING until every essential container has started, then
/// RUNNING; STOPPED once the supervisor has finished.
pub fn task_status(plan: &TaskPlan, containers: &[Status], finished: bool) -> &'static str {
    if finished {
        return "STOPPED";
    }
    let started = plan
        .containers
        .iter()
        .zip(containers)
        .filter(|(c, _)| c.essential)
        .all(|(_, st)| st.has_started());
    if started { "RUNNING" } else { "PENDING" }
}

/// ECS's status of one container.
pub fn container_status(status: Status, task_finished: bool) -> &'static str {
    match status {
        Status::Running { .. } => "RUNNING",
        Status::Exited { .. } => "STOPPED",
        // A container the task never got to start is STOPPED along with the task.
        Status::Absent | Status::Created if task_finished => "STOPPED",
        Status::Absent | Status::Created => "PENDING",
    }
}

/// The task's `healthStatus`: from the essential containers that have a health check; UNKNOWN
/// while any is starting or when none has one.
pub fn task_health(plan: &TaskPlan, containers: &[Status]) -> &'static str {
    let mut any = false;
    let mut all_healthy = true;
    for (c, st) in plan.containers.iter().zip(containers) {
        if !c.essential || c.spec.health_check.is_none() {
            continue;
        }
        any = true;
        match st {
            Status::Running {
                health: Some(Health::Unhealthy),
            } => return "UNHEALTHY",
            Status::Running {
                health: Some(Health::Healthy),
            } => {}
            _ => all_healthy = false,
        }
    }
    if any && all_healthy {
        "HEALTHY"
    } else {
        "UNKNOWN"
    }
}

/// One container's `healthStatus`.
pub fn container_health(status: Status, has_check: bool) -> &'static str {
    match status {
        Status::Running {
            health: Some(Health::Healthy),
        } if has_check => "HEALTHY",
        Status::Running {
            health: Some(Health::Unhealthy),
        } if has_check => "UNHEALTHY",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{NodeContext, plan};
    use berth_agent_api::AssignedTask;
    use serde_json::json;

    use Status::{Absent, Created};
    const RUN: Status = Status::Running { health: None };
    const HEALTHY: Status = Status::Running {
        health: Some(Health::Healthy),
    };
    const STARTING: Status = Status::Running {
        health: Some(Health::Starting),
    };
    const UNHEALTHY: Status = Status::Running {
        health: Some(Health::Unhealthy),
    };
    const OK: Status = Status::Exited { exit_code: Some(0) };
    const FAILED: Status = Status::Exited { exit_code: Some(1) };

    /// db (essential, health check) ← init (non-essential, SUCCESS of db? no: init runs first)
    /// Order: init, db, app. app needs init SUCCESS and db HEALTHY; db needs init COMPLETE.
    fn three(network: &str) -> TaskPlan {
        let def = json!({"family": "f", "revision": 1, "networkMode": network, "containerDefinitions": [
            {"name": "app", "image": "app", "dependsOn": [
                {"containerName": "init", "condition": "SUCCESS"},
                {"containerName": "db", "condition": "HEALTHY"}]},
            {"name": "init", "image": "init", "essential": false},
            {"name": "db", "image": "db", "healthCheck": {"command": ["CMD", "true"]},
             "dependsOn": [{"containerName": "init", "condition": "COMPLETE"}]}
        ]});
        let task = AssignedTask {
            task_arn: "arn:aws:ecs:us-east-1:0:task/c/t1".into(),
            desired_status: "RUNNING".into(),
            task_definition: def,
            overrides: json!(null),
            reserved_ports: vec![],
            stop_reason: None,
            group: None,
            container_arns: Default::default(),
        };
        let node = NodeContext {
            cluster: "c".into(),
            instance_id: "i".into(),
            bind_address: "127.0.0.1".into(),
            holder_image: "pause".into(),
            metadata: None,
        };
        plan(&task, &node).expect("plan")
    }

    fn decide(p: &TaskPlan, stopping: bool, holder: Status, c: [Status; 3]) -> Vec<Action> {
        next_actions(&Snapshot {
            plan: p,
            stopping,
            pulled: true,
            volumes_ready: true,
            holder,
            containers: &c,
        })
    }

    #[test]
    fn the_plan_orders_init_db_app() {
        let p = three("bridge");
        let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["init", "db", "app"]);
    }

    #[test]
    fn starting_follows_depends_on_conditions() {
        let p = three("bridge");
        let fail_app = |reason: &str| {
            vec![Action::Fail(Failure {
                code: StopCode::TaskFailedToStart,
                reason: format!("Container app: {reason}"),
                container: Some((2, "DependencyNotSatisfied: init".into())),
            })]
        };
        // (containers [init, db, app], expected)
        let table: Vec<([Status; 3], Vec<Action>)> = vec![
            ([Absent, Absent, Absent], vec![Action::Create(0)]),
            ([Created, Absent, Absent], vec![Action::Create(1)]),
            ([Created, Created, Created], vec![Action::Start(0)]),
            // db waits for init to COMPLETE, app for init SUCCESS.
            ([RUN, Created, Created], vec![]),
            ([OK, Created, Created], vec![Action::Start(1)]),
            (
                [FAILED, Created, Created],
                fail_app("dependency on init (SUCCESS) can no longer be satisfied"),
            ),
            // app waits for db to be HEALTHY.
            ([OK, STARTING, Created], vec![]),
            ([OK, RUN, Created], vec![]),
            ([OK, HEALTHY, Created], vec![Action::Start(2)]),
            ([OK, HEALTHY, RUN], vec![]),
        ];
        for (c, want) in table {
            assert_eq!(decide(&p, false, Absent, c), want, "{c:?}");
        }
        // An unhealthy dependency fails the essential dependent.
        let got = decide(&p, false, Absent, [OK, UNHEALTHY, Created]);
        assert!(
            matches!(&got[..], [Action::Fail(f)] if f.code == StopCode::TaskFailedToStart && f.reason.contains("db (HEALTHY)")),
            "{got:?}"
        );
    }

    #[test]
    fn images_then_volumes_then_containers() {
        let p = three("bridge");
        let c = [Absent; 3];
        let snap = |pulled, volumes_ready| Snapshot {
            plan: &p,
            stopping: false,
            pulled,
            volumes_ready,
            holder: Absent,
            containers: &c,
        };
        assert_eq!(next_actions(&snap(false, false)), [Action::Pull]);
        assert_eq!(next_actions(&snap(true, false)), [Action::CreateVolumes]);
        assert_eq!(next_actions(&snap(true, true)), [Action::Create(0)]);
    }

    #[test]
    fn an_essential_exit_fails_the_task_and_a_non_essential_one_does_not() {
        let p = three("bridge");
        assert_eq!(
            decide(&p, false, Absent, [OK, HEALTHY, OK]),
            [Action::Fail(Failure {
                code: StopCode::EssentialContainerExited,
                reason: ESSENTIAL_EXITED.into(),
                container: None
            })]
        );
        assert_eq!(decide(&p, false, Absent, [OK, HEALTHY, RUN]), []);
    }

    #[test]
    fn stopping_goes_in_reverse_dependency_order_then_finishes() {
        let p = three("bridge");
        let table: Vec<([Status; 3], Vec<Action>)> = vec![
            // app depends on init and db: it goes first; init has already exited.
            ([OK, HEALTHY, RUN], vec![Action::Stop(vec![2])]),
            ([OK, HEALTHY, FAILED], vec![Action::Stop(vec![1])]),
            // Nothing depends on a running init once app and db are down.
            ([RUN, Created, Created], vec![Action::Stop(vec![0])]),
            ([OK, OK, OK], vec![Action::Finish]),
            ([Absent, Absent, Absent], vec![Action::Finish]),
            ([OK, Created, Absent], vec![Action::Finish]),
        ];
        for (c, want) in table {
            assert_eq!(decide(&p, true, Absent, c), want, "{c:?}");
        }
    }

    #[test]
    fn awsvpc_holder_comes_first_and_goes_last() {
        let p = three("awsvpc");
        assert_eq!(
            decide(&p, false, Absent, [Absent; 3]),
            [Action::CreateHolder]
        );
        assert_eq!(
            decide(&p, false, Created, [Absent; 3]),
            [Action::StartHolder]
        );
        assert_eq!(decide(&p, false, RUN, [Absent; 3]), [Action::Create(0)]);
        assert_eq!(
            decide(&p, true, RUN, [OK, RUN, RUN]),
            [Action::Stop(vec![2])]
        );
        assert_eq!(decide(&p, true, RUN, [OK, OK, OK]), [Action::StopHolder]);
        assert_eq!(decide(&p, true, OK, [OK, OK, OK]), [Action::Finish]);
        let got = decide(&p, false, OK, [OK, HEALTHY, RUN]);
        assert!(
            matches!(&got[..], [Action::Fail(f)] if f.code == StopCode::EssentialContainerExited),
            "{got:?}"
        );
    }

    #[test]
    fn statuses_and_health_follow_the_essential_containers() {
        let p = three("bridge");
        assert_eq!(task_status(&p, &[OK, STARTING, Created], false), "PENDING");
        // Running with a health check still starting: RUNNING, health UNKNOWN.
        assert_eq!(task_status(&p, &[OK, STARTING, RUN], false), "RUNNING");
        assert_eq!(task_health(&p, &[OK, STARTING, RUN]), "UNKNOWN");
        assert_eq!(task_health(&p, &[OK, HEALTHY, RUN]), "HEALTHY");
        assert_eq!(task_health(&p, &[OK, UNHEALTHY, RUN]), "UNHEALTHY");
        assert_eq!(task_status(&p, &[OK, OK, OK], true), "STOPPED");
        assert_eq!(container_status(Created, false), "PENDING");
        assert_eq!(container_status(Created, true), "STOPPED");
        assert_eq!(container_status(HEALTHY, false), "RUNNING");
        assert_eq!(container_health(HEALTHY, true), "HEALTHY");
        assert_eq!(container_health(HEALTHY, false), "UNKNOWN");
        assert_eq!(container_health(FAILED, true), "UNKNOWN");
    }
}
