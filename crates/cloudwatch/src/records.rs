//! What CloudWatch keeps in berth's store: alarms (definition and state in one record, so a
//! transition is one versioned write) and their history.

use berth_shapes::cloudwatch as wire;
use serde::{Deserialize, Serialize};

/// Key: the alarm name.
pub const ALARM: &str = "cloudwatch.alarm";
/// Key: `<timestamp ms, 15 digits>-<uuid>`, so a partition's history is in time order.
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

pub fn history_key(timestamp_ms: i64) -> String {
    format!("{timestamp_ms:015}-{}", uuid::Uuid::new_v4().simple())
}
