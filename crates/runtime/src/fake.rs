//! The fake runtime: an in-memory, deterministic container engine for tests and fleet
//! simulation. It records every call, moves containers through Docker's states, and exposes
//! hooks (`exit`, `oom`, `set_health`, `push_log`, ...) that stand in for what processes do.
//! It never sleeps and reads no real clock: time is what the test sets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use crate::reference::normalize_reference;
use crate::spec::{Mount, NetworkMode};
use crate::{
    ContainerEvent, ContainerId, ContainerSpec, ContainerState, ContainerStatus, ContainerSummary,
    EventKind, Health, ImageRef, LogChunk, LogStream, LogsRequest, NodeInfo, PortBinding,
    RegistryAuth, RuntimeError, RuntimeStream, StatsSample, VolumeSpec,
};

/// One call made to the fake, in the order made.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Info,
    Pull {
        image: String,
        auth: Option<RegistryAuth>,
    },
    Image(String),
    /// Boxed: a spec is large and most calls are small.
    Create(Box<ContainerSpec>),
    Start(ContainerId),
    Stop {
        id: ContainerId,
        timeout: Duration,
    },
    Kill {
        id: ContainerId,
        signal: String,
    },
    Remove(ContainerId),
    Inspect(ContainerId),
    List(Vec<(String, String)>),
    Events,
    Logs(ContainerId, LogsRequest),
    Stats(ContainerId),
    CreateVolume(VolumeSpec),
    RemoveVolume(String),
}

/// An operation [`FakeRuntime::fail_next`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FakeOp {
    Info,
    Pull,
    Create,
    Start,
    Stop,
    Kill,
    Remove,
    Inspect,
    List,
    Stats,
    CreateVolume,
    RemoveVolume,
}

/// The first host port handed out for dynamic mappings (Docker's ephemeral range starts at
/// 32768 on Linux).
const FIRST_DYNAMIC_PORT: u16 = 32768;

/// In-memory runtime. Clones share state.
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Mutex<State>>,
    /// Bumped on every change a follower of logs could care about.
    changed: Arc<watch::Sender<u64>>,
    events: broadcast::Sender<ContainerEvent>,
}

struct FakeContainer {
    id: ContainerId,
    spec: ContainerSpec,
    image_id: String,
    status: ContainerStatus,
    exit_code: Option<i64>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    health: Option<Health>,
    oom_killed: bool,
    host_ports: Vec<PortBinding>,
    error: Option<String>,
    logs: Vec<LogChunk>,
    stats: Option<StatsSample>,
    /// Cores kept busy: every `stats` call advances the CPU counters by one second of this load.
    cpu_load: Option<f64>,
    stop_exit_code: Option<i64>,
}

struct State {
    info: NodeInfo,
    calls: Vec<Call>,
    images: BTreeMap<String, ImageRef>,
    missing: BTreeMap<String, String>,
    containers: BTreeMap<ContainerId, FakeContainer>,
    volumes: BTreeMap<String, VolumeSpec>,
    failures: BTreeMap<FakeOp, Vec<RuntimeError>>,
    unavailable: bool,
    next_id: u64,
    next_port: u16,
    now: i64,
    clock: Option<Arc<dyn Fn() -> i64 + Send + Sync>>,
    stop_exit_code: i64,
    bridge_gateway: Option<std::net::IpAddr>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    /// A fake node with 2 CPUs and 4 GiB, x86_64, no images, time at 2023-11-14T22:13:20Z.
    pub fn new() -> FakeRuntime {
        let (events, _) = broadcast::channel(1024);
        FakeRuntime {
            inner: Arc::new(Mutex::new(State {
                info: NodeInfo {
                    cpus: 2,
                    memory_mib: 4096,
                    os_type: "linux".into(),
                    arch: "x86_64".into(),
                    runtime_version: "fake".into(),
                    api_version: "1.41".into(),
                },
                calls: Vec::new(),
                images: BTreeMap::new(),
                missing: BTreeMap::new(),
                containers: BTreeMap::new(),
                volumes: BTreeMap::new(),
                failures: BTreeMap::new(),
                unavailable: false,
                next_id: 1,
                next_port: FIRST_DYNAMIC_PORT,
                now: 1_700_000_000_000,
                clock: None,
                stop_exit_code: 0,
                bridge_gateway: None,
            })),
            changed: Arc::new(watch::channel(0).0),
            events,
        }
    }

    // ---- test hooks -------------------------------------------------------------------

    /// What `info` reports.
    pub fn set_info(&self, info: NodeInfo) {
        self.inner.lock().info = info;
    }

    /// What `bridge_gateway` reports (`None` until set: a node without a bridge network).
    pub fn set_bridge_gateway(&self, gateway: Option<std::net::IpAddr>) {
        self.inner.lock().bridge_gateway = gateway;
    }

    /// Makes pulls of `image` fail with `reason`.
    pub fn set_missing_image(&self, image: &str, reason: &str) {
        self.inner
            .lock()
            .missing
            .insert(normalize_reference(image), reason.to_owned());
    }

    /// Makes `image` present locally without a pull.
    pub fn add_image(&self, image: &str) -> ImageRef {
        let reference = normalize_reference(image);
        let img = image_ref(&reference);
        self.inner.lock().images.insert(reference, img.clone());
        img
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().calls.clone()
    }

    /// Every call made so far, forgetting them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.inner.lock().calls)
    }

    /// Makes the next call of `op` fail with `error` (queued: several calls fail in order).
    pub fn fail_next(&self, op: FakeOp, error: RuntimeError) {
        self.inner
            .lock()
            .failures
            .entry(op)
            .or_default()
            .push(error);
    }

    /// While set, every call fails as if the daemon were gone.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.inner.lock().unavailable = unavailable;
    }

    /// Sets the fake's time (unix millis); it stays there until set or advanced again.
    pub fn set_time(&self, millis: i64) {
        let mut s = self.inner.lock();
        s.now = millis;
        s.clock = None;
    }

    /// Moves the fake's time forward.
    pub fn advance(&self, by: Duration) {
        let mut s = self.inner.lock();
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        s.now = s.now.saturating_add(ms);
    }

    /// Reads time from `clock` (a simulation's virtual clock) from now on.
    pub fn set_clock(&self, clock: impl Fn() -> i64 + Send + Sync + 'static) {
        self.inner.lock().clock = Some(Arc::new(clock));
    }

    /// The exit code containers report after a graceful `stop` (default 0).
    pub fn set_stop_exit_code(&self, code: i64) {
        self.inner.lock().stop_exit_code = code;
    }

    /// The exit code one container reports after a graceful `stop`.
    pub fn set_container_stop_exit_code(&self, id: &ContainerId, code: i64) {
        if let Some(c) = self.inner.lock().containers.get_mut(id) {
            c.stop_exit_code = Some(code);
        }
    }

    /// The container's process exits with `code` (if it is running).
    pub fn exit(&self, id: &ContainerId, code: i64) {
        self.finish(id, code, false);
    }

    /// The container is killed by the OOM killer (exit 137, `oom_killed`).
    pub fn oom(&self, id: &ContainerId) {
        self.emit_for(id, EventKind::Oom);
        self.finish(id, 137, true);
    }

    /// The container's health check reports `health`.
    pub fn set_health(&self, id: &ContainerId, health: Health) {
        let changed = {
            let mut s = self.inner.lock();
            match s.containers.get_mut(id) {
                Some(c) if c.status == ContainerStatus::Running && c.health != Some(health) => {
                    c.health = Some(health);
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.emit_for(id, EventKind::HealthStatus(health));
        }
    }

    /// The container writes `bytes` to `stream`.
    pub fn push_log(&self, id: &ContainerId, stream: LogStream, bytes: impl Into<Bytes>) {
        {
            let mut s = self.inner.lock();
            let now = s.now();
            if let Some(c) = s.containers.get_mut(id) {
                c.logs.push(LogChunk {
                    stream,
                    bytes: bytes.into(),
                    timestamp_millis: now,
                });
            }
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// What `stats` reports for the container.
    pub fn set_stats(&self, id: &ContainerId, sample: StatsSample) {
        if let Some(c) = self.inner.lock().containers.get_mut(id) {
            c.stats = Some(sample);
        }
    }

    /// Makes the container keep `cores` CPUs busy: from now on every `stats` call first moves
    /// its counters on by one second of host time (`system_cpu_ns` by one second per online
    /// CPU, `cpu_total_ns` by `cores` seconds), so any two samples read exactly `cores`.
    pub fn set_cpu_load(&self, id: &ContainerId, cores: f64) {
        if let Some(c) = self.inner.lock().containers.get_mut(id) {
            c.cpu_load = Some(cores.max(0.0));
        }
    }

    /// The ids of every container, in id order (which is creation order).
    pub fn container_ids(&self) -> Vec<ContainerId> {
        self.inner.lock().containers.keys().cloned().collect()
    }

    /// The spec a container was created from.
    pub fn spec(&self, id: &ContainerId) -> Option<ContainerSpec> {
        self.inner.lock().containers.get(id).map(|c| c.spec.clone())
    }

    // ---- runtime operations -----------------------------------------------------------

    pub async fn info(&self) -> Result<NodeInfo, RuntimeError> {
        let s = self.begin(Call::Info, Some(FakeOp::Info))?;
        Ok(s.info.clone())
    }

    pub async fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageRef, RuntimeError> {
        let call = Call::Pull {
            image: image.to_owned(),
            auth: auth.cloned(),
        };
        let mut s = self.begin(call, Some(FakeOp::Pull))?;
        let reference = normalize_reference(image);
        if let Some(reason) = s.missing.get(&reference) {
            return Err(RuntimeError::Pull(reason.clone()));
        }
        let img = image_ref(&reference);
        s.images.insert(reference, img.clone());
        Ok(img)
    }

    pub async fn image(&self, reference: &str) -> Result<Option<ImageRef>, RuntimeError> {
        let s = self.begin(Call::Image(reference.to_owned()), None)?;
        Ok(s.images.get(&normalize_reference(reference)).cloned())
    }

    pub async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let id = {
            let mut s = self.begin(Call::Create(Box::new(spec.clone())), Some(FakeOp::Create))?;
            spec.validate()?;
            let Some(image) = s.images.get(&normalize_reference(&spec.image)).cloned() else {
                return Err(RuntimeError::NotFound(format!(
                    "No such image: {}",
                    spec.image
                )));
            };
            if s.containers.values().any(|c| c.spec.name == spec.name) {
                return Err(RuntimeError::Conflict(format!(
                    "The container name \"/{}\" is already in use",
                    spec.name
                )));
            }
            for m in &spec.mounts {
                if let Mount::VolumesFrom { container, .. } = m
                    && s.find(container).is_none()
                {
                    return Err(RuntimeError::NotFound(format!(
                        "No such container: {container}"
                    )));
                }
            }
            let id = ContainerId(format!("{:064x}", s.next_id));
            s.next_id = s.next_id.wrapping_add(1);
            let now = s.now();
            for m in &spec.mounts {
                if let Mount::Volume { name, .. } = m {
                    s.volumes.entry(name.clone()).or_insert_with(|| VolumeSpec {
                        name: name.clone(),
                        ..Default::default()
                    });
                }
            }
            s.containers.insert(
                id.clone(),
                FakeContainer {
                    id: id.clone(),
                    spec: spec.clone(),
                    image_id: image.id,
                    status: ContainerStatus::Created,
                    exit_code: None,
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                    health: None,
                    oom_killed: false,
                    host_ports: Vec::new(),
                    error: None,
                    logs: Vec::new(),
                    stats: None,
                    cpu_load: None,
                    stop_exit_code: None,
                },
            );
            id
        };
        self.emit_for(&id, EventKind::Create);
        Ok(id)
    }

    pub async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        {
            let mut s = self.begin(Call::Start(id.clone()), Some(FakeOp::Start))?;
            let c = s.get(id)?;
            if c.status == ContainerStatus::Running {
                return Ok(());
            }
            let spec = c.spec.clone();
            if let NetworkMode::Container(other) = &spec.network {
                let running = s
                    .find(other)
                    .is_some_and(|o| o.status == ContainerStatus::Running);
                if !running {
                    let msg = format!("cannot join network of a non running container: {other}");
                    s.set_error(id, &msg);
                    return Err(RuntimeError::Conflict(msg));
                }
            }
            let ports = match s.bind_ports(id, &spec) {
                Ok(p) => p,
                Err(msg) => {
                    s.set_error(id, &msg);
                    return Err(RuntimeError::Conflict(msg));
                }
            };
            let now = s.now();
            let c = s.get_mut(id)?;
            c.status = ContainerStatus::Running;
            c.exit_code = None;
            c.oom_killed = false;
            c.error = None;
            c.started_at = Some(now);
            c.finished_at = None;
            c.host_ports = ports;
            let checks = spec
                .health_check
                .as_ref()
                .is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"));
            c.health = checks.then_some(Health::Starting);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        self.emit_for(id, EventKind::Start);
        Ok(())
    }

    pub async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<(), RuntimeError> {
        let code = {
            let mut s = self.begin(
                Call::Stop {
                    id: id.clone(),
                    timeout,
                },
                Some(FakeOp::Stop),
            )?;
            let default = s.stop_exit_code;
            let c = s.get(id)?;
            c.stop_exit_code.unwrap_or(default)
        };
        self.finish(id, code, false);
        Ok(())
    }

    pub async fn kill(&self, id: &ContainerId, signal: &str) -> Result<(), RuntimeError> {
        let code = {
            let mut s = self.begin(
                Call::Kill {
                    id: id.clone(),
                    signal: signal.to_owned(),
                },
                Some(FakeOp::Kill),
            )?;
            let c = s.get(id)?;
            if c.status != ContainerStatus::Running {
                return Err(RuntimeError::Conflict(format!(
                    "Container {id} is not running"
                )));
            }
            let Some(number) = signal_number(signal) else {
                return Err(RuntimeError::Invalid(format!("invalid signal: {signal}")));
            };
            // A process that gets a terminating signal with no handler exits 128 + signal;
            // other signals (HUP, USR1, ...) are taken to be handled.
            matches!(number, 2 | 3 | 9 | 15).then_some(128 + number)
        };
        if let Some(code) = code {
            self.finish(id, code, false);
        }
        Ok(())
    }

    pub async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        {
            let mut s = self.begin(Call::Remove(id.clone()), Some(FakeOp::Remove))?;
            s.get(id)?;
        }
        // Forced removal kills a running container first, as Docker's does.
        self.finish(id, 137, false);
        self.emit_for(id, EventKind::Destroy);
        self.inner.lock().containers.remove(id);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        Ok(())
    }

    pub async fn inspect(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        let mut s = self.begin(Call::Inspect(id.clone()), Some(FakeOp::Inspect))?;
        let c = s.get(id)?;
        Ok(ContainerState {
            id: c.id.clone(),
            name: c.spec.name.clone(),
            image_id: c.image_id.clone(),
            labels: c.spec.labels.clone(),
            status: c.status,
            exit_code: c.exit_code,
            created_at: Some(c.created_at),
            started_at: c.started_at,
            finished_at: c.finished_at,
            health: c.health,
            oom_killed: c.oom_killed,
            host_ports: c.host_ports.clone(),
            ip_address: (c.status == ContainerStatus::Running
                && c.spec.network == NetworkMode::Bridge)
                .then(|| fake_ip(&c.id)),
            error: c.error.clone(),
        })
    }

    pub async fn list(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let call = Call::List(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let s = self.begin(call, Some(FakeOp::List))?;
        Ok(s.containers
            .values()
            .filter(|c| {
                labels
                    .iter()
                    .all(|(k, v)| c.spec.labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                name: c.spec.name.clone(),
                labels: c.spec.labels.clone(),
                status: c.status,
            })
            .collect())
    }

    pub fn events(&self) -> RuntimeStream<ContainerEvent> {
        let rx = self.events.subscribe();
        if let Err(e) = self.begin(Call::Events, None) {
            return futures_util::stream::once(async move { Err(e) }).boxed();
        }
        futures_util::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(e) => Some((Ok(e), rx)),
                // A slow reader is told it missed events (it should re-inspect), then carries
                // on with the newest ones.
                Err(broadcast::error::RecvError::Lagged(n)) => Some((
                    Err(RuntimeError::Other(format!("missed {n} container events"))),
                    rx,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }

    pub fn logs(&self, id: &ContainerId, request: LogsRequest) -> RuntimeStream<LogChunk> {
        if let Err(e) = self
            .begin(Call::Logs(id.clone(), request), None)
            .and_then(|mut s| s.get(id).map(|_| ()))
        {
            return futures_util::stream::once(async move { Err(e) }).boxed();
        }
        let fake = self.clone();
        let id = id.clone();
        let rx = self.changed.subscribe();
        futures_util::stream::unfold((0usize, rx), move |(mut next, mut rx)| {
            let fake = fake.clone();
            let id = id.clone();
            async move {
                loop {
                    // Marks the current version seen before looking, so a change made after
                    // the look wakes the wait below.
                    rx.borrow_and_update();
                    let (chunk, live) = {
                        let s = fake.inner.lock();
                        let c = s.containers.get(&id)?;
                        let chunk = c
                            .logs
                            .iter()
                            .enumerate()
                            .skip(next)
                            .find(|(_, l)| {
                                request.since_millis.is_none_or(|t| l.timestamp_millis >= t)
                            })
                            .map(|(i, l)| (i, l.clone()));
                        (chunk, c.status == ContainerStatus::Running)
                    };
                    if let Some((i, chunk)) = chunk {
                        next = i + 1;
                        return Some((Ok(chunk), (next, rx)));
                    }
                    if !request.follow || !live {
                        return None;
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            }
        })
        .boxed()
    }

    pub async fn stats(&self, id: &ContainerId) -> Result<StatsSample, RuntimeError> {
        let mut s = self.begin(Call::Stats(id.clone()), Some(FakeOp::Stats))?;
        let cpus = s.info.cpus;
        let host_mib = s.info.memory_mib;
        let c = s.get_mut(id)?;
        let mut sample = c.stats.unwrap_or(StatsSample {
            online_cpus: cpus,
            memory_limit_bytes: c
                .spec
                .memory_limit_mib
                .unwrap_or(host_mib)
                .saturating_mul(1024 * 1024),
            ..Default::default()
        });
        if let Some(cores) = c.cpu_load {
            const SECOND_NS: u64 = 1_000_000_000;
            let online = sample.online_cpus.max(1);
            sample.online_cpus = online;
            sample.system_cpu_ns = sample
                .system_cpu_ns
                .saturating_add(SECOND_NS.saturating_mul(u64::from(online)));
            let used = (cores * 1e9).round() as u64;
            sample.cpu_total_ns = sample.cpu_total_ns.saturating_add(used);
            c.stats = Some(sample);
        }
        Ok(sample)
    }

    /// The sample `stats` gives (same call, same failures), in the shape of Docker's stats
    /// document.
    pub async fn raw_stats(&self, id: &ContainerId) -> Result<serde_json::Value, RuntimeError> {
        let sample = self.stats(id).await?;
        let (read, name) = {
            let s = self.inner.lock();
            let name = s
                .containers
                .get(id)
                .map(|c| c.spec.name.clone())
                .unwrap_or_default();
            (s.now(), name)
        };
        let read = chrono::DateTime::from_timestamp_millis(read)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        Ok(serde_json::json!({
            "read": read,
            "name": format!("/{name}"),
            "id": id.as_str(),
            "cpu_stats": {
                "cpu_usage": {"total_usage": sample.cpu_total_ns},
                "system_cpu_usage": sample.system_cpu_ns,
                "online_cpus": sample.online_cpus,
            },
            "memory_stats": {
                "usage": sample.memory_usage_bytes,
                "limit": sample.memory_limit_bytes,
            },
            "networks": {
                "eth0": {"rx_bytes": sample.network_rx_bytes, "tx_bytes": sample.network_tx_bytes},
            },
        }))
    }

    pub async fn bridge_gateway(&self) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        Ok(self.inner.lock().bridge_gateway)
    }

    pub async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let mut s = self.begin(Call::CreateVolume(spec.clone()), Some(FakeOp::CreateVolume))?;
        s.volumes
            .entry(spec.name.clone())
            .or_insert_with(|| spec.clone());
        Ok(())
    }

    pub async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let mut s = self.begin(
            Call::RemoveVolume(name.to_owned()),
            Some(FakeOp::RemoveVolume),
        )?;
        if !s.volumes.contains_key(name) {
            return Err(RuntimeError::NotFound(format!("no such volume: {name}")));
        }
        let in_use = s.containers.values().any(|c| {
            c.spec
                .mounts
                .iter()
                .any(|m| matches!(m, Mount::Volume { name: n, .. } if n == name))
        });
        if in_use {
            return Err(RuntimeError::Conflict(format!("volume is in use: {name}")));
        }
        s.volumes.remove(name);
        Ok(())
    }

    /// The names of the volumes that exist.
    pub fn volumes(&self) -> BTreeSet<String> {
        self.inner.lock().volumes.keys().cloned().collect()
    }

    // ---- internals --------------------------------------------------------------------

    /// Records `call`, then fails it if the daemon is "down" or a failure is queued for `op`.
    fn begin(
        &self,
        call: Call,
        op: Option<FakeOp>,
    ) -> Result<parking_lot::MutexGuard<'_, State>, RuntimeError> {
        let mut s = self.inner.lock();
        s.calls.push(call);
        if s.unavailable {
            return Err(RuntimeError::Unavailable(
                "fake runtime set unavailable".into(),
            ));
        }
        if let Some(op) = op
            && let Some(queue) = s.failures.get_mut(&op)
            && !queue.is_empty()
        {
            return Err(queue.remove(0));
        }
        Ok(s)
    }

    /// Ends a running container's process with `code`.
    fn finish(&self, id: &ContainerId, code: i64, oom: bool) {
        let ended = {
            let mut s = self.inner.lock();
            let now = s.now();
            match s.containers.get_mut(id) {
                Some(c) if c.status == ContainerStatus::Running => {
                    c.status = ContainerStatus::Exited;
                    c.exit_code = Some(code);
                    c.finished_at = Some(now);
                    c.oom_killed = oom;
                    // Docker releases published ports on exit and keeps the last health.
                    c.host_ports.clear();
                    true
                }
                _ => false,
            }
        };
        if ended {
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
            self.emit_for(
                id,
                EventKind::Die {
                    exit_code: Some(code),
                },
            );
        }
    }

    fn emit_for(&self, id: &ContainerId, kind: EventKind) {
        let event = {
            let s = self.inner.lock();
            let Some(c) = s.containers.get(id) else {
                return;
            };
            ContainerEvent {
                id: id.clone(),
                kind,
                time_millis: s.now(),
                labels: c.spec.labels.clone(),
            }
        };
        // No subscribers is fine: events are fire-and-forget, as Docker's are.
        let _ = self.events.send(event);
    }
}

impl State {
    fn now(&self) -> i64 {
        match &self.clock {
            Some(clock) => clock(),
            None => self.now,
        }
    }

    fn get(&mut self, id: &ContainerId) -> Result<&FakeContainer, RuntimeError> {
        self.containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("No such container: {id}")))
    }

    fn get_mut(&mut self, id: &ContainerId) -> Result<&mut FakeContainer, RuntimeError> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("No such container: {id}")))
    }

    /// A container by id or name, as Docker resolves references.
    fn find(&self, reference: &str) -> Option<&FakeContainer> {
        self.containers
            .get(&ContainerId(reference.to_owned()))
            .or_else(|| self.containers.values().find(|c| c.spec.name == reference))
    }

    fn set_error(&mut self, id: &ContainerId, msg: &str) {
        if let Some(c) = self.containers.get_mut(id) {
            c.error = Some(msg.to_owned());
        }
    }

    /// Host ports for `spec`'s mappings, refusing one a running container already holds on an
    /// overlapping address (Docker's "port is already allocated").
    fn bind_ports(
        &mut self,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<Vec<PortBinding>, String> {
        if spec.network != NetworkMode::Bridge {
            return Ok(Vec::new());
        }
        let mut taken: Vec<PortBinding> = self
            .containers
            .values()
            .filter(|c| &c.id != id && c.status == ContainerStatus::Running)
            .flat_map(|c| c.host_ports.iter().cloned())
            .collect();
        let clash = |taken: &[PortBinding], ip: &str, port: u16, proto| {
            taken.iter().any(|t| {
                t.host_port == port
                    && t.protocol == proto
                    && (t.host_ip == ip || t.host_ip == "0.0.0.0" || ip == "0.0.0.0")
            })
        };
        let mut out = Vec::new();
        for p in &spec.ports {
            let host_port = match p.host_port {
                Some(h) => {
                    if clash(&taken, &p.host_ip, h, p.protocol) {
                        return Err(format!(
                            "Bind for {}:{h} failed: port is already allocated",
                            p.host_ip
                        ));
                    }
                    h
                }
                None => {
                    // Scan the ephemeral range once from where the last pick stopped.
                    let mut found = None;
                    for _ in 0..=(u16::MAX - FIRST_DYNAMIC_PORT) {
                        let candidate = self.next_port;
                        self.next_port = if self.next_port == u16::MAX {
                            FIRST_DYNAMIC_PORT
                        } else {
                            self.next_port + 1
                        };
                        if !clash(&taken, &p.host_ip, candidate, p.protocol) {
                            found = Some(candidate);
                            break;
                        }
                    }
                    found.ok_or_else(|| "no free host port".to_owned())?
                }
            };
            let binding = PortBinding {
                container_port: p.container_port,
                host_port,
                protocol: p.protocol,
                host_ip: p.host_ip.clone(),
            };
            taken.push(binding.clone());
            out.push(binding);
        }
        Ok(out)
    }
}

/// Deterministic image identity for a reference (FNV-1a, spread to 64 hex digits).
fn image_ref(reference: &str) -> ImageRef {
    let hex = |salt: u64| {
        (0..4u64)
            .map(|i| format!("{:016x}", fnv(reference, salt.wrapping_add(i))))
            .collect::<String>()
    };
    ImageRef {
        id: format!("sha256:{}", hex(0)),
        digest: Some(format!("sha256:{}", hex(100))),
    }
}

fn fnv(s: &str, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stable bridge address for a container (172.17.x.y, as Docker's default bridge).
fn fake_ip(id: &ContainerId) -> String {
    let h = fnv(id.as_str(), 7);
    format!("172.17.{}.{}", (h >> 8) % 256, (h % 253) + 2)
}

/// Linux signal numbers for the names Docker accepts (`SIGTERM`, `TERM`, `15`).
fn signal_number(signal: &str) -> Option<i64> {
    if let Ok(n) = signal.parse::<i64>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    Some(match name.to_ascii_uppercase().as_str() {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        "WINCH" => 28,
        _ => return None,
    })
}
