//! What CloudWatch keeps in berth's store: alarms (definition and state in one record, so a
//! transition is one versioned write) and their history.

use crate::interface::AlarmTransition;
use berth_shapes::cloudwatch as wire;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Key: the alarm name.
pub const ALARM: &str = "cloudwatch.alarm";
/// Key: the composite alarm's name. Alarm names are one namespace across both kinds: a write of
/// one kind asserts the other's key absent in the same commit.
pub const COMPOSITE: &str = "cloudwatch.composite-alarm";
/// Key: `<timestamp ms, 15 digits>-<sequence, 16 digits>-<uuid>`, so a partition's history is in
/// time order and, within a millisecond, in write order. (Keys written before the sequence was
/// added, `<ms>-<uuid>`, still sort by their millisecond first.)
pub const HISTORY: &str = "cloudwatch.alarm-history";
/// Partition "", key: a partition that has alarms, for the evaluator.
pub const PARTITIONS: &str = "cloudwatch.partition";

/// History older than this is swept, as CloudWatch keeps 30 days.
pub const HISTORY_RETENTION_MS: i64 = 30 * 86_400_000;
/// And at most this many items per partition, oldest dropped first.
pub const HISTORY_MAX_ITEMS: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlarmRecord {
    /// The alarm as DescribeAlarms shows it, state included.
    pub alarm: wire::MetricAlarm,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompositeRecord {
    /// The alarm as DescribeAlarms shows it, state included.
    pub alarm: wire::CompositeAlarm,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// The actions of its last transition, while its actions suppressor holds them back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferred>,
}

/// Why a composite's actions wait: CloudWatch's `ActionsSuppressedBy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Suppression {
    /// The composite went into ALARM; its actions wait up to `ActionsSuppressorWaitPeriod` for
    /// the suppressor to go into ALARM.
    WaitPeriod,
    /// The suppressor is in ALARM.
    Alarm,
    /// The suppressor left ALARM; the actions wait `ActionsSuppressorExtensionPeriod` more.
    ExtensionPeriod,
}

impl Suppression {
    pub fn wire(self) -> &'static str {
        match self {
            Suppression::WaitPeriod => "WaitPeriod",
            Suppression::Alarm => "Alarm",
            Suppression::ExtensionPeriod => "ExtensionPeriod",
        }
    }
}

/// A composite transition whose actions are held back; kept in the record, so a restart
/// neither loses nor repeats them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deferred {
    pub transition: AlarmTransition,
    pub by: Suppression,
    /// When the wait or extension period ends (unused while the suppressor is in ALARM).
    pub until_ms: i64,
}

/// Orders history keys of one millisecond. Per process: this process is the store's only
/// writer, and a restart moves past the millisecond anyway; the uuid keeps keys unique even if
/// a clock is set back.
static HISTORY_SEQUENCE: AtomicU64 = AtomicU64::new(0);

pub fn history_key(timestamp_ms: i64) -> String {
    let sequence = HISTORY_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!(
        "{timestamp_ms:015}-{sequence:016}-{}",
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_millisecond_sort_in_write_order() {
        let keys: Vec<String> = (0..50).map(|_| history_key(1_764_000_000_000)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, keys);
        // An older key sorts by its millisecond before the sequence matters.
        let old = format!(
            "{:015}-{}",
            1_764_000_000_001i64,
            uuid::Uuid::new_v4().simple()
        );
        assert!(keys.iter().all(|k| k.as_str() < old.as_str()));
    }
}
