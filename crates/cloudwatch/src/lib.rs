//! CloudWatch: metric time series, the CloudWatch API (`GraniteServiceVersion20100801`; the
//! protocol layer brings awsJson 1.0, rpc-v2-cbor and awsQuery requests to the same handlers in
//! their JSON form), alarms and their evaluation.
//!
//! **API Boundary:** other crates put datapoints in through [`Cloudwatch::ingest`] and receive
//! alarm transitions through the [`AlarmActions`] sink ([`Cloudwatch::set_actions`]); the API
//! handlers see a validated, typed request and a [`RequestContext`], never HTTP.
//!
//! **Architecture Invariant:** series live in memory (per-minute aggregates, sealed hours
//! compressed; per-second aggregates of high-resolution metrics for 3 hours) and in
//! `<metrics-dir>/wal.log`, written before `ingest` returns; alarms and their history are store
//! records, and a state change is one commit of the alarm (under its version) and its history,
//! fired to the sink only after that commit. Bad input stores nothing: every PutMetricData datum
//! is checked before any is ingested, and a composite alarm's rule is parsed and its alarms
//! found before it is written. [`evaluate::evaluate`] and [`rule::parse`] are pure functions;
//! composite alarms are judged on their children's transitions (and all once when the
//! evaluator starts), not on a timer.

mod alarms;
mod chunk;
mod common;
mod composite;
mod data;
pub mod evaluate;
mod evaluator;
mod interface;
mod math;
mod metrics;
mod records;
pub mod rule;
mod series;
mod stats;

use berth_aws::AwsError;
use berth_aws::model::ServiceModel;
use berth_aws::token::TokenCodec;
pub use berth_model::clock::{Clock, system_clock};
use berth_store::AnyStore;
use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

pub use interface::{AlarmActions, AlarmTransition, Datapoint, NoActions, Values};
pub use series::SeriesError;

/// Operations berth does not serve yet, one per line as `Name: reason`. The operation ledger
/// test checks that every operation of the model is either implemented or listed here.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

#[derive(Debug, thiserror::Error)]
pub enum CloudwatchError {
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("{0}")]
    Api(AwsError),
}

/// The CloudWatch family. Cloning is cheap.
#[derive(Clone)]
pub struct Cloudwatch {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    model: ServiceModel,
    tokens: TokenCodec,
    clock: Clock,
    series: series::SeriesStore,
    actions: RwLock<Arc<dyn AlarmActions>>,
    last_maintenance: AtomicI64,
    /// When each alarm (partition, name) last fired its actions: an alarm that stays in ALARM
    /// fires them again once per period. In memory: after a restart it fires at once.
    last_fired: parking_lot::Mutex<std::collections::HashMap<(String, String), i64>>,
    /// Whether every composite has been judged on its children's stored states since this
    /// process started and since the last failed evaluation; the evaluator catches up when not.
    composites_current: AtomicBool,
}

impl Cloudwatch {
    /// `token_key` signs pagination tokens; `metrics_dir` holds the series' write-ahead log
    /// (`None`: series in memory only, for tests). Replays the log, so it may take a moment on a
    /// large one.
    pub fn new(
        store: AnyStore,
        token_key: [u8; 32],
        clock: Clock,
        metrics_dir: Option<PathBuf>,
    ) -> Result<Self, CloudwatchError> {
        let model = ServiceModel::lazy(berth_shapes::models::CLOUDWATCH);
        let series = series::SeriesStore::open(metrics_dir.as_deref(), clock())?;
        Ok(Cloudwatch {
            inner: Arc::new(Inner {
                store,
                model,
                tokens: TokenCodec::new(token_key),
                clock,
                series,
                actions: RwLock::new(Arc::new(NoActions)),
                last_maintenance: AtomicI64::new(i64::MIN),
                last_fired: Default::default(),
                composites_current: AtomicBool::new(false),
            }),
        })
    }

    /// Adds datapoints to `partition` (`account/region`). Synchronous and cheap: a few hash
    /// lookups per point and one append to the log per call. Returns once the log has them.
    /// Points outside what PutMetricData accepts (two weeks past, two hours ahead) are dropped:
    /// a node with a wrong clock must not move a series' current hour years away.
    pub fn ingest(
        &self,
        partition: &str,
        mut points: Vec<Datapoint>,
    ) -> Result<(), CloudwatchError> {
        let now = self.now_ms();
        let before = points.len();
        points.retain(|p| {
            p.timestamp_ms >= now - metrics::MAX_PAST_MS
                && p.timestamp_ms <= now + metrics::MAX_FUTURE_MS
        });
        if points.len() < before {
            tracing::debug!(
                partition,
                dropped = before - points.len(),
                "metrics: datapoints outside two weeks past / two hours ahead dropped"
            );
        }
        self.inner.series.ingest(partition, &points)?;
        Ok(())
    }

    /// Where alarm transitions go from now on.
    pub fn set_actions(&self, actions: Arc<dyn AlarmActions>) {
        *self.inner.actions.write() = actions;
    }

    /// Forgets every series (the server's `/_berth/reset`; the store is reset by its owner).
    pub fn reset(&self) -> Result<(), CloudwatchError> {
        self.inner.series.reset()?;
        Ok(())
    }

    /// What the series occupy in memory, counted by the series store.
    pub fn series_bytes(&self) -> usize {
        self.inner.series.approximate_bytes()
    }

    pub fn series_count(&self) -> usize {
        self.inner.series.series_count()
    }

    pub(crate) fn fire(&self, transition: AlarmTransition) {
        self.inner.last_fired.lock().insert(
            (transition.partition.clone(), transition.alarm_name.clone()),
            transition.timestamp_ms,
        );
        let sink = self.inner.actions.read().clone();
        sink.fire(transition);
    }

    /// Whether an alarm last fired at least `period_ms` before `now_ms` (or never did).
    pub(crate) fn due_again(
        &self,
        partition: &str,
        name: &str,
        now_ms: i64,
        period_ms: i64,
    ) -> bool {
        self.inner
            .last_fired
            .lock()
            .get(&(partition.to_string(), name.to_string()))
            .is_none_or(|at| now_ms - at >= period_ms)
    }

    /// Some composite may not follow its children's stored states: the next tick catches up.
    pub(crate) fn composites_stale(&self) {
        self.inner.composites_current.store(false, Ordering::SeqCst);
    }

    /// Whether composites must be caught up now; marks them current.
    pub(crate) fn take_composites_stale(&self) -> bool {
        !self.inner.composites_current.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn store(&self) -> &AnyStore {
        &self.inner.store
    }

    pub(crate) fn series(&self) -> &series::SeriesStore {
        &self.inner.series
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }

    pub(crate) fn tokens(&self) -> &TokenCodec {
        &self.inner.tokens
    }
}

berth_aws::json_service! {
    service: Cloudwatch,
    title: "CloudWatch",
    validation_error: "ValidationError",
    model: |this| &this.inner.model,
    operations: {
    "PutMetricData" => metrics::put_metric_data,
    "GetMetricStatistics" => metrics::get_metric_statistics,
    "ListMetrics" => metrics::list_metrics,
    "GetMetricData" => data::get_metric_data,
    "PutMetricAlarm" => alarms::put_metric_alarm,
    "PutCompositeAlarm" => composite::put_composite_alarm,
    "DescribeAlarms" => alarms::describe_alarms,
    "DescribeAlarmsForMetric" => alarms::describe_alarms_for_metric,
    "DescribeAlarmHistory" => alarms::describe_alarm_history,
    "DeleteAlarms" => alarms::delete_alarms,
    "SetAlarmState" => alarms::set_alarm_state,
    "EnableAlarmActions" => alarms::enable_alarm_actions,
    "DisableAlarmActions" => alarms::disable_alarm_actions,
    "TagResource" => alarms::tag_resource,
    "UntagResource" => alarms::untag_resource,
    "ListTagsForResource" => alarms::list_tags_for_resource,
    }
}
