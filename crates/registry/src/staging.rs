//! Where an upload's bytes wait until the upload completes: the object `uploads/<id>` of the
//! blob store, written one of two ways behind one interface, so `uploads.rs` has one upload path.
//!
//! - [`Staging::Multipart`]: object_store's multipart writer (S3-compatible stores, memory in
//!   tests), parts of [`PART_SIZE`] with at most [`PARTS_IN_FLIGHT`] being written.
//! - [`Staging::File`]: when the blob store is a local directory, straight into the file that
//!   object_store knows as `uploads/<id>`: received chunks are gathered into batches of exactly
//!   [`FILE_BATCH`] bytes and each batch is written with a positional write on the blocking pool,
//!   at most [`PARTS_IN_FLIGHT`] at once. Completion is nothing more than waiting for the last
//!   write (the file already is `uploads/<id>`), and publishing stays object_store's rename.
//!
//! Whole batches go through a second descriptor of the same file opened with `O_DIRECT`, when
//! the file system takes it: the batch is copied into an aligned buffer (reused) and the disk
//! reads it from there. A buffered write would copy it into the page cache instead, allocating
//! and accounting a dirty page per 4 KiB, which cost more CPU than the aligned copy; on two
//! cores shared with the client that CPU is upload throughput (`bench/registry/README.md`).
//! The last, partial batch is written buffered, so no length or offset rule of `O_DIRECT` is
//! ever broken, and a direct write the file system refuses (`EINVAL`) is done buffered instead.
//!
//! Both hold at most a few batches in memory per upload, whatever the blob's size, and both are
//! cancel-safe in the same way: [`Staging::ready`] is the only wait, [`Staging::put`] never
//! waits, so a chunk is either wholly taken or not at all.
//!
//! Between requests a local staging file holds no descriptor and none of the received buffers
//! ([`Staging::park`]): a chunked upload's next part may come much later or never, and a client
//! that leaves hundreds of sessions open must not use up the server's descriptors or pin its
//! memory (each received chunk shares hyper's read buffer).

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
            Staging::File(f) => {
                f.reopen().await?;
                f.wait_for(PARTS_IN_FLIGHT).await
            }
        }
    }

    /// Takes a chunk, after [`Staging::ready`]. Never waits.
    pub fn put(&mut self, bytes: Bytes) {
        match self {
            Staging::Multipart(w) => w.put(bytes),
            Staging::File(f) => f.put(bytes),
        }
    }

    /// Called when a request's body ends. A local staging file writes out every whole 4 KiB it
    /// gathered, keeps the rest (less than 4 KiB) in a buffer of its own, waits for its writes,
    /// and closes its descriptors; the next [`Staging::ready`] opens them again. The multipart
    /// writer keeps its part being filled, which S3's minimum part size makes necessary.
    pub async fn park(&mut self) -> Result<(), RegistryError> {
        match self {
            Staging::Multipart(_) => Ok(()),
            Staging::File(f) => f.park().await,
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
                if !f.batch.is_empty() {
                    f.reopen().await?;
                    f.send_batch();
                }
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

/// Alignment of `O_DIRECT` buffers, offsets and lengths: the largest logical block size Linux
/// disks have, so one value serves every disk. [`FILE_BATCH`] is a multiple of it.
const DIRECT_ALIGN: usize = 4096;

/// A batch being written; it hands back its aligned buffer (if it had one) for the next batch.
type Write = tokio::task::JoinHandle<(std::io::Result<()>, Option<Vec<u8>>)>;

pub struct FileStaging {
    path: PathBuf,
    /// While a request streams into the file; `None` between requests.
    open: Option<Descriptors>,
    /// Where the next batch goes in the file. A multiple of 4 KiB until the last batch: every
    /// batch but that one is [`FILE_BATCH`] bytes or, at a [`FileStaging::park`], whole 4 KiB
    /// blocks.
    next_offset: u64,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Aligned buffers of finished direct writes, for the next ones.
    spare: Vec<Vec<u8>>,
    /// Oldest first.
    in_flight: VecDeque<Write>,
}

#[derive(Clone)]
struct Descriptors {
    file: Arc<std::fs::File>,
    /// The same file opened with `O_DIRECT`, if the file system allows it.
    direct: Option<Arc<std::fs::File>>,
}

impl Descriptors {
    fn open(path: &Path) -> std::io::Result<Descriptors> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        Ok(Descriptors {
            file: Arc::new(file),
            direct: open_direct(path).ok().map(Arc::new),
        })
    }
}

fn io_error(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Internal(format!("staging file {}: {e}", path.display()))
}

impl FileStaging {
    async fn create(root: &Path, id: &str) -> Result<FileStaging, RegistryError> {
        let dir = root.join("uploads");
        let path = dir.join(id);
        let creating = path.clone();
        // Created now, so the id is taken and start-up or GC finds the file if the session
        // dies; opened for writing only when a body arrives (`reopen`).
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&creating)
                .map(drop)
        })
        .await
        .map_err(|e| RegistryError::Internal(e.to_string()))?
        .map_err(|e| io_error(&path, e))?;
        Ok(FileStaging {
            path,
            open: None,
            next_offset: 0,
            batch: Vec::new(),
            batch_len: 0,
            spare: Vec::new(),
            in_flight: VecDeque::new(),
        })
    }

    fn put(&mut self, mut bytes: Bytes) {
        while self.batch_len + bytes.len() >= FILE_BATCH {
            let head = bytes.split_to(FILE_BATCH - self.batch_len);
            self.batch_len += head.len();
            self.batch.push(head);
            self.send_batch();
        }
        if !bytes.is_empty() {
            self.batch_len += bytes.len();
            self.batch.push(bytes);
        }
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let at = self.next_offset;
        let aligned =
            at.is_multiple_of(DIRECT_ALIGN as u64) && self.batch_len.is_multiple_of(DIRECT_ALIGN);
        self.next_offset += self.batch_len as u64;
        self.batch_len = 0;
        let Some(open) = self.open.clone() else {
            // `ready` opens the file before any chunk is taken; if that order is ever broken,
            // the upload fails instead of losing the batch silently.
            let path = self.path.clone();
            self.in_flight.push_back(tokio::task::spawn(async move {
                let closed = std::io::Error::other(format!("{} is not open", path.display()));
                (Err(closed), None)
            }));
            return;
        };
        let direct = open.direct.filter(|_| aligned);
        let buffer = direct
            .as_ref()
            .map(|_| self.spare.pop().unwrap_or_default());
        self.in_flight
            .push_back(tokio::task::spawn_blocking(move || {
                write_batch(&open.file, direct.as_deref(), buffer, &batch, at)
            }));
    }

    /// Opens the file's descriptors if a [`FileStaging::park`] (or the creation) closed them.
    /// Cancel-safe: descriptors opened for a cancelled call are closed again.
    async fn reopen(&mut self) -> Result<(), RegistryError> {
        if self.open.is_none() {
            let path = self.path.clone();
            let opened = tokio::task::spawn_blocking(move || Descriptors::open(&path))
                .await
                .map_err(|e| RegistryError::Internal(e.to_string()))?
                .map_err(|e| io_error(&self.path, e))?;
            self.open = Some(opened);
        }
        Ok(())
    }

    /// Writes out the whole 4 KiB blocks gathered (so the next batch starts aligned and
    /// `O_DIRECT` stays usable), copies the rest into a buffer of its own, waits for every
    /// write and closes the descriptors. Afterwards the upload holds no received buffer, no
    /// aligned buffer and no descriptor.
    async fn park(&mut self) -> Result<(), RegistryError> {
        let whole = self.batch_len - self.batch_len % DIRECT_ALIGN;
        let mut rest = Vec::new();
        let mut kept = 0;
        for mut chunk in std::mem::take(&mut self.batch) {
            if kept + chunk.len() > whole {
                rest.extend_from_slice(&chunk.split_off(whole - kept));
            }
            kept += chunk.len();
            if !chunk.is_empty() {
                self.batch.push(chunk);
            }
        }
        self.batch_len = whole;
        self.send_batch();
        // Copied, because a slice of a received chunk keeps that chunk's whole read buffer alive.
        self.batch_len = rest.len();
        if !rest.is_empty() {
            self.batch.push(Bytes::from(rest));
        }
        self.wait_for(0).await?;
        self.spare = Vec::new();
        self.open = None;
        Ok(())
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
            let (written, buffer) = done.map_err(|e| RegistryError::Internal(e.to_string()))?;
            self.spare.extend(buffer);
            written.map_err(|e| io_error(&self.path, e))?;
        }
        Ok(())
    }
}

/// Opens the existing file `path` for writing with `O_DIRECT`; an error where the file system
/// does not take it.
pub(crate) fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
}

/// Writes `batch` at `at`: through `direct` from the aligned part of `buffer` when both are
/// given, else (or if the file system refuses the direct write) buffered through `file`.
pub(crate) fn write_batch(
    file: &std::fs::File,
    direct: Option<&std::fs::File>,
    buffer: Option<Vec<u8>>,
    batch: &[Bytes],
    mut at: u64,
) -> (std::io::Result<()>, Option<Vec<u8>>) {
    use std::os::unix::fs::FileExt;
    if let (Some(direct), Some(mut buffer)) = (direct, buffer) {
        let len: usize = batch.iter().map(Bytes::len).sum();
        if buffer.len() < len + DIRECT_ALIGN {
            // `vec!` of zeros is calloc: fresh pages come zeroed from the kernel, not memset.
            buffer = vec![0; len + DIRECT_ALIGN];
        }
        let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
        let aligned = &mut buffer[start..start + len];
        let mut filled = 0;
        for chunk in batch {
            aligned[filled..filled + chunk.len()].copy_from_slice(chunk);
            filled += chunk.len();
        }
        match direct.write_all_at(aligned, at) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {}
            written => return (written, Some(buffer)),
        }
    }
    for chunk in batch {
        if let Err(e) = file.write_all_at(chunk, at) {
            return (Err(e), None);
        }
        at += chunk.len() as u64;
    }
    (Ok(()), None)
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

    /// A local blob store in a fresh directory and a staging file `uploads/<id>` in it.
    async fn local_staging(id: &str) -> (tempfile::TempDir, Arc<dyn ObjectStore>, Staging) {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local store"));
        let staging = Staging::open(&blobs, Some(dir.path()), id)
            .await
            .expect("open");
        (dir, blobs, staging)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_staging_file_is_what_the_blob_store_reads_back() {
        let (_dir, blobs, mut staging) = local_staging("u1").await;
        let chunks = chunks(FILE_BATCH * 3 + 777);
        for c in &chunks {
            staging.ready().await.expect("ready");
            staging.put(c.clone());
            if let Staging::File(f) = &staging {
                assert!(f.in_flight.len() <= PARTS_IN_FLIGHT + 1);
                assert!(f.batch_len < FILE_BATCH);
            }
        }
        if let Staging::File(f) = &mut staging {
            f.wait_for(0).await.expect("written");
            // (Only where the file system takes O_DIRECT: buffered writes use no buffer.)
            let direct = f.open.as_ref().is_some_and(|o| o.direct.is_some());
            assert!(!direct || !f.spare.is_empty());
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
    async fn between_requests_a_staging_file_holds_no_descriptor_and_no_received_chunk() {
        let (dir, _blobs, mut staging) = local_staging("u3").await;
        let Staging::File(f) = &staging else {
            panic!("a local root stages into a file");
        };
        assert!(
            f.open.is_none(),
            "a session without a body holds no descriptor"
        );
        let mut rest = chunks(FILE_BATCH * 2 + 3 * DIRECT_ALIGN + 1234);
        let all = rest.concat();
        // Requests of every kind of length: under 4 KiB, whole blocks, past a batch.
        let mut requests = Vec::new();
        for n in [1, 7, 2, 40, 3, 1000] {
            requests.push(rest.drain(..n.min(rest.len())).collect::<Vec<_>>());
        }
        requests.push(rest);
        for request in requests {
            for c in &request {
                staging.ready().await.expect("ready");
                staging.put(c.clone());
            }
            staging.park().await.expect("park");
            let Staging::File(f) = &staging else {
                unreachable!()
            };
            assert!(f.open.is_none() && f.in_flight.is_empty() && f.spare.is_empty());
            assert!(f.batch_len < DIRECT_ALIGN && f.batch.len() <= 1);
            assert!(f.next_offset.is_multiple_of(DIRECT_ALIGN as u64));
            // Nothing of the request's chunks is referenced any more.
            assert!(request.iter().all(Bytes::is_unique));
        }
        staging.finish().await.expect("finish");
        let got = std::fs::read(dir.path().join("uploads/u3")).expect("read");
        assert_eq!(got, all);
    }

    #[test]
    fn a_direct_write_the_file_system_refuses_is_written_buffered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).expect("create");
        let direct = open_direct(&path).ok();
        let batch = chunks(3 * DIRECT_ALIGN);
        // Offset 1 breaks O_DIRECT's alignment rule: the direct write fails with EINVAL.
        let (written, _) = write_batch(&file, direct.as_ref(), Some(Vec::new()), &batch, 1);
        written.expect("written");
        let got = std::fs::read(&path).expect("read");
        assert_eq!(got[0], 0);
        assert_eq!(&got[1..], &batch.concat()[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_local_staging_file_is_gone() {
        let (dir, blobs, mut staging) = local_staging("u2").await;
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
