//! What ECS hands its agent to fetch: a container's `secrets[].valueFrom` or
//! `repositoryCredentials.credentialsParameter` names a secret, and [`SecretsManager::resolve`]
//! returns its string. A reference is a secret name, or a full or partial secret ARN optionally
//! followed by `:json-key:version-stage:version-id` (each part may be empty), as ECS accepts.

use crate::SecretsManager;
use crate::common::{self, NoVersion};
use crate::records::SecretRecord;

/// Why a reference gave no string, in words close to those ECS and Secrets Manager use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "{0:?} is not a Secrets Manager secret: expected a secret name or an ARN \
         arn:aws:secretsmanager:<region>:<account>:secret:<name>[:json-key:version-stage:version-id]"
    )]
    InvalidReference(String),
    #[error("Secrets Manager can't find the specified secret: {0}")]
    NotFound(String),
    #[error(
        "You can't perform this operation on the secret {0} because it was marked for deletion."
    )]
    MarkedForDeletion(String),
    /// The version id or staging label names no version of the secret.
    #[error("{message} (secret {secret})")]
    VersionNotFound { secret: String, message: String },
    #[error("The secret {0} holds a binary value; only a SecretString can be used here.")]
    NotAString(String),
    #[error("The value of secret {0} is not a JSON object, so a JSON key cannot be read from it.")]
    NotJson(String),
    #[error("The JSON key {key:?} is not in the value of secret {secret}.")]
    JsonKeyMissing { secret: String, key: String },
    /// The store failed; the detail is for logs.
    #[error("Secrets Manager could not read the secret: {0}")]
    Internal(String),
}

/// A reference taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    region: String,
    /// The name, or the ARN without the ECS suffix.
    secret_id: String,
    json_key: Option<String>,
    version_stage: Option<String>,
    version_id: Option<String>,
}

fn parse(account: &str, region: &str, reference: &str) -> Result<Reference, ResolveError> {
    let invalid = || ResolveError::InvalidReference(reference.to_owned());
    if !reference.starts_with("arn:") {
        // Secret names hold no `:`; a plain name has no JSON-key suffix.
        common::check_name(reference).map_err(|_| invalid())?;
        return Ok(Reference {
            region: region.to_owned(),
            secret_id: reference.to_owned(),
            json_key: None,
            version_stage: None,
            version_id: None,
        });
    }
    let arn = berth_model::Arn::parse(reference).map_err(|_| invalid())?;
    if arn.service != "secretsmanager" {
        return Err(invalid());
    }
    let rest = arn.resource.strip_prefix("secret:").ok_or_else(invalid)?;
    let mut parts = rest.split(':');
    let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(invalid)?;
    let mut part = || parts.next().filter(|p| !p.is_empty()).map(str::to_owned);
    let (json_key, version_stage, version_id) = (part(), part(), part());
    if parts.next().is_some() {
        return Err(invalid());
    }
    if arn.account != account {
        // berth has no cross-account access (no resource policies).
        return Err(ResolveError::NotFound(reference.to_owned()));
    }
    Ok(Reference {
        region: arn.region.clone(),
        secret_id: format!(
            "arn:{}:secretsmanager:{}:{}:secret:{name}",
            arn.partition, arn.region, arn.account
        ),
        json_key,
        version_stage,
        version_id,
    })
}

impl SecretsManager {
    /// The string `reference` names for a task of `account` running in `region`: the
    /// secret's `SecretString` (of `AWSCURRENT`, or the version the reference names), or, with
    /// a JSON key, that key's value (a JSON string as is, anything else as JSON text). A full
    /// ARN may name another region of the same account.
    pub async fn resolve(
        &self,
        account: &str,
        region: &str,
        reference: &str,
    ) -> Result<String, ResolveError> {
        let r = parse(account, region, reference)?;
        let (secret, _) = common::lookup(
            self.store(),
            account,
            &r.region,
            &r.secret_id,
            self.now_ms(),
        )
        .await
        .map_err(|e| ResolveError::Internal(e.to_string()))?
        .ok_or_else(|| ResolveError::NotFound(r.secret_id.clone()))?;
        value_of(&secret, &r)
    }
}

fn value_of(secret: &SecretRecord, r: &Reference) -> Result<String, ResolveError> {
    if secret.marked_for_deletion() {
        return Err(ResolveError::MarkedForDeletion(secret.name.clone()));
    }
    let (_, version) =
        common::select_version(secret, r.version_id.as_deref(), r.version_stage.as_deref())
            .map_err(|e: NoVersion| ResolveError::VersionNotFound {
                secret: secret.name.clone(),
                message: e.message(),
            })?;
    let text = version
        .string
        .as_deref()
        .ok_or_else(|| ResolveError::NotAString(secret.name.clone()))?;
    let Some(key) = &r.json_key else {
        return Ok(text.to_owned());
    };
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| ResolveError::NotJson(secret.name.clone()))?;
    match object.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(ResolveError::JsonKeyMissing {
            secret: secret.name.clone(),
            key: key.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "000000000000";

    #[test]
    fn references_take_apart_as_ecs_writes_them() {
        let r = parse(ACCOUNT, "us-east-1", "db-pass").unwrap();
        assert_eq!(r.secret_id, "db-pass");
        assert_eq!(r.region, "us-east-1");
        let arn = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:prod/db-AbCdEf";
        let r = parse(ACCOUNT, "us-east-1", arn).unwrap();
        assert_eq!(r.secret_id, arn);
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(r.json_key, None);
        let r = parse(ACCOUNT, "us-east-1", &format!("{arn}:username::")).unwrap();
        assert_eq!(r.secret_id, arn);
        assert_eq!(r.json_key.as_deref(), Some("username"));
        assert_eq!((r.version_stage, r.version_id), (None, None));
        let r = parse(ACCOUNT, "us-east-1", &format!("{arn}::AWSPREVIOUS:")).unwrap();
        assert_eq!(r.json_key, None);
        assert_eq!(r.version_stage.as_deref(), Some("AWSPREVIOUS"));
        let r = parse(ACCOUNT, "us-east-1", &format!("{arn}:k::v-1")).unwrap();
        assert_eq!(r.version_id.as_deref(), Some("v-1"));
    }

    #[test]
    fn other_references_are_refused() {
        for bad in [
            "",
            "a:b",
            "arn:aws:ssm:us-east-1:000000000000:parameter/x",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:a:k:s:v:extra",
            "arn:aws:secretsmanager:us-east-1:000000000000:other:a",
        ] {
            assert!(
                matches!(
                    parse(ACCOUNT, "us-east-1", bad),
                    Err(ResolveError::InvalidReference(_))
                ),
                "{bad}"
            );
        }
        let other_account = "arn:aws:secretsmanager:us-east-1:111111111111:secret:a-AbCdEf";
        assert!(matches!(
            parse(ACCOUNT, "us-east-1", other_account),
            Err(ResolveError::NotFound(_))
        ));
    }
}
