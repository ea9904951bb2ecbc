//! What the store holds for Application Auto Scaling. Every kind lives in the request's
//! partition (`account/region`). Keys start with the scalable target's resource id
//! (`service/<cluster>/<service>`, which holds no `|`), so a target's policies, scheduled actions
//! and activities are exact prefix scans.

use crate::decide::{Cooldowns, StepConfig};
use berth_shapes::autoscaling as wire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const TARGET: &str = "autoscaling.target";
pub const POLICY: &str = "autoscaling.policy";
pub const SCHEDULED: &str = "autoscaling.scheduled";
pub const ACTIVITY: &str = "autoscaling.activity";
/// Key = an alarm name: the last state the alarm reported, and the policy it drives.
pub const ALARM_STATE: &str = "autoscaling.alarm-state";
/// Partition `""`, key = a partition that has ever had a scalable target, so the tick can find
/// every partition.
pub const PARTITIONS: &str = "autoscaling.partition";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspended {
    pub dynamic_in: bool,
    pub dynamic_out: bool,
    pub scheduled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRecord {
    pub arn: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub min: i32,
    pub max: i32,
    pub role_arn: String,
    pub suspended: Suspended,
    pub creation_time: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub cooldowns: Cooldowns,
}

/// A target-tracking policy as berth evaluates it (the wire configuration is kept beside it for
/// Describe).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetTracking {
    pub target: f64,
    pub disable_scale_in: bool,
    pub scale_out_cooldown_secs: i64,
    pub scale_in_cooldown_secs: i64,
    pub high_alarm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_alarm: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepScaling {
    pub config: StepConfig,
    pub cooldown_secs: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    /// The id in the policy ARN; a policy deleted and put again gets a new one, so a transition
    /// naming the old ARN drives nothing.
    pub id: String,
    pub arn: String,
    pub name: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub policy_type: String,
    pub creation_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tracking: Option<TargetTracking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepScaling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tracking_wire: Option<wire::TargetTrackingScalingPolicyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_wire: Option<wire::StepScalingPolicyConfiguration>,
    /// The alarms berth created for the policy: `(name, arn)`.
    #[serde(default)]
    pub alarms: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRecord {
    pub arn: String,
    pub name: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
    pub creation_time: i64,
    /// Fire times up to here have been handled (fired or skipped).
    pub checked_until_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityRecord {
    pub id: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub description: String,
    pub cause: String,
    pub start_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub status_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Set for a *not scaled* activity: why the capacity a policy asked for was not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_scaled: Option<NotScaled>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotScaled {
    pub code: String,
    pub min: i32,
    pub max: i32,
    pub current: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStateRecord {
    /// The key of the policy the alarm drives, and that policy's id.
    pub policy_key: String,
    pub policy_id: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub timestamp_ms: i64,
}

pub fn child_key(resource_id: &str, name: &str) -> String {
    format!("{resource_id}|{name}")
}

pub fn children_prefix(resource_id: &str) -> String {
    format!("{resource_id}|")
}

/// Newest first within a target: the key holds the time counted down from the far future, then
/// a per-process sequence counted down, so activities of one millisecond keep their order too.
pub fn activity_key(resource_id: &str, start_ms: i64, id: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let countdown = (i64::MAX - start_ms.max(0)) as u64;
    let seq = u64::MAX - SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{resource_id}|{countdown:020}|{seq:020}|{id}")
}
