//! The CloudWatch Logs API end to end through the real `aws logs` CLI (v1, which has no
//! `logs tail`: following a stream is `get-log-events` with the forward token, and searching is
//! `filter-log-events`, whose CLI paginator follows `nextToken` to the end).

use crate::harness::{Berth, Opts};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

fn logs(berth: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    berth.aws_profile(&all).json()
}

#[track_caller]
fn logs_quiet(berth: &Berth, args: &[&str]) {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
}

#[track_caller]
fn logs_fails(berth: &Berth, args: &[&str], code: &str) {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    assert_ne!(out.code, 0, "{args:?} succeeded: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("({code})")),
        "{args:?}: expected {code}, got: {}",
        out.stderr
    );
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_owned())
        .collect()
}

#[test]
fn the_aws_cli_creates_writes_reads_and_filters_logs() {
    let berth = Berth::start(Opts::default());
    logs_quiet(
        &berth,
        &[
            "create-log-group",
            "--log-group-name",
            "/ecs/web",
            "--tags",
            "team=a",
        ],
    );
    logs_fails(
        &berth,
        &["create-log-group", "--log-group-name", "/ecs/web"],
        "ResourceAlreadyExistsException",
    );
    logs_fails(
        &berth,
        &["create-log-group", "--log-group-name", "bad:name"],
        "InvalidParameterException",
    );
    logs_quiet(
        &berth,
        &[
            "put-retention-policy",
            "--log-group-name",
            "/ecs/web",
            "--retention-in-days",
            "7",
        ],
    );
    logs_fails(
        &berth,
        &[
            "put-retention-policy",
            "--log-group-name",
            "/ecs/web",
            "--retention-in-days",
            "2",
        ],
        "InvalidParameterException",
    );
    let groups = logs(
        &berth,
        &["describe-log-groups", "--log-group-name-prefix", "/ecs/"],
    );
    let g = &groups["logGroups"][0];
    assert_eq!(g["logGroupName"], "/ecs/web");
    assert_eq!(g["retentionInDays"], 7);
    assert!(
        g["arn"]
            .as_str()
            .expect("arn")
            .ends_with(":log-group:/ecs/web:*"),
        "{g}"
    );

    for s in ["app/a", "app/b"] {
        logs_quiet(
            &berth,
            &[
                "create-log-stream",
                "--log-group-name",
                "/ecs/web",
                "--log-stream-name",
                s,
            ],
        );
    }
    let t = now_ms() - 60_000;
    // Out of order within the batch: AWS accepts it now, and so does berth.
    let events: Vec<Value> = (0..25)
        .rev()
        .map(|i| json!({"timestamp": t + i, "message": format!("line {i:02}{}", if i % 5 == 0 { " ERROR disk full" } else { "" })}))
        .collect();
    let put = logs(
        &berth,
        &[
            "put-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "app/a",
            "--log-events",
            &Value::Array(events).to_string(),
        ],
    );
    assert!(put.get("rejectedLogEventsInfo").is_none(), "{put}");
    logs(
        &berth,
        &[
            "put-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "app/b",
            "--log-events",
            &json!([{"timestamp": t + 100, "message": "other ERROR disk full"}]).to_string(),
        ],
    );

    // get-log-events from the head, ten at a time, following the forward token until it repeats.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut args = vec![
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "app/a",
            "--limit",
            "10",
        ];
        let t;
        match &token {
            Some(tok) => {
                t = tok.clone();
                args.extend(["--next-token", t.as_str()]);
            }
            None => args.push("--start-from-head"),
        }
        let page = logs(&berth, &args);
        seen.extend(messages(&page));
        let next = page["nextForwardToken"]
            .as_str()
            .expect("forward token")
            .to_owned();
        assert!(next.starts_with("f/"), "{next}");
        if token.as_deref() == Some(next.as_str()) {
            break;
        }
        token = Some(next);
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[0], "line 00 ERROR disk full");
    assert_eq!(seen[24], "line 24");

    // filter-log-events across streams; the CLI pages through nextToken by itself.
    let found = logs(
        &berth,
        &[
            "filter-log-events",
            "--log-group-name",
            "/ecs/web",
            "--filter-pattern",
            "ERROR \"disk full\"",
            "--page-size",
            "2",
            "--start-time",
            &t.to_string(),
        ],
    );
    let msgs = messages(&found);
    assert_eq!(msgs.len(), 6, "{msgs:?}");
    assert_eq!(msgs[5], "other ERROR disk full");
    assert_eq!(found["events"][5]["logStreamName"], "app/b");
    let one = logs(
        &berth,
        &[
            "filter-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-names",
            "app/b",
        ],
    );
    assert_eq!(messages(&one), ["other ERROR disk full"]);
    logs_fails(
        &berth,
        &[
            "filter-log-events",
            "--log-group-name",
            "/ecs/web",
            "--filter-pattern",
            "{ $.x = 1 }",
        ],
        "InvalidParameterException",
    );

    let streams = logs(
        &berth,
        &[
            "describe-log-streams",
            "--log-group-name",
            "/ecs/web",
            "--order-by",
            "LastEventTime",
            "--descending",
        ],
    );
    assert_eq!(streams["logStreams"][0]["logStreamName"], "app/b");
    assert_eq!(streams["logStreams"][1]["lastEventTimestamp"], t + 24);

    logs_quiet(
        &berth,
        &["delete-log-group", "--log-group-name", "/ecs/web"],
    );
    logs_fails(
        &berth,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "app/a",
        ],
        "ResourceNotFoundException",
    );
}

/// A task whose container uses the `awslogs` driver on real Docker: `berth up`'s agent ships
/// its stdout and stderr, and `aws logs get-log-events` shows them under ECS's stream name
/// `prefix/container/task-id`, in a group the agent created (`awslogs-create-group`).
#[test]
fn a_tasks_awslogs_output_reaches_get_log_events() {
    use crate::tasks::{DockerCleanup, import_busybox};
    use std::time::{Duration, Instant};

    let berth = Berth::start(Opts::default());
    let image = import_busybox(&format!("logs-{}", std::process::id()));
    let mut cleanup = DockerCleanup {
        image: image.clone(),
        task_arns: vec![],
    };
    let region = berth
        .aws_profile(&["configure", "get", "region"])
        .stdout
        .trim()
        .to_owned();
    let defs = json!([{
        "name": "echo",
        "image": image,
        "essential": true,
        "memory": 64,
        "command": ["sh", "-c", "echo line 1; echo line 2; echo oops >&2; echo line 3; sleep 2"],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/ecs/e2e", "awslogs-region": region,
            "awslogs-stream-prefix": "app", "awslogs-create-group": "true"}}
    }])
    .to_string();
    berth
        .aws_profile(&[
            "ecs",
            "register-task-definition",
            "--family",
            "logs-e2e",
            "--container-definitions",
            &defs,
        ])
        .json();

    // The in-process agent registers shortly after start: retry RunTask until it has a node.
    let deadline = Instant::now() + Duration::from_secs(90);
    let arn = loop {
        let out = berth
            .aws_profile(&[
                "ecs",
                "run-task",
                "--cluster",
                "default",
                "--task-definition",
                "logs-e2e",
            ])
            .json();
        if let Some(arn) = out["tasks"][0]["taskArn"].as_str() {
            break arn.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "RunTask never placed the task: {out}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    cleanup.task_arns.push(arn.clone());
    let task_id = arn.rsplit('/').next().expect("task id").to_owned();
    let stream = format!("app/echo/{task_id}");

    let deadline = Instant::now() + Duration::from_secs(90);
    let lines = loop {
        let out = berth.aws_profile(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            "/ecs/e2e",
            "--log-stream-name",
            &stream,
            "--start-from-head",
        ]);
        if out.code == 0 {
            let lines = messages(&out.json());
            if lines.len() >= 4 {
                break lines;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the task's lines never reached {stream}: {}\nberth stderr:\n{}",
            out.stderr,
            berth.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // stdout keeps its order; stderr is a separate pipe, which Docker may interleave earlier.
    let stdout: Vec<&String> = lines.iter().filter(|l| l.starts_with("line")).collect();
    assert_eq!(stdout, ["line 1", "line 2", "line 3"], "{lines:?}");
    assert!(lines.iter().any(|l| l == "oops"), "{lines:?}");
    let groups = logs(
        &berth,
        &["describe-log-groups", "--log-group-name-prefix", "/ecs/e2e"],
    );
    assert_eq!(groups["logGroups"][0]["logGroupName"], "/ecs/e2e");
}

/// A SIGKILLed agent resumes shipping after the last line it shipped: across the restart the
/// stream holds every line once, none lost, none doubled.
#[test]
fn a_restarted_agent_resumes_shipping_without_gaps_or_duplicates() {
    use crate::harness::AgentProcess;
    use crate::tasks::{DockerCleanup, import_busybox};
    use std::time::{Duration, Instant};

    let berth = Berth::start(Opts::default().server_only());
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "default"}));
    let image = import_busybox(&format!("logs-restart-{}", std::process::id()));
    let mut cleanup = DockerCleanup {
        image: image.clone(),
        task_arns: vec![],
    };
    let agent_dir = berth.dir.path().join("agent");
    let mut agent = AgentProcess::start(&berth.endpoint, "default", &agent_dir);
    let region = berth
        .aws_profile(&["configure", "get", "region"])
        .stdout
        .trim()
        .to_owned();
    let defs = json!([{
        "name": "ticker", "image": image, "essential": true, "memory": 16,
        "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/ecs/restart", "awslogs-region": region,
            "awslogs-stream-prefix": "t", "awslogs-create-group": "true"}}
    }])
    .to_string();
    berth
        .aws_profile(&[
            "ecs",
            "register-task-definition",
            "--family",
            "logs-restart",
            "--container-definitions",
            &defs,
        ])
        .json();
    let deadline = Instant::now() + Duration::from_secs(90);
    let arn = loop {
        let out = berth
            .aws_profile(&[
                "ecs",
                "run-task",
                "--cluster",
                "default",
                "--task-definition",
                "logs-restart",
            ])
            .json();
        if let Some(arn) = out["tasks"][0]["taskArn"].as_str() {
            break arn.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "RunTask never placed the task: {out}\nagent:\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    cleanup.task_arns.push(arn.clone());
    let stream = format!("t/ticker/{}", arn.rsplit('/').next().expect("task id"));
    let ticks = |berth: &Berth| -> Vec<i64> {
        let out = berth.aws_profile(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            "/ecs/restart",
            "--log-stream-name",
            &stream,
            "--start-from-head",
        ]);
        if out.code != 0 {
            return Vec::new();
        }
        messages(&out.json())
            .iter()
            .filter_map(|m| m.strip_prefix("tick ")?.parse().ok())
            .collect()
    };
    let wait_for = |at_least: i64, agent: &AgentProcess| loop {
        let t = ticks(&berth);
        if t.last().is_some_and(|&n| n >= at_least) {
            return t;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "no tick {at_least} in {stream}; have {:?}\nagent:\n{}",
            t.last(),
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let before = wait_for(10, &agent);
    agent.kill();
    // The container goes on printing while no agent ships.
    std::thread::sleep(Duration::from_secs(2));
    let agent = AgentProcess::start(&berth.endpoint, "default", &agent_dir);
    let last_before = *before.last().expect("ticks");
    let after = wait_for(last_before + 60, &agent);
    let expected: Vec<i64> = (0..=*after.last().expect("ticks")).collect();
    assert_eq!(
        after, expected,
        "every line once, in order, across the agent restart"
    );
}
