//! berth's own endpoints and process lifecycle: `/_berth/health`, `POST /_berth/reset` (and its
//! absence without `--allow-reset`), a clean exit on SIGTERM, and the open file limit berth
//! raises at start.

use crate::harness::{Berth, ECS, Opts, read_response, request_head};
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn health_answers_as_soon_as_berth_is_ready() {
    let berth = Berth::start(Opts::default());
    let r = berth.get("/_berth/health");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "ready");
    // Health needs no signature even in sigv4 mode.
    let r = berth.post("/_berth/health", &[], b"");
    assert_ne!(r.status, 200, "health is GET only");
}

#[test]
fn reset_wipes_every_resource_but_keeps_the_keys() {
    let berth = Berth::start(Opts::default());
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "doomed"}));
    berth.ecs_ok(
        "RegisterTaskDefinition",
        &json!({"family": "doomed", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]}),
    );
    berth.ecs_ok(
        "PutAccountSetting",
        &json!({"name": "containerInsights", "value": "enabled"}),
    );

    let r = berth.post("/_berth/reset", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());

    // The same key still signs: the AWS profile survives a reset.
    // Only the `default` cluster of `berth up`, made again by the reset.
    let clusters = berth.ecs_ok("ListClusters", &json!({}));
    assert_eq!(
        clusters["clusterArns"],
        json!([format!(
            "arn:aws:ecs:us-east-1:{}:cluster/default",
            berth.keys.account_id
        )])
    );
    let d = berth.ecs_ok("DescribeClusters", &json!({"clusters": ["doomed"]}));
    assert_eq!(d["clusters"], json!([]));
    for status in ["ACTIVE", "INACTIVE"] {
        let tds = berth.ecs_ok("ListTaskDefinitions", &json!({"status": status}));
        assert_eq!(tds["taskDefinitionArns"], json!([]), "{status}");
    }
    let families = berth.ecs_ok("ListTaskDefinitionFamilies", &json!({"status": "ALL"}));
    assert_eq!(families["families"], json!([]));
    let settings = berth.ecs_ok("ListAccountSettings", &json!({}));
    assert_eq!(settings["settings"], json!([]));
    // A family starts over at revision 1.
    let again = berth.ecs_ok(
        "RegisterTaskDefinition",
        &json!({"family": "doomed", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]}),
    );
    assert_eq!(again["taskDefinition"]["revision"], 1);
    let listed = berth.aws_profile(&["ecs", "list-task-definitions"]).json();
    assert_eq!(
        listed["taskDefinitionArns"].as_array().map(Vec::len),
        Some(1)
    );
}

/// `Max open files` of a process as (soft, hard), from `/proc/<pid>/limits`.
fn open_file_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut values = line["Max open files".len()..].split_whitespace();
    let soft = values.next().expect("soft").to_owned();
    let hard = values.next().expect("hard").to_owned();
    (soft, hard)
}

#[test]
fn berth_lifts_its_soft_open_file_limit_to_the_hard_one() {
    let berth = Berth::start(Opts::default().server_only().open_file_limit(512, 4096));
    assert_eq!(
        open_file_limit(berth.pid),
        ("4096".to_owned(), "4096".to_owned())
    );
    assert_eq!(berth.get("/_berth/health").status, 200);
}

#[test]
fn reset_does_not_exist_without_allow_reset() {
    let berth = Berth::start(Opts::default().without_reset());
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "kept"}));
    let r = berth.post("/_berth/reset", &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    // `berth up` creates the cluster `default` besides the one the test made.
    let clusters = berth.ecs_ok("ListClusters", &json!({}));
    assert_eq!(clusters["clusterArns"].as_array().map(Vec::len), Some(2));
}

#[test]
fn sigterm_exits_cleanly() {
    let berth = Berth::start(Opts::default());
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "before-exit"}));
    let status = berth
        .signal_and_wait("TERM", Duration::from_secs(10))
        .expect("berth did not exit within 10 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        berth.stderr()
    );
    // The data written before the signal is there on the next start.
    let berth = berth.restart(Opts::default());
    // `berth up` creates the cluster `default` besides the one the test made.
    let clusters = berth.ecs_ok("ListClusters", &json!({}));
    assert_eq!(clusters["clusterArns"].as_array().map(Vec::len), Some(2));
}

#[test]
fn sigterm_exits_cleanly_with_an_idle_keep_alive_connection_open() {
    let berth = Berth::start(Opts::open());
    // A client that pools connections, as every SDK does, keeps one open after its request.
    let mut stream = TcpStream::connect(berth.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let target = format!("{ECS}.ListClusters");
    let head = request_head(
        berth.addr,
        "POST",
        "/",
        &[("x-amz-target", &target)],
        2,
        true,
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(b"{}").expect("write");
    let r = read_response(&mut stream).expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());

    let status = berth
        .signal_and_wait("TERM", Duration::from_secs(10))
        .expect("an idle keep-alive connection kept berth from exiting on SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        berth.stderr()
    );
    drop(stream);
}
