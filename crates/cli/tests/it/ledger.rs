//! The operation ledger: every operation of botocore's models of the services berth serves (ECS,
//! ECR, CloudWatch Logs, Secrets Manager, …) is either served by berth or listed in
//! `crates/<service>/unsupported-operations.txt` with a reason — never both, never neither.
//! Black-box: berth itself is asked, with a minimal valid input generated from the model.

use crate::harness::{Berth, ECS, Opts, Response, sign_for, sign_form};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const UNSUPPORTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ecs/unsupported-operations.txt"
));

const ECR_UNSUPPORTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ecr/unsupported-operations.txt"
));

/// The awsJson target prefix of ECR.
const ECR: &str = "AmazonEC2ContainerRegistry_V20150921";

const LOGS_UNSUPPORTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../logs/unsupported-operations.txt"
));

/// The awsJson target prefix of CloudWatch Logs.
const LOGS: &str = "Logs_20140328";

const SECRETSMANAGER_UNSUPPORTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../secretsmanager/unsupported-operations.txt"
));

/// The awsJson target prefix of Secrets Manager.
const SECRETSMANAGER: &str = "secretsmanager";

const CLOUDWATCH_UNSUPPORTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cloudwatch/unsupported-operations.txt"
));

/// The awsJson 1.0 target prefix of CloudWatch (what botocore sends, with `x-amzn-query-mode`).
const CLOUDWATCH: &str = "GraniteServiceVersion20100801";

const ELBV2_UNSUPPORTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../elbv2/unsupported-operations.txt"
));

/// botocore's ECS service model, the spec berth follows.
fn botocore_model() -> Value {
    botocore_model_of("ecs/2014-11-13")
}

/// botocore's model of a service, by its `data/` folder (`ecr/2015-09-21`).
fn botocore_model_of(folder: &str) -> Value {
    let script = r#"
import botocore, gzip, os, sys
path = os.path.join(os.path.dirname(botocore.__file__), "data", sys.argv[1], "service-2.json.gz")
sys.stdout.write(gzip.open(path, "rt").read())
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(folder)
        .output()
        .expect("run python3 (botocore must be installed: pip install botocore)");
    assert!(
        out.status.success(),
        "reading botocore's ECS model failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the model is JSON")
}

/// The smallest input the model accepts for `shape`: required members only, each at its
/// minimum size.
fn minimal(shapes: &Map<String, Value>, shape: &str, depth: usize) -> Value {
    assert!(depth < 20, "the model recurses through {shape}");
    let s = &shapes[shape];
    let min = s["min"].as_u64().unwrap_or(0);
    match s["type"].as_str().unwrap_or_default() {
        "structure" => {
            let mut out = Map::new();
            for name in s["required"].as_array().into_iter().flatten() {
                let name = name.as_str().expect("member name");
                let member = s["members"][name]["shape"].as_str().expect("member shape");
                out.insert(name.to_string(), minimal(shapes, member, depth + 1));
            }
            Value::Object(out)
        }
        "list" => {
            let member = s["member"]["shape"].as_str().expect("list member");
            Value::Array(
                (0..min.max(1))
                    .map(|_| minimal(shapes, member, depth + 1))
                    .collect(),
            )
        }
        "map" => json!({}),
        "string" => match s["enum"].as_array().and_then(|e| e.first()) {
            Some(v) => v.clone(),
            None => json!("a".repeat(min.max(1) as usize)),
        },
        "integer" | "long" => json!(min.max(1)),
        "boolean" => json!(false),
        "double" | "float" => json!(1.0),
        "timestamp" => json!(0),
        "blob" => json!(""),
        other => panic!("shape {shape} has a type this test does not know: {other}"),
    }
}

#[test]
fn every_model_operation_is_implemented_or_listed_as_unsupported() {
    let implemented = check_ledger(
        &botocore_model(),
        ECS,
        "ECS",
        UNSUPPORTED,
        50,
        |berth, name, input| berth.ecs(name, input),
    );
    // The operations this suite exercises elsewhere must be among the served ones.
    for op in [
        "CreateCluster",
        "RegisterTaskDefinition",
        "ListTaskDefinitions",
        "TagResource",
        "PutAccountSetting",
    ] {
        assert!(implemented.contains(op), "{op}");
    }
}

#[test]
fn every_ecr_operation_is_implemented_or_listed_as_unsupported() {
    let implemented = check_ledger(
        &botocore_model_of("ecr/2015-09-21"),
        ECR,
        "ECR",
        ECR_UNSUPPORTED,
        40,
        |berth, name, input| {
            let body = input.to_string();
            let headers = sign_for(
                "ecr",
                berth.addr,
                &berth.keys,
                "us-east-1",
                &format!("{ECR}.{name}"),
                body.as_bytes(),
                std::time::SystemTime::now(),
            );
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            berth.post("/", &headers, body.as_bytes())
        },
    );
    for op in [
        "CreateRepository",
        "DescribeImages",
        "PutImage",
        "GetAuthorizationToken",
    ] {
        assert!(implemented.contains(op), "{op}");
    }
}

#[test]
fn every_logs_operation_is_implemented_or_listed_as_unsupported() {
    let implemented = check_ledger(
        &botocore_model_of("logs/2014-03-28"),
        LOGS,
        "CloudWatch Logs",
        LOGS_UNSUPPORTED,
        50,
        |berth, name, input| {
            let body = input.to_string();
            let headers = sign_for(
                "logs",
                berth.addr,
                &berth.keys,
                "us-east-1",
                &format!("{LOGS}.{name}"),
                body.as_bytes(),
                std::time::SystemTime::now(),
            );
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            berth.post("/", &headers, body.as_bytes())
        },
    );
    for op in [
        "CreateLogGroup",
        "PutLogEvents",
        "GetLogEvents",
        "FilterLogEvents",
    ] {
        assert!(implemented.contains(op), "{op}");
    }
}

#[test]
fn every_secretsmanager_operation_is_implemented_or_listed_as_unsupported() {
    let implemented = check_ledger(
        &botocore_model_of("secretsmanager/2017-10-17"),
        SECRETSMANAGER,
        "Secrets Manager",
        SECRETSMANAGER_UNSUPPORTED,
        20,
        |berth, name, input| {
            let body = input.to_string();
            let headers = sign_for(
                "secretsmanager",
                berth.addr,
                &berth.keys,
                "us-east-1",
                &format!("{SECRETSMANAGER}.{name}"),
                body.as_bytes(),
                std::time::SystemTime::now(),
            );
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            berth.post("/", &headers, body.as_bytes())
        },
    );
    for op in [
        "CreateSecret",
        "GetSecretValue",
        "PutSecretValue",
        "DeleteSecret",
        "RestoreSecret",
    ] {
        assert!(implemented.contains(op), "{op}");
    }
}

#[test]
fn every_cloudwatch_operation_is_implemented_or_listed_as_unsupported() {
    let implemented = check_ledger(
        &botocore_model_of("cloudwatch/2010-08-01"),
        CLOUDWATCH,
        "CloudWatch",
        CLOUDWATCH_UNSUPPORTED,
        40,
        |berth, name, input| {
            let body = input.to_string();
            let mut headers = sign_for(
                "monitoring",
                berth.addr,
                &berth.keys,
                "us-east-1",
                &format!("{CLOUDWATCH}.{name}"),
                body.as_bytes(),
                std::time::SystemTime::now(),
            );
            headers.push(("x-amzn-query-mode".into(), "true".into()));
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            berth.post("/", &headers, body.as_bytes())
        },
    );
    for op in [
        "PutMetricData",
        "GetMetricData",
        "PutMetricAlarm",
        "DescribeAlarms",
    ] {
        assert!(implemented.contains(op), "{op}");
    }
}

#[test]
fn every_elbv2_operation_is_implemented_or_listed_as_unsupported() {
    let model = botocore_model_of("elbv2/2015-12-01");
    let shapes = model["shapes"].as_object().expect("shapes").clone();
    let implemented = check_ledger(
        &model,
        "",
        "ELBv2",
        ELBV2_UNSUPPORTED,
        40,
        |berth, name, input| {
            let input_shape = model["operations"][name]["input"]["shape"].as_str();
            let mut pairs = vec![
                ("Action".to_string(), name.to_string()),
                ("Version".to_string(), "2015-12-01".to_string()),
            ];
            if let Some(shape) = input_shape {
                form_pairs(&shapes, shape, input, "", &mut pairs);
            }
            let body = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
                .collect::<Vec<_>>()
                .join("&");
            let headers = sign_form(
                "elasticloadbalancing",
                berth.addr,
                &berth.keys,
                "us-east-1",
                body.as_bytes(),
                std::time::SystemTime::now(),
            );
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            xml_error_as_json(berth.post("/", &headers, body.as_bytes()))
        },
    );
    for op in [
        "CreateLoadBalancer",
        "CreateTargetGroup",
        "CreateListener",
        "CreateRule",
        "RegisterTargets",
        "DescribeTargetHealth",
    ] {
        assert!(implemented.contains(op), "{op}");
    }
}

/// Writes `value` (of `shape`) as botocore's query serializer does: `Name`, `List.member.N`,
/// `Map.entry.N.key`/`.value`.
fn form_pairs(
    shapes: &Map<String, Value>,
    shape: &str,
    value: &Value,
    prefix: &str,
    out: &mut Vec<(String, String)>,
) {
    let s = &shapes[shape];
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    match (s["type"].as_str().unwrap_or_default(), value) {
        ("structure", Value::Object(obj)) => {
            for (k, v) in obj {
                let member = s["members"][k]["shape"].as_str().expect("member shape");
                form_pairs(shapes, member, v, &join(k), out);
            }
        }
        ("list", Value::Array(items)) => {
            let member = s["member"]["shape"].as_str().expect("list member");
            for (i, item) in items.iter().enumerate() {
                form_pairs(
                    shapes,
                    member,
                    item,
                    &format!("{prefix}.member.{}", i + 1),
                    out,
                );
            }
        }
        ("map", Value::Object(obj)) => {
            let val = s["value"]["shape"].as_str().expect("map value");
            for (i, (k, v)) in obj.iter().enumerate() {
                out.push((format!("{prefix}.entry.{}.key", i + 1), k.clone()));
                form_pairs(
                    shapes,
                    val,
                    v,
                    &format!("{prefix}.entry.{}.value", i + 1),
                    out,
                );
            }
        }
        (_, Value::String(v)) => out.push((prefix.to_string(), v.clone())),
        (_, v) => out.push((prefix.to_string(), v.to_string())),
    }
}

fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An awsQuery answer in the awsJson error form the ledger reads (`__type`, `message`).
fn xml_error_as_json(r: Response) -> Response {
    if r.status == 200 {
        return r;
    }
    let text = r.text();
    let between = |open: &str, close: &str| -> String {
        text.split_once(open)
            .and_then(|(_, rest)| rest.split_once(close))
            .map(|(v, _)| v.to_string())
            .unwrap_or_default()
    };
    let body = json!({
        "__type": between("<Code>", "</Code>"),
        "message": between("<Message>", "</Message>"),
    });
    Response {
        body: body.to_string().into_bytes(),
        ..r
    }
}

/// Asks a fresh berth every operation of `model` (awsJson `target`) through `call` and checks
/// the answers against the `unsupported` ledger. Returns the operations berth serves.
fn check_ledger(
    model: &Value,
    target: &str,
    service: &str,
    unsupported_txt: &str,
    at_least: usize,
    call: impl Fn(&Berth, &str, &Value) -> Response,
) -> BTreeSet<String> {
    assert_eq!(
        model["metadata"]["targetPrefix"]
            .as_str()
            .unwrap_or_default(),
        target
    );
    let shapes = model["shapes"].as_object().expect("shapes");
    let operations = model["operations"].as_object().expect("operations");
    assert!(
        operations.len() > at_least,
        "the {service} model has its operations"
    );

    // The file: `Name: reason` per line, comments and blank lines aside.
    let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for line in unsupported_txt.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, reason)) = line.split_once(':') else {
            problems.push(format!("line without 'Name: reason': {line}"));
            continue;
        };
        let (name, reason) = (name.trim(), reason.trim());
        if reason.is_empty() {
            problems.push(format!("{name} is listed without a reason"));
        }
        if listed.insert(name, reason).is_some() {
            problems.push(format!("{name} is listed twice"));
        }
        if !operations.contains_key(name) {
            problems.push(format!(
                "{name} is listed but is not an operation of the {service} model"
            ));
        }
    }

    let berth = Berth::start(Opts::default());
    let mut implemented = BTreeSet::new();
    for (name, op) in operations {
        let input = match op["input"]["shape"].as_str() {
            Some(shape) => minimal(shapes, shape, 0),
            None => json!({}),
        };
        let r = call(&berth, name, &input);
        let code = r.error_code();
        assert!(
            r.status < 500,
            "{name} {input} answered {}: {}",
            r.status,
            r.text()
        );
        let unsupported = code == "UnsupportedOperationException";
        if unsupported {
            assert!(
                r.message().contains(name.as_str()),
                "{name}: the message names the operation: {}",
                r.text()
            );
        }
        match (listed.contains_key(name.as_str()), unsupported) {
            (true, true) => {}
            (true, false) => problems.push(format!(
                "{name} is served now ({} {}): remove it from unsupported-operations.txt",
                r.status,
                if code.is_empty() { "OK" } else { &code }
            )),
            (false, true) => problems.push(format!(
                "{name} is not served: implement it or list it in unsupported-operations.txt"
            )),
            (false, false) if code == "UnknownOperationException" => problems.push(format!(
                "{name} is unknown to berth's copy of the model: {}",
                r.text()
            )),
            (false, false) => {
                implemented.insert(name.clone());
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the operation ledger is out of date:\n  {}",
        problems.join("\n  ")
    );
    assert_eq!(
        implemented.len() + listed.len(),
        operations.len(),
        "implemented: {implemented:?}"
    );
    implemented
}

#[test]
fn minimal_inputs_follow_the_model() {
    let shapes = json!({
        "In": {"type": "structure", "required": ["a", "l", "e"], "members": {
            "a": {"shape": "S"}, "l": {"shape": "L"}, "e": {"shape": "E"}, "o": {"shape": "S"}
        }},
        "S": {"type": "string", "min": 3},
        "E": {"type": "string", "enum": ["X", "Y"]},
        "L": {"type": "list", "member": {"shape": "I"}, "min": 2},
        "I": {"type": "integer", "min": 5}
    });
    let shapes = shapes.as_object().expect("object");
    assert_eq!(
        minimal(shapes, "In", 0),
        json!({"a": "aaa", "l": [5, 5], "e": "X"})
    );
}
