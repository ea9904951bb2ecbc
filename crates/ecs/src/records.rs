//! What the ECS API keeps in the store: one record kind per resource, in berth's own shape
//! (the wire shapes are built from these on the way out). Sub-structures that are pure data, such
//! as container definitions, are kept in their wire form so every member round-trips.

use berth_shapes::ecs as wire;
use serde::{Deserialize, Serialize};

/// Store kinds. Keys are noted beside each.
pub mod kinds {
    /// key: cluster name
    pub const CLUSTER: &str = "ecs.cluster";
    /// key: `family,revision` with the revision zero-padded, so keys sort as ECS lists them
    pub const TASK_DEFINITION: &str = "ecs.task-definition";
    /// key: family
    pub const FAMILY: &str = "ecs.task-definition-family";
    /// key: capacity provider name
    pub const CAPACITY_PROVIDER: &str = "ecs.capacity-provider";
    /// key: `principalArn|name`; the account default uses principal `default`
    pub const ACCOUNT_SETTING: &str = "ecs.account-setting";
    /// key: `cluster|targetId|name`
    pub const ATTRIBUTE: &str = "ecs.attribute";
    /// key: `cluster|instanceId`
    pub const CONTAINER_INSTANCE: &str = "ecs.container-instance";
    /// key: instanceId → which cluster holds it, for agent calls that name only the instance
    pub const INSTANCE_INDEX: &str = "ecs.container-instance-index";
    /// key: `cluster|taskId`
    pub const TASK: &str = "ecs.task";
    /// key: `cluster|instanceId|taskId`, value `true`: the tasks placed on an instance, so a
    /// node's poll reads its own tasks rather than its whole cluster's. Written with the task,
    /// removed with it (tasks never move between instances).
    pub const TASK_ON_INSTANCE: &str = "ecs.task-on-instance";
    /// key: `cluster|serviceName`
    pub const SERVICE: &str = "ecs.service";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    pub arn: String,
    /// ACTIVE, or INACTIVE once deleted (ECS keeps describing deleted clusters for a while).
    pub status: String,
    pub settings: Vec<wire::ClusterSetting>,
    pub configuration: Option<wire::ClusterConfiguration>,
    pub service_connect_defaults: Option<wire::ClusterServiceConnectDefaults>,
    pub capacity_providers: Vec<String>,
    pub default_capacity_provider_strategy: Vec<wire::CapacityProviderStrategyItem>,
    pub tags: Vec<wire::Tag>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    /// The task definition as DescribeTaskDefinition returns it, revision and status included.
    pub definition: wire::TaskDefinition,
    pub tags: Vec<wire::Tag>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub family: String,
    /// The highest revision ever registered: revisions are never reused, even after deletion.
    pub last_revision: i32,
    /// How many revisions are ACTIVE; a family with none is INACTIVE.
    pub active_revisions: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityProviderRecord {
    pub provider: wire::CapacityProvider,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountSettingRecord {
    pub name: String,
    pub value: String,
    pub principal_arn: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttributeRecord {
    pub cluster: String,
    pub attribute: wire::Attribute,
}

pub fn task_definition_key(family: &str, revision: i32) -> String {
    format!("{family},{revision:010}")
}

/// CPU units, MiB and host ports: what an instance offers, what remains, what a task holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu: i64,
    pub memory: i64,
    /// TCP host ports taken (reserved by the node, or by a task's static `hostPort`s).
    pub ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInstanceRecord {
    pub cluster: String,
    /// 32 lowercase hex digits, as ECS makes them.
    pub id: String,
    pub arn: String,
    pub ec2_instance_id: String,
    /// ACTIVE, DRAINING or INACTIVE (deregistered; kept so it can still be described).
    pub status: String,
    pub registered: Capacity,
    /// What placement may still use. Changed only in the transaction that places or stops a
    /// task, under `Expect::Version` of this record, so concurrent placements cannot
    /// oversubscribe.
    pub remaining: Capacity,
    pub attributes: Vec<wire::Attribute>,
    pub version_info: wire::VersionInfo,
    pub registered_at_ms: i64,
    pub last_heartbeat_ms: i64,
    /// SHA-256 (hex) of the node token the agent authenticates with; the token itself is
    /// never stored. `None` for instances registered through the ECS API.
    pub token_hash: Option<String>,
    pub can_run_tasks: bool,
    pub cannot_run_reason: Option<String>,
    pub tags: Vec<wire::Tag>,
    /// ECS's `version`: goes up on every change a client can see (not on heartbeats).
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceIndexRecord {
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub cluster: String,
    /// 32 lowercase hex digits.
    pub id: String,
    pub arn: String,
    pub cluster_arn: String,
    pub container_instance_id: String,
    pub container_instance_arn: String,
    /// The revision it runs. Revisions are immutable and their records are never removed
    /// (deregistered and deleted ones only change status), so the definition is stored once in
    /// its `ecs.task-definition` record and resolved by those who need it (the agent's poll,
    /// DescribeTasks' ARN is this): scans of the fleet's tasks then decode no definitions.
    pub task_definition_arn: String,
    /// Whether a container of its definition has a health check (the rollout then waits for
    /// HEALTHY), kept here so a controller pass needs no definition.
    pub health_checked: bool,
    /// Host ports Docker picks for it (bridge mappings without a host port), which placement
    /// counts against its instance's ephemeral range.
    pub dynamic_ports: u32,
    pub overrides: wire::TaskOverride,
    pub last_status: String,
    pub desired_status: String,
    /// The containers as DescribeTasks shows them (runtime ids, exit codes, bindings…).
    pub containers: Vec<wire::Container>,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    pub launch_type: String,
    pub cpu: String,
    pub memory: String,
    /// What the task holds on its instance until it is STOPPED.
    pub reserved: Capacity,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    pub health_status: String,
    pub tags: Vec<wire::Tag>,
    pub attributes: Vec<wire::Attribute>,
    pub enable_execute_command: bool,
    /// ECS's `version`: goes up on every change.
    pub version: i64,
}

impl TaskRecord {
    /// The family of its revision.
    pub fn family(&self) -> &str {
        family_of(&self.task_definition_arn)
    }
}

/// The family a task definition ARN names (`…:task-definition/<family>:<revision>`).
pub fn family_of(task_definition_arn: &str) -> &str {
    let name = task_definition_arn
        .rsplit_once(":task-definition/")
        .map_or(task_definition_arn, |(_, name)| name);
    name.rsplit_once(':').map_or(name, |(family, _)| family)
}

pub fn pair_key(cluster: &str, id: &str) -> String {
    format!("{cluster}|{id}")
}

/// The [`kinds::TASK_ON_INSTANCE`] key of a task on an instance.
pub fn on_instance_key(cluster: &str, instance_id: &str, task_id: &str) -> String {
    format!("{cluster}|{instance_id}|{task_id}")
}

/// A service: what the user declared, its deployments (newest first) and its events (newest
/// first, at most [`MAX_SERVICE_EVENTS`]). Task counts are not stored: they are observed from
/// the task records whenever they are needed, so they can never disagree with the tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub cluster: String,
    pub name: String,
    pub arn: String,
    pub cluster_arn: String,
    /// ACTIVE, DRAINING (deleted, tasks stopping) or INACTIVE (deleted, kept describable).
    pub status: String,
    pub desired_count: i32,
    pub launch_type: String,
    /// REPLICA or DAEMON.
    pub scheduling_strategy: String,
    /// The primary deployment's task definition ARN.
    pub task_definition: String,
    pub deployment_configuration: wire::DeploymentConfiguration,
    pub placement_constraints: Vec<wire::PlacementConstraint>,
    pub placement_strategy: Vec<wire::PlacementStrategy>,
    pub load_balancers: Vec<wire::LoadBalancer>,
    pub network_configuration: Option<wire::NetworkConfiguration>,
    pub health_check_grace_period_seconds: Option<i32>,
    pub role_arn: Option<String>,
    pub tags: Vec<wire::Tag>,
    /// NONE, SERVICE or TASK_DEFINITION.
    pub propagate_tags: String,
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    pub client_token: Option<String>,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    /// Newest first; the PRIMARY one leads. INACTIVE ones are kept (bounded) for
    /// ListServiceDeployments and DescribeServiceRevisions.
    pub deployments: Vec<DeploymentRecord>,
    pub events: Vec<ServiceEventRecord>,
    /// Set when the "has reached a steady state." event was written, cleared by any change, so
    /// the event is written once per steady period.
    pub steady: bool,
    /// Set by DeleteService; the record becomes INACTIVE once no task is left.
    pub deleted_at_ms: Option<i64>,
    /// ENABLED or DISABLED, echoed (berth's nodes have no availability zones to balance).
    #[serde(default)]
    pub availability_zone_rebalancing: String,
}

pub const MAX_SERVICE_EVENTS: usize = 100;
/// Finished deployments kept per service for ListServiceDeployments.
pub const MAX_FINISHED_DEPLOYMENTS: usize = 20;

/// One deployment of a service: ECS's `Deployment` (status PRIMARY/ACTIVE/INACTIVE), its
/// `ServiceDeployment` (the newer API's view of the same rollout) and its `ServiceRevision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// `ecs-svc/<19 digits>`; tasks of this deployment carry it as `startedBy`.
    pub id: String,
    pub service_deployment_arn: String,
    pub service_revision_arn: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: String,
    pub task_definition: String,
    pub launch_type: String,
    pub network_configuration: Option<wire::NetworkConfiguration>,
    pub load_balancers: Vec<wire::LoadBalancer>,
    /// The configuration the rollout runs under (the service's, when it was created).
    pub deployment_configuration: wire::DeploymentConfiguration,
    /// The container images of the revision, for DescribeServiceRevisions.
    pub container_images: Vec<wire::ContainerImage>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub stopped_at_ms: Option<i64>,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: String,
    pub rollout_state_reason: String,
    /// The ServiceDeployment status: IN_PROGRESS, SUCCESSFUL, STOPPED, STOP_REQUESTED,
    /// ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED.
    pub service_deployment_status: String,
    pub status_reason: Option<String>,
    /// The deployments this one replaces (their service revision ARNs).
    pub source_revisions: Vec<String>,
    /// Set when this deployment rolls back a failed one.
    pub rollback: Option<wire::Rollback>,
    /// Tasks of this deployment that stopped on their own (not asked to by anyone).
    pub failed_tasks: i32,
    /// Failures since the last task of this deployment that reached RUNNING; drives the launch
    /// backoff.
    pub consecutive_failures: u32,
    pub launch_not_before_ms: i64,
    /// Ids of failed tasks already counted, so a failure is counted once however often it is
    /// seen (bounded; tasks are forgotten an hour after they stop).
    pub counted_failures: Vec<String>,
    /// Whether some task of this deployment has reached RUNNING.
    pub any_running: bool,
    /// For a deployment the circuit breaker (or StopServiceDeployment) started to roll back a
    /// failed one: the failed deployment's id, whose rollback completes with this deployment.
    #[serde(default)]
    pub rolls_back: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEventRecord {
    pub id: String,
    pub created_at_ms: i64,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_is_read_from_the_revision_arn() {
        assert_eq!(
            family_of("arn:aws:ecs:us-east-1:000000000000:task-definition/web-app_2:17"),
            "web-app_2"
        );
        assert_eq!(family_of("web:3"), "web");
        assert_eq!(family_of(""), "");
    }
}
