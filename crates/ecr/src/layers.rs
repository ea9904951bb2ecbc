//! The layer APIs: BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart,
//! CompleteLayerUpload and GetDownloadUrlForLayer. They drive the registry's own upload
//! sessions (the ones `/v2/` uses: same staging, same verification, same publication), part by
//! part, and hand out presigned `/v2/` blob URLs on berth's endpoint for downloads.

use crate::Ecr;
use crate::common::{self, check_registry_id, invalid, registry_error, repository_not_found};
use base64::Engine;
use berth_aws::{AwsError, RequestContext};
use berth_registry::RegistryError;
use berth_registry::digest::Digest;
use berth_shapes::ecr as wire;

/// The part size InitiateLayerUpload announces. Parts travel base64-encoded inside an awsJson
/// body, which berth bounds at `berth_aws::json::MAX_BODY` (1 MiB): 512 KiB is 683 KiB encoded.
pub const LAYER_PART_SIZE: u64 = 512 * 1024;

/// Every part of an upload but the last must be at least this long, else CompleteLayerUpload is
/// `LayerPartTooSmallException` (AWS asks for 5 MiB, more than berth's request bound carries;
/// berth asks for half the part size it announces).
pub const MIN_LAYER_PART: u64 = LAYER_PART_SIZE / 2;

const _: () = assert!(LAYER_PART_SIZE.div_ceil(3) * 4 + 4096 <= berth_aws::json::MAX_BODY as u64);

/// How long a GetDownloadUrlForLayer URL serves the layer.
pub const DOWNLOAD_URL_LIFETIME_MS: i64 = 3600 * 1000;

fn upload_not_found(ecr: &Ecr, repo: &str, id: &str) -> AwsError {
    AwsError::client(
        "UploadNotFoundException",
        format!(
            "Upload with id '{id}' does not exist in the repository with name '{repo}' in the registry with id '{}'",
            ecr.place().account_id
        ),
    )
}

/// `InvalidLayerPartException`. The model gives it a `lastValidByteReceived` member; berth's
/// awsJson errors carry a code and a message only, so the message states it.
fn invalid_part(offset: u64) -> AwsError {
    let last = match offset {
        0 => "no byte has been received yet".to_owned(),
        n => format!("lastValidByteReceived: {}", n - 1),
    };
    AwsError::client(
        "InvalidLayerPartException",
        format!(
            "The layer part size is not valid, or the first byte specified is not consecutive to the last byte of a previous layer part upload; {last}"
        ),
    )
}

fn digest_param(member: &str, value: &str) -> Result<Digest, AwsError> {
    Digest::parse(value).map_err(|_| {
        invalid(format!(
            "Invalid parameter at '{member}' failed to satisfy constraint: 'Invalid layer digest {value}'"
        ))
    })
}

pub async fn batch_check_layer_availability(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::BatchCheckLayerAvailabilityRequest,
) -> Result<wire::BatchCheckLayerAvailabilityResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let mut layers = Vec::new();
    let mut failures = Vec::new();
    let failure = |d: &str, code: &str, reason: &str| wire::LayerFailure {
        layer_digest: Some(d.to_owned()),
        failure_code: Some(code.into()),
        failure_reason: Some(reason.into()),
    };
    for d in req.layer_digests.unwrap_or_default() {
        if d.is_empty() {
            failures.push(failure(&d, "MissingLayerDigest", "Missing layer digest"));
            continue;
        }
        let Ok(digest) = Digest::parse(&d) else {
            failures.push(failure(&d, "InvalidLayerDigest", "Invalid layer digest"));
            continue;
        };
        match ecr
            .registry()
            .layer(&repo, &digest)
            .await
            .map_err(registry_error)?
        {
            Some(info) => layers.push(wire::Layer {
                layer_digest: Some(d),
                layer_availability: Some("AVAILABLE".into()),
                layer_size: Some(info.size as i64),
                media_type: info.media_type,
            }),
            None => failures.push(failure(&d, "MissingLayerDigest", "Could not find layer")),
        }
    }
    Ok(wire::BatchCheckLayerAvailabilityResponse {
        layers: Some(layers),
        failures: Some(failures),
    })
}

pub async fn initiate_layer_upload(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::InitiateLayerUploadRequest,
) -> Result<wire::InitiateLayerUploadResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    let id = ecr
        .registry()
        .start_upload(&repo)
        .await
        .map_err(|e| match e {
            RegistryError::NameUnknown(_) => repository_not_found(ecr, &repo),
            other => registry_error(other),
        })?;
    Ok(wire::InitiateLayerUploadResponse {
        upload_id: Some(id),
        part_size: Some(LAYER_PART_SIZE as i64),
    })
}

pub async fn upload_layer_part(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::UploadLayerPartRequest,
) -> Result<wire::UploadLayerPartResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    let id = req.upload_id.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let registry = ecr.registry();
    let state = registry
        .upload_state(&repo, &id)
        .await
        .map_err(|_| upload_not_found(ecr, &repo, &id))?;
    let blob = req.layer_part_blob.map(|b| b.0).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob.as_bytes())
        .map_err(|_| {
            invalid("Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'Member must be base64-encoded'")
        })?;
    let (first, last) = (
        req.part_first_byte.unwrap_or_default(),
        req.part_last_byte.unwrap_or_default(),
    );
    // The part must be non-empty, and say exactly where its bytes go: from the upload's offset
    // to the offset plus its length, less one.
    let len = bytes.len() as i64;
    if len == 0 || last < first || last - first + 1 != len {
        return Err(invalid_part(state.offset));
    }
    let offset = registry
        .upload_part(&repo, &id, first as u64, bytes.into())
        .await
        .map_err(|e| match e {
            RegistryError::RangeInvalid { offset, .. } => invalid_part(offset),
            RegistryError::BlobUploadUnknown => upload_not_found(ecr, &repo, &id),
            other => registry_error(other),
        })?;
    Ok(wire::UploadLayerPartResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(repo),
        upload_id: Some(id),
        last_byte_received: Some(offset as i64 - 1),
    })
}

pub async fn complete_layer_upload(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::CompleteLayerUploadRequest,
) -> Result<wire::CompleteLayerUploadResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    let id = req.upload_id.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let mut digests = Vec::new();
    for d in req.layer_digests.unwrap_or_default() {
        let digest = digest_param("layerDigests", &d)?;
        if !digests.contains(&digest) {
            digests.push(digest);
        }
    }
    let digest = match digests.as_slice() {
        [one] => one.clone(),
        _ => {
            return Err(invalid(
                "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'an upload is one layer: every digest given must be the same'",
            ));
        }
    };
    let registry = ecr.registry();
    let state = registry
        .upload_state(&repo, &id)
        .await
        .map_err(|_| upload_not_found(ecr, &repo, &id))?;
    if state.offset == 0 {
        return Err(AwsError::client(
            "EmptyUploadException",
            format!("The layer upload with id '{id}' does not contain any layer parts."),
        ));
    }
    if state
        .smallest_earlier_part
        .is_some_and(|s| s < MIN_LAYER_PART)
    {
        return Err(AwsError::client(
            "LayerPartTooSmallException",
            format!(
                "Layer parts must be at least {MIN_LAYER_PART} bytes in size, except the last one."
            ),
        ));
    }
    let account = ecr.place().account_id.clone();
    if registry
        .layer(&repo, &digest)
        .await
        .map_err(registry_error)?
        .is_some()
    {
        // The upload is useless now: drop its bytes rather than leave them to the idle timeout.
        registry.abort_upload(&repo, &id).await;
        return Err(AwsError::client(
            "LayerAlreadyExistsException",
            format!(
                "Layer with digest '{digest}' already exists in the repository with name '{repo}' in registry with id '{account}'"
            ),
        ));
    }
    registry
        .complete_upload(&repo, &id, &digest)
        .await
        .map_err(|e| match e {
            RegistryError::DigestMismatch { expected, computed } => AwsError::client(
                "InvalidLayerException",
                format!(
                    "The layer digest calculation performed upon receipt of the image layer ('{computed}') does not match the digest specified ('{expected}')."
                ),
            ),
            RegistryError::BlobUploadUnknown => upload_not_found(ecr, &repo, &id),
            other => registry_error(other),
        })?;
    Ok(wire::CompleteLayerUploadResponse {
        registry_id: Some(account),
        repository_name: Some(repo),
        upload_id: Some(id),
        layer_digest: Some(digest.to_string()),
    })
}

pub async fn get_download_url_for_layer(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::GetDownloadUrlForLayerRequest,
) -> Result<wire::GetDownloadUrlForLayerResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let repo = req.repository_name.unwrap_or_default();
    common::existing(ecr, &repo).await?;
    let raw = req.layer_digest.unwrap_or_default();
    let digest = digest_param("layerDigest", &raw)?;
    let account = &ecr.place().account_id;
    let info = ecr
        .registry()
        .layer(&repo, &digest)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            AwsError::client(
                "LayersNotFoundException",
                format!(
                    "The layer with digest '{digest}' does not exist in the repository with name '{repo}' in the registry with id '{account}'"
                ),
            )
        })?;
    if !info.referenced {
        return Err(AwsError::client(
            "LayerInaccessibleException",
            "The specified layer is not available because it is not associated with an image. Unassociated image layers may be cleaned up at any time.",
        ));
    }
    let path =
        ecr.registry()
            .presigned_blob_path(&repo, &digest, ecr.now_ms() + DOWNLOAD_URL_LIFETIME_MS);
    Ok(wire::GetDownloadUrlForLayerResponse {
        download_url: Some(format!("http://{}{path}", ecr.place().host)),
        layer_digest: Some(digest.to_string()),
    })
}
