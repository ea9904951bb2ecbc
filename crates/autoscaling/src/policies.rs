//! Scaling policies: put (create or replace), describe, delete. A target-tracking policy owns two
//! CloudWatch alarms, made as AWS makes them and deleted with it; a step policy is driven by
//! alarms the user makes and points at the policy's ARN.

use crate::Autoscaling;
use crate::common::{self, store_error, validation};
use crate::decide::{AdjustmentType, DEFAULT_COOLDOWN_SECS, Step, StepConfig};
use crate::records::{self, PolicyRecord, StepScaling, TargetTracking};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::autoscaling as wire;
use berth_shapes::cloudwatch as cw;
use berth_store::{Expect, Op, Store, get_as};
use serde_json::{Value, json};

/// Scaling policies per scalable target, as AWS limits them.
const MAX_POLICIES: usize = 50;
/// AWS's managed alarms: the high one fires after 3 periods above the target, the low one after
/// 15 periods below 90 % of it.
const HIGH_PERIODS: i32 = 3;
const LOW_PERIODS: i32 = 15;
const LOW_FRACTION: f64 = 0.9;

fn policy_not_found(resource_id: &str, name: &str) -> AwsError {
    AwsError::client(
        "ObjectNotFoundException",
        format!(
            "No scaling policy found for service namespace: {}, resource ID: {resource_id}, scalable dimension: {}, policy name: {name}",
            common::NAMESPACE,
            common::DIMENSION
        ),
    )
}

fn alarm_arn(ctx: &RequestContext, name: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:{}:alarm:{name}",
        ctx.region, ctx.account_id
    )
}

/// What a target-tracking policy's alarms watch.
enum Watched {
    Metric {
        namespace: String,
        name: String,
        dimensions: Vec<(String, String)>,
        statistic: String,
        unit: Option<String>,
    },
    /// Metric math, as CloudWatch's `MetricDataQuery` list.
    Queries(Vec<Value>),
}

const STATISTICS: [&str; 5] = ["Average", "Minimum", "Maximum", "SampleCount", "Sum"];

fn watched(
    resource_id: &str,
    config: &wire::TargetTrackingScalingPolicyConfiguration,
) -> Result<Watched, AwsError> {
    let (cluster, service) = common::parse_resource_id(resource_id)?;
    let ecs_dims = vec![
        ("ClusterName".to_owned(), cluster),
        ("ServiceName".to_owned(), service),
    ];
    match (
        &config.predefined_metric_specification,
        &config.customized_metric_specification,
    ) {
        (Some(p), None) => {
            let kind = p.predefined_metric_type.as_deref().unwrap_or_default();
            let ecs = |name: &str| Watched::Metric {
                namespace: "AWS/ECS".into(),
                name: name.into(),
                dimensions: ecs_dims.clone(),
                statistic: "Average".into(),
                unit: None,
            };
            match kind {
                "ECSServiceAverageCPUUtilization" => Ok(ecs("CPUUtilization")),
                "ECSServiceAverageMemoryUtilization" => Ok(ecs("MemoryUtilization")),
                "ALBRequestCountPerTarget" => {
                    let label = p.resource_label.as_deref().unwrap_or_default();
                    let group = label
                        .split_once("/targetgroup/")
                        .filter(|(lb, tg)| lb.starts_with("app/") && tg.split('/').count() == 2)
                        .map(|(_, tg)| format!("targetgroup/{tg}"))
                        .ok_or_else(|| {
                            validation(format!(
                                "Invalid resource label for ALBRequestCountPerTarget: '{label}'. Expected app/<load-balancer-name>/<load-balancer-id>/targetgroup/<target-group-name>/<target-group-id>"
                            ))
                        })?;
                    Ok(Watched::Metric {
                        namespace: "AWS/ApplicationELB".into(),
                        name: "RequestCountPerTarget".into(),
                        dimensions: vec![("TargetGroup".into(), group)],
                        statistic: "Sum".into(),
                        unit: None,
                    })
                }
                other => Err(validation(format!(
                    "Unsupported predefined metric type {other} for service namespace ecs"
                ))),
            }
        }
        (None, Some(c)) => {
            if let Some(queries) = &c.metrics {
                if c.metric_name.is_some() || c.namespace.is_some() || c.statistic.is_some() {
                    return Err(validation(
                        "Metrics cannot be specified together with MetricName, Namespace, Dimensions, Statistic or Unit",
                    ));
                }
                let mut out = Vec::new();
                for q in queries {
                    let mut v = serde_json::to_value(q).map_err(AwsError::internal)?;
                    // CloudWatch's query needs a period; the alarm's is filled in later.
                    if let Some(stat) = v.get_mut("MetricStat") {
                        stat["Period"] = json!(0);
                    }
                    out.push(v);
                }
                return Ok(Watched::Queries(out));
            }
            let (Some(name), Some(namespace), Some(statistic)) =
                (&c.metric_name, &c.namespace, &c.statistic)
            else {
                return Err(validation(
                    "CustomizedMetricSpecification needs MetricName, Namespace and Statistic, or Metrics",
                ));
            };
            if !STATISTICS.contains(&statistic.as_str()) {
                return Err(validation(format!("Unsupported statistic {statistic}")));
            }
            Ok(Watched::Metric {
                namespace: namespace.clone(),
                name: name.clone(),
                dimensions: c
                    .dimensions
                    .iter()
                    .flatten()
                    .map(|d| {
                        (
                            d.name.clone().unwrap_or_default(),
                            d.value.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
                statistic: statistic.clone(),
                unit: c.unit.clone(),
            })
        }
        _ => Err(validation(
            "Exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification must be specified",
        )),
    }
}

fn alarm_input(
    name: &str,
    policy_arn: &str,
    watched: &Watched,
    period: i32,
    high: bool,
    threshold: f64,
) -> cw::PutMetricAlarmInput {
    let periods = if high { HIGH_PERIODS } else { LOW_PERIODS };
    let mut input = cw::PutMetricAlarmInput {
        alarm_name: Some(name.into()),
        alarm_description: Some(format!(
            "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}."
        )),
        actions_enabled: Some(true),
        alarm_actions: Some(vec![policy_arn.into()]),
        evaluation_periods: Some(periods),
        datapoints_to_alarm: Some(periods),
        threshold: Some(threshold),
        comparison_operator: Some(
            if high {
                "GreaterThanThreshold"
            } else {
                "LessThanThreshold"
            }
            .into(),
        ),
        ..Default::default()
    };
    match watched {
        Watched::Metric {
            namespace,
            name,
            dimensions,
            statistic,
            unit,
        } => {
            input.namespace = Some(namespace.clone());
            input.metric_name = Some(name.clone());
            input.statistic = Some(statistic.clone());
            input.unit = unit.clone();
            input.period = Some(period);
            input.dimensions = Some(
                dimensions
                    .iter()
                    .map(|(n, v)| cw::Dimension {
                        name: Some(n.clone()),
                        value: Some(v.clone()),
                    })
                    .collect(),
            );
        }
        Watched::Queries(queries) => {
            let queries: Vec<Value> = queries
                .iter()
                .cloned()
                .map(|mut q| {
                    if let Some(stat) = q.get_mut("MetricStat") {
                        stat["Period"] = json!(period);
                    }
                    q
                })
                .collect();
            input.metrics = serde_json::from_value(Value::Array(queries)).ok();
        }
    }
    input
}

fn non_negative(name: &str, v: Option<i32>) -> Result<i64, AwsError> {
    match v {
        Some(n) if n < 0 => Err(validation(format!(
            "{name} must be greater than or equal to 0"
        ))),
        Some(n) => Ok(i64::from(n)),
        None => Ok(DEFAULT_COOLDOWN_SECS),
    }
}

/// Checks a step configuration and turns it into what the decisions read.
pub fn step_config(c: &wire::StepScalingPolicyConfiguration) -> Result<StepScaling, AwsError> {
    let kind = c
        .adjustment_type
        .as_deref()
        .ok_or_else(|| validation("AdjustmentType is required for a step scaling policy"))?;
    let adjustment_type = AdjustmentType::parse(kind)
        .ok_or_else(|| validation(format!("Invalid AdjustmentType: {kind}")))?;
    let raw = c.step_adjustments.as_deref().unwrap_or_default();
    if raw.is_empty() {
        return Err(validation(
            "StepAdjustments must contain at least one step adjustment",
        ));
    }
    let mut steps: Vec<Step> = raw
        .iter()
        .map(|s| Step {
            lower: s.metric_interval_lower_bound,
            upper: s.metric_interval_upper_bound,
            adjustment: s.scaling_adjustment.unwrap_or_default(),
        })
        .collect();
    for s in &steps {
        if let (Some(l), Some(u)) = (s.lower, s.upper)
            && l >= u
        {
            return Err(validation(
                "MetricIntervalLowerBound must be less than MetricIntervalUpperBound",
            ));
        }
        if adjustment_type == AdjustmentType::ExactCapacity && s.adjustment < 0 {
            return Err(validation(
                "ScalingAdjustment must be non-negative for adjustment type ExactCapacity",
            ));
        }
    }
    // The intervals must not overlap and leave no gap: sorted by lower bound, each starts where
    // the one before ends, and only the ends are unbounded.
    steps.sort_by(|a, b| {
        a.lower
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&b.lower.unwrap_or(f64::NEG_INFINITY))
    });
    for w in steps.windows(2) {
        if w[0].upper.is_none() || w[1].lower.is_none() {
            return Err(validation(
                "Only the first step may have a null lower bound and only the last a null upper bound",
            ));
        }
        if w[0].upper != w[1].lower {
            return Err(validation(
                "Step adjustments must not overlap and there must be no gaps between them",
            ));
        }
    }
    if c.min_adjustment_magnitude.is_some()
        && adjustment_type != AdjustmentType::PercentChangeInCapacity
    {
        return Err(validation(
            "MinAdjustmentMagnitude may only be specified when AdjustmentType is PercentChangeInCapacity",
        ));
    }
    if c.min_adjustment_magnitude.is_some_and(|m| m < 0) {
        return Err(validation(
            "MinAdjustmentMagnitude must be greater than or equal to 0",
        ));
    }
    if let Some(m) = c.metric_aggregation_type.as_deref()
        && !["Average", "Minimum", "Maximum"].contains(&m)
    {
        return Err(validation(format!("Invalid MetricAggregationType: {m}")));
    }
    Ok(StepScaling {
        config: StepConfig {
            adjustment_type,
            steps,
            min_adjustment_magnitude: c.min_adjustment_magnitude,
        },
        cooldown_secs: non_negative("Cooldown", c.cooldown)?,
    })
}

pub async fn put_scaling_policy(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::PutScalingPolicyRequest,
) -> Result<wire::PutScalingPolicyResponse, AwsError> {
    let resource_id = common::target_ids(
        req.service_namespace.as_deref(),
        req.resource_id.as_deref(),
        req.scalable_dimension.as_deref(),
    )?;
    let name = req.policy_name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(validation("PolicyName is required."));
    }
    let policy_type = req.policy_type.as_deref().unwrap_or("StepScaling");
    let partition = ctx.partition();
    if common::target(a, &partition, &resource_id).await?.is_none() {
        return Err(common::target_not_found(&resource_id));
    }
    let key = records::child_key(&resource_id, &name);
    let existing = get_as::<PolicyRecord, _>(a.store(), records::POLICY, &partition, &key)
        .await
        .map_err(store_error)?;
    let (id, arn, creation_time, expect) = match &existing {
        Some((p, v)) => (
            p.id.clone(),
            p.arn.clone(),
            p.creation_time,
            Expect::Version(*v),
        ),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            let arn = common::policy_arn(ctx, &id, &resource_id, &name);
            (id, arn, a.now_ms(), Expect::Absent)
        }
    };
    let mut record = PolicyRecord {
        id,
        arn: arn.clone(),
        name: name.clone(),
        resource_id: resource_id.clone(),
        scalable_dimension: common::DIMENSION.into(),
        policy_type: policy_type.into(),
        creation_time,
        target_tracking: None,
        step: None,
        target_tracking_wire: None,
        step_wire: None,
        alarms: vec![],
    };
    let mut alarm_inputs = Vec::new();
    match policy_type {
        "TargetTrackingScaling" => {
            if req.step_scaling_policy_configuration.is_some() {
                return Err(validation(
                    "StepScalingPolicyConfiguration is not allowed for a TargetTrackingScaling policy",
                ));
            }
            let c = req
                .target_tracking_scaling_policy_configuration
                .clone()
                .ok_or_else(|| {
                    validation(
                        "TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy",
                    )
                })?;
            let target = c
                .target_value
                .ok_or_else(|| validation("TargetValue is required"))?;
            if !(target.is_finite() && target > 0.0) {
                return Err(validation("TargetValue must be greater than 0"));
            }
            let watched = watched(&resource_id, &c)?;
            let disable_scale_in = c.disable_scale_in.unwrap_or(false);
            // Keep the alarm names of the policy being replaced, as AWS updates them in place.
            let old = existing
                .as_ref()
                .and_then(|(p, _)| p.target_tracking.clone());
            let suffix = || uuid::Uuid::new_v4().to_string();
            let high = old
                .as_ref()
                .map(|t| t.high_alarm.clone())
                .unwrap_or_else(|| format!("TargetTracking-{resource_id}-AlarmHigh-{}", suffix()));
            let low = (!disable_scale_in).then(|| {
                old.as_ref()
                    .and_then(|t| t.low_alarm.clone())
                    .unwrap_or_else(|| {
                        format!("TargetTracking-{resource_id}-AlarmLow-{}", suffix())
                    })
            });
            let period = a.alarm_period_secs();
            alarm_inputs.push(alarm_input(&high, &arn, &watched, period, true, target));
            record.alarms.push((high.clone(), alarm_arn(ctx, &high)));
            if let Some(low) = &low {
                alarm_inputs.push(alarm_input(
                    low,
                    &arn,
                    &watched,
                    period,
                    false,
                    target * LOW_FRACTION,
                ));
                record.alarms.push((low.clone(), alarm_arn(ctx, low)));
            }
            record.target_tracking = Some(TargetTracking {
                target,
                disable_scale_in,
                scale_out_cooldown_secs: non_negative("ScaleOutCooldown", c.scale_out_cooldown)?,
                scale_in_cooldown_secs: non_negative("ScaleInCooldown", c.scale_in_cooldown)?,
                high_alarm: high,
                low_alarm: low,
            });
            record.target_tracking_wire = Some(c);
        }
        "StepScaling" => {
            if req.target_tracking_scaling_policy_configuration.is_some() {
                return Err(validation(
                    "TargetTrackingScalingPolicyConfiguration is not allowed for a StepScaling policy",
                ));
            }
            let c = req
                .step_scaling_policy_configuration
                .clone()
                .ok_or_else(|| {
                    validation(
                        "StepScalingPolicyConfiguration is required for a StepScaling policy",
                    )
                })?;
            record.step = Some(step_config(&c)?);
            record.step_wire = Some(c);
        }
        other => {
            return Err(validation(format!(
                "berth does not support policy type {other}; use TargetTrackingScaling or StepScaling."
            )));
        }
    }
    if existing.is_none() {
        let count = common::all::<Value>(
            a,
            records::POLICY,
            &partition,
            &records::children_prefix(&resource_id),
        )
        .await?
        .len();
        if count >= MAX_POLICIES {
            return Err(common::limit_exceeded(format!(
                "Maximum number of scaling policies ({MAX_POLICIES}) reached for {resource_id}"
            )));
        }
    }
    if common::service(a, &partition, &resource_id)
        .await?
        .is_none_or(|s| s.status != "ACTIVE")
    {
        return Err(AwsError::client(
            "FailedResourceAccessException",
            format!("Failed to access the ECS service {resource_id}: it does not exist."),
        ));
    }
    for input in alarm_inputs {
        a.alarms().put(ctx.clone(), input).await.map_err(|e| {
            tracing::warn!(code = %e.code, "autoscaling: PutMetricAlarm failed: {}", e.message);
            AwsError::client(
                "FailedResourceAccessException",
                "Failed to create the CloudWatch alarms of the policy.",
            )
        })?;
    }
    // Alarms of the replaced policy that this one no longer has.
    let stale: Vec<String> = existing
        .as_ref()
        .map(|(p, _)| {
            p.alarms
                .iter()
                .filter(|(n, _)| !record.alarms.iter().any(|(m, _)| m == n))
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
    let mut ops = vec![Op::put(records::POLICY, &partition, &key, value, expect)];
    for n in &stale {
        ops.push(Op::delete(records::ALARM_STATE, &partition, n, Expect::Any));
    }
    if let Err(e) = a.store().commit(ops).await {
        if existing.is_none() {
            let names = record.alarms.iter().map(|(n, _)| n.clone()).collect();
            let _ = a.alarms().delete(ctx.clone(), names).await;
        }
        return Err(store_error(e));
    }
    if !stale.is_empty()
        && let Err(e) = a.alarms().delete(ctx.clone(), stale).await
    {
        tracing::warn!(code = %e.code, "autoscaling: deleting replaced alarms failed: {}", e.message);
    }
    let alarms = record
        .target_tracking
        .is_some()
        .then(|| wire_alarms(&record.alarms));
    Ok(wire::PutScalingPolicyResponse {
        policy_arn: Some(arn),
        alarms,
    })
}

fn wire_alarms(alarms: &[(String, String)]) -> Vec<wire::Alarm> {
    alarms
        .iter()
        .map(|(n, a)| wire::Alarm {
            alarm_name: Some(n.clone()),
            alarm_arn: Some(a.clone()),
        })
        .collect()
}

pub fn policy_wire(p: &PolicyRecord) -> wire::ScalingPolicy {
    wire::ScalingPolicy {
        policy_arn: Some(p.arn.clone()),
        policy_name: Some(p.name.clone()),
        service_namespace: Some(common::NAMESPACE.into()),
        resource_id: Some(p.resource_id.clone()),
        scalable_dimension: Some(p.scalable_dimension.clone()),
        policy_type: Some(p.policy_type.clone()),
        step_scaling_policy_configuration: p.step_wire.clone(),
        target_tracking_scaling_policy_configuration: p.target_tracking_wire.clone(),
        predictive_scaling_policy_configuration: None,
        alarms: Some(wire_alarms(&p.alarms)),
        creation_time: Some(berth_shapes::Timestamp::from_millis(p.creation_time)),
    }
}

pub async fn describe_scaling_policies(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::DescribeScalingPoliciesRequest,
) -> Result<wire::DescribeScalingPoliciesResponse, AwsError> {
    let Some(prefix) = common::describe_prefix(
        req.service_namespace.as_deref(),
        req.scalable_dimension.as_deref(),
        req.resource_id.as_deref(),
    )?
    else {
        return Ok(wire::DescribeScalingPoliciesResponse {
            scaling_policies: Some(vec![]),
            next_token: None,
        });
    };
    let names = req.policy_names.unwrap_or_default();
    let items: Vec<(String, wire::ScalingPolicy)> =
        common::all::<PolicyRecord>(a, records::POLICY, &ctx.partition(), &prefix)
            .await?
            .into_iter()
            .filter(|(_, _, p)| names.is_empty() || names.contains(&p.name))
            .map(|(k, _, p)| (k, policy_wire(&p)))
            .collect();
    let (policies, next_token) = common::page(
        a,
        ctx,
        "policies",
        items,
        req.max_results,
        req.next_token.as_deref(),
    )?;
    Ok(wire::DescribeScalingPoliciesResponse {
        scaling_policies: Some(policies),
        next_token,
    })
}

pub async fn delete_scaling_policy(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::DeleteScalingPolicyRequest,
) -> Result<wire::DeleteScalingPolicyResponse, AwsError> {
    let resource_id = common::target_ids(
        req.service_namespace.as_deref(),
        req.resource_id.as_deref(),
        req.scalable_dimension.as_deref(),
    )?;
    let name = req.policy_name.unwrap_or_default();
    let partition = ctx.partition();
    let key = records::child_key(&resource_id, &name);
    let Some((p, version)) =
        get_as::<PolicyRecord, _>(a.store(), records::POLICY, &partition, &key)
            .await
            .map_err(store_error)?
    else {
        return Err(policy_not_found(&resource_id, &name));
    };
    let mut ops = vec![Op::delete(
        records::POLICY,
        &partition,
        &key,
        Expect::Version(version),
    )];
    for (n, _) in &p.alarms {
        ops.push(Op::delete(records::ALARM_STATE, &partition, n, Expect::Any));
    }
    a.store().commit(ops).await.map_err(store_error)?;
    let names: Vec<String> = p.alarms.into_iter().map(|(n, _)| n).collect();
    if !names.is_empty()
        && let Err(e) = a.alarms().delete(ctx.clone(), names).await
    {
        tracing::warn!(code = %e.code, "autoscaling: deleting the alarms of {name} failed: {}", e.message);
    }
    Ok(Default::default())
}
