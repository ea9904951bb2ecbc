//! Scheduled actions: put (create or replace), describe, delete. The executor's tick runs them
//! (`executor.rs`).

use crate::Autoscaling;
use crate::common::{self, store_error, validation};
use crate::records::{self, ScheduledRecord};
use crate::schedule;
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::autoscaling as wire;
use berth_store::{Expect, Op, Store, get_as};

/// Scheduled actions per scalable target, as AWS limits them.
const MAX_ACTIONS: usize = 200;

pub async fn put_scheduled_action(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::PutScheduledActionRequest,
) -> Result<wire::PutScheduledActionResponse, AwsError> {
    let resource_id = common::target_ids(
        req.service_namespace.as_deref(),
        req.resource_id.as_deref(),
        req.scalable_dimension.as_deref(),
    )?;
    let name = req.scheduled_action_name.clone().unwrap_or_default();
    let partition = ctx.partition();
    if common::target(a, &partition, &resource_id).await?.is_none() {
        return Err(common::target_not_found(&resource_id));
    }
    let key = records::child_key(&resource_id, &name);
    let existing = get_as::<ScheduledRecord, _>(a.store(), records::SCHEDULED, &partition, &key)
        .await
        .map_err(store_error)?;
    // A new action needs a schedule; an update may keep the old one.
    let expression = match (&req.schedule, &existing) {
        (Some(s), _) => s.clone(),
        (None, Some((r, _))) => r.schedule.clone(),
        (None, None) => {
            return Err(validation(
                "Schedule is required for a new scheduled action",
            ));
        }
    };
    schedule::parse(&expression).map_err(validation)?;
    let timezone = req
        .timezone
        .clone()
        .or_else(|| existing.as_ref().and_then(|(r, _)| r.timezone.clone()));
    schedule::zone(timezone.as_deref()).map_err(validation)?;
    let action = req.scalable_target_action.clone().unwrap_or_default();
    for (field, v) in [
        ("MinCapacity", action.min_capacity),
        ("MaxCapacity", action.max_capacity),
    ] {
        if v.is_some_and(|v| v < 0) {
            return Err(validation(format!(
                "{field} must be greater than or equal to 0"
            )));
        }
    }
    if let (Some(lo), Some(hi)) = (action.min_capacity, action.max_capacity)
        && lo > hi
    {
        return Err(validation(
            "Minimum capacity cannot be greater than maximum capacity",
        ));
    }
    let start_time = req.start_time.map(Timestamp::to_millis);
    let end_time = req.end_time.map(Timestamp::to_millis);
    if let (Some(s), Some(e)) = (start_time, end_time)
        && s >= e
    {
        return Err(validation("StartTime must be before EndTime"));
    }
    let now = a.now_ms();
    let record = match existing.as_ref() {
        Some((r, _)) => ScheduledRecord {
            schedule: expression,
            timezone,
            start_time: start_time.or(r.start_time),
            end_time: end_time.or(r.end_time),
            min: action.min_capacity.or(r.min),
            max: action.max_capacity.or(r.max),
            // A changed schedule fires from now on, not for times already past.
            checked_until_ms: now,
            ..r.clone()
        },
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            let count = common::all::<serde_json::Value>(
                a,
                records::SCHEDULED,
                &partition,
                &records::children_prefix(&resource_id),
            )
            .await?
            .len();
            if count >= MAX_ACTIONS {
                return Err(common::limit_exceeded(format!(
                    "Maximum number of scheduled actions ({MAX_ACTIONS}) reached for {resource_id}"
                )));
            }
            ScheduledRecord {
                arn: common::scheduled_action_arn(ctx, &id, &resource_id, &name),
                name: name.clone(),
                resource_id: resource_id.clone(),
                scalable_dimension: common::DIMENSION.into(),
                schedule: expression,
                timezone,
                start_time,
                end_time,
                min: action.min_capacity,
                max: action.max_capacity,
                creation_time: now,
                checked_until_ms: now,
            }
        }
    };
    let expect = existing.map_or(Expect::Absent, |(_, v)| Expect::Version(v));
    let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
    a.store()
        .commit(vec![Op::put(
            records::SCHEDULED,
            &partition,
            &key,
            value,
            expect,
        )])
        .await
        .map_err(store_error)?;
    Ok(Default::default())
}

pub fn scheduled_wire(r: &ScheduledRecord) -> wire::ScheduledAction {
    wire::ScheduledAction {
        scheduled_action_name: Some(r.name.clone()),
        scheduled_action_arn: Some(r.arn.clone()),
        service_namespace: Some(common::NAMESPACE.into()),
        schedule: Some(r.schedule.clone()),
        timezone: r.timezone.clone(),
        resource_id: Some(r.resource_id.clone()),
        scalable_dimension: Some(r.scalable_dimension.clone()),
        start_time: r.start_time.map(Timestamp::from_millis),
        end_time: r.end_time.map(Timestamp::from_millis),
        scalable_target_action: Some(wire::ScalableTargetAction {
            min_capacity: r.min,
            max_capacity: r.max,
        }),
        creation_time: Some(Timestamp::from_millis(r.creation_time)),
    }
}

pub async fn describe_scheduled_actions(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::DescribeScheduledActionsRequest,
) -> Result<wire::DescribeScheduledActionsResponse, AwsError> {
    let Some(prefix) = common::describe_prefix(
        req.service_namespace.as_deref(),
        req.scalable_dimension.as_deref(),
        req.resource_id.as_deref(),
    )?
    else {
        return Ok(wire::DescribeScheduledActionsResponse {
            scheduled_actions: Some(vec![]),
            next_token: None,
        });
    };
    let names = req.scheduled_action_names.unwrap_or_default();
    let items: Vec<(String, wire::ScheduledAction)> =
        common::all::<ScheduledRecord>(a, records::SCHEDULED, &ctx.partition(), &prefix)
            .await?
            .into_iter()
            .filter(|(_, _, r)| names.is_empty() || names.contains(&r.name))
            .map(|(k, _, r)| (k, scheduled_wire(&r)))
            .collect();
    let (actions, next_token) = common::page(
        a,
        ctx,
        "scheduled",
        items,
        req.max_results,
        req.next_token.as_deref(),
    )?;
    Ok(wire::DescribeScheduledActionsResponse {
        scheduled_actions: Some(actions),
        next_token,
    })
}

pub async fn delete_scheduled_action(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::DeleteScheduledActionRequest,
) -> Result<wire::DeleteScheduledActionResponse, AwsError> {
    let resource_id = common::target_ids(
        req.service_namespace.as_deref(),
        req.resource_id.as_deref(),
        req.scalable_dimension.as_deref(),
    )?;
    let name = req.scheduled_action_name.unwrap_or_default();
    let partition = ctx.partition();
    let key = records::child_key(&resource_id, &name);
    let Some((_, version)) =
        get_as::<ScheduledRecord, _>(a.store(), records::SCHEDULED, &partition, &key)
            .await
            .map_err(store_error)?
    else {
        return Err(AwsError::client(
            "ObjectNotFoundException",
            format!(
                "No scheduled action found for service namespace: {}, resource ID: {resource_id}, scalable dimension: {}, scheduled action name: {name}",
                common::NAMESPACE,
                common::DIMENSION
            ),
        ));
    };
    a.store()
        .commit(vec![Op::delete(
            records::SCHEDULED,
            &partition,
            &key,
            Expect::Version(version),
        )])
        .await
        .map_err(store_error)?;
    Ok(Default::default())
}
