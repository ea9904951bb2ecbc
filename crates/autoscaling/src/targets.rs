//! Scalable targets: register (create or update), describe, deregister (with the target's
//! policies, their alarms and its scheduled actions).

use crate::Autoscaling;
use crate::common::{self, Failure, validation};
use crate::records::{self, PolicyRecord, ScheduledRecord, Suspended, TargetRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::autoscaling as wire;
use berth_store::{Expect, Op, retry_on_conflict};

/// Scalable targets per account and region, as AWS limits them per namespace.
const MAX_TARGETS: usize = 3000;

pub async fn register_scalable_target(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::RegisterScalableTargetRequest,
) -> Result<wire::RegisterScalableTargetResponse, AwsError> {
    let resource_id = common::target_ids(
        req.service_namespace.as_deref(),
        req.resource_id.as_deref(),
        req.scalable_dimension.as_deref(),
    )?;
    for (name, v) in [
        ("MinCapacity", req.min_capacity),
        ("MaxCapacity", req.max_capacity),
    ] {
        if v.is_some_and(|v| v < 0) {
            return Err(validation(format!(
                "{name} must be greater than or equal to 0"
            )));
        }
    }
    let partition = ctx.partition();
    let service = common::service(a, &partition, &resource_id).await?;
    if service.is_none_or(|s| s.status != "ACTIVE") {
        return Err(validation(format!(
            "ECS service doesn't exist: {resource_id}"
        )));
    }
    let now = a.now_ms();
    let (arn, range) = retry_on_conflict(a.store(), || async {
        let existing = common::target(a, &partition, &resource_id).await?;
        let (mut t, expect) = match existing {
            Some((t, v)) => (t, Expect::Version(v)),
            None => {
                let (Some(min), Some(max)) = (req.min_capacity, req.max_capacity) else {
                    return Err(Failure(validation(
                        "MinCapacity and MaxCapacity are required for registering a new scalable target",
                    )));
                };
                let count = common::all::<serde_json::Value>(a, records::TARGET, &partition, "")
                    .await?
                    .len();
                if count >= MAX_TARGETS {
                    return Err(Failure(common::limit_exceeded(format!(
                        "You have reached the maximum number of scalable targets ({MAX_TARGETS})."
                    ))));
                }
                let t = TargetRecord {
                    arn: common::scalable_target_arn(ctx, &common::scalable_target_id()),
                    resource_id: resource_id.clone(),
                    scalable_dimension: common::DIMENSION.into(),
                    min,
                    max,
                    role_arn: String::new(),
                    suspended: Suspended::default(),
                    creation_time: now,
                    tags: Default::default(),
                    cooldowns: Default::default(),
                };
                (t, Expect::Absent)
            }
        };
        if let Some(n) = req.min_capacity {
            t.min = n;
        }
        if let Some(n) = req.max_capacity {
            t.max = n;
        }
        if t.min > t.max {
            return Err(Failure(validation(
                "Minimum capacity cannot be greater than maximum capacity",
            )));
        }
        t.role_arn = req
            .role_arn
            .clone()
            .unwrap_or_else(|| common::default_role_arn(ctx));
        if let Some(s) = &req.suspended_state {
            if let Some(b) = s.dynamic_scaling_in_suspended {
                t.suspended.dynamic_in = b;
            }
            if let Some(b) = s.dynamic_scaling_out_suspended {
                t.suspended.dynamic_out = b;
            }
            if let Some(b) = s.scheduled_scaling_suspended {
                t.suspended.scheduled = b;
            }
        }
        if let Some(tags) = &req.tags {
            crate::tags::check(tags, &t.tags)?;
            t.tags.extend(tags.clone());
        }
        let arn = t.arn.clone();
        let range = (t.min, t.max);
        let value = serde_json::to_value(&t).map_err(AwsError::internal)?;
        Ok((
            vec![
                Op::put(records::TARGET, &partition, &resource_id, value, expect),
                Op::put(
                    records::PARTITIONS,
                    "",
                    &partition,
                    serde_json::json!({}),
                    Expect::Any,
                ),
            ],
            (arn, range),
        ))
    })
    .await
    .map_err(|f| f.0)?;
    // As AWS does on every RegisterScalableTarget: a current capacity outside the range is
    // moved into it.
    let (min, max) = range;
    if let Some(s) = common::service(a, &partition, &resource_id).await?
        && (s.desired_count < min || s.desired_count > max)
    {
        let to = s.desired_count.clamp(min, max);
        a.set_capacity(
            &partition,
            &resource_id,
            to,
            format!("registering the scalable target set its min capacity to {min} and max capacity to {max}"),
        )
        .await?;
    }
    Ok(wire::RegisterScalableTargetResponse {
        scalable_target_arn: Some(arn),
    })
}

pub fn target_wire(t: &TargetRecord) -> wire::ScalableTarget {
    wire::ScalableTarget {
        service_namespace: Some(common::NAMESPACE.into()),
        resource_id: Some(t.resource_id.clone()),
        scalable_dimension: Some(t.scalable_dimension.clone()),
        min_capacity: Some(t.min),
        max_capacity: Some(t.max),
        predicted_capacity: None,
        role_arn: Some(t.role_arn.clone()),
        creation_time: Some(berth_shapes::Timestamp::from_millis(t.creation_time)),
        suspended_state: Some(wire::SuspendedState {
            dynamic_scaling_in_suspended: Some(t.suspended.dynamic_in),
            dynamic_scaling_out_suspended: Some(t.suspended.dynamic_out),
            scheduled_scaling_suspended: Some(t.suspended.scheduled),
        }),
        scalable_target_arn: Some(t.arn.clone()),
    }
}

pub async fn describe_scalable_targets(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::DescribeScalableTargetsRequest,
) -> Result<wire::DescribeScalableTargetsResponse, AwsError> {
    // Other namespaces have nothing registered in berth: an empty answer, as AWS gives one.
    if !common::is_ecs(req.service_namespace.as_deref())? {
        return Ok(wire::DescribeScalableTargetsResponse {
            scalable_targets: Some(vec![]),
            next_token: None,
        });
    }
    if let Some(d) = req.scalable_dimension.as_deref() {
        common::check_dimension(Some(d))?;
    }
    let partition = ctx.partition();
    let items: Vec<(String, wire::ScalableTarget)> =
        common::all::<TargetRecord>(a, records::TARGET, &partition, "")
            .await?
            .into_iter()
            .filter(|(_, _, t)| {
                req.resource_ids
                    .as_ref()
                    .is_none_or(|ids| ids.is_empty() || ids.contains(&t.resource_id))
            })
            .map(|(k, _, t)| (k, target_wire(&t)))
            .collect();
    let (targets, next_token) = common::page(
        a,
        ctx,
        "targets",
        items,
        req.max_results,
        req.next_token.as_deref(),
    )?;
    Ok(wire::DescribeScalableTargetsResponse {
        scalable_targets: Some(targets),
        next_token,
    })
}

pub async fn deregister_scalable_target(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::DeregisterScalableTargetRequest,
) -> Result<wire::DeregisterScalableTargetResponse, AwsError> {
    let resource_id = common::target_ids(
        req.service_namespace.as_deref(),
        req.resource_id.as_deref(),
        req.scalable_dimension.as_deref(),
    )?;
    let partition = ctx.partition();
    let prefix = records::children_prefix(&resource_id);
    let alarms = retry_on_conflict(a.store(), || async {
        let Some((_, version)) = common::target(a, &partition, &resource_id).await? else {
            return Err(Failure(common::target_not_found(&resource_id)));
        };
        let mut ops = vec![Op::delete(
            records::TARGET,
            &partition,
            &resource_id,
            Expect::Version(version),
        )];
        let mut alarms = Vec::new();
        for (key, v, p) in
            common::all::<PolicyRecord>(a, records::POLICY, &partition, &prefix).await?
        {
            ops.push(Op::delete(
                records::POLICY,
                &partition,
                key,
                Expect::Version(v),
            ));
            alarms.extend(p.alarms.into_iter().map(|(name, _)| name));
        }
        for (key, v, _) in
            common::all::<ScheduledRecord>(a, records::SCHEDULED, &partition, &prefix).await?
        {
            ops.push(Op::delete(
                records::SCHEDULED,
                &partition,
                key,
                Expect::Version(v),
            ));
        }
        for name in &alarms {
            ops.push(Op::delete(
                records::ALARM_STATE,
                &partition,
                name,
                Expect::Any,
            ));
        }
        Ok((ops, alarms))
    })
    .await
    .map_err(|f| f.0)?;
    if !alarms.is_empty()
        && let Err(e) = a.alarms().delete(ctx.clone(), alarms).await
    {
        // The target is gone; an alarm left behind drives nothing (its policy ARN no longer
        // resolves), so the client is not failed for it.
        tracing::warn!(code = %e.code, "autoscaling: deleting the alarms of {resource_id} failed: {}", e.message);
    }
    Ok(Default::default())
}
