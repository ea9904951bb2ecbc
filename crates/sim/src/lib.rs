//! Deterministic simulation of berth's control plane: the ECS API, the service controller and
//! placement run for real (`berth-ecs` on an in-memory store) against fake nodes that speak the
//! real agent protocol (`nodes::register`, `nodes::heartbeat`, `nodes::report`) on a virtual
//! clock. A seeded RNG decides everything that varies — how fast tasks start, which crash, which
//! node dies — so a seed replays the same history.
//!
//! After every step the invariants ECS promises can be checked against the store
//! ([`Sim::check`]):
//! - no instance holds more than it registered, and what it has left matches its tasks;
//! - a controller pass never takes a service above `maximumPercent`, nor stops healthy tasks
//!   below `minimumHealthyPercent` while replacing them (scaling in may);
//! - no task is live on a node dead for longer than the liveness grace;
//! - `memberOf` and `distinctInstance` constraints hold for every task (services registered with
//!   [`Sim::watch_member_of`] / [`Sim::watch_distinct`]);
//! - no agent is asked to stop a task whose target a target group still holds (services behind
//!   a load balancer drain first).
//!
//! Services may sit behind target groups ([`Sim::target_group`], `berth-elbv2` on the same
//! store); the simulation plays the load balancer's health checker, finding targets healthy at
//! a seeded rate, or unhealthy for families given to [`Sim::fail_health_checks`].
//!
//! **API Boundary:** drives `berth-ecs` and `berth-elbv2` only through their public APIs
//! (awsJson and awsQuery calls, the agent protocol functions, the controller's `reconcile`, the
//! liveness `sweep`), and reads the store to check; the only record it writes is
//! `elbv2.target-health`, as the data plane's health checker does.

use berth_agent_api as api;
use berth_aws::{JsonService, RequestContext};
use berth_ecs::nodes::{self, SweepPolicy};
use berth_ecs::{ContainerInstanceRecord, Ecs, ServiceRecord, TaskRecord, kinds};
use berth_elbv2::Elbv2;
use berth_elbv2::records::{self as elb_records, HealthRecord, TargetRecord};
use berth_store::{AnyStore, Expect, Op, SqliteStore, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const JOIN: &str = "berth-sim-join";
const T0: i64 = 1_700_000_000_000;

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Virtual time per step.
    pub step_ms: i64,
    /// The liveness sweep's grace. Longer than an agent takes to count as disconnected (60 s),
    /// as in production (300 s), so placement no longer picks a dead node by the time its tasks
    /// are stopped.
    pub grace_ms: i64,
    /// STOPPED tasks are forgotten after this long, so the store stays the size of the fleet.
    pub keep_stopped_ms: i64,
    /// Chance per step that a placed task starts (the rest take longer, as pulls do).
    pub start_rate: f64,
    /// Chance per step that a running task crashes.
    pub crash_rate: f64,
    /// Chance per step that the health checker finds a new target healthy.
    pub healthy_rate: f64,
    /// Check the invariants at every step (costs a few scans of the store per step).
    pub checks: bool,
    pub node_cpu: i32,
    pub node_memory_mib: i32,
    /// A SQLite file to keep the store in, as the server does (WAL); in memory when `None`.
    pub store_path: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step_ms: 5_000,
            grace_ms: 90_000,
            keep_stopped_ms: 60_000,
            start_rate: 0.7,
            crash_rate: 0.0,
            healthy_rate: 0.5,
            checks: true,
            node_cpu: 1024,
            node_memory_mib: 2048,
            store_path: None,
        }
    }
}

struct Node {
    reg: api::RegisterResponse,
    zone: &'static str,
    alive: bool,
    died_at: Option<i64>,
}

/// One simulated cluster (`default`) and its nodes.
pub struct Sim {
    ecs: Ecs,
    elb: Elbv2,
    store: AnyStore,
    clock: Arc<AtomicI64>,
    pub rng: StdRng,
    pub options: Options,
    nodes: Vec<Node>,
    /// Tasks the fake agents reported RUNNING, so each is reported once.
    running: HashSet<String>,
    /// Task definition families whose tasks exit as soon as they start.
    crashing: BTreeSet<String>,
    /// Task definition families whose targets fail the load balancer's health checks.
    failing_health_checks: BTreeSet<String>,
    /// Target groups created by [`Sim::target_group`].
    target_groups: Vec<String>,
    /// The next dynamic host port a fake agent binds (never reused, so no two tasks share one).
    next_port: u16,
    /// Per task definition ARN, each container's name and port mappings (container port, host
    /// port): what an agent reads from the definition its poll carries, asked once per revision.
    port_mappings: HashMap<String, Vec<ContainerPorts>>,
    member_of_zone: BTreeMap<String, &'static str>,
    distinct: BTreeSet<String>,
    /// Controller passes and tasks the agents reported RUNNING, for reports.
    pub passes: u64,
    pub started: u64,
    /// Whether every service was steady when the last step began (after the pass before it).
    steady_at_start: bool,
    last_sweep_ms: i64,
}

/// The request context the simulation acts in.
pub fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "sim".into(),
        access_key_id: None,
    }
}

async fn records<T: DeserializeOwned + Send>(store: &AnyStore, kind: &str) -> Vec<T> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_as::<T>(kind, &ctx().partition(), "", after.as_deref(), 1000)
            .await
            .expect("the in-memory store lists");
        let done = page.len() < 1000;
        for r in page {
            after = Some(r.key);
            out.push(r.value);
        }
        if done {
            return out;
        }
    }
}

/// A container of a revision: its name and port mappings (container port, host port if fixed).
type ContainerPorts = (String, Vec<(u16, Option<u16>)>);

/// What the fake agents and the health checker read of a task record; the rest of each record
/// is skipped when decoding, so the simulation's own scan per step stays small beside the
/// control plane's.
#[derive(Debug, Clone, serde::Deserialize)]
struct Seen {
    arn: String,
    container_instance_id: String,
    task_definition_arn: String,
    last_status: String,
    desired_status: String,
    group: String,
    containers: Vec<SeenContainer>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct SeenContainer {
    #[serde(rename = "networkBindings", default)]
    network_bindings: Option<Vec<SeenBinding>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct SeenBinding {
    #[serde(rename = "hostPort", default)]
    host_port: Option<i32>,
}

impl Seen {
    fn family(&self) -> &str {
        berth_ecs::family_of(&self.task_definition_arn)
    }
}

impl From<&TaskRecord> for Seen {
    fn from(t: &TaskRecord) -> Self {
        Seen {
            arn: t.arn.clone(),
            container_instance_id: t.container_instance_id.clone(),
            task_definition_arn: t.task_definition_arn.clone(),
            last_status: t.last_status.clone(),
            desired_status: t.desired_status.clone(),
            group: t.group.clone(),
            containers: t
                .containers
                .iter()
                .map(|c| SeenContainer {
                    network_bindings: c.network_bindings.as_ref().map(|bs| {
                        bs.iter()
                            .map(|b| SeenBinding {
                                host_port: b.host_port,
                            })
                            .collect()
                    }),
                })
                .collect(),
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
    /// A cluster `default` with `nodes` nodes in three zones (`ecs.availability-zone` a/b/c).
    pub async fn new(seed: u64, nodes: usize, options: Options) -> Sim {
        let store: AnyStore = match &options.store_path {
            Some(path) => SqliteStore::open(path).expect("the store file opens"),
            None => SqliteStore::open_in_memory().expect("an in-memory store opens"),
        }
        .into();
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let now: berth_ecs::Clock = Arc::new(move || c.load(Ordering::SeqCst));
        let ecs = Ecs::new(store.clone(), [9u8; 32], now.clone());
        let elb = Elbv2::new(store.clone(), [9u8; 32], now);
        let mut sim = Sim {
            ecs,
            elb,
            store,
            clock,
            rng: StdRng::seed_from_u64(seed),
            options,
            nodes: Vec::new(),
            running: HashSet::new(),
            crashing: BTreeSet::new(),
            failing_health_checks: BTreeSet::new(),
            target_groups: Vec::new(),
            next_port: 32768,
            port_mappings: HashMap::new(),
            member_of_zone: BTreeMap::new(),
            distinct: BTreeSet::new(),
            passes: 0,
            started: 0,
            steady_at_start: false,
            last_sweep_ms: 0,
        };
        sim.call("CreateCluster", json!({}))
            .await
            .expect("CreateCluster");
        for _ in 0..nodes {
            sim.join().await;
        }
        sim
    }

    pub fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// An ECS API call, as a client sends it.
    pub async fn call(&self, op: &str, input: Value) -> Result<Value, String> {
        match self.ecs.call(ctx(), op, input.clone()).await {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| e.to_string()),
            Err(e) => Err(format!("{op} {input}: {} {}", e.code, e.message)),
        }
    }

    /// An ELBv2 API call, as a client sends it (the JSON form of the awsQuery input).
    pub async fn elb_call(&self, op: &str, input: Value) -> Result<Value, String> {
        use berth_aws::query::QueryService;
        self.elb
            .call(ctx(), op, input.clone())
            .await
            .map_err(|e| format!("{op} {input}: {} {}", e.code, e.message))
    }

    /// A target group of `instance` targets named `name`, behind its own load balancer's
    /// listener, with a deregistration delay of `delay_s` seconds; returns its ARN.
    pub async fn target_group(&mut self, name: &str, delay_s: u32) -> Result<String, String> {
        let lb = self
            .elb_call("CreateLoadBalancer", json!({"Name": name}))
            .await?;
        let tg = self
            .elb_call(
                "CreateTargetGroup",
                json!({"Name": name, "Protocol": "HTTP", "Port": 80, "TargetType": "instance"}),
            )
            .await?;
        let tg = tg["TargetGroups"][0]["TargetGroupArn"]
            .as_str()
            .ok_or("a target group ARN")?
            .to_string();
        self.elb_call(
            "CreateListener",
            json!({"LoadBalancerArn": lb["LoadBalancers"][0]["LoadBalancerArn"],
                   "Protocol": "HTTP", "Port": 80,
                   "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}),
        )
        .await?;
        self.elb_call(
            "ModifyTargetGroupAttributes",
            json!({"TargetGroupArn": tg, "Attributes": [
                {"Key": "deregistration_delay.timeout_seconds", "Value": delay_s.to_string()}]}),
        )
        .await?;
        self.target_groups.push(tg.clone());
        Ok(tg)
    }

    /// Targets of tasks of `family` fail the load balancer's health checks.
    pub fn fail_health_checks(&mut self, family: &str) {
        self.failing_health_checks.insert(family.to_string());
    }

    /// Tasks of `family` exit as soon as they start.
    pub fn crash_family(&mut self, family: &str) {
        self.crashing.insert(family.to_string());
    }

    /// Check that every task of `service` runs in `zone` (its `memberOf` constraint).
    pub fn watch_member_of(&mut self, service: &str, zone: &'static str) {
        self.member_of_zone.insert(service.to_string(), zone);
    }

    /// Check that no two tasks of `service` share a node (its `distinctInstance` constraint).
    pub fn watch_distinct(&mut self, service: &str) {
        self.distinct.insert(service.to_string());
    }

    /// A new node joins.
    pub async fn join(&mut self) {
        let zone = ["a", "b", "c"][self.nodes.len() % 3];
        let req = api::RegisterRequest {
            cluster: "default".into(),
            join_token: Some(JOIN.into()),
            instance_id: None,
            node_token: None,
            resources: api::Resources {
                cpu: self.options.node_cpu,
                memory_mib: self.options.node_memory_mib,
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
            .expect("a fake node registers");
        self.nodes.push(Node {
            reg,
            zone,
            alive: true,
            died_at: None,
        });
    }

    /// A random live node dies (its agent goes silent), unless that would leave fewer than
    /// `keep` alive.
    pub fn kill_random_node(&mut self, keep: usize) {
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .collect();
        if alive.len() > keep {
            let i = alive[self.rng.gen_range(0..alive.len())];
            self.nodes[i].alive = false;
            self.nodes[i].died_at = Some(self.now());
        }
    }

    pub fn alive_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| n.alive).count()
    }

    pub async fn tasks(&self) -> Vec<TaskRecord> {
        records(&self.store, kinds::TASK).await
    }

    pub async fn services(&self) -> Vec<ServiceRecord> {
        records(&self.store, kinds::SERVICE).await
    }

    async fn seen(&self) -> Vec<Seen> {
        records(&self.store, kinds::TASK).await
    }

    /// Every live fake agent heartbeats and reports what its "containers" do with the tasks the
    /// control plane assigned it (read once per step for all nodes: what each node's long poll
    /// would answer, without a scan per node).
    async fn agents(&mut self, tasks: &[Seen]) {
        for t in tasks {
            if !self.port_mappings.contains_key(&t.task_definition_arn) {
                let mappings = self.port_mappings_of(&t.task_definition_arn).await;
                self.port_mappings
                    .insert(t.task_definition_arn.clone(), mappings);
            }
        }
        let mut by_node: HashMap<&str, Vec<&Seen>> = HashMap::new();
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
                let family = t.family();
                if t.last_status == "DEACTIVATING" {
                    // Draining from its load balancers: the long poll still says RUNNING.
                } else if t.desired_status == "STOPPED" {
                    report.push(state(&t.arn, "STOPPED", None));
                } else if !self.running.contains(&t.arn) {
                    if self.crashing.contains(family) {
                        report.push(state(&t.arn, "STOPPED", Some("EssentialContainerExited")));
                    } else if self.rng.gen_bool(self.options.start_rate) {
                        self.running.insert(t.arn.clone());
                        self.started += 1;
                        let mut running = state(&t.arn, "RUNNING", None);
                        running.containers = self.bind_ports(t);
                        report.push(running);
                    }
                } else if self.options.crash_rate > 0.0
                    && self.rng.gen_bool(self.options.crash_rate)
                {
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
        let gone: HashSet<&str> = tasks
            .iter()
            .filter(|t| t.last_status == "STOPPED")
            .map(|t| t.arn.as_str())
            .collect();
        self.running.retain(|a| !gone.contains(a.as_str()));
    }

    /// The containers of revision `arn` and their port mappings, from DescribeTaskDefinition.
    async fn port_mappings_of(&self, arn: &str) -> Vec<ContainerPorts> {
        let found = self
            .call("DescribeTaskDefinition", json!({"taskDefinition": arn}))
            .await
            .expect("a task's revision is described");
        let port = |v: &Value| v.as_u64().and_then(|p| u16::try_from(p).ok());
        found["taskDefinition"]["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let mappings = c["portMappings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        (
                            port(&m["containerPort"]).unwrap_or_default(),
                            port(&m["hostPort"]),
                        )
                    })
                    .collect();
                (c["name"].as_str().unwrap_or_default().to_string(), mappings)
            })
            .collect()
    }

    /// Containers as an agent reports them once they run: each port mapping bound to its host
    /// port, or to a fresh dynamic one.
    fn bind_ports(&mut self, t: &Seen) -> Vec<api::ContainerState> {
        let mut out = Vec::new();
        let containers = self
            .port_mappings
            .get(&t.task_definition_arn)
            .cloned()
            .unwrap_or_default();
        for (name, mappings) in containers {
            let mut bindings = Vec::new();
            for (container_port, host_port) in mappings {
                let host_port = match host_port {
                    Some(p) if p > 0 => p,
                    _ => {
                        self.next_port = self.next_port.wrapping_add(1).max(32768);
                        self.next_port
                    }
                };
                bindings.push(api::NetworkBinding {
                    bind_ip: "0.0.0.0".into(),
                    container_port,
                    host_port,
                    protocol: "tcp".into(),
                });
            }
            out.push(api::ContainerState {
                name,
                runtime_id: None,
                status: "RUNNING".into(),
                exit_code: None,
                reason: None,
                network_bindings: bindings,
                health_status: None,
                image_digest: None,
            });
        }
        out
    }

    /// `(EC2 instance id, host port)` → the family of the live task bound there.
    async fn bound(&self, tasks: &[Seen]) -> HashMap<(String, i32), String> {
        let instances: Vec<ContainerInstanceRecord> =
            records(&self.store, kinds::CONTAINER_INSTANCE).await;
        let ec2: HashMap<&str, &str> = instances
            .iter()
            .map(|i| (i.id.as_str(), i.ec2_instance_id.as_str()))
            .collect();
        let mut out = HashMap::new();
        for t in tasks.iter().filter(|t| t.last_status != "STOPPED") {
            let Some(host) = ec2.get(t.container_instance_id.as_str()) else {
                continue;
            };
            for b in t
                .containers
                .iter()
                .flat_map(|c| c.network_bindings.iter().flatten())
            {
                if let Some(port) = b.host_port {
                    out.insert((host.to_string(), port), t.family().to_string());
                }
            }
        }
        out
    }

    /// The load balancer's health checker: a target still `initial` is found healthy at the
    /// seeded rate, or unhealthy when its task's family fails health checks.
    async fn health_checks(&mut self, tasks: &[Seen]) -> Result<(), String> {
        if self.target_groups.is_empty() {
            return Ok(());
        }
        let bound = self.bound(tasks).await;
        let targets: Vec<(String, TargetRecord)> = {
            let mut out = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .store
                    .list_as::<TargetRecord>(
                        elb_records::TARGET,
                        &ctx().partition(),
                        "",
                        after.as_deref(),
                        1000,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let done = page.len() < 1000;
                for r in page {
                    after = Some(r.key.clone());
                    out.push((r.key, r.value));
                }
                if done {
                    break out;
                }
            }
        };
        for (key, target) in targets {
            if target.deregistered_ms.is_some() {
                continue;
            }
            let Some(found) = berth_store::get_as::<HealthRecord, _>(
                &self.store,
                elb_records::TARGET_HEALTH,
                &ctx().partition(),
                &key,
            )
            .await
            .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let (health, version) = found;
            if health.state != "initial" {
                continue;
            }
            let family = bound
                .get(&(target.id.clone(), target.port))
                .cloned()
                .unwrap_or_default();
            let verdict = if self.failing_health_checks.contains(&family) {
                HealthRecord {
                    state: "unhealthy".into(),
                    reason: Some("Target.ResponseCodeMismatch".into()),
                    description: Some("Health checks failed with these codes: [500]".into()),
                    successes: 0,
                    failures: 2,
                    updated_ms: self.now(),
                }
            } else if self.rng.gen_bool(self.options.healthy_rate) {
                HealthRecord {
                    state: "healthy".into(),
                    reason: None,
                    description: None,
                    successes: 2,
                    failures: 0,
                    updated_ms: self.now(),
                }
            } else {
                continue;
            };
            let op = Op::put(
                elb_records::TARGET_HEALTH,
                ctx().partition(),
                key,
                serde_json::to_value(&verdict).map_err(|e| e.to_string())?,
                Expect::Version(version),
            );
            // A lost race with a deregistration is fine: the next step judges again.
            let _ = self.store.commit(vec![op]).await;
        }
        Ok(())
    }

    /// No agent is asked to stop a task whose target a target group still holds.
    async fn check_drained(&self, tasks: &[TaskRecord]) -> Result<(), String> {
        if self.target_groups.is_empty() {
            return Ok(());
        }
        let arns: Vec<&str> = self.target_groups.iter().map(String::as_str).collect();
        let groups = berth_elbv2::group_views(&self.store, &ctx(), &arns, self.now())
            .await
            .map_err(|e| e.message.to_string())?;
        let stopping: Vec<Seen> = tasks
            .iter()
            .filter(|t| {
                t.desired_status == "STOPPED"
                    && t.last_status != "DEACTIVATING"
                    && t.last_status != "STOPPED"
            })
            .map(Seen::from)
            .collect();
        let held = self.bound(&stopping).await;
        for ((host, port), family) in held {
            for (arn, g) in &groups {
                if let Some(h) = g.health(&host, port) {
                    return Err(format!(
                        "a {family} task on {host}:{port} is stopping while {arn} holds its target ({:?})",
                        h.state
                    ));
                }
            }
        }
        Ok(())
    }

    /// One step: time passes, agents act, the liveness sweep and one controller pass run.
    /// With `options.checks`, the invariants are checked around the pass.
    pub async fn step(&mut self) -> Result<(), String> {
        self.clock.fetch_add(self.options.step_ms, Ordering::SeqCst);
        let tasks = self.seen().await;
        self.steady_at_start = steady(&self.services().await, &tasks);
        self.agents(&tasks).await;
        self.health_checks(&tasks).await?;
        drop(tasks);
        // The server sweeps every quarter grace, at most every 10 s.
        let every = (self.options.grace_ms / 4).clamp(100, 10_000);
        if self.now() - self.last_sweep_ms >= every {
            self.last_sweep_ms = self.now();
            let policy = SweepPolicy {
                grace_ms: self.options.grace_ms,
                keep_stopped_ms: self.options.keep_stopped_ms,
            };
            nodes::sweep(&self.ecs, &ctx(), policy)
                .await
                .map_err(|e| e.message.to_string())?;
        }
        let before = if self.options.checks {
            Some((self.services().await, self.tasks().await))
        } else {
            None
        };
        berth_ecs::service_controller::reconcile(&self.ecs, &ctx())
            .await
            .map_err(|e| e.message.to_string())?;
        self.passes += 1;
        if let Some((services, before)) = before {
            let after = self.tasks().await;
            check_pass(&services, &before, &after)?;
            self.check_instances(&after).await?;
            self.check_drained(&after).await?;
        }
        Ok(())
    }

    /// Resources add up on every instance; nothing is live on a node found dead; placement
    /// constraints hold.
    async fn check_instances(&self, tasks: &[TaskRecord]) -> Result<(), String> {
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
            if cpu > i.registered.cpu || memory > i.registered.memory {
                return Err(format!("{} oversubscribed: {cpu} cpu, {memory} MiB", i.id));
            }
            if i.remaining.cpu != i.registered.cpu - cpu
                || i.remaining.memory != i.registered.memory - memory
            {
                return Err(format!(
                    "{}: remaining {:?} does not match its tasks ({cpu} cpu, {memory} MiB)",
                    i.id, i.remaining
                ));
            }
            let Some(node) = self.nodes.iter().find(|n| n.reg.instance_id == i.id) else {
                continue;
            };
            if let Some(died) = node.died_at
                && now - died > self.options.grace_ms + self.options.step_ms
                && !on.is_empty()
            {
                return Err(format!(
                    "{} is dead but holds {} live tasks",
                    i.id,
                    on.len()
                ));
            }
            let wanted = |t: &&&TaskRecord| t.desired_status == "RUNNING";
            for (service, zone) in &self.member_of_zone {
                let group = format!("service:{service}");
                if node.zone != *zone && on.iter().filter(wanted).any(|t| t.group == group) {
                    return Err(format!(
                        "memberOf broken: {service} task in zone {}",
                        node.zone
                    ));
                }
            }
            for service in &self.distinct {
                let group = format!("service:{service}");
                let n = on
                    .iter()
                    .filter(wanted)
                    .filter(|t| t.group == group)
                    .count();
                if n > 1 {
                    return Err(format!(
                        "distinctInstance broken: {n} {service} tasks on {}",
                        i.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every ACTIVE service runs its desired count and says it is steady.
    pub async fn steady(&self) -> bool {
        steady(&self.services().await, &self.seen().await)
    }

    /// Steps until every service is steady (as seen at the start of a step, so no extra scan
    /// is needed); returns the number of steps.
    pub async fn run_until_steady(&mut self, max_steps: usize) -> Result<usize, String> {
        for n in 1..=max_steps {
            self.step().await?;
            if self.steady_at_start {
                return Ok(n);
            }
        }
        Err(format!("not steady after {max_steps} steps"))
    }
}

fn steady(services: &[ServiceRecord], tasks: &[Seen]) -> bool {
    let mut running: HashMap<&str, i32> = HashMap::new();
    for t in tasks {
        if t.last_status == "RUNNING" && t.desired_status == "RUNNING" {
            *running.entry(t.group.as_str()).or_default() += 1;
        }
    }
    services.iter().filter(|s| s.status == "ACTIVE").all(|s| {
        let group = format!("service:{}", s.name);
        s.steady && running.get(group.as_str()).copied().unwrap_or(0) == s.desired_count
    })
}

/// The controller's pass kept each REPLICA service within its percentages.
fn check_pass(
    services: &[ServiceRecord],
    before: &[TaskRecord],
    after: &[TaskRecord],
) -> Result<(), String> {
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
        let pct =
            |p: Option<i32>, default: u64| p.and_then(|p| u64::try_from(p).ok()).unwrap_or(default);
        let max_pct = pct(s.deployment_configuration.maximum_percent, 200);
        let min_pct = pct(s.deployment_configuration.minimum_healthy_percent, 100);
        let cap = (desired * max_pct / 100).max(u64::from(desired > 0)) as usize;
        if a.len() > cap.max(b.len()) {
            return Err(format!(
                "{}: {} tasks hold a place after the pass, cap {cap}, {} before",
                s.name,
                a.len(),
                b.len()
            ));
        }
        let after_by_id: HashMap<&str, &TaskRecord> =
            a.iter().map(|t| (t.id.as_str(), t)).collect();
        let healthy: Vec<&TaskRecord> = b
            .iter()
            .filter(|t| t.last_status == "RUNNING" && t.desired_status == "RUNNING")
            .collect();
        let replaced = healthy
            .iter()
            .filter(|t| {
                after_by_id.get(t.id.as_str()).is_some_and(|x| {
                    x.desired_status == "STOPPED"
                        && x.stopped_reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with("Scaling activity"))
                })
            })
            .count();
        // Scaling in may go below the floor; replacing may not.
        let primary = s.deployments.first().map(|d| d.id.as_str());
        let primary_live = a
            .iter()
            .filter(|t| t.desired_status == "RUNNING" && t.started_by.as_deref() == primary)
            .count() as u64;
        let floor = (desired * min_pct).div_ceil(100) as usize;
        if primary_live <= desired && healthy.len() - replaced < floor.min(healthy.len()) {
            return Err(format!(
                "{}: {} healthy, {replaced} stopped by the pass, floor {floor}",
                s.name,
                healthy.len()
            ));
        }
    }
    Ok(())
}
