//! CloudWatch Logs: a fixture log group holding a stream with a few events (so reads of it
//! find something), echoes of CreateLogGroup through DescribeLogGroups, and page fixtures for
//! groups, streams and events — GetLogEvents included, with the paginator the AWS SDKs declare
//! and botocore lacks.

use super::{Echo, PageFixture, Profile};
use crate::client::{Client, Response};
use crate::generate::REQUIRES_ONE_OF;
use crate::model::Model;
use crate::{Error, Result};
use serde_json::{Map, Value, json};

/// The fixture group and stream.
const FIXTURE: &str = "conformance";

/// Milliseconds since the epoch, a minute back: inside PutLogEvents' window (14 days back,
/// 2 hours ahead).
fn minute_ago_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    now - 60_000
}

/// Puts `messages` into the fixture group's `stream`, one millisecond apart.
fn put_events(c: &Client, stream: &str, messages: &[String]) -> Result<Response> {
    let t = minute_ago_ms();
    let events: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"timestamp": t + i as i64, "message": m}))
        .collect();
    c.call(
        "PutLogEvents",
        &json!({"logGroupName": FIXTURE, "logStreamName": stream, "logEvents": events}),
    )
}

fn setup(c: &Client) -> Result<Map<String, Value>> {
    let call = |op: &str, body: Value| -> Result<()> {
        let r = c.call(op, &body)?;
        if r.status != 200 {
            return Err(Error::Other(format!("fixture {op} failed: {}", r.text())));
        }
        Ok(())
    };
    call(
        "CreateLogGroup",
        json!({"logGroupName": FIXTURE, "tags": {"fixture": "yes"}}),
    )?;
    call(
        "CreateLogStream",
        json!({"logGroupName": FIXTURE, "logStreamName": FIXTURE}),
    )?;
    let r = put_events(
        c,
        FIXTURE,
        &["conformance one".into(), "conformance two".into()],
    )?;
    if r.status != 200 {
        return Err(Error::Other(format!(
            "fixture PutLogEvents failed: {}",
            r.text()
        )));
    }
    let t = minute_ago_ms();
    let bindings = json!({
        "logGroupName": FIXTURE,
        "logStreamName": FIXTURE,
        "logStreamNames": [FIXTURE],
        "logGroupIdentifiers": [FIXTURE],
        // A name is an identifier too; where a request may name only one of the two, bound
        // requests keep `logGroupName` (see `amend_model`).
        "logGroupIdentifier": FIXTURE,
        // Each names what another bound member names already, which CloudWatch Logs refuses
        // (logStreamNames or logStreamNamePrefix; logGroupIdentifiers with no other filter):
        // left out.
        "logStreamNamePrefix": null,
        "logGroupNamePrefix": null,
        "logGroupNamePattern": null,
        // A token only the server can make.
        "nextToken": null,
        // The model says integer; CloudWatch Logs takes only its listed periods.
        "retentionInDays": 7,
        "logEvents": [{"timestamp": t, "message": "bound event"}],
        "startTime": t - 3_600_000,
        "endTime": t + 3_600_000,
        "filterPattern": "conformance",
    });
    match bindings {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Other("bindings are an object".into())),
    }
}

/// What CloudWatch Logs' documentation says and botocore's files do not, added to `model`:
///
/// - the paginator the AWS SDKs declare for GetLogEvents (the service's Smithy model:
///   `nextToken` in, `nextForwardToken` out, `limit`), which botocore's `paginators-1.json`
///   leaves out: GetLogEvents' forward token never runs out — at the end of the stream the same
///   token comes back — so a client stops when a page returns the token it sent (the SDKs'
///   `stopOnSameToken`), which `stop_on_same_token` tells the suite;
/// - that the reads of one group must name it by exactly one of `logGroupName` and
///   `logGroupIdentifier` ("You must include either logGroupIdentifier or logGroupName, but
///   not both"), although the model marks neither required: an empty DescribeLogStreams or
///   FilterLogEvents is refused by CloudWatch Logs, not answered.
pub fn amend_model(model: &mut Model) {
    for op in ["DescribeLogStreams", "FilterLogEvents", "GetLogEvents"] {
        let Some(input) = model.input_shape(op).map(str::to_string) else {
            continue;
        };
        if let Some(shape) = model.service_json["shapes"].get_mut(&input) {
            shape[REQUIRES_ONE_OF] = json!([["logGroupName", "logGroupIdentifier"]]);
        }
    }
    if !model.paginators["pagination"].is_object() {
        model.paginators = json!({"pagination": {}});
    }
    model.paginators["pagination"]["GetLogEvents"] = json!({
        "input_token": "nextToken",
        "output_token": "nextForwardToken",
        "limit_key": "limit",
        "result_key": "events",
        "stop_on_same_token": true,
    });
}

impl Profile {
    /// CloudWatch Logs (awsJson 1.1). Run it on a model passed through [`amend_model`].
    pub fn logs() -> Profile {
        Profile {
            service: "logs",
            setup: Some(setup),
            snapshot: |b| {
                let mut calls = vec![("DescribeLogGroups", json!({}))];
                if let (Some(group), Some(stream)) = (b.get("logGroupName"), b.get("logStreamName"))
                {
                    calls.push(("DescribeLogStreams", json!({"logGroupName": group})));
                    calls.push((
                        "GetLogEvents",
                        json!({"logGroupName": group, "logStreamName": stream,
                               "startFromHead": true}),
                    ));
                }
                calls
            },
            echoes: vec![
                Echo {
                    create: "CreateLogGroup",
                    describe: "DescribeLogGroups",
                    // CreateLogGroup answers nothing: the group's ARN comes from the first lookup.
                    lookups: |req, _, found| {
                        let name = &req["logGroupName"];
                        let mut forms = vec![
                            ("name prefix".into(), json!({"logGroupNamePrefix": name})),
                            (
                                "name identifier".into(),
                                json!({"logGroupIdentifiers": [name]}),
                            ),
                        ];
                        if let Some(arn) = found["logGroupArn"].as_str() {
                            forms.push((
                                "ARN identifier".into(),
                                json!({"logGroupIdentifiers": [arn]}),
                            ));
                        }
                        forms
                    },
                    pick: |req, d| {
                        d["logGroups"]
                            .as_array()?
                            .iter()
                            .find(|g| g["logGroupName"] == req["logGroupName"])
                            .cloned()
                    },
                },
                // A stream is named within its group; the group by name, by `logGroupIdentifier`
                // as a name, and by `logGroupIdentifier` as the group's ARN (from the stream's).
                Echo {
                    create: "CreateLogStream",
                    describe: "DescribeLogStreams",
                    lookups: |req, _, found| {
                        let stream = &req["logStreamName"];
                        let group = &req["logGroupName"];
                        let mut forms = vec![
                            (
                                "group name".into(),
                                json!({"logGroupName": group, "logStreamNamePrefix": stream}),
                            ),
                            (
                                "group name identifier".into(),
                                json!({"logGroupIdentifier": group, "logStreamNamePrefix": stream}),
                            ),
                        ];
                        if let Some((group_arn, _)) = found["arn"]
                            .as_str()
                            .and_then(|a| a.split_once(":log-stream:"))
                        {
                            forms.push((
                                "group ARN identifier".into(),
                                json!({"logGroupIdentifier": group_arn,
                                   "logStreamNamePrefix": stream}),
                            ));
                        }
                        forms
                    },
                    pick: |req, d| {
                        d["logStreams"]
                            .as_array()?
                            .iter()
                            .find(|s| s["logStreamName"] == req["logStreamName"])
                            .cloned()
                    },
                },
            ],
            page_fixtures: vec![
                PageFixture {
                    op: "DescribeLogGroups",
                    list_body: json!({}),
                    count: 7,
                    create: |c, i, _| {
                        c.call(
                            "CreateLogGroup",
                            &json!({"logGroupName": format!("page-{i}")}),
                        )
                    },
                },
                PageFixture {
                    op: "DescribeLogStreams",
                    list_body: json!({"logGroupName": FIXTURE}),
                    count: 7,
                    create: |c, i, _| {
                        c.call(
                            "CreateLogStream",
                            &json!({"logGroupName": FIXTURE, "logStreamName": format!("page-{i}")}),
                        )
                    },
                },
                PageFixture {
                    op: "GetLogEvents",
                    list_body: json!({"logGroupName": FIXTURE, "logStreamName": "paged",
                                      "startFromHead": true}),
                    count: 7,
                    create: |c, i, _| {
                        if i == 0 {
                            let r = c.call(
                                "CreateLogStream",
                                &json!({"logGroupName": FIXTURE, "logStreamName": "paged"}),
                            )?;
                            if r.status != 200 {
                                return Ok(r);
                            }
                        }
                        put_events(c, "paged", &[format!("page {i}")])
                    },
                },
                // Events of two streams, interleaved by time.
                PageFixture {
                    op: "FilterLogEvents",
                    list_body: json!({"logGroupName": FIXTURE}),
                    count: 7,
                    create: |c, i, _| {
                        if i == 0 {
                            let r = c.call(
                                "CreateLogStream",
                                &json!({"logGroupName": FIXTURE, "logStreamName": "other"}),
                            )?;
                            if r.status != 200 {
                                return Ok(r);
                            }
                        }
                        let stream = if i % 2 == 0 { FIXTURE } else { "other" };
                        put_events(c, stream, &[format!("page {i}")])
                    },
                },
            ],
            page_not_applicable: vec![],
            page_items: vec![],
            // Nothing in the snapshot moves on its own: ingestion times and sequence tokens
            // change only when events are put, which an invalid request must not do.
            volatile: vec![],
            waiter_scenarios: vec![],
            waiter_not_applicable: vec![],
            waiter_failures: vec![],
            fresh_names: vec![
                ("CreateLogGroup", &["logGroupName"]),
                ("CreateLogStream", &["logStreamName"]),
            ],
            echo_unreturned: vec![],
        }
    }
}
