//! Secrets Manager: a fixture secret with a string value (so reads of it succeed), echoes of
//! CreateSecret through DescribeSecret by name and by ARN, and a page fixture for ListSecrets.

use super::{Echo, PageFixture, Profile};
use crate::client::Client;
use crate::{Error, Result};
use serde_json::{Map, Value, json};

const FIXTURE: &str = "conformance";

fn setup(c: &Client) -> Result<Map<String, Value>> {
    let r = c.call(
        "CreateSecret",
        &json!({"Name": FIXTURE, "SecretString": "{\"username\":\"u\",\"password\":\"p\"}",
                "Tags": [{"Key": "fixture", "Value": "yes"}]}),
    )?;
    if r.status != 200 {
        return Err(Error::Other(format!(
            "fixture CreateSecret failed: {}",
            r.text()
        )));
    }
    let created = r.json().unwrap_or(Value::Null);
    let bindings = json!({
        "SecretId": created["ARN"],
        "SecretIdList": [created["ARN"]],
        // The fixture's own version; a generated one would name nothing.
        "VersionId": created["VersionId"],
        "VersionStage": "AWSCURRENT",
        // A value is a string or a binary, never both: bound requests carry the string.
        "SecretBinary": null,
    });
    match bindings {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Other("bindings are an object".into())),
    }
}

impl Profile {
    /// Secrets Manager (awsJson 1.1).
    pub fn secretsmanager() -> Profile {
        Profile {
            service: "secretsmanager",
            setup: Some(setup),
            snapshot: |b| {
                let mut calls = vec![("ListSecrets", json!({"IncludePlannedDeletion": true}))];
                if let Some(id) = b.get("SecretId") {
                    calls.push((
                        "ListSecretVersionIds",
                        json!({"SecretId": id, "IncludeDeprecated": true}),
                    ));
                }
                calls
            },
            echoes: vec![Echo {
                create: "CreateSecret",
                describe: "DescribeSecret",
                lookups: |req, resp| {
                    vec![
                        ("name".into(), json!({"SecretId": req["Name"]})),
                        ("full ARN".into(), json!({"SecretId": resp["ARN"]})),
                    ]
                },
                pick: |_, d| Some(d.clone()).filter(|d| d.get("ARN").is_some()),
            }],
            page_fixtures: vec![PageFixture {
                op: "ListSecrets",
                list_body: json!({}),
                count: 5,
                create: |c, i, _| c.call("CreateSecret", &json!({"Name": format!("page-{i}")})),
            }],
            page_not_applicable: vec![],
            page_items: vec![],
            // Reads record the day of the last access, as Secrets Manager does.
            volatile: vec!["LastAccessedDate"],
            waiter_scenarios: vec![],
            waiter_not_applicable: vec![],
        }
    }
}
