//! The agent → server metrics path with the fake runtime: a real agent samples a busy task and
//! ships the samples over the agent protocol to the real agent endpoints, which resolve them
//! against the store and publish ECS's utilization datapoints to the sink.

use super::{AgentApi, publish_metrics, router};
use berth_aws::{JsonService, RequestContext};
use berth_ecs::utilization::{CPU_UTILIZATION, MEMORY_UTILIZATION, Metric};
use berth_runtime::{FakeRuntime, StatsSample};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const JOIN_TOKEN: &str = "join-secret";
const WAIT: Duration = Duration::from_secs(20);

fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

async fn call(ecs: &berth_ecs::Ecs, op: &str, body: serde_json::Value) {
    ecs.call(ctx(), op, body)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e:?}"));
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dimension<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.dimensions
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_service_task_is_published_as_ecs_utilization() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: berth_store::AnyStore = berth_store::SqliteStore::open(&dir.path().join("b.db"))
        .expect("store")
        .into();
    let ecs = berth_ecs::Ecs::new(store.clone(), [7; 32], berth_ecs::system_clock());
    let logs = berth_logs::Logs::new(store, [7; 32], berth_logs::system_clock());
    let published: Arc<Mutex<Vec<(String, Metric)>>> = Arc::default();
    let sink = published.clone();
    let agents = Arc::new(AgentApi {
        ecs: ecs.clone(),
        logs,
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        join_token: JOIN_TOKEN.into(),
        poll_wait: Duration::from_millis(200),
        utilization: Mutex::new(berth_ecs::utilization::Aggregator::new(300, 1)),
        metrics: Arc::new(move |partition: &str, points: Vec<Metric>| {
            let mut out = sink.lock().expect("lock");
            out.extend(points.into_iter().map(|p| (partition.to_owned(), p)));
        }),
        registry_login: Arc::new(|| berth_ecr::PullCredentials {
            host: "127.0.0.1:1".into(),
            username: "AWS".into(),
            password: "unused".into(),
            expires_at_ms: 0,
        }),
        secrets: Arc::new(|_, _| Box::pin(async { Err("no secrets here".to_owned()) })),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn({
        let app = router(agents.clone());
        async move {
            let _ = axum::serve(listener, app).await;
        }
    });
    let publisher = tokio::spawn(publish_metrics(agents.clone()));

    call(
        &ecs,
        "CreateCluster",
        serde_json::json!({"clusterName": "default"}),
    )
    .await;
    call(
        &ecs,
        "RegisterTaskDefinition",
        serde_json::json!({
            "family": "busy", "cpu": "512", "memory": "1024",
            "containerDefinitions": [{"name": "app", "image": "busy:1", "essential": true}]
        }),
    )
    .await;
    call(
        &ecs,
        "CreateService",
        serde_json::json!({"serviceName": "web", "taskDefinition": "busy", "desiredCount": 1}),
    )
    .await;
    let controller = tokio::spawn({
        let ecs = ecs.clone();
        async move {
            loop {
                let _ = berth_ecs::service_controller::reconcile(&ecs, &ctx()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let fake = FakeRuntime::new();
    let mut config = berth_agent::Config::new(&url, "default", dir.path().join("agent"));
    config.join_token = Some(JOIN_TOKEN.into());
    config.tick = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    config.metrics_interval = Duration::from_millis(50);
    let agent = berth_agent::Agent::new(config, Ok(fake.clone().into())).expect("agent");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let _ = agent
            .run(|_| {}, async {
                let _ = stopped.await;
            })
            .await;
    });

    let app = eventually("the service's container", || {
        fake.container_ids().into_iter().next()
    })
    .await;
    fake.set_stats(
        &app,
        StatsSample {
            online_cpus: 2,
            memory_usage_bytes: 256 * 1024 * 1024,
            ..StatsSample::default()
        },
    );
    // One core busy: 1024 units against the 512 the task reserves.
    fake.set_cpu_load(&app, 1.0);

    let want = |m: &Metric, name: &str, service: Option<&str>| {
        m.metric_name == name
            && dimension(m, "ClusterName") == Some("default")
            && dimension(m, "ServiceName") == service
    };
    // Early windows may hold samples from before the load or the task's RUNNING; a window
    // with only loaded samples shows exactly what ECS's formula gives.
    let busy = eventually("a window of the busy service", || {
        published
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, m)| {
                want(m, CPU_UTILIZATION, Some("web")) && (m.average() - 200.0).abs() < 1e-6
            })
            .cloned()
    })
    .await;
    let (partition, cpu) = busy;
    assert_eq!(partition, "000000000000/us-east-1");
    assert_eq!(
        (cpu.sample_count, cpu.minimum, cpu.maximum),
        (1.0, 200.0, 200.0)
    );
    assert_eq!(cpu.storage_resolution, 1);
    assert_eq!(cpu.timestamp_ms % 300, 0);
    let same_window = |name: &str, service: Option<&str>| {
        published
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, m)| m)
            .find(|m| m.timestamp_ms == cpu.timestamp_ms && want(m, name, service))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} {service:?} in the busy window"))
    };
    // 256 of the task's 1024 MiB.
    let memory = same_window(MEMORY_UTILIZATION, Some("web"));
    assert!((memory.average() - 25.0).abs() < 1e-6, "{memory:?}");
    // The cluster: 1024 of the 2048 units its one instance registered (2 CPUs), 256 of its
    // 3840 MiB (4096 less the agent's reserve).
    let cluster_cpu = same_window(CPU_UTILIZATION, None);
    assert!(
        (cluster_cpu.average() - 50.0).abs() < 1e-6,
        "{cluster_cpu:?}"
    );
    let cluster_memory = same_window(MEMORY_UTILIZATION, None);
    assert!(
        (cluster_memory.average() - 100.0 * 256.0 / 3840.0).abs() < 1e-6,
        "{cluster_memory:?}"
    );
    // One datapoint per metric and dimensions per window.
    let in_window = published
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, m)| m.timestamp_ms == cpu.timestamp_ms)
        .count();
    assert_eq!(in_window, 4);

    // A report with a node token the server does not know is refused.
    let client = berth_agent::client::Client::new(&url).expect("client");
    let refused = client
        .ship_metrics(
            "not-a-token",
            &berth_agent_api::MetricsReport {
                instance_id: "nope".into(),
                tasks: vec![],
            },
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(berth_agent::client::ClientError::Unauthorized(_))
        ),
        "{refused:?}"
    );

    let _ = stop.send(());
    let _ = tokio::time::timeout(WAIT, agent).await;
    controller.abort();
    publisher.abort();
    server.abort();
}
