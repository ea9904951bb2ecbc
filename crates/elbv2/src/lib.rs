//! The Elastic Load Balancing v2 API over awsQuery (`elasticloadbalancing`, 2015-12-01), first
//! slice: the control plane of Application Load Balancers — load balancers, target groups and
//! their attributes, targets and their health, listeners, rules, tags. One file per resource
//! family, one function per action: typed request → ELBv2's rules → one guarded store
//! transaction → typed response. The data plane (the proxy and the health checker) is a later
//! slice; it reads the records of `records.rs` and writes only target health.
//!
//! **API Boundary:** handlers see a validated, typed request and a [`RequestContext`]; they know
//! nothing of HTTP, SigV4 or XML (`berth_aws::query` turns forms into typed requests and
//! responses into XML).
//!
//! **Architecture Invariant:** every write goes through `common::mutate`: it decides on a
//! snapshot of the partition and commits conditioned on the partition's guard record, so bad
//! input or a lost race changes nothing, and cross-resource rules (listener port per load
//! balancer, rule priority per listener, target group in use) always hold.

mod actions;
mod common;
mod listeners;
mod load_balancers;
pub mod records;
mod rules;
mod tags;
mod target_groups;
mod targets;

pub use targets::{GroupView, deregister, group_views, register};

use berth_aws::model::ServiceModel;
use berth_aws::token::TokenCodec;
pub use berth_model::clock::{Clock, system_clock};
use berth_store::AnyStore;
use std::sync::Arc;

/// Operations berth does not serve yet, one per line as `Name: reason`. The operation ledger
/// test checks that every operation of the model is either implemented or listed here.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

/// The ELBv2 API family.
#[derive(Clone)]
pub struct Elbv2 {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    model: ServiceModel,
    tokens: TokenCodec,
    clock: Clock,
}

impl Elbv2 {
    /// `token_key` signs paging markers; it must be stable across restarts so markers stay
    /// valid.
    pub fn new(store: AnyStore, token_key: [u8; 32], clock: Clock) -> Self {
        let model = ServiceModel::lazy(berth_shapes::models::ELBV2);
        Elbv2 {
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

    pub(crate) fn tokens(&self) -> &TokenCodec {
        &self.inner.tokens
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }
}

berth_aws::query_service! {
    service: Elbv2,
    title: "ELBv2",
    validation_error: "ValidationError",
    model: |this| &this.inner.model,
    operations: {
    "CreateLoadBalancer" => load_balancers::create_load_balancer,
    "DescribeLoadBalancers" => load_balancers::describe_load_balancers,
    "DeleteLoadBalancer" => load_balancers::delete_load_balancer,
    "ModifyIpPools" => load_balancers::modify_ip_pools,
    "DescribeLoadBalancerAttributes" => load_balancers::describe_load_balancer_attributes,
    "ModifyLoadBalancerAttributes" => load_balancers::modify_load_balancer_attributes,
    "DescribeAccountLimits" => load_balancers::describe_account_limits,
    "CreateTargetGroup" => target_groups::create_target_group,
    "DescribeTargetGroups" => target_groups::describe_target_groups,
    "ModifyTargetGroup" => target_groups::modify_target_group,
    "DeleteTargetGroup" => target_groups::delete_target_group,
    "DescribeTargetGroupAttributes" => target_groups::describe_target_group_attributes,
    "ModifyTargetGroupAttributes" => target_groups::modify_target_group_attributes,
    "RegisterTargets" => targets::register_targets,
    "DeregisterTargets" => targets::deregister_targets,
    "DescribeTargetHealth" => targets::describe_target_health,
    "CreateListener" => listeners::create_listener,
    "DescribeListeners" => listeners::describe_listeners,
    "ModifyListener" => listeners::modify_listener,
    "DeleteListener" => listeners::delete_listener,
    "CreateRule" => rules::create_rule,
    "DescribeRules" => rules::describe_rules,
    "ModifyRule" => rules::modify_rule,
    "DeleteRule" => rules::delete_rule,
    "SetRulePriorities" => rules::set_rule_priorities,
    "AddTags" => tags::add_tags,
    "RemoveTags" => tags::remove_tags,
    "DescribeTags" => tags::describe_tags,
    }
}
