//! CreateRepository, DescribeRepositories, DeleteRepository and DescribeRegistry.

use crate::Ecr;
use crate::common::{
    self, Failure, Settings, check_registry_id, invalid, registry_error, repository_not_found,
    repository_wire,
};
use berth_aws::{AwsError, RequestContext};
use berth_registry::{RegistryError, TagPolicy};
use berth_shapes::ecr as wire;

/// ECR's tag mutability setting as the registry's [`TagPolicy`]: the `*_WITH_EXCLUSION` forms
/// need at least one filter, the plain forms take none.
fn tag_policy(
    mutability: &str,
    filters: Option<&[wire::ImageTagMutabilityExclusionFilter]>,
) -> Result<TagPolicy, AwsError> {
    let filters = filters.unwrap_or_default();
    let (immutable, excluding) = match mutability {
        "MUTABLE" => (false, false),
        "IMMUTABLE" => (true, false),
        "MUTABLE_WITH_EXCLUSION" => (false, true),
        "IMMUTABLE_WITH_EXCLUSION" => (true, true),
        other => {
            return Err(invalid(format!(
                "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set', got '{other}'"
            )));
        }
    };
    match (excluding, filters.is_empty()) {
        (true, true) => Err(invalid(format!(
            "imageTagMutabilityExclusionFilters must be specified when imageTagMutability is {mutability}."
        ))),
        (false, false) => Err(invalid(format!(
            "imageTagMutabilityExclusionFilters can only be specified when imageTagMutability is MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION, not {mutability}."
        ))),
        _ => Ok(TagPolicy {
            immutable,
            exceptions: filters.iter().filter_map(|f| f.filter.clone()).collect(),
        }),
    }
}

pub async fn create_repository(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::CreateRepositoryRequest,
) -> Result<wire::CreateRepositoryResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let tags = req.tags.unwrap_or_default();
    common::check_tags(&tags)?;
    let mutability = req
        .image_tag_mutability
        .unwrap_or_else(|| "MUTABLE".to_owned());
    let policy = tag_policy(
        &mutability,
        req.image_tag_mutability_exclusion_filters.as_deref(),
    )?;
    let encryption = req
        .encryption_configuration
        .unwrap_or(wire::EncryptionConfiguration {
            encryption_type: Some("AES256".into()),
            kms_key: None,
        });
    if encryption.encryption_type.as_deref() == Some("AES256") && encryption.kms_key.is_some() {
        return Err(invalid(
            "kmsKey can only be specified when encryptionType is KMS or KMS_DSSE.",
        ));
    }
    let settings = Settings {
        image_tag_mutability: mutability,
        image_tag_mutability_exclusion_filters: req.image_tag_mutability_exclusion_filters,
        image_scanning_configuration: req.image_scanning_configuration.unwrap_or(
            wire::ImageScanningConfiguration {
                scan_on_push: Some(false),
            },
        ),
        encryption_configuration: encryption,
        tags,
        ..Settings::default()
    };
    let value = serde_json::to_value(&settings).map_err(AwsError::internal)?;
    let created = ecr
        .registry()
        .create_repository_with(&name, policy, value)
        .await
        .map_err(|e| match e {
            RegistryError::NameInvalid(_) => invalid(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''"
            ),
            other => registry_error(other),
        })?;
    let Some(info) = created else {
        return Err(AwsError::client(
            "RepositoryAlreadyExistsException",
            format!(
                "The repository with name '{name}' already exists in the registry with id '{}'",
                ecr.place().account_id
            ),
        ));
    };
    Ok(wire::CreateRepositoryResponse {
        repository: Some(repository_wire(ecr, &info)),
    })
}

pub async fn describe_repositories(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::DescribeRepositoriesRequest,
) -> Result<wire::DescribeRepositoriesResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    if let Some(names) = req.repository_names.filter(|n| !n.is_empty()) {
        // Named repositories come back in the order asked; the first missing one fails the
        // call, as ECR does. Paging does not apply.
        let mut out = Vec::with_capacity(names.len());
        for name in &names {
            out.push(repository_wire(ecr, &common::existing(ecr, name).await?));
        }
        return Ok(wire::DescribeRepositoriesResponse {
            repositories: Some(out),
            next_token: None,
        });
    }
    let all = ecr
        .registry()
        .repositories()
        .await
        .map_err(registry_error)?;
    let items = all
        .into_iter()
        .map(|info| (info.name.clone(), repository_wire(ecr, &info)))
        .collect();
    let (repositories, next_token) = common::page(
        ecr,
        &common::binding(ecr, "DescribeRepositories"),
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::DescribeRepositoriesResponse {
        repositories: Some(repositories),
        next_token,
    })
}

pub async fn delete_repository(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::DeleteRepositoryRequest,
) -> Result<wire::DeleteRepositoryResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let info = ecr
        .registry()
        .delete_repository(&name, req.force.unwrap_or(false))
        .await
        .map_err(|e| match e {
            RegistryError::NameUnknown(_) => repository_not_found(ecr, &name),
            RegistryError::RepositoryNotEmpty(_) => AwsError::client(
                "RepositoryNotEmptyException",
                format!(
                    "The repository with name '{name}' in registry with id '{}' cannot be deleted because it still contains images",
                    ecr.place().account_id
                ),
            ),
            other => registry_error(other),
        })?;
    Ok(wire::DeleteRepositoryResponse {
        repository: Some(repository_wire(ecr, &info)),
    })
}

pub async fn describe_registry(
    ecr: &Ecr,
    _ctx: &RequestContext,
    _req: wire::DescribeRegistryRequest,
) -> Result<wire::DescribeRegistryResponse, AwsError> {
    Ok(wire::DescribeRegistryResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        replication_configuration: Some(wire::ReplicationConfiguration {
            rules: Some(vec![]),
        }),
    })
}

pub async fn put_image_tag_mutability(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::PutImageTagMutabilityRequest,
) -> Result<wire::PutImageTagMutabilityResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let mutability = req.image_tag_mutability.unwrap_or_default();
    let filters = req.image_tag_mutability_exclusion_filters;
    // Checked before any write: a bad combination changes nothing.
    let policy = tag_policy(&mutability, filters.as_deref())?;
    let updated = ecr
        .registry()
        .update_repository(&name, |tag_policy, settings| -> Result<(), Failure> {
            let mut s: Settings = if settings.is_null() {
                Settings {
                    image_tag_mutability: "MUTABLE".into(),
                    ..Settings::default()
                }
            } else {
                serde_json::from_value(settings.clone()).map_err(AwsError::internal)?
            };
            s.image_tag_mutability = mutability.clone();
            s.image_tag_mutability_exclusion_filters = filters.clone();
            *settings = serde_json::to_value(&s).map_err(AwsError::internal)?;
            *tag_policy = policy.clone();
            Ok(())
        })
        .await
        .map_err(AwsError::from)?;
    if updated.is_none() {
        return Err(repository_not_found(ecr, &name));
    }
    Ok(wire::PutImageTagMutabilityResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        image_tag_mutability: Some(mutability),
        image_tag_mutability_exclusion_filters: filters,
    })
}
