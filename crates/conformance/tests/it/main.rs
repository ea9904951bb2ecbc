//! The suite's honesty: a tiny fake ECS server answers like berth but with one deliberate defect
//! per scenario, and the suite must report each defect with the expected kind; the same fake
//! without a defect must pass, so the checks are not simply always failing.

mod generator;

use berth_conformance::suite::{Config, Part};
use berth_conformance::{Client, Kind, Model, Profile, Report, Suite, model::botocore_data_dir};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};

/// The one thing the fake gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    /// DescribeClusters: a strategy item without its required `capacityProvider`.
    MissingRequired,
    /// ListAccountSettings: a `type` outside the `SettingType` enum.
    WrongEnum,
    /// ListClusters: a member the output shape does not have.
    UnknownMember,
    /// ListClusters: 500 for input of the wrong type.
    ServerErrorOnBadInput,
    /// ListClusters: an error code the operation does not declare.
    UndeclaredError,
    /// ListClusters: each page after the first starts with the previous page's last item.
    PageRepeats,
    /// ListClusters: each token skips one item.
    PageSkips,
    /// CreateCluster: writes before it validates.
    WritesOnInvalidInput,
    /// DescribeClusters: drops the tags CreateCluster accepted.
    EchoDropsTags,
    /// ListClusters: the last page hands back the token it was sent, as GetLogEvents does.
    SameTokenAtEnd,
    /// DescribeClusters: finds clusters named by name only, not by ARN.
    EchoNamesOnly,
    /// DescribeClusters: leaves out the `settings` CreateCluster accepted.
    EchoDropsSettings,
}

#[derive(Default)]
struct State {
    clusters: Vec<(String, Value)>,
}

const ARN_PREFIX: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/";

fn err(status: u16, code: &str) -> (u16, Value) {
    (status, json!({"__type": code, "message": "fake"}))
}

/// What ECS would answer, but for `defect`.
fn handle(defect: Defect, state: &mut State, op: &str, body: &Value) -> (u16, Value) {
    let Some(obj) = body.as_object() else {
        return err(400, "SerializationException");
    };
    let bad_type = |key: &str, ok: fn(&Value) -> bool| obj.get(key).is_some_and(|v| !ok(v));
    match op {
        "__reset" => {
            state.clusters.clear();
            (200, json!({}))
        }
        "ListClusters" => {
            if bad_type("nextToken", Value::is_string) || bad_type("maxResults", Value::is_i64) {
                return match defect {
                    Defect::ServerErrorOnBadInput => err(500, "ServerException"),
                    Defect::UndeclaredError => err(400, "ValidationException"),
                    _ => err(400, "SerializationException"),
                };
            }
            let max = obj.get("maxResults").and_then(Value::as_i64).unwrap_or(100);
            if !(1..=100).contains(&max) {
                return err(400, "InvalidParameterException");
            }
            let mut start = 0usize;
            if let Some(t) = obj.get("nextToken").and_then(Value::as_str) {
                // A token is `t<index>.<check>`; anything else is forged.
                let parsed = t
                    .strip_prefix('t')
                    .and_then(|r| r.split_once('.'))
                    .and_then(|(i, c)| {
                        let i: usize = i.parse().ok()?;
                        (c.parse::<usize>().ok()? == i * 7919 + 13).then_some(i)
                    });
                match parsed {
                    Some(i) => start = i,
                    None => return err(400, "InvalidParameterException"),
                }
                if defect == Defect::PageRepeats {
                    start -= 1;
                }
                if defect == Defect::PageSkips {
                    start += 1;
                }
            }
            let names: Vec<Value> = state
                .clusters
                .iter()
                .map(|(n, _)| json!(format!("{ARN_PREFIX}{n}")))
                .collect();
            let end = (start + max as usize).min(names.len());
            let mut out = json!({"clusterArns": names.get(start..end).unwrap_or(&[])});
            if end < names.len() {
                out["nextToken"] = json!(format!("t{end}.{}", end * 7919 + 13));
            } else if defect == Defect::SameTokenAtEnd
                && let Some(sent) = obj.get("nextToken")
            {
                out["nextToken"] = sent.clone();
            }
            if defect == Defect::UnknownMember {
                out["clusterCount"] = json!(names.len());
            }
            (200, out)
        }
        "CreateCluster" => {
            let name = obj
                .get("clusterName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            // What the cluster was created with, given back whole by DescribeClusters.
            let tags = body.clone();
            if defect == Defect::WritesOnInvalidInput {
                state.clusters.push((name.to_string(), tags.clone()));
            }
            if bad_type("clusterName", Value::is_string) || bad_type("tags", Value::is_array) {
                return err(400, "SerializationException");
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return err(400, "InvalidParameterException");
            }
            if defect != Defect::WritesOnInvalidInput {
                state.clusters.push((name.to_string(), tags.clone()));
            }
            (200, json!({"cluster": cluster(name, &tags)}))
        }
        "DescribeClusters" => {
            let wanted: Vec<String> = obj
                .get("clusters")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let mut clusters = Vec::new();
            for w in wanted {
                let name = match defect {
                    Defect::EchoNamesOnly => w.as_str(),
                    _ => w.strip_prefix(ARN_PREFIX).unwrap_or(&w),
                };
                if let Some((n, tags)) = state.clusters.iter().find(|(n, _)| n == name) {
                    let mut c = cluster(n, tags);
                    if defect == Defect::EchoDropsTags {
                        c["tags"] = json!([]);
                    }
                    if defect == Defect::EchoDropsSettings
                        && let Some(c) = c.as_object_mut()
                    {
                        c.remove("settings");
                    }
                    clusters.push(c);
                }
            }
            if defect == Defect::MissingRequired {
                clusters.push(
                    json!({"clusterName": "x", "defaultCapacityProviderStrategy": [{"weight": 1}]}),
                );
            }
            (200, json!({"clusters": clusters, "failures": []}))
        }
        "ListAccountSettings" => {
            let kind = if defect == Defect::WrongEnum {
                "bogus"
            } else {
                "user"
            };
            (
                200,
                json!({"settings": [{"name": "serviceLongArnFormat", "value": "enabled", "type": kind}]}),
            )
        }
        // A service that is stable at once, for the waiter through boto3; `gone` never was.
        "DescribeServices" => {
            let asked = obj.get("services").cloned().unwrap_or(json!([]));
            if asked == json!(["gone"]) {
                return (
                    200,
                    json!({"services": [], "failures": [{"arn": "gone", "reason": "MISSING"}]}),
                );
            }
            (
                200,
                json!({"services": [{"serviceName": "s", "status": "ACTIVE", "runningCount": 1,
                    "desiredCount": 1, "deployments": [{"status": "PRIMARY"}]}], "failures": []}),
            )
        }
        _ => err(400, "UnknownOperationException"),
    }
}

/// A cluster as the fake describes it: every member it was created with (CreateCluster's input
/// members are all members of `Cluster`), its ARN, name and status.
fn cluster(name: &str, created: &Value) -> Value {
    let mut c = created.clone();
    if !c.is_object() {
        c = json!({});
    }
    c["clusterArn"] = json!(format!("{ARN_PREFIX}{name}"));
    c["clusterName"] = json!(name);
    c["status"] = json!("ACTIVE");
    if c.get("tags").is_none() {
        c["tags"] = json!([]);
    }
    c
}

/// Starts the fake on a free loopback port; it serves until the test process ends.
fn fake(defect: Defect) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Mutex::new(State::default()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let state = state.clone();
            // One thread per connection: boto3 may keep a connection open between polls.
            std::thread::spawn(move || serve(stream, defect, &state));
        }
    });
    addr
}

fn serve(stream: TcpStream, defect: Defect, state: &Mutex<State>) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (mut len, mut target) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let op = if path.starts_with("/_berth/reset") {
            "__reset".to_string()
        } else {
            target.rsplit('.').next().unwrap_or_default().to_string()
        };
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => Value::Null,
            }
        };
        let (status, out) = handle(defect, &mut state.lock().expect("lock"), &op, &input);
        let out = out.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-RequestId: fake-1\r\ncontent-length: {}\r\n\r\n",
            out.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

fn model() -> Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::load(&botocore_data_dir().expect("botocore"), "ecs").expect("model"))
        .clone()
}

/// A profile for the fake: cluster fixtures for paging and a ListClusters snapshot.
fn profile() -> Profile {
    let mut p = Profile::bare("ecs");
    p.snapshot = |_| vec![("ListClusters", json!({}))];
    p.page_fixtures = vec![berth_conformance::profile::PageFixture {
        op: "ListClusters",
        list_body: json!({}),
        count: 7,
        create: |c, i, _| {
            c.call(
                "CreateCluster",
                &json!({"clusterName": format!("page-{i}")}),
            )
        },
    }];
    let ecs = Profile::ecs();
    p.echoes = ecs
        .echoes
        .into_iter()
        .filter(|e| e.create == "CreateCluster")
        .collect();
    p
}

/// Runs `parts` of the suite for `ops` against a fake with `defect`.
fn run(
    defect: Defect,
    implemented: &[&str],
    ops: &[&str],
    parts: &[Part],
    profile: Profile,
) -> Report {
    run_on(model(), defect, implemented, ops, parts, profile)
}

/// [`run`] on `model`.
fn run_on(
    model: Model,
    defect: Defect,
    implemented: &[&str],
    ops: &[&str],
    parts: &[Part],
    profile: Profile,
) -> Report {
    let client = Client::new(fake(defect), "AKIDFAKE", "secret", &model);
    let config = Config {
        ops: Some(ops.iter().map(|s| s.to_string()).collect()),
        parts: parts.to_vec(),
        ..Config::default()
    };
    let implemented = implemented.iter().map(|s| s.to_string()).collect();
    let report = Suite::new(model, implemented, client, profile, config).run();
    println!("{defect:?}:\n{}", report.render());
    report
}

#[track_caller]
fn assert_caught(report: &Report, part: Part, kind: Kind) {
    assert!(report.failed() > 0, "the defect went unnoticed");
    assert!(
        report.has_failure(Some(part), kind),
        "no {kind:?} failure in the {} part:\n{}",
        part.name(),
        report.render()
    );
}

const LIST: &[&str] = &["ListClusters", "CreateCluster"];

#[test]
fn a_correct_server_passes() {
    // The fake validates ListClusters fully, so every part runs on it; it validates only the
    // types of CreateCluster, so that one is checked for its answers and echo.
    let parts = [
        Part::Valid,
        Part::Invalid,
        Part::Paginators,
        Part::Presigned,
    ];
    let r = run(Defect::None, LIST, &["ListClusters"], &parts, profile());
    assert!(r.passed() > 10, "{}", r.render());
    assert_eq!(r.failed(), 0, "{}", r.render());
    let implemented = ["CreateCluster", "DescribeClusters"];
    let r = run(
        Defect::None,
        &implemented,
        &["CreateCluster"],
        &[Part::Valid, Part::Echo],
        profile(),
    );
    assert!(r.has_passed(Part::Echo), "{}", r.render());
    assert_eq!(r.failed(), 0, "{}", r.render());
}

#[test]
fn a_missing_required_member_is_caught() {
    let r = run(
        Defect::MissingRequired,
        &["DescribeClusters"],
        &["DescribeClusters"],
        &[Part::Valid],
        profile(),
    );
    assert_caught(&r, Part::Valid, Kind::MissingRequired);
}

#[test]
fn a_wrong_enum_value_is_caught() {
    let r = run(
        Defect::WrongEnum,
        &["ListAccountSettings"],
        &["ListAccountSettings"],
        &[Part::Valid],
        profile(),
    );
    assert_caught(&r, Part::Valid, Kind::BadEnum);
}

#[test]
fn a_member_the_model_lacks_is_caught() {
    let r = run(
        Defect::UnknownMember,
        LIST,
        &["ListClusters"],
        &[Part::Valid],
        profile(),
    );
    assert_caught(&r, Part::Valid, Kind::UnknownMember);
}

#[test]
fn a_500_for_bad_input_is_caught() {
    let r = run(
        Defect::ServerErrorOnBadInput,
        LIST,
        &["ListClusters"],
        &[Part::Invalid],
        profile(),
    );
    assert_caught(&r, Part::Invalid, Kind::ServerError);
}

#[test]
fn an_undeclared_error_code_is_caught() {
    let r = run(
        Defect::UndeclaredError,
        LIST,
        &["ListClusters"],
        &[Part::Invalid],
        profile(),
    );
    assert_caught(&r, Part::Invalid, Kind::UndeclaredError);
}

#[test]
fn a_pagination_that_repeats_an_item_is_caught() {
    let r = run(
        Defect::PageRepeats,
        LIST,
        &["ListClusters"],
        &[Part::Paginators],
        profile(),
    );
    assert_caught(&r, Part::Paginators, Kind::PageRepeat);
}

/// A list that ends by handing back the token it was sent never ends for a paginator that does
/// not expect it, and ends there for one marked `stop_on_same_token` (GetLogEvents').
#[test]
fn a_token_that_comes_back_unchanged_ends_only_a_paginator_that_expects_it() {
    let r = run(
        Defect::SameTokenAtEnd,
        LIST,
        &["ListClusters"],
        &[Part::Paginators],
        profile(),
    );
    assert_caught(&r, Part::Paginators, Kind::PageRepeat);
    let mut m = model();
    m.paginators["pagination"]["ListClusters"]["stop_on_same_token"] = json!(true);
    let r = run_on(
        m,
        Defect::SameTokenAtEnd,
        LIST,
        &["ListClusters"],
        &[Part::Paginators],
        profile(),
    );
    assert_eq!(r.failed(), 0, "{}", r.render());
    assert!(r.has_passed(Part::Paginators));
}

#[test]
fn a_pagination_that_skips_an_item_is_caught() {
    let r = run(
        Defect::PageSkips,
        LIST,
        &["ListClusters"],
        &[Part::Paginators],
        profile(),
    );
    assert_caught(&r, Part::Paginators, Kind::PageSkip);
}

#[test]
fn a_write_on_invalid_input_is_caught() {
    let r = run(
        Defect::WritesOnInvalidInput,
        LIST,
        &["CreateCluster"],
        &[Part::Invalid],
        profile(),
    );
    assert_caught(&r, Part::Invalid, Kind::StateChanged);
}

#[test]
fn a_describe_that_drops_what_create_accepted_is_caught() {
    let r = run(
        Defect::EchoDropsTags,
        &["CreateCluster", "DescribeClusters"],
        &["CreateCluster"],
        &[Part::Echo],
        profile(),
    );
    assert_caught(&r, Part::Echo, Kind::EchoMismatch);
}

#[test]
fn a_describe_that_leaves_out_an_accepted_member_is_caught() {
    let r = run(
        Defect::EchoDropsSettings,
        &["CreateCluster", "DescribeClusters"],
        &["CreateCluster"],
        &[Part::Echo],
        profile(),
    );
    assert_caught(&r, Part::Echo, Kind::EchoMismatch);
    assert!(
        r.failures().all(|f| matches!(&f.outcome,
            berth_conformance::suite::Outcome::Failed { violations, .. }
                if violations.iter().any(|v| v.path == "$.settings"))),
        "{}",
        r.render()
    );
}

#[test]
fn a_describe_that_takes_names_but_not_arns_is_caught() {
    let r = run(
        Defect::EchoNamesOnly,
        &["CreateCluster", "DescribeClusters"],
        &["CreateCluster"],
        &[Part::Echo],
        profile(),
    );
    assert_caught(&r, Part::Echo, Kind::EchoMismatch);
    // Every failure is a lookup by ARN; by name the same clusters came back.
    assert!(
        r.failures().all(|f| f.case.ends_with("by full ARN")),
        "{}",
        r.render()
    );
    assert!(r.has_passed(Part::Echo), "{}", r.render());
}

/// A failure scenario passes only when boto3's wait stops on a failure acceptor: a service
/// that never was (MISSING) does; a stable one, which the waiter accepts, is caught.
#[test]
fn a_waiter_failure_acceptor_is_exercised_through_boto3() {
    let ops = ["DescribeServices"];
    let mut p = profile();
    p.waiter_scenarios = vec![
        ("ServicesStable", |_| {
            Ok(json!({"cluster": "c", "services": ["s"]}))
        }),
        ("ServicesInactive", |_| Err("not under test".into())),
    ];
    p.waiter_failures = vec![("ServicesStable", |_| {
        Ok(json!({"cluster": "c", "services": ["gone"]}))
    })];
    let r = run(Defect::None, &ops, &ops, &[Part::Waiters], p.clone());
    let case = |r: &Report| {
        r.records
            .iter()
            .find(|r| r.case == "waiter ServicesStable, failure acceptor")
            .map(|r| r.outcome.clone())
            .expect("ran")
    };
    assert!(
        matches!(case(&r), berth_conformance::suite::Outcome::Passed),
        "{}",
        r.render()
    );
    p.waiter_failures = vec![("ServicesStable", |_| {
        Ok(json!({"cluster": "c", "services": ["s"]}))
    })];
    let r = run(Defect::None, &ops, &ops, &[Part::Waiters], p);
    assert!(
        matches!(case(&r), berth_conformance::suite::Outcome::Failed { .. }),
        "{}",
        r.render()
    );
}

#[test]
fn an_implemented_waiter_without_a_scenario_fails_and_with_one_runs_through_boto3() {
    let ops = ["DescribeServices"];
    let r = run(Defect::None, &ops, &ops, &[Part::Waiters], profile());
    assert_caught(&r, Part::Waiters, Kind::Waiter);

    let mut p = profile();
    p.waiter_scenarios = vec![
        ("ServicesStable", |_| {
            Ok(json!({"cluster": "c", "services": ["s"]}))
        }),
        ("ServicesInactive", |_| {
            Err("the fake's service never goes inactive".into())
        }),
    ];
    let r = run(Defect::None, &ops, &ops, &[Part::Waiters], p);
    let stable = r
        .records
        .iter()
        .find(|r| r.case == "waiter ServicesStable")
        .expect("ran");
    assert!(
        matches!(stable.outcome, berth_conformance::suite::Outcome::Passed),
        "{}",
        r.render()
    );
}
