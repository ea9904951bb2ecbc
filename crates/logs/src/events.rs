//! Log events: `PutLogEvents` (CloudWatch Logs' current rules: sequence tokens ignored, events
//! in any order within a batch, rejected ranges reported rather than failing the call),
//! `GetLogEvents` with AWS's `f/…` and `b/…` tokens, `FilterLogEvents` across streams, and the
//! retention sweep.

use crate::Logs;
use crate::common::{self, invalid};
use crate::filter::Pattern;
use crate::records::{self, BatchRecord, GroupRecord, StreamRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::logs as wire;
use berth_store::{Expect, Op, Store, get_as};
use std::collections::BTreeMap;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// A batch may not exceed this many bytes, counting each event's message plus [`EVENT_OVERHEAD`].
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD: usize = 26;
/// Events older than this are refused (`tooOldLogEventEndIndex`).
const MAX_AGE_MS: i64 = 14 * DAY_MS;
/// Events further ahead than this are refused (`tooNewLogEventStartIndex`).
const MAX_AHEAD_MS: i64 = 2 * HOUR_MS;
/// The most events one read returns, AWS's default and maximum `limit`.
const MAX_EVENTS: usize = 10_000;

/// One line to ingest: milliseconds since the epoch and the text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineEvent {
    pub timestamp: i64,
    pub message: String,
}

/// What ingestion did with a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub rejected: Option<wire::RejectedLogEventsInfo>,
    pub next_sequence: u64,
}

impl Logs {
    /// Ingests `events` into `group`/`stream` under the same rules as `PutLogEvents`. With
    /// `create`, a missing group and stream are created first (the `awslogs-create-group`
    /// behaviour; a missing stream is always created, as the ECS agent does).
    pub async fn put_events(
        &self,
        ctx: &RequestContext,
        group: &str,
        stream: &str,
        events: Vec<LineEvent>,
        create_group: bool,
    ) -> Result<IngestOutcome, AwsError> {
        if create_group {
            match crate::groups::create_log_group(
                self,
                ctx,
                wire::CreateLogGroupRequest {
                    log_group_name: Some(group.to_owned()),
                    ..Default::default()
                },
            )
            .await
            {
                Ok(_) => {}
                Err(e) if e.code == "ResourceAlreadyExistsException" => {}
                Err(e) => return Err(e),
            }
        }
        match crate::streams::create(self, ctx, group, stream).await {
            Ok(()) => {}
            Err(e) if e.code == "ResourceAlreadyExistsException" => {}
            Err(e) => return Err(e),
        }
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        ingest(self, ctx, group, stream, events).await
    }

    /// The newest event timestamp `group`/`stream` holds (`None`: no events, or no stream).
    pub async fn last_event_timestamp(
        &self,
        ctx: &RequestContext,
        group: &str,
        stream: &str,
    ) -> Result<Option<i64>, AwsError> {
        Ok(get_as::<StreamRecord, _>(
            self.store(),
            records::STREAM,
            &ctx.partition(),
            &records::stream_key(group, stream),
        )
        .await?
        .and_then(|(s, _)| s.last_event_timestamp))
    }

    /// Deletes the batches every group's retention has expired, in every account and region
    /// that has log groups. Returns how many batches went. Groups without a retention policy
    /// keep their events, as in CloudWatch Logs ("Never expire").
    pub async fn sweep(&self) -> Result<usize, AwsError> {
        let now = self.now_ms();
        let partitions = common::scan(self, records::PARTITIONS, "", "", None, |_| true).await?;
        let mut removed = 0;
        for p in partitions {
            let groups = common::scan(self, records::GROUP, &p.key, "", None, |_| true).await?;
            for g in groups {
                let g: GroupRecord = serde_json::from_value(g.value).map_err(AwsError::internal)?;
                let Some(days) = g.retention_in_days else {
                    continue;
                };
                let cutoff = now - i64::from(days) * DAY_MS;
                removed += sweep_group(self, &p.key, &g.name, cutoff).await?;
            }
        }
        Ok(removed)
    }
}

async fn sweep_group(
    logs: &Logs,
    partition: &str,
    group: &str,
    cutoff: i64,
) -> Result<usize, AwsError> {
    let streams = common::scan(
        logs,
        records::STREAM,
        partition,
        &records::streams_prefix(group),
        None,
        |_| true,
    )
    .await?;
    let mut removed = 0;
    for s in streams {
        let version = s.version;
        let mut stream: StreamRecord =
            serde_json::from_value(s.value).map_err(AwsError::internal)?;
        let prefix = records::events_prefix(group, &stream.name);
        // Batches are keyed by their first timestamp: only those that start before the cutoff
        // can have ended before it.
        let old = common::scan(logs, records::EVENTS, partition, &prefix, None, |r| {
            records::parse_batch_key(&r.key).is_some_and(|(ts, _)| ts < cutoff)
        })
        .await?;
        let mut ops = Vec::new();
        for r in old.into_iter().take(500) {
            let b: BatchRecord = serde_json::from_value(r.value).map_err(AwsError::internal)?;
            if b.last_timestamp < cutoff {
                stream.stored_bytes = (stream.stored_bytes - b.bytes).max(0);
                ops.push(Op::delete(records::EVENTS, partition, r.key, Expect::Any));
            }
        }
        if ops.is_empty() {
            continue;
        }
        let n = ops.len();
        let value = serde_json::to_value(&stream).map_err(AwsError::internal)?;
        ops.push(Op::put(
            records::STREAM,
            partition,
            records::stream_key(group, &stream.name),
            value,
            Expect::Version(version),
        ));
        match logs.store().commit(ops).await {
            Ok(_) => removed += n,
            // Ingestion won the race on the stream record; the next sweep takes these.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

pub async fn put_log_events(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::PutLogEventsRequest,
) -> Result<wire::PutLogEventsResponse, AwsError> {
    let group = req.log_group_name.unwrap_or_default();
    let stream = req.log_stream_name.unwrap_or_default();
    let events = req
        .log_events
        .unwrap_or_default()
        .into_iter()
        .map(|e| LineEvent {
            timestamp: e.timestamp.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        })
        .collect();
    let out = ingest(logs, ctx, &group, &stream, events).await?;
    Ok(wire::PutLogEventsResponse {
        next_sequence_token: Some(format!("{:056}", out.next_sequence)),
        rejected_log_events_info: out.rejected,
        rejected_entity_info: None,
    })
}

async fn ingest(
    logs: &Logs,
    ctx: &RequestContext,
    group: &str,
    stream: &str,
    mut events: Vec<LineEvent>,
) -> Result<IngestOutcome, AwsError> {
    let size: usize = events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD)
        .sum();
    if size > MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.len() > MAX_EVENTS {
        return Err(invalid(format!(
            "Too many log events in one batch: {} (at most {MAX_EVENTS}).",
            events.len()
        )));
    }
    // AWS accepts a batch in any order now; indexes in rejectedLogEventsInfo refer to the batch
    // in chronological order (stable, so equal timestamps keep the client's order).
    events.sort_by_key(|e| e.timestamp);
    if let (Some(first), Some(last)) = (events.first(), events.last())
        && last.timestamp - first.timestamp > DAY_MS
    {
        return Err(invalid(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    let (g, _) = common::group(logs, ctx, group).await?;
    common::stream(logs, ctx, group, stream).await?;
    let now = logs.now_ms();
    let too_old_before = now - MAX_AGE_MS;
    let expired_before = g.retention_in_days.map(|d| now - i64::from(d) * DAY_MS);
    let mut rejected = wire::RejectedLogEventsInfo::default();
    let mut start = 0;
    let mut end = events.len();
    for (i, e) in events.iter().enumerate() {
        if e.timestamp < too_old_before {
            rejected.too_old_log_event_end_index = Some(i as i32);
            start = start.max(i + 1);
        }
        if expired_before.is_some_and(|cut| e.timestamp < cut) {
            rejected.expired_log_event_end_index = Some(i as i32);
            start = start.max(i + 1);
        }
        if e.timestamp > now + MAX_AHEAD_MS && end == events.len() {
            rejected.too_new_log_event_start_index = Some(i as i32);
            end = i;
        }
    }
    let rejected = (rejected != wire::RejectedLogEventsInfo::default()).then_some(rejected);
    let accepted: Vec<(i64, String)> = events
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .map(|e| (e.timestamp, e.message))
        .collect();
    let partition = ctx.partition();
    let key = records::stream_key(group, stream);
    let batch = accepted;
    let next_sequence = berth_store::retry_on_conflict(logs.store(), || async {
        let (mut s, version) =
            get_as::<StreamRecord, _>(logs.store(), records::STREAM, &partition, &key)
                .await?
                .ok_or_else(common::stream_not_found)?;
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok::<_, AwsError>((Vec::new(), s.next_seq));
        };
        let seq = s.next_seq;
        let bytes: i64 = batch.iter().map(|(_, m)| m.len() as i64).sum();
        s.next_seq += 1;
        s.first_event_timestamp = Some(s.first_event_timestamp.map_or(first.0, |t| t.min(first.0)));
        s.last_event_timestamp = Some(s.last_event_timestamp.map_or(last.0, |t| t.max(last.0)));
        s.last_ingestion_time = Some(now);
        s.stored_bytes = s.stored_bytes.saturating_add(bytes);
        let record = BatchRecord {
            ingestion_time: now,
            last_timestamp: last.0,
            bytes,
            events: batch.clone(),
        };
        let ops = vec![
            Op::put(
                records::STREAM,
                &partition,
                &key,
                serde_json::to_value(&s).map_err(AwsError::internal)?,
                Expect::Version(version),
            ),
            Op::put(
                records::EVENTS,
                &partition,
                records::batch_key(group, stream, first.0, seq),
                serde_json::to_value(&record).map_err(AwsError::internal)?,
                Expect::Absent,
            ),
        ];
        Ok((ops, s.next_seq))
    })
    .await?;
    Ok(IngestOutcome {
        accepted: batch.len(),
        rejected,
        next_sequence,
    })
}

/// Where an event sits in its stream: timestamp, then the batch's sequence, then its index in
/// the batch. Total and stable, so a token names one gap between two events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    ts: i64,
    seq: u64,
    idx: u32,
}

impl Pos {
    const START: Pos = Pos {
        ts: 0,
        seq: 0,
        idx: 0,
    };

    fn encode(self) -> String {
        format!("{:020}{:020}{:06}", self.ts.max(0), self.seq, self.idx)
    }

    fn decode(digits: &str) -> Option<Pos> {
        if digits.len() != 46 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Pos {
            ts: digits.get(..20)?.parse().ok()?,
            seq: digits.get(20..40)?.parse().ok()?,
            idx: digits.get(40..)?.parse().ok()?,
        })
    }
}

struct Event {
    pos: Pos,
    message: String,
    ingestion_time: i64,
}

/// The events of one stream with `lo <= timestamp < hi`, in order. Batches span at most 24 h, so
/// the scan starts a day before `lo` and stops at the first batch starting at or after `hi`.
async fn read_stream(
    logs: &Logs,
    partition: &str,
    group: &str,
    stream: &str,
    lo: i64,
    hi: i64,
) -> Result<Vec<Event>, AwsError> {
    let prefix = records::events_prefix(group, stream);
    let start_after = (lo > DAY_MS).then(|| format!("{prefix}{}", records::padded(lo - DAY_MS)));
    let batches = common::scan(
        logs,
        records::EVENTS,
        partition,
        &prefix,
        start_after,
        |r| records::parse_batch_key(&r.key).is_some_and(|(ts, _)| ts < hi),
    )
    .await?;
    let mut out = Vec::new();
    for r in batches {
        let Some((_, seq)) = records::parse_batch_key(&r.key) else {
            continue;
        };
        let b: BatchRecord = serde_json::from_value(r.value).map_err(AwsError::internal)?;
        for (idx, (ts, message)) in b.events.into_iter().enumerate() {
            if ts >= lo && ts < hi {
                out.push(Event {
                    pos: Pos {
                        ts,
                        seq,
                        idx: idx as u32,
                    },
                    message,
                    ingestion_time: b.ingestion_time,
                });
            }
        }
    }
    out.sort_by_key(|e| e.pos);
    Ok(out)
}

/// The earliest timestamp a group's retention still shows.
fn retention_floor(logs: &Logs, g: &GroupRecord) -> i64 {
    g.retention_in_days
        .map_or(0, |d| logs.now_ms() - i64::from(d) * DAY_MS)
}

pub async fn get_log_events(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::GetLogEventsRequest,
) -> Result<wire::GetLogEventsResponse, AwsError> {
    let group = common::group_name_of(
        ctx,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let stream = req.log_stream_name.unwrap_or_default();
    let (g, _) = common::group(logs, ctx, &group).await?;
    common::stream(logs, ctx, &group, &stream).await?;
    let limit = req
        .limit
        .map_or(MAX_EVENTS, |n| (n.max(1) as usize).min(MAX_EVENTS));
    // A token decides the direction; without one, startFromHead does (false: the newest).
    let cursor = match req.next_token.as_deref() {
        None => None,
        Some(t) => {
            let bad = || invalid("The specified nextToken is invalid.");
            let (forward, digits) = if let Some(d) = t.strip_prefix("f/") {
                (true, d)
            } else if let Some(d) = t.strip_prefix("b/") {
                (false, d)
            } else {
                return Err(bad());
            };
            Some((forward, Pos::decode(digits).ok_or_else(bad)?, t.to_owned()))
        }
    };
    let lo = req.start_time.unwrap_or(0).max(retention_floor(logs, &g));
    let hi = req.end_time.unwrap_or(i64::MAX);
    let scan_lo = match &cursor {
        Some((true, p, _)) => lo.max(p.ts),
        _ => lo,
    };
    let all = read_stream(logs, &ctx.partition(), &group, &stream, scan_lo, hi).await?;
    let page: Vec<Event> = match &cursor {
        Some((true, p, _)) => all.into_iter().filter(|e| e.pos > *p).take(limit).collect(),
        Some((false, p, _)) => last_n(all.into_iter().filter(|e| e.pos < *p).collect(), limit),
        None if req.start_from_head.unwrap_or(false) => all.into_iter().take(limit).collect(),
        None => last_n(all, limit),
    };
    let (forward, backward) = match (page.first(), page.last(), &cursor) {
        (Some(first), Some(last), _) => (
            format!("f/{}", last.pos.encode()),
            format!("b/{}", first.pos.encode()),
        ),
        // Nothing more: the same token comes back, which is how clients know they are done.
        (_, _, Some((true, p, t))) => (t.clone(), format!("b/{}", p.encode())),
        (_, _, Some((false, p, t))) => (format!("f/{}", p.encode()), t.clone()),
        (_, _, None) => (
            format!("f/{}", Pos::START.encode()),
            format!("b/{}", Pos::START.encode()),
        ),
    };
    Ok(wire::GetLogEventsResponse {
        events: Some(
            page.into_iter()
                .map(|e| wire::OutputLogEvent {
                    timestamp: Some(e.pos.ts),
                    message: Some(e.message),
                    ingestion_time: Some(e.ingestion_time),
                })
                .collect(),
        ),
        next_forward_token: Some(forward),
        next_backward_token: Some(backward),
    })
}

fn last_n<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    let skip = v.len().saturating_sub(n);
    v.drain(..skip);
    v
}

pub async fn filter_log_events(
    logs: &Logs,
    ctx: &RequestContext,
    req: wire::FilterLogEventsRequest,
) -> Result<wire::FilterLogEventsResponse, AwsError> {
    let group = common::group_name_of(
        ctx,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let (g, _) = common::group(logs, ctx, &group).await?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    let pattern = Pattern::parse(req.filter_pattern.as_deref().unwrap_or(""))?;
    let limit = req
        .limit
        .map_or(MAX_EVENTS, |n| (n.max(1) as usize).min(MAX_EVENTS));
    let binding = common::binding(ctx, &format!("filter/{group}"));
    let after = match req.next_token.as_deref() {
        Some(t) => Some(common::decode_token(logs, &binding, t)?),
        None => None,
    };
    let partition = ctx.partition();
    let prefix = format!(
        "{}{}",
        records::streams_prefix(&group),
        req.log_stream_name_prefix.as_deref().unwrap_or("")
    );
    let mut streams: Vec<String> =
        common::scan(logs, records::STREAM, &partition, &prefix, None, |_| true)
            .await?
            .into_iter()
            .filter_map(|r| serde_json::from_value::<StreamRecord>(r.value).ok())
            .map(|s| s.name)
            .collect();
    if let Some(names) = &req.log_stream_names {
        streams.retain(|s| names.contains(s));
    }
    // FilterLogEvents' window is inclusive at both ends.
    let lo = req.start_time.unwrap_or(0).max(retention_floor(logs, &g));
    let hi = req.end_time.map_or(i64::MAX, |t| t.saturating_add(1));
    // Events of all streams interleaved by (timestamp, stream, position): a total order, so a
    // token (the last key returned) resumes exactly after it.
    let mut found: BTreeMap<String, wire::FilteredLogEvent> = BTreeMap::new();
    for stream in &streams {
        let stream_id = fnv(stream);
        for e in read_stream(logs, &partition, &group, stream, lo, hi).await? {
            if !pattern.matches(&e.message) {
                continue;
            }
            let key = format!(
                "{:020}:{stream}:{:020}{:06}",
                e.pos.ts.max(0),
                e.pos.seq,
                e.pos.idx
            );
            if after.as_ref().is_some_and(|a| key.as_str() <= a.as_str()) {
                continue;
            }
            found.insert(
                key,
                wire::FilteredLogEvent {
                    log_stream_name: Some(stream.clone()),
                    timestamp: Some(e.pos.ts),
                    ingestion_time: Some(e.ingestion_time),
                    event_id: Some(format!("{}{stream_id:020}", e.pos.encode())),
                    message: Some(e.message),
                },
            );
            // Only the first `limit + 1` keys can matter; drop the rest as we go.
            if found.len() > limit + 1 {
                found.pop_last();
            }
        }
    }
    let more = found.len() > limit;
    let page: Vec<(String, wire::FilteredLogEvent)> = found.into_iter().take(limit).collect();
    let next_token = match (more, page.last()) {
        (true, Some((k, _))) => Some(logs.tokens().encode(&binding, k)),
        _ => None,
    };
    Ok(wire::FilterLogEventsResponse {
        events: Some(page.into_iter().map(|(_, e)| e).collect()),
        searched_log_streams: Some(
            streams
                .into_iter()
                .map(|s| wire::SearchedLogStream {
                    log_stream_name: Some(s),
                    searched_completely: Some(true),
                })
                .collect(),
        ),
        next_token,
    })
}

/// FNV-1a of a stream name: part of an event id, so ids differ between streams of one group.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
