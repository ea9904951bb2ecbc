//! The protocol between a node agent and the control plane, following the semantics of ECS's own
//! agent (RegisterContainerInstance, DiscoverPollEndpoint + long poll, SubmitTaskStateChange,
//! SubmitContainerStateChange) over berth's endpoint, as JSON under [`PREFIX`].
//!
//! The exchange is level-triggered and idempotent, so an agent or server restart at any point
//! converges:
//! - [`REGISTER`]: the agent joins a cluster with the server's join token (first time) or its
//!   node token (re-registration keeps the same container instance), reporting its resources.
//! - [`POLL`]: a long poll that doubles as the heartbeat. The answer is the *whole* desired state
//!   of the node — every task placed on it that is not yet STOPPED — never a delta, so a missed
//!   answer loses nothing.
//! - [`STATE`]: the agent reports what it observed. The server applies only forward
//!   transitions of the task lifecycle, so a repeated or late report changes nothing.
//! - [`LOGS`] and [`METRICS`]: container output and resource usage, for CloudWatch.
//!
//! Requests after registration carry `Authorization: Bearer <node_token>`.
//!
//! **API Boundary:** plain data. The task definition and overrides travel in their ECS wire form
//! (`serde_json::Value` of `TaskDefinition` and `TaskOverride`), which the agent translates into
//! runtime container specs.

use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "/_berth/agent/v1";
pub const REGISTER: &str = "/_berth/agent/v1/register";
pub const POLL: &str = "/_berth/agent/v1/poll";
pub const STATE: &str = "/_berth/agent/v1/state";
/// Container output for CloudWatch Logs (the `awslogs` log driver), authenticated by the node
/// token like every other agent call: the agent holds no AWS credentials, so it cannot sign
/// `PutLogEvents` itself, and the node token already proves which node is speaking.
pub const LOGS: &str = "/_berth/agent/v1/logs";

/// Resource usage of the node's tasks, sampled every few seconds, from which the server
/// publishes `AWS/ECS` `CPUUtilization` and `MemoryUtilization`. Node token, like every other
/// call; a lost report is simply a missing sample (the next one follows in seconds).
pub const METRICS: &str = "/_berth/agent/v1/metrics";

/// What a task needs before its images are pulled: registry credentials (berth's own registry's
/// 12-hour token, or a container's `repositoryCredentials` secret) and the values of its
/// containers' `secrets`. The ECS agent fetches these with the task execution role; berth's
/// agent holds no AWS keys, so the server resolves them for a task placed on the calling node,
/// and only what that task's definition names. Node token, like every other call.
pub const CREDENTIALS: &str = "/_berth/agent/v1/credentials";

/// The registry host an image reference names (`host[:port]/repo:tag`), as docker reads it: the
/// first component, when it has a `.` or `:` or is `localhost`; none means Docker Hub. The
/// agent asks for credentials only for such images, and the server decides by it whose they are.
pub fn registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// How often agents sample their tasks' usage by default (seconds).
pub const METRICS_INTERVAL_SECS: u64 = 5;

/// The most tasks one [`MetricsReport`] may carry (a node runs far fewer).
pub const MAX_METRICS_TASKS: usize = 10_000;

/// The longest a poll is held open before the server answers with the unchanged state.
pub const POLL_WAIT_SECS: u64 = 20;

/// An agent that has not polled for this long is shown `agentConnected: false`.
pub const DISCONNECTED_AFTER_SECS: u64 = 60;

/// Docker labels the agent sets on every container it runs, as the ECS agent sets them.
pub mod labels {
    pub const CLUSTER: &str = "com.amazonaws.ecs.cluster";
    pub const TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
    pub const CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
    pub const FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
    pub const REVISION: &str = "com.amazonaws.ecs.task-definition-version";
    /// berth's own: which container instance runs it, for re-adoption after an agent restart.
    pub const INSTANCE: &str = "berth.container-instance";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub cluster: String,
    /// The server's join token, needed when the agent has no node token yet.
    #[serde(default)]
    pub join_token: Option<String>,
    /// The container instance id and node token from an earlier registration, to come back as
    /// the same instance.
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub node_token: Option<String>,
    pub resources: Resources,
    /// ECS attributes such as `ecs.os-type`, `ecs.cpu-architecture`, and custom `--attribute`s.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    pub version: VersionInfo,
    /// False when the node has no working container runtime: it registers (so users see it and
    /// why) but receives no tasks.
    pub can_run_tasks: bool,
    #[serde(default)]
    pub cannot_run_reason: Option<String>,
    /// A stable host identifier, shown as `ec2InstanceId`.
    pub host_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// 1024 units per core.
    pub cpu: i32,
    /// MiB, less the agent's reserve.
    pub memory_mib: i32,
    /// Host ports (TCP) not available to tasks (e.g. 22, the agent's own).
    #[serde(default)]
    pub reserved_ports: Vec<u16>,
    #[serde(default)]
    pub reserved_udp_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub agent_version: String,
    #[serde(default)]
    pub agent_hash: Option<String>,
    #[serde(default)]
    pub docker_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub instance_id: String,
    pub container_instance_arn: String,
    pub node_token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollRequest {
    pub instance_id: String,
    /// The `revision` of the last answer the agent acted on; the server holds the poll while
    /// nothing for this node changed since (up to [`POLL_WAIT_SECS`]). 0 answers at once.
    #[serde(default)]
    pub after_revision: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollResponse {
    pub revision: u64,
    /// Every task on this node whose last status is not STOPPED.
    pub tasks: Vec<AssignedTask>,
    /// Whether the instance is DRAINING (no new tasks arrive; running ones stay until stopped).
    #[serde(default)]
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignedTask {
    pub task_arn: String,
    /// `RUNNING` or `STOPPED`.
    pub desired_status: String,
    /// The ECS `TaskDefinition` the task runs, in wire form.
    pub task_definition: serde_json::Value,
    /// The ECS `TaskOverride` given to RunTask/StartTask, in wire form (or null).
    #[serde(default)]
    pub overrides: serde_json::Value,
    /// Host ports the server reserved for static `hostPort`s of this task.
    #[serde(default)]
    pub reserved_ports: Vec<u16>,
    /// Why the task should stop, when `desired_status` is STOPPED (shown as `stoppedReason`).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The task's group (`service:<name>` for a service's tasks), for the metadata endpoint.
    #[serde(default)]
    pub group: Option<String>,
    /// Each container's ARN, by container name, for the metadata endpoint.
    #[serde(default)]
    pub container_arns: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateReport {
    pub instance_id: String,
    pub tasks: Vec<TaskState>,
}

/// What the agent observed of one task. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub task_arn: String,
    /// An ECS task status: PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, STOPPED…
    pub status: String,
    #[serde(default)]
    pub containers: Vec<ContainerState>,
    /// ECS stop codes: `EssentialContainerExited`, `TaskFailedToStart`, `UserInitiated`…
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub pull_started_at: Option<i64>,
    #[serde(default)]
    pub pull_stopped_at: Option<i64>,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub execution_stopped_at: Option<i64>,
    /// HEALTHY, UNHEALTHY or UNKNOWN, from the essential containers' health checks.
    #[serde(default)]
    pub health_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    #[serde(default)]
    pub runtime_id: Option<String>,
    /// PENDING, RUNNING or STOPPED.
    pub status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// e.g. `CannotPullContainerError: …`
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub network_bindings: Vec<NetworkBinding>,
    /// HEALTHY, UNHEALTHY or UNKNOWN.
    #[serde(default)]
    pub health_status: Option<String>,
    #[serde(default)]
    pub image_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkBinding {
    pub bind_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Lines of one container for one log stream. An empty `events` asks only for the stream's
/// `last_timestamp` (creating the stream, and with `create_group` the group), which is how a
/// restarted agent resumes without shipping a line twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    pub instance_id: String,
    /// `awslogs-region`; the server's region when absent.
    #[serde(default)]
    pub region: Option<String>,
    pub group: String,
    pub stream: String,
    /// `awslogs-create-group` is `"true"`.
    #[serde(default)]
    pub create_group: bool,
    pub events: Vec<LogEvent>,
}

/// One line: Unix milliseconds and the text (without its newline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    pub timestamp: i64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatchResponse {
    /// The newest event timestamp the stream holds, after this batch.
    #[serde(default)]
    pub last_timestamp: Option<i64>,
    /// How many events of the batch CloudWatch Logs' rules refused (too old, too new).
    #[serde(default)]
    pub rejected: usize,
}

/// One sample of every task running on the node. Sent even when the node runs no task: the
/// node's registered capacity is what the cluster's utilization is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub instance_id: String,
    pub tasks: Vec<TaskUsage>,
}

/// What one task used, summed over its running containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUsage {
    pub task_arn: String,
    /// CPU used since the previous sample, in ECS CPU units (1024 = one core busy).
    pub cpu_units: f64,
    /// Memory in use, MiB (less inactive page cache, as `docker stats` counts it).
    pub memory_mib: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialsRequest {
    pub instance_id: String,
    pub task_arn: String,
}

/// Per container of the task (by name), what it needs; a container that needs nothing is left
/// out. A reference that cannot be resolved fails the whole request with
/// `ResourceInitializationError`, which the agent turns into the task's stopped reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CredentialsResponse {
    pub containers: Vec<ContainerCredentials>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerCredentials {
    pub name: String,
    /// Credentials for the registry of the container's image.
    #[serde(default)]
    pub registry: Option<RegistryCredentials>,
    /// The container's `secrets`, resolved: environment variable name and value.
    #[serde(default)]
    pub secrets: Vec<SecretValue>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
    /// The registry host the credentials are for (`host[:port]`).
    pub server: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretValue {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Errors the agent endpoints answer with: `{"code": …, "message": …}` and a 4xx status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_read_as_docker_reads_them() {
        assert_eq!(
            registry_host("127.0.0.1:4566/app/web:1"),
            Some("127.0.0.1:4566")
        );
        assert_eq!(registry_host("localhost/app"), Some("localhost"));
        assert_eq!(
            registry_host("registry.example.com/app"),
            Some("registry.example.com")
        );
        assert_eq!(registry_host("library/busybox:1"), None);
        assert_eq!(registry_host("busybox"), None);
    }
}
