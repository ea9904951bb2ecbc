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
    /// key: `cluster|instanceId` (written by the agent issue)
    pub const CONTAINER_INSTANCE: &str = "ecs.container-instance";
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
