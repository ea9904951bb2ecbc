//! Log streams: create, describe (by name or by last event time), delete.

use crate::Logs;
use crate::common::{self, invalid};
use crate::groups::delete_under;
use crate::records::{self, StreamRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::logs as wire;
use berth_store::{Expect, Op, Store};

pub async fn create_log_stream(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::CreateLogStreamRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    let group = req.log_group_name.unwrap_or_default();
    let name = req.log_stream_name.unwrap_or_default();
    create(logs, ctx, &group, &name).await?;
    Ok(Default::default())
}

/// Creates a stream in an existing group; `ResourceAlreadyExistsException` when it exists.
pub(crate) async fn create(
    logs: &Logs,
    ctx: &RequestContext,
    group: &str,
    name: &str,
) -> Result<(), AwsError> {
    common::check_stream_name(name)?;
    common::group(logs, ctx, group).await?;
    let record = StreamRecord {
        group: group.to_owned(),
        name: name.to_owned(),
        creation_time: logs.now_ms(),
        first_event_timestamp: None,
        last_event_timestamp: None,
        last_ingestion_time: None,
        next_seq: 1,
        stored_bytes: 0,
    };
    let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
    match logs
        .store()
        .commit(vec![Op::put(
            records::STREAM,
            ctx.partition(),
            records::stream_key(group, name),
            value,
            Expect::Absent,
        )])
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Err(AwsError::client(
            "ResourceAlreadyExistsException",
            "The specified log stream already exists",
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn describe_log_streams(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::DescribeLogStreamsRequest,
) -> Result<wire::DescribeLogStreamsResponse, AwsError> {
    let group = common::group_name_of(
        ctx,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    common::group(logs, ctx, &group).await?;
    let by_time = req.order_by.as_deref() == Some("LastEventTime");
    if by_time && req.log_stream_name_prefix.is_some() {
        return Err(invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let descending = req.descending.unwrap_or(false);
    let limit = req.limit.map_or(50, |n| n.max(1) as usize);
    let binding = common::binding(
        ctx,
        &format!(
            "streams/{group}/{}/{descending}",
            if by_time { "t" } else { "n" }
        ),
    );
    let after = match req.next_token.as_deref() {
        Some(t) => Some(common::decode_token(logs, &binding, t)?),
        None => None,
    };
    let prefix = format!(
        "{}{}",
        records::streams_prefix(&group),
        req.log_stream_name_prefix.unwrap_or_default()
    );
    let partition = ctx.partition();
    let all = common::scan(logs, records::STREAM, &partition, &prefix, None, |_| true).await?;
    // Each stream with its sort key: the name, or the last event time (streams without events
    // first) then the name, so the order is total and a token names one position in it.
    let mut items: Vec<(String, StreamRecord)> = Vec::with_capacity(all.len());
    for r in all {
        let s: StreamRecord = serde_json::from_value(r.value).map_err(AwsError::internal)?;
        let key = if by_time {
            format!(
                "{}:{}",
                records::padded(s.last_event_timestamp.unwrap_or(0)),
                s.name
            )
        } else {
            s.name.clone()
        };
        items.push((key, s));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        items.reverse();
    }
    let start = match &after {
        None => 0,
        Some(k) => items
            .iter()
            .position(|(key, _)| {
                if descending {
                    key.as_str() < k.as_str()
                } else {
                    key.as_str() > k.as_str()
                }
            })
            .unwrap_or(items.len()),
    };
    let rest: Vec<(String, StreamRecord)> = items.into_iter().skip(start).collect();
    let more = rest.len() > limit;
    let page: Vec<(String, StreamRecord)> = rest.into_iter().take(limit).collect();
    let next_token = match (more, page.last()) {
        (true, Some((k, _))) => Some(logs.tokens().encode(&binding, k)),
        _ => None,
    };
    Ok(wire::DescribeLogStreamsResponse {
        log_streams: Some(page.into_iter().map(|(_, s)| stream_wire(ctx, s)).collect()),
        next_token,
    })
}

fn stream_wire(ctx: &RequestContext, s: StreamRecord) -> wire::LogStream {
    wire::LogStream {
        arn: Some(common::stream_arn(ctx, &s.group, &s.name)),
        creation_time: Some(s.creation_time),
        first_event_timestamp: s.first_event_timestamp,
        last_event_timestamp: s.last_event_timestamp,
        last_ingestion_time: s.last_ingestion_time,
        upload_sequence_token: Some(s.next_seq.to_string()),
        // AWS deprecated per-stream storedBytes and always answers 0.
        stored_bytes: Some(0),
        log_stream_name: Some(s.name),
    }
}

pub async fn delete_log_stream(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::DeleteLogStreamRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, AwsError> {
    let group = req.log_group_name.unwrap_or_default();
    let name = req.log_stream_name.unwrap_or_default();
    let (g, _) = common::group(logs, ctx, &group).await?;
    if g.deletion_protection_enabled {
        return Err(common::deletion_protected());
    }
    let (_, version) = common::stream(logs, ctx, &group, &name).await?;
    let partition = ctx.partition();
    match logs
        .store()
        .commit(vec![Op::delete(
            records::STREAM,
            &partition,
            records::stream_key(&group, &name),
            Expect::Version(version),
        )])
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_conflict() => return Err(common::stream_not_found()),
        Err(e) => return Err(e.into()),
    }
    delete_under(
        logs,
        records::EVENTS,
        &partition,
        &records::events_prefix(&group, &name),
    )
    .await?;
    Ok(Default::default())
}
