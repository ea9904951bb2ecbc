//! The agent end to end against the fake runtime and the fake control plane: lifecycle,
//! failures, restarts and outages. Waits are bounded; nothing asserts on timing.

use crate::control_plane::{ControlPlane, JOIN_TOKEN};
use berth_agent::{Agent, Config, Registered};
use berth_agent_api::{self as api, AssignedTask, TaskState, labels};
use berth_runtime::{Call, ContainerId, FakeRuntime, Runtime, RuntimeError, StatsSample};
use parking_lot::Mutex;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    stop: Option<oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<()>,
    registered: Arc<Mutex<Vec<Registered>>>,
}

impl Running {
    /// Stops the agent the way a signal does, and waits for it to end.
    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.join).await;
    }
}

fn fake() -> FakeRuntime {
    let f = FakeRuntime::new();
    // Real time, so the sweeper's "stopped 10 minutes ago" means what it says.
    f.set_clock(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    });
    f
}

fn config(cp: &ControlPlane, dir: &Path) -> Config {
    let mut c = Config::new(&cp.url(), "default", dir.to_path_buf());
    c.join_token = Some(JOIN_TOKEN.into());
    c.tick = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(200);
    c.attributes = vec![("stack".into(), Some("blue".into()))];
    // An ephemeral port, so agents of parallel tests do not contend for one.
    c.metadata_port = Some(0);
    c
}

fn start(config: Config, runtime: Result<Runtime, RuntimeError>) -> Running {
    let registered = Arc::new(Mutex::new(Vec::new()));
    let seen = registered.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let agent = Agent::new(config, runtime).expect("agent");
    let join = tokio::spawn(async move {
        agent
            .run(move |r| seen.lock().push(r.clone()), async {
                let _ = rx.await;
            })
            .await
            .expect("agent run");
    });
    Running {
        stop: Some(tx),
        join,
        registered,
    }
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn reported(cp: &ControlPlane, arn: &str, status: &str) -> TaskState {
    eventually(&format!("{arn} {status}"), || {
        cp.latest(arn).filter(|s| s.status == status)
    })
    .await
}

fn task(id: &str, containers: serde_json::Value) -> AssignedTask {
    AssignedTask {
        task_arn: format!("arn:aws:ecs:us-east-1:000000000000:task/default/{id}"),
        desired_status: "RUNNING".into(),
        task_definition: json!({
            "family": "web", "revision": 3, "networkMode": "bridge",
            "containerDefinitions": containers,
        }),
        overrides: json!({"containerOverrides": [{"name": "app", "environment": [{"name": "FROM", "value": "override"}]}]}),
        reserved_ports: vec![],
        stop_reason: None,
        group: None,
        container_arns: Default::default(),
    }
}

fn two_containers() -> serde_json::Value {
    json!([
        {"name": "app", "image": "app:1", "memory": 64, "stopTimeout": 7,
         "portMappings": [{"containerPort": 80}],
         "dependsOn": [{"containerName": "sidecar", "condition": "START"}]},
        {"name": "sidecar", "image": "side:1", "essential": false, "memory": 32}
    ])
}

/// The id of the container named `name` (definition name) of task `arn`.
fn container(f: &FakeRuntime, arn: &str, name: &str) -> Option<ContainerId> {
    f.container_ids().into_iter().find(|id| {
        f.spec(id).is_some_and(|s| {
            s.labels.get(labels::TASK_ARN).map(String::as_str) == Some(arn)
                && s.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(name)
        })
    })
}

fn creates(f: &FakeRuntime) -> usize {
    f.calls()
        .iter()
        .filter(|c| matches!(c, Call::Create(_)))
        .count()
}

#[tokio::test]
async fn a_task_runs_and_an_essential_exit_stops_it() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    let agent = start(config(&cp, dir.path()), Ok(f.clone().into()));

    let t = task("t1", two_containers());
    let arn = t.task_arn.clone();
    cp.assign(t);
    let running = reported(&cp, &arn, "RUNNING").await;
    assert!(running.pull_started_at.is_some() && running.pull_stopped_at.is_some());
    assert!(running.started_at.is_some());
    assert_eq!(running.health_status.as_deref(), Some("UNKNOWN"));
    let app = running
        .containers
        .iter()
        .find(|c| c.name == "app")
        .expect("app reported");
    assert_eq!(app.status, "RUNNING");
    assert_eq!(app.network_bindings.len(), 1);
    assert_eq!(app.network_bindings[0].container_port, 80);
    assert_eq!(app.network_bindings[0].bind_ip, "127.0.0.1");

    // The registration carried the node's resources and attributes.
    let reg = cp.state.lock().registrations[0].clone();
    assert_eq!(reg.resources.cpu, 2 * 1024);
    assert_eq!(reg.resources.memory_mib, 4096 - 256);
    assert!(reg.can_run_tasks);
    assert!(reg.attributes.iter().any(|a| a.name == "ecs.os-type"));
    assert!(
        reg.attributes
            .iter()
            .any(|a| a.name == "stack" && a.value.as_deref() == Some("blue"))
    );

    // The sidecar started first (app depends on it); both carry ECS's labels.
    let side = container(&f, &arn, "sidecar").expect("sidecar created");
    let app_id = container(&f, &arn, "app").expect("app created");
    let starts: Vec<ContainerId> = f
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Start(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [side.clone(), app_id.clone()]);
    let spec = f.spec(&app_id).expect("spec");
    assert_eq!(spec.labels[labels::CLUSTER], "default");
    assert_eq!(spec.labels[labels::FAMILY], "web");
    assert_eq!(spec.labels[labels::REVISION], "3");
    assert_eq!(spec.labels[labels::INSTANCE], "inst-1");
    assert!(spec.env.contains(&("FROM".into(), "override".into())));

    // The essential container exits: the task stops, the sidecar with it.
    f.exit(&app_id, 3);
    let stopped = reported(&cp, &arn, "STOPPED").await;
    assert_eq!(
        stopped.stop_code.as_deref(),
        Some("EssentialContainerExited")
    );
    assert_eq!(
        stopped.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert!(stopped.execution_stopped_at.is_some());
    let app = stopped
        .containers
        .iter()
        .find(|c| c.name == "app")
        .expect("app");
    assert_eq!((app.status.as_str(), app.exit_code), ("STOPPED", Some(3)));
    let side_state = stopped
        .containers
        .iter()
        .find(|c| c.name == "sidecar")
        .expect("sidecar");
    assert_eq!(side_state.status, "STOPPED");
    assert!(f.calls().iter().any(|c| matches!(c, Call::Stop { id, timeout } if *id == side && *timeout == Duration::from_secs(30))));
    // Only forward: the reporter may coalesce PENDING into RUNNING, never go back.
    let seen = cp.statuses(&arn);
    assert!(
        seen == ["PENDING", "RUNNING", "STOPPED"] || seen == ["RUNNING", "STOPPED"],
        "{seen:?}"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn desired_stopped_stops_each_container_with_its_stop_timeout() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    let agent = start(config(&cp, dir.path()), Ok(f.clone().into()));
    let t = task("t2", two_containers());
    let arn = t.task_arn.clone();
    cp.assign(t);
    reported(&cp, &arn, "RUNNING").await;
    let app = container(&f, &arn, "app").expect("app");
    let side = container(&f, &arn, "sidecar").expect("sidecar");

    cp.stop_task(&arn, "Scaling down");
    let stopped = reported(&cp, &arn, "STOPPED").await;
    assert_eq!(stopped.stop_code, None, "the server sets UserInitiated");
    assert_eq!(stopped.stopped_reason.as_deref(), Some("Scaling down"));
    let stops: Vec<(ContainerId, Duration)> = f
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Stop { id, timeout } => Some((id, timeout)),
            _ => None,
        })
        .collect();
    // Reverse dependency order: app (which depends on the sidecar) first.
    assert_eq!(
        stops,
        [
            (app, Duration::from_secs(7)),
            (side, Duration::from_secs(30))
        ]
    );
    for c in &stopped.containers {
        assert_eq!((c.status.as_str(), c.exit_code), ("STOPPED", Some(0)));
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn a_pull_failure_stops_the_task_with_cannot_pull_container_error() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    f.set_missing_image("nope:1", "manifest for nope:1 not found");
    let agent = start(config(&cp, dir.path()), Ok(f.clone().into()));
    let t = task(
        "t3",
        json!([{"name": "app", "image": "nope:1", "memory": 16}]),
    );
    let arn = t.task_arn.clone();
    cp.assign(t);
    let stopped = reported(&cp, &arn, "STOPPED").await;
    assert_eq!(stopped.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = stopped.containers[0].reason.clone().unwrap_or_default();
    assert_eq!(
        reason,
        "CannotPullContainerError: manifest for nope:1 not found"
    );
    assert_eq!(stopped.stopped_reason.as_deref(), Some(reason.as_str()));
    assert!(stopped.pull_started_at.is_some() && stopped.started_at.is_none());
    assert_eq!(creates(&f), 0);
    agent.shutdown().await;
}

#[tokio::test]
async fn secrets_and_registry_logins_from_the_server_reach_the_containers_and_pulls() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    let agent = start(config(&cp, dir.path()), Ok(f.clone().into()));
    let containers = json!([
        {"name": "app", "image": "127.0.0.1:4566/shop/app:1", "memory": 16,
         "environment": [{"name": "TOKEN", "value": "plain"}],
         "secrets": [{"name": "TOKEN", "valueFrom": "arn:aws:secretsmanager:us-east-1:000000000000:secret:t-AbCdEf"}]},
        {"name": "side", "image": "127.0.0.1:4566/shop/app:1", "memory": 16, "essential": false}
    ]);
    let ok = task("c1", containers.clone());
    let refused = task("c2", containers);
    let login = api::RegistryCredentials {
        username: "AWS".into(),
        password: "token".into(),
        server: "127.0.0.1:4566".into(),
    };
    {
        let mut s = cp.state.lock();
        s.credentials.insert(
            ok.task_arn.clone(),
            Ok(api::CredentialsResponse {
                containers: vec![api::ContainerCredentials {
                    name: "app".into(),
                    registry: Some(login.clone()),
                    secrets: vec![api::SecretValue {
                        name: "TOKEN".into(),
                        value: "from the secret".into(),
                    }],
                }],
            }),
        );
        s.credentials.insert(
            refused.task_arn.clone(),
            Err((
                "ResourceInitializationError".into(),
                "unable to pull secrets or registry auth: no such secret".into(),
            )),
        );
    }
    let (ok_arn, refused_arn) = (ok.task_arn.clone(), refused.task_arn.clone());
    cp.assign(ok);
    reported(&cp, &ok_arn, "RUNNING").await;
    let app = container(&f, &ok_arn, "app").expect("app container");
    let env = f.spec(&app).expect("spec").env;
    assert!(
        env.contains(&("TOKEN".to_owned(), "from the secret".to_owned())),
        "{env:?}"
    );
    assert!(!env.iter().any(|(_, v)| v == "plain"), "{env:?}");
    // One pull for the image both containers use, with the login.
    let pulls: Vec<Call> = f
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Pull { .. }))
        .collect();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(
        matches!(&pulls[0], Call::Pull { auth: Some(a), .. } if a.username == "AWS" && a.password == "token"),
        "{pulls:?}"
    );

    cp.assign(refused);
    let stopped = reported(&cp, &refused_arn, "STOPPED").await;
    assert_eq!(stopped.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert_eq!(
        stopped.stopped_reason.as_deref(),
        Some(
            "ResourceInitializationError: unable to pull secrets or registry auth: no such secret"
        )
    );
    assert!(container(&f, &refused_arn, "app").is_none());
    // Images without a registry host and no secrets: the server is not asked.
    let plain = task(
        "c3",
        json!([{"name": "app", "image": "app:1", "memory": 16}]),
    );
    let plain_arn = plain.task_arn.clone();
    cp.assign(plain);
    reported(&cp, &plain_arn, "RUNNING").await;
    assert_eq!(
        cp.state.lock().credential_requests,
        vec![ok_arn.clone(), refused_arn.clone()]
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_containers_and_stops_orphans() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    let first = start(config(&cp, dir.path()), Ok(f.clone().into()));
    let keep = task("keep", two_containers());
    let orphan = task(
        "orphan",
        json!([{"name": "app", "image": "app:1", "memory": 16}]),
    );
    let (keep_arn, orphan_arn) = (keep.task_arn.clone(), orphan.task_arn.clone());
    cp.assign(keep);
    cp.assign(orphan);
    reported(&cp, &keep_arn, "RUNNING").await;
    reported(&cp, &orphan_arn, "RUNNING").await;
    first.shutdown().await;
    assert_eq!(creates(&f), 3);

    // While the agent is down, the server forgets one task (say it was deregistered).
    cp.state.lock().tasks.retain(|t| t.task_arn != orphan_arn);
    let orphan_id = container(&f, &orphan_arn, "app").expect("orphan container");

    let second = start(config(&cp, dir.path()), Ok(f.clone().into()));
    let reg = eventually("re-registration", || {
        second.registered.lock().first().cloned()
    })
    .await;
    assert_eq!(
        reg.instance_id, "inst-1",
        "the same container instance comes back"
    );
    assert_eq!(cp.state.lock().instances.len(), 1);
    let stopped = reported(&cp, &orphan_arn, "STOPPED").await;
    assert_eq!(
        stopped.containers[0].runtime_id.as_deref(),
        Some(orphan_id.0.as_str())
    );
    assert!(
        f.calls()
            .iter()
            .any(|c| matches!(c, Call::Stop { id, .. } if *id == orphan_id))
    );

    // The kept task runs on in the same containers: nothing is created again.
    let app = container(&f, &keep_arn, "app").expect("app");
    eventually("the adopted task is watched", || {
        f.calls()
            .iter()
            .any(|c| matches!(c, Call::Inspect(id) if *id == app))
            .then_some(())
    })
    .await;
    assert_eq!(creates(&f), 3);
    assert!(
        !f.calls()
            .iter()
            .any(|c| matches!(c, Call::Stop { id, .. } if *id == app))
    );
    cp.stop_task(&keep_arn, "done");
    let stopped = reported(&cp, &keep_arn, "STOPPED").await;
    assert!(stopped.containers.iter().all(|c| c.status == "STOPPED"));
    assert_eq!(creates(&f), 3);
    second.shutdown().await;
}

#[tokio::test]
async fn tasks_keep_running_while_the_server_is_away_and_reports_arrive_later() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    let agent = start(config(&cp, dir.path()), Ok(f.clone().into()));
    let t = task("t5", two_containers());
    let arn = t.task_arn.clone();
    cp.assign(t);
    reported(&cp, &arn, "RUNNING").await;
    let app = container(&f, &arn, "app").expect("app");

    cp.stop();
    // A while with no server: the task is left alone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !f.calls()
            .iter()
            .any(|c| matches!(c, Call::Stop { .. } | Call::Remove(_)))
    );

    // Something happens meanwhile; its report waits for the server.
    f.exit(&app, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cp.latest(&arn).map(|s| s.status), Some("RUNNING".into()));

    cp.restart().await;
    let stopped = reported(&cp, &arn, "STOPPED").await;
    assert_eq!(
        stopped.stop_code.as_deref(),
        Some("EssentialContainerExited")
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn a_node_without_a_runtime_registers_as_unable_to_run_tasks() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start(
        config(&cp, dir.path()),
        Err(RuntimeError::Unavailable("no docker socket".into())),
    );
    let reg = eventually("registration", || agent.registered.lock().first().cloned()).await;
    assert!(!reg.can_run_tasks);
    assert!(
        reg.reason
            .as_deref()
            .is_some_and(|r| r.contains("no docker socket"))
    );
    let req = cp.state.lock().registrations[0].clone();
    assert!(!req.can_run_tasks);
    assert!(req.cannot_run_reason.is_some());
    eventually("polling", || (cp.state.lock().polls > 0).then_some(())).await;
    agent.shutdown().await;
}

#[tokio::test]
async fn stopped_containers_are_removed_after_the_cleanup_delay() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    let mut c = config(&cp, dir.path());
    c.cleanup_after = Duration::from_millis(100);
    let agent = start(c, Ok(f.clone().into()));
    let t = task(
        "t6",
        json!([{"name": "app", "image": "app:1", "memory": 16}]),
    );
    let arn = t.task_arn.clone();
    cp.assign(t);
    reported(&cp, &arn, "RUNNING").await;
    let app = container(&f, &arn, "app").expect("app");
    f.exit(&app, 0);
    reported(&cp, &arn, "STOPPED").await;
    eventually("removal", || {
        f.calls()
            .iter()
            .any(|c| matches!(c, Call::Remove(id) if *id == app))
            .then_some(())
    })
    .await;
    agent.shutdown().await;
}

#[tokio::test]
async fn task_usage_is_sampled_and_shipped_in_ecs_cpu_units_and_mib() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    let mut c = config(&cp, dir.path());
    c.metrics_interval = Duration::from_millis(20);
    let agent = start(c, Ok(f.clone().into()));

    let t = task("busy", two_containers());
    let arn = t.task_arn.clone();
    cp.assign(t);
    reported(&cp, &arn, "RUNNING").await;
    let app = container(&f, &arn, "app").expect("app");
    let side = container(&f, &arn, "sidecar").expect("sidecar");
    let mib = 1024 * 1024;
    let sample = |cpu_s: u64, system_s: u64, memory_mib: u64| StatsSample {
        cpu_total_ns: cpu_s * 1_000_000_000,
        system_cpu_ns: system_s * 1_000_000_000,
        online_cpus: 2,
        memory_usage_bytes: memory_mib * mib,
        memory_limit_bytes: 64 * mib,
        ..Default::default()
    };
    // The sampler has read these once it makes a stats call after they were set (the fake
    // reads the value under the lock that records the call).
    let seen_after = |f: &FakeRuntime, id: &ContainerId| {
        f.take_calls();
        let f = f.clone();
        let id = id.clone();
        move || {
            f.calls()
                .iter()
                .any(|c| matches!(c, Call::Stats(s) if *s == id))
                .then_some(())
        }
    };
    // The sidecar idles (its CPU time stays put); only the app's counters move, so every
    // sample the sampler takes is one of two consistent states.
    f.set_stats(&side, sample(3, 100, 8));
    f.set_stats(&app, sample(10, 100, 40));
    eventually("a first sample", seen_after(&f, &app)).await;
    // 10 s of host time on 2 CPUs is 5 s; the app used 5 s of CPU: one core, 1024 units.
    f.set_stats(&app, sample(15, 110, 40));
    let usage = eventually("the task's usage", || {
        cp.state
            .lock()
            .metrics
            .iter()
            .flat_map(|m| m.tasks.iter())
            .find(|u| u.task_arn == arn && u.cpu_units > 1000.0)
            .cloned()
    })
    .await;
    assert!((usage.cpu_units - 1024.0).abs() < 1e-6, "{usage:?}");
    assert!((usage.memory_mib - 48.0).abs() < 1e-9, "{usage:?}");
    let reports = cp.state.lock().metrics.clone();
    assert!(reports.iter().all(|m| m.instance_id == "inst-1"));
    // A task's usage is never shipped twice in one report.
    for m in &reports {
        let mut arns: Vec<&str> = m.tasks.iter().map(|t| t.task_arn.as_str()).collect();
        arns.sort_unstable();
        arns.dedup();
        assert_eq!(arns.len(), m.tasks.len(), "{m:?}");
    }

    // Once the task stops, it is no longer sampled.
    f.exit(&app, 0);
    reported(&cp, &arn, "STOPPED").await;
    let before = cp.state.lock().metrics.len();
    eventually("two more reports", || {
        (cp.state.lock().metrics.len() >= before + 2).then_some(())
    })
    .await;
    let last = cp.state.lock().metrics.last().cloned().expect("a report");
    assert!(last.tasks.is_empty(), "{last:?}");
    agent.shutdown().await;
}

/// `GET url` over a fresh connection: the status and the body as JSON (null if it is not);
/// status 0 when nothing listens (yet).
async fn http_get(url: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else {
        return (0, serde_json::Value::Null);
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn env_of(f: &FakeRuntime, id: &ContainerId, name: &str) -> Option<String> {
    f.spec(id)?
        .env
        .into_iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn containers_read_their_task_metadata_in_ecs_shapes() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    // The fake's bridge gateway is loopback: bridge containers' URIs then work from the test.
    f.set_bridge_gateway(Some(std::net::Ipv4Addr::LOCALHOST.into()));
    let mut c = config(&cp, dir.path());
    c.attributes
        .push(("ecs.availability-zone".into(), Some("us-east-1a".into())));
    let agent = start(c, Ok(f.clone().into()));

    let mut t = task(
        "meta1",
        json!([
            {"name": "app", "image": "app:1", "cpu": 128, "memory": 64,
             "portMappings": [{"containerPort": 80}],
             "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
             "dependsOn": [{"containerName": "sidecar", "condition": "START"}]},
            {"name": "sidecar", "image": "side:1", "essential": false, "memory": 32,
             "environment": [{"name": "ECS_CONTAINER_METADATA_URI_V4", "value": "http://mine"}]}
        ]),
    );
    t.task_definition["cpu"] = json!("256");
    t.task_definition["memory"] = json!("512");
    let arn = t.task_arn.clone();
    cp.assign(t);
    reported(&cp, &arn, "RUNNING").await;
    let app = container(&f, &arn, "app").expect("app created");
    let side = container(&f, &arn, "sidecar").expect("sidecar created");

    let v4 = env_of(&f, &app, "ECS_CONTAINER_METADATA_URI_V4").expect("the v4 variable");
    let v3 = env_of(&f, &app, "ECS_CONTAINER_METADATA_URI").expect("the v3 variable");
    assert!(v4.starts_with("http://127.0.0.1:"), "{v4}");
    let token = v4.rsplit('/').next().expect("a token").to_string();
    assert!(v4.ends_with(&format!("/v4/{token}")) && v3.ends_with(&format!("/v3/{token}")));
    assert_eq!(token.len(), 36, "a UUID-shaped token: {token}");
    assert!(!token.contains(app.as_str()) && !v4.contains(&arn));
    // A variable the definition sets itself is kept.
    assert_eq!(
        env_of(&f, &side, "ECS_CONTAINER_METADATA_URI_V4").as_deref(),
        Some("http://mine")
    );
    let side_v3 = env_of(&f, &side, "ECS_CONTAINER_METADATA_URI").expect("the sidecar's v3");

    // The container's own document, once the agent has inspected it running.
    let me = eventually_get(&v4, |doc| {
        doc["Networks"][0]["IPv4Addresses"][0].is_string()
    })
    .await;
    assert_eq!(me["DockerId"], app.as_str());
    assert_eq!(me["Name"], "app");
    assert_eq!(me["DockerName"], "ecs-web-3-app-meta1");
    assert_eq!(me["Image"], "app:1");
    assert!(
        me["ImageID"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:"))
    );
    assert_eq!(me["Labels"][labels::TASK_ARN], arn.as_str());
    assert_eq!(me["Labels"][labels::CLUSTER], "default");
    assert_eq!(me["DesiredStatus"], "RUNNING");
    assert_eq!(me["KnownStatus"], "RUNNING");
    assert_eq!(me["Limits"], json!({"CPU": 128.0, "Memory": 64}));
    assert_eq!(me["Type"], "NORMAL");
    assert_eq!(me["LogDriver"], "json-file");
    assert_eq!(me["LogOptions"], json!({"max-size": "10m"}));
    assert_eq!(me["Networks"][0]["NetworkMode"], "bridge");
    assert_eq!(me["Ports"][0]["ContainerPort"], 80);
    assert_eq!(me["Ports"][0]["Protocol"], "tcp");
    assert!(me["Ports"][0]["HostPort"].as_u64().is_some_and(|p| p > 0));
    assert!(me["CreatedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(me["StartedAt"].is_string());
    assert!(me.get("ExitCode").is_none() && me.get("FinishedAt").is_none());

    let (status, task_doc) = http_get(&format!("{v4}/task")).await;
    assert_eq!(status, 200);
    assert_eq!(task_doc["Cluster"], "default");
    assert_eq!(task_doc["TaskARN"], arn.as_str());
    assert_eq!(task_doc["Family"], "web");
    assert_eq!(task_doc["Revision"], "3");
    assert_eq!(task_doc["DesiredStatus"], "RUNNING");
    assert_eq!(task_doc["KnownStatus"], "RUNNING");
    assert_eq!(task_doc["Limits"], json!({"CPU": 0.25, "Memory": 512}));
    assert_eq!(task_doc["LaunchType"], "EC2");
    assert_eq!(task_doc["AvailabilityZone"], "us-east-1a");
    assert!(task_doc["PullStartedAt"].is_string() && task_doc["PullStoppedAt"].is_string());
    let names: Vec<&str> = task_doc["Containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["Name"].as_str())
        .collect();
    assert_eq!(names, ["sidecar", "app"]);

    // Version 3, through the sidecar's own URI: its document, without v4's additions.
    let (status, side_doc) = http_get(&side_v3).await;
    assert_eq!(status, 200);
    assert_eq!(side_doc["DockerId"], side.as_str());
    let (_, v3_task) = http_get(&format!("{side_v3}/task")).await;
    assert_eq!(v3_task["TaskARN"], arn.as_str());
    assert!(v3_task.get("LaunchType").is_none());
    assert!(
        v3_task["Containers"]
            .as_array()
            .expect("containers")
            .iter()
            .all(|c| c.get("LogDriver").is_none())
    );

    // Stats as Docker shapes them, for the container and for the whole task.
    f.set_stats(
        &app,
        StatsSample {
            cpu_total_ns: 5_000,
            system_cpu_ns: 9_000,
            online_cpus: 2,
            memory_usage_bytes: 1234,
            memory_limit_bytes: 64 << 20,
            ..StatsSample::default()
        },
    );
    let (status, stats) = http_get(&format!("{v4}/stats")).await;
    assert_eq!(status, 200);
    assert_eq!(stats["cpu_stats"]["cpu_usage"]["total_usage"], 5_000);
    assert_eq!(stats["memory_stats"]["usage"], 1234);
    let (status, task_stats) = http_get(&format!("{v4}/task/stats")).await;
    assert_eq!(status, 200);
    let mut ids: Vec<&String> = task_stats.as_object().expect("a map").keys().collect();
    ids.sort();
    let mut want = vec![&app.0, &side.0];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(task_stats[app.as_str()]["memory_stats"]["usage"], 1234);

    // Anything else is not found: another token, another path.
    let base = v4.trim_end_matches(&token);
    let (status, _) = http_get(&format!("{base}00000000-0000-4000-8000-000000000000")).await;
    assert_eq!(status, 404);
    let (status, _) = http_get(&format!("{v4}/taskWithTags/extra")).await;
    assert_eq!(status, 404);

    // A stopped task is forgotten.
    cp.stop_task(&arn, "done");
    reported(&cp, &arn, "STOPPED").await;
    eventually_status(&v4, 404).await;
    agent.shutdown().await;
}

/// GETs `url` until its document satisfies `ready`.
async fn eventually_get(
    url: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, doc) = http_get(url).await;
        if status == 200 && ready(&doc) {
            return doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {url}: {status} {doc}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn eventually_status(url: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = http_get(url).await;
        if status == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {url} to answer {want}, last {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_restarted_agent_serves_adopted_containers_at_their_old_uri() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fake();
    // Another loopback address, so the bridge listener can take the same port as loopback's.
    f.set_bridge_gateway(Some(std::net::Ipv4Addr::new(127, 0, 0, 2).into()));
    // A fixed port, as in production: the URI is baked into the container at create time.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut c = config(&cp, dir.path());
    c.metadata_port = Some(port);
    let first = start(c.clone(), Ok(f.clone().into()));
    let t = task(
        "adopted",
        json!([{"name": "app", "image": "app:1", "memory": 16}]),
    );
    let arn = t.task_arn.clone();
    cp.assign(t);
    reported(&cp, &arn, "RUNNING").await;
    let app = container(&f, &arn, "app").expect("app");
    let uri = env_of(&f, &app, "ECS_CONTAINER_METADATA_URI_V4").expect("a URI");
    assert!(
        uri.starts_with(&format!("http://127.0.0.2:{port}/v4/")),
        "{uri}"
    );
    eventually_get(&uri, |d| d["DockerId"] == app.as_str()).await;
    first.shutdown().await;

    // The token comes from the node's key, kept in the data dir: the old URI works again.
    let second = start(c, Ok(f.clone().into()));
    let doc = eventually_get(&format!("{uri}/task"), |d| d["KnownStatus"] == "RUNNING").await;
    assert_eq!(doc["TaskARN"], arn.as_str());
    assert_eq!(doc["Containers"][0]["DockerId"], app.as_str());
    assert_eq!(creates(&f), 1);
    second.shutdown().await;
}
