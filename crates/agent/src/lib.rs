//! berth's node agent: registers this machine as a container instance of a cluster, long-polls
//! the control plane for the tasks placed on it, runs them through the container runtime, and
//! reports what it observes — the EC2 launch type's agent, following the ECS agent's semantics.
//!
//! Shape: [`Agent::run`] owns a poll loop (desired state in), one supervisor per task
//! (`task.rs`, deciding with `supervisor.rs` from plans made by `translate.rs`), a reporter
//! (observed state out, retried until acknowledged), a sweeper (removes long-stopped
//! containers) and a sampler (`metrics.rs`: the tasks' CPU and memory, for CloudWatch).
//!
//! **Architecture Invariant:** the control plane being away never stops a task: the poll loop
//! backs off and retries while the supervisors keep running, and their reports wait in
//! `reports.rs` until delivered. An agent restart re-adopts its containers by label instead of
//! creating them again.
//!
//! **API Boundary:** talks to the control plane only through `berth-agent-api` over HTTP, and to
//! containers only through `berth-runtime`.

pub mod client;
pub mod holder;
pub mod logship;
pub mod metadata;
pub mod metrics;
mod pulls;
mod reports;
pub mod state;
pub mod supervisor;
mod task;
pub mod translate;

use berth_agent_api::{self as api, TaskState, labels};
use berth_runtime::{ContainerId, NodeInfo, Runtime, RuntimeError};
use client::{Client, ClientError};
use rand::Rng;
use reports::Reports;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use task::{Adopted, Desired, TaskRunner};
use tokio::sync::watch;
use translate::NodeContext;

/// When the agent pulls an image, as ECS's `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullBehavior {
    /// Pull; if the pull fails, use a cached image when there is one (ECS's `default`).
    #[default]
    Default,
    /// Pull; a failed pull fails the task.
    Always,
    /// Use a cached image when present, pull otherwise.
    PreferCached,
}

/// How the agent runs. [`Config::new`] gives ECS's and berth's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The control plane's base URL, e.g. `http://127.0.0.1:4566`.
    pub server: String,
    pub cluster: String,
    /// The server's join token, for the first registration.
    pub join_token: Option<String>,
    /// Where the agent keeps its identity (`agent.json`).
    pub data_dir: PathBuf,
    /// Custom attributes (`--attribute k=v`), added to the ones the agent reports.
    pub attributes: Vec<(String, Option<String>)>,
    /// Host address published ports bind to. berth defaults to loopback (ECS binds 0.0.0.0),
    /// so a task is not exposed to the network unless the operator says so.
    pub bind_address: String,
    /// Memory kept back from tasks for the OS and the agent, MiB.
    pub memory_reserve_mib: u64,
    /// Image of the `awsvpc` network namespace holder.
    pub holder_image: String,
    pub pull_behavior: PullBehavior,
    /// How long stopped containers stay on the node (ECS's `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`
    /// is 3 h; berth keeps them 10 min by default so `docker ps -a` shows recent exits).
    pub cleanup_after: Duration,
    /// How often a supervisor looks at its containers.
    pub tick: Duration,
    /// Longest pause between attempts to reach the server.
    pub max_backoff: Duration,
    /// How often the tasks' CPU and memory are sampled and shipped for CloudWatch (ECS's
    /// `CPUUtilization`/`MemoryUtilization`); zero turns sampling off.
    pub metrics_interval: Duration,
    /// Port of the task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`) on loopback and
    /// the Docker bridge's gateway; 0 for an ephemeral one, `None` serves none.
    pub metadata_port: Option<u16>,
}

impl Config {
    pub fn new(server: &str, cluster: &str, data_dir: PathBuf) -> Config {
        Config {
            server: server.to_string(),
            cluster: cluster.to_string(),
            join_token: None,
            data_dir,
            attributes: Vec::new(),
            bind_address: "127.0.0.1".into(),
            memory_reserve_mib: 256,
            holder_image: DEFAULT_HOLDER_IMAGE.into(),
            pull_behavior: PullBehavior::Default,
            cleanup_after: Duration::from_secs(600),
            tick: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
            metrics_interval: Duration::from_secs(api::METRICS_INTERVAL_SECS),
            metadata_port: Some(metadata::DEFAULT_PORT),
        }
    }
}

/// The image berth runs as the `awsvpc` namespace holder (see `holder.rs`); it needs
/// `/bin/sleep`.
pub const DEFAULT_HOLDER_IMAGE: &str = "berth/pause:1";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// What registration produced, for the caller to show.
#[derive(Debug, Clone)]
pub struct Registered {
    pub instance_id: String,
    pub container_instance_arn: String,
    pub can_run_tasks: bool,
    /// Why not, when `can_run_tasks` is false.
    pub reason: Option<String>,
}

pub struct Agent {
    config: Config,
    runtime: Result<Runtime, String>,
    client: Client,
    reports: Arc<Reports>,
    /// What the task metadata endpoint serves, kept by the tasks' supervisors.
    metadata: Arc<metadata::Directory>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .finish()
    }
}

struct Handle {
    desired: watch::Sender<Desired>,
    finished: Arc<AtomicBool>,
    join: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// `runtime` is the node's container runtime, or why there is none (the node then
    /// registers as unable to run tasks).
    pub fn new(
        config: Config,
        runtime: Result<Runtime, RuntimeError>,
    ) -> Result<Agent, AgentError> {
        let client = Client::new(&config.server)?;
        Ok(Agent {
            config,
            runtime: runtime.map_err(|e| e.to_string()),
            client,
            reports: Arc::new(Reports::default()),
            metadata: Arc::default(),
        })
    }

    /// Runs until `shutdown` resolves. Tasks keep running after the agent stops (as with the
    /// ECS agent): a restarted agent re-adopts them. `on_registered` is called after each
    /// successful registration.
    pub async fn run(
        self,
        on_registered: impl Fn(&Registered) + Send + Sync,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        let info = match &self.runtime {
            Ok(rt) => rt.info().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        if let Err(reason) = &info {
            tracing::warn!("this node cannot run tasks: {reason}");
        }
        let (token_tx, token_rx) = watch::channel::<Option<state::Identity>>(None);
        let identity = tokio::select! {
            id = self.register_until_done(&info) => id?,
            _ = &mut shutdown => return Ok(()),
        };
        on_registered(&self.registered(&identity, &info));
        let _ = token_tx.send(Some(identity.clone()));

        let runtime = match (&self.runtime, &info) {
            (Ok(rt), Ok(_)) => Some(rt.clone()),
            _ => None,
        };
        // Before any task is translated: the endpoint's URIs go into the containers' specs.
        let metadata_server = match (&runtime, self.config.metadata_port) {
            (Some(rt), Some(port)) => {
                start_metadata(rt, &self.config.data_dir, port, self.metadata.clone()).await
            }
            _ => None,
        };
        let node = NodeContext {
            cluster: self.config.cluster.clone(),
            instance_id: identity.instance_id.clone(),
            bind_address: self.config.bind_address.clone(),
            holder_image: self.config.holder_image.clone(),
            metadata: metadata_server.as_ref().map(|s| s.endpoints.clone()),
        };
        if let Some(rt) = runtime.clone() {
            let image = self.config.holder_image.clone();
            // In the background: only awsvpc tasks need it, and they say why if it is missing.
            tokio::spawn(async move {
                if let Err(e) = holder::ensure(&rt, &image).await {
                    tracing::warn!("awsvpc tasks cannot run here: {e}");
                }
            });
        }
        let mut adopted = match &runtime {
            Some(rt) => adopt(rt, &identity.instance_id).await,
            None => BTreeMap::new(),
        };

        let shipper = logship::Shipper::new(self.client.clone(), token_rx.clone());
        let server = task::ServerLink {
            client: self.client.clone(),
            identity: token_rx.clone(),
        };
        let pulls = pulls::Pulls::default();
        let reporter = tokio::spawn(report_loop(
            self.client.clone(),
            self.reports.clone(),
            token_rx.clone(),
            self.config.max_backoff,
        ));
        let sampler = runtime
            .clone()
            .filter(|_| !self.config.metrics_interval.is_zero())
            .map(|rt| {
                tokio::spawn(metrics::metrics_loop(
                    rt,
                    self.client.clone(),
                    token_rx.clone(),
                    self.config.metrics_interval,
                ))
            });
        let sweeper = runtime.clone().map(|rt| {
            tokio::spawn(sweep_loop(
                rt,
                identity.instance_id.clone(),
                self.config.cleanup_after,
            ))
        });

        let mut identity = identity;
        let mut tasks: HashMap<String, Handle> = HashMap::new();
        // Tasks this agent has seen through to STOPPED: never started again, whatever a late
        // answer says.
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut after_revision = 0u64;
        let mut failures = 0u32;
        loop {
            let req = api::PollRequest {
                instance_id: identity.instance_id.clone(),
                after_revision,
            };
            let answer = tokio::select! {
                a = self.client.poll(&identity.node_token, &req) => a,
                _ = &mut shutdown => break,
            };
            match answer {
                Ok(resp) => {
                    failures = 0;
                    after_revision = resp.revision;
                    self.reconcile(
                        resp.tasks,
                        &mut tasks,
                        &mut done,
                        &mut adopted,
                        runtime.as_ref(),
                        &node,
                        &shipper,
                        (&pulls, &server),
                    );
                }
                Err(ClientError::Unauthorized(msg)) => {
                    tracing::warn!(
                        "the server no longer knows this node ({msg}); registering again"
                    );
                    failures = 0;
                    let _ = token_tx.send(None);
                    identity = tokio::select! {
                        id = self.register_until_done(&info) => id?,
                        _ = &mut shutdown => break,
                    };
                    on_registered(&self.registered(&identity, &info));
                    let _ = token_tx.send(Some(identity.clone()));
                    after_revision = 0;
                }
                Err(e) => {
                    failures += 1;
                    let pause = backoff(failures, self.config.max_backoff);
                    tracing::warn!(
                        "cannot reach the server ({e}); tasks keep running, retrying in {pause:?}"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = &mut shutdown => break,
                    }
                }
            }
        }
        // Give undelivered reports a moment; whatever is left is re-observed after a restart.
        let flush = async {
            while !self.reports.all_delivered() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
        reporter.abort();
        if let Some(s) = sweeper {
            s.abort();
        }
        if let Some(s) = sampler {
            s.abort();
        }
        for (_, h) in tasks {
            h.join.abort();
        }
        Ok(())
    }

    fn registered(&self, id: &state::Identity, info: &Result<NodeInfo, String>) -> Registered {
        Registered {
            instance_id: id.instance_id.clone(),
            container_instance_arn: id.container_instance_arn.clone(),
            can_run_tasks: info.is_ok(),
            reason: info.as_ref().err().cloned(),
        }
    }

    /// Level-triggered: `assigned` is everything the server wants on this node.
    #[allow(clippy::too_many_arguments)]
    fn reconcile(
        &self,
        assigned: Vec<api::AssignedTask>,
        tasks: &mut HashMap<String, Handle>,
        done: &mut BTreeSet<String>,
        adopted: &mut BTreeMap<String, Adopted>,
        runtime: Option<&Runtime>,
        node: &NodeContext,
        shipper: &logship::Shipper,
        (pulls, server): (&pulls::Pulls, &task::ServerLink),
    ) {
        let listed: BTreeSet<String> = assigned.iter().map(|t| t.task_arn.clone()).collect();
        for t in assigned {
            let desired = Desired {
                stop: t.desired_status == "STOPPED",
                reason: t.stop_reason.clone(),
            };
            if let Some(h) = tasks.get(&t.task_arn) {
                h.desired.send_if_modified(|d| {
                    // Stopping is one-way: a late RUNNING never revives a stopping task.
                    let next = Desired {
                        stop: d.stop || desired.stop,
                        reason: desired.reason.clone().or(d.reason.clone()),
                    };
                    let changed = *d != next;
                    *d = next;
                    changed
                });
                continue;
            }
            if done.contains(&t.task_arn) {
                continue;
            }
            let Some(rt) = runtime else {
                // Should not happen (the server sends no tasks to such a node), but if it does,
                // say why the task cannot run rather than leave it PENDING.
                self.reports.set(TaskRunner::refused(
                    &t.task_arn,
                    "TaskFailedToStart: this node has no working container runtime".into(),
                ));
                done.insert(t.task_arn.clone());
                continue;
            };
            let plan = match translate::plan(&t, node) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(task = %t.task_arn, "cannot run the task: {e}");
                    self.reports.set(TaskRunner::refused(
                        &t.task_arn,
                        format!("CannotCreateContainerError: {e}"),
                    ));
                    done.insert(t.task_arn.clone());
                    continue;
                }
            };
            let (tx, rx) = watch::channel(desired);
            let finished = Arc::new(AtomicBool::new(false));
            let runner = TaskRunner::new(
                plan,
                rt.clone(),
                self.reports.clone(),
                rx,
                finished.clone(),
                self.config.tick,
                self.config.pull_behavior,
                adopted.remove(&t.task_arn).unwrap_or_default(),
            )
            .with_shipper(shipper.clone())
            .with_server(pulls.clone(), server.clone())
            .with_metadata(node.metadata.is_some().then(|| {
                metadata::Publisher {
                    directory: self.metadata.clone(),
                    cluster: self.config.cluster.clone(),
                    availability_zone: self
                        .config
                        .attributes
                        .iter()
                        .find(|(k, _)| k == "ecs.availability-zone")
                        .and_then(|(_, v)| v.clone()),
                }
            }));
            let join = tokio::spawn(runner.run());
            tasks.insert(
                t.task_arn.clone(),
                Handle {
                    desired: tx,
                    finished,
                    join,
                },
            );
        }
        // Tasks the server no longer lists: finished ones are forgotten once their last report
        // is delivered; a running one is not the server's any more, so it is stopped (ECS's
        // agent does the same with tasks it is told nothing about).
        let gone: Vec<String> = tasks
            .keys()
            .filter(|arn| !listed.contains(*arn))
            .cloned()
            .collect();
        for arn in gone {
            let Some(h) = tasks.get(&arn) else { continue };
            if h.finished.load(Ordering::SeqCst) {
                if self.reports.forget_if_delivered(&arn) {
                    tasks.remove(&arn);
                    done.insert(arn);
                }
            } else {
                h.desired.send_if_modified(|d| {
                    let changed = !d.stop;
                    d.stop = true;
                    d.reason.get_or_insert_with(|| {
                        "Task is no longer assigned to this instance".into()
                    });
                    changed
                });
            }
        }
        // Containers found at start whose task the server does not list: orphans. Stop them
        // and report their task STOPPED (the server ignores a task it does not know).
        if let Some(rt) = runtime {
            for (arn, containers) in std::mem::take(adopted) {
                tokio::spawn(stop_orphan(
                    rt.clone(),
                    self.reports.clone(),
                    arn,
                    containers,
                ));
            }
        }
        // Bound the memory of `done`; a task this old cannot come back.
        while done.len() > 10_000 {
            done.pop_first();
        }
    }

    /// Registers, retrying with backoff until the server accepts. A saved identity is tried
    /// first (so the node comes back as the same container instance); if the server refuses
    /// it, the join token makes a new one.
    async fn register_until_done(
        &self,
        info: &Result<NodeInfo, String>,
    ) -> Result<state::Identity, AgentError> {
        let dir = &self.config.data_dir;
        let mut saved = state::load(dir, &self.config.cluster)?;
        let mut failures = 0u32;
        loop {
            let req = self.register_request(info, saved.as_ref());
            match self.client.register(&req).await {
                Ok(resp) => {
                    let id = state::Identity {
                        server: self.client.base().to_string(),
                        cluster: self.config.cluster.clone(),
                        instance_id: resp.instance_id,
                        container_instance_arn: resp.container_instance_arn,
                        node_token: resp.node_token,
                    };
                    state::save(dir, &id)?;
                    tracing::info!(instance = %id.container_instance_arn, "registered");
                    return Ok(id);
                }
                Err(ClientError::Unauthorized(msg)) if saved.is_some() => {
                    tracing::warn!("the saved node identity was refused ({msg}); joining anew");
                    saved = None;
                }
                Err(e) => {
                    failures += 1;
                    let pause = backoff(failures, self.config.max_backoff);
                    tracing::warn!(
                        "cannot register with {} ({e}); retrying in {pause:?}",
                        self.client.base()
                    );
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    fn register_request(
        &self,
        info: &Result<NodeInfo, String>,
        saved: Option<&state::Identity>,
    ) -> api::RegisterRequest {
        let (cpus, memory_mib, arch, docker_version) = match info {
            Ok(i) => (
                i.cpus,
                i.memory_mib,
                i.arch.clone(),
                Some(i.runtime_version.clone()),
            ),
            Err(_) => (
                std::thread::available_parallelism()
                    .map(|n| u32::try_from(n.get()).unwrap_or(1))
                    .unwrap_or(1),
                0,
                ecs_arch(std::env::consts::ARCH),
                None,
            ),
        };
        let mut attributes = node_attributes(&arch, info.as_ref().ok());
        for (k, v) in &self.config.attributes {
            attributes.retain(|a| a.name != *k);
            attributes.push(api::Attribute {
                name: k.clone(),
                value: v.clone(),
            });
        }
        api::RegisterRequest {
            cluster: self.config.cluster.clone(),
            join_token: self.config.join_token.clone(),
            instance_id: saved.map(|s| s.instance_id.clone()),
            node_token: saved.map(|s| s.node_token.clone()),
            resources: api::Resources {
                cpu: i32::try_from(u64::from(cpus) * 1024).unwrap_or(i32::MAX),
                memory_mib: i32::try_from(
                    memory_mib.saturating_sub(self.config.memory_reserve_mib),
                )
                .unwrap_or(i32::MAX),
                // ECS reserves the agent's and SSH's ports by default.
                reserved_ports: vec![22, 2375, 2376, 51678, 51679],
                reserved_udp_ports: vec![],
            },
            attributes,
            version: api::VersionInfo {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                agent_hash: None,
                docker_version,
            },
            can_run_tasks: info.is_ok(),
            cannot_run_reason: info.as_ref().err().cloned(),
            host_id: host_id(),
        }
    }
}

/// The attributes ECS's agent reports that berth honours too.
fn node_attributes(arch: &str, info: Option<&NodeInfo>) -> Vec<api::Attribute> {
    let attr = |name: &str, value: Option<&str>| api::Attribute {
        name: name.into(),
        value: value.map(str::to_string),
    };
    let mut out = vec![
        attr("ecs.os-type", Some("linux")),
        attr("ecs.os-family", Some("LINUX")),
        attr("ecs.cpu-architecture", Some(arch)),
    ];
    if let Some(info) = info {
        // One attribute per Docker API version the engine speaks, as ECS lists them.
        let max_minor = info
            .api_version
            .split_once('.')
            .and_then(|(_, m)| m.parse::<u32>().ok())
            .unwrap_or(17);
        for minor in 17..=max_minor.min(44) {
            out.push(attr(
                &format!("com.amazonaws.ecs.capability.docker-remote-api.1.{minor}"),
                None,
            ));
        }
        for name in [
            "com.amazonaws.ecs.capability.logging-driver.json-file",
            "com.amazonaws.ecs.capability.logging-driver.none",
            "ecs.capability.container-health-check",
            "ecs.capability.container-ordering",
            "ecs.capability.task-eni",
            "ecs.capability.docker-plugin.local",
        ] {
            out.push(attr(name, None));
        }
    }
    out
}

/// ECS's spelling of the CPU architecture.
fn ecs_arch(rust_arch: &str) -> String {
    match rust_arch {
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// A stable identifier of the machine: systemd's machine id, else the host name.
fn host_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Exponential backoff with jitter: 0.2 s, 0.4 s, … up to `max`, each drawn from its upper
/// half, so agents that lost the server together do not come back in lockstep.
fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = 200u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    let ceiling = exp
        .min(u64::try_from(max.as_millis()).unwrap_or(u64::MAX))
        .max(1);
    let ms = rand::thread_rng().gen_range(ceiling / 2..=ceiling);
    Duration::from_millis(ms)
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Starts the task metadata endpoint. Without it tasks still run (their containers get no
/// URI), so every failure here is logged, not returned.
async fn start_metadata(
    rt: &Runtime,
    data_dir: &std::path::Path,
    port: u16,
    directory: Arc<metadata::Directory>,
) -> Option<metadata::Server> {
    let key = match metadata::TokenKey::load_or_create(data_dir) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("containers get no task metadata endpoint: {e}");
            return None;
        }
    };
    let gateway = rt.bridge_gateway().await.unwrap_or_else(|e| {
        tracing::warn!("cannot find the bridge network's gateway: {e}");
        None
    });
    Some(metadata::Server::start(directory, rt.clone(), key, port, gateway).await)
}

/// The node's containers by task, as labelled by an earlier run of this agent.
async fn adopt(rt: &Runtime, instance_id: &str) -> BTreeMap<String, Adopted> {
    let found = match rt.list(&[(labels::INSTANCE, instance_id)]).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot list this node's containers: {e}");
            return BTreeMap::new();
        }
    };
    let mut out: BTreeMap<String, Adopted> = BTreeMap::new();
    for c in found {
        let (Some(arn), Some(name)) = (
            c.labels.get(labels::TASK_ARN),
            c.labels.get(labels::CONTAINER_NAME),
        ) else {
            continue;
        };
        out.entry(arn.clone())
            .or_default()
            .insert(name.clone(), c.id.clone());
    }
    if !out.is_empty() {
        tracing::info!(tasks = out.len(), "found containers of an earlier run");
    }
    out
}

/// Stops the containers of a task this node should not run, and reports the task STOPPED.
async fn stop_orphan(rt: Runtime, reports: Arc<Reports>, arn: String, containers: Adopted) {
    let mut states = Vec::new();
    for (name, id) in containers {
        if let Err(e) = rt.stop(&id, translate::DEFAULT_STOP_TIMEOUT).await {
            tracing::warn!(container = %id, "stopping an orphan: {e}");
        }
        if name == translate::HOLDER_CONTAINER_NAME {
            continue;
        }
        let exit_code = rt
            .inspect(&id)
            .await
            .ok()
            .and_then(|s| s.exit_code)
            .and_then(|c| i32::try_from(c).ok());
        states.push(api::ContainerState {
            name,
            runtime_id: Some(id.0.clone()),
            status: "STOPPED".into(),
            exit_code,
            reason: None,
            network_bindings: vec![],
            health_status: None,
            image_digest: None,
        });
    }
    tracing::info!(task = %arn, "stopped the containers of a task not assigned to this node");
    reports.set(TaskState {
        task_arn: arn,
        status: "STOPPED".into(),
        containers: states,
        stop_code: None,
        stopped_reason: Some("Task is no longer assigned to this instance".into()),
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        execution_stopped_at: Some(now_millis()),
        health_status: None,
    });
}

/// Delivers task states until acknowledged, retrying with backoff while the server is away.
async fn report_loop(
    client: Client,
    reports: Arc<Reports>,
    identity: watch::Receiver<Option<state::Identity>>,
    max_backoff: Duration,
) {
    let mut failures = 0u32;
    loop {
        let batch = reports.pending();
        let id = identity.borrow().clone();
        let (Some(id), false) = (id, batch.tasks.is_empty()) else {
            // Nothing to send, or registering again: wait for news (or retry shortly, in case a
            // notification raced with the check above).
            let _ = tokio::time::timeout(Duration::from_secs(1), reports.changed()).await;
            continue;
        };
        let req = api::StateReport {
            instance_id: id.instance_id.clone(),
            tasks: batch.tasks.clone(),
        };
        match client.report(&id.node_token, &req).await {
            Ok(()) => {
                failures = 0;
                reports.ack(&batch);
            }
            Err(e) => {
                failures += 1;
                let pause = backoff(failures, max_backoff);
                tracing::warn!("cannot report task states ({e}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Removes this node's containers that stopped more than `after` ago, and the task-scoped
/// volumes they leave (named `ecs-<task id>-…` by the translation).
async fn sweep_loop(rt: Runtime, instance_id: String, after: Duration) {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let Ok(found) = rt.list(&[(labels::INSTANCE, instance_id.as_str())]).await else {
            continue;
        };
        let cutoff = now_millis() - i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        for c in found.into_iter().filter(|c| c.status.is_stopped()) {
            let Ok(st) = rt.inspect(&c.id).await else {
                continue;
            };
            if st.finished_at.is_some_and(|t| t <= cutoff) {
                remove(&rt, &c.id).await;
            }
        }
    }
}

async fn remove(rt: &Runtime, id: &ContainerId) {
    match rt.remove(id).await {
        Ok(()) | Err(RuntimeError::NotFound(_)) => tracing::debug!(container = %id, "removed"),
        Err(e) => tracing::warn!(container = %id, "cannot remove a stopped container: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let max = Duration::from_secs(15);
        for f in 1..40 {
            let d = backoff(f, max);
            assert!(d <= max, "{f}: {d:?}");
            assert!(d >= Duration::from_millis(100), "{f}: {d:?}");
        }
        assert!(backoff(1, max) <= Duration::from_millis(200));
        assert!(backoff(30, max) >= Duration::from_millis(7500));
    }

    #[test]
    fn attributes_follow_ecs_names() {
        let info = NodeInfo {
            cpus: 2,
            memory_mib: 4096,
            os_type: "linux".into(),
            arch: "x86_64".into(),
            runtime_version: "20.10".into(),
            api_version: "1.41".into(),
        };
        let attrs = node_attributes("x86_64", Some(&info));
        let names: Vec<&str> = attrs.iter().map(|a| a.name.as_str()).collect();
        assert!(names.contains(&"ecs.os-type"));
        assert!(names.contains(&"com.amazonaws.ecs.capability.docker-remote-api.1.41"));
        assert!(!names.contains(&"com.amazonaws.ecs.capability.docker-remote-api.1.42"));
        assert_eq!(node_attributes("arm64", None).len(), 3);
        assert_eq!(ecs_arch("aarch64"), "arm64");
    }
}
