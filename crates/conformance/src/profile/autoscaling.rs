//! Application Auto Scaling: its scalable targets are ECS services, so the fixture makes an
//! ECS cluster and service through the ECS API on the same endpoint (a second client, signed
//! for `ecs`) and registers the service's desired count as the fixture target.

use super::{Echo, PageFixture, Profile};
use crate::client::{Client, Response};
use crate::{Error, Result};
use serde_json::{Map, Value, json};

const DIMENSION: &str = "ecs:service:DesiredCount";

/// A one-time schedule far ahead: accepted, and it never fires while the suite runs.
const FAR_AHEAD: &str = "at(2099-01-01T00:00:00)";

fn resource_id(service: &str) -> String {
    format!("service/conformance/{service}")
}

/// The same endpoint and keys, speaking ECS.
fn ecs(c: &Client) -> Client {
    let mut ecs = c.clone();
    ecs.signing_name = "ecs".into();
    ecs.target_prefix = "AmazonEC2ContainerServiceV20141113".into();
    ecs.json_version = "1.1".into();
    ecs.query = None;
    ecs
}

fn ok(r: Response, what: &str) -> Result<Value> {
    if r.status != 200 {
        return Err(Error::Other(format!("fixture {what} failed: {}", r.text())));
    }
    Ok(r.json().unwrap_or(Value::Null))
}

/// An ECS service `name` in the fixture cluster, registered as a scalable target.
fn target(c: &Client, name: &str) -> Result<Response> {
    let r = ecs(c).call("CreateService", &super::service(name))?;
    if r.status != 200 {
        return Ok(r);
    }
    c.call(
        "RegisterScalableTarget",
        &json!({"ServiceNamespace": "ecs", "ResourceId": resource_id(name),
                "ScalableDimension": DIMENSION, "MinCapacity": 0, "MaxCapacity": 4}),
    )
}

fn step_policy(name: &str) -> Value {
    json!({
        "PolicyName": name,
        "ServiceNamespace": "ecs",
        "ResourceId": resource_id("conformance"),
        "ScalableDimension": DIMENSION,
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
            "Cooldown": 60,
        },
    })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn setup(c: &Client) -> Result<Map<String, Value>> {
    let e = ecs(c);
    ok(
        e.call("CreateCluster", &json!({"clusterName": "conformance"}))?,
        "CreateCluster",
    )?;
    ok(
        e.call(
            "RegisterTaskDefinition",
            &super::task_definition("conformance"),
        )?,
        "RegisterTaskDefinition",
    )?;
    ok(target(c, "conformance")?, "RegisterScalableTarget")?;
    let described = ok(
        c.call(
            "DescribeScalableTargets",
            &json!({"ServiceNamespace": "ecs", "ResourceIds": [resource_id("conformance")]}),
        )?,
        "DescribeScalableTargets",
    )?;
    let arn = described["ScalableTargets"][0]["ScalableTargetARN"].clone();
    if !arn.is_string() {
        return Err(Error::Other(format!(
            "fixture target not described: {described}"
        )));
    }
    ok(
        c.call("PutScalingPolicy", &step_policy("conformance"))?,
        "PutScalingPolicy",
    )?;
    ok(
        c.call(
            "PutScheduledAction",
            &json!({"ServiceNamespace": "ecs", "ResourceId": resource_id("conformance"),
                    "ScalableDimension": DIMENSION, "ScheduledActionName": "conformance",
                    "Schedule": FAR_AHEAD,
                    "ScalableTargetAction": {"MinCapacity": 0, "MaxCapacity": 4}}),
        )?,
        "PutScheduledAction",
    )?;
    let step = step_policy("conformance");
    let bindings = json!({
        "ServiceNamespace": "ecs",
        "ResourceId": resource_id("conformance"),
        "ResourceIds": [resource_id("conformance")],
        "ScalableDimension": DIMENSION,
        "ResourceARN": arn,
        "PolicyName": "conformance",
        "PolicyNames": ["conformance"],
        "ScheduledActionName": "conformance",
        "ScheduledActionNames": ["conformance"],
        "Schedule": FAR_AHEAD,
        "Timezone": "UTC",
        "StartTime": null,
        "EndTime": null,
        "ScalableTargetAction": {"MinCapacity": 0, "MaxCapacity": 4},
        // A step policy: the other kinds' configurations are left out of bound requests.
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": step["StepScalingPolicyConfiguration"],
        "TargetTrackingScalingPolicyConfiguration": null,
        "PredictiveScalingPolicyConfiguration": null,
    });
    match bindings {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Other("bindings are an object".into())),
    }
}

impl Profile {
    /// Application Auto Scaling (awsJson 1.1) for ECS services' desired counts.
    pub fn autoscaling() -> Profile {
        Profile {
            service: "application-autoscaling",
            setup: Some(setup),
            snapshot: |b| {
                let ns = json!({"ServiceNamespace": "ecs"});
                let mut calls = vec![
                    ("DescribeScalableTargets", ns.clone()),
                    ("DescribeScalingPolicies", ns.clone()),
                    ("DescribeScheduledActions", ns.clone()),
                    ("DescribeScalingActivities", ns),
                ];
                if let Some(arn) = b.get("ResourceARN") {
                    calls.push(("ListTagsForResource", json!({"ResourceARN": arn})));
                }
                calls
            },
            echoes: vec![
                Echo {
                    create: "RegisterScalableTarget",
                    describe: "DescribeScalableTargets",
                    lookups: |req, _, _| {
                        vec![(
                            "resource id".into(),
                            json!({"ServiceNamespace": req["ServiceNamespace"],
                                   "ResourceIds": [req["ResourceId"]],
                                   "ScalableDimension": req["ScalableDimension"]}),
                        )]
                    },
                    pick: |req, d| {
                        d["ScalableTargets"]
                            .as_array()?
                            .iter()
                            .find(|t| t["ResourceId"] == req["ResourceId"])
                            .cloned()
                    },
                },
                Echo {
                    create: "PutScalingPolicy",
                    describe: "DescribeScalingPolicies",
                    lookups: |req, _, _| {
                        vec![(
                            "name".into(),
                            json!({"ServiceNamespace": req["ServiceNamespace"],
                                   "ResourceId": req["ResourceId"],
                                   "PolicyNames": [req["PolicyName"]]}),
                        )]
                    },
                    pick: |req, d| {
                        d["ScalingPolicies"]
                            .as_array()?
                            .iter()
                            .find(|p| p["PolicyName"] == req["PolicyName"])
                            .cloned()
                    },
                },
                Echo {
                    create: "PutScheduledAction",
                    describe: "DescribeScheduledActions",
                    lookups: |req, _, _| {
                        vec![(
                            "name".into(),
                            json!({"ServiceNamespace": req["ServiceNamespace"],
                                   "ResourceId": req["ResourceId"],
                                   "ScheduledActionNames": [req["ScheduledActionName"]]}),
                        )]
                    },
                    pick: |req, d| {
                        d["ScheduledActions"]
                            .as_array()?
                            .iter()
                            .find(|a| a["ScheduledActionName"] == req["ScheduledActionName"])
                            .cloned()
                    },
                },
            ],
            page_fixtures: vec![
                PageFixture {
                    op: "DescribeScalableTargets",
                    list_body: json!({"ServiceNamespace": "ecs"}),
                    count: 7,
                    create: |c, i, _| target(c, &format!("page-{i}")),
                },
                PageFixture {
                    op: "DescribeScalingPolicies",
                    list_body: json!({"ServiceNamespace": "ecs"}),
                    count: 7,
                    create: |c, i, _| {
                        c.call("PutScalingPolicy", &step_policy(&format!("page-{i}")))
                    },
                },
                PageFixture {
                    op: "DescribeScheduledActions",
                    list_body: json!({"ServiceNamespace": "ecs"}),
                    count: 7,
                    create: |c, i, _| {
                        c.call(
                            "PutScheduledAction",
                            &json!({"ServiceNamespace": "ecs",
                                    "ResourceId": resource_id("conformance"),
                                    "ScalableDimension": DIMENSION,
                                    "ScheduledActionName": format!("page-{i}"),
                                    "Schedule": FAR_AHEAD,
                                    "ScalableTargetAction": {"MinCapacity": 0, "MaxCapacity": 4}}),
                        )
                    },
                },
                // Each scheduled action fires once, at its start time, two seconds ahead, and
                // leaves one activity; the last item waits until all of them have.
                PageFixture {
                    op: "DescribeScalingActivities",
                    list_body: json!({"ServiceNamespace": "ecs"}),
                    count: 7,
                    create: |c, i, _| {
                        let start = now_secs() + 2;
                        let r = c.call(
                            "PutScheduledAction",
                            &json!({"ServiceNamespace": "ecs",
                                    "ResourceId": resource_id("conformance"),
                                    "ScalableDimension": DIMENSION,
                                    "ScheduledActionName": format!("fires-{i}"),
                                    "Schedule": "rate(1 hour)",
                                    "StartTime": start, "EndTime": start + 60,
                                    "ScalableTargetAction": {"MinCapacity": 0, "MaxCapacity": 4}}),
                        )?;
                        if r.status != 200 || i < 6 {
                            return Ok(r);
                        }
                        await_activities(c, 7)
                    },
                },
            ],
            page_not_applicable: vec![],
            page_items: vec![],
            volatile: vec![],
            waiter_scenarios: vec![],
            waiter_not_applicable: vec![],
            waiter_failures: vec![],
            fresh_names: vec![],
            echo_unreturned: vec![],
        }
    }
}

/// Polls DescribeScalingActivities until `n` activities exist (at most ~30 s); returns the
/// last answer, a 200 either way, so the paginator's own count check judges it.
fn await_activities(c: &Client, n: usize) -> Result<Response> {
    let mut last = None;
    for _ in 0..150 {
        let r = c.call(
            "DescribeScalingActivities",
            &json!({"ServiceNamespace": "ecs"}),
        )?;
        let have = r
            .json()
            .and_then(|v| v["ScalingActivities"].as_array().map(Vec::len))
            .unwrap_or_default();
        if r.status != 200 || have >= n {
            return Ok(r);
        }
        last = Some(r);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    last.ok_or_else(|| Error::Other("no answer".into()))
}
