//! Blob bytes in object storage: content-addressed blobs (`blobs/<alg>/<2 hex>/<hex>`) and upload
//! sessions streaming into `uploads/<uuid>`.
//!
//! A session keeps its running hash, its offset and the open multipart writer in memory, keyed by
//! the upload id; the bytes go to object storage as they arrive, in parts of [`PART_SIZE`] with
//! at most [`PARTS_IN_FLIGHT`] being written, so memory per upload is bounded whatever the blob's
//! size. A broken connection loses nothing that was counted: each received frame is hashed,
//! counted and handed to the writer with no await in between, so the offset a status `GET`
//! reports is exactly what was kept, and the client resumes from there. Sessions live in this
//! process only: after a restart the id is unknown (`BLOB_UPLOAD_UNKNOWN`) and the client starts
//! the upload again; the server clears the leftovers of dead sessions at start-up.
//!
//! **Invariant:** nothing under `blobs/` is ever partial or unverified. An upload becomes a blob
//! only after its digest (and size, when given) verified, by a rename into the content address.

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::RegistryError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Part size of the multipart writer: S3's minimum part size, and small enough that a few
/// uploads at once stay well inside the memory budget.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts being written at once per upload (beyond the one being filled).
pub const PARTS_IN_FLIGHT: usize = 2;

pub fn blob_path(d: &Digest) -> Path {
    let hex = d.hex();
    Path::from(format!(
        "blobs/{}/{}/{}",
        d.algorithm().name(),
        &hex[..2],
        hex
    ))
}

/// The digest a `blobs/...` path stands for, if it is one.
pub fn digest_of_path(p: &Path) -> Option<Digest> {
    let mut parts = p.parts();
    if parts.next()?.as_ref() != "blobs" {
        return None;
    }
    let alg = parts.next()?;
    let _shard = parts.next()?;
    let hex = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Digest::parse(&format!("{}:{}", alg.as_ref(), hex.as_ref())).ok()
}

pub fn upload_path(id: &str) -> Path {
    Path::from(format!("uploads/{id}"))
}

/// One upload in progress.
pub struct Session {
    pub repo: String,
    /// Bytes received and kept so far.
    pub offset: u64,
    hasher: Hasher,
    /// `None` once the session failed or finished; it is then removed from the table.
    writer: Option<WriteMultipart>,
    pub last_activity_ms: i64,
    /// Length of the latest part appended through [`crate::Registry::upload_part`] (0 before
    /// any), and the smallest part before it: a management API that has a minimum part size
    /// (ECR's layer parts) checks every part but the last at completion.
    pub last_part: u64,
    pub smallest_earlier_part: Option<u64>,
}

impl Session {
    /// Records that a part of `len` bytes was appended.
    pub fn note_part(&mut self, len: u64) {
        if self.last_part > 0 {
            let earlier = self
                .smallest_earlier_part
                .map_or(self.last_part, |s| s.min(self.last_part));
            self.smallest_earlier_part = Some(earlier);
        }
        self.last_part = len;
    }
}

/// Why appending a body stopped early.
pub enum AppendError {
    /// The client's body broke off (disconnect, bad framing). What was received is kept.
    Body,
    /// Object storage failed; the session is unusable.
    Storage(RegistryError),
}

pub type SessionHandle = Arc<tokio::sync::Mutex<Session>>;

/// The table of live sessions.
#[derive(Default)]
pub struct Uploads {
    sessions: Mutex<HashMap<String, SessionHandle>>,
}

impl Uploads {
    /// Opens a session writing to `uploads/<id>`. `algorithm` is the hash to compute while
    /// streaming (sha256 unless the client announced another digest up front).
    pub async fn start(
        &self,
        blobs: &Arc<dyn ObjectStore>,
        repo: &str,
        algorithm: Algorithm,
        now_ms: i64,
    ) -> Result<(String, SessionHandle), RegistryError> {
        let id = uuid::Uuid::new_v4().to_string();
        let upload = blobs.put_multipart(&upload_path(&id)).await?;
        let session = Arc::new(tokio::sync::Mutex::new(Session {
            repo: repo.to_owned(),
            offset: 0,
            hasher: Hasher::new(algorithm),
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            last_activity_ms: now_ms,
            last_part: 0,
            smallest_earlier_part: None,
        }));
        self.sessions.lock().insert(id.clone(), session.clone());
        Ok((id, session))
    }

    pub fn get(&self, id: &str) -> Option<SessionHandle> {
        self.sessions.lock().get(id).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        self.sessions.lock().keys().cloned().collect()
    }

    /// Removes a session and discards what it wrote.
    pub async fn abort(&self, id: &str, session: &mut Session) {
        self.sessions.lock().remove(id);
        if let Some(writer) = session.writer.take()
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(upload = id, "could not discard an upload: {e}");
        }
    }

    /// Streams `body` onto the end of the session. Returns the number of bytes appended.
    pub async fn append<S, E>(
        &self,
        id: &str,
        session: &mut Session,
        mut body: S,
        now_ms: i64,
    ) -> Result<u64, AppendError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let mut appended = 0u64;
        session.last_activity_ms = now_ms;
        while let Some(frame) = body.next().await {
            let Ok(bytes) = frame else {
                return Err(AppendError::Body);
            };
            let Some(writer) = session.writer.as_mut() else {
                return Err(AppendError::Storage(RegistryError::BlobUploadUnknown));
            };
            // Back-pressure before taking the frame: if this await is cancelled (client gone),
            // the frame was never counted, so the session stays consistent.
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                self.abort(id, session).await;
                return Err(AppendError::Storage(e.into()));
            }
            // From here to the end of the iteration nothing awaits: hash, count and write are
            // one step as far as cancellation is concerned.
            session.hasher.update(&bytes);
            let n = bytes.len() as u64;
            session.offset += n;
            appended += n;
            writer.put(bytes);
        }
        Ok(appended)
    }

    /// Closes the session: writes out the last part, checks the digest (and `size`, when the
    /// client declared one) and moves the bytes to the blob's content address. On any failure
    /// the session and its bytes are gone and nothing is visible under `blobs/`.
    /// Returns the blob's size.
    pub async fn finish(
        &self,
        blobs: &Arc<dyn ObjectStore>,
        id: &str,
        session: &mut Session,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<u64, RegistryError> {
        self.sessions.lock().remove(id);
        let writer = session
            .writer
            .take()
            .ok_or(RegistryError::BlobUploadUnknown)?;
        let staged = upload_path(id);
        writer.finish().await?;
        let received = session.offset;
        let computed = if session.hasher.algorithm() == digest.algorithm() {
            session.hasher.clone().finish()
        } else {
            // The digest's algorithm was only known at the end: hash the staged bytes again,
            // streaming (only for uploads that did not announce a sha512 digest up front).
            rehash(blobs, &staged, digest.algorithm()).await?
        };
        if let Some(size) = size
            && size != received
        {
            discard(blobs, &staged).await;
            return Err(RegistryError::SizeInvalid(format!(
                "declared {size} bytes, received {received}"
            )));
        }
        if &computed != digest {
            discard(blobs, &staged).await;
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                computed: computed.to_string(),
            });
        }
        promote(blobs, &staged, &blob_path(digest)).await?;
        Ok(received)
    }
}

/// Moves verified bytes to their content address. If the blob is already there (another
/// upload of the same content won), the copy is simply dropped: same address, same bytes.
async fn promote(
    blobs: &Arc<dyn ObjectStore>,
    from: &Path,
    to: &Path,
) -> Result<(), RegistryError> {
    match blobs.rename_if_not_exists(from, to).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            discard(blobs, from).await;
            Ok(())
        }
        // Stores without create-only renames (S3 without conditional copy): overwriting a
        // content address with the same verified bytes is harmless.
        Err(
            object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. },
        ) => {
            blobs.rename(from, to).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn discard(blobs: &Arc<dyn ObjectStore>, path: &Path) {
    if let Err(e) = blobs.delete(path).await
        && !matches!(e, object_store::Error::NotFound { .. })
    {
        tracing::warn!(%path, "could not delete a staged upload: {e}");
    }
}

async fn rehash(
    blobs: &Arc<dyn ObjectStore>,
    path: &Path,
    algorithm: Algorithm,
) -> Result<Digest, RegistryError> {
    let mut hasher = Hasher::new(algorithm);
    let mut stream = blobs.get(path).await?.into_stream();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    Ok(hasher.finish())
}
