//! Component tests of the CloudWatch API: `Cloudwatch` on an in-memory store, driven through
//! `JsonService::call` after the model's validation (as the server does), on a clock the tests
//! move; the evaluator is run by hand, tick by tick.

use berth_aws::validate::Patterns;
use berth_aws::{AwsError, JsonService, RequestContext};
use berth_cloudwatch::{AlarmActions, AlarmTransition, Cloudwatch, Datapoint, Values};
use berth_store::{Expect, Op, SqliteStore, Store};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A whole hour, so periods line up.
const T0: i64 = 1_764_000_000_000;

fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<AlarmTransition>>);

impl AlarmActions for Recorder {
    fn fire(&self, transition: AlarmTransition) {
        self.0.lock().push(transition);
    }
}

struct World {
    cw: Cloudwatch,
    store: SqliteStore,
    clock: Arc<AtomicI64>,
    patterns: Patterns,
    fired: Arc<Recorder>,
}

impl World {
    fn new() -> World {
        World::on(SqliteStore::open_in_memory().expect("in-memory store"), T0)
    }

    /// A CloudWatch that starts on `store` at `now`: what a restart of berth sees.
    fn on(store: SqliteStore, now: i64) -> World {
        let clock = Arc::new(AtomicI64::new(now));
        let c = clock.clone();
        let cw = Cloudwatch::new(
            store.clone().into(),
            [7u8; 32],
            Arc::new(move || c.load(Ordering::SeqCst)),
            None,
        )
        .expect("cloudwatch");
        let fired = Arc::new(Recorder::default());
        cw.set_actions(fired.clone());
        World {
            cw,
            store,
            clock,
            patterns: Patterns::default(),
            fired,
        }
    }

    fn at(&self, ms: i64) {
        self.clock.store(ms, Ordering::SeqCst);
    }

    async fn call(&self, op: &str, input: Value) -> Result<Value, AwsError> {
        let body = serde_json::to_vec(&input).unwrap();
        let input = berth_aws::json::decode(
            self.cw.model(),
            &self.patterns,
            self.cw.validation_error_code(),
            op,
            &body,
        )?;
        let out = self.cw.call(ctx(), op, input).await?;
        Ok(serde_json::from_slice(&out).expect("JSON answer"))
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        self.call(op, input)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    async fn err(&self, op: &str, input: Value) -> AwsError {
        match self.call(op, input).await {
            Ok(v) => panic!("{op} succeeded: {v}"),
            Err(e) => e,
        }
    }

    async fn state(&self, alarm: &str) -> String {
        let out = self
            .ok("DescribeAlarms", json!({"AlarmNames": [alarm]}))
            .await;
        out["MetricAlarms"][0]["StateValue"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[tokio::test]
async fn statistics_match_a_direct_computation() {
    let w = World::new();
    w.at(T0 + 600_000);
    // Three values per minute for ten minutes, and one statistic set.
    let mut raw: Vec<(i64, f64)> = Vec::new();
    let mut data = Vec::new();
    for minute in 0..10i64 {
        for k in 0..3i64 {
            let ts = T0 + minute * 60_000 + k * 15_000;
            let v = (minute * 7 + k * 3) as f64 % 11.0 + 0.5;
            raw.push((ts, v));
            data.push(
                json!({"MetricName": "Latency", "Dimensions": [{"Name": "Svc", "Value": "a"}],
                             "Timestamp": secs(ts), "Value": v, "Unit": "Milliseconds"}),
            );
        }
    }
    w.ok(
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": data}),
    )
    .await;
    let out = w
        .ok(
            "GetMetricStatistics",
            json!({"Namespace": "App", "MetricName": "Latency",
                   "Dimensions": [{"Name": "Svc", "Value": "a"}],
                   "StartTime": secs(T0), "EndTime": secs(T0 + 600_000), "Period": 300,
                   "Statistics": ["SampleCount", "Average", "Sum", "Minimum", "Maximum"]}),
        )
        .await;
    let mut points = out["Datapoints"].as_array().unwrap().clone();
    points.sort_by(|a, b| {
        a["Timestamp"]
            .as_f64()
            .partial_cmp(&b["Timestamp"].as_f64())
            .unwrap()
    });
    assert_eq!(points.len(), 2);
    for (i, p) in points.iter().enumerate() {
        let start = T0 + i as i64 * 300_000;
        let values: Vec<f64> = raw
            .iter()
            .filter(|(t, _)| *t >= start && *t < start + 300_000)
            .map(|(_, v)| *v)
            .collect();
        let sum: f64 = values.iter().sum();
        assert_eq!(p["Timestamp"].as_f64().unwrap(), secs(start));
        assert_eq!(p["SampleCount"].as_f64().unwrap(), values.len() as f64);
        assert!((p["Sum"].as_f64().unwrap() - sum).abs() < 1e-9);
        assert!((p["Average"].as_f64().unwrap() - sum / values.len() as f64).abs() < 1e-9);
        assert_eq!(
            p["Minimum"].as_f64().unwrap(),
            values.iter().copied().fold(f64::INFINITY, f64::min)
        );
        assert_eq!(
            p["Maximum"].as_f64().unwrap(),
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
        assert_eq!(p["Unit"], "Milliseconds");
    }
    // GetMetricData: the same sums, and math on them.
    let out = w
        .ok(
            "GetMetricData",
            json!({"StartTime": secs(T0), "EndTime": secs(T0 + 600_000), "ScanBy": "TimestampAscending",
                   "MetricDataQueries": [
                       {"Id": "m1", "ReturnData": true, "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Latency",
                           "Dimensions": [{"Name": "Svc", "Value": "a"}]}, "Period": 300, "Stat": "Sum"}},
                       {"Id": "e1", "Expression": "m1 * 2 + 1", "Label": "doubled"}]}),
        )
        .await;
    let results = out["MetricDataResults"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let sums: Vec<f64> = points.iter().map(|p| p["Sum"].as_f64().unwrap()).collect();
    let got: Vec<f64> = results[0]["Values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got, sums);
    assert_eq!(results[0]["Label"], "Latency");
    assert_eq!(results[0]["StatusCode"], "Complete");
    let doubled: Vec<f64> = results[1]["Values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        doubled,
        sums.iter().map(|s| s * 2.0 + 1.0).collect::<Vec<_>>()
    );
    assert_eq!(results[1]["Label"], "doubled");
}

#[tokio::test]
async fn get_metric_data_pages_by_max_datapoints() {
    let w = World::new();
    w.at(T0 + 3_600_000);
    let data: Vec<Value> = (0..10)
        .map(
            |m| json!({"MetricName": "Req", "Timestamp": secs(T0 + m * 60_000), "Value": m as f64}),
        )
        .collect();
    w.ok(
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": data}),
    )
    .await;
    let query = |token: Option<Value>| {
        let mut q = json!({"StartTime": secs(T0), "EndTime": secs(T0 + 3_600_000), "MaxDatapoints": 4,
            "MetricDataQueries": [{"Id": "m", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Req"}, "Period": 60, "Stat": "Maximum"}}]});
        if let Some(t) = token {
            q["NextToken"] = t;
        }
        q
    };
    let mut all = Vec::new();
    let mut token = None;
    for _ in 0..5 {
        let out = w.ok("GetMetricData", query(token.clone())).await;
        all.extend(
            out["MetricDataResults"][0]["Values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap()),
        );
        token = out.get("NextToken").cloned();
        if token.is_none() {
            break;
        }
    }
    assert!(token.is_none());
    // Newest first by default.
    assert_eq!(all, (0..10).rev().map(|m| m as f64).collect::<Vec<_>>());
    let forged = w.err("GetMetricData", query(Some(json!("bm9wZQ")))).await;
    assert_eq!(forged.code, "InvalidNextToken");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_models_errors_and_stores_nothing() {
    let w = World::new();
    let good = json!({"MetricName": "Ok", "Value": 1.0});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1.0, "Dimensions": [{"Name": "A", "Value": "1"}, {"Name": "A", "Value": "2"}]}]}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1.0, "StatisticValues": {"SampleCount": 1, "Sum": 1, "Minimum": 1, "Maximum": 1}}]}),
            "InvalidParameterCombination",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad"}]}),
            "MissingParameter",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1.0, "StorageResolution": 5}]}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1.0, "Timestamp": secs(T0 - 15 * 86_400_000)}]}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1.0, "Timestamp": secs(T0 + 3 * 3_600_000)}]}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1e200}]}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Values": [1.0, 2.0], "Counts": [1.0]}]}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "App", "MetricData": (0..1001).map(|i| json!({"MetricName": format!("M{i}"), "Value": 1.0})).collect::<Vec<_>>()}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "AWS/EC2", "MetricData": [good]}),
            "InvalidParameterValue",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1.0, "Unit": "Furlongs"}]}),
            "ValidationError",
        ),
        (
            json!({"Namespace": "App", "MetricData": [good, {"MetricName": "Bad", "Value": 1.0, "Dimensions": (0..31).map(|i| json!({"Name": format!("D{i}"), "Value": "v"})).collect::<Vec<_>>()}]}),
            "ValidationError",
        ),
    ];
    for (input, code) in cases {
        let e = w.err("PutMetricData", input.clone()).await;
        assert_eq!(e.code, code, "{input}: {e}");
    }
    let listed = w.ok("ListMetrics", json!({})).await;
    assert_eq!(listed["Metrics"], json!([]), "nothing stored");

    let stats = |period: i64, stats: Value, end: i64| {
        json!({"Namespace": "App", "MetricName": "Ok", "StartTime": secs(T0 - 86_400_000), "EndTime": secs(end),
               "Period": period, "Statistics": stats})
    };
    for (input, code) in [
        (stats(45, json!(["Average"]), T0), "InvalidParameterValue"),
        (
            stats(60, json!(["Average"]), T0),
            "InvalidParameterCombination",
        ), // 1441 datapoints
        (stats(300, json!(["Median"]), T0), "ValidationError"),
        (
            stats(300, json!(["Average"]), T0 - 86_400_000),
            "InvalidParameterValue",
        ),
    ] {
        let e = w.err("GetMetricStatistics", input.clone()).await;
        assert_eq!(e.code, code, "{input}: {e}");
    }
}

#[tokio::test]
async fn list_metrics_filters_and_pages() {
    let w = World::new();
    let data: Vec<Value> = (0..3)
        .flat_map(|i| {
            [
                json!({"MetricName": "Cpu", "Dimensions": [{"Name": "Svc", "Value": format!("s{i}")}], "Value": 1.0}),
                json!({"MetricName": "Mem", "Dimensions": [{"Name": "Svc", "Value": format!("s{i}")}, {"Name": "Az", "Value": "a"}], "Value": 1.0}),
            ]
        })
        .collect();
    w.ok(
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": data}),
    )
    .await;
    w.cw.ingest(
        &ctx().partition(),
        vec![Datapoint {
            namespace: "AWS/ECS".into(),
            metric_name: "CPUUtilization".into(),
            dimensions: vec![("ClusterName".into(), "default".into())],
            timestamp_ms: T0,
            values: Values::One(3.0),
            unit: Some("Percent".into()),
            storage_resolution: 60,
        }],
    )
    .unwrap();
    // A node with a clock a year ahead: dropped, not stored.
    w.cw.ingest(
        &ctx().partition(),
        vec![Datapoint {
            namespace: "AWS/ECS".into(),
            metric_name: "MemoryUtilization".into(),
            dimensions: vec![],
            timestamp_ms: T0 + 365 * 86_400_000,
            values: Values::One(1.0),
            unit: None,
            storage_resolution: 60,
        }],
    )
    .unwrap();
    let all = w.ok("ListMetrics", json!({})).await;
    assert_eq!(all["Metrics"].as_array().unwrap().len(), 7);
    let mem = w
        .ok(
            "ListMetrics",
            json!({"Namespace": "App", "MetricName": "Mem"}),
        )
        .await;
    assert_eq!(mem["Metrics"].as_array().unwrap().len(), 3);
    // Dimensions come back sorted by name.
    assert_eq!(mem["Metrics"][0]["Dimensions"][0]["Name"], "Az");
    let s1 = w
        .ok(
            "ListMetrics",
            json!({"Dimensions": [{"Name": "Svc", "Value": "s1"}]}),
        )
        .await;
    assert_eq!(s1["Metrics"].as_array().unwrap().len(), 2);
    let az = w
        .ok("ListMetrics", json!({"Dimensions": [{"Name": "Az"}]}))
        .await;
    assert_eq!(az["Metrics"].as_array().unwrap().len(), 3);
    let ecs = w
        .ok(
            "ListMetrics",
            json!({"Namespace": "AWS/ECS", "RecentlyActive": "PT3H"}),
        )
        .await;
    assert_eq!(ecs["Metrics"][0]["MetricName"], "CPUUtilization");
    w.at(T0 + 4 * 3_600_000);
    let ecs = w
        .ok(
            "ListMetrics",
            json!({"Namespace": "AWS/ECS", "RecentlyActive": "PT3H"}),
        )
        .await;
    assert_eq!(ecs["Metrics"], json!([]));
}

async fn put(w: &World, value: f64) {
    let now = w.clock.load(Ordering::SeqCst);
    w.ok(
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": [{"MetricName": "Cpu", "Value": value,
               "Timestamp": secs(now), "StorageResolution": 1}]}),
    )
    .await;
}

#[tokio::test]
async fn an_alarm_goes_insufficient_data_alarm_ok_and_fires_once_per_transition() {
    let w = World::new();
    w.at(T0 + 1_000);
    w.ok(
        "PutMetricAlarm",
        json!({"AlarmName": "high-cpu", "Namespace": "App", "MetricName": "Cpu", "Statistic": "Average",
               "Period": 10, "EvaluationPeriods": 2, "DatapointsToAlarm": 2, "Threshold": 50.0,
               "ComparisonOperator": "GreaterThanThreshold",
               "AlarmActions": ["arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:x:resource/ecs/service/c/s:policyName/out"],
               "OKActions": ["arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:x:resource/ecs/service/c/s:policyName/in"]}),
    )
    .await;
    assert_eq!(w.state("high-cpu").await, "INSUFFICIENT_DATA");
    // A period above the threshold: not judged while it is in progress.
    for s in [2, 5] {
        w.at(T0 + s * 1000);
        put(&w, 80.0).await;
        w.cw.evaluate_alarms().await.unwrap();
    }
    assert_eq!(w.state("high-cpu").await, "INSUFFICIENT_DATA");
    // Once it ends: fewer datapoints than DatapointsToAlarm, all breaching, is ALARM.
    w.at(T0 + 10_500);
    w.cw.evaluate_alarms().await.unwrap();
    assert_eq!(w.state("high-cpu").await, "ALARM");
    for s in [12, 15] {
        w.at(T0 + s * 1000);
        put(&w, 80.0).await;
        w.cw.evaluate_alarms().await.unwrap();
    }
    w.at(T0 + 20_500);
    w.cw.evaluate_alarms().await.unwrap();
    assert_eq!(w.state("high-cpu").await, "ALARM");
    // One period below: 1 of the last 2 breaching is not enough for ALARM any more.
    w.at(T0 + 25_000);
    put(&w, 10.0).await;
    w.at(T0 + 30_000);
    w.cw.evaluate_alarms().await.unwrap();
    assert_eq!(w.state("high-cpu").await, "OK");
    w.cw.evaluate_alarms().await.unwrap();

    let fired = w.fired.0.lock().clone();
    let states: Vec<(&str, &str)> = fired
        .iter()
        .map(|t| (t.old_state.as_str(), t.new_state.as_str()))
        .collect();
    // Staying in ALARM, the Auto Scaling action is fired again once a period has passed since
    // the last time (at 20.5 s, not at 12 s or 15 s), with the newest value.
    assert_eq!(
        states,
        vec![
            ("INSUFFICIENT_DATA", "ALARM"),
            ("ALARM", "ALARM"),
            ("ALARM", "OK")
        ]
    );
    assert_eq!(fired[0].value, Some(80.0));
    assert_eq!(fired[0].threshold, Some(50.0));
    assert!(fired[0].actions[0].ends_with("policyName/out"));
    assert_eq!(fired[1].timestamp_ms, T0 + 20_500);
    assert_eq!(fired[1].value, Some(80.0));
    assert!(fired[1].actions[0].ends_with("policyName/out"));
    assert!(fired[2].actions[0].ends_with("policyName/in"));
    assert_eq!(
        fired[0].alarm_arn,
        "arn:aws:cloudwatch:us-east-1:000000000000:alarm:high-cpu"
    );

    let history = w
        .ok(
            "DescribeAlarmHistory",
            json!({"AlarmName": "high-cpu", "HistoryItemType": "StateUpdate"}),
        )
        .await;
    let summaries: Vec<&str> = history["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["HistorySummary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        vec![
            "Alarm updated from ALARM to OK",
            "Alarm updated from INSUFFICIENT_DATA to ALARM"
        ]
    );
    let data: Value = serde_json::from_str(
        history["AlarmHistoryItems"][1]["HistoryData"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["oldState"]["stateValue"], "INSUFFICIENT_DATA");
    assert_eq!(data["newState"]["stateValue"], "ALARM");
    assert_eq!(
        data["newState"]["stateReasonData"]["recentDatapoints"],
        json!([80.0])
    );
    let all = w
        .ok("DescribeAlarmHistory", json!({"AlarmName": "high-cpu"}))
        .await;
    let kinds: Vec<&str> = all["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["HistoryItemType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "Action").count(), 2);
    assert_eq!(kinds.last(), Some(&"ConfigurationUpdate"));

    // Disabled actions: transitions are stored but not fired.
    w.ok("DisableAlarmActions", json!({"AlarmNames": ["high-cpu"]}))
        .await;
    w.ok(
        "SetAlarmState",
        json!({"AlarmName": "high-cpu", "StateValue": "ALARM", "StateReason": "test"}),
    )
    .await;
    assert_eq!(w.state("high-cpu").await, "ALARM");
    assert_eq!(w.fired.0.lock().len(), 3);
    w.ok("EnableAlarmActions", json!({"AlarmNames": ["high-cpu"]}))
        .await;
    w.ok(
        "SetAlarmState",
        json!({"AlarmName": "high-cpu", "StateValue": "OK", "StateReason": "test"}),
    )
    .await;
    assert_eq!(w.fired.0.lock().len(), 4);
}

#[tokio::test]
async fn a_metric_math_alarm_judges_the_expression() {
    let w = World::new();
    w.at(T0 + 1_000);
    w.ok(
        "PutMetricAlarm",
        json!({"AlarmName": "ratio", "EvaluationPeriods": 1, "Threshold": 0.5,
               "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
               "Metrics": [
                   {"Id": "errors", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Errors"}, "Period": 10, "Stat": "Sum"}},
                   {"Id": "total", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Requests"}, "Period": 10, "Stat": "Sum"}},
                   {"Id": "rate", "Expression": "errors / total", "ReturnData": true}]}),
    )
    .await;
    w.at(T0 + 3_000);
    w.ok(
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": [
            {"MetricName": "Errors", "Value": 3.0, "StorageResolution": 1},
            {"MetricName": "Requests", "Value": 4.0, "StorageResolution": 1}]}),
    )
    .await;
    w.at(T0 + 10_000);
    w.cw.evaluate_alarms().await.unwrap();
    assert_eq!(w.state("ratio").await, "ALARM");
    w.at(T0 + 20_000);
    w.cw.evaluate_alarms().await.unwrap();
    assert_eq!(
        w.state("ratio").await,
        "OK",
        "missing data is not breaching"
    );
}

#[tokio::test]
async fn alarm_definitions_are_checked() {
    let w = World::new();
    let base = json!({"AlarmName": "a", "Namespace": "App", "MetricName": "Cpu", "Statistic": "Average",
                      "Period": 60, "EvaluationPeriods": 3, "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    for (input, code) in [
        (with("Period", json!(45)), "InvalidParameterValue"),
        (with("Period", json!(5)), "InvalidParameterValue"),
        (
            with("EvaluationPeriods", json!(1441)),
            "InvalidParameterValue",
        ),
        (with("DatapointsToAlarm", json!(4)), "InvalidParameterValue"),
        (
            with("TreatMissingData", json!("sometimes")),
            "InvalidParameterValue",
        ),
        (
            with(
                "ComparisonOperator",
                json!("LessThanLowerOrGreaterThanUpperThreshold"),
            ),
            "InvalidParameterValue",
        ),
        (
            with("ExtendedStatistic", json!("p90")),
            "InvalidParameterCombination",
        ),
        (
            with("AlarmActions", json!(["not-an-arn"])),
            "InvalidParameterValue",
        ),
        (
            with("Metrics", json!([{"Id": "m", "Expression": "1"}])),
            "InvalidParameterCombination",
        ),
        (without("Threshold"), "MissingParameter"),
        (without("Statistic"), "MissingParameter"),
        (
            with("ComparisonOperator", json!("Bigger")),
            "ValidationError",
        ),
    ] {
        let e = w.err("PutMetricAlarm", input.clone()).await;
        assert_eq!(e.code, code, "{input}: {e}");
    }
    let none = w.ok("DescribeAlarms", json!({})).await;
    assert_eq!(none["MetricAlarms"], json!([]));

    // Create, update (state kept), tag, page, delete.
    for name in ["a", "b", "c"] {
        w.ok("PutMetricAlarm", with("AlarmName", json!(name))).await;
    }
    w.ok(
        "SetAlarmState",
        json!({"AlarmName": "b", "StateValue": "ALARM", "StateReason": "by hand"}),
    )
    .await;
    w.ok("PutMetricAlarm", with("AlarmName", json!("b"))).await;
    let b = w.ok("DescribeAlarms", json!({"StateValue": "ALARM"})).await;
    assert_eq!(b["MetricAlarms"][0]["AlarmName"], "b");
    let page1 = w.ok("DescribeAlarms", json!({"MaxRecords": 2})).await;
    assert_eq!(page1["MetricAlarms"].as_array().unwrap().len(), 2);
    let page2 = w
        .ok(
            "DescribeAlarms",
            json!({"MaxRecords": 2, "NextToken": page1["NextToken"]}),
        )
        .await;
    assert_eq!(page2["MetricAlarms"][0]["AlarmName"], "c");
    assert!(page2.get("NextToken").is_none());
    let for_metric = w
        .ok(
            "DescribeAlarmsForMetric",
            json!({"Namespace": "App", "MetricName": "Cpu"}),
        )
        .await;
    assert_eq!(for_metric["MetricAlarms"].as_array().unwrap().len(), 3);

    let arn = "arn:aws:cloudwatch:us-east-1:000000000000:alarm:a";
    w.ok(
        "TagResource",
        json!({"ResourceARN": arn, "Tags": [{"Key": "team", "Value": "x"}]}),
    )
    .await;
    let tags = w
        .ok("ListTagsForResource", json!({"ResourceARN": arn}))
        .await;
    assert_eq!(tags["Tags"], json!([{"Key": "team", "Value": "x"}]));
    w.ok(
        "UntagResource",
        json!({"ResourceARN": arn, "TagKeys": ["team"]}),
    )
    .await;
    let tags = w
        .ok("ListTagsForResource", json!({"ResourceARN": arn}))
        .await;
    assert_eq!(tags["Tags"], json!([]));
    let e = w
        .err(
            "ListTagsForResource",
            json!({"ResourceARN": "arn:aws:cloudwatch:us-east-1:000000000000:alarm:zzz"}),
        )
        .await;
    assert_eq!(e.code, "ResourceNotFoundException");

    let e = w
        .err("DeleteAlarms", json!({"AlarmNames": ["a", "nope"]}))
        .await;
    assert_eq!(e.code, "ResourceNotFound");
    assert_eq!(
        w.ok("DescribeAlarms", json!({})).await["MetricAlarms"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    w.ok("DeleteAlarms", json!({"AlarmNames": ["a", "b"]}))
        .await;
    assert_eq!(
        w.ok("DescribeAlarms", json!({})).await["MetricAlarms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn list_metrics_and_alarm_history_page_with_tokens() {
    let w = World::new();
    let data: Vec<Value> = (0..600)
        .map(|i| json!({"MetricName": format!("m{i:03}"), "Value": 1.0}))
        .collect();
    for chunk in data.chunks(300) {
        w.ok(
            "PutMetricData",
            json!({"Namespace": "App", "MetricData": chunk}),
        )
        .await;
    }
    let first = w.ok("ListMetrics", json!({"Namespace": "App"})).await;
    assert_eq!(first["Metrics"].as_array().unwrap().len(), 500);
    let second = w
        .ok(
            "ListMetrics",
            json!({"Namespace": "App", "NextToken": first["NextToken"]}),
        )
        .await;
    assert_eq!(second["Metrics"].as_array().unwrap().len(), 100);
    assert_eq!(second["Metrics"][0]["MetricName"], "m500");
    assert!(second.get("NextToken").is_none());
    let bad = w
        .err(
            "ListMetrics",
            json!({"Namespace": "App", "NextToken": "forged"}),
        )
        .await;
    assert_eq!(bad.code, "InvalidParameterValue");

    for i in 0..5 {
        w.at(T0 + i * 1000);
        w.ok(
            "PutMetricAlarm",
            json!({"AlarmName": "a", "Namespace": "App", "MetricName": "m000", "Statistic": "Sum",
                   "Period": 60, "EvaluationPeriods": 1, "Threshold": i as f64,
                   "ComparisonOperator": "GreaterThanThreshold"}),
        )
        .await;
    }
    let mut summaries = Vec::new();
    let mut token: Option<Value> = None;
    loop {
        let mut input = json!({"AlarmName": "a", "MaxRecords": 2});
        if let Some(t) = &token {
            input["NextToken"] = t.clone();
        }
        let page = w.ok("DescribeAlarmHistory", input).await;
        let items = page["AlarmHistoryItems"].as_array().unwrap();
        assert!(items.len() <= 2);
        summaries.extend(
            items
                .iter()
                .map(|i| i["HistorySummary"].as_str().unwrap().to_string()),
        );
        token = page.get("NextToken").cloned();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(summaries.len(), 5);
    assert_eq!(
        summaries.last().map(String::as_str),
        Some("Alarm \"a\" created")
    );
    assert!(summaries[..4].iter().all(|s| s == "Alarm \"a\" updated"));
}

/// A metric alarm on a metric no test writes, so only SetAlarmState moves it.
fn quiet_alarm(name: &str) -> Value {
    json!({"AlarmName": name, "Namespace": "App", "MetricName": format!("quiet-{name}"),
           "Statistic": "Average", "Period": 60, "EvaluationPeriods": 1, "Threshold": 1.0,
           "ComparisonOperator": "GreaterThanThreshold"})
}

impl World {
    async fn set(&self, alarm: &str, state: &str) {
        self.ok(
            "SetAlarmState",
            json!({"AlarmName": alarm, "StateValue": state, "StateReason": "test"}),
        )
        .await;
    }

    async fn composite(&self, alarm: &str) -> Value {
        let out = self
            .ok(
                "DescribeAlarms",
                json!({"AlarmNames": [alarm], "AlarmTypes": ["CompositeAlarm"]}),
            )
            .await;
        out["CompositeAlarms"][0].clone()
    }

    async fn everything(&self) -> Value {
        self.ok(
            "DescribeAlarms",
            json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"]}),
        )
        .await
    }

    async fn names(&self, input: Value) -> (Vec<String>, Vec<String>) {
        let out = self.ok("DescribeAlarms", input).await;
        let names = |key: &str| -> Vec<String> {
            out[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["AlarmName"].as_str().unwrap().to_string())
                .collect()
        };
        (names("MetricAlarms"), names("CompositeAlarms"))
    }
}

#[tokio::test]
async fn a_composite_follows_its_children_and_fires_its_actions() {
    let w = World::new();
    w.at(T0);
    w.ok("PutMetricAlarm", quiet_alarm("a")).await;
    w.ok("PutMetricAlarm", quiet_alarm("b")).await;
    let action = "arn:aws:sns:us-east-1:000000000000:pager";
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "both", "AlarmRule": "ALARM(a) AND NOT ALARM(\"b\")",
               "AlarmActions": [action], "OKActions": [action],
               "AlarmDescription": "a without b", "Tags": [{"Key": "team", "Value": "ops"}]}),
    )
    .await;
    // Judged at once: no child is in ALARM, so the rule is false.
    let c = w.composite("both").await;
    assert_eq!(c["StateValue"], "OK");
    assert_eq!(c["AlarmRule"], "ALARM(a) AND NOT ALARM(\"b\")");
    assert_eq!(c["AlarmDescription"], "a without b");
    assert_eq!(c["ActionsEnabled"], true);
    assert_eq!(
        c["AlarmArn"],
        "arn:aws:cloudwatch:us-east-1:000000000000:alarm:both"
    );

    w.at(T0 + 1_000);
    w.set("a", "ALARM").await;
    let c = w.composite("both").await;
    assert_eq!(c["StateValue"], "ALARM");
    assert!(
        c["StateReason"].as_str().unwrap().starts_with(
            "arn:aws:cloudwatch:us-east-1:000000000000:alarm:a transitioned to ALARM at "
        ),
        "{c}"
    );
    let data: Value = serde_json::from_str(c["StateReasonData"].as_str().unwrap()).unwrap();
    assert_eq!(
        data["triggeringAlarms"][0]["arn"],
        "arn:aws:cloudwatch:us-east-1:000000000000:alarm:a"
    );
    assert_eq!(data["triggeringAlarms"][0]["state"]["value"], "ALARM");

    // b in ALARM too: NOT ALARM(b) fails. (A later millisecond: history items of one
    // millisecond have no order.)
    w.at(T0 + 2_000);
    w.set("b", "ALARM").await;
    assert_eq!(w.composite("both").await["StateValue"], "OK");

    let fired: Vec<(String, String, Vec<String>)> = w
        .fired
        .0
        .lock()
        .iter()
        .filter(|t| t.alarm_name == "both")
        .map(|t| (t.old_state.clone(), t.new_state.clone(), t.actions.clone()))
        .collect();
    assert_eq!(
        fired,
        vec![
            (
                "INSUFFICIENT_DATA".into(),
                "OK".into(),
                vec![action.to_string()]
            ),
            ("OK".into(), "ALARM".into(), vec![action.to_string()]),
            ("ALARM".into(), "OK".into(), vec![action.to_string()]),
        ]
    );

    // History: composite items only when asked for.
    let history = w
        .ok(
            "DescribeAlarmHistory",
            json!({"AlarmName": "both", "HistoryItemType": "StateUpdate"}),
        )
        .await;
    assert_eq!(history["AlarmHistoryItems"].as_array().unwrap().len(), 0);
    let history = w
        .ok(
            "DescribeAlarmHistory",
            json!({"AlarmName": "both", "HistoryItemType": "StateUpdate",
                   "AlarmTypes": ["CompositeAlarm"], "ScanBy": "TimestampAscending"}),
        )
        .await;
    let summaries: Vec<&str> = history["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["AlarmType"], "CompositeAlarm");
            i["HistorySummary"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        summaries,
        vec![
            "Alarm updated from INSUFFICIENT_DATA to OK",
            "Alarm updated from OK to ALARM",
            "Alarm updated from ALARM to OK"
        ]
    );

    // Tags by the composite's ARN.
    let arn = "arn:aws:cloudwatch:us-east-1:000000000000:alarm:both";
    w.ok(
        "TagResource",
        json!({"ResourceARN": arn, "Tags": [{"Key": "env", "Value": "prod"}]}),
    )
    .await;
    let tags = w
        .ok("ListTagsForResource", json!({"ResourceARN": arn}))
        .await;
    assert_eq!(
        tags["Tags"],
        json!([{"Key": "team", "Value": "ops"}, {"Key": "env", "Value": "prod"}])
    );

    // Disabled actions: transitions are recorded, nothing fires.
    w.ok("DisableAlarmActions", json!({"AlarmNames": ["both"]}))
        .await;
    assert_eq!(w.composite("both").await["ActionsEnabled"], false);
    let before = w.fired.0.lock().len();
    w.set("b", "OK").await;
    assert_eq!(w.composite("both").await["StateValue"], "ALARM");
    assert_eq!(
        w.fired
            .0
            .lock()
            .iter()
            .skip(before)
            .filter(|t| t.alarm_name == "both")
            .count(),
        0
    );
    w.ok("EnableAlarmActions", json!({"AlarmNames": ["both"]}))
        .await;
    assert_eq!(w.composite("both").await["ActionsEnabled"], true);

    // SetAlarmState on the composite holds until a child moves.
    w.set("both", "OK").await;
    assert_eq!(w.composite("both").await["StateValue"], "OK");
    w.set("b", "INSUFFICIENT_DATA").await;
    assert_eq!(w.composite("both").await["StateValue"], "ALARM");
}

#[tokio::test]
async fn a_metric_alarm_moved_by_its_data_moves_its_parent() {
    let w = World::new();
    w.at(T0 + 1_000);
    w.ok(
        "PutMetricAlarm",
        json!({"AlarmName": "high-cpu", "Namespace": "App", "MetricName": "Cpu", "Statistic": "Average",
               "Period": 10, "EvaluationPeriods": 1, "Threshold": 50.0,
               "ComparisonOperator": "GreaterThanThreshold"}),
    )
    .await;
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "parent", "AlarmRule": "ALARM(\"arn:aws:cloudwatch:us-east-1:000000000000:alarm:high-cpu\")"}),
    )
    .await;
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "grandparent", "AlarmRule": "ALARM(parent) OR FALSE"}),
    )
    .await;
    assert_eq!(w.composite("parent").await["StateValue"], "OK");
    w.at(T0 + 5_000);
    put(&w, 80.0).await;
    w.at(T0 + 10_500);
    w.cw.evaluate_alarms().await.unwrap();
    assert_eq!(w.state("high-cpu").await, "ALARM");
    assert_eq!(w.composite("parent").await["StateValue"], "ALARM");
    assert_eq!(w.composite("grandparent").await["StateValue"], "ALARM");
    assert!(
        w.composite("grandparent").await["StateReason"]
            .as_str()
            .unwrap()
            .contains(":alarm:parent transitioned to ALARM")
    );
}

#[tokio::test]
async fn bad_composites_are_refused_and_change_nothing() {
    let w = World::new();
    w.at(T0);
    w.ok("PutMetricAlarm", quiet_alarm("a")).await;
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "c1", "AlarmRule": "ALARM(a)"}),
    )
    .await;
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "c2", "AlarmRule": "OK(c1)"}),
    )
    .await;
    let history_before = w
        .ok(
            "DescribeAlarmHistory",
            json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"]}),
        )
        .await;
    let before = w.everything().await;
    let cases = [
        (
            json!({"AlarmName": "x", "AlarmRule": "ALARM(a) AND"}),
            "Error in AlarmRule",
        ),
        (
            json!({"AlarmName": "x", "AlarmRule": ")"}),
            "Unsupported token ')' at char 0",
        ),
        (
            json!({"AlarmName": "x", "AlarmRule": "ALARM(nope) OR ALARM(a)"}),
            "alarms [nope] in the alarm rule do not exist",
        ),
        (
            json!({"AlarmName": "x", "AlarmRule": "ALARM(arn:aws:cloudwatch:eu-west-1:000000000000:alarm:a)"}),
            "do not exist",
        ),
        (
            json!({"AlarmName": "c1", "AlarmRule": "ALARM(c2)"}),
            "cycle: c1 -> c2 -> c1",
        ),
        (
            json!({"AlarmName": "c1", "AlarmRule": "ALARM(c1)"}),
            "names the alarm itself",
        ),
        (
            json!({"AlarmName": "a", "AlarmRule": "TRUE"}),
            "is a metric alarm",
        ),
        (
            json!({"AlarmName": "x", "AlarmRule": "TRUE", "ActionsSuppressor": "a"}),
            "are required when ActionsSuppressor",
        ),
        (
            json!({"AlarmName": "x", "AlarmRule": "TRUE", "ActionsSuppressorWaitPeriod": 60}),
            "only be specified with ActionsSuppressor",
        ),
        (
            json!({"AlarmName": "x", "AlarmRule": "TRUE", "ActionsSuppressor": "gone",
                "ActionsSuppressorWaitPeriod": 60, "ActionsSuppressorExtensionPeriod": 60}),
            "does not exist",
        ),
        (
            json!({"AlarmName": "x", "AlarmRule": "TRUE", "AlarmActions": ["not an arn"]}),
            "Invalid arn",
        ),
    ];
    for (input, message) in cases {
        let e = w.err("PutCompositeAlarm", input.clone()).await;
        assert!(e.to_string().contains(message), "{input}: {e}");
        let want = if message.contains("Invalid arn") {
            "InvalidParameterValue"
        } else {
            "ValidationError"
        };
        assert_eq!(e.code, want, "{input}: {e}");
    }
    // The rule's length is the model's bound.
    let long = format!("ALARM(a) OR {}", vec!["TRUE"; 2100].join(" OR "));
    assert!(long.len() > 10_240);
    w.err(
        "PutCompositeAlarm",
        json!({"AlarmName": "x", "AlarmRule": long}),
    )
    .await;
    let e = w
        .err("PutMetricAlarm", {
            let mut a = quiet_alarm("c1");
            a["AlarmName"] = json!("c1");
            a
        })
        .await;
    assert!(e.to_string().contains("composite alarm"), "{e}");
    assert_eq!(w.everything().await, before);
    let history_after = w
        .ok(
            "DescribeAlarmHistory",
            json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"]}),
        )
        .await;
    assert_eq!(history_after, history_before);

    // A child its parents still name cannot go; nor two composites at once.
    let e = w.err("DeleteAlarms", json!({"AlarmNames": ["a"]})).await;
    assert!(e.to_string().contains("composite alarm c1"), "{e}");
    let e = w
        .err("DeleteAlarms", json!({"AlarmNames": ["c1", "c2"]}))
        .await;
    assert!(e.to_string().contains("at most one composite"), "{e}");
    assert_eq!(w.everything().await, before);
    w.ok("DeleteAlarms", json!({"AlarmNames": ["c2"]})).await;
    w.ok("DeleteAlarms", json!({"AlarmNames": ["c1", "a"]}))
        .await;
    let (metric, composite) = w
        .names(json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"]}))
        .await;
    assert!(metric.is_empty() && composite.is_empty());
}

#[tokio::test]
async fn describe_alarms_filters_by_type_children_and_parents() {
    let w = World::new();
    w.at(T0);
    for n in ["a", "b", "z"] {
        w.ok("PutMetricAlarm", quiet_alarm(n)).await;
    }
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "c1", "AlarmRule": "ALARM(a) OR ALARM(b)"}),
    )
    .await;
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "c2", "AlarmRule": "ALARM(c1) AND OK(a)",
               "ActionsSuppressor": "z", "ActionsSuppressorWaitPeriod": 30,
               "ActionsSuppressorExtensionPeriod": 60}),
    )
    .await;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(w.names(json!({})).await, (s(&["a", "b", "z"]), s(&[])));
    assert_eq!(
        w.names(json!({"AlarmTypes": ["CompositeAlarm"]})).await,
        (s(&[]), s(&["c1", "c2"]))
    );
    assert_eq!(
        w.names(json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"], "AlarmNamePrefix": "c"}))
            .await,
        (s(&[]), s(&["c1", "c2"]))
    );
    assert_eq!(
        w.names(json!({"ChildrenOfAlarmName": "c2"})).await,
        (s(&["a"]), s(&["c1"]))
    );
    assert_eq!(
        w.names(json!({"ParentsOfAlarmName": "a"})).await,
        (s(&[]), s(&["c1", "c2"]))
    );
    let children = w
        .ok("DescribeAlarms", json!({"ChildrenOfAlarmName": "c2"}))
        .await;
    let child = children["MetricAlarms"][0].as_object().unwrap();
    let mut keys: Vec<&str> = child.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "AlarmArn",
            "AlarmName",
            "StateUpdatedTimestamp",
            "StateValue"
        ]
    );
    let e = w
        .err(
            "DescribeAlarms",
            json!({"ChildrenOfAlarmName": "c2", "StateValue": "OK"}),
        )
        .await;
    assert!(e.to_string().contains("cannot specify any other"), "{e}");
    // Paging spans both kinds in name order.
    let first = w
        .ok(
            "DescribeAlarms",
            json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"], "MaxRecords": 3}),
        )
        .await;
    assert_eq!(first["MetricAlarms"].as_array().unwrap().len(), 2);
    assert_eq!(first["CompositeAlarms"].as_array().unwrap().len(), 1);
    let second = w
        .ok(
            "DescribeAlarms",
            json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"], "MaxRecords": 3,
                   "NextToken": first["NextToken"]}),
        )
        .await;
    assert_eq!(w.names(json!({"AlarmTypes": ["CompositeAlarm", "MetricAlarm"], "MaxRecords": 3, "NextToken": first["NextToken"]})).await, (s(&["z"]), s(&["c2"])));
    assert!(second.get("NextToken").is_none());

    // The suppressor is echoed, and holds back c2's actions while it is in ALARM.
    let c2 = w.composite("c2").await;
    assert_eq!(c2["ActionsSuppressor"], "z");
    assert_eq!(c2["ActionsSuppressorWaitPeriod"], 30);
    assert_eq!(c2["ActionsSuppressorExtensionPeriod"], 60);
    w.set("z", "ALARM").await;
    w.set("a", "OK").await;
    w.set("b", "ALARM").await;
    let c2 = w.composite("c2").await;
    assert_eq!(c2["StateValue"], "ALARM");
    assert_eq!(c2["ActionsSuppressedBy"], "Alarm");
}

/// An alarm no data moves: with `TreatMissingData: ignore` the evaluator keeps whatever state
/// SetAlarmState gave it.
fn steady_alarm(name: &str) -> Value {
    let mut alarm = quiet_alarm(name);
    alarm["TreatMissingData"] = json!("ignore");
    alarm
}

impl World {
    async fn tick(&self, ms: i64) {
        self.at(ms);
        self.cw.evaluate_alarms().await.expect("evaluation");
    }

    /// The transitions fired for `alarm` so far: (new state, actions).
    fn fired_for(&self, alarm: &str) -> Vec<(String, Vec<String>)> {
        self.fired
            .0
            .lock()
            .iter()
            .filter(|t| t.alarm_name == alarm)
            .map(|t| (t.new_state.clone(), t.actions.clone()))
            .collect()
    }
}

#[tokio::test]
async fn suppressed_actions_wait_for_their_periods_then_fire_or_are_dropped() {
    let w = World::new();
    w.at(T0);
    w.ok("PutMetricAlarm", steady_alarm("a")).await;
    w.ok("PutMetricAlarm", steady_alarm("maintenance")).await;
    let page = "arn:aws:sns:us-east-1:000000000000:page";
    let calm = "arn:aws:sns:us-east-1:000000000000:calm";
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "c", "AlarmRule": "ALARM(a)", "AlarmActions": [page],
               "OKActions": [calm], "ActionsSuppressor": "maintenance",
               "ActionsSuppressorWaitPeriod": 60, "ActionsSuppressorExtensionPeriod": 120}),
    )
    .await;
    w.tick(T0 + 500).await;
    assert_eq!(
        w.fired_for("c"),
        vec![("OK".to_string(), vec![calm.to_string()])]
    );

    // Into ALARM with the suppressor quiet: the actions wait up to 60 s for it.
    w.at(T0 + 1_000);
    w.set("a", "ALARM").await;
    let c = w.composite("c").await;
    assert_eq!(c["StateValue"], "ALARM");
    assert_eq!(c["ActionsSuppressedBy"], "WaitPeriod");
    assert!(
        c["ActionsSuppressedReason"]
            .as_str()
            .unwrap()
            .contains("maintenance"),
        "{c}"
    );
    w.tick(T0 + 60_000).await;
    assert_eq!(w.fired_for("c").len(), 1, "held during the wait period");
    // It ends: the actions run once, and nothing is suppressed any more.
    w.tick(T0 + 61_000).await;
    assert_eq!(
        w.fired_for("c")[1],
        ("ALARM".to_string(), vec![page.to_string()])
    );
    let c = w.composite("c").await;
    assert!(c.get("ActionsSuppressedBy").is_none(), "{c}");
    assert!(c.get("ActionsSuppressedReason").is_none(), "{c}");
    w.tick(T0 + 200_000).await;
    assert_eq!(w.fired_for("c").len(), 2, "fired once");

    // Out and back in; the suppressor goes into ALARM during the wait: held as long as it
    // stays there, then for the extension period.
    w.at(T0 + 300_000);
    w.set("a", "OK").await;
    assert_eq!(w.fired_for("c").len(), 3, "OK actions run at once");
    w.at(T0 + 301_000);
    w.set("a", "ALARM").await;
    w.at(T0 + 310_000);
    w.set("maintenance", "ALARM").await;
    w.tick(T0 + 311_000).await;
    assert_eq!(w.composite("c").await["ActionsSuppressedBy"], "Alarm");
    w.tick(T0 + 1_000_000).await;
    assert_eq!(w.composite("c").await["ActionsSuppressedBy"], "Alarm");
    assert_eq!(w.fired_for("c").len(), 3);
    w.at(T0 + 1_100_000);
    w.set("maintenance", "OK").await;
    w.tick(T0 + 1_101_000).await;
    assert_eq!(
        w.composite("c").await["ActionsSuppressedBy"],
        "ExtensionPeriod"
    );
    w.tick(T0 + 1_220_000).await;
    assert_eq!(w.fired_for("c").len(), 3, "held for the extension period");
    w.tick(T0 + 1_221_000).await;
    assert_eq!(
        w.fired_for("c")[3],
        ("ALARM".to_string(), vec![page.to_string()])
    );
    let history = w
        .ok(
            "DescribeAlarmHistory",
            json!({"AlarmName": "c", "HistoryItemType": "Action",
                   "AlarmTypes": ["CompositeAlarm"]}),
        )
        .await;
    let actions: Vec<&str> = history["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["HistorySummary"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            format!("Successfully executed action {page}"),
            format!("Successfully executed action {calm}"),
            format!("Successfully executed action {page}"),
            format!("Successfully executed action {calm}"),
        ]
    );

    // A composite that leaves ALARM during the wait drops the held actions.
    w.at(T0 + 1_300_000);
    w.set("a", "OK").await;
    w.at(T0 + 1_301_000);
    w.set("a", "ALARM").await;
    assert_eq!(w.composite("c").await["ActionsSuppressedBy"], "WaitPeriod");
    w.at(T0 + 1_302_000);
    w.set("a", "OK").await;
    assert!(w.composite("c").await.get("ActionsSuppressedBy").is_none());
    w.tick(T0 + 1_500_000).await;
    let states: Vec<String> = w.fired_for("c").into_iter().map(|(s, _)| s).collect();
    assert_eq!(states, vec!["OK", "ALARM", "OK", "ALARM", "OK", "OK"]);
}

#[tokio::test]
async fn a_restart_brings_a_parent_the_crash_left_behind_up_to_date() {
    let w = World::new();
    w.at(T0);
    w.ok("PutMetricAlarm", steady_alarm("a")).await;
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "c", "AlarmRule": "ALARM(a)"}),
    )
    .await;
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "top", "AlarmRule": "ALARM(c)"}),
    )
    .await;
    w.tick(T0 + 1_000).await;
    assert_eq!(w.composite("c").await["StateValue"], "OK");
    // The crash window: the child's transition is committed, its parents never judged.
    let partition = "000000000000/us-east-1";
    let record = w
        .store
        .get("cloudwatch.alarm", partition, "a")
        .await
        .unwrap()
        .expect("alarm record");
    let mut value = record.value;
    value["alarm"]["StateValue"] = json!("ALARM");
    value["alarm"]["StateTransitionedTimestamp"] = json!(secs(T0 + 1_500));
    value["alarm"]["StateUpdatedTimestamp"] = json!(secs(T0 + 1_500));
    w.store
        .commit(vec![Op::put(
            "cloudwatch.alarm",
            partition,
            "a",
            value,
            Expect::Version(record.version),
        )])
        .await
        .unwrap();
    assert_eq!(w.state("a").await, "ALARM");
    assert_eq!(
        w.composite("c").await["StateValue"],
        "OK",
        "stale until caught up"
    );

    let restarted = World::on(w.store.clone(), T0 + 2_000);
    restarted.tick(T0 + 2_000).await;
    assert_eq!(restarted.composite("c").await["StateValue"], "ALARM");
    assert_eq!(restarted.composite("top").await["StateValue"], "ALARM");
    assert_eq!(restarted.fired_for("c").len(), 1);
    // Once: the next tick finds nothing to catch up.
    restarted.tick(T0 + 3_000).await;
    assert_eq!(restarted.fired_for("c").len(), 1);

    // A state SetAlarmState gave a composite after its children last moved survives a restart.
    restarted.at(T0 + 4_000);
    restarted.set("c", "OK").await;
    let again = World::on(w.store.clone(), T0 + 5_000);
    again.tick(T0 + 5_000).await;
    assert_eq!(again.composite("c").await["StateValue"], "OK");
    assert!(again.fired_for("c").is_empty());
}

#[tokio::test]
async fn history_of_one_millisecond_lists_in_write_order() {
    let w = World::new();
    w.at(T0);
    w.ok("PutMetricAlarm", steady_alarm("a")).await;
    let reasons: Vec<String> = (0..12).map(|i| format!("step {i}")).collect();
    for (i, reason) in reasons.iter().enumerate() {
        let state = ["ALARM", "OK"][i % 2];
        w.ok(
            "SetAlarmState",
            json!({"AlarmName": "a", "StateValue": state, "StateReason": reason}),
        )
        .await;
    }
    let history = w
        .ok(
            "DescribeAlarmHistory",
            json!({"AlarmName": "a", "HistoryItemType": "StateUpdate"}),
        )
        .await;
    let listed: Vec<String> = history["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let data: Value = serde_json::from_str(i["HistoryData"].as_str().unwrap()).unwrap();
            data["newState"]["stateReason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let newest_first: Vec<String> = reasons.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
}

#[tokio::test]
async fn evaluation_interval_is_refused_beside_a_metric() {
    let w = World::new();
    let mut alarm = quiet_alarm("a");
    alarm["EvaluationInterval"] = json!(60);
    let e = w.err("PutMetricAlarm", alarm).await;
    assert_eq!(e.code, "InvalidParameterCombination", "{e}");
    let out = w.ok("DescribeAlarms", json!({})).await;
    assert_eq!(out["MetricAlarms"], json!([]));
}

#[tokio::test]
async fn one_alarm_is_named_by_at_most_150_composites() {
    let w = World::new();
    w.at(T0);
    w.ok("PutMetricAlarm", steady_alarm("a")).await;
    for i in 0..150 {
        w.ok(
            "PutCompositeAlarm",
            json!({"AlarmName": format!("c{i:03}"), "AlarmRule": "ALARM(a)"}),
        )
        .await;
    }
    // Putting one of them again is no new parent.
    w.ok(
        "PutCompositeAlarm",
        json!({"AlarmName": "c000", "AlarmRule": "OK(a)"}),
    )
    .await;
    let e = w
        .err(
            "PutCompositeAlarm",
            json!({"AlarmName": "one-too-many", "AlarmRule": "ALARM(a)"}),
        )
        .await;
    assert_eq!(e.code, "LimitExceeded", "{e}");
    let (_, composites) = w
        .names(json!({"ParentsOfAlarmName": "a", "MaxRecords": 100}))
        .await;
    assert!(!composites.contains(&"one-too-many".to_string()));
    let absent = w
        .ok(
            "DescribeAlarms",
            json!({"AlarmNames": ["one-too-many"], "AlarmTypes": ["CompositeAlarm"]}),
        )
        .await;
    assert_eq!(absent["CompositeAlarms"], json!([]));
}
