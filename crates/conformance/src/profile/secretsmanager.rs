//! Secrets Manager: a fixture secret with a string value (so reads of it succeed), echoes of
//! CreateSecret through DescribeSecret by name, full ARN and partial ARN, a page fixture for
//! ListSecrets, and the documented "Filters or SecretIdList, but not both" rule of
//! BatchGetSecretValue added to the model.

use super::{Echo, PageFixture, Profile};
use crate::client::Client;
use crate::generate::REQUIRES_ONE_OF;
use crate::model::Model;
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
        // berth keeps secrets in one Region: replicas are refused (InvalidRequestException),
        // which would stop every bound CreateSecret before it creates.
        "AddReplicaRegions": null,
        // A token only the server can make.
        "NextToken": null,
    });
    match bindings {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Other("bindings are an object".into())),
    }
}

/// What Secrets Manager's documentation says and botocore's model does not, added to `model`:
/// BatchGetSecretValue must name exactly one of `SecretIdList` and `Filters` ("You must include
/// Filters or SecretIdList, but not both"), though the model marks neither required. Minimal
/// requests then name a secret list, and `{}` is not expected to be accepted.
pub fn amend_model(model: &mut Model) {
    let Some(input) = model.input_shape("BatchGetSecretValue").map(str::to_string) else {
        return;
    };
    if let Some(shape) = model.service_json["shapes"].get_mut(&input) {
        shape[REQUIRES_ONE_OF] = json!([["SecretIdList", "Filters"]]);
    }
}

/// A full secret ARN less its `-` and six random characters: the partial ARN Secrets Manager
/// also takes as a `SecretId`.
fn partial_arn(full: &Value) -> Option<String> {
    let full = full.as_str()?;
    let cut = full.len().checked_sub(7)?;
    (full.as_bytes().get(cut) == Some(&b'-')).then(|| full[..cut].to_string())
}

impl Profile {
    /// Secrets Manager (awsJson 1.1). Run it on a model passed through [`amend_model`].
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
                lookups: |req, resp, _| {
                    let mut forms = vec![
                        ("name".into(), json!({"SecretId": req["Name"]})),
                        ("full ARN".into(), json!({"SecretId": resp["ARN"]})),
                    ];
                    if let Some(partial) = partial_arn(&resp["ARN"]) {
                        forms.push(("partial ARN".into(), json!({"SecretId": partial})));
                    }
                    forms
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
            waiter_failures: vec![],
            fresh_names: vec![],
            echo_unreturned: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_arn_drops_the_random_suffix_only() {
        let full = json!("arn:aws:secretsmanager:us-east-1:000000000000:secret:db/pass-AbC123");
        assert_eq!(
            partial_arn(&full).as_deref(),
            Some("arn:aws:secretsmanager:us-east-1:000000000000:secret:db/pass")
        );
        assert_eq!(partial_arn(&json!("short")), None);
        assert_eq!(partial_arn(&json!("arn:aws:x:secret:nosuffix")), None);
    }
}
