//! What a runtime reports back: node facts, image identities, container state, events, log
//! chunks and resource samples. Times are unix milliseconds, as ECS and CloudWatch use them.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::spec::Protocol;

/// An opaque container identifier (Docker's 64-hex id; the fake's own ids).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(pub String);

impl ContainerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ContainerId {
    fn from(s: String) -> Self {
        ContainerId(s)
    }
}

impl From<&str> for ContainerId {
    fn from(s: &str) -> Self {
        ContainerId(s.to_owned())
    }
}

/// The node as the runtime sees it, for container-instance registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub cpus: u32,
    pub memory_mib: u64,
    /// `linux`.
    pub os_type: String,
    /// ECS's `ecs.cpu-architecture` spelling: `x86_64` or `arm64`.
    pub arch: String,
    /// The engine's version (`20.10.24+dfsg1`).
    pub runtime_version: String,
    /// The API version in use after negotiation (`1.41`).
    pub api_version: String,
}

/// A local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The image id (`sha256:...` of its config).
    pub id: String,
    /// The repository digest it was pulled by (`sha256:...`), if it came from a registry.
    pub digest: Option<String>,
}

/// Lifecycle status, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// A status this crate does not know (a newer engine).
    Unknown,
}

impl ContainerStatus {
    /// Whether the container's process has ended for good (it will not run again unless
    /// started anew).
    pub fn is_stopped(self) -> bool {
        matches!(self, ContainerStatus::Exited | ContainerStatus::Dead)
    }

    pub(crate) fn parse(s: &str) -> ContainerStatus {
        match s {
            "created" => ContainerStatus::Created,
            "running" => ContainerStatus::Running,
            "paused" => ContainerStatus::Paused,
            "restarting" => ContainerStatus::Restarting,
            "removing" => ContainerStatus::Removing,
            "exited" => ContainerStatus::Exited,
            "dead" => ContainerStatus::Dead,
            _ => ContainerStatus::Unknown,
        }
    }
}

/// Health-check status; `None` in [`ContainerState::health`] means no health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// A published port as bound on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
}

/// One container's observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: ContainerId,
    pub name: String,
    /// The image id the container runs.
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub status: ContainerStatus,
    /// Set once the container has exited.
    pub exit_code: Option<i64>,
    pub created_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub health: Option<Health>,
    pub oom_killed: bool,
    /// Published ports (bridge mode); empty in host mode, where ports are the container's own.
    pub host_ports: Vec<PortBinding>,
    /// The container's address on its network, when it has its own.
    pub ip_address: Option<String>,
    /// Why the runtime failed to start the container, if it did.
    pub error: Option<String>,
}

/// A container found by [`crate::Runtime::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: ContainerId,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: ContainerStatus,
}

/// What happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Start,
    /// The process ended; Docker reports the exit code with the event.
    Die {
        exit_code: Option<i64>,
    },
    Oom,
    HealthStatus(Health),
    Destroy,
}

/// One container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: ContainerId,
    pub kind: EventKind,
    pub time_millis: i64,
    /// The container's labels at the time of the event (Docker sends them as attributes).
    pub labels: BTreeMap<String, String>,
}

/// Which output a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One log message (normally one line, with its newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub bytes: Bytes,
    /// When the runtime received it.
    pub timestamp_millis: i64,
}

/// What to read from a container's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogsRequest {
    /// Keep streaming until the container stops.
    pub follow: bool,
    /// Only chunks at or after this time (resuming after an agent restart).
    pub since_millis: Option<i64>,
}

/// One resource-usage sample, in the units ECS's task metadata `/stats` and CloudWatch's
/// `CPUUtilization`/`MemoryUtilization` are computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSample {
    /// Total CPU time the container has used, nanoseconds.
    pub cpu_total_ns: u64,
    /// Total CPU time of the host, nanoseconds (the denominator for utilisation).
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    /// Memory in use, less inactive page cache (as `docker stats` shows it).
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
}
