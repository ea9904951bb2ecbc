//! Log groups: create, describe, delete, their retention policy and their deletion protection.

use crate::Logs;
use crate::common::{self, invalid};
use crate::records::{self, GroupRecord, StreamRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::logs as wire;
use berth_store::{Expect, Op, Store, get_as};

/// The retention periods CloudWatch Logs accepts, in days (PutRetentionPolicy's documentation).
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// How many records one commit of a bulk delete removes, so one commit stays small.
const DELETE_CHUNK: usize = 500;

pub async fn create_log_group(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::CreateLogGroupRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    let name = req.log_group_name.unwrap_or_default();
    common::check_group_name(&name)?;
    if name.to_ascii_lowercase().starts_with("aws/") {
        return Err(invalid(
            "Log groups starting with AWS/ are reserved for AWS.",
        ));
    }
    let tags = req.tags.unwrap_or_default();
    for key in tags.keys() {
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(
                "Tag keys beginning with 'aws:' are reserved for AWS use.",
            ));
        }
    }
    let record = GroupRecord {
        name: name.clone(),
        creation_time: logs.now_ms(),
        retention_in_days: None,
        kms_key_id: req.kms_key_id,
        log_group_class: req.log_group_class.unwrap_or_else(|| "STANDARD".into()),
        tags,
        deletion_protection_enabled: req.deletion_protection_enabled.unwrap_or(false),
    };
    let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
    match logs
        .store()
        .commit(vec![
            Op::put(
                records::GROUP,
                ctx.partition(),
                &name,
                value,
                Expect::Absent,
            ),
            Op::put(
                records::PARTITIONS,
                "",
                ctx.partition(),
                serde_json::json!({}),
                Expect::Any,
            ),
        ])
        .await
    {
        Ok(_) => Ok(Default::default()),
        Err(e) if e.is_conflict() => Err(AwsError::client(
            "ResourceAlreadyExistsException",
            "The specified log group already exists",
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn describe_log_groups(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::DescribeLogGroupsRequest,
) -> Result<wire::DescribeLogGroupsResponse, AwsError> {
    if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
        return Err(invalid(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
        ));
    }
    // "If you specify this parameter, the only other filter that you can choose to specify is
    // includeLinkedAccounts."
    if req.log_group_identifiers.is_some()
        && (req.log_group_name_prefix.is_some() || req.log_group_name_pattern.is_some())
    {
        return Err(invalid(
            "logGroupIdentifiers cannot be combined with logGroupNamePrefix or logGroupNamePattern.",
        ));
    }
    let limit = req.limit.map_or(50, |n| n.max(1) as usize);
    let binding = common::binding(ctx, "groups");
    let after = match req.next_token.as_deref() {
        Some(t) => Some(common::decode_token(logs, &binding, t)?),
        None => None,
    };
    let prefix = req.log_group_name_prefix.unwrap_or_default();
    // A case-sensitive substring, as CloudWatch Logs matches it; the answer then carries only
    // each group's ARN, creation time and name.
    let pattern = req.log_group_name_pattern;
    let brief = pattern.is_some();
    let class = req.log_group_class;
    let identifiers = req.log_group_identifiers;
    let partition = ctx.partition();
    let mut found = Vec::new();
    let mut more = false;
    let records = common::scan(logs, records::GROUP, &partition, &prefix, after, |_| true).await?;
    for r in records {
        let g: GroupRecord = serde_json::from_value(r.value).map_err(AwsError::internal)?;
        if let Some(p) = &pattern
            && !g.name.contains(p.as_str())
        {
            continue;
        }
        if class.as_ref().is_some_and(|c| *c != g.log_group_class) {
            continue;
        }
        if let Some(ids) = &identifiers
            && !ids.iter().any(|id| {
                id == &g.name
                    || id == &common::group_arn_bare(ctx, &g.name)
                    || id == &common::group_arn(ctx, &g.name)
            })
        {
            continue;
        }
        if found.len() == limit {
            more = true;
            break;
        }
        found.push(g);
    }
    let next_token = match (more, found.last()) {
        (true, Some(g)) => Some(logs.tokens().encode(&binding, &g.name)),
        _ => None,
    };
    let mut out = Vec::with_capacity(found.len());
    for g in found {
        if brief {
            out.push(wire::LogGroup {
                arn: Some(common::group_arn(ctx, &g.name)),
                creation_time: Some(g.creation_time),
                log_group_name: Some(g.name),
                ..Default::default()
            });
            continue;
        }
        let stored = stored_bytes(logs, &partition, &g.name).await?;
        out.push(group_wire(ctx, g, stored));
    }
    Ok(wire::DescribeLogGroupsResponse {
        log_groups: Some(out),
        next_token,
    })
}

/// A group's stored bytes: the sum over its streams (kept per stream so that ingestion into
/// different streams of one group never contends on the group record).
async fn stored_bytes(logs: &Logs, partition: &str, group: &str) -> Result<i64, AwsError> {
    let streams = common::scan(
        logs,
        records::STREAM,
        partition,
        &records::streams_prefix(group),
        None,
        |_| true,
    )
    .await?;
    let mut sum = 0i64;
    for r in streams {
        let s: StreamRecord = serde_json::from_value(r.value).map_err(AwsError::internal)?;
        sum = sum.saturating_add(s.stored_bytes);
    }
    Ok(sum)
}

fn group_wire(ctx: &RequestContext, g: GroupRecord, stored: i64) -> wire::LogGroup {
    wire::LogGroup {
        arn: Some(common::group_arn(ctx, &g.name)),
        log_group_arn: Some(common::group_arn_bare(ctx, &g.name)),
        creation_time: Some(g.creation_time),
        retention_in_days: g.retention_in_days,
        metric_filter_count: Some(0),
        stored_bytes: Some(stored),
        kms_key_id: g.kms_key_id,
        log_group_class: Some(g.log_group_class),
        deletion_protection_enabled: Some(g.deletion_protection_enabled),
        log_group_name: Some(g.name),
        ..Default::default()
    }
}

pub async fn delete_log_group(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::DeleteLogGroupRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    let name = req.log_group_name.unwrap_or_default();
    let (g, version) = common::group(logs, ctx, &name).await?;
    if g.deletion_protection_enabled {
        return Err(common::deletion_protected());
    }
    let partition = ctx.partition();
    match logs
        .store()
        .commit(vec![Op::delete(
            records::GROUP,
            &partition,
            &name,
            Expect::Version(version),
        )])
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_conflict() => return Err(common::group_not_found()),
        Err(e) => return Err(e.into()),
    }
    // The group is gone, so no new stream can be created in it; its streams and events go in
    // bounded commits (a group may hold far more than one commit should carry).
    delete_under(
        logs,
        records::STREAM,
        &partition,
        &records::streams_prefix(&name),
    )
    .await?;
    delete_under(
        logs,
        records::EVENTS,
        &partition,
        &records::streams_prefix(&name),
    )
    .await?;
    Ok(Default::default())
}

/// Deletes every record of `kind` under `prefix`, a chunk per commit.
pub async fn delete_under(
    logs: &Logs,
    kind: &str,
    partition: &str,
    prefix: &str,
) -> Result<(), AwsError> {
    loop {
        let page = logs
            .store()
            .list(kind, partition, prefix, None, DELETE_CHUNK)
            .await?;
        if page.is_empty() {
            return Ok(());
        }
        let ops = page
            .into_iter()
            .map(|r| Op::delete(kind, partition, r.key, Expect::Any))
            .collect();
        logs.store().commit(ops).await?;
    }
}

pub async fn put_retention_policy(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::PutRetentionPolicyRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    let days = req.retention_in_days.unwrap_or_default();
    if !RETENTION_DAYS.contains(&days) {
        let allowed: Vec<String> = RETENTION_DAYS.iter().map(|d| d.to_string()).collect();
        return Err(invalid(format!(
            "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        )));
    }
    set_retention(
        logs,
        ctx,
        &req.log_group_name.unwrap_or_default(),
        Some(days),
    )
    .await
}

pub async fn delete_retention_policy(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::DeleteRetentionPolicyRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    set_retention(logs, ctx, &req.log_group_name.unwrap_or_default(), None).await
}

pub async fn put_log_group_deletion_protection(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::PutLogGroupDeletionProtectionRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    let name = common::group_name_of(ctx, None, req.log_group_identifier.as_deref())?;
    let enabled = req.deletion_protection_enabled.unwrap_or_default();
    update_group(logs, ctx, &name, |g| {
        g.deletion_protection_enabled = enabled
    })
    .await
}

async fn set_retention(
    logs: &Logs,
    ctx: &RequestContext,
    name: &str,
    days: Option<i32>,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    update_group(logs, ctx, name, |g| g.retention_in_days = days).await
}

/// Changes one group record with `change`, retried on concurrent writes.
async fn update_group(
    logs: &Logs,
    ctx: &RequestContext,
    name: &str,
    change: impl Fn(&mut GroupRecord),
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    let partition = ctx.partition();
    berth_store::retry_on_conflict(logs.store(), || async {
        let (mut g, version) =
            get_as::<GroupRecord, _>(logs.store(), records::GROUP, &partition, name)
                .await?
                .ok_or_else(common::group_not_found)?;
        change(&mut g);
        let value = serde_json::to_value(&g).map_err(AwsError::internal)?;
        Ok::<_, AwsError>((
            vec![Op::put(
                records::GROUP,
                &partition,
                name,
                value,
                Expect::Version(version),
            )],
            (),
        ))
    })
    .await?;
    Ok(Default::default())
}
