//! Component tests of the Secrets Manager API: `SecretsManager` on an in-memory store, driven
//! through `JsonService::call` with JSON requests, on a clock the tests move; and `resolve`,
//! the accessor ECS uses.

use berth_aws::{AwsError, JsonService, RequestContext};
use berth_secretsmanager::{ResolveError, SecretsManager};
use berth_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;
const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";

fn ctx() -> RequestContext {
    RequestContext {
        account_id: ACCOUNT.into(),
        region: REGION.into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

struct World {
    sm: SecretsManager,
    clock: Arc<AtomicI64>,
}

impl World {
    fn new() -> World {
        let store = SqliteStore::open_in_memory().expect("in-memory store");
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let sm = SecretsManager::new(
            store.into(),
            [7u8; 32],
            Arc::new(move || c.load(Ordering::SeqCst)),
        );
        World { sm, clock }
    }

    async fn call(&self, op: &str, input: Value) -> Result<Value, AwsError> {
        let body = self.sm.call(ctx(), op, input).await?;
        Ok(serde_json::from_slice(&body).expect("JSON answer"))
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        self.call(op, input)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    async fn err(&self, op: &str, input: Value) -> AwsError {
        match self.call(op, input).await {
            Ok(v) => panic!("{op} succeeded: {v}"),
            Err(e) => e,
        }
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    async fn resolve(&self, reference: &str) -> Result<String, ResolveError> {
        self.sm.resolve(ACCOUNT, REGION, reference).await
    }
}

fn token(n: u32) -> String {
    format!("{n:0>32}")
}

#[tokio::test]
async fn create_and_get_by_name_full_and_partial_arn() {
    let w = World::new();
    let created = w
        .ok(
            "CreateSecret",
            json!({"Name": "prod/db", "SecretString": "s3cret", "ClientRequestToken": token(1),
                   "KmsKeyId": "alias/mine", "Description": "the db",
                   "Tags": [{"Key": "team", "Value": "core"}]}),
        )
        .await;
    let arn = created["ARN"].as_str().unwrap().to_owned();
    let prefix = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-");
    assert!(arn.starts_with(&prefix), "{arn}");
    let suffix = &arn[prefix.len()..];
    assert_eq!(suffix.len(), 6);
    assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(created["VersionId"], token(1));
    let partial = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db");
    for id in ["prod/db", arn.as_str(), partial.as_str()] {
        let got = w.ok("GetSecretValue", json!({"SecretId": id})).await;
        assert_eq!(got["SecretString"], "s3cret", "{id}");
        assert_eq!(got["ARN"], arn.as_str());
        assert_eq!(got["VersionStages"], json!(["AWSCURRENT"]));
    }
    let wrong_suffix = format!("{prefix}XXXXXX");
    let e = w
        .err("GetSecretValue", json!({"SecretId": wrong_suffix}))
        .await;
    assert_eq!(e.code, "ResourceNotFoundException");
    assert_eq!(
        e.message,
        "Secrets Manager can't find the specified secret."
    );
    let d = w.ok("DescribeSecret", json!({"SecretId": "prod/db"})).await;
    assert_eq!(d["KmsKeyId"], "alias/mine");
    assert_eq!(d["Description"], "the db");
    assert_eq!(d["Tags"], json!([{"Key": "team", "Value": "core"}]));
    assert_eq!(d["VersionIdsToStages"], json!({token(1): ["AWSCURRENT"]}));
    assert_eq!(
        d["LastAccessedDate"].as_f64(),
        Some((T0 / DAY * DAY) as f64 / 1000.0)
    );
}

#[tokio::test]
async fn create_is_idempotent_by_token_and_refuses_duplicates() {
    let w = World::new();
    let req = json!({"Name": "a", "SecretString": "x", "ClientRequestToken": token(1)});
    let first = w.ok("CreateSecret", req.clone()).await;
    let again = w.ok("CreateSecret", req).await;
    assert_eq!(first["ARN"], again["ARN"]);
    let e = w
        .err(
            "CreateSecret",
            json!({"Name": "a", "SecretString": "y", "ClientRequestToken": token(2)}),
        )
        .await;
    assert_eq!(e.code, "ResourceExistsException");
    let e = w
        .err(
            "CreateSecret",
            json!({"Name": "b", "SecretString": "y", "SecretBinary": "eQ=="}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    let e = w.err("CreateSecret", json!({"Name": "bad name"})).await;
    assert_eq!(e.code, "InvalidParameterException");
    // Bad input wrote nothing.
    let list = w.ok("ListSecrets", json!({})).await;
    assert_eq!(list["SecretList"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn versions_and_staging_labels_move_as_aws_moves_them() {
    let w = World::new();
    w.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "v1", "ClientRequestToken": token(1)}),
    )
    .await;
    let put = w
        .ok(
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": "v2", "ClientRequestToken": token(2)}),
        )
        .await;
    assert_eq!(put["VersionStages"], json!(["AWSCURRENT"]));
    let cur = w.ok("GetSecretValue", json!({"SecretId": "s"})).await;
    assert_eq!(cur["SecretString"], "v2");
    let prev = w
        .ok(
            "GetSecretValue",
            json!({"SecretId": "s", "VersionStage": "AWSPREVIOUS"}),
        )
        .await;
    assert_eq!(prev["SecretString"], "v1");
    assert_eq!(prev["VersionId"], token(1));
    let by_id = w
        .ok(
            "GetSecretValue",
            json!({"SecretId": "s", "VersionId": token(1)}),
        )
        .await;
    assert_eq!(by_id["SecretString"], "v1");
    // The same put again is ignored; another value under the same token is refused.
    w.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "v2", "ClientRequestToken": token(2)}),
    )
    .await;
    let e = w
        .err(
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": "other", "ClientRequestToken": token(2)}),
        )
        .await;
    assert_eq!(e.code, "ResourceExistsException");
    // A pending version leaves AWSCURRENT where it is.
    w.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "v3", "ClientRequestToken": token(3),
               "VersionStages": ["AWSPENDING"]}),
    )
    .await;
    let cur = w.ok("GetSecretValue", json!({"SecretId": "s"})).await;
    assert_eq!(cur["SecretString"], "v2");
    let e = w
        .err(
            "GetSecretValue",
            json!({"SecretId": "s", "VersionStage": "NOPE"}),
        )
        .await;
    assert_eq!(e.code, "ResourceNotFoundException");
    // UpdateSecret with a value makes a new current version.
    let up = w
        .ok(
            "UpdateSecret",
            json!({"SecretId": "s", "SecretString": "v4", "ClientRequestToken": token(4),
                   "Description": "d"}),
        )
        .await;
    assert_eq!(up["VersionId"], token(4));
    let d = w.ok("DescribeSecret", json!({"SecretId": "s"})).await;
    assert_eq!(
        d["VersionIdsToStages"],
        json!({token(2): ["AWSPREVIOUS"], token(3): ["AWSPENDING"], token(4): ["AWSCURRENT"]})
    );
    assert_eq!(d["Description"], "d");
    let versions = w.ok("ListSecretVersionIds", json!({"SecretId": "s"})).await;
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 3);
    let all = w
        .ok(
            "ListSecretVersionIds",
            json!({"SecretId": "s", "IncludeDeprecated": true, "MaxResults": 3}),
        )
        .await;
    assert_eq!(all["Versions"].as_array().unwrap().len(), 3);
    let rest = w
        .ok(
            "ListSecretVersionIds",
            json!({"SecretId": "s", "IncludeDeprecated": true, "NextToken": all["NextToken"]}),
        )
        .await;
    assert_eq!(rest["Versions"][0]["VersionId"], token(1));
    assert!(rest.get("NextToken").is_none());
}

#[tokio::test]
async fn delete_marks_then_restore_or_the_window_ends_it() {
    let w = World::new();
    w.ok("CreateSecret", json!({"Name": "s", "SecretString": "x"}))
        .await;
    for (input, code) in [
        (
            json!({"SecretId": "s", "RecoveryWindowInDays": 6}),
            "InvalidParameterException",
        ),
        (
            json!({"SecretId": "s", "RecoveryWindowInDays": 31}),
            "InvalidParameterException",
        ),
        (
            json!({"SecretId": "s", "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": true}),
            "InvalidParameterException",
        ),
        (json!({"SecretId": "nope"}), "ResourceNotFoundException"),
    ] {
        assert_eq!(w.err("DeleteSecret", input).await.code, code);
    }
    let deleted = w
        .ok(
            "DeleteSecret",
            json!({"SecretId": "s", "RecoveryWindowInDays": 7}),
        )
        .await;
    assert_eq!(
        deleted["DeletionDate"].as_f64(),
        Some((T0 + 7 * DAY) as f64 / 1000.0)
    );
    let e = w.err("GetSecretValue", json!({"SecretId": "s"})).await;
    assert_eq!(e.code, "InvalidRequestException");
    assert!(e.message.contains("marked for deletion"), "{}", e.message);
    assert!(matches!(
        w.resolve("s").await,
        Err(ResolveError::MarkedForDeletion(_))
    ));
    let e = w
        .err(
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": "y"}),
        )
        .await;
    assert_eq!(e.code, "InvalidRequestException");
    let e = w
        .err("CreateSecret", json!({"Name": "s", "SecretString": "y"}))
        .await;
    assert_eq!(e.code, "InvalidRequestException");
    assert_eq!(
        w.err("DeleteSecret", json!({"SecretId": "s"})).await.code,
        "InvalidRequestException"
    );
    let listed = w.ok("ListSecrets", json!({})).await;
    assert_eq!(listed["SecretList"], json!([]));
    let listed = w
        .ok("ListSecrets", json!({"IncludePlannedDeletion": true}))
        .await;
    assert_eq!(
        listed["SecretList"][0]["DeletedDate"].as_f64(),
        Some(T0 as f64 / 1000.0)
    );
    w.ok("RestoreSecret", json!({"SecretId": "s"})).await;
    assert_eq!(w.resolve("s").await.as_deref(), Ok("x"));
    // Deleted again, then the window passes: the secret is gone and its name free.
    let old_arn = w.ok("DescribeSecret", json!({"SecretId": "s"})).await["ARN"].clone();
    w.ok(
        "DeleteSecret",
        json!({"SecretId": "s", "RecoveryWindowInDays": 7}),
    )
    .await;
    w.advance(7 * DAY);
    let e = w.err("DescribeSecret", json!({"SecretId": "s"})).await;
    assert_eq!(e.code, "ResourceNotFoundException");
    let again = w
        .ok("CreateSecret", json!({"Name": "s", "SecretString": "new"}))
        .await;
    assert_ne!(again["ARN"], old_arn);
    let e = w.err("GetSecretValue", json!({"SecretId": old_arn})).await;
    assert_eq!(e.code, "ResourceNotFoundException");
    // Forced deletion is immediate.
    w.ok(
        "DeleteSecret",
        json!({"SecretId": "s", "ForceDeleteWithoutRecovery": true}),
    )
    .await;
    let e = w.err("DescribeSecret", json!({"SecretId": "s"})).await;
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn list_pages_filters_and_sorts() {
    let w = World::new();
    for i in 0..7 {
        w.ok(
            "CreateSecret",
            json!({"Name": format!("app/{i}"), "Description": if i % 2 == 0 { "Even" } else { "odd" },
                   "Tags": [{"Key": "n", "Value": i.to_string()}]}),
        )
        .await;
        w.advance(1000);
    }
    w.ok("CreateSecret", json!({"Name": "other"})).await;
    // Pages of 3, newest first by default, each secret once.
    let mut names = Vec::new();
    let mut next: Option<Value> = None;
    loop {
        let mut req = json!({"MaxResults": 3, "Filters": [{"Key": "name", "Values": ["app/"]}]});
        if let Some(t) = &next {
            req["NextToken"] = t.clone();
        }
        let page = w.ok("ListSecrets", req).await;
        let items = page["SecretList"].as_array().unwrap();
        assert!(items.len() <= 3);
        names.extend(items.iter().map(|s| s["Name"].as_str().unwrap().to_owned()));
        match page.get("NextToken") {
            Some(t) => next = Some(t.clone()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("app/{i}")).collect();
    assert_eq!(names, expected);
    let asc = w
        .ok("ListSecrets", json!({"SortOrder": "asc", "SortBy": "name"}))
        .await;
    assert_eq!(asc["SecretList"][0]["Name"], "app/0");
    assert_eq!(asc["SecretList"][7]["Name"], "other");
    let even = w
        .ok(
            "ListSecrets",
            json!({"Filters": [{"Key": "description", "Values": ["even"]}]}),
        )
        .await;
    assert_eq!(even["SecretList"].as_array().unwrap().len(), 4);
    let not_app = w
        .ok(
            "ListSecrets",
            json!({"Filters": [{"Key": "name", "Values": ["!app"]}]}),
        )
        .await;
    assert_eq!(not_app["SecretList"][0]["Name"], "other");
    assert_eq!(not_app["SecretList"].as_array().unwrap().len(), 1);
    let e = w.err("ListSecrets", json!({"NextToken": "forged"})).await;
    assert_eq!(e.code, "InvalidNextTokenException");
}

#[tokio::test]
async fn tags_and_batch_reads() {
    let w = World::new();
    w.ok("CreateSecret", json!({"Name": "a", "SecretString": "1"}))
        .await;
    w.ok("CreateSecret", json!({"Name": "b"})).await;
    w.ok(
        "TagResource",
        json!({"SecretId": "a", "Tags": [{"Key": "k", "Value": "v"}, {"Key": "j", "Value": "w"}]}),
    )
    .await;
    w.ok("UntagResource", json!({"SecretId": "a", "TagKeys": ["j"]}))
        .await;
    let d = w.ok("DescribeSecret", json!({"SecretId": "a"})).await;
    assert_eq!(d["Tags"], json!([{"Key": "k", "Value": "v"}]));
    let e = w
        .err(
            "TagResource",
            json!({"SecretId": "a", "Tags": [{"Key": "aws:x", "Value": "v"}]}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    let batch = w
        .ok(
            "BatchGetSecretValue",
            json!({"SecretIdList": ["a", "b", "c"]}),
        )
        .await;
    assert_eq!(batch["SecretValues"].as_array().unwrap().len(), 1);
    assert_eq!(batch["SecretValues"][0]["SecretString"], "1");
    let errors = batch["Errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[1]["SecretId"], "c");
    assert_eq!(errors[1]["ErrorCode"], "ResourceNotFoundException");
    let filtered = w
        .ok(
            "BatchGetSecretValue",
            json!({"Filters": [{"Key": "tag-key", "Values": ["k"]}]}),
        )
        .await;
    assert_eq!(filtered["SecretValues"][0]["Name"], "a");
    let e = w
        .err(
            "BatchGetSecretValue",
            json!({"SecretIdList": ["a"], "Filters": [{"Key": "name", "Values": ["a"]}]}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    assert_eq!(
        e.message,
        "You must include Filters or SecretIdList, but not both."
    );
    // Neither is refused the same way, rather than read as "every secret".
    let e = w.err("BatchGetSecretValue", json!({})).await;
    assert_eq!(e.code, "InvalidParameterException");
    assert_eq!(
        e.message,
        "You must include Filters or SecretIdList, but not both."
    );
    let e = w.err("BatchGetSecretValue", json!({"MaxResults": 5})).await;
    assert_eq!(e.code, "InvalidParameterException");
    // An empty filter list selects every secret.
    let every = w.ok("BatchGetSecretValue", json!({"Filters": []})).await;
    assert_eq!(every["SecretValues"].as_array().unwrap().len(), 1);
    assert_eq!(every["Errors"][0]["ErrorCode"], "ResourceNotFoundException");
}

#[tokio::test]
async fn random_passwords_follow_the_options() {
    let w = World::new();
    let p = w.ok("GetRandomPassword", json!({})).await;
    let p = p["RandomPassword"].as_str().unwrap().to_owned();
    assert_eq!(p.chars().count(), 32);
    let p = w
        .ok(
            "GetRandomPassword",
            json!({"PasswordLength": 64, "ExcludePunctuation": true, "ExcludeCharacters": "abc"}),
        )
        .await;
    let p = p["RandomPassword"].as_str().unwrap().to_owned();
    assert_eq!(p.len(), 64);
    assert!(
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() && !"abc".contains(c)),
        "{p}"
    );
    for class in [
        |c: char| c.is_ascii_lowercase(),
        |c: char| c.is_ascii_uppercase(),
        |c: char| c.is_ascii_digit(),
    ] {
        assert!(p.chars().any(class), "{p}");
    }
    let e = w
        .err(
            "GetRandomPassword",
            json!({"PasswordLength": 2, "ExcludePunctuation": true}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
}

#[tokio::test]
async fn resolve_reads_what_ecs_references_name() {
    let w = World::new();
    let creds = r#"{"username":"robot","password":"hunter2","port":5432}"#;
    let arn = w
        .ok(
            "CreateSecret",
            json!({"Name": "registry", "SecretString": creds, "ClientRequestToken": token(1)}),
        )
        .await["ARN"]
        .as_str()
        .unwrap()
        .to_owned();
    w.ok(
        "PutSecretValue",
        json!({"SecretId": "registry", "SecretString": r#"{"username":"new"}"#,
               "ClientRequestToken": token(2)}),
    )
    .await;
    w.ok(
        "CreateSecret",
        json!({"Name": "plain", "SecretString": "text"}),
    )
    .await;
    w.ok(
        "CreateSecret",
        json!({"Name": "bin", "SecretBinary": "AAE="}),
    )
    .await;
    w.ok("CreateSecret", json!({"Name": "empty"})).await;

    assert_eq!(
        w.resolve("registry").await.as_deref(),
        Ok(r#"{"username":"new"}"#)
    );
    assert_eq!(
        w.resolve(&arn).await.as_deref(),
        Ok(r#"{"username":"new"}"#)
    );
    assert_eq!(
        w.resolve(&format!("{arn}:username::")).await.as_deref(),
        Ok("new")
    );
    assert_eq!(
        w.resolve(&format!("{arn}:password:AWSPREVIOUS:"))
            .await
            .as_deref(),
        Ok("hunter2")
    );
    assert_eq!(
        w.resolve(&format!("{arn}:port::{}", token(1)))
            .await
            .as_deref(),
        Ok("5432")
    );
    assert_eq!(
        w.resolve(&format!("{arn}::AWSPREVIOUS:")).await.as_deref(),
        Ok(creds)
    );
    let partial = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:plain");
    assert_eq!(w.resolve(&partial).await.as_deref(), Ok("text"));

    assert!(matches!(
        w.resolve(&format!("{arn}:password::")).await,
        Err(ResolveError::JsonKeyMissing { .. })
    ));
    assert!(matches!(
        w.resolve(&format!("{partial}:k::")).await,
        Err(ResolveError::NotJson(_))
    ));
    assert!(matches!(
        w.resolve("bin").await,
        Err(ResolveError::NotAString(_))
    ));
    assert!(matches!(
        w.resolve("empty").await,
        Err(ResolveError::VersionNotFound { .. })
    ));
    assert!(matches!(
        w.resolve(&format!("{arn}::AWSPENDING:")).await,
        Err(ResolveError::VersionNotFound { .. })
    ));
    assert!(matches!(
        w.resolve("missing").await,
        Err(ResolveError::NotFound(_))
    ));
    let elsewhere = format!("arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:plain");
    assert!(matches!(
        w.resolve(&elsewhere).await,
        Err(ResolveError::NotFound(_))
    ));
    assert!(matches!(
        w.resolve("arn:aws:ssm:us-east-1:000000000000:parameter/x")
            .await,
        Err(ResolveError::InvalidReference(_))
    ));
    let e = w.resolve("missing").await.unwrap_err().to_string();
    assert!(e.contains("can't find the specified secret"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_each_make_a_version_and_labels_stay_unique() {
    let w = Arc::new(World::new());
    w.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "v0", "ClientRequestToken": token(0)}),
    )
    .await;
    let puts: Vec<_> = (1..=12)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                w.ok(
                    "PutSecretValue",
                    json!({"SecretId": "s", "SecretString": format!("v{i}"),
                           "ClientRequestToken": token(i)}),
                )
                .await
            })
        })
        .collect();
    for p in puts {
        p.await.expect("put task");
    }
    let all = w
        .ok(
            "ListSecretVersionIds",
            json!({"SecretId": "s", "IncludeDeprecated": true}),
        )
        .await;
    let versions = all["Versions"].as_array().unwrap();
    assert_eq!(versions.len(), 13);
    let with = |stage: &str| {
        versions
            .iter()
            .filter(|v| {
                v["VersionStages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s == stage)
            })
            .count()
    };
    assert_eq!(with("AWSCURRENT"), 1);
    assert_eq!(with("AWSPREVIOUS"), 1);
}

#[tokio::test]
async fn staging_labels_move_between_existing_versions() {
    let w = World::new();
    w.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "v1", "ClientRequestToken": token(1)}),
    )
    .await;
    w.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "v2", "ClientRequestToken": token(2),
               "VersionStages": ["AWSPENDING"]}),
    )
    .await;
    // AWSCURRENT is on v1: moving it must name where from.
    let e = w
        .err(
            "UpdateSecretVersionStage",
            json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "MoveToVersionId": token(2)}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    let e = w
        .err(
            "UpdateSecretVersionStage",
            json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "RemoveFromVersionId": token(1)}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    w.ok(
        "UpdateSecretVersionStage",
        json!({"SecretId": "s", "VersionStage": "AWSCURRENT",
               "RemoveFromVersionId": token(1), "MoveToVersionId": token(2)}),
    )
    .await;
    assert_eq!(w.resolve("s").await.as_deref(), Ok("v2"));
    w.ok(
        "UpdateSecretVersionStage",
        json!({"SecretId": "s", "VersionStage": "AWSPENDING", "RemoveFromVersionId": token(2)}),
    )
    .await;
    let d = w.ok("DescribeSecret", json!({"SecretId": "s"})).await;
    assert_eq!(
        d["VersionIdsToStages"],
        json!({token(1): ["AWSPREVIOUS"], token(2): ["AWSCURRENT"]})
    );
    let e = w
        .err(
            "UpdateSecretVersionStage",
            json!({"SecretId": "s", "VersionStage": "X", "MoveToVersionId": token(9)}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
}
