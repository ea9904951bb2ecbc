//! CloudWatch end to end through the real `aws cloudwatch` CLI (botocore speaks awsJson 1.0 with
//! `x-amzn-query-mode` to it): metrics in and statistics out, checked against a direct
//! computation from the raw samples; a high-resolution alarm through its states; bad input.

use crate::harness::{Berth, Opts};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) fn cloudwatch(berth: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["cloudwatch"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
    if out.stdout.trim().is_empty() {
        Value::Null
    } else {
        out.json()
    }
}

#[track_caller]
pub(crate) fn cloudwatch_fails(berth: &Berth, args: &[&str], code: &str) {
    let mut all = vec!["cloudwatch"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    // Only the operation in messages: some arguments are a thousand metrics long.
    let operation = args.first().copied().unwrap_or_default();
    assert_ne!(out.code, 0, "{operation} succeeded: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("({code})")),
        "{operation}: expected {code}, got: {}",
        out.stderr
    );
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-11-26T09:50:00Z`, what the CLI takes for a timestamp.
fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn iso_dates_are_right() {
    assert_eq!(iso(0), "1970-01-01T00:00:00Z");
    assert_eq!(iso(1_764_150_600_000), "2025-11-26T09:50:00Z");
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn statistics_and_metric_data_match_the_raw_samples() {
    let berth = Berth::start(Opts::default());
    // Thirty minutes ago, on a 5-minute boundary: six whole periods of raw samples.
    let start = (now_ms() - 40 * 60_000).div_euclid(300_000) * 300_000;
    let mut raw: Vec<(i64, f64)> = Vec::new();
    let mut data = Vec::new();
    for minute in 0..30i64 {
        for k in 0..2i64 {
            let ts = start + minute * 60_000 + k * 20_000;
            let v = ((minute * 13 + k * 7) % 17) as f64 * 1.5;
            raw.push((ts, v));
            data.push(json!({"MetricName": "Latency", "Timestamp": iso(ts), "Value": v,
                             "Unit": "Milliseconds", "Dimensions": [{"Name": "Service", "Value": "web"}]}));
        }
    }
    cloudwatch(
        &berth,
        &[
            "put-metric-data",
            "--namespace",
            "Berth/Test",
            "--metric-data",
            &Value::Array(data).to_string(),
        ],
    );
    let end = start + 30 * 60_000;
    let stats = cloudwatch(
        &berth,
        &[
            "get-metric-statistics",
            "--namespace",
            "Berth/Test",
            "--metric-name",
            "Latency",
            "--dimensions",
            "Name=Service,Value=web",
            "--start-time",
            &iso(start),
            "--end-time",
            &iso(end),
            "--period",
            "300",
            "--statistics",
            "SampleCount",
            "Average",
            "Sum",
            "Minimum",
            "Maximum",
        ],
    );
    assert_eq!(stats["Label"], "Latency");
    let mut points = stats["Datapoints"].as_array().expect("datapoints").clone();
    points.sort_by_key(|p| p["Timestamp"].as_str().unwrap_or_default().to_string());
    assert_eq!(points.len(), 6, "{stats}");
    let mut sums = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let from = start + i as i64 * 300_000;
        let values: Vec<f64> = raw
            .iter()
            .filter(|(t, _)| *t >= from && *t < from + 300_000)
            .map(|(_, v)| *v)
            .collect();
        let sum: f64 = values.iter().sum();
        sums.push(sum);
        assert_eq!(p["SampleCount"].as_f64(), Some(values.len() as f64));
        assert!((p["Sum"].as_f64().unwrap() - sum).abs() < 1e-9, "{p}");
        assert!((p["Average"].as_f64().unwrap() - sum / values.len() as f64).abs() < 1e-9);
        assert_eq!(
            p["Minimum"].as_f64(),
            values.iter().copied().reduce(f64::min)
        );
        assert_eq!(
            p["Maximum"].as_f64(),
            values.iter().copied().reduce(f64::max)
        );
        assert_eq!(p["Unit"], "Milliseconds");
    }
    let queries = json!([
        {"Id": "sum", "MetricStat": {"Metric": {"Namespace": "Berth/Test", "MetricName": "Latency",
            "Dimensions": [{"Name": "Service", "Value": "web"}]}, "Period": 300, "Stat": "Sum"}},
        {"Id": "count", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "Berth/Test", "MetricName": "Latency",
            "Dimensions": [{"Name": "Service", "Value": "web"}]}, "Period": 300, "Stat": "SampleCount"}},
        {"Id": "mean", "Expression": "sum / count", "Label": "mean latency"}
    ]);
    let data = cloudwatch(
        &berth,
        &[
            "get-metric-data",
            "--metric-data-queries",
            &queries.to_string(),
            "--start-time",
            &iso(start),
            "--end-time",
            &iso(end),
            "--scan-by",
            "TimestampAscending",
        ],
    );
    let results = data["MetricDataResults"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{data}");
    assert_eq!(results[0]["Id"], "sum");
    assert_eq!(numbers(&results[0]["Values"]), sums);
    assert_eq!(results[1]["Label"], "mean latency");
    let means = numbers(&results[1]["Values"]);
    for (mean, point) in means.iter().zip(&points) {
        assert!((mean - point["Average"].as_f64().unwrap()).abs() < 1e-9);
    }
    let listed = cloudwatch(&berth, &["list-metrics", "--namespace", "Berth/Test"]);
    assert_eq!(
        listed["Metrics"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["Metrics"][0]["Dimensions"][0]["Value"], "web");
}

/// The summaries of a DescribeAlarmHistory answer, in its order.
pub(crate) fn history_summaries(history: &Value) -> Vec<&str> {
    history["AlarmHistoryItems"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["HistorySummary"].as_str().unwrap_or_default())
        .collect()
}

pub(crate) fn alarm_state(berth: &Berth, name: &str) -> String {
    let out = cloudwatch(berth, &["describe-alarms", "--alarm-names", name]);
    out["MetricAlarms"][0]["StateValue"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Puts `value` every two seconds until the alarm reaches `state` (bounded).
pub(crate) fn drive_until(berth: &Berth, value: &str, name: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        cloudwatch(
            berth,
            &[
                "put-metric-data",
                "--namespace",
                "Berth/Alarm",
                "--metric-name",
                "Load",
                "--value",
                value,
                "--storage-resolution",
                "1",
            ],
        );
        if alarm_state(berth, name) == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {state} with {value}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn a_high_resolution_alarm_goes_insufficient_data_alarm_ok() {
    let berth = Berth::start(Opts::default());
    cloudwatch(
        &berth,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "load-high",
            "--namespace",
            "Berth/Alarm",
            "--metric-name",
            "Load",
            "--statistic",
            "Maximum",
            "--period",
            "10",
            "--evaluation-periods",
            "1",
            "--threshold",
            "50",
            "--comparison-operator",
            "GreaterThanThreshold",
            "--treat-missing-data",
            "ignore",
        ],
    );
    assert_eq!(alarm_state(&berth, "load-high"), "INSUFFICIENT_DATA");
    drive_until(&berth, "80", "load-high", "ALARM");
    drive_until(&berth, "10", "load-high", "OK");
    let history = cloudwatch(
        &berth,
        &[
            "describe-alarm-history",
            "--alarm-name",
            "load-high",
            "--history-item-type",
            "StateUpdate",
            "--scan-by",
            "TimestampAscending",
        ],
    );
    let summaries = history_summaries(&history);
    assert_eq!(
        summaries,
        vec![
            "Alarm updated from INSUFFICIENT_DATA to ALARM",
            "Alarm updated from ALARM to OK"
        ]
    );
    let alarm = cloudwatch(&berth, &["describe-alarms", "--alarm-names", "load-high"]);
    let reason = alarm["MetricAlarms"][0]["StateReason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("was not greater than the threshold (50.0)"),
        "{reason}"
    );
}

#[test]
fn bad_input_gets_the_models_errors_and_stores_nothing() {
    let berth = Berth::start(Opts::default());
    let put = |data: Value| {
        vec![
            "put-metric-data".to_string(),
            "--namespace".into(),
            "Berth/Bad".into(),
            "--metric-data".into(),
            data.to_string(),
        ]
    };
    let cases = [
        (
            put(
                json!([{"MetricName": "ok", "Value": 1}, {"MetricName": "x", "Value": 1,
                "Dimensions": [{"Name": "A", "Value": "1"}, {"Name": "A", "Value": "2"}]}]),
            ),
            "InvalidParameterValue",
        ),
        (
            put(
                json!([{"MetricName": "ok", "Value": 1}, {"MetricName": "x", "Value": 1, "StorageResolution": 30}]),
            ),
            "InvalidParameterValue",
        ),
        (
            put(
                json!([{"MetricName": "ok", "Value": 1}, {"MetricName": "x", "Value": 1,
                "StatisticValues": {"SampleCount": 1, "Sum": 1, "Minimum": 1, "Maximum": 1}}]),
            ),
            "InvalidParameterCombination",
        ),
        (
            put(Value::Array(
                (0..1001)
                    .map(|i| json!({"MetricName": format!("m{i}"), "Value": 1}))
                    .collect(),
            )),
            "InvalidParameterValue",
        ),
    ];
    for (args, code) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cloudwatch_fails(&berth, &args, code);
    }
    let listed = cloudwatch(&berth, &["list-metrics", "--namespace", "Berth/Bad"]);
    assert_eq!(listed["Metrics"], json!([]), "nothing stored: {listed}");
    let now = now_ms();
    let stats = |period: &str, statistic: &str| {
        vec![
            "get-metric-statistics".to_string(),
            "--namespace".into(),
            "Berth/Bad".into(),
            "--metric-name".into(),
            "ok".into(),
            "--start-time".into(),
            iso(now - 3_600_000),
            "--end-time".into(),
            iso(now),
            "--period".into(),
            period.into(),
            "--statistics".into(),
            statistic.into(),
        ]
    };
    for (args, code) in [
        (stats("45", "Average"), "InvalidParameterValue"),
        (stats("1", "Average"), "InvalidParameterCombination"),
        (stats("60", "Median"), "ValidationError"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cloudwatch_fails(&berth, &args, code);
    }
    cloudwatch_fails(
        &berth,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "bad",
            "--namespace",
            "Berth/Bad",
            "--metric-name",
            "ok",
            "--statistic",
            "Average",
            "--period",
            "45",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanThreshold",
        ],
        "InvalidParameterValue",
    );
    let alarms = cloudwatch(&berth, &["describe-alarms"]);
    assert_eq!(alarms["MetricAlarms"], json!([]));
}

#[test]
fn gzipped_batches_are_accepted_and_acknowledged_data_survives_kill_9() {
    let berth = Berth::start(Opts::default());
    // Over 10 KiB, so botocore gzips the body (the model's `requestCompression`).
    let data: Vec<Value> = (0..300)
        .map(|i| {
            json!({"MetricName": "Depth", "Value": i,
                        "Dimensions": [{"Name": "Queue", "Value": format!("queue-{i:03}")}]})
        })
        .collect();
    cloudwatch(
        &berth,
        &[
            "put-metric-data",
            "--namespace",
            "Berth/Durable",
            "--metric-data",
            &Value::Array(data).to_string(),
        ],
    );
    let listed = cloudwatch(&berth, &["list-metrics", "--namespace", "Berth/Durable"]);
    assert_eq!(listed["Metrics"].as_array().map(Vec::len), Some(300));
    berth.kill();
    let berth = berth.restart(Opts::default());
    let now = now_ms();
    let stats = cloudwatch(
        &berth,
        &[
            "get-metric-statistics",
            "--namespace",
            "Berth/Durable",
            "--metric-name",
            "Depth",
            "--dimensions",
            "Name=Queue,Value=queue-123",
            "--start-time",
            &iso(now - 3_600_000),
            "--end-time",
            &iso(now + 60_000),
            "--period",
            "3600",
            "--statistics",
            "Sum",
        ],
    );
    let sums: Vec<f64> = stats["Datapoints"]
        .as_array()
        .expect("datapoints")
        .iter()
        .filter_map(|p| p["Sum"].as_f64())
        .collect();
    assert_eq!(sums.iter().sum::<f64>(), 123.0, "{stats}");
    let listed = cloudwatch(&berth, &["list-metrics", "--namespace", "Berth/Durable"]);
    assert_eq!(listed["Metrics"].as_array().map(Vec::len), Some(300));
}
