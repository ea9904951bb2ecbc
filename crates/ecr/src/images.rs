//! ListImages, DescribeImages, BatchGetImage, BatchDeleteImage and PutImage: images as the
//! registry stores them (a manifest, the tags naming it), in ECR's shapes and with ECR's
//! per-image failures.

use crate::Ecr;
use crate::common::{self, check_registry_id, invalid, registry_error};
use berth_aws::{AwsError, RequestContext};
use berth_registry::digest::Digest;
use berth_registry::{ImageInfo, RegistryError};
use berth_shapes::Timestamp;
use berth_shapes::ecr as wire;

fn failure(id: &wire::ImageIdentifier, code: &str, reason: &str) -> wire::ImageFailure {
    wire::ImageFailure {
        image_id: Some(id.clone()),
        failure_code: Some(code.into()),
        failure_reason: Some(reason.into()),
    }
}

fn id(digest: &str, tag: Option<&str>) -> wire::ImageIdentifier {
    wire::ImageIdentifier {
        image_digest: Some(digest.to_owned()),
        image_tag: tag.map(str::to_owned),
    }
}

/// The digest an image id names, or the failure ECR reports for it.
async fn resolve(
    ecr: &Ecr,
    repo: &str,
    image: &wire::ImageIdentifier,
) -> Result<Result<String, wire::ImageFailure>, AwsError> {
    let digest = match image.image_digest.as_deref() {
        Some(d) if Digest::parse(d).is_err() => {
            return Ok(Err(failure(
                image,
                "InvalidImageDigest",
                "Invalid image digest",
            )));
        }
        d => d,
    };
    let by_tag = match image.image_tag.as_deref() {
        Some(tag) => match ecr
            .registry()
            .tag_target(repo, tag)
            .await
            .map_err(registry_error)?
        {
            Some(d) => Some(d),
            None => {
                return Ok(Err(failure(
                    image,
                    "ImageNotFound",
                    "Requested image not found",
                )));
            }
        },
        None => None,
    };
    match (digest, by_tag) {
        (None, None) => Ok(Err(failure(
            image,
            "MissingDigestAndTag",
            "Invalid request parameters: both tag and digest cannot be null",
        ))),
        (Some(d), Some(t)) if d != t => Ok(Err(failure(
            image,
            "ImageTagDoesNotMatchDigest",
            "Invalid request parameters: given tag does not match given digest",
        ))),
        (_, Some(t)) => Ok(Ok(t)),
        (Some(d), None) => Ok(Ok(d.to_owned())),
    }
}

fn tag_status_admits(status: Option<&str>, image: &ImageInfo) -> bool {
    match status {
        Some("TAGGED") => !image.tags.is_empty(),
        Some("UNTAGGED") => image.tags.is_empty(),
        _ => true,
    }
}

pub async fn list_images(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::ListImagesRequest,
) -> Result<wire::ListImagesResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let status = req.filter.as_ref().and_then(|f| f.tag_status.as_deref());
    let images = ecr.registry().images(&repo).await.map_err(registry_error)?;
    // One entry per (digest, tag) pair, as ECR lists them; an untagged image has its digest only.
    let mut items = Vec::new();
    for image in images.iter().filter(|i| tag_status_admits(status, i)) {
        if image.tags.is_empty() {
            items.push((format!("{}|", image.digest), id(&image.digest, None)));
        }
        for tag in &image.tags {
            items.push((
                format!("{}|{tag}", image.digest),
                id(&image.digest, Some(tag)),
            ));
        }
    }
    let (image_ids, next_token) = common::page(
        ecr,
        &format!("{}/{repo}", common::binding(ecr, "ListImages")),
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListImagesResponse {
        image_ids: Some(image_ids),
        next_token,
    })
}

fn detail(ecr: &Ecr, repo: &str, image: &ImageInfo) -> wire::ImageDetail {
    wire::ImageDetail {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(repo.to_owned()),
        image_digest: Some(image.digest.clone()),
        image_tags: (!image.tags.is_empty()).then(|| image.tags.clone()),
        image_size_in_bytes: Some(image.size_bytes as i64),
        image_pushed_at: Some(Timestamp::from_millis(image.pushed_at_ms)),
        image_manifest_media_type: Some(image.media_type.clone()),
        artifact_media_type: image.artifact_type.clone(),
        image_status: Some("ACTIVE".into()),
        ..wire::ImageDetail::default()
    }
}

pub async fn describe_images(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::DescribeImagesRequest,
) -> Result<wire::DescribeImagesResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let images = ecr.registry().images(&repo).await.map_err(registry_error)?;
    if let Some(ids) = req.image_ids.filter(|ids| !ids.is_empty()) {
        let mut out: Vec<wire::ImageDetail> = Vec::new();
        for wanted in &ids {
            let found = match resolve(ecr, &repo, wanted).await? {
                Ok(digest) => images.iter().find(|i| i.digest == digest),
                Err(f) if f.failure_code.as_deref() == Some("InvalidImageDigest") => {
                    return Err(invalid(
                        "Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Invalid digest'",
                    ));
                }
                Err(_) => None,
            };
            let Some(image) = found else {
                return Err(AwsError::client(
                    "ImageNotFoundException",
                    format!(
                        "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{repo}' in the registry with id '{}'",
                        wanted.image_digest.as_deref().unwrap_or("null"),
                        wanted.image_tag.as_deref().unwrap_or("null"),
                        ecr.place().account_id
                    ),
                ));
            };
            if !out
                .iter()
                .any(|d| d.image_digest.as_deref() == Some(&image.digest))
            {
                out.push(detail(ecr, &repo, image));
            }
        }
        return Ok(wire::DescribeImagesResponse {
            image_details: Some(out),
            next_token: None,
        });
    }
    let status = req.filter.as_ref().and_then(|f| f.tag_status.as_deref());
    let items = images
        .iter()
        .filter(|i| tag_status_admits(status, i))
        .map(|i| (i.digest.clone(), detail(ecr, &repo, i)))
        .collect();
    let (image_details, next_token) = common::page(
        ecr,
        &format!("{}/{repo}", common::binding(ecr, "DescribeImages")),
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::DescribeImagesResponse {
        image_details: Some(image_details),
        next_token,
    })
}

pub async fn batch_get_image(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::BatchGetImageRequest,
) -> Result<wire::BatchGetImageResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let mut images = Vec::new();
    let mut failures = Vec::new();
    for wanted in req.image_ids.unwrap_or_default() {
        let digest = match resolve(ecr, &repo, &wanted).await? {
            Ok(d) => d,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        match ecr
            .registry()
            .manifest(&repo, &digest)
            .await
            .map_err(registry_error)?
        {
            Some(m) => images.push(wire::Image {
                registry_id: Some(ecr.place().account_id.clone()),
                repository_name: Some(repo.clone()),
                image_id: Some(id(&m.digest, wanted.image_tag.as_deref())),
                image_manifest: Some(m.body),
                image_manifest_media_type: Some(m.media_type),
            }),
            None => failures.push(failure(
                &wanted,
                "ImageNotFound",
                "Requested image not found",
            )),
        }
    }
    Ok(wire::BatchGetImageResponse {
        images: Some(images),
        failures: Some(failures),
    })
}

pub async fn batch_delete_image(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::BatchDeleteImageRequest,
) -> Result<wire::BatchDeleteImageResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let registry = ecr.registry();
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for wanted in req.image_ids.unwrap_or_default() {
        let digest = match resolve(ecr, &repo, &wanted).await? {
            Ok(d) => d,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        let not_found = || failure(&wanted, "ImageNotFound", "Requested image not found");
        match (&wanted.image_digest, &wanted.image_tag) {
            // By tag: the tag goes, and the image with it when it was the last one (ECR).
            (None, Some(tag)) => match registry
                .untag(&repo, tag, true)
                .await
                .map_err(registry_error)?
            {
                Some(d) => deleted.push(id(&d, Some(tag))),
                None => failures.push(not_found()),
            },
            // By digest: the image and every tag naming it.
            _ => match registry
                .delete_image(&repo, &digest)
                .await
                .map_err(registry_error)?
            {
                Some(tags) if tags.is_empty() => deleted.push(id(&digest, None)),
                Some(tags) => deleted.extend(tags.iter().map(|t| id(&digest, Some(t)))),
                None => failures.push(not_found()),
            },
        }
    }
    Ok(wire::BatchDeleteImageResponse {
        image_ids: Some(deleted),
        failures: Some(failures),
    })
}

pub async fn put_image(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::PutImageRequest,
) -> Result<wire::PutImageResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let tag = req.image_tag.as_deref();
    let manifest = req.image_manifest.unwrap_or_default();
    let account = ecr.place().account_id.clone();
    let outcome = ecr
        .registry()
        .put_image(
            &repo,
            tag,
            req.image_digest.as_deref(),
            manifest.clone(),
            req.image_manifest_media_type.as_deref(),
        )
        .await
        .map_err(|e| match e {
            RegistryError::TagImmutable { tag, repository } => AwsError::client(
                "ImageTagAlreadyExistsException",
                format!(
                    "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable."
                ),
            ),
            RegistryError::ManifestBlobUnknown(missing) => AwsError::client(
                "LayersNotFoundException",
                format!(
                    "Layers with digests '{missing:?}' required for pushing image into repository with name '{repo}' in the registry with id '{account}' do not exist"
                ),
            ),
            RegistryError::DigestMismatch { .. } => AwsError::client(
                "ImageDigestDoesNotMatchException",
                "The provided image digest does not match the digest of the image manifest.",
            ),
            RegistryError::DigestInvalid(_) => {
                invalid("Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Invalid digest'")
            }
            RegistryError::TagInvalid => {
                invalid("Invalid parameter at 'imageTag' failed to satisfy constraint: 'Invalid tag'")
            }
            RegistryError::ManifestInvalid(m) => invalid(format!(
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{m}'"
            )),
            RegistryError::NameUnknown(_) => common::repository_not_found(ecr, &repo),
            other => registry_error(other),
        })?;
    let unchanged = outcome.existed
        && match tag {
            Some(_) => outcome.previous_tag_digest.as_deref() == Some(outcome.digest.as_str()),
            None => true,
        };
    if unchanged {
        return Err(AwsError::client(
            "ImageAlreadyExistsException",
            format!(
                "Image with digest '{}' and tag '{}' already exists in the repository with name '{repo}' in registry with id '{account}'",
                outcome.digest,
                tag.unwrap_or("null")
            ),
        ));
    }
    Ok(wire::PutImageResponse {
        image: Some(wire::Image {
            registry_id: Some(account),
            repository_name: Some(repo),
            image_id: Some(id(&outcome.digest, tag)),
            image_manifest: Some(manifest),
            image_manifest_media_type: Some(outcome.media_type),
        }),
    })
}
