//! Layers as a management API moves them (ECR's layer APIs): whether a repository has a blob
//! and whether an image uses it, upload sessions driven part by part instead of over `/v2/`,
//! and presigned blob URLs that serve a blob without credentials until they expire.
//!
//! Uploads here are the `/v2/` upload sessions of `uploads.rs` (same table, same staging, same
//! verification and publication through `http::publish`): one way to turn bytes into a blob.

use crate::digest::{Algorithm, Digest};
use crate::http::{publish, session_for};
use crate::records::{self, ManifestRecord};
use crate::uploads::AppendError;
use crate::{Registry, RegistryError, manifest};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;

/// A blob linked into a repository.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    pub size: u64,
    /// The media type a manifest of the repository gives it, when one names it.
    pub media_type: Option<String>,
    /// Some manifest of the repository names it (as config or layer).
    pub referenced: bool,
}

/// Where an upload session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadState {
    /// Bytes received and kept.
    pub offset: u64,
    /// The smallest part appended before the latest one (see [`crate::Registry::upload_part`]).
    pub smallest_earlier_part: Option<u64>,
}

const EXPIRES: &str = "X-Berth-Expires";
const SIGNATURE: &str = "X-Berth-Signature";
/// Separates these MACs from anything else a key might sign.
const DOMAIN: &[u8] = b"berth.registry.presigned-blob.v1\0";

pub(crate) fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, RegistryError> {
    serde_json::from_value(v).map_err(|e| RegistryError::Internal(e.to_string()))
}

impl Registry {
    /// The blob `digest` as repository `name` holds it; `None` when it is not linked there.
    pub async fn layer(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<Option<LayerInfo>, RegistryError> {
        let Some((link, _)) = self.link(name, digest).await? else {
            return Ok(None);
        };
        let wanted = digest.to_string();
        let mut info = LayerInfo {
            size: link.size,
            media_type: None,
            referenced: false,
        };
        for r in self
            .list_all(records::MANIFEST, &records::prefix(name))
            .await?
        {
            let m: ManifestRecord = decode(r.value)?;
            if !m.blobs.contains(&wanted) {
                continue;
            }
            info.referenced = true;
            if let Ok(parsed) = manifest::parse(m.body.as_bytes(), Some(&m.media_type)) {
                info.media_type = parsed
                    .config
                    .iter()
                    .chain(parsed.layers.iter())
                    .find(|d| d.digest == *digest)
                    .map(|d| d.media_type.clone());
            }
            if info.media_type.is_some() {
                break;
            }
        }
        Ok(Some(info))
    }

    /// Opens an upload session into repository `name` (which must exist: `NameUnknown`).
    /// Returns the upload id, a UUID.
    pub async fn start_upload(&self, name: &str) -> Result<String, RegistryError> {
        self.require_repo(name).await?;
        let (id, _) = self
            .inner
            .uploads
            .start(&self.inner.blobs, name, Algorithm::Sha256, self.now())
            .await?;
        Ok(id)
    }

    /// Where upload `id` of repository `name` stands; `BlobUploadUnknown` when there is no such
    /// session (or it belongs to another repository).
    pub async fn upload_state(&self, name: &str, id: &str) -> Result<UploadState, RegistryError> {
        let session = session_for(self, id)?;
        let guard = session.lock().await;
        if guard.repo != name {
            return Err(RegistryError::BlobUploadUnknown);
        }
        Ok(UploadState {
            offset: guard.offset,
            smallest_earlier_part: guard.smallest_earlier_part,
        })
    }

    /// Appends `bytes` to upload `id`, which must be at offset `first_byte` (else `RangeInvalid`
    /// with the session's offset, nothing appended). Returns the new offset.
    pub async fn upload_part(
        &self,
        name: &str,
        id: &str,
        first_byte: u64,
        bytes: Bytes,
    ) -> Result<u64, RegistryError> {
        let session = session_for(self, id)?;
        let mut guard = session.lock().await;
        if guard.repo != name {
            return Err(RegistryError::BlobUploadUnknown);
        }
        if first_byte != guard.offset {
            return Err(RegistryError::RangeInvalid {
                location: format!("/v2/{name}/blobs/uploads/{id}"),
                offset: guard.offset,
            });
        }
        let len = bytes.len() as u64;
        let body = futures_util::stream::once(std::future::ready(
            Ok::<_, std::convert::Infallible>(bytes),
        ));
        match self
            .inner
            .uploads
            .append(id, &mut guard, Box::pin(body), self.now())
            .await
        {
            Ok(_) => {}
            Err(AppendError::Body) => {
                return Err(RegistryError::BlobUploadInvalid(
                    "the part broke off".into(),
                ));
            }
            Err(AppendError::Storage(e)) => return Err(e),
        }
        guard.note_part(len);
        Ok(guard.offset)
    }

    /// Verifies upload `id` against `digest`, publishes it and links it into `name`. Returns
    /// the blob's size. On a digest mismatch the upload is gone and nothing is visible.
    pub async fn complete_upload(
        &self,
        name: &str,
        id: &str,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        let session = session_for(self, id)?;
        let mut guard = session.lock().await;
        if guard.repo != name {
            return Err(RegistryError::BlobUploadUnknown);
        }
        publish(self, name, id, &mut guard, digest).await
    }

    /// Ends upload `id` of `name` and discards its bytes (no-op when it does not exist).
    pub async fn abort_upload(&self, name: &str, id: &str) {
        let Ok(session) = session_for(self, id) else {
            return;
        };
        let mut guard = session.lock().await;
        if guard.repo == name {
            self.inner.uploads.abort(id, &mut guard).await;
        }
    }

    fn url_mac(&self, name: &str, digest: &Digest, expires_at_ms: i64) -> Vec<u8> {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.inner.url_key) else {
            // HMAC takes keys of any length; this branch cannot be reached.
            return Vec::new();
        };
        mac.update(DOMAIN);
        mac.update(format!("{name}\0{digest}\0{expires_at_ms}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A path (with query) that serves blob `digest` of `name` with `GET`/`HEAD` and no
    /// credentials until `expires_at_ms`, like the presigned URLs ECR hands out for layers.
    pub fn presigned_blob_path(&self, name: &str, digest: &Digest, expires_at_ms: i64) -> String {
        format!(
            "/v2/{name}/blobs/{digest}?{EXPIRES}={expires_at_ms}&{SIGNATURE}={}",
            hex::encode(self.url_mac(name, digest, expires_at_ms))
        )
    }

    /// Whether a request's query presigns blob `digest` of `name`, unexpired.
    pub(crate) fn presigned_ok(
        &self,
        name: &str,
        digest: &Digest,
        query: &HashMap<String, String>,
    ) -> bool {
        let (Some(expires), Some(signature)) = (query.get(EXPIRES), query.get(SIGNATURE)) else {
            return false;
        };
        let (Ok(expires), Ok(signature)) = (expires.parse::<i64>(), hex::decode(signature)) else {
            return false;
        };
        let expected = self.url_mac(name, digest, expires);
        let genuine: bool =
            subtle::ConstantTimeEq::ct_eq(signature.as_slice(), expected.as_slice()).into();
        genuine && self.now() < expires
    }
}
