//! Services on real Docker through `berth up`'s own agent, driven by the `aws` CLI: a service
//! reaches a steady state, a killed container is replaced, a new revision rolls out within the
//! deployment's percentages (sampled all along, not eyeballed), a revision whose container exits
//! at once trips the circuit breaker and rolls back, deletion drains the service, and a DAEMON
//! service puts one task on each of two agents.

use crate::harness::{AgentProcess, Berth, Opts, TempDir};
use crate::tasks::{FamilyCleanup, docker, import_busybox};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Upper bound for a service to reach a state: generous, CI machines are slow and busy.
const WAIT: Duration = Duration::from_secs(120);

fn aws(berth: &Berth, args: &[&str]) -> Value {
    berth.aws_profile(args).json()
}

/// Registers a revision of `family` whose one container runs `command` with an init process
/// (so SIGTERM stops it at once).
fn register(berth: &Berth, family: &str, image: &str, command: &[&str], version: &str) -> String {
    let defs = json!([{
        "name": "app",
        "image": image,
        "memory": 32,
        "essential": true,
        "command": command,
        "environment": [{"name": "VERSION", "value": version}],
        "linuxParameters": {"initProcessEnabled": true},
        "stopTimeout": 2
    }])
    .to_string();
    let out = aws(
        berth,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            family,
            "--container-definitions",
            &defs,
        ],
    );
    out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("task definition arn")
        .to_string()
}

fn describe(berth: &Berth, service: &str) -> Value {
    let out = aws(
        berth,
        &[
            "ecs",
            "describe-services",
            "--cluster",
            "default",
            "--services",
            service,
        ],
    );
    out["services"][0].clone()
}

/// Containers of `family` Docker runs right now: the ground truth for `maximumPercent`.
fn running_containers(family: &str) -> usize {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.amazonaws.ecs.task-definition-family={family}"),
    ])
    .split_whitespace()
    .count()
}

/// Polls DescribeServices until `done` holds, calling `check` on every sample.
fn wait_until(
    berth: &Berth,
    service: &str,
    what: &str,
    mut check: impl FnMut(&Value),
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = describe(berth, service);
        check(&s);
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "service {service} never got to: {what}; last seen: {s:#}\nberth stderr:\n{}",
            berth.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn steady(s: &Value, task_definition: &str) -> bool {
    s["deployments"].as_array().map(Vec::len) == Some(1)
        && s["deployments"][0]["rolloutState"] == "COMPLETED"
        && s["taskDefinition"] == task_definition
        && s["runningCount"] == s["desiredCount"]
        && s["pendingCount"] == 0
}

fn task_ids(berth: &Berth, service: &str, desired: &str) -> Vec<String> {
    let out = aws(
        berth,
        &[
            "ecs",
            "list-tasks",
            "--cluster",
            "default",
            "--service-name",
            service,
            "--desired-status",
            desired,
        ],
    );
    out["taskArns"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(|s| s.rsplit('/').next().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_service_is_kept_replaced_rolled_out_and_rolled_back() {
    let berth = Berth::start(Opts::default());
    let family = format!("svc-{}", std::process::id());
    let image = import_busybox(&family);
    let _cleanup = FamilyCleanup {
        family: family.clone(),
        image: image.clone(),
    };
    let v1 = register(&berth, &family, &image, &["sleep", "3600"], "1");

    // A service of 3 reaches a steady state.
    let created = aws(
        &berth,
        &[
            "ecs",
            "create-service",
            "--cluster",
            "default",
            "--service-name",
            "web",
            "--task-definition",
            &v1,
            "--desired-count",
            "3",
            "--deployment-configuration",
            "maximumPercent=200,minimumHealthyPercent=100,deploymentCircuitBreaker={enable=true,rollback=true}",
        ],
    );
    let svc = &created["service"];
    assert_eq!(svc["status"], "ACTIVE", "{created}");
    assert_eq!(svc["desiredCount"], 3);
    assert_eq!(svc["schedulingStrategy"], "REPLICA");
    assert_eq!(svc["deployments"][0]["status"], "PRIMARY");
    assert!(
        svc["deployments"][0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("ecs-svc/")),
        "{svc}"
    );
    let s = wait_until(&berth, "web", "3 running", |_| {}, |s| steady(s, &v1));
    let events: Vec<&str> = s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        events.contains(&"(service web) has reached a steady state."),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("(service web) has started 3 tasks:")),
        "{events:?}"
    );
    assert_eq!(running_containers(&family), 3);
    // The waiter a real client runs agrees.
    let waited = berth.aws_profile(&[
        "ecs",
        "wait",
        "services-stable",
        "--cluster",
        "default",
        "--services",
        "web",
    ]);
    assert_eq!(waited.code, 0, "{waited:?}");

    // A killed container is replaced.
    let before = task_ids(&berth, "web", "RUNNING");
    assert_eq!(before.len(), 3);
    let victim = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.amazonaws.ecs.task-definition-family={family}"),
    ]);
    let victim = victim
        .split_whitespace()
        .next()
        .expect("a container")
        .to_string();
    docker(&["kill", &victim]);
    wait_until(
        &berth,
        "web",
        "a replacement",
        |_| {},
        |s| {
            let now = task_ids(&berth, "web", "RUNNING");
            s["runningCount"] == 3 && now.len() == 3 && now.iter().any(|id| !before.contains(id))
        },
    );

    // A new revision rolls out within 100%..200%: never more than 6 containers, never fewer
    // than 3 healthy tasks counted running.
    let v2 = register(&berth, &family, &image, &["sleep", "3600"], "2");
    let updated = aws(
        &berth,
        &[
            "ecs",
            "update-service",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-definition",
            &v2,
        ],
    );
    assert_eq!(
        updated["service"]["deployments"].as_array().map(Vec::len),
        Some(2),
        "{updated}"
    );
    let (mut max_seen, mut min_seen) = (0usize, usize::MAX);
    let s = wait_until(
        &berth,
        "web",
        "the new revision, completed",
        |s| {
            max_seen = max_seen.max(running_containers(&family));
            let running = s["runningCount"].as_u64().unwrap_or(0) as usize;
            min_seen = min_seen.min(running);
        },
        |s| steady(s, &v2),
    );
    assert!(max_seen <= 6, "more than 200% ran at once: {max_seen}");
    assert!(
        min_seen >= 3,
        "fewer than 100% ran at some point: {min_seen}"
    );
    assert_eq!(running_containers(&family), 3);
    let listed = aws(
        &berth,
        &[
            "ecs",
            "list-service-deployments",
            "--cluster",
            "default",
            "--service",
            "web",
        ],
    );
    let statuses: Vec<&str> = listed["serviceDeployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"SUCCESSFUL"), "{listed}");
    assert_eq!(statuses.len(), 2, "{listed}");
    let _ = s;

    // A revision whose container exits at once trips the circuit breaker and rolls back to v2.
    let bad = register(&berth, &family, &image, &["false"], "3");
    aws(
        &berth,
        &[
            "ecs",
            "update-service",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-definition",
            &bad,
        ],
    );
    let s = wait_until(
        &berth,
        "web",
        "a rollback to the previous revision",
        |_| {},
        |s| {
            steady(s, &v2)
                && s["events"].as_array().into_iter().flatten().any(|e| {
                    e["message"]
                        .as_str()
                        .is_some_and(|m| m.ends_with("deployment failed: tasks failed to start."))
                })
        },
    );
    assert!(
        s["deployments"][0]["rolloutStateReason"]
            .as_str()
            .is_some_and(|r| r.starts_with("ECS deployment")),
        "{s:#}"
    );
    let listed = aws(
        &berth,
        &[
            "ecs",
            "list-service-deployments",
            "--cluster",
            "default",
            "--service",
            "web",
        ],
    );
    let rolled: Vec<&Value> = listed["serviceDeployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["status"] == "ROLLBACK_SUCCESSFUL")
        .collect();
    assert_eq!(rolled.len(), 1, "{listed:#}");
    // The breaker stopped the bad revision; three v2 tasks serve again. (A v3 container counts
    // healthy for the instant it runs, so some v2 tasks were replaced meanwhile, as on ECS.)
    assert_eq!(running_containers(&family), 3);

    // Deleting needs force while scaled above 0; then the service drains to INACTIVE.
    let refused = berth.aws_profile(&[
        "ecs",
        "delete-service",
        "--cluster",
        "default",
        "--service",
        "web",
    ]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("InvalidParameterException"),
        "{refused:?}"
    );
    let deleted = aws(
        &berth,
        &[
            "ecs",
            "delete-service",
            "--cluster",
            "default",
            "--service",
            "web",
            "--force",
        ],
    );
    assert_eq!(deleted["service"]["status"], "DRAINING", "{deleted}");
    let waited = berth.aws_profile(&[
        "ecs",
        "wait",
        "services-inactive",
        "--cluster",
        "default",
        "--services",
        "web",
    ]);
    assert_eq!(waited.code, 0, "{waited:?}");
    let deadline = Instant::now() + WAIT;
    while running_containers(&family) > 0 {
        assert!(
            Instant::now() < deadline,
            "containers left after the service was deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed = aws(&berth, &["ecs", "list-services", "--cluster", "default"]);
    assert_eq!(listed["serviceArns"], json!([]), "{listed}");
}

#[test]
fn a_daemon_service_runs_one_task_on_each_agent() {
    let berth = Berth::start(Opts::default());
    let family = format!("daemon-{}", std::process::id());
    let image = import_busybox(&family);
    let _cleanup = FamilyCleanup {
        family: family.clone(),
        image: image.clone(),
    };
    let dir = TempDir::new("daemon-agent");
    let mut agent = AgentProcess::start(&berth.endpoint, "default", dir.path());
    let deadline = Instant::now() + WAIT;
    loop {
        let list = aws(
            &berth,
            &["ecs", "list-container-instances", "--cluster", "default"],
        );
        if list["containerInstanceArns"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second agent never joined: {list}\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let td = register(&berth, &family, &image, &["sleep", "3600"], "1");
    let created = aws(
        &berth,
        &[
            "ecs",
            "create-service",
            "--cluster",
            "default",
            "--service-name",
            "agentd",
            "--task-definition",
            &td,
            "--scheduling-strategy",
            "DAEMON",
        ],
    );
    assert_eq!(
        created["service"]["schedulingStrategy"], "DAEMON",
        "{created}"
    );
    wait_until(
        &berth,
        "agentd",
        "one task per instance",
        |_| {},
        |s| s["desiredCount"] == 2 && steady(s, &td),
    );
    let arns = aws(
        &berth,
        &[
            "ecs",
            "list-tasks",
            "--cluster",
            "default",
            "--service-name",
            "agentd",
        ],
    );
    let arns: Vec<&str> = arns["taskArns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(arns.len(), 2);
    let mut args = vec!["ecs", "describe-tasks", "--cluster", "default", "--tasks"];
    args.extend(arns.iter().copied());
    let tasks = aws(&berth, &args);
    let mut instances: Vec<&str> = tasks["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["containerInstanceArn"].as_str())
        .collect();
    instances.sort_unstable();
    instances.dedup();
    assert_eq!(instances.len(), 2, "{tasks:#}");
    agent.kill();
    aws(
        &berth,
        &[
            "ecs",
            "delete-service",
            "--cluster",
            "default",
            "--service",
            "agentd",
        ],
    );
}

/// The containers of `family` Docker runs now, with the revision each belongs to.
fn container_revisions(family: &str) -> Vec<String> {
    docker(&[
        "ps",
        "--filter",
        &format!("label=com.amazonaws.ecs.task-definition-family={family}"),
        "--format",
        "{{.Label \"com.amazonaws.ecs.task-definition-version\"}}",
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// SIGKILL of `berth up` in the middle of a rolling deployment: after the restart the
/// controller counts what exists and finishes the rollout, with no duplicate task and never
/// above `maximumPercent`; the containers that ran through the outage are adopted, not doubled.
#[test]
fn a_deployment_killed_midway_finishes_without_duplicates_after_a_restart() {
    let berth = Berth::start(Opts::default());
    let family = format!("restart-{}", std::process::id());
    let image = import_busybox(&family);
    let _cleanup = FamilyCleanup {
        family: family.clone(),
        image: image.clone(),
    };
    let v1 = register(&berth, &family, &image, &["sleep", "3600"], "1");
    aws(
        &berth,
        &[
            "ecs",
            "create-service",
            "--cluster",
            "default",
            "--service-name",
            "kept",
            "--task-definition",
            &v1,
            "--desired-count",
            "4",
            "--deployment-configuration",
            "maximumPercent=150,minimumHealthyPercent=50",
        ],
    );
    wait_until(&berth, "kept", "4 running", |_| {}, |s| steady(s, &v1));
    let v2 = register(&berth, &family, &image, &["sleep", "3600"], "2");
    aws(
        &berth,
        &[
            "ecs",
            "update-service",
            "--cluster",
            "default",
            "--service",
            "kept",
            "--task-definition",
            &v2,
        ],
    );
    // Kill the server once the rollout has visibly begun (a v2 container runs).
    let deadline = Instant::now() + WAIT;
    while !container_revisions(&family).iter().any(|r| r == "2") {
        assert!(Instant::now() < deadline, "the rollout never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let at_kill = container_revisions(&family);
    assert!(
        at_kill.len() <= 6,
        "above 150% before the kill: {at_kill:?}"
    );
    let berth = berth.restart(Opts::default());
    let mut max_seen = 0;
    wait_until(
        &berth,
        "kept",
        "the rollout, finished after the restart",
        |_| max_seen = max_seen.max(container_revisions(&family).len()),
        |s| steady(s, &v2),
    );
    assert!(max_seen <= 6, "above 150% after the restart: {max_seen}");
    // Exactly the desired tasks, all of v2, each with one container.
    let deadline = Instant::now() + WAIT;
    loop {
        let revisions = container_revisions(&family);
        if revisions.len() == 4 {
            assert!(revisions.iter().all(|r| r == "2"), "{revisions:?}");
            break;
        }
        assert!(Instant::now() < deadline, "containers: {revisions:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let running = task_ids(&berth, "kept", "RUNNING");
    assert_eq!(running.len(), 4, "{running:?}");
    aws(
        &berth,
        &[
            "ecs",
            "delete-service",
            "--cluster",
            "default",
            "--service",
            "kept",
            "--force",
        ],
    );
}
