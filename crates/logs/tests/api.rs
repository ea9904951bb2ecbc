//! Component tests of the CloudWatch Logs API: `Logs` on an in-memory store, driven through
//! `JsonService::call` with JSON as clients send it, on a clock the tests move.

use berth_aws::{JsonService, RequestContext};
use berth_logs::{LineEvent, Logs};
use berth_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

struct World {
    logs: Logs,
    clock: Arc<AtomicI64>,
}

fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

impl World {
    fn new() -> World {
        let store = SqliteStore::open_in_memory().expect("in-memory store");
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let logs = Logs::new(
            store.into(),
            [7u8; 32],
            Arc::new(move || c.load(Ordering::SeqCst)),
        );
        World { logs, clock }
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    async fn call(&self, op: &str, input: Value) -> Result<Value, berth_aws::AwsError> {
        let bytes = self.logs.call(ctx(), op, input).await?;
        Ok(serde_json::from_slice(&bytes).expect("answers are JSON"))
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        match self.call(op, input.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {input} failed: {e}"),
        }
    }

    async fn err(&self, op: &str, input: Value) -> (String, String) {
        match self.call(op, input.clone()).await {
            Ok(v) => panic!("{op} {input} succeeded: {v}"),
            Err(e) => (e.code.to_string(), e.message),
        }
    }

    async fn group_and_stream(&self, g: &str, s: &str) {
        self.ok("CreateLogGroup", json!({"logGroupName": g})).await;
        self.ok(
            "CreateLogStream",
            json!({"logGroupName": g, "logStreamName": s}),
        )
        .await;
    }

    async fn put(&self, g: &str, s: &str, events: &[(i64, &str)]) -> Value {
        let events: Vec<Value> = events
            .iter()
            .map(|(t, m)| json!({"timestamp": t, "message": m}))
            .collect();
        self.ok(
            "PutLogEvents",
            json!({"logGroupName": g, "logStreamName": s, "logEvents": events}),
        )
        .await
    }
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_owned())
        .collect()
}

#[tokio::test]
async fn groups_are_created_described_and_deleted_as_aws_answers() {
    let w = World::new();
    w.ok(
        "CreateLogGroup",
        json!({"logGroupName": "/ecs/web", "tags": {"team": "a"}}),
    )
    .await;
    let (code, _) = w
        .err("CreateLogGroup", json!({"logGroupName": "/ecs/web"}))
        .await;
    assert_eq!(code, "ResourceAlreadyExistsException");
    let (code, _) = w
        .err("CreateLogGroup", json!({"logGroupName": "aws/mine"}))
        .await;
    assert_eq!(code, "InvalidParameterException");
    for n in ["/ecs/api", "other"] {
        w.ok("CreateLogGroup", json!({"logGroupName": n})).await;
    }
    let d = w
        .ok("DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs/"}))
        .await;
    let groups = d["logGroups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["logGroupName"], "/ecs/api");
    assert_eq!(
        groups[1]["arn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/web:*"
    );
    assert_eq!(
        groups[1]["logGroupArn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/web"
    );
    assert_eq!(groups[1]["creationTime"], T0);
    assert_eq!(groups[1]["storedBytes"], 0);
    assert!(groups[1].get("retentionInDays").is_none());

    // Pagination: one at a time through all three.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({"limit": 1});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let page = w.ok("DescribeLogGroups", req).await;
        for g in page["logGroups"].as_array().expect("groups") {
            names.push(g["logGroupName"].as_str().expect("name").to_owned());
        }
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["/ecs/api", "/ecs/web", "other"]);

    let (code, msg) = w
        .err(
            "PutRetentionPolicy",
            json!({"logGroupName": "/ecs/web", "retentionInDays": 2}),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("[1, 3, 5, 7, 14, 30"), "{msg}");
    w.ok(
        "PutRetentionPolicy",
        json!({"logGroupName": "/ecs/web", "retentionInDays": 7}),
    )
    .await;
    let d = w
        .ok(
            "DescribeLogGroups",
            json!({"logGroupNamePrefix": "/ecs/web"}),
        )
        .await;
    assert_eq!(d["logGroups"][0]["retentionInDays"], 7);

    w.ok("DeleteLogGroup", json!({"logGroupName": "/ecs/web"}))
        .await;
    let (code, msg) = w
        .err("DeleteLogGroup", json!({"logGroupName": "/ecs/web"}))
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(msg, "The specified log group does not exist.");
}

#[tokio::test]
async fn describe_filters_by_class_pattern_and_identifiers_as_documented() {
    let w = World::new();
    w.ok(
        "CreateLogGroup",
        json!({"logGroupName": "DataLogs", "logGroupClass": "INFREQUENT_ACCESS"}),
    )
    .await;
    for n in ["aws-DataLogs", "datalogs"] {
        w.ok("CreateLogGroup", json!({"logGroupName": n})).await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["logGroups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["logGroupName"].as_str().expect("name").to_owned())
            .collect()
    };
    // A case-sensitive substring, and then only the ARN, creation time and name.
    let d = w
        .ok(
            "DescribeLogGroups",
            json!({"logGroupNamePattern": "DataLogs"}),
        )
        .await;
    assert_eq!(names(&d), ["DataLogs", "aws-DataLogs"]);
    let mut members: Vec<&String> = d["logGroups"][0]
        .as_object()
        .expect("a group")
        .keys()
        .collect();
    members.sort();
    assert_eq!(members, ["arn", "creationTime", "logGroupName"]);
    let d = w
        .ok(
            "DescribeLogGroups",
            json!({"logGroupClass": "INFREQUENT_ACCESS"}),
        )
        .await;
    assert_eq!(names(&d), ["DataLogs"]);
    assert_eq!(d["logGroups"][0]["logGroupClass"], "INFREQUENT_ACCESS");
    let d = w
        .ok("DescribeLogGroups", json!({"logGroupClass": "STANDARD"}))
        .await;
    assert_eq!(names(&d), ["aws-DataLogs", "datalogs"]);
    // logGroupIdentifiers takes no other filter.
    let (code, _) = w
        .err(
            "DescribeLogGroups",
            json!({"logGroupIdentifiers": ["datalogs"], "logGroupNamePrefix": "d"}),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    let d = w
        .ok(
            "DescribeLogGroups",
            json!({"logGroupIdentifiers": ["datalogs"]}),
        )
        .await;
    assert_eq!(names(&d), ["datalogs"]);
}

#[tokio::test]
async fn deletion_protection_keeps_a_group_and_its_streams() {
    let w = World::new();
    w.ok(
        "CreateLogGroup",
        json!({"logGroupName": "kept", "deletionProtectionEnabled": true}),
    )
    .await;
    w.ok(
        "CreateLogStream",
        json!({"logGroupName": "kept", "logStreamName": "s"}),
    )
    .await;
    let d = w
        .ok("DescribeLogGroups", json!({"logGroupNamePrefix": "kept"}))
        .await;
    assert_eq!(d["logGroups"][0]["deletionProtectionEnabled"], true);
    let (code, _) = w
        .err("DeleteLogGroup", json!({"logGroupName": "kept"}))
        .await;
    assert_eq!(code, "ValidationException");
    let (code, _) = w
        .err(
            "DeleteLogStream",
            json!({"logGroupName": "kept", "logStreamName": "s"}),
        )
        .await;
    assert_eq!(code, "ValidationException");
    let d = w
        .ok("DescribeLogStreams", json!({"logGroupName": "kept"}))
        .await;
    assert_eq!(d["logStreams"].as_array().map(Vec::len), Some(1));
    // Lifted (by ARN here), the group goes.
    w.ok(
        "PutLogGroupDeletionProtection",
        json!({"logGroupIdentifier": "arn:aws:logs:us-east-1:000000000000:log-group:kept:*",
               "deletionProtectionEnabled": false}),
    )
    .await;
    w.ok("DeleteLogGroup", json!({"logGroupName": "kept"}))
        .await;
    let (code, _) = w
        .err(
            "PutLogGroupDeletionProtection",
            json!({"logGroupIdentifier": "kept", "deletionProtectionEnabled": true}),
        )
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    // Without it, as before.
    w.ok("CreateLogGroup", json!({"logGroupName": "gone"}))
        .await;
    let d = w
        .ok("DescribeLogGroups", json!({"logGroupNamePrefix": "gone"}))
        .await;
    assert_eq!(d["logGroups"][0]["deletionProtectionEnabled"], false);
    w.ok("DeleteLogGroup", json!({"logGroupName": "gone"}))
        .await;
}

#[tokio::test]
async fn streams_order_by_name_or_last_event_time() {
    let w = World::new();
    w.group_and_stream("g", "b").await;
    for s in ["a", "c"] {
        w.ok(
            "CreateLogStream",
            json!({"logGroupName": "g", "logStreamName": s}),
        )
        .await;
    }
    let (code, _) = w
        .err(
            "CreateLogStream",
            json!({"logGroupName": "g", "logStreamName": "a"}),
        )
        .await;
    assert_eq!(code, "ResourceAlreadyExistsException");
    let (code, _) = w
        .err(
            "CreateLogStream",
            json!({"logGroupName": "nope", "logStreamName": "a"}),
        )
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    w.put("g", "c", &[(T0 - 10, "x")]).await;
    w.put("g", "a", &[(T0 - 5, "y")]).await;

    let names = |v: &Value| -> Vec<String> {
        v["logStreams"]
            .as_array()
            .expect("streams")
            .iter()
            .map(|s| s["logStreamName"].as_str().expect("name").to_owned())
            .collect()
    };
    let d = w
        .ok("DescribeLogStreams", json!({"logGroupName": "g"}))
        .await;
    assert_eq!(names(&d), ["a", "b", "c"]);
    let a = &d["logStreams"][0];
    assert_eq!(a["firstEventTimestamp"], T0 - 5);
    assert_eq!(a["lastEventTimestamp"], T0 - 5);
    assert_eq!(a["lastIngestionTime"], T0);
    assert_eq!(
        a["arn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:g:log-stream:a"
    );
    assert!(d["logStreams"][1].get("firstEventTimestamp").is_none());

    let d = w
        .ok(
            "DescribeLogStreams",
            json!({"logGroupName": "g", "orderBy": "LastEventTime", "descending": true}),
        )
        .await;
    assert_eq!(names(&d), ["a", "c", "b"]);
    let page1 = w
        .ok(
            "DescribeLogStreams",
            json!({"logGroupName": "g", "orderBy": "LastEventTime", "descending": true, "limit": 2}),
        )
        .await;
    assert_eq!(names(&page1), ["a", "c"]);
    let page2 = w
        .ok(
            "DescribeLogStreams",
            json!({"logGroupName": "g", "orderBy": "LastEventTime", "descending": true, "limit": 2,
                   "nextToken": page1["nextToken"]}),
        )
        .await;
    assert_eq!(names(&page2), ["b"]);
    assert!(page2.get("nextToken").is_none());
    let (code, _) = w
        .err(
            "DescribeLogStreams",
            json!({"logGroupName": "g", "orderBy": "LastEventTime", "logStreamNamePrefix": "a"}),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    let d = w
        .ok(
            "DescribeLogStreams",
            json!({"logGroupName": "g", "logStreamNamePrefix": "c"}),
        )
        .await;
    assert_eq!(names(&d), ["c"]);
}

#[tokio::test]
async fn events_come_back_in_time_order_across_unordered_batches() {
    let w = World::new();
    w.group_and_stream("g", "s").await;
    w.put("g", "s", &[(T0 - 30, "three"), (T0 - 50, "one")])
        .await;
    w.put("g", "s", &[(T0 - 40, "two"), (T0 - 10, "four")])
        .await;
    let all = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
        )
        .await;
    assert_eq!(messages(&all), ["one", "two", "three", "four"]);
    assert_eq!(all["events"][0]["ingestionTime"], T0);

    // Forward paging two at a time; at the end the same token comes back.
    let p1 = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true, "limit": 2}),
        )
        .await;
    assert_eq!(messages(&p1), ["one", "two"]);
    let f1 = p1["nextForwardToken"].as_str().expect("token").to_owned();
    assert!(f1.starts_with("f/"), "{f1}");
    assert!(
        p1["nextBackwardToken"]
            .as_str()
            .expect("token")
            .starts_with("b/")
    );
    let p2 = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": f1, "limit": 2}),
        )
        .await;
    assert_eq!(messages(&p2), ["three", "four"]);
    let f2 = p2["nextForwardToken"].as_str().expect("token").to_owned();
    let p3 = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": f2.clone(), "limit": 2}),
        )
        .await;
    assert!(messages(&p3).is_empty());
    assert_eq!(p3["nextForwardToken"], f2.as_str());

    // New events after the end show up on the same token (follow).
    w.put("g", "s", &[(T0 - 5, "five")]).await;
    let p4 = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": f2}),
        )
        .await;
    assert_eq!(messages(&p4), ["five"]);

    // Without startFromHead: the newest `limit`, then backwards.
    let tail = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "limit": 2}),
        )
        .await;
    assert_eq!(messages(&tail), ["four", "five"]);
    let back = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "limit": 2,
                   "nextToken": tail["nextBackwardToken"]}),
        )
        .await;
    assert_eq!(messages(&back), ["two", "three"]);

    // startTime inclusive, endTime exclusive.
    let window = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true,
                   "startTime": T0 - 40, "endTime": T0 - 10}),
        )
        .await;
    assert_eq!(messages(&window), ["two", "three"]);

    let (code, _) = w
        .err(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": "f/garbage"}),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    let (code, msg) = w
        .err(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "nope"}),
        )
        .await;
    assert_eq!(
        (code.as_str(), msg.as_str()),
        (
            "ResourceNotFoundException",
            "The specified log stream does not exist."
        )
    );
}

#[tokio::test]
async fn put_reports_rejected_ranges_and_refuses_bad_batches() {
    let w = World::new();
    w.group_and_stream("g", "s").await;
    let out = w
        .put("g", "s", &[(T0 + 3 * HOUR, "future"), (T0 - 1, "ok")])
        .await;
    let info = &out["rejectedLogEventsInfo"];
    assert_eq!(info["tooNewLogEventStartIndex"], 1);
    assert!(info.get("tooOldLogEventEndIndex").is_none());
    // Indexes count in time order: the batch is sorted before it is judged.
    let out = w
        .put(
            "g",
            "s",
            &[
                (T0 - 14 * DAY + HOUR, "recent enough"),
                (T0 - 14 * DAY - HOUR, "ancient"),
            ],
        )
        .await;
    assert_eq!(out["rejectedLogEventsInfo"]["tooOldLogEventEndIndex"], 0);
    assert!(out["nextSequenceToken"].is_string());
    let got = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s"}),
        )
        .await;
    assert_eq!(messages(&got), ["recent enough", "ok"]);

    // More than 24 hours in one batch is refused as a whole.
    let (code, _) = w
        .err(
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [
                {"timestamp": T0 - 2 * DAY, "message": "a"}, {"timestamp": T0, "message": "b"}]}),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    // 1,048,576 bytes counting 26 per event.
    let big = "x".repeat(1_048_576 - 26 + 1);
    let (code, msg) = w
        .err(
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [
                {"timestamp": T0, "message": big}]}),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("1048576"), "{msg}");
    // Sequence tokens are ignored, as AWS now ignores them.
    w.ok(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "sequenceToken": "whatever",
               "logEvents": [{"timestamp": T0, "message": "late"}]}),
    )
    .await;
    let (code, _) = w
        .err(
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "none",
                   "logEvents": [{"timestamp": T0, "message": "x"}]}),
        )
        .await;
    assert_eq!(code, "ResourceNotFoundException");
}

#[tokio::test]
async fn retention_hides_expired_events_and_the_sweep_deletes_them() {
    let w = World::new();
    w.group_and_stream("g", "s").await;
    w.put("g", "s", &[(T0 - 2 * DAY, "old")]).await;
    w.put("g", "s", &[(T0 - HOUR, "new")]).await;
    w.ok(
        "PutRetentionPolicy",
        json!({"logGroupName": "g", "retentionInDays": 1}),
    )
    .await;
    let got = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
        )
        .await;
    assert_eq!(messages(&got), ["new"]);
    // An event older than the retention is reported as expired.
    let out = w
        .put(
            "g",
            "s",
            &[(T0 - DAY - HOUR, "expired"), (T0 - 2 * HOUR, "fine")],
        )
        .await;
    assert_eq!(out["rejectedLogEventsInfo"]["expiredLogEventEndIndex"], 0);

    let before = w.ok("DescribeLogGroups", json!({})).await["logGroups"][0]["storedBytes"].clone();
    assert_eq!(before, 3 + 3 + 4);
    assert_eq!(w.logs.sweep().await.expect("sweep"), 1);
    let after = w.ok("DescribeLogGroups", json!({})).await["logGroups"][0]["storedBytes"].clone();
    assert_eq!(after, 3 + 4);
    w.advance(2 * DAY);
    assert_eq!(w.logs.sweep().await.expect("sweep"), 2);
}

#[tokio::test]
async fn filter_matches_terms_across_streams_and_pages() {
    let w = World::new();
    w.group_and_stream("g", "web/1").await;
    w.ok(
        "CreateLogStream",
        json!({"logGroupName": "g", "logStreamName": "web/2"}),
    )
    .await;
    w.ok(
        "CreateLogStream",
        json!({"logGroupName": "g", "logStreamName": "db"}),
    )
    .await;
    w.put(
        "g",
        "web/1",
        &[(T0 - 50, "GET /a 200"), (T0 - 30, "GET /b 500 disk full")],
    )
    .await;
    w.put(
        "g",
        "web/2",
        &[(T0 - 40, "GET /c 500"), (T0 - 20, "POST /d 500 disk full")],
    )
    .await;
    w.put("g", "db", &[(T0 - 45, "query 500 slow")]).await;

    let all = w.ok("FilterLogEvents", json!({"logGroupName": "g"})).await;
    assert_eq!(
        messages(&all),
        [
            "GET /a 200",
            "query 500 slow",
            "GET /c 500",
            "GET /b 500 disk full",
            "POST /d 500 disk full"
        ]
    );
    let f = w
        .ok(
            "FilterLogEvents",
            json!({"logGroupName": "g", "logStreamNamePrefix": "web/", "filterPattern": "500 \"disk full\""}),
        )
        .await;
    assert_eq!(
        messages(&f),
        ["GET /b 500 disk full", "POST /d 500 disk full"]
    );
    assert_eq!(f["events"][0]["logStreamName"], "web/1");
    assert!(f["events"][0]["eventId"].is_string());
    let f = w
        .ok(
            "FilterLogEvents",
            json!({"logGroupName": "g", "logStreamNames": ["db", "web/2"], "startTime": T0 - 45, "endTime": T0 - 40}),
        )
        .await;
    assert_eq!(messages(&f), ["query 500 slow", "GET /c 500"]);

    // Pages of two, then none left.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({"logGroupName": "g", "limit": 2, "filterPattern": "500"});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let page = w.ok("FilterLogEvents", req).await;
        seen.extend(messages(&page));
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    let (code, msg) = w
        .err(
            "FilterLogEvents",
            json!({"logGroupName": "g", "filterPattern": "?ERROR ?WARN"}),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("not support"), "{msg}");
}

#[tokio::test]
async fn the_agent_path_creates_group_and_stream_on_demand() {
    let w = World::new();
    let lines = vec![LineEvent {
        timestamp: T0 - 1,
        message: "hello".into(),
    }];
    let e = w
        .logs
        .put_events(&ctx(), "/ecs/x", "p/c/t", lines.clone(), false)
        .await
        .expect_err("no group");
    assert_eq!(e.code, "ResourceNotFoundException");
    let out = w
        .logs
        .put_events(&ctx(), "/ecs/x", "p/c/t", lines.clone(), true)
        .await
        .expect("created");
    assert_eq!(out.accepted, 1);
    w.logs
        .put_events(&ctx(), "/ecs/x", "p/c/t", lines, true)
        .await
        .expect("again");
    let got = w
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "/ecs/x", "logStreamName": "p/c/t"}),
        )
        .await;
    assert_eq!(messages(&got), ["hello", "hello"]);
}
