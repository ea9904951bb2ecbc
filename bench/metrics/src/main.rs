//! Benchmark of berth's CloudWatch series store: ingest rate through `Cloudwatch::ingest` and
//! through the PutMetricData handler (model validation + JSON + handler, in process), and the
//! memory of 10,000 series at 1-minute resolution over 24 hours.
//!
//! Run: cargo run --release -p berth-bench-metrics [-- SERIES HOURS]

use berth_aws::validate::Patterns;
use berth_aws::{JsonService, RequestContext};
use berth_cloudwatch::{Cloudwatch, Datapoint, Values};
use berth_store::SqliteStore;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

const PARTITION: &str = "000000000000/us-east-1";
const BATCH: usize = 1000;

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A gauge like a container's CPU percent: a random walk with one decimal, from a cheap LCG so
/// runs are reproducible.
struct Walk {
    state: u64,
    values: Vec<f64>,
}

impl Walk {
    fn new(series: usize) -> Walk {
        Walk {
            state: 0x9E37_79B9_7F4A_7C15,
            values: (0..series).map(|i| (i % 100) as f64).collect(),
        }
    }

    fn next(&mut self, series: usize) -> f64 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let step = ((self.state >> 33) % 21) as f64 / 10.0 - 1.0;
        let v = (self.values[series] + step).clamp(0.0, 100.0);
        let v = (v * 10.0).round() / 10.0;
        self.values[series] = v;
        v
    }
}

fn point(series: usize, ts: i64, value: f64) -> Datapoint {
    Datapoint {
        namespace: "AWS/ECS".into(),
        metric_name: "CPUUtilization".into(),
        dimensions: vec![
            ("ClusterName".into(), "bench".into()),
            ("ServiceName".into(), format!("service-{series:05}")),
        ],
        timestamp_ms: ts,
        values: Values::One(value),
        unit: Some("Percent".into()),
        storage_resolution: 60,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let series = args.first().copied().unwrap_or(10_000);
    let hours = args.get(1).copied().unwrap_or(24);
    let minutes = hours * 60;
    let dir = tempfile::tempdir().expect("temp dir");
    let now = Arc::new(AtomicI64::new(0));
    let end = 1_764_000_000_000i64; // a whole hour
    let start = end - minutes as i64 * 60_000;
    now.store(end, Ordering::SeqCst);
    let clock = now.clone();
    let store = SqliteStore::open_in_memory().expect("store");
    let rss_before = rss_bytes();
    let cw = Cloudwatch::new(
        store.into(),
        [1; 32],
        Arc::new(move || clock.load(Ordering::SeqCst)),
        Some(dir.path().join("metrics")),
    )
    .expect("cloudwatch");

    // 1. Memory and sustained ingest: every series gets one point per minute, minute by minute.
    let mut walk = Walk::new(series);
    let began = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut total = 0usize;
    let mut in_ingest = 0.0f64;
    for minute in 0..minutes {
        let ts = start + minute as i64 * 60_000;
        for s in 0..series {
            batch.push(point(s, ts, walk.next(s)));
            if batch.len() == BATCH {
                total += batch.len();
                let call = Instant::now();
                cw.ingest(PARTITION, std::mem::take(&mut batch))
                    .expect("ingest");
                in_ingest += call.elapsed().as_secs_f64();
            }
        }
    }
    if !batch.is_empty() {
        total += batch.len();
        cw.ingest(PARTITION, batch).expect("ingest");
    }
    let elapsed = began.elapsed().as_secs_f64();
    let counted = cw.series_bytes();
    let rss = rss_bytes().saturating_sub(rss_before);
    let log = std::fs::metadata(dir.path().join("metrics/wal.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "ingest: {total} datapoints into {} series: {:.0} datapoints/s inside `ingest` ({in_ingest:.1} s; write-ahead log on, batches of {BATCH}), {:.0}/s with building the points ({elapsed:.1} s)",
        cw.series_count(),
        total as f64 / in_ingest,
        total as f64 / elapsed
    );
    println!(
        "memory: {series} series x {minutes} minutes = {total} points: counted {:.1} MiB ({:.2} bytes/point), process RSS grew {:.1} MiB; log on disk {:.1} MiB",
        mib(counted),
        counted as f64 / total as f64,
        mib(rss),
        mib(log as usize)
    );

    // 2. Through the API handler: PutMetricData of 1000 datums, validated against the model.
    let patterns = Patterns::default();
    let ctx = RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "bench".into(),
        access_key_id: None,
    };
    let calls = 200usize;
    let bodies: Vec<Vec<u8>> = (0..calls)
        .map(|c| {
            let data: Vec<_> = (0..BATCH)
                .map(|i| {
                    json!({"MetricName": "Requests", "Value": (c * i % 97) as f64,
                           "Timestamp": (end - 60_000) as f64 / 1000.0,
                           "Dimensions": [{"Name": "Route", "Value": format!("r{}", i % 500)}]})
                })
                .collect();
            serde_json::to_vec(&json!({"Namespace": "Bench", "MetricData": data})).expect("json")
        })
        .collect();
    let began = Instant::now();
    for body in &bodies {
        let input = berth_aws::json::decode(
            cw.model(),
            &patterns,
            cw.validation_error_code(),
            "PutMetricData",
            body,
        )
        .expect("valid");
        cw.call(ctx.clone(), "PutMetricData", input)
            .await
            .expect("put");
    }
    let elapsed = began.elapsed().as_secs_f64();
    println!(
        "api: {calls} PutMetricData calls of {BATCH} datums in {elapsed:.2} s = {:.0} datapoints/s ({:.1} ms per call; JSON parse + validation + handler + ingest, no HTTP)",
        (calls * BATCH) as f64 / elapsed,
        elapsed * 1000.0 / calls as f64
    );
}
