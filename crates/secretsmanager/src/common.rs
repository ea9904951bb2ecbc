//! What several actions share: Secrets Manager's errors and wording, secret names, ARNs, how a
//! `SecretId` (name, full ARN or partial ARN) finds its secret, which version a request names,
//! tags, and the wire forms of records.

use crate::SecretsManager;
use crate::records::{self, CURRENT, SecretRecord, VersionRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::secretsmanager as wire;
use berth_store::{Store, StoreError, get_as};
use rand::Rng;

pub const NOT_FOUND: &str = "Secrets Manager can't find the specified secret.";
pub const MARKED_FOR_DELETION: &str =
    "You can't perform this operation on the secret because it was marked for deletion.";

/// A secret may carry at most 50 tags.
const MAX_TAGS: usize = 50;

pub fn invalid_parameter(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", message)
}

pub fn invalid_request(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidRequestException", message)
}

pub fn not_found() -> AwsError {
    AwsError::client("ResourceNotFoundException", NOT_FOUND)
}

pub fn marked_for_deletion() -> AwsError {
    invalid_request(MARKED_FOR_DELETION)
}

pub fn invalid_token() -> AwsError {
    AwsError::client(
        "InvalidNextTokenException",
        "The NextToken value is invalid.",
    )
}

/// Secret names are 1–512 of ASCII letters, digits and `/_+=.@-!` (the length is the model's;
/// the characters are Secrets Manager's rule, which also keeps `:` out, so a name never
/// collides with the `:json-key:…` suffix ECS appends to an ARN).
pub fn check_name(name: &str) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-!".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid_parameter(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
        ))
    }
}

/// A new secret's ARN: its name, a hyphen and six random letters or digits, so a secret
/// created again under a deleted one's name is a different resource.
pub fn new_arn(ctx: &RequestContext, name: &str) -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(6)
        .map(char::from)
        .collect();
    berth_model::Arn::new(
        "secretsmanager",
        &ctx.region,
        &ctx.account_id,
        format!("secret:{name}-{suffix}"),
    )
    .to_string()
}

/// The secret `id` names in `account`/`region`, with its version, unless it does not exist (or
/// its recovery window has ended). `id` is a name, a full ARN (`…:secret:<name>-<suffix>`,
/// which must be this secret's: a deleted and re-created secret has another suffix) or a
/// partial ARN (`…:secret:<name>`).
pub async fn lookup<S: Store>(
    store: &S,
    account: &str,
    region: &str,
    id: &str,
    now_ms: i64,
) -> Result<Option<(SecretRecord, u64)>, StoreError> {
    let partition = format!("{account}/{region}");
    let get = |name: String| {
        let partition = partition.clone();
        async move { get_as::<SecretRecord, _>(store, records::SECRET, &partition, &name).await }
    };
    let live = |found: Option<(SecretRecord, u64)>| found.filter(|(s, _)| !s.expired(now_ms));
    if !id.starts_with("arn:") {
        return Ok(live(get(id.to_owned()).await?));
    }
    let prefix = format!("secretsmanager:{region}:{account}:secret:");
    let Some(rest) = id
        .splitn(3, ':')
        .nth(2)
        .and_then(|after_partition| after_partition.strip_prefix(prefix.as_str()))
    else {
        return Ok(None);
    };
    // A full ARN: the name is what precedes the six-character suffix.
    if rest.len() > 7 && rest.as_bytes()[rest.len() - 7] == b'-' {
        let name = &rest[..rest.len() - 7];
        if let Some((s, v)) = live(get(name.to_owned()).await?)
            && s.arn == id
        {
            return Ok(Some((s, v)));
        }
    }
    Ok(live(get(rest.to_owned()).await?))
}

/// [`lookup`] in the request's account and region, answering Secrets Manager's error when
/// there is no such secret.
pub async fn find(
    sm: &SecretsManager,
    ctx: &RequestContext,
    id: &str,
) -> Result<(SecretRecord, u64), AwsError> {
    lookup(sm.store(), &ctx.account_id, &ctx.region, id, sm.now_ms())
        .await?
        .ok_or_else(not_found)
}

/// [`find`], refusing a secret scheduled for deletion.
pub async fn find_live(
    sm: &SecretsManager,
    ctx: &RequestContext,
    id: &str,
) -> Result<(SecretRecord, u64), AwsError> {
    let (s, v) = find(sm, ctx, id).await?;
    if s.marked_for_deletion() {
        return Err(marked_for_deletion());
    }
    Ok((s, v))
}

/// Why no version matched a `VersionId`/`VersionStage` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoVersion {
    Id(String),
    Stage(String),
    StageNotOnVersion { id: String, stage: String },
}

impl NoVersion {
    pub fn message(&self) -> String {
        match self {
            NoVersion::Id(id) => {
                format!("Secrets Manager can't find the specified secret value for VersionId: {id}")
            }
            NoVersion::Stage(stage) => format!(
                "Secrets Manager can't find the specified secret value for staging label: {stage}"
            ),
            NoVersion::StageNotOnVersion { id, stage } => format!(
                "Secrets Manager can't find the specified secret value for VersionId: {id} and staging label: {stage}"
            ),
        }
    }
}

/// The version a request names: by id (which must then carry `stage`, when given), else the
/// one carrying `stage`, else `AWSCURRENT`.
pub fn select_version<'a>(
    secret: &'a SecretRecord,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<(&'a String, &'a VersionRecord), NoVersion> {
    match version_id {
        Some(id) => {
            let (id, v) = secret
                .versions
                .get_key_value(id)
                .ok_or_else(|| NoVersion::Id(id.to_owned()))?;
            if let Some(stage) = stage
                && !v.stages.iter().any(|s| s == stage)
            {
                return Err(NoVersion::StageNotOnVersion {
                    id: id.clone(),
                    stage: stage.to_owned(),
                });
            }
            Ok((id, v))
        }
        None => {
            let stage = stage.unwrap_or(CURRENT);
            secret
                .version_with_stage(stage)
                .ok_or_else(|| NoVersion::Stage(stage.to_owned()))
        }
    }
}

/// A secret value as a request gives it: a string or base64 binary, never both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    String(String),
    Binary(String),
}

impl Value {
    pub fn from_request(
        string: Option<String>,
        binary: Option<berth_shapes::Blob>,
    ) -> Result<Option<Value>, AwsError> {
        match (string, binary) {
            (Some(_), Some(_)) => Err(invalid_parameter(
                "You can't specify both a binary secret value and a string secret value in the same secret.",
            )),
            (Some(s), None) => Ok(Some(Value::String(s))),
            (None, Some(b)) => Ok(Some(Value::Binary(b.0))),
            (None, None) => Ok(None),
        }
    }

    pub fn version(&self, created_ms: i64) -> VersionRecord {
        let (string, binary) = match self {
            Value::String(s) => (Some(s.clone()), None),
            Value::Binary(b) => (None, Some(b.clone())),
        };
        VersionRecord {
            string,
            binary,
            stages: Vec::new(),
            created_ms,
        }
    }

    /// Whether `version` holds exactly this value (an idempotent retry).
    pub fn same_as(&self, version: &VersionRecord) -> bool {
        match self {
            Value::String(s) => version.string.as_ref() == Some(s) && version.binary.is_none(),
            Value::Binary(b) => version.binary.as_ref() == Some(b) && version.string.is_none(),
        }
    }
}

/// The version id of a new value: the request's `ClientRequestToken` (the AWS CLI and SDKs
/// always send one), else a fresh UUID as Secrets Manager makes.
pub fn version_id(token: Option<String>) -> String {
    token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Tags as a request gives them, checked: a key is required and `aws:` is reserved.
pub fn tags_of(tags: Option<Vec<wire::Tag>>) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    for t in tags.unwrap_or_default() {
        let Some(key) = t.key.filter(|k| !k.is_empty()) else {
            return Err(invalid_parameter("A tag key is required."));
        };
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid_parameter(
                "Tag keys beginning with 'aws:' are reserved for AWS use.",
            ));
        }
        out.push((key, t.value.unwrap_or_default()));
    }
    Ok(out)
}

/// Merges `new` onto `existing` (a key given again takes the new value in place) and checks
/// the limit on the result.
pub fn merge_tags(
    existing: &mut Vec<(String, String)>,
    new: Vec<(String, String)>,
) -> Result<(), AwsError> {
    for (k, v) in new {
        match existing.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => existing.push((k, v)),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(invalid_parameter(format!(
            "A secret can have at most {MAX_TAGS} tags."
        )));
    }
    Ok(())
}

pub fn wire_tags(tags: &[(String, String)]) -> Vec<wire::Tag> {
    tags.iter()
        .map(|(k, v)| wire::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Midnight UTC of the day holding `ms`: Secrets Manager reports last access by the day.
pub fn day_of(ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    ms.div_euclid(DAY) * DAY
}

/// The binding that ties a pagination token to one list in one account and region.
pub fn binding(ctx: &RequestContext, list: &str) -> String {
    format!("secretsmanager.{list}/{}", ctx.partition())
}

/// Every secret of the request's partition that still exists, in name order.
pub async fn all_secrets(
    sm: &SecretsManager,
    ctx: &RequestContext,
) -> Result<Vec<SecretRecord>, AwsError> {
    const PAGE: usize = 500;
    let partition = ctx.partition();
    let now = sm.now_ms();
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = sm
            .store()
            .list_as::<SecretRecord>(records::SECRET, &partition, "", after.as_deref(), PAGE)
            .await?;
        let full = page.len() == PAGE;
        for r in page {
            after = Some(r.key);
            if !r.value.expired(now) {
                out.push(r.value);
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_secrets_managers_characters() {
        for ok in ["a", "prod/db/password", "x_+=.@-!", &"n".repeat(512)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a:b", "a b", "é", "a*"] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.code, "InvalidParameterException", "{bad}");
        }
    }

    #[test]
    fn a_value_is_a_string_or_a_binary() {
        let both = Value::from_request(Some("s".into()), Some(berth_shapes::Blob("YQ==".into())));
        assert_eq!(both.unwrap_err().code, "InvalidParameterException");
        let v = Value::from_request(Some("s".into()), None)
            .unwrap()
            .unwrap();
        assert!(v.same_as(&v.version(1)));
        assert!(!Value::String("t".into()).same_as(&v.version(1)));
        assert!(!Value::Binary("s".into()).same_as(&v.version(1)));
    }

    #[test]
    fn tags_merge_in_place_and_reserve_aws() {
        let mut tags = vec![("a".to_owned(), "1".to_owned())];
        merge_tags(
            &mut tags,
            vec![("b".into(), "2".into()), ("a".into(), "3".into())],
        )
        .unwrap();
        assert_eq!(
            tags,
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        let reserved = tags_of(Some(vec![wire::Tag {
            key: Some("AWS:x".into()),
            value: None,
        }]));
        assert_eq!(reserved.unwrap_err().code, "InvalidParameterException");
        let many = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(merge_tags(&mut Vec::new(), many).is_err());
    }

    #[test]
    fn days_start_at_midnight_utc() {
        assert_eq!(day_of(86_400_000 + 5), 86_400_000);
        assert_eq!(day_of(0), 0);
    }
}
