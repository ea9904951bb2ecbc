//! The alarm evaluator: every tick, each alarm's evaluation range is read from the series and
//! judged by `evaluate::evaluate`; a change of state is written (alarm + history, one commit
//! under the alarm's version) and then fired, once, to the actions sink; then the composite
//! alarms naming it are judged again (`composite.rs`). Each tick also moves composites' held
//! actions on (`Cloudwatch::release_deferred`), and the first one judges every composite again
//! (`Cloudwatch::catch_up_composites`), so a restart converges.

use crate::alarms::{self, all_alarms, rule_of};
use crate::data;
use crate::evaluate::{self, State};
use crate::records::{self, AlarmRecord};
use crate::series::SeriesKey;
use crate::stats::Statistic;
use crate::{Cloudwatch, CloudwatchError};
use berth_aws::AwsError;
use berth_shapes::cloudwatch as wire;
use berth_store::{Expect, Op, Store};
use std::collections::BTreeMap;

/// Series expiry and history pruning run at most this often.
const MAINTENANCE_EVERY_MS: i64 = 60_000;

impl Cloudwatch {
    /// Evaluates every alarm of every partition once; the server calls it every second.
    pub async fn evaluate_alarms(&self) -> Result<(), CloudwatchError> {
        let now = self.now_ms();
        let partitions = self
            .store()
            .list(records::PARTITIONS, "", "", None, usize::MAX >> 1)
            .await?;
        // On the first tick (and after a failed composite evaluation), every composite is judged
        // on what its children's records say: a change committed just before berth stopped
        // reaches its parents this way.
        let catch_up = self.take_composites_stale();
        for partition in partitions {
            let partition = partition.key;
            if catch_up && !self.catch_up_composites(&partition).await {
                self.composites_stale();
            }
            let alarms = all_alarms(self, &partition).await.map_err(|e| {
                // The partitions after this one were not caught up.
                if catch_up {
                    self.composites_stale();
                }
                CloudwatchError::Api(e)
            })?;
            for (record, version) in alarms {
                if let Err(e) = self.evaluate_one(&partition, record, version, now).await {
                    tracing::warn!(%partition, error = %e, "alarm evaluation failed");
                }
            }
            if let Err(e) = self.release_deferred(&partition, now).await {
                tracing::warn!(%partition, error = %e, "held composite alarm actions failed");
            }
        }
        self.maintain(now).await
    }

    async fn evaluate_one(
        &self,
        partition: &str,
        mut record: AlarmRecord,
        version: u64,
        now: i64,
    ) -> Result<(), AwsError> {
        let Some(rule) = rule_of(&record.alarm) else {
            return Ok(());
        };
        let range = rule.range(now);
        let (Some(first), Some(last)) = (range.first(), range.last()) else {
            return Ok(());
        };
        let period_ms = rule.period_s * 1000;
        let values = self.alarm_values(
            partition,
            &record.alarm,
            *first,
            last + period_ms,
            rule.period_s,
        )?;
        let datapoints: Vec<(i64, Option<f64>)> =
            range.iter().map(|t| (*t, values.get(t).copied())).collect();
        let current = record
            .alarm
            .state_value
            .as_deref()
            .and_then(State::parse)
            .unwrap_or(State::InsufficientData);
        let outcome = evaluate::evaluate(&rule, &datapoints, current, now);
        if outcome.state == current {
            // CloudWatch invokes Auto Scaling actions again every period while the alarm stays
            // in ALARM, with the newest value, so a policy keeps tracking a metric that goes on
            // rising; other actions fire on transitions only.
            if let Some(t) = alarms::repeat(partition, &record, &outcome, now)
                && self.due_again(partition, &t.alarm_name, now, period_ms)
            {
                self.fire(t);
            }
            return Ok(());
        }
        let (ops, fired) = alarms::transition(partition, &mut record, version, outcome, now)?;
        match self.store().commit(ops).await {
            Ok(_) => {}
            // Changed meanwhile (updated, deleted, set by hand): the next tick judges it again.
            Err(e) if e.is_conflict() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(t) = fired {
            self.fire(t);
        }
        let name = record.alarm.alarm_name.clone().unwrap_or_default();
        self.alarm_changed(partition, &name).await;
        Ok(())
    }

    /// The alarm's value per period start in `[start, end)`.
    fn alarm_values(
        &self,
        partition: &str,
        alarm: &wire::MetricAlarm,
        start: i64,
        end: i64,
        period_s: i64,
    ) -> Result<BTreeMap<i64, f64>, AwsError> {
        if let Some(metrics) = &alarm.metrics {
            let queries = data::compile(metrics, "Metrics")?;
            let series = data::run(self, partition, &queries, start, end)?;
            return Ok(queries
                .iter()
                .zip(series)
                .find(|(q, _)| q.return_data)
                .map(|(_, s)| s)
                .unwrap_or_default());
        }
        let dimensions: Vec<(String, String)> = alarm
            .dimensions
            .iter()
            .flatten()
            .map(|d| {
                (
                    d.name.clone().unwrap_or_default(),
                    d.value.clone().unwrap_or_default(),
                )
            })
            .collect();
        let key = SeriesKey::new(
            alarm.namespace.as_deref().unwrap_or_default(),
            alarm.metric_name.as_deref().unwrap_or_default(),
            &dimensions,
        );
        let Some(stat) = alarm.statistic.as_deref().and_then(Statistic::parse) else {
            return Ok(BTreeMap::new());
        };
        let found = self.series().buckets(partition, &key, start, end, period_s);
        if let Some(unit) = &alarm.unit
            && found.unit.as_deref().unwrap_or("None") != unit
        {
            return Ok(BTreeMap::new());
        }
        Ok(found
            .buckets
            .iter()
            .map(|(t, agg)| (*t, agg.statistic(stat)))
            .collect())
    }

    async fn maintain(&self, now: i64) -> Result<(), CloudwatchError> {
        let last = self
            .inner
            .last_maintenance
            .load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) < MAINTENANCE_EVERY_MS {
            return Ok(());
        }
        self.inner
            .last_maintenance
            .store(now, std::sync::atomic::Ordering::Relaxed);
        self.series().expire(now);
        let partitions = self
            .store()
            .list(records::PARTITIONS, "", "", None, usize::MAX >> 1)
            .await?;
        for partition in partitions {
            self.prune_history(&partition.key, now).await?;
        }
        Ok(())
    }

    /// Deletes history past 30 days, and the oldest items beyond the per-partition cap.
    async fn prune_history(&self, partition: &str, now: i64) -> Result<(), CloudwatchError> {
        let keys: Vec<String> = self
            .store()
            .list(records::HISTORY, partition, "", None, usize::MAX >> 1)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect();
        let cutoff = format!("{:015}", now - records::HISTORY_RETENTION_MS);
        let over = keys.len().saturating_sub(records::HISTORY_MAX_ITEMS);
        let doomed: Vec<&String> = keys
            .iter()
            .enumerate()
            .filter(|(i, k)| *i < over || k.as_str() < cutoff.as_str())
            .map(|(_, k)| k)
            .collect();
        for batch in doomed.chunks(500) {
            let ops = batch
                .iter()
                .map(|k| Op::delete(records::HISTORY, partition, *k, Expect::Any))
                .collect();
            self.store().commit(ops).await?;
        }
        Ok(())
    }
}
