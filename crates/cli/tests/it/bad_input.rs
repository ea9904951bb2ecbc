//! Bad requests over SigV4-signed raw HTTP (so berth's verifier, body limit and model
//! validation all run): each gets the AWS error a client expects, a request id, never a 500,
//! and leaves the state exactly as it was.

use crate::harness::{Berth, ECS, Opts, Response};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// Everything a client can list, to compare before and after a bad request.
fn snapshot(berth: &Berth) -> Value {
    let mut out = serde_json::Map::new();
    for (op, body) in [
        ("ListClusters", json!({})),
        ("ListTaskDefinitions", json!({"status": "ACTIVE"})),
        ("ListTaskDefinitions", json!({"status": "INACTIVE"})),
        ("ListTaskDefinitionFamilies", json!({"status": "ALL"})),
        ("DescribeCapacityProviders", json!({})),
        ("ListAccountSettings", json!({})),
        (
            "DescribeClusters",
            json!({"clusters": ["base"], "include": ["SETTINGS", "TAGS", "CONFIGURATIONS"]}),
        ),
    ] {
        out.insert(format!("{op} {body}"), berth.ecs_ok(op, &body));
    }
    Value::Object(out)
}

/// Checks one refused request: status, code, the headers every AWS answer carries, and that
/// nothing changed.
#[track_caller]
fn refused(berth: &Berth, before: &Value, what: &str, r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.error_code(), code, "{what}: {}", r.text());
    assert!(!r.message().is_empty(), "{what}: an error says why");
    assert!(
        r.header("x-amzn-requestid").is_some_and(|v| !v.is_empty()),
        "{what}: no x-amzn-RequestId"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-amz-json-1.1"),
        "{what}"
    );
    assert_eq!(&snapshot(berth), before, "{what}: the state changed");
}

/// A berth with some state to protect: a cluster and a task definition.
fn with_state() -> (Berth, Value) {
    let berth = Berth::start(Opts::default());
    berth.ecs_ok(
        "CreateCluster",
        &json!({"clusterName": "base", "tags": [{"key": "k", "value": "v"}]}),
    );
    berth.ecs_ok(
        "RegisterTaskDefinition",
        &json!({"family": "base", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]}),
    );
    let before = snapshot(&berth);
    (berth, before)
}

#[test]
fn malformed_mistyped_missing_and_out_of_model_input_is_refused() {
    let (berth, before) = with_state();
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        ("malformed JSON", "CreateCluster", b"{\"clusterName\": \"x\"", 400, "SerializationException"),
        ("not an object", "CreateCluster", b"[\"x\"]", 400, "SerializationException"),
        ("string for an integer", "ListClusters", b"{\"maxResults\": \"x\"}", 400, "SerializationException"),
        ("number for a string", "CreateCluster", b"{\"clusterName\": 5}", 400, "SerializationException"),
        ("object for a list", "DescribeClusters", b"{\"clusters\": {\"a\": 1}}", 400, "SerializationException"),
        ("missing required member", "UpdateCluster", b"{}", 400, "InvalidParameterException"),
        ("missing nested required member", "UpdateClusterSettings", b"{\"cluster\": \"base\"}", 400, "InvalidParameterException"),
        ("enum value outside the model", "ListTaskDefinitions", b"{\"status\": \"BOGUS\"}", 400, "InvalidParameterException"),
        ("enum value in a list", "DescribeClusters", b"{\"include\": [\"EVERYTHING\"]}", 400, "InvalidParameterException"),
        ("maxResults out of range", "ListClusters", b"{\"maxResults\": 1000}", 400, "InvalidParameterException"),
        ("cluster name with a space", "CreateCluster", b"{\"clusterName\": \"has space\"}", 400, "InvalidParameterException"),
        ("reserved tag key", "TagResource", b"{\"resourceArn\": \"arn:aws:ecs:us-east-1:000000000000:cluster/base\", \"tags\": [{\"key\": \"aws:x\", \"value\": \"y\"}]}", 400, "InvalidParameterException"),
        ("unknown account setting value", "PutAccountSetting", b"{\"name\": \"containerInsights\", \"value\": \"maybe\"}", 400, "InvalidParameterException"),
    ];
    for (what, op, body, status, code) in cases {
        let r = berth.ecs_raw(op, body);
        refused(&berth, &before, what, &r, *status, code);
    }
    // An over-long name is refused whatever the validation layer that catches it.
    let long = json!({"clusterName": "a".repeat(300)});
    let r = berth.ecs("CreateCluster", &long);
    refused(
        &berth,
        &before,
        "a 300-character cluster name",
        &r,
        400,
        "InvalidParameterException",
    );
}

#[test]
fn oversized_bodies_unknown_and_unsupported_operations_are_refused() {
    let (berth, before) = with_state();

    let mut big = b"{\"clusterName\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
    big.extend_from_slice(b"\"}");
    let r = berth.ecs_raw("CreateCluster", &big);
    refused(
        &berth,
        &before,
        "a 10 MiB body",
        &r,
        413,
        "RequestEntityTooLargeException",
    );

    let now = SystemTime::now();
    for target in [
        format!("{ECS}.FlyToTheMoon"),
        "SomeOtherService_20200101.ListClusters".to_string(),
        ECS.to_string(),
        String::new(),
    ] {
        let r = berth.ecs_signed(&target, b"{}", &berth.keys, now);
        refused(
            &berth,
            &before,
            &format!("target {target:?}"),
            &r,
            400,
            "UnknownOperationException",
        );
    }

    // An operation of the ECS model that berth does not serve yet says so, by name.
    let r = berth.ecs(
        "CreateTaskSet",
        &json!({"cluster": "base", "service": "s", "taskDefinition": "base:1"}),
    );
    refused(
        &berth,
        &before,
        "CreateTaskSet",
        &r,
        400,
        "UnsupportedOperationException",
    );
    assert!(r.message().contains("CreateTaskSet"), "{}", r.text());
}

#[test]
fn bad_signatures_change_nothing() {
    let (berth, before) = with_state();
    let body = json!({"clusterName": "sneaky"}).to_string();
    let target = format!("{ECS}.CreateCluster");

    let old = SystemTime::now() - Duration::from_secs(20 * 60);
    let r = berth.ecs_signed(&target, body.as_bytes(), &berth.keys, old);
    refused(
        &berth,
        &before,
        "signed 20 minutes ago",
        &r,
        400,
        "InvalidSignatureException",
    );
    assert!(r.message().contains("Signature expired"), "{}", r.text());

    let future = SystemTime::now() + Duration::from_secs(20 * 60);
    let r = berth.ecs_signed(&target, body.as_bytes(), &berth.keys, future);
    refused(
        &berth,
        &before,
        "signed 20 minutes ahead",
        &r,
        400,
        "InvalidSignatureException",
    );
    assert!(
        r.message().contains("Signature not yet current"),
        "{}",
        r.text()
    );

    // Signed for another service's scope, sent to ECS.
    let headers = crate::harness::sign_for(
        "ecr",
        berth.addr,
        &berth.keys,
        "us-east-1",
        &target,
        body.as_bytes(),
        SystemTime::now(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = berth.post("/", &headers, body.as_bytes());
    refused(
        &berth,
        &before,
        "signed for ecr",
        &r,
        400,
        "InvalidSignatureException",
    );
    assert!(
        r.message()
            .contains("Credential should be scoped to correct service: 'ecs'"),
        "{}",
        r.text()
    );

    // Signed for one body, sent with another.
    let headers = crate::harness::sign(
        berth.addr,
        &berth.keys,
        "us-east-1",
        &target,
        body.as_bytes(),
        SystemTime::now(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let other = json!({"clusterName": "swapped"}).to_string();
    let r = berth.post("/", &headers, other.as_bytes());
    refused(
        &berth,
        &before,
        "a body swapped after signing",
        &r,
        400,
        "InvalidSignatureException",
    );

    // Signed for ListClusters, sent as CreateCluster: x-amz-target is a signed header.
    let headers = crate::harness::sign(
        berth.addr,
        &berth.keys,
        "us-east-1",
        &format!("{ECS}.ListClusters"),
        body.as_bytes(),
        SystemTime::now(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| {
            if k == "x-amz-target" {
                (k.as_str(), target.as_str())
            } else {
                (k.as_str(), v.as_str())
            }
        })
        .collect();
    let r = berth.post("/", &headers, body.as_bytes());
    refused(
        &berth,
        &before,
        "a target swapped after signing",
        &r,
        400,
        "InvalidSignatureException",
    );

    let r = berth.post(
        "/",
        &[
            ("x-amz-target", &target),
            ("authorization", "AWS4-HMAC-SHA256 Credential=x"),
        ],
        body.as_bytes(),
    );
    refused(
        &berth,
        &before,
        "a truncated Authorization header",
        &r,
        400,
        "IncompleteSignatureException",
    );

    let r = berth.post("/", &[("x-amz-target", &target)], body.as_bytes());
    refused(
        &berth,
        &before,
        "no signature",
        &r,
        403,
        "MissingAuthenticationTokenException",
    );
}

#[test]
fn task_definitions_that_break_ecs_rules_are_refused_and_register_nothing() {
    let (berth, before) = with_state();
    let c = |extra: Value| {
        let mut base = json!({"name": "main", "image": "busybox:1.36"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    let fargate = |cpu: &str, memory: &str| {
        json!({
            "family": "rules", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
            "cpu": cpu, "memory": memory, "containerDefinitions": [c(json!({}))]
        })
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "no memory anywhere",
            json!({"family": "rules", "containerDefinitions": [c(json!({}))]}),
        ),
        (
            "duplicate container names",
            json!({"family": "rules", "containerDefinitions": [c(json!({"memory": 64})), c(json!({"memory": 64}))]}),
        ),
        (
            "no containers",
            json!({"family": "rules", "containerDefinitions": []}),
        ),
        (
            "no essential container",
            json!({"family": "rules", "containerDefinitions": [c(json!({"memory": 64, "essential": false}))]}),
        ),
        (
            "memoryReservation above memory",
            json!({"family": "rules", "containerDefinitions": [c(json!({"memory": 64, "memoryReservation": 128}))]}),
        ),
        (
            "a family name with invalid characters",
            json!({"family": "rules!", "containerDefinitions": [c(json!({"memory": 64}))]}),
        ),
        ("FARGATE with 256 CPU and 4096 MiB", fargate("256", "4096")),
        ("FARGATE with 1 vCPU and 512 MiB", fargate("1 vCPU", "512")),
        (
            "FARGATE with bridge networking",
            json!({
                "family": "rules", "requiresCompatibilities": ["FARGATE"], "networkMode": "bridge",
                "cpu": "256", "memory": "512", "containerDefinitions": [c(json!({}))]
            }),
        ),
        (
            "FARGATE without task cpu",
            json!({
                "family": "rules", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
                "memory": "512", "containerDefinitions": [c(json!({}))]
            }),
        ),
        (
            "container memory above the task's",
            json!({"family": "rules", "memory": "512", "containerDefinitions": [c(json!({"memory": 1024}))]}),
        ),
        (
            "awsvpc with a host port that differs",
            json!({
                "family": "rules", "networkMode": "awsvpc",
                "containerDefinitions": [c(json!({"memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 8080}]}))]
            }),
        ),
        (
            "a host port used twice",
            json!({
                "family": "rules", "networkMode": "bridge",
                "containerDefinitions": [
                    c(json!({"memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 8080}]})),
                    {"name": "b", "image": "busybox", "memory": 64, "portMappings": [{"containerPort": 81, "hostPort": 8080}]}
                ]
            }),
        ),
        (
            "links outside bridge mode",
            json!({
                "family": "rules", "networkMode": "host",
                "containerDefinitions": [
                    c(json!({"memory": 64, "links": ["b"]})),
                    {"name": "b", "image": "busybox", "memory": 64}
                ]
            }),
        ),
        (
            "a mount point on an unknown volume",
            json!({
                "family": "rules",
                "containerDefinitions": [c(json!({"memory": 64, "mountPoints": [{"sourceVolume": "nope", "containerPath": "/x"}]}))]
            }),
        ),
        (
            "dependsOn an unknown container",
            json!({
                "family": "rules",
                "containerDefinitions": [c(json!({"memory": 64, "dependsOn": [{"containerName": "ghost", "condition": "START"}]}))]
            }),
        ),
        (
            "volumesFrom itself",
            json!({
                "family": "rules",
                "containerDefinitions": [c(json!({"memory": 64, "volumesFrom": [{"sourceContainer": "main"}]}))]
            }),
        ),
        (
            "two volumes with one name",
            json!({
                "family": "rules", "volumes": [{"name": "v"}, {"name": "v"}],
                "containerDefinitions": [c(json!({"memory": 64}))]
            }),
        ),
        (
            "ephemeral storage below 21 GiB",
            json!({
                "family": "rules", "ephemeralStorage": {"sizeInGiB": 20},
                "containerDefinitions": [c(json!({"memory": 64}))]
            }),
        ),
        (
            "an empty image",
            json!({"family": "rules", "containerDefinitions": [{"name": "main", "image": " ", "memory": 64}]}),
        ),
    ];
    for (what, body) in &cases {
        let r = berth.ecs("RegisterTaskDefinition", body);
        refused(&berth, &before, what, &r, 400, "ClientException");
    }
    // A reserved tag key is a parameter error, not a task definition rule.
    let r = berth.ecs(
        "RegisterTaskDefinition",
        &json!({
            "family": "rules", "tags": [{"key": "aws:owner", "value": "x"}],
            "containerDefinitions": [c(json!({"memory": 64}))]
        }),
    );
    refused(
        &berth,
        &before,
        "a reserved tag key",
        &r,
        400,
        "InvalidParameterException",
    );

    // None of the refused registrations used up a revision.
    let ok = berth.ecs_ok("RegisterTaskDefinition", &fargate("256", "512"));
    assert_eq!(ok["taskDefinition"]["revision"], 1);
    assert_eq!(
        ok["taskDefinition"]["compatibilities"],
        json!(["EC2", "FARGATE"])
    );
}
