//! What the store holds for ELBv2, in the request's partition (`account/region`). Every
//! resource is one record keyed by its ARN, so a reader (the future data plane) finds a load
//! balancer's listeners by the prefix `…:listener/app/<name>/<id>/` and a listener's rules by
//! `…:listener-rule/app/<name>/<id>/<listener id>/`. Records embed the wire sub-shapes (actions,
//! conditions, forward configs) exactly as the API returns them, after berth filled AWS's
//! defaults, so the data plane reads one normalized form.
//!
//! Targets and their health are two kinds: `elbv2.target` is what the user registered (written
//! only by the API), `elbv2.target-health` is what the health checker observed (written by the
//! API when a target is registered — `initial`, `Elb.RegistrationInProgress` — and afterwards by
//! the health checker alone, under `Expect::Version` of that record). Both are keyed
//! `<target group ARN>|<id>|<port>`.
//!
//! **Architecture Invariant:** every API write also writes the partition's `elbv2.guard` record
//! under `Expect::Version`, so the API's writes in one partition are serialized and cross-record
//! rules (listener ports unique per load balancer, rule priorities unique per listener, a target
//! group in use is not deleted) hold without locks. The health checker never writes the guard.

use berth_shapes::elbv2 as wire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const LOAD_BALANCER: &str = "elbv2.load-balancer";
pub const TARGET_GROUP: &str = "elbv2.target-group";
pub const LISTENER: &str = "elbv2.listener";
pub const RULE: &str = "elbv2.rule";
pub const TARGET: &str = "elbv2.target";
pub const TARGET_HEALTH: &str = "elbv2.target-health";
pub const GUARD: &str = "elbv2.guard";

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerRecord {
    pub arn: String,
    pub name: String,
    /// The 16 hex digits that end the ARN.
    pub id: String,
    pub dns_name: String,
    pub created_ms: i64,
    pub scheme: String,
    pub ip_address_type: String,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub state: String,
    /// `[Application Load Balancers on Outposts]`: AWS-only, kept and echoed as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_owned_ipv4_pool: Option<String>,
    /// The IPAM pool AWS would take the addresses from: AWS-only, kept and echoed (set by
    /// CreateLoadBalancer and ModifyIpPools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_ipam_pool_id: Option<String>,
    /// `off` when the request named it: the Network Load Balancer setting never applies to an
    /// Application Load Balancer, so `on` is refused and `off` kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_prefix_for_ipv6_source_nat: Option<String>,
    /// The attributes ModifyLoadBalancerAttributes set, and only those: the data plane reads
    /// `idle_timeout.timeout_seconds` from here and uses the server's default when it is
    /// absent; DescribeLoadBalancerAttributes fills AWS's defaults for the rest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupRecord {
    pub arn: String,
    pub name: String,
    pub protocol: String,
    pub protocol_version: String,
    pub port: i32,
    pub vpc_id: String,
    pub target_type: String,
    pub ip_address_type: String,
    /// The port of the target optimizer's agent on each target; fixed at creation. Kept and
    /// echoed: the data plane does not speak to target control agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_control_port: Option<i32>,
    pub health_check: HealthCheck,
    /// `deregistration_delay.timeout_seconds` and the rest, with AWS's defaults filled.
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Tags,
}

/// A target group's health check settings, with AWS's defaults filled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: String,
    /// A port number or `traffic-port`.
    pub port: String,
    pub path: String,
    pub interval_seconds: i32,
    pub timeout_seconds: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    /// `200`, `200,202` or `200-299`.
    pub matcher: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRecord {
    pub arn: String,
    pub load_balancer_arn: String,
    pub port: i32,
    pub protocol: String,
    #[serde(default)]
    pub certificates: Vec<wire::Certificate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
    /// HTTPS listeners only, as checked by `listeners::mutual_authentication` (`off` or
    /// `passthrough`: berth has no trust stores to `verify` against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_authentication: Option<wire::MutualAuthenticationAttributes>,
    /// Normalized (see `actions::normalize`); also the default rule's actions.
    pub default_actions: Vec<wire::Action>,
    /// The ARN of the listener's default rule, which has no record of its own.
    pub default_rule_arn: String,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub default_rule_tags: Tags,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRecord {
    pub arn: String,
    pub listener_arn: String,
    pub priority: i32,
    /// Normalized: `Values` and the matching `…Config` both set, as AWS returns them.
    pub conditions: Vec<wire::RuleCondition>,
    pub actions: Vec<wire::Action>,
    /// Host header and URL rewrites, as checked by `actions::transforms` (at most one of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<wire::RuleTransform>,
    #[serde(default)]
    pub tags: Tags,
}

/// A registered target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRecord {
    pub target_group_arn: String,
    pub id: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub registered_ms: i64,
    /// Set by DeregisterTargets: the target drains until this time plus the target group's
    /// `deregistration_delay.timeout_seconds`, then is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_ms: Option<i64>,
}

/// What the health checker last concluded about a target (`TargetHealthStateEnum` and
/// `TargetHealthReasonEnum` values).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthRecord {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Consecutive successes and failures, for the thresholds.
    #[serde(default)]
    pub successes: u32,
    #[serde(default)]
    pub failures: u32,
    pub updated_ms: i64,
}

pub fn target_key(target_group_arn: &str, id: &str, port: i32) -> String {
    format!("{target_group_arn}|{id}|{port}")
}

pub fn targets_prefix(target_group_arn: &str) -> String {
    format!("{target_group_arn}|")
}
