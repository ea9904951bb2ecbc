//! What several ECR actions share: ECR's error codes and wording, the registry id check,
//! repository ARNs and URIs, the settings ECR keeps with a repository, and pagination.

use crate::Ecr;
use berth_aws::AwsError;
use berth_registry::{RegistryError, RepositoryInfo};
use berth_shapes::ecr as wire;
use serde::{Deserialize, Serialize};

pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", message)
}

pub fn repository_not_found(ecr: &Ecr, name: &str) -> AwsError {
    AwsError::client(
        "RepositoryNotFoundException",
        format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            ecr.place().account_id
        ),
    )
}

/// A registry failure no action maps to its own code: a server fault (logged, never shown), or
/// a client error ECR words as an invalid parameter.
pub fn registry_error(e: RegistryError) -> AwsError {
    match e {
        RegistryError::Store(_) | RegistryError::Blobs(_) | RegistryError::Internal(_) => {
            AwsError::internal(e)
        }
        other => invalid(other.to_string()),
    }
}

/// An [`AwsError`] that registry and store errors convert into, for closures the registry runs
/// (its read-modify-write helpers need `From` both ways, which the orphan rule does not allow on
/// [`AwsError`] itself).
pub struct Failure(pub AwsError);

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure(registry_error(e))
    }
}

impl From<berth_store::StoreError> for Failure {
    fn from(e: berth_store::StoreError) -> Self {
        Failure(AwsError::internal(e))
    }
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        Failure(e)
    }
}

impl From<Failure> for AwsError {
    fn from(f: Failure) -> Self {
        f.0
    }
}

/// The registry berth serves is the caller's account's; another `registryId` is refused as ECR
/// refuses a registry the caller may not use.
pub fn check_registry_id(ecr: &Ecr, registry_id: Option<&str>) -> Result<(), AwsError> {
    match registry_id {
        Some(id) if id != ecr.place().account_id => Err(invalid(format!(
            "Invalid parameter at 'registryId' failed to satisfy constraint: 'berth serves only the registry with id {}'",
            ecr.place().account_id
        ))),
        _ => Ok(()),
    }
}

pub fn repository_arn(ecr: &Ecr, name: &str) -> String {
    let p = ecr.place();
    berth_model::Arn::new(
        "ecr",
        &p.region,
        &p.account_id,
        format!("repository/{name}"),
    )
    .to_string()
}

/// What ECR keeps with a repository besides the tag policy the registry enforces: the settings
/// as the client gave them (or ECR's defaults), so they are echoed unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub image_tag_mutability: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag_mutability_exclusion_filters:
        Option<Vec<wire::ImageTagMutabilityExclusionFilter>>,
    #[serde(default)]
    pub image_scanning_configuration: wire::ImageScanningConfiguration,
    #[serde(default)]
    pub encryption_configuration: wire::EncryptionConfiguration,
    #[serde(default)]
    pub tags: Vec<wire::Tag>,
    /// The repository policy (SetRepositoryPolicy), as the client gave it; validated, not yet
    /// enforced (that comes with IAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_policy: Option<String>,
    /// The lifecycle policy (PutLifecyclePolicy), as the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_policy: Option<String>,
    /// When the lifecycle policy was last applied (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_evaluated_at_ms: Option<i64>,
    /// The latest lifecycle policy preview (StartLifecyclePolicyPreview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_preview: Option<crate::lifecycle_policies::Preview>,
}

impl Settings {
    pub fn of(info: &RepositoryInfo) -> Settings {
        serde_json::from_value(info.settings.clone()).unwrap_or_else(|_| Settings {
            image_tag_mutability: "MUTABLE".into(),
            ..Settings::default()
        })
    }
}

/// Rewrites the settings of repository `name` with `f`, in one commit (retried on conflicting
/// writes); `f` may refuse with an error, and then nothing changes. Returns the new settings.
pub async fn update_settings(
    ecr: &Ecr,
    name: &str,
    f: impl Fn(&mut Settings) -> Result<(), AwsError>,
) -> Result<Settings, AwsError> {
    let updated = ecr
        .registry()
        .update_repository(name, |_, value| -> Result<(), Failure> {
            let mut s: Settings = if value.is_null() {
                Settings {
                    image_tag_mutability: "MUTABLE".into(),
                    ..Settings::default()
                }
            } else {
                serde_json::from_value(value.clone()).map_err(AwsError::internal)?
            };
            f(&mut s)?;
            *value = serde_json::to_value(&s).map_err(AwsError::internal)?;
            Ok(())
        })
        .await
        .map_err(AwsError::from)?;
    match updated {
        Some(info) => Ok(Settings::of(&info)),
        None => Err(repository_not_found(ecr, name)),
    }
}

/// A repository as ECR describes it.
pub fn repository_wire(ecr: &Ecr, info: &RepositoryInfo) -> wire::Repository {
    let s = Settings::of(info);
    wire::Repository {
        repository_arn: Some(repository_arn(ecr, &info.name)),
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(info.name.clone()),
        repository_uri: Some(format!("{}/{}", ecr.place().host, info.name)),
        created_at: Some(berth_shapes::Timestamp::from_millis(info.created_at_ms)),
        image_tag_mutability: Some(s.image_tag_mutability),
        image_tag_mutability_exclusion_filters: s.image_tag_mutability_exclusion_filters,
        image_scanning_configuration: Some(s.image_scanning_configuration),
        encryption_configuration: Some(s.encryption_configuration),
    }
}

/// The repository a request names, which must exist.
pub async fn existing(ecr: &Ecr, name: &str) -> Result<RepositoryInfo, AwsError> {
    ecr.registry()
        .repository(name)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| repository_not_found(ecr, name))
}

/// One page of `items` (in list order, each with its position key): `maxResults` (already
/// range-checked by the model) defaulting to `default_page`, and a `nextToken` while more remain.
pub fn page<T>(
    ecr: &Ecr,
    binding: &str,
    items: Vec<(String, T)>,
    max_results: Option<i32>,
    next_token: Option<&str>,
    default_page: usize,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let limit = max_results.map_or(default_page, |n| n.max(1) as usize);
    let start = match next_token {
        None => 0,
        Some(t) => {
            let after = ecr.tokens().decode(binding, t).ok_or_else(|| {
                invalid("Invalid parameter at 'nextToken': the token is invalid.")
            })?;
            items.partition_point(|(k, _)| k.as_str() <= after.as_str())
        }
    };
    let mut rest: Vec<(String, T)> = items.into_iter().skip(start).collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let token = match (more, rest.last()) {
        (true, Some((k, _))) => Some(ecr.tokens().encode(binding, k)),
        _ => None,
    };
    Ok((rest.into_iter().map(|(_, v)| v).collect(), token))
}

/// The binding that ties a pagination token to one list of one registry.
pub fn binding(ecr: &Ecr, list: &str) -> String {
    let p = ecr.place();
    format!("ecr.{list}/{}/{}", p.account_id, p.region)
}

/// ECR's tag rules beyond the model: at most 50, keys 1–128 and values up to 256 characters, no
/// `aws:` prefix, no duplicate keys.
pub fn check_tags(tags: &[wire::Tag]) -> Result<(), AwsError> {
    if tags.len() > 50 {
        return Err(AwsError::client(
            "TooManyTagsException",
            "The repository can have at most 50 tags.",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        let key = t.key.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(AwsError::client(
                "InvalidTagParameterException",
                "Tag keys must be 1 to 128 characters and values at most 256 characters.",
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(AwsError::client(
                "InvalidTagParameterException",
                "Tag keys beginning with 'aws:' are reserved for AWS use.",
            ));
        }
        if !seen.insert(key) {
            return Err(AwsError::client(
                "InvalidTagParameterException",
                format!("Duplicate tag key '{key}'."),
            ));
        }
    }
    Ok(())
}

/// Applies `new` over `existing`: same key replaces the value, new keys are added.
pub fn merge_tags(existing: &mut Vec<wire::Tag>, new: Vec<wire::Tag>) {
    for t in new {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value,
            None => existing.push(t),
        }
    }
}
