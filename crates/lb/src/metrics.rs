//! Request metrics per load balancer and per (load balancer, target group), as CloudWatch's
//! `AWS/ApplicationELB` namespace names them: counters in atomics on the request path, read
//! and reset by [`crate::DataPlane::take_metrics`]. `RequestCountPerTarget` is not kept: the
//! consumer derives it as a target group's `RequestCount` over its number of healthy targets.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counted metrics, in the order of [`Counters`]' slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    RequestCount,
    Target2xx,
    Target3xx,
    Target4xx,
    Target5xx,
    Elb4xx,
    Elb5xx,
    Elb502,
    Elb503,
    Elb504,
    FixedResponse,
    Redirect,
}

const COUNTED: [Metric; 12] = [
    Metric::RequestCount,
    Metric::Target2xx,
    Metric::Target3xx,
    Metric::Target4xx,
    Metric::Target5xx,
    Metric::Elb4xx,
    Metric::Elb5xx,
    Metric::Elb502,
    Metric::Elb503,
    Metric::Elb504,
    Metric::FixedResponse,
    Metric::Redirect,
];

impl Metric {
    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestCount => "RequestCount",
            Metric::Target2xx => "HTTPCode_Target_2XX_Count",
            Metric::Target3xx => "HTTPCode_Target_3XX_Count",
            Metric::Target4xx => "HTTPCode_Target_4XX_Count",
            Metric::Target5xx => "HTTPCode_Target_5XX_Count",
            Metric::Elb4xx => "HTTPCode_ELB_4XX_Count",
            Metric::Elb5xx => "HTTPCode_ELB_5XX_Count",
            Metric::Elb502 => "HTTPCode_ELB_502_Count",
            Metric::Elb503 => "HTTPCode_ELB_503_Count",
            Metric::Elb504 => "HTTPCode_ELB_504_Count",
            Metric::FixedResponse => "HTTP_Fixed_Response_Count",
            Metric::Redirect => "HTTP_Redirect_Count",
        }
    }

    /// The `HTTPCode_Target_*` metric of a target's status.
    pub fn of_target_status(status: u16) -> Option<Metric> {
        match status / 100 {
            2 => Some(Metric::Target2xx),
            3 => Some(Metric::Target3xx),
            4 => Some(Metric::Target4xx),
            5 => Some(Metric::Target5xx),
            _ => None,
        }
    }
}

/// One scope's counters, split in a slot per worker thread: every request adds to several
/// counters of the same scope, and a counter shared by workers on different cores would move its
/// cache line between them on every add. [`Registry::take`] sums the slots.
#[derive(Debug, Default)]
pub struct Counters {
    slots: [Slot; SLOTS],
}

/// How many slots a scope has; workers past this many share them (still correct, only slower).
const SLOTS: usize = 8;

/// One worker's counts, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    counts: [AtomicU64; COUNTED.len()],
    /// TargetResponseTime: the sum in microseconds, and the number of samples.
    response_micros: AtomicU64,
    responses: AtomicU64,
}

thread_local! {
    /// The slot this thread adds to: its worker's index (other threads share slot 0).
    static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes the calling thread add to `worker`'s slot.
pub fn set_worker(worker: usize) {
    SLOT.with(|s| s.set(worker % SLOTS));
}

impl Counters {
    fn slot(&self) -> &Slot {
        &self.slots[SLOT.with(std::cell::Cell::get)]
    }

    pub fn add(&self, metric: Metric) {
        self.slot().counts[metric as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn response_time(&self, elapsed: std::time::Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = self.slot();
        slot.response_micros.fetch_add(micros, Ordering::Relaxed);
        slot.responses.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads and resets a counter over every slot.
    fn take_count(&self, metric: Metric) -> u64 {
        self.slots
            .iter()
            .map(|s| s.counts[metric as usize].swap(0, Ordering::Relaxed))
            .sum()
    }

    /// Reads and resets (microseconds, samples) of TargetResponseTime over every slot.
    fn take_response_time(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(micros, n), s| {
            (
                micros + s.response_micros.swap(0, Ordering::Relaxed),
                n + s.responses.swap(0, Ordering::Relaxed),
            )
        })
    }

    fn pending(&self) -> bool {
        self.slots.iter().any(|s| {
            s.counts.iter().any(|n| n.load(Ordering::Relaxed) > 0)
                || s.responses.load(Ordering::Relaxed) > 0
        })
    }
}

/// One metric's change since the last [`crate::DataPlane::take_metrics`].
#[derive(Debug, Clone, PartialEq)]
pub struct LbMetric {
    /// `account/region`.
    pub partition: String,
    /// The `LoadBalancer` dimension: `app/<name>/<id>`.
    pub load_balancer: String,
    /// The `TargetGroup` dimension, `targetgroup/<name>/<id>`, for per-group metrics.
    pub target_group: Option<String>,
    /// The CloudWatch metric name.
    pub name: &'static str,
    /// The sum of the samples (a count for counters, seconds for `TargetResponseTime`).
    pub sum: f64,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    partition: String,
    load_balancer: String,
    target_group: Option<String>,
}

/// Every scope's counters, kept across routing table rebuilds so no count is lost when a rule
/// changes. The request path never touches this map: tables hold the `Arc<Counters>` directly.
#[derive(Debug, Default)]
pub struct Registry {
    scopes: Mutex<HashMap<Scope, Arc<Counters>>>,
}

impl Registry {
    pub fn counters(
        &self,
        partition: &str,
        load_balancer: &str,
        target_group: Option<&str>,
    ) -> Arc<Counters> {
        let scope = Scope {
            partition: partition.to_string(),
            load_balancer: load_balancer.to_string(),
            target_group: target_group.map(str::to_string),
        };
        self.scopes.lock().entry(scope).or_default().clone()
    }

    /// Reads and resets every non-zero counter.
    pub fn take(&self) -> Vec<LbMetric> {
        let scopes: Vec<(Scope, Arc<Counters>)> = self
            .scopes
            .lock()
            .iter()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect();
        let mut out = Vec::new();
        for (scope, c) in scopes {
            let metric = |name: &'static str, sum: f64, samples: u64| LbMetric {
                partition: scope.partition.clone(),
                load_balancer: scope.load_balancer.clone(),
                target_group: scope.target_group.clone(),
                name,
                sum,
                samples,
            };
            for m in COUNTED {
                let n = c.take_count(m);
                if n > 0 {
                    out.push(metric(m.name(), n as f64, n));
                }
            }
            let (micros, samples) = c.take_response_time();
            if samples > 0 {
                out.push(metric("TargetResponseTime", micros as f64 / 1e6, samples));
            }
        }
        out
    }

    /// Forgets scopes whose load balancer or target group is gone, once their last counts were
    /// taken (a scope with pending counts stays until the next take).
    pub fn retain(&self, live: impl Fn(&str, Option<&str>) -> bool) {
        self.scopes
            .lock()
            .retain(|s, c| live(&s.load_balancer, s.target_group.as_deref()) || c.pending());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_reports_deltas_and_resets() {
        let r = Registry::default();
        let lb = r.counters("p", "app/web/1", None);
        let tg = r.counters("p", "app/web/1", Some("targetgroup/blue/2"));
        lb.add(Metric::RequestCount);
        lb.add(Metric::RequestCount);
        tg.add(Metric::Target2xx);
        tg.response_time(std::time::Duration::from_millis(250));
        tg.response_time(std::time::Duration::from_millis(750));
        let mut got = r.take();
        got.sort_by(|a, b| a.name.cmp(b.name));
        let brief: Vec<(&str, Option<&str>, f64, u64)> = got
            .iter()
            .map(|m| (m.name, m.target_group.as_deref(), m.sum, m.samples))
            .collect();
        assert_eq!(
            brief,
            [
                (
                    "HTTPCode_Target_2XX_Count",
                    Some("targetgroup/blue/2"),
                    1.0,
                    1
                ),
                ("RequestCount", None, 2.0, 2),
                ("TargetResponseTime", Some("targetgroup/blue/2"), 1.0, 2),
            ]
        );
        assert!(r.take().is_empty(), "a second take has nothing new");
        // Counts added by different workers are summed.
        std::thread::scope(|scope| {
            for worker in 0..3 {
                let lb = &lb;
                scope.spawn(move || {
                    set_worker(worker);
                    lb.add(Metric::RequestCount);
                });
            }
        });
        let got = r.take();
        assert_eq!(
            got.iter()
                .map(|m| (m.name, m.sum, m.samples))
                .collect::<Vec<_>>(),
            [("RequestCount", 3.0, 3)]
        );
        // The same scope hands out the same counters.
        r.counters("p", "app/web/1", None).add(Metric::Elb503);
        assert_eq!(r.take()[0].name, "HTTPCode_ELB_503_Count");
    }
}
