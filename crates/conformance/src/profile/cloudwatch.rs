//! CloudWatch: a fixture alarm on a metric that has no data (so the evaluator leaves it in
//! `INSUFFICIENT_DATA` and snapshots stay still) beside a metric that has, and page fixtures
//! for alarms, alarm history, metrics and GetMetricData's datapoints. Composite alarms are
//! bound to a rule naming the fixture alarm (a generated `AlarmRule` is never valid rule
//! text) and get a fresh name (the bound `AlarmName` is the fixture metric alarm's, which a
//! composite may not take).

use super::{Echo, PageFixture, Profile, ok_json};
use crate::client::{Client, Response};
use crate::{Error, Result};
use serde_json::{Map, Value, json};

/// The namespace every fixture metric lives in.
pub const NAMESPACE: &str = "Berth/Conformance";

/// An alarm on `metric` of the fixture namespace that no datapoint reaches.
fn alarm(name: &str, metric: &str) -> Value {
    json!({
        "AlarmName": name,
        "Namespace": NAMESPACE,
        "MetricName": metric,
        "Dimensions": [{"Name": "Service", "Value": "conformance"}],
        "Statistic": "Average",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 50.0,
        "ComparisonOperator": "GreaterThanThreshold",
        "ActionsEnabled": false,
    })
}

/// Seconds since the epoch, on a whole minute, a few minutes back (inside CloudWatch's
/// two-week window for PutMetricData, and in a closed period for reads).
fn minute_ago() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    now - now % 60 - 300
}

/// `count` distinct metrics `<prefix>-<i>`, one datum each.
fn put_metrics(c: &Client, prefix: &str, count: usize) -> Result<Response> {
    let data: Vec<Value> = (0..count)
        .map(|i| json!({"MetricName": format!("{prefix}-{i}"), "Value": i as f64, "Unit": "Count"}))
        .collect();
    c.call(
        "PutMetricData",
        &json!({"Namespace": NAMESPACE, "MetricData": data}),
    )
}

fn setup(c: &Client) -> Result<Map<String, Value>> {
    let call = |op: &str, body: Value| -> Result<Value> {
        let r = c.call(op, &body)?;
        if r.status != 200 {
            return Err(Error::Other(format!("fixture {op} failed: {}", r.text())));
        }
        Ok(r.json().unwrap_or(Value::Null))
    };
    let t = minute_ago();
    call(
        "PutMetricData",
        json!({"Namespace": NAMESPACE, "MetricData": [
            {"MetricName": "cpu", "Dimensions": [{"Name": "Service", "Value": "conformance"}],
             "Timestamp": t, "Values": [10.0, 20.0, 30.0], "Unit": "Percent"}]}),
    )?;
    call("PutMetricAlarm", alarm("conformance", "idle"))?;
    let described = call("DescribeAlarms", json!({"AlarmNames": ["conformance"]}))?;
    let arn = described["MetricAlarms"][0]["AlarmArn"].clone();
    if !arn.is_string() {
        return Err(Error::Other(format!(
            "fixture alarm not described: {described}"
        )));
    }
    // PutCompositeAlarm's rule and suppressor name the fixture alarm, by name and by ARN.
    let composite_members = json!({
        "AlarmRule": format!("ALARM(conformance) OR OK(\"{}\")", arn.as_str().unwrap_or_default()),
        "ActionsSuppressor": "conformance",
        "ActionsSuppressorWaitPeriod": 60,
        "ActionsSuppressorExtensionPeriod": 60,
    });
    let bindings = json!({
        "AlarmName": "conformance",
        "AlarmNames": ["conformance"],
        "ResourceARN": arn,
        "Namespace": NAMESPACE,
        "MetricName": "idle",
        "Dimensions": [{"Name": "Service", "Value": "conformance"}],
        "StartTime": t - 600,
        "EndTime": t + 600,
        "Period": 60,
        "Timestamp": t,
    });
    // (Several literals: one would pass `json!`'s recursion limit.)
    let alarm_members = json!({
        // What makes an alarm CloudWatch accepts: a plain threshold on one statistic.
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 50.0,
        "Statistic": "Average",
        "Statistics": ["Average", "Sum", "SampleCount"],
        "TreatMissingData": "missing",
        "OKActions": [],
        "AlarmActions": [],
        "InsufficientDataActions": [],
        // Members that exclude the ones bound above, left out of bound requests.
        "ExtendedStatistic": null,
        "ExtendedStatistics": null,
        "EvaluateLowSampleCountPercentile": null,
        "ThresholdMetricId": null,
        "Metrics": null,
        "Values": null,
        "Counts": null,
        "StatisticValues": null,
        "Unit": null,
        "NextToken": null,
        "EvaluationCriteria": null,
        // Only with EvaluationCriteria (PromQL alarms), which berth refuses; CloudWatch refuses
        // it beside MetricName or Metrics.
        "EvaluationInterval": null,
        "EntityMetricData": null,
        "StorageResolution": 60,
        "MetricDataQueries": [{"Id": "q1", "ReturnData": true, "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": "cpu",
                       "Dimensions": [{"Name": "Service", "Value": "conformance"}]},
            "Period": 60, "Stat": "Average"}}],
    });
    match (bindings, alarm_members, composite_members) {
        (Value::Object(mut m), Value::Object(more), Value::Object(composite)) => {
            m.extend(more);
            m.extend(composite);
            Ok(m)
        }
        _ => Err(Error::Other("bindings are an object".into())),
    }
}

impl Profile {
    /// CloudWatch (awsJson 1.0 in query mode here; the same handlers answer rpc-v2-cbor and
    /// awsQuery, which `crates/cli/tests/it/cloudwatch_protocols.rs` checks client by client).
    pub fn cloudwatch() -> Profile {
        Profile {
            service: "cloudwatch",
            setup: Some(setup),
            snapshot: |b| {
                let mut calls = vec![
                    ("DescribeAlarms", json!({})),
                    ("DescribeAlarms", json!({"AlarmTypes": ["CompositeAlarm"]})),
                    ("ListMetrics", json!({"Namespace": NAMESPACE})),
                    ("DescribeAlarmHistory", json!({})),
                ];
                if let Some(arn) = b.get("ResourceARN") {
                    calls.push(("ListTagsForResource", json!({"ResourceARN": arn})));
                }
                calls
            },
            echoes: vec![
                Echo {
                    create: "PutCompositeAlarm",
                    describe: "DescribeAlarms",
                    lookups: |req, _, _| {
                        vec![(
                            "name".into(),
                            json!({"AlarmNames": [req["AlarmName"]], "AlarmTypes": ["CompositeAlarm"]}),
                        )]
                    },
                    pick: |req, d| {
                        d["CompositeAlarms"]
                            .as_array()?
                            .iter()
                            .find(|a| a["AlarmName"] == req["AlarmName"])
                            .cloned()
                    },
                },
                Echo {
                    create: "PutMetricAlarm",
                    describe: "DescribeAlarms",
                    lookups: |req, _, _| {
                        vec![("name".into(), json!({"AlarmNames": [req["AlarmName"]]}))]
                    },
                    pick: |req, d| {
                        d["MetricAlarms"]
                            .as_array()?
                            .iter()
                            .find(|a| a["AlarmName"] == req["AlarmName"])
                            .cloned()
                    },
                },
            ],
            page_fixtures: vec![
                PageFixture {
                    op: "DescribeAlarms",
                    list_body: json!({}),
                    count: 7,
                    create: |c, i, _| {
                        c.call("PutMetricAlarm", &alarm(&format!("page-{i}"), "idle"))
                    },
                },
                PageFixture {
                    op: "DescribeAlarmHistory",
                    list_body: json!({"AlarmName": "conformance"}),
                    count: 7,
                    create: |c, i, _| {
                        let state = ["ALARM", "OK"][i % 2];
                        c.call(
                            "SetAlarmState",
                            &json!({"AlarmName": "conformance", "StateValue": state,
                                    "StateReason": format!("page {i}")}),
                        )
                    },
                },
                // ListMetrics has no limit: CloudWatch answers 500 metrics a page, so 600
                // metrics make two.
                PageFixture {
                    op: "ListMetrics",
                    list_body: json!({"Namespace": NAMESPACE}),
                    count: 2,
                    create: |c, i, _| put_metrics(c, &format!("page{i}"), 300),
                },
                // One datum a minute for seven minutes: seven timestamps to page through.
                PageFixture {
                    op: "GetMetricData",
                    list_body: get_metric_data_body(),
                    count: 7,
                    create: |c, i, _| {
                        let t = minute_ago() - 60 * i as i64;
                        c.call(
                            "PutMetricData",
                            &json!({"Namespace": NAMESPACE, "MetricData": [
                                {"MetricName": "paged", "Timestamp": t, "Value": i as f64}]}),
                        )
                    },
                },
            ],
            page_not_applicable: vec![],
            page_items: vec![("GetMetricData", datapoints)],
            volatile: vec![],
            waiter_failures: vec![],
            fresh_names: vec![("PutCompositeAlarm", &["AlarmName"])],
            echo_unreturned: vec![],
            waiter_scenarios: vec![
                ("AlarmExists", |c| {
                    ok_json(
                        c.call("PutMetricAlarm", &alarm("waited", "idle"))
                            .map_err(|e| e.to_string())?,
                        "PutMetricAlarm",
                    )?;
                    Ok(json!({"AlarmNames": ["waited"]}))
                }),
                // Composite alarms are listed only when asked for, so the waiter is too.
                ("CompositeAlarmExists", |c| {
                    ok_json(
                        c.call(
                            "PutCompositeAlarm",
                            &json!({"AlarmName": "waited-composite",
                                    "AlarmRule": "ALARM(conformance) AND NOT OK(conformance)"}),
                        )
                        .map_err(|e| e.to_string())?,
                        "PutCompositeAlarm",
                    )?;
                    Ok(
                        json!({"AlarmNames": ["waited-composite"], "AlarmTypes": ["CompositeAlarm"]}),
                    )
                }),
            ],
            waiter_not_applicable: vec![],
        }
    }
}

/// The GetMetricData request the page fixture lists: the `paged` metric's sums a minute at a
/// time, from half an hour before the profile was made to an hour after (the suite may run a
/// while before it gets here).
fn get_metric_data_body() -> Value {
    let t = minute_ago();
    json!({
        "MetricDataQueries": [{"Id": "paged", "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": "paged"},
            "Period": 60, "Stat": "Sum"}}],
        "StartTime": t - 1800,
        "EndTime": t + 3600,
    })
}

/// GetMetricData pages datapoints, not results: a query's result comes back on every page
/// that holds some of its points. The items paged through are its `(Id, timestamp, value)`
/// points.
fn datapoints(result: &Value) -> Vec<Value> {
    let empty = Vec::new();
    let times = result["Timestamps"].as_array().unwrap_or(&empty);
    let values = result["Values"].as_array().unwrap_or(&empty);
    times
        .iter()
        .zip(values)
        .map(|(t, v)| json!([result["Id"], t, v]))
        .collect()
}
