//! Scaling activities: what the executor did (or tried), in AWS's wording, newest first.

use crate::Autoscaling;
use crate::common::{self, store_error};
use crate::records::{self, ActivityRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::autoscaling as wire;
use berth_store::{Expect, Op, Store};

/// Activities kept per scalable target; older ones are dropped when a new one is recorded.
const KEEP: usize = 100;

/// Records an activity that has just started (`InProgress`); returns its key.
pub async fn start(
    a: &Autoscaling,
    partition: &str,
    resource_id: &str,
    description: String,
    cause: String,
) -> Result<String, AwsError> {
    let now = a.now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let key = records::activity_key(resource_id, now, &id);
    let record = ActivityRecord {
        id,
        resource_id: resource_id.into(),
        scalable_dimension: common::DIMENSION.into(),
        description,
        cause,
        start_time: now,
        end_time: None,
        status_code: "InProgress".into(),
        status_message: None,
        not_scaled: None,
    };
    let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
    let mut ops = vec![Op::put(
        records::ACTIVITY,
        partition,
        &key,
        value,
        Expect::Absent,
    )];
    // Newest first: everything past KEEP − 1 existing records is the oldest.
    let existing = a
        .store()
        .list(
            records::ACTIVITY,
            partition,
            &records::children_prefix(resource_id),
            None,
            KEEP + 50,
        )
        .await
        .map_err(store_error)?;
    for old in existing.iter().skip(KEEP - 1) {
        ops.push(Op::delete(
            records::ACTIVITY,
            partition,
            &old.key,
            Expect::Any,
        ));
    }
    a.store().commit(ops).await.map_err(store_error)?;
    Ok(key)
}

/// Records a *not scaled* activity (shown only with `IncludeNotScaledActivities`): an alarm
/// asked for a capacity the target's bounds already stop at.
pub async fn not_scaled(
    a: &Autoscaling,
    partition: &str,
    resource_id: &str,
    cause: String,
    reason: records::NotScaled,
) -> Result<(), AwsError> {
    let key = start(
        a,
        partition,
        resource_id,
        "Attempting to scale due to alarm triggered".into(),
        cause,
    )
    .await?;
    let Some(r) = a
        .store()
        .get(records::ACTIVITY, partition, &key)
        .await
        .map_err(store_error)?
    else {
        return Ok(());
    };
    let mut activity: ActivityRecord =
        serde_json::from_value(r.value).map_err(AwsError::internal)?;
    activity.end_time = Some(activity.start_time);
    activity.status_code = "Failed".into();
    activity.status_message = Some(format!("Failed to set desired count to {}", reason.current));
    activity.not_scaled = Some(reason);
    let value = serde_json::to_value(&activity).map_err(AwsError::internal)?;
    a.store()
        .commit(vec![Op::put(
            records::ACTIVITY,
            partition,
            &key,
            value,
            Expect::Version(r.version),
        )])
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Ends an activity with `Successful` or `Failed` and its status message.
pub async fn finish(
    a: &Autoscaling,
    partition: &str,
    key: &str,
    status: &str,
    message: String,
) -> Result<(), AwsError> {
    let Some(r) = a
        .store()
        .get(records::ACTIVITY, partition, key)
        .await
        .map_err(store_error)?
    else {
        return Ok(());
    };
    let mut activity: ActivityRecord =
        serde_json::from_value(r.value).map_err(AwsError::internal)?;
    activity.end_time = Some(a.now_ms());
    activity.status_code = status.into();
    activity.status_message = Some(message);
    let value = serde_json::to_value(&activity).map_err(AwsError::internal)?;
    a.store()
        .commit(vec![Op::put(
            records::ACTIVITY,
            partition,
            key,
            value,
            Expect::Version(r.version),
        )])
        .await
        .map_err(store_error)?;
    Ok(())
}

fn activity_wire(r: ActivityRecord) -> wire::ScalingActivity {
    wire::ScalingActivity {
        activity_id: Some(r.id),
        service_namespace: Some(common::NAMESPACE.into()),
        resource_id: Some(r.resource_id),
        scalable_dimension: Some(r.scalable_dimension),
        description: Some(r.description),
        cause: Some(r.cause),
        start_time: Some(Timestamp::from_millis(r.start_time)),
        end_time: r.end_time.map(Timestamp::from_millis),
        status_code: Some(r.status_code),
        status_message: r.status_message,
        details: None,
        not_scaled_reasons: r.not_scaled.map(|n| {
            vec![wire::NotScaledReason {
                code: Some(n.code),
                max_capacity: Some(n.max),
                min_capacity: Some(n.min),
                current_capacity: Some(n.current),
            }]
        }),
    }
}

pub async fn describe_scaling_activities(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::DescribeScalingActivitiesRequest,
) -> Result<wire::DescribeScalingActivitiesResponse, AwsError> {
    let Some(prefix) = common::describe_prefix(
        req.service_namespace.as_deref(),
        req.scalable_dimension.as_deref(),
        req.resource_id.as_deref(),
    )?
    else {
        return Ok(wire::DescribeScalingActivitiesResponse {
            scaling_activities: Some(vec![]),
            next_token: None,
        });
    };
    let mut items: Vec<(String, ActivityRecord)> =
        common::all::<ActivityRecord>(a, records::ACTIVITY, &ctx.partition(), &prefix)
            .await?
            .into_iter()
            .filter(|(_, _, r)| {
                r.not_scaled.is_none() || req.include_not_scaled_activities == Some(true)
            })
            .map(|(k, _, r)| (k, r))
            .collect();
    // Newest first across targets too (within one target the keys are already in that order).
    items.sort_by(|x, y| y.1.start_time.cmp(&x.1.start_time).then(x.0.cmp(&y.0)));
    let (activities, next_token) = common::page(
        a,
        ctx,
        "activities",
        items,
        req.max_results,
        req.next_token.as_deref(),
    )?;
    Ok(wire::DescribeScalingActivitiesResponse {
        scaling_activities: Some(activities.into_iter().map(activity_wire).collect()),
        next_token,
    })
}
