//! What the store holds for CloudWatch Logs, and how its keys are made. All three kinds live in
//! the request's partition (`account/region`), as AWS scopes log groups.
//!
//! Keys use `:` as the separator because neither a log group name (`[.\-_/#A-Za-z0-9]+`) nor a
//! log stream name (`[^:*]*`) may contain it, so `group:` and `group:stream:` are exact prefixes
//! (a `|` would be ambiguous: stream names may hold it).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "logs.group";
pub const STREAM: &str = "logs.stream";
pub const EVENTS: &str = "logs.events";

/// Width of a zero-padded timestamp or sequence number in a key, so byte order is numeric order.
const WIDTH: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRecord {
    pub name: String,
    pub creation_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_in_days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    pub log_group_class: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// While set, the group and its streams cannot be deleted.
    #[serde(default)]
    pub deletion_protection_enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    pub group: String,
    pub name: String,
    pub creation_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_event_timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ingestion_time: Option<i64>,
    /// The sequence number the next batch gets; it orders batches with equal first timestamps
    /// and is the `nextSequenceToken` AWS still returns (and ignores).
    pub next_seq: u64,
    /// Message bytes ingested and not yet swept.
    #[serde(default)]
    pub stored_bytes: i64,
}

/// One `PutLogEvents` batch: its accepted events sorted by timestamp (stable, so equal
/// timestamps keep the order the client sent).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    pub ingestion_time: i64,
    pub last_timestamp: i64,
    pub bytes: i64,
    /// `(timestamp, message)`.
    pub events: Vec<(i64, String)>,
}

pub fn stream_key(group: &str, stream: &str) -> String {
    format!("{group}:{stream}")
}

pub fn streams_prefix(group: &str) -> String {
    format!("{group}:")
}

pub fn events_prefix(group: &str, stream: &str) -> String {
    format!("{group}:{stream}:")
}

/// The key of a batch whose earliest event is at `first_ts`.
pub fn batch_key(group: &str, stream: &str, first_ts: i64, seq: u64) -> String {
    format!(
        "{}{}:{seq:0WIDTH$}",
        events_prefix(group, stream),
        padded(first_ts)
    )
}

/// A timestamp as it sorts in a key (negative timestamps are refused by the model).
pub fn padded(ts: i64) -> String {
    format!("{:0WIDTH$}", ts.max(0))
}

/// The `(first timestamp, seq)` of a batch key, from the right (stream names may hold digits).
pub fn parse_batch_key(key: &str) -> Option<(i64, u64)> {
    let mut parts = key.rsplitn(3, ':');
    let seq = parts.next()?.parse().ok()?;
    let ts = parts.next()?.parse().ok()?;
    Some((ts, seq))
}

/// One record per `account/region` partition that has ever had a log group (partition `""`,
/// key = the partition), so the retention sweep can find every partition to sweep.
pub const PARTITIONS: &str = "logs.partition";
