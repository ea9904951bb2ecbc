//! Deterministic simulation of the service controller and placement: hundreds of fake nodes
//! speaking the real agent protocol (`nodes::poll`/`nodes::report`) on a virtual clock, services
//! of every kind, and a seeded stream of trouble — nodes dying, containers crashing, deployments,
//! scaling. After every step the invariants ECS promises are checked against the store:
//!
//! - no instance holds more than it registered, and what it has left matches its tasks;
//! - a pass never takes a service above `maximumPercent`, nor stops healthy tasks below
//!   `minimumHealthyPercent` while replacing them;
//! - no task is counted live on an instance the liveness sweep found dead;
//! - `memberOf` and `distinctInstance` hold for every task placed;
//! - once the trouble stops, every service converges to its desired count, steady.

use super::{JOIN, T0, ctx};
use berth_agent_api as api;
use berth_aws::JsonService;
use berth_ecs::nodes::{self, SweepPolicy};
use berth_ecs::{ContainerInstanceRecord, Ecs, ServiceRecord, TaskRecord, kinds};
use berth_store::{AnyStore, SqliteStore, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Longer than an agent takes to count as disconnected (60 s), as in production (300 s): by
/// the time the sweep stops a dead node's tasks, placement no longer picks the node.
const GRACE_MS: i64 = 90_000;
const STEP_MS: i64 = 5_000;

struct Node {
    reg: api::RegisterResponse,
    zone: &'static str,
    alive: bool,
    died_at: Option<i64>,
}

struct Sim {
    ecs: Ecs,
    store: AnyStore,
    clock: Arc<AtomicI64>,
    rng: StdRng,
    nodes: Vec<Node>,
    /// Tasks the fake agents reported RUNNING, so each is reported once.
    running: BTreeSet<String>,
    /// Tasks of these families crash as soon as they start.
    crashing: BTreeSet<String>,
    /// Crash probability of any running task per step.
    crash_rate: f64,
}

async fn records<T: DeserializeOwned>(store: &AnyStore, kind: &str) -> Vec<T> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(kind, &ctx().partition(), "", after.as_deref(), 1000)
            .await
            .expect("list");
        let done = page.len() < 1000;
        for r in page {
            after = Some(r.key.clone());
            out.push(serde_json::from_value(r.value).expect("record"));
        }
        if done {
            return out;
        }
    }
}

fn state(arn: &str, status: &str, stop_code: Option<&str>) -> api::TaskState {
    api::TaskState {
        task_arn: arn.into(),
        status: status.into(),
        containers: vec![],
        stop_code: stop_code.map(str::to_string),
        stopped_reason: stop_code.map(|_| "Essential container in task exited".to_string()),
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        execution_stopped_at: None,
        health_status: None,
    }
}

impl Sim {
    async fn new(seed: u64, nodes: usize) -> Sim {
        let store: AnyStore = SqliteStore::open_in_memory().expect("store").into();
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let ecs = Ecs::new(
            store.clone(),
            [9u8; 32],
            Arc::new(move || c.load(Ordering::SeqCst)),
        );
        let mut sim = Sim {
            ecs,
            store,
            clock,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            running: BTreeSet::new(),
            crashing: BTreeSet::new(),
            crash_rate: 0.0,
        };
        sim.ok("CreateCluster", json!({})).await;
        for _ in 0..nodes {
            sim.join().await;
        }
        sim
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        match self.ecs.call(ctx(), op, input.clone()).await {
            Ok(b) => serde_json::from_slice(&b).expect("JSON"),
            Err(e) => panic!("{op} {input} failed: {e}"),
        }
    }

    async fn join(&mut self) {
        let zone = ["a", "b", "c"][self.nodes.len() % 3];
        let req = api::RegisterRequest {
            cluster: "default".into(),
            join_token: Some(JOIN.into()),
            instance_id: None,
            node_token: None,
            resources: api::Resources {
                cpu: 1024,
                memory_mib: 2048,
                reserved_ports: vec![22],
                reserved_udp_ports: vec![],
            },
            attributes: vec![api::Attribute {
                name: "ecs.availability-zone".into(),
                value: Some(zone.into()),
            }],
            version: api::VersionInfo {
                agent_version: "sim".into(),
                agent_hash: None,
                docker_version: None,
            },
            can_run_tasks: true,
            cannot_run_reason: None,
            host_id: format!("sim-{}", self.nodes.len()),
        };
        let reg = nodes::register(&self.ecs, &ctx(), JOIN, req)
            .await
            .expect("register");
        self.nodes.push(Node {
            reg,
            zone,
            alive: true,
            died_at: None,
        });
    }

    /// Every live fake agent heartbeats and reports what its "containers" do with the tasks the
    /// control plane assigned it (read once per step for all nodes: what each node's long poll
    /// would answer, without a scan per node).
    async fn agents(&mut self) {
        let tasks = self.tasks().await;
        let mut by_node: BTreeMap<&str, Vec<&TaskRecord>> = BTreeMap::new();
        for t in tasks.iter().filter(|t| t.last_status != "STOPPED") {
            by_node
                .entry(t.container_instance_id.as_str())
                .or_default()
                .push(t);
        }
        for n in 0..self.nodes.len() {
            if !self.nodes[n].alive {
                continue;
            }
            let reg = self.nodes[n].reg.clone();
            nodes::heartbeat(&self.ecs, &ctx(), &reg.instance_id, Some(&reg.node_token))
                .await
                .expect("heartbeat");
            let mut report = Vec::new();
            for t in by_node.get(reg.instance_id.as_str()).into_iter().flatten() {
                let family = t.definition.family.clone().unwrap_or_default();
                if t.desired_status == "STOPPED" {
                    report.push(state(&t.arn, "STOPPED", None));
                } else if !self.running.contains(&t.arn) {
                    if self.crashing.contains(&family) {
                        report.push(state(&t.arn, "STOPPED", Some("EssentialContainerExited")));
                    } else if self.rng.gen_bool(0.7) {
                        // Some tasks take a few steps to pull and start.
                        self.running.insert(t.arn.clone());
                        report.push(state(&t.arn, "RUNNING", None));
                    }
                } else if self.rng.gen_bool(self.crash_rate) {
                    report.push(state(&t.arn, "STOPPED", Some("EssentialContainerExited")));
                }
            }
            if !report.is_empty() {
                nodes::report(
                    &self.ecs,
                    &ctx(),
                    Some(&reg.node_token),
                    api::StateReport {
                        instance_id: reg.instance_id.clone(),
                        tasks: report,
                    },
                )
                .await
                .expect("report");
            }
        }
    }

    async fn tasks(&self) -> Vec<TaskRecord> {
        records(&self.store, kinds::TASK).await
    }

    async fn services(&self) -> Vec<ServiceRecord> {
        records(&self.store, kinds::SERVICE).await
    }

    /// One step: time passes, agents act, the sweep and the controller run; the invariants
    /// are checked around the controller's pass.
    async fn step(&mut self) {
        self.clock.fetch_add(STEP_MS, Ordering::SeqCst);
        self.agents().await;
        let policy = SweepPolicy {
            grace_ms: GRACE_MS,
            // Forget STOPPED tasks soon, so the store stays the size of the fleet.
            keep_stopped_ms: 60_000,
        };
        nodes::sweep(&self.ecs, &ctx(), policy)
            .await
            .expect("sweep");
        let before = self.tasks().await;
        let services_before = self.services().await;
        berth_ecs::service_controller::reconcile(&self.ecs, &ctx())
            .await
            .expect("reconcile");
        let after = self.tasks().await;
        self.check_pass(&services_before, &before, &after);
        self.check_instances(&after).await;
    }

    /// The controller's pass kept each service within its percentages.
    fn check_pass(&self, services: &[ServiceRecord], before: &[TaskRecord], after: &[TaskRecord]) {
        for s in services
            .iter()
            .filter(|s| s.scheduling_strategy == "REPLICA")
        {
            let group = format!("service:{}", s.name);
            let mine = |ts: &[TaskRecord]| -> Vec<TaskRecord> {
                ts.iter()
                    .filter(|t| t.group == group && t.last_status != "STOPPED")
                    .cloned()
                    .collect()
            };
            let (b, a) = (mine(before), mine(after));
            let desired = u64::try_from(s.desired_count).unwrap_or(0);
            let max_pct = u64::try_from(s.deployment_configuration.maximum_percent.unwrap_or(200))
                .unwrap_or(0);
            let min_pct = u64::try_from(
                s.deployment_configuration
                    .minimum_healthy_percent
                    .unwrap_or(100),
            )
            .unwrap_or(0);
            let cap = (desired * max_pct / 100).max(u64::from(desired > 0)) as usize;
            assert!(
                a.len() <= cap.max(b.len()),
                "{}: {} tasks hold a place after the pass, cap {cap}, {} before",
                s.name,
                a.len(),
                b.len()
            );
            let healthy: Vec<&TaskRecord> = b
                .iter()
                .filter(|t| t.last_status == "RUNNING" && t.desired_status == "RUNNING")
                .collect();
            let replaced = healthy
                .iter()
                .filter(|t| {
                    a.iter().any(|x| {
                        x.id == t.id
                            && x.desired_status == "STOPPED"
                            && x.stopped_reason
                                .as_deref()
                                .is_some_and(|r| r.starts_with("Scaling activity"))
                    })
                })
                .count();
            // Scaling in may go below the floor; replacing may not.
            let primary_live = a
                .iter()
                .filter(|t| {
                    t.desired_status == "RUNNING"
                        && s.deployments
                            .first()
                            .is_some_and(|d| t.started_by.as_deref() == Some(d.id.as_str()))
                })
                .count() as u64;
            if primary_live <= desired {
                let floor = (desired * min_pct).div_ceil(100) as usize;
                assert!(
                    healthy.len() - replaced >= floor.min(healthy.len()),
                    "{}: {} healthy, {replaced} stopped by the pass, floor {floor}",
                    s.name,
                    healthy.len()
                );
            }
        }
    }

    /// Resources add up on every instance; nothing is live on a node found dead; placement
    /// constraints hold.
    async fn check_instances(&self, tasks: &[TaskRecord]) {
        let instances: Vec<ContainerInstanceRecord> =
            records(&self.store, kinds::CONTAINER_INSTANCE).await;
        let now = self.now();
        for i in &instances {
            let on: Vec<&TaskRecord> = tasks
                .iter()
                .filter(|t| t.container_instance_id == i.id && t.last_status != "STOPPED")
                .collect();
            let cpu: i64 = on.iter().map(|t| t.reserved.cpu).sum();
            let memory: i64 = on.iter().map(|t| t.reserved.memory).sum();
            assert!(
                cpu <= i.registered.cpu && memory <= i.registered.memory,
                "{} oversubscribed",
                i.id
            );
            assert_eq!(
                i.remaining.cpu,
                i.registered.cpu - cpu,
                "{} cpu accounting",
                i.id
            );
            assert_eq!(
                i.remaining.memory,
                i.registered.memory - memory,
                "{} memory accounting",
                i.id
            );
            let node = self
                .nodes
                .iter()
                .find(|n| n.reg.instance_id == i.id)
                .expect("a node");
            if let Some(died) = node.died_at
                && now - died > GRACE_MS + STEP_MS
            {
                assert!(
                    on.is_empty(),
                    "{} is dead but holds {} live tasks",
                    i.id,
                    on.len()
                );
            }
            let zone_a = node.zone == "a";
            let api_here = on
                .iter()
                .filter(|t| t.group == "service:api" && t.desired_status == "RUNNING")
                .count();
            assert!(
                zone_a || api_here == 0,
                "memberOf broken: api task in zone {}",
                node.zone
            );
            let solo = on
                .iter()
                .filter(|t| t.group == "service:solo" && t.desired_status == "RUNNING")
                .count();
            assert!(
                solo <= 1,
                "distinctInstance broken: {solo} solo tasks on {}",
                i.id
            );
        }
    }

    async fn steady(&self) -> bool {
        let tasks = self.tasks().await;
        self.services()
            .await
            .iter()
            .filter(|s| s.status == "ACTIVE")
            .all(|s| {
                let running = tasks
                    .iter()
                    .filter(|t| {
                        t.group == format!("service:{}", s.name)
                            && t.last_status == "RUNNING"
                            && t.desired_status == "RUNNING"
                    })
                    .count() as i32;
                s.steady && running == s.desired_count
            })
    }
}

/// Runs one seeded history and checks the invariants all along.
async fn history(seed: u64, nodes: usize, steps: usize) {
    let mut sim = Sim::new(seed, nodes).await;
    for (family, cpu, memory) in [
        ("web", 256, 256),
        ("api", 128, 128),
        ("solo", 64, 64),
        ("agent", 16, 16),
        ("bad", 64, 64),
    ] {
        sim.ok(
            "RegisterTaskDefinition",
            json!({"family": family, "containerDefinitions": [{
                "name": "app", "image": "busybox", "cpu": cpu, "memory": memory,
                "portMappings": [{"containerPort": 80}]
            }]}),
        )
        .await;
    }
    sim.crashing.insert("bad".into());
    sim.ok(
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": nodes / 3,
               "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
                   "deploymentCircuitBreaker": {"enable": true, "rollback": true}}}),
    )
    .await;
    sim.ok(
        "CreateService",
        json!({"serviceName": "api", "taskDefinition": "api", "desiredCount": nodes / 4,
               "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone == a"}],
               "placementStrategy": [{"type": "binpack", "field": "memory"}],
               "deploymentConfiguration": {"maximumPercent": 150, "minimumHealthyPercent": 50}}),
    )
    .await;
    sim.ok(
        "CreateService",
        json!({"serviceName": "solo", "taskDefinition": "solo", "desiredCount": nodes / 10,
               "placementConstraints": [{"type": "distinctInstance"}],
               "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 0}}),
    )
    .await;
    sim.ok(
        "CreateService",
        json!({"serviceName": "agent", "taskDefinition": "agent", "schedulingStrategy": "DAEMON"}),
    )
    .await;
    sim.crash_rate = 0.002;
    let names = ["web", "api", "solo"];
    for _ in 0..steps {
        let roll: f64 = sim.rng.gen_range(0.0..1.0);
        if roll < 0.03 {
            // A node dies (its agent goes silent).
            let alive: Vec<usize> = (0..sim.nodes.len())
                .filter(|i| sim.nodes[*i].alive)
                .collect();
            if alive.len() > nodes / 2 {
                let i = alive[sim.rng.gen_range(0..alive.len())];
                sim.nodes[i].alive = false;
                sim.nodes[i].died_at = Some(sim.now());
            }
        } else if roll < 0.05 {
            sim.join().await;
        } else if roll < 0.09 {
            let name = names[sim.rng.gen_range(0..names.len())];
            sim.ok(
                "UpdateService",
                json!({"service": name, "forceNewDeployment": true}),
            )
            .await;
        } else if roll < 0.11 {
            let name = names[sim.rng.gen_range(0..names.len())];
            let n = sim.rng.gen_range(0..=(nodes / 3));
            sim.ok("UpdateService", json!({"service": name, "desiredCount": n}))
                .await;
        } else if roll < 0.12 {
            // A bad revision: the circuit breaker must take web back.
            sim.ok(
                "UpdateService",
                json!({"service": "web", "taskDefinition": "bad"}),
            )
            .await;
        }
        sim.step().await;
    }
    // Calm: no more deaths, crashes or changes. Everything converges. (A bad revision whose
    // deployment completed — e.g. while scaled to 0 — crash-loops as it would on ECS: the
    // operator puts the good one back.)
    sim.crash_rate = 0.0;
    let services = sim.services().await;
    if services
        .iter()
        .any(|s| s.name == "web" && s.task_definition.contains("task-definition/bad:"))
    {
        sim.ok(
            "UpdateService",
            json!({"service": "web", "taskDefinition": "web"}),
        )
        .await;
    }
    // Long enough for every dead node to be found dead first.
    for _ in 0..=(GRACE_MS / STEP_MS) {
        sim.step().await;
    }
    let mut calm = 0;
    while !sim.steady().await {
        sim.step().await;
        calm += 1;
        assert!(calm < 300, "no convergence after {calm} calm steps");
    }
    let services = sim.services().await;
    let web = services.iter().find(|s| s.name == "web").expect("web");
    assert!(
        web.task_definition.ends_with("task-definition/web:1"),
        "web ended on {}",
        web.task_definition
    );
    let daemon = services.iter().find(|s| s.name == "agent").expect("agent");
    let alive = sim.nodes.iter().filter(|n| n.alive).count() as i32;
    assert_eq!(daemon.desired_count, alive, "a daemon task per live node");
}

#[tokio::test]
async fn services_hold_their_invariants_through_failures_and_deployments() {
    for seed in [1u64, 2, 3] {
        history(seed, 60, 120).await;
    }
}

#[tokio::test]
async fn a_larger_fleet_converges() {
    history(42, 300, 60).await;
}
