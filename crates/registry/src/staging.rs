//! Where an upload's bytes wait until the upload completes: the object `uploads/<id>` of the
//! blob store, written one of two ways behind one interface, so `uploads.rs` has one upload path.
//!
//! - [`Staging::Multipart`]: object_store's multipart writer (S3-compatible stores, memory in
//!   tests), parts of [`PART_SIZE`] with at most [`PARTS_IN_FLIGHT`] being written.
//! - [`Staging::File`]: when the blob store is a local directory, straight into the file that
//!   object_store knows as `uploads/<id>`: received chunks are gathered into batches of
//!   [`FILE_BATCH`] and each batch is written with positional writes on the blocking pool, at most
//!   [`PARTS_IN_FLIGHT`] at once. The chunks are written as they came off the socket (shared
//!   `Bytes`, no copy into part buffers), completion is nothing more than waiting for the last
//!   write (the file already is `uploads/<id>`), and publishing stays object_store's rename.
//!
//! Both hold at most a few batches in memory per upload, whatever the blob's size, and both are
//! cancel-safe in the same way: [`Staging::ready`] is the only wait, [`Staging::put`] never
//! waits, so a chunk is either wholly taken or not at all.

use crate::error::RegistryError;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Part size of the multipart writer: S3's minimum part size, and small enough that a few
/// uploads at once stay well inside the memory budget.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts (or file batches) being written at once per upload, beyond the one being filled.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Bytes gathered before a batch is written to a local staging file.
pub const FILE_BATCH: usize = 4 * 1024 * 1024;

pub enum Staging {
    Multipart(WriteMultipart),
    File(FileStaging),
}

impl Staging {
    /// Opens `uploads/<id>`: in `local_root` (the directory the blob store is a local file
    /// system over) when there is one, else through the blob store's multipart upload.
    pub async fn open(
        blobs: &Arc<dyn ObjectStore>,
        local_root: Option<&Path>,
        id: &str,
    ) -> Result<Staging, RegistryError> {
        match local_root {
            Some(root) => Ok(Staging::File(FileStaging::create(root, id).await?)),
            None => {
                let upload = blobs
                    .put_multipart(&crate::uploads::upload_path(id))
                    .await?;
                Ok(Staging::Multipart(WriteMultipart::new_with_chunk_size(
                    upload, PART_SIZE,
                )))
            }
        }
    }

    /// Waits until another chunk may be taken (bounded memory). Cancel-safe.
    pub async fn ready(&mut self) -> Result<(), RegistryError> {
        match self {
            Staging::Multipart(w) => Ok(w.wait_for_capacity(PARTS_IN_FLIGHT).await?),
            Staging::File(f) => f.wait_for(PARTS_IN_FLIGHT).await,
        }
    }

    /// Takes a chunk. Never waits.
    pub fn put(&mut self, bytes: Bytes) {
        match self {
            Staging::Multipart(w) => w.put(bytes),
            Staging::File(f) => f.put(bytes),
        }
    }

    /// Writes out what is left; afterwards `uploads/<id>` holds every byte taken.
    pub async fn finish(self) -> Result<(), RegistryError> {
        match self {
            Staging::Multipart(w) => {
                w.finish().await?;
                Ok(())
            }
            Staging::File(mut f) => {
                f.send_batch();
                f.wait_for(0).await
            }
        }
    }

    /// Stops and discards what was written.
    pub async fn abort(self) -> Result<(), RegistryError> {
        match self {
            Staging::Multipart(w) => Ok(w.abort().await?),
            Staging::File(mut f) => {
                // Writes in flight go to the open file, not the path; they are waited for so
                // that nothing of the upload is still running once it is discarded.
                let _ = f.wait_for(0).await;
                match tokio::fs::remove_file(&f.path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io_error(&f.path, e)),
                }
            }
        }
    }
}

type Write = tokio::task::JoinHandle<std::io::Result<()>>;

pub struct FileStaging {
    path: PathBuf,
    file: Arc<std::fs::File>,
    /// Where the next batch goes in the file.
    next_offset: u64,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Oldest first.
    in_flight: VecDeque<Write>,
}

fn io_error(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Internal(format!("staging file {}: {e}", path.display()))
}

impl FileStaging {
    async fn create(root: &Path, id: &str) -> Result<FileStaging, RegistryError> {
        let dir = root.join("uploads");
        let path = dir.join(id);
        let opening = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&opening)
        })
        .await
        .map_err(|e| RegistryError::Internal(e.to_string()))?
        .map_err(|e| io_error(&path, e))?;
        Ok(FileStaging {
            path,
            file: Arc::new(file),
            next_offset: 0,
            batch: Vec::new(),
            batch_len: 0,
            in_flight: VecDeque::new(),
        })
    }

    fn put(&mut self, bytes: Bytes) {
        self.batch_len += bytes.len();
        self.batch.push(bytes);
        if self.batch_len >= FILE_BATCH {
            self.send_batch();
        }
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let mut at = self.next_offset;
        self.next_offset += self.batch_len as u64;
        self.batch_len = 0;
        let file = self.file.clone();
        self.in_flight
            .push_back(tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                for chunk in &batch {
                    file.write_all_at(chunk, at)?;
                    at += chunk.len() as u64;
                }
                Ok(())
            }));
    }

    /// Waits until at most `max` batches are being written. A write that failed fails the
    /// upload. Cancel-safe: a write leaves the queue only once it has ended.
    async fn wait_for(&mut self, max: usize) -> Result<(), RegistryError> {
        while self.in_flight.len() > max {
            let Some(oldest) = self.in_flight.front_mut() else {
                break;
            };
            let done = oldest.await;
            self.in_flight.pop_front();
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(io_error(&self.path, e)),
                Err(e) => return Err(RegistryError::Internal(e.to_string())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::local::LocalFileSystem;

    fn chunks(total: usize) -> Vec<Bytes> {
        let data: Vec<u8> = (0..total).map(|i| (i * 13 % 251) as u8).collect();
        let mut out = Vec::new();
        let (mut at, mut step) = (0, 1);
        while at < total {
            let end = (at + step).min(total);
            out.push(Bytes::copy_from_slice(&data[at..end]));
            at = end;
            step = step * 5 % 700_001 + 1;
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_staging_file_is_what_the_blob_store_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local store"));
        let chunks = chunks(FILE_BATCH * 3 + 777);
        let mut staging = Staging::open(&blobs, Some(dir.path()), "u1")
            .await
            .expect("open");
        for c in &chunks {
            staging.ready().await.expect("ready");
            staging.put(c.clone());
            if let Staging::File(f) = &staging {
                assert!(f.in_flight.len() <= PARTS_IN_FLIGHT + 1);
                assert!(f.batch_len < FILE_BATCH);
            }
        }
        staging.finish().await.expect("finish");
        let got = blobs
            .get(&crate::uploads::upload_path("u1"))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got, chunks.concat());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_local_staging_file_is_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local store"));
        let mut staging = Staging::open(&blobs, Some(dir.path()), "u2")
            .await
            .expect("open");
        for c in chunks(FILE_BATCH + 5) {
            staging.ready().await.expect("ready");
            staging.put(c);
        }
        staging.abort().await.expect("abort");
        assert!(!dir.path().join("uploads/u2").exists());
        // The same id cannot be opened twice while its file exists; after the abort it can.
        Staging::open(&blobs, Some(dir.path()), "u2")
            .await
            .expect("reopen");
        assert!(Staging::open(&blobs, Some(dir.path()), "u2").await.is_err());
    }
}
