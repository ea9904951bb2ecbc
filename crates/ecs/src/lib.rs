//! The ECS control API over awsJson 1.1 (`AmazonEC2ContainerServiceV20141113`). One file per
//! action: parse the typed request, apply ECS's rules, read and write the store, answer with the
//! wire shape.
//!
//! **API Boundary:** handlers see a validated, typed request and a [`RequestContext`]; they know
//! nothing of HTTP or SigV4. Errors leave as [`AwsError`] with ECS's codes.

mod common;
mod records;

mod account_settings;
mod attributes;
mod capacity_providers;
mod clusters;
mod container_instances;
mod load_balancing;
pub mod nodes;
mod placement;
pub mod service_controller;
mod services;
mod tags;
mod task_definitions;
mod tasks;
pub mod upgrade;
pub mod utilization;

use berth_aws::model::ServiceModel;
use berth_aws::token::TokenCodec;
pub use berth_model::clock::{Clock, system_clock};
use berth_store::AnyStore;
use std::sync::Arc;

pub use records::{ContainerInstanceRecord, ServiceRecord, TaskRecord, family_of, kinds};

/// Operations berth does not serve yet, one per line as `Name: reason`. The operation ledger
/// test checks that every operation of the model is either implemented or listed here.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

/// The ECS API family.
#[derive(Clone)]
pub struct Ecs {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    model: ServiceModel,
    tokens: TokenCodec,
    clock: Clock,
}

impl Ecs {
    /// `token_key` signs pagination tokens; it must be stable across restarts so tokens stay
    /// valid.
    pub fn new(store: AnyStore, token_key: [u8; 32], clock: Clock) -> Self {
        let model = ServiceModel::lazy(berth_shapes::models::ECS);
        Ecs {
            inner: Arc::new(Inner {
                store,
                model,
                tokens: TokenCodec::new(token_key),
                clock,
            }),
        }
    }

    pub(crate) fn store(&self) -> &AnyStore {
        &self.inner.store
    }

    /// The injected clock's time, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }

    pub(crate) fn tokens(&self) -> &TokenCodec {
        &self.inner.tokens
    }
}

berth_aws::json_service! {
    service: Ecs,
    title: "ECS",
    validation_error: "InvalidParameterException",
    model: |this| &this.inner.model,
    operations: {
    "CreateCluster" => clusters::create_cluster,
    "DescribeClusters" => clusters::describe_clusters,
    "ListClusters" => clusters::list_clusters,
    "UpdateCluster" => clusters::update_cluster,
    "UpdateClusterSettings" => clusters::update_cluster_settings,
    "DeleteCluster" => clusters::delete_cluster,
    "PutClusterCapacityProviders" => clusters::put_cluster_capacity_providers,
    "CreateCapacityProvider" => capacity_providers::create_capacity_provider,
    "DescribeCapacityProviders" => capacity_providers::describe_capacity_providers,
    "UpdateCapacityProvider" => capacity_providers::update_capacity_provider,
    "DeleteCapacityProvider" => capacity_providers::delete_capacity_provider,
    "RegisterTaskDefinition" => task_definitions::register_task_definition,
    "DescribeTaskDefinition" => task_definitions::describe_task_definition,
    "ListTaskDefinitions" => task_definitions::list_task_definitions,
    "ListTaskDefinitionFamilies" => task_definitions::list_task_definition_families,
    "DeregisterTaskDefinition" => task_definitions::deregister_task_definition,
    "DeleteTaskDefinitions" => task_definitions::delete_task_definitions,
    "TagResource" => tags::tag_resource,
    "UntagResource" => tags::untag_resource,
    "ListTagsForResource" => tags::list_tags_for_resource,
    "PutAccountSetting" => account_settings::put_account_setting,
    "PutAccountSettingDefault" => account_settings::put_account_setting_default,
    "DeleteAccountSetting" => account_settings::delete_account_setting,
    "ListAccountSettings" => account_settings::list_account_settings,
    "PutAttributes" => attributes::put_attributes,
    "DeleteAttributes" => attributes::delete_attributes,
    "ListAttributes" => attributes::list_attributes,
    "RegisterContainerInstance" => container_instances::register_container_instance,
    "DeregisterContainerInstance" => container_instances::deregister_container_instance,
    "DescribeContainerInstances" => container_instances::describe_container_instances,
    "ListContainerInstances" => container_instances::list_container_instances,
    "UpdateContainerInstancesState" => container_instances::update_container_instances_state,
    "RunTask" => tasks::run_task,
    "StartTask" => tasks::start_task,
    "StopTask" => tasks::stop_task,
    "DescribeTasks" => tasks::describe_tasks,
    "ListTasks" => tasks::list_tasks,
    "CreateService" => services::create_service,
    "UpdateService" => services::update_service,
    "DeleteService" => services::delete_service,
    "DescribeServices" => services::describe_services,
    "ListServices" => services::list_services,
    "ListServiceDeployments" => services::list_service_deployments,
    "DescribeServiceDeployments" => services::describe_service_deployments,
    "StopServiceDeployment" => services::stop_service_deployment,
    "DescribeServiceRevisions" => services::describe_service_revisions,
    }
}
