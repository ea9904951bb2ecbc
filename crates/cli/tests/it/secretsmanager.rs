//! Secrets Manager end to end through the real `aws secretsmanager` CLI and boto3: create,
//! read back by name and ARN, new versions with AWSCURRENT/AWSPREVIOUS, describe, list, delete
//! with a recovery window (reads refused until restored), restore, forced deletion.

use crate::harness::{Berth, Opts};
use serde_json::Value;

fn sm(berth: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["secretsmanager"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
    out.json()
}

#[track_caller]
fn sm_fails(berth: &Berth, args: &[&str], code: &str) -> String {
    let mut all = vec!["secretsmanager"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    assert_ne!(out.code, 0, "{args:?} succeeded: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("({code})")),
        "{args:?}: expected {code}, got: {}",
        out.stderr
    );
    out.stderr
}

#[test]
fn the_aws_cli_manages_secrets_and_their_versions() {
    let berth = Berth::start(Opts::default());
    let creds = r#"{"username":"robot","password":"hunter2"}"#;
    let created = sm(
        &berth,
        &[
            "create-secret",
            "--name",
            "registry/creds",
            "--description",
            "pull credentials",
            "--secret-string",
            creds,
            "--tags",
            "Key=team,Value=core",
        ],
    );
    let arn = created["ARN"].as_str().expect("ARN").to_owned();
    assert!(
        arn.starts_with("arn:aws:secretsmanager:us-east-1:")
            && arn.contains(":secret:registry/creds-"),
        "{arn}"
    );
    let first_version = created["VersionId"].as_str().expect("VersionId").to_owned();
    sm_fails(
        &berth,
        &[
            "create-secret",
            "--name",
            "registry/creds",
            "--secret-string",
            "x",
        ],
        "ResourceExistsException",
    );

    for id in [arn.as_str(), "registry/creds"] {
        let got = sm(&berth, &["get-secret-value", "--secret-id", id]);
        assert_eq!(got["SecretString"], creds);
        assert_eq!(got["VersionId"], first_version.as_str());
        assert_eq!(got["VersionStages"][0], "AWSCURRENT");
    }

    let put = sm(
        &berth,
        &[
            "put-secret-value",
            "--secret-id",
            "registry/creds",
            "--secret-string",
            r#"{"username":"robot","password":"rotated"}"#,
        ],
    );
    assert_ne!(put["VersionId"], first_version.as_str());
    let current = sm(&berth, &["get-secret-value", "--secret-id", &arn]);
    assert!(
        current["SecretString"]
            .as_str()
            .unwrap()
            .contains("rotated")
    );
    let previous = sm(
        &berth,
        &[
            "get-secret-value",
            "--secret-id",
            &arn,
            "--version-stage",
            "AWSPREVIOUS",
        ],
    );
    assert_eq!(previous["SecretString"], creds);

    let described = sm(&berth, &["describe-secret", "--secret-id", &arn]);
    assert_eq!(described["Description"], "pull credentials");
    assert_eq!(described["Tags"][0]["Key"], "team");
    assert_eq!(
        described["VersionIdsToStages"][&first_version][0],
        "AWSPREVIOUS"
    );

    sm(
        &berth,
        &[
            "create-secret",
            "--name",
            "other",
            "--secret-string",
            "plain",
        ],
    );
    let listed = sm(
        &berth,
        &["list-secrets", "--filters", "Key=name,Values=registry"],
    );
    let names: Vec<&str> = listed["SecretList"]
        .as_array()
        .expect("SecretList")
        .iter()
        .filter_map(|s| s["Name"].as_str())
        .collect();
    assert_eq!(names, vec!["registry/creds"]);
    // The CLI's paginator follows NextToken with a page size of one.
    let paged = sm(&berth, &["list-secrets", "--page-size", "1"]);
    assert_eq!(paged["SecretList"].as_array().map(Vec::len), Some(2));

    let deleted = sm(
        &berth,
        &[
            "delete-secret",
            "--secret-id",
            &arn,
            "--recovery-window-in-days",
            "7",
        ],
    );
    assert!(deleted["DeletionDate"].is_number());
    let message = sm_fails(
        &berth,
        &["get-secret-value", "--secret-id", &arn],
        "InvalidRequestException",
    );
    assert!(message.contains("marked for deletion"), "{message}");
    sm_fails(
        &berth,
        &[
            "delete-secret",
            "--secret-id",
            "other",
            "--recovery-window-in-days",
            "3",
        ],
        "InvalidParameterException",
    );
    let listed = sm(&berth, &["list-secrets"]);
    assert_eq!(listed["SecretList"].as_array().map(Vec::len), Some(1));

    sm(&berth, &["restore-secret", "--secret-id", "registry/creds"]);
    let got = sm(
        &berth,
        &["get-secret-value", "--secret-id", "registry/creds"],
    );
    assert!(got["SecretString"].as_str().unwrap().contains("rotated"));

    sm(
        &berth,
        &[
            "delete-secret",
            "--secret-id",
            "other",
            "--force-delete-without-recovery",
        ],
    );
    let message = sm_fails(
        &berth,
        &["describe-secret", "--secret-id", "other"],
        "ResourceNotFoundException",
    );
    assert!(
        message.contains("Secrets Manager can't find the specified secret."),
        "{message}"
    );
}

#[test]
fn boto3_reads_binary_secrets_and_batches() {
    let berth = Berth::start(Opts::default());
    let out = berth.python(
        r#"
import os, boto3, json
sm = boto3.client("secretsmanager", endpoint_url=os.environ["BERTH_ENDPOINT"])
sm.create_secret(Name="bin", SecretBinary=b"\x00\x01binary")
sm.create_secret(Name="text", SecretString="hello")
got = sm.get_secret_value(SecretId="bin")
assert got["SecretBinary"] == b"\x00\x01binary", got
batch = sm.batch_get_secret_value(SecretIdList=["text", "missing"])
print(json.dumps({
    "values": [v["SecretString"] for v in batch["SecretValues"]],
    "errors": [e["ErrorCode"] for e in batch["Errors"]],
    "versions": len(sm.list_secret_version_ids(SecretId="text")["Versions"]),
    "password": len(sm.get_random_password(PasswordLength=20)["RandomPassword"]),
}))
"#,
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["values"], serde_json::json!(["hello"]));
    assert_eq!(
        v["errors"],
        serde_json::json!(["ResourceNotFoundException"])
    );
    assert_eq!(v["versions"], 1);
    assert_eq!(v["password"], 20);
}
