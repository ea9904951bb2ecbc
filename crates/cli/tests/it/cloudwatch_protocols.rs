//! CloudWatch over each protocol its clients speak, to the same handlers: Smithy RPC v2 CBOR
//! (the AWS SDK for Rust, and botocore told to prefer it), awsJson 1.0 in query mode (botocore's
//! choice) and awsQuery (botocore told to speak it). Every client puts a metric, then reads the
//! same statistics, metrics and alarms; the answers must agree, and errors must carry the
//! model's awsQuery code (`ResourceNotFound`, `MissingParameter`) in every protocol.

use crate::harness::{Berth, Opts};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, Statistic};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

const NAMESPACE: &str = "Berth/Protocols";
const SHARED: &str = "Shared";
const ALARM: &str = "protocols-alarm";

fn sdk(berth: &Berth) -> aws_sdk_cloudwatch::Client {
    let creds = aws_credential_types::Credentials::new(
        berth.keys.access_key_id.clone(),
        berth.keys.secret_access_key.clone(),
        None,
        None,
        "berth-it",
    );
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .endpoint_url(&berth.endpoint)
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

fn dimension() -> Dimension {
    Dimension::builder().name("Service").value("web").build()
}

/// The reads every client makes, and the errors it provokes, printed as one JSON object by
/// boto3 for `protocol` (`json`: botocore's own choice; `smithy-rpc-v2-cbor` or `query`: a copy
/// of botocore's model that lists only that protocol, found first through `AWS_DATA_PATH`).
const BOTO3: &str = r#"
import datetime, gzip, json, os, tempfile
proto = os.environ["PROTO"]
if proto != "json":
    import botocore
    src = os.path.join(os.path.dirname(botocore.__file__), "data", "cloudwatch",
                       "2010-08-01", "service-2.json.gz")
    model = json.loads(gzip.open(src).read())
    model["metadata"]["protocols"] = [proto]
    model["metadata"]["protocol"] = proto
    root = tempfile.mkdtemp()
    os.makedirs(os.path.join(root, "cloudwatch", "2010-08-01"))
    with open(os.path.join(root, "cloudwatch", "2010-08-01", "service-2.json"), "w") as f:
        json.dump(model, f)
    os.environ["AWS_DATA_PATH"] = root
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
cw = boto3.client("cloudwatch", endpoint_url=os.environ["BERTH_ENDPOINT"],
                  config=Config(parameter_validation=False, retries={"max_attempts": 1}))
sent = set()
def record(request, **kw):
    v = request.headers.get("Content-Type")
    sent.add(v.decode() if isinstance(v, bytes) else str(v))
cw.meta.events.register("before-send", record)
t = datetime.datetime.fromtimestamp(int(os.environ["T"]), datetime.timezone.utc)
dims = [{"Name": "Service", "Value": "web"}]
cw.put_metric_data(Namespace=os.environ["NAMESPACE"], MetricData=[
    {"MetricName": "From-" + proto, "Dimensions": dims, "Timestamp": t, "Value": 1.0,
     "Unit": "Count"}])
stats = cw.get_metric_statistics(Namespace=os.environ["NAMESPACE"], MetricName="Shared",
    Dimensions=dims, StartTime=t - datetime.timedelta(minutes=10),
    EndTime=t + datetime.timedelta(minutes=10), Period=60,
    Statistics=["Sum", "Average", "Maximum", "Minimum", "SampleCount"])
metrics = cw.list_metrics(Namespace=os.environ["NAMESPACE"])
alarms = cw.describe_alarms(AlarmNames=[os.environ["ALARM"]])
def code(call):
    try:
        call()
        return None
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
out = {
    "sent": sorted(sent),
    "datapoints": sorted([
        {"Timestamp": d["Timestamp"].timestamp(), "Sum": d["Sum"], "Average": d["Average"],
         "Maximum": d["Maximum"], "Minimum": d["Minimum"], "SampleCount": d["SampleCount"],
         "Unit": d["Unit"]} for d in stats["Datapoints"]], key=lambda d: d["Timestamp"]),
    "label": stats["Label"],
    "metrics": sorted([m["MetricName"] + "|" + ",".join(
        d["Name"] + "=" + d["Value"] for d in m.get("Dimensions", []))
        for m in metrics["Metrics"]]),
    "alarms": [{"AlarmName": a["AlarmName"], "MetricName": a["MetricName"],
                "Threshold": a["Threshold"], "ComparisonOperator": a["ComparisonOperator"],
                "EvaluationPeriods": a["EvaluationPeriods"], "Period": a["Period"],
                "Statistic": a["Statistic"], "ActionsEnabled": a["ActionsEnabled"]}
               for a in alarms["MetricAlarms"]],
    "not_found": code(lambda: cw.set_alarm_state(AlarmName="no-such-alarm",
                                                 StateValue="OK", StateReason="test")),
    "missing": code(lambda: cw.get_metric_statistics(Namespace=os.environ["NAMESPACE"],
        StartTime=t, EndTime=t, Period=60, Statistics=["Sum"])),
}
print(json.dumps(out))
"#;

fn boto3(berth: &Berth, protocol: &str, t: i64) -> Value {
    let t = t.to_string();
    berth
        .python(
            BOTO3,
            &[
                ("PROTO", protocol),
                ("T", &t),
                ("NAMESPACE", NAMESPACE),
                ("ALARM", ALARM),
            ],
        )
        .json()
}

/// What the Rust SDK (rpc-v2-cbor) reads, in the same form as the boto3 script prints (alarm
/// state left out: the evaluator may move it between two reads).
async fn rust_sdk_reads(cw: &aws_sdk_cloudwatch::Client, t: i64) -> Value {
    let stats = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name(SHARED)
        .dimensions(dimension())
        .start_time(DateTime::from_secs(t - 600))
        .end_time(DateTime::from_secs(t + 600))
        .period(60)
        .set_statistics(Some(vec![
            Statistic::Sum,
            Statistic::Average,
            Statistic::Maximum,
            Statistic::Minimum,
            Statistic::SampleCount,
        ]))
        .send()
        .await
        .expect("GetMetricStatistics over CBOR");
    let mut datapoints: Vec<Value> = stats
        .datapoints()
        .iter()
        .map(|d| {
            json!({
                "Timestamp": d.timestamp().map(|t| t.as_secs_f64()),
                "Sum": d.sum(), "Average": d.average(), "Maximum": d.maximum(),
                "Minimum": d.minimum(), "SampleCount": d.sample_count(),
                "Unit": d.unit().map(|u| u.as_str().to_string()),
            })
        })
        .collect();
    datapoints.sort_by(|a, b| {
        a["Timestamp"]
            .as_f64()
            .partial_cmp(&b["Timestamp"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let metrics = cw
        .list_metrics()
        .namespace(NAMESPACE)
        .send()
        .await
        .expect("ListMetrics over CBOR");
    let mut names: Vec<String> = metrics
        .metrics()
        .iter()
        .map(|m| {
            let dims: Vec<String> = m
                .dimensions()
                .iter()
                .map(|d| format!("{}={}", d.name().unwrap_or(""), d.value().unwrap_or("")))
                .collect();
            format!("{}|{}", m.metric_name().unwrap_or(""), dims.join(","))
        })
        .collect();
    names.sort();
    let alarms = cw
        .describe_alarms()
        .alarm_names(ALARM)
        .send()
        .await
        .expect("DescribeAlarms over CBOR");
    let alarms: Vec<Value> = alarms
        .metric_alarms()
        .iter()
        .map(|a| {
            json!({
                "AlarmName": a.alarm_name(), "MetricName": a.metric_name(),
                "Threshold": a.threshold(),
                "ComparisonOperator": a.comparison_operator().map(|c| c.as_str().to_string()),
                "EvaluationPeriods": a.evaluation_periods(), "Period": a.period(),
                "Statistic": a.statistic().map(|s| s.as_str().to_string()),
                "ActionsEnabled": a.actions_enabled(),
            })
        })
        .collect();
    json!({
        "datapoints": datapoints,
        "label": stats.label(),
        "metrics": names,
        "alarms": alarms,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_protocol_reaches_the_same_handlers() {
    let berth = Berth::start(Opts::default());
    let cw = sdk(&berth);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // A whole minute a little in the past, so every statistic falls in one period.
    let t = now - now % 60 - 120;
    let values = [1.0, 2.0, 3.0, 4.0];
    cw.put_metric_data()
        .namespace(NAMESPACE)
        .metric_data(
            MetricDatum::builder()
                .metric_name(SHARED)
                .dimensions(dimension())
                .timestamp(DateTime::from_secs(t))
                .set_values(Some(values.to_vec()))
                .unit(StandardUnit::Count)
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData over CBOR");
    cw.put_metric_alarm()
        .alarm_name(ALARM)
        .namespace(NAMESPACE)
        .metric_name(SHARED)
        .dimensions(dimension())
        .statistic(Statistic::Average)
        .period(60)
        .evaluation_periods(3)
        .threshold(75.5)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .actions_enabled(false)
        .send()
        .await
        .expect("PutMetricAlarm over CBOR");

    // The Rust SDK's own reads, checked against the numbers put.
    let rust = rust_sdk_reads(&cw, t).await;
    let sum: f64 = values.iter().sum();
    let expected_point = json!({
        "Timestamp": t as f64, "Sum": sum, "Average": sum / values.len() as f64,
        "Maximum": values.iter().cloned().fold(f64::MIN, f64::max),
        "Minimum": values.iter().cloned().fold(f64::MAX, f64::min),
        "SampleCount": values.len() as f64, "Unit": "Count",
    });
    assert_eq!(rust["datapoints"], json!([expected_point]), "{rust}");
    assert_eq!(rust["label"], SHARED);
    assert_eq!(rust["alarms"][0]["AlarmName"], ALARM, "{rust}");
    assert_eq!(rust["alarms"][0]["Threshold"], 75.5, "{rust}");

    // Its errors carry the awsQuery code through `x-amzn-query-error`, and map to the
    // modeled exceptions.
    let err = cw
        .set_alarm_state()
        .alarm_name("no-such-alarm")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Ok)
        .state_reason("test")
        .send()
        .await
        .expect_err("SetAlarmState on no alarm");
    let service_err = err.into_service_error();
    assert!(service_err.is_resource_not_found(), "{service_err:?}");
    assert_eq!(
        aws_sdk_cloudwatch::error::ProvideErrorMetadata::code(&service_err),
        Some("ResourceNotFound")
    );
    let err = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .start_time(DateTime::from_secs(t))
        .end_time(DateTime::from_secs(t))
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await
        .expect_err("GetMetricStatistics without MetricName");
    let service_err = err.into_service_error();
    assert!(
        service_err.is_missing_required_parameter_exception(),
        "{service_err:?}"
    );

    // boto3 in each protocol: the same reads, the same errors, its own metric put.
    let mut seen_metrics = Vec::new();
    for (protocol, content_type) in [
        ("json", "application/x-amz-json-1.0"),
        ("smithy-rpc-v2-cbor", "application/cbor"),
        ("query", "application/x-www-form-urlencoded; charset=utf-8"),
    ] {
        let out = boto3(&berth, protocol, t);
        assert_eq!(out["sent"], json!([content_type]), "{protocol}: {out}");
        for part in ["datapoints", "label", "alarms"] {
            assert_eq!(out[part], rust[part], "{protocol}: {part} differs: {out}");
        }
        assert_eq!(
            out["not_found"],
            json!(["ResourceNotFound", 404]),
            "{protocol}: {out}"
        );
        assert_eq!(out["missing"][0], "MissingParameter", "{protocol}: {out}");
        seen_metrics.push(format!("From-{protocol}|Service=web"));
        for m in &seen_metrics {
            assert!(
                out["metrics"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x == m.as_str())),
                "{protocol}: {m} not listed: {out}"
            );
        }
    }

    // And the Rust SDK lists what every protocol put.
    let after = rust_sdk_reads(&cw, t).await;
    let mut want: Vec<String> = seen_metrics;
    want.push(format!("{SHARED}|Service=web"));
    want.sort();
    assert_eq!(after["metrics"], json!(want));
}

/// The CBOR path's own failures, signed as an SDK signs them: a body that is not one whole
/// CBOR item is the protocol's `SerializationException`, answered in CBOR with
/// `smithy-protocol` and the query-compatible header; a service whose model does not list
/// rpc-v2-cbor (ECS) is not reachable that way.
#[test]
fn malformed_cbor_and_services_without_cbor_are_refused() {
    use berth_conformance::{Auth, Client, Model, model::botocore_data_dir};
    let berth = Berth::start(Opts::default());
    let data = botocore_data_dir().expect("botocore");
    let cloudwatch = Model::load(&data, "cloudwatch").expect("cloudwatch model");
    let client = Client::new(
        berth.addr,
        &berth.keys.access_key_id,
        &berth.keys.secret_access_key,
        &cloudwatch,
    )
    .speaking("smithy-rpc-v2-cbor", &cloudwatch);

    // {"Namespace": "Berth"} whole, then cut short, then with a byte after it.
    let whole = b"\xa1\x69Namespace\x65Berth".to_vec();
    let ok = client
        .call_raw("ListMetrics", &whole, Auth::Header)
        .expect("send");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("smithy-protocol"), Some("rpc-v2-cbor"));
    assert_eq!(ok.header("content-type"), Some("application/cbor"));
    let mut trailing = whole.clone();
    trailing.push(0x00);
    for body in [&whole[..whole.len() - 2], &trailing[..], &b"\xff"[..]] {
        let r = client
            .call_raw("ListMetrics", body, Auth::Header)
            .expect("send");
        assert_eq!(r.status, 400, "{body:?}: {}", r.text());
        assert_eq!(r.header("smithy-protocol"), Some("rpc-v2-cbor"));
        assert_eq!(r.header("content-type"), Some("application/cbor"));
        assert_eq!(
            r.header("x-amzn-query-error"),
            Some("SerializationException;Sender")
        );
        let error: Value = serde_json::from_slice(&r.body).expect("the client reads CBOR back");
        assert_eq!(
            error["__type"], "com.amazonaws.cloudwatch#SerializationException",
            "{error}"
        );
    }

    let ecs = Model::load(&data, "ecs").expect("ecs model");
    let ecs_client = Client::new(
        berth.addr,
        &berth.keys.access_key_id,
        &berth.keys.secret_access_key,
        &ecs,
    )
    .speaking("smithy-rpc-v2-cbor", &ecs);
    let r = ecs_client.call("ListClusters", &json!({})).expect("send");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("UnknownOperationException"));
}

/// Unsigned (`--auth open`), an awsQuery form reaches CloudWatch by its `Version`.
#[test]
fn an_unsigned_query_form_reaches_cloudwatch_by_its_version() {
    let berth = Berth::start(Opts::open());
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = berth.post("/", &form, b"Action=ListMetrics&Version=2010-08-01");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<ListMetricsResponse"), "{}", r.text());
    let r = berth.post(
        "/",
        &form,
        b"Action=SetAlarmState&Version=2010-08-01&AlarmName=none&StateValue=OK&StateReason=x",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains("<Code>ResourceNotFound</Code>"),
        "{}",
        r.text()
    );
}
