//! The registry's typed error and the one place it becomes an OCI error response
//! (`{"errors":[{"code":…,"message":…,"detail":…}]}` with the spec's status code).
//! Internal failures (store, object storage) are logged with a reference id; the client sees
//! only that id.

use crate::digest::DigestError;
use crate::manifest::ManifestError;
use crate::path::PathError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(thiserror::Error, Debug)]
pub enum RegistryError {
    #[error("blob unknown to registry")]
    BlobUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("provided digest did not match uploaded content")]
    DigestMismatch { expected: String, computed: String },
    #[error("invalid digest: {0}")]
    DigestInvalid(#[from] DigestError),
    #[error("manifest references a manifest or blob unknown to the repository")]
    ManifestBlobUnknown(Vec<String>),
    #[error("{0}")]
    ManifestInvalid(ManifestError),
    #[error("manifest unknown to registry")]
    ManifestUnknown(String),
    #[error("invalid repository name")]
    NameInvalid(String),
    #[error("repository name not known to registry")]
    NameUnknown(String),
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("requested access to the resource is denied")]
    Denied,
    #[error("{0}")]
    Unsupported(String),
    #[error("no such endpoint")]
    NotFound,
    #[error("invalid tag")]
    TagInvalid,
    /// A push would move a tag the repository's tag policy makes immutable. ECR's wording, which
    /// docker prints after `tag invalid:`.
    #[error(
        "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the tag is immutable."
    )]
    TagImmutable { tag: String, repository: String },
    /// Deleting a repository that still holds images, without `force`.
    #[error("the repository '{0}' still holds images")]
    RepositoryNotEmpty(String),
    /// A chunk did not start at the upload's current offset.
    #[error("chunk out of order; the upload is at offset {offset}")]
    RangeInvalid { location: String, offset: u64 },
    /// A blob `Range` request outside the blob.
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    InvalidParameter(String),
    #[error("store: {0}")]
    Store(#[from] berth_store::StoreError),
    #[error("object storage: {0}")]
    Blobs(#[from] object_store::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<ManifestError> for RegistryError {
    fn from(e: ManifestError) -> Self {
        RegistryError::ManifestInvalid(e)
    }
}

impl From<PathError> for RegistryError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::NotFound => RegistryError::NotFound,
            PathError::Name => RegistryError::NameInvalid(String::new()),
            PathError::Digest(d) => RegistryError::DigestInvalid(d),
            PathError::Tag => RegistryError::TagInvalid,
            PathError::UploadId => RegistryError::BlobUploadUnknown,
        }
    }
}

impl RegistryError {
    /// The spec's error code and the HTTP status berth answers with.
    ///
    /// `MANIFEST_BLOB_UNKNOWN` is 400, as the CNCF distribution registry answers: the spec names
    /// the code but no status for it, and clients act on the code.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND),
            BlobUploadInvalid(_) => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST),
            BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND),
            DigestMismatch { .. } | DigestInvalid(_) => ("DIGEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestBlobUnknown(_) => ("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST),
            ManifestInvalid(ManifestError::TooLarge) => {
                ("MANIFEST_INVALID", StatusCode::PAYLOAD_TOO_LARGE)
            }
            ManifestInvalid(ManifestError::UnsupportedMediaType(_)) => {
                ("MANIFEST_INVALID", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            ManifestInvalid(_) => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestUnknown(_) => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND),
            NameInvalid(_) => ("NAME_INVALID", StatusCode::BAD_REQUEST),
            NameUnknown(_) => ("NAME_UNKNOWN", StatusCode::NOT_FOUND),
            SizeInvalid(_) => ("SIZE_INVALID", StatusCode::BAD_REQUEST),
            Unauthorized => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Denied => ("DENIED", StatusCode::FORBIDDEN),
            Unsupported(_) => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            NotFound => ("UNSUPPORTED", StatusCode::NOT_FOUND),
            TagInvalid => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            // ECR answers an overwrite of an immutable tag with TAG_INVALID (400).
            TagImmutable { .. } => ("TAG_INVALID", StatusCode::BAD_REQUEST),
            RepositoryNotEmpty(_) => ("DENIED", StatusCode::CONFLICT),
            RangeInvalid { .. } => ("BLOB_UPLOAD_INVALID", StatusCode::RANGE_NOT_SATISFIABLE),
            RangeNotSatisfiable { .. } => ("BLOB_UNKNOWN", StatusCode::RANGE_NOT_SATISFIABLE),
            InvalidParameter(_) => ("UNSUPPORTED", StatusCode::BAD_REQUEST),
            Store(_) | Blobs(_) | Internal(_) => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    fn detail(&self) -> serde_json::Value {
        use RegistryError::*;
        match self {
            BlobUnknown(d) | ManifestUnknown(d) if !d.is_empty() => {
                serde_json::json!({ "digest": d })
            }
            NameUnknown(n) | NameInvalid(n) if !n.is_empty() => serde_json::json!({ "name": n }),
            DigestMismatch { expected, computed } => {
                serde_json::json!({ "expected": expected, "computed": computed })
            }
            ManifestBlobUnknown(digests) => serde_json::json!({ "digests": digests }),
            _ => serde_json::Value::Null,
        }
    }
}

/// The only place a [`RegistryError`] becomes a response.
pub fn error_response(err: &RegistryError) -> Response {
    let (code, status) = err.code_and_status();
    let message = if status.is_server_error() {
        // The text may name paths, SQL or backend details: log it under an id, show the id only.
        let reference = uuid::Uuid::new_v4();
        tracing::error!(%reference, error = %err, "registry request failed");
        format!("internal error (reference {reference})")
    } else {
        err.to_string()
    };
    let mut entry = serde_json::json!({ "code": code, "message": message });
    let detail = err.detail();
    if !detail.is_null() {
        entry["detail"] = detail;
    }
    let body = serde_json::json!({ "errors": [entry] }).to_string();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    match err {
        RegistryError::RangeInvalid { location, offset } => {
            if let Ok(v) = HeaderValue::from_str(location) {
                headers.insert("location", v);
            }
            if let Ok(v) = HeaderValue::from_str(&range_header(*offset)) {
                headers.insert("range", v);
            }
        }
        RegistryError::RangeNotSatisfiable { size } => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                headers.insert("content-range", v);
            }
        }
        _ => {}
    }
    response
}

/// The `Range` header of an upload at `offset` bytes: `0-<last byte>`; `0-0` before any byte, as
/// the CNCF registry and docker expect.
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}
