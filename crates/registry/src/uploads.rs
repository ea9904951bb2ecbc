//! Blob bytes in object storage: content-addressed blobs (`blobs/<alg>/<2 hex>/<hex>`) and upload
//! sessions streaming into `uploads/<uuid>`.
//!
//! A session keeps its running hash, its offset and its open [`Staging`] in memory, keyed by the
//! upload id (the hash runs a batch behind, on the blocking pool: [`RunningHash`]); the bytes go
//! to `uploads/<id>` as they arrive, a few batches at most being written (`staging.rs`: a local
//! file written directly, or object_store's multipart upload), so memory per upload is bounded
//! whatever the blob's size; between requests a session staging to a local file holds only its
//! hash state, under 4 KiB of bytes and no descriptor ([`Staging::park`]).
//! A broken connection loses nothing that was counted: each received frame is taken into the
//! hash, counted and handed to the writer with no await in between, so the offset a status `GET`
//! reports is exactly what was kept, and the client resumes from there. Sessions live in this
//! process only: after a restart the id is unknown (`BLOB_UPLOAD_UNKNOWN`) and the client starts
//! the upload again; the server clears the leftovers of dead sessions at start-up.
//!
//! **Invariant:** nothing under `blobs/` is ever partial or unverified. An upload becomes a blob
//! only after its digest (and size, when given) verified, by a rename into the content address.

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::RegistryError;
use crate::staging::Staging;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes gathered before they are hashed on the blocking pool.
pub const HASH_BATCH: usize = 1024 * 1024;

/// Bytes gathered while a batch is being hashed before the upload stops taking more. Gathering
/// past [`HASH_BATCH`] keeps the socket read while the hash catches up, instead of leaving the
/// client blocked on a full window for each batch. With [`RunningHash::collect_finished`], curl
/// spent ~0.05 s less CPU per 512 MiB; uploads were 0.7 % faster than with neither and 3-4 %
/// faster than with either alone (`bench/registry/README.md`, session 8).
pub const HASH_GATHER: usize = 4 * HASH_BATCH;

/// The running hash of an upload. Received bytes are gathered and handed to the blocking pool
/// in batches of at least [`HASH_BATCH`] whenever the hasher is free, and hashed there while the
/// next ones arrive, so hashing (the costliest step of an upload) overlaps receiving and writing
/// instead of following them. At most one batch is being hashed and [`HASH_GATHER`] bytes
/// gathered (they share their `Bytes` with the writer).
/// [`RunningHash::push`] never awaits; [`RunningHash::ready_for_more`] is the only wait and is
/// cancel-safe (a batch in flight stays owned by the session), so a received frame is still
/// hashed, counted and written in one step.
struct RunningHash {
    algorithm: Algorithm,
    state: HashState,
    batch: Vec<Bytes>,
    batch_len: usize,
}

enum HashState {
    Ready(Box<Hasher>),
    Busy(tokio::task::JoinHandle<Box<Hasher>>),
    /// A hashing task died (panicked): the upload cannot be verified any more.
    Failed,
}

impl HashState {
    /// What a hashing task's end leaves: the hasher back, or `Failed` if the task died.
    fn collected(done: Result<Box<Hasher>, tokio::task::JoinError>) -> HashState {
        match done {
            Ok(hasher) => HashState::Ready(hasher),
            Err(_) => HashState::Failed,
        }
    }
}

impl RunningHash {
    fn new(algorithm: Algorithm) -> Self {
        RunningHash {
            algorithm,
            state: HashState::Ready(Box::new(Hasher::new(algorithm))),
            batch: Vec::new(),
            batch_len: 0,
        }
    }

    /// Waits for the batch in flight when the gathered one is full, and sends that one off.
    async fn ready_for_more(&mut self) -> Result<(), RegistryError> {
        if self.batch_len >= HASH_GATHER {
            self.settle().await?;
            self.send_batch();
        }
        Ok(())
    }

    /// Takes `bytes` into the hash. Never waits.
    fn push(&mut self, bytes: Bytes) {
        self.batch_len += bytes.len();
        self.batch.push(bytes);
        if self.batch_len >= HASH_BATCH {
            self.collect_finished();
            self.send_batch();
        }
    }

    /// Takes back a hasher whose batch is done but which nothing has awaited yet, without
    /// waiting: otherwise it would idle until the gathered bytes reach [`HASH_GATHER`].
    fn collect_finished(&mut self) {
        use futures_util::FutureExt;
        if let HashState::Busy(handle) = &mut self.state
            && handle.is_finished()
            && let Some(done) = handle.now_or_never()
        {
            self.state = HashState::collected(done);
        }
    }

    /// Hands the gathered batch to a blocking task, if the hasher is free.
    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let HashState::Ready(_) = self.state else {
            return;
        };
        let HashState::Ready(mut hasher) = std::mem::replace(&mut self.state, HashState::Failed)
        else {
            return;
        };
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.state = HashState::Busy(tokio::task::spawn_blocking(move || {
            for b in &batch {
                hasher.update(b);
            }
            hasher
        }));
    }

    /// Hands everything gathered to the hasher (waiting for the batch in flight first), so
    /// that between requests the upload references none of the received chunks.
    async fn park(&mut self) -> Result<(), RegistryError> {
        self.settle().await?;
        self.send_batch();
        Ok(())
    }

    /// Waits for the batch in flight, if any.
    async fn settle(&mut self) -> Result<(), RegistryError> {
        if let HashState::Busy(handle) = &mut self.state {
            self.state = HashState::collected(handle.await);
        }
        match self.state {
            HashState::Failed => Err(RegistryError::Internal("hashing an upload failed".into())),
            _ => Ok(()),
        }
    }

    /// The digest of everything pushed.
    async fn finish(&mut self) -> Result<Digest, RegistryError> {
        self.settle().await?;
        let HashState::Ready(hasher) = &mut self.state else {
            return Err(RegistryError::Internal("hashing an upload failed".into()));
        };
        for b in self.batch.drain(..) {
            hasher.update(&b);
        }
        self.batch_len = 0;
        Ok(hasher.clone().finish())
    }
}

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

/// Bytes per read when a blob is served from a local file (object_store's own stream reads 8 KiB
/// per blocking task, which caps a download at a few hundred MB/s).
pub const READ_CHUNK: usize = 1024 * 1024;

/// The body of a blob read: a local file is read [`READ_CHUNK`] bytes at a time with positional
/// reads on the blocking pool, the next chunk read while the current one is being sent (at most
/// two chunks being read, plus the one being sent, per download); any other store's stream is
/// passed through.
pub fn blob_body(
    result: object_store::GetResult,
) -> futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>> {
    let range = result.range.clone();
    match result.payload {
        object_store::GetResultPayload::File(file, _) => file_stream(file, range).boxed(),
        object_store::GetResultPayload::Stream(s) => {
            s.map(|r| r.map_err(std::io::Error::other)).boxed()
        }
    }
}

type ChunkRead = tokio::task::JoinHandle<std::io::Result<Bytes>>;

fn read_chunk(file: &Arc<std::fs::File>, at: u64, len: usize) -> ChunkRead {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match read_at(&file, &mut buf[filled..], at + filled as u64) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob file shorter than its size",
                    ));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Bytes::from(buf))
    })
}

/// How far ahead the kernel is asked to read when a blob's bytes are not in the page cache.
const COLD_READ_AHEAD: u64 = 32 * 1024 * 1024;

/// `pread`, except that a read which would wait for the disk first asks the kernel to read
/// [`COLD_READ_AHEAD`] bytes from there in the background. Blobs are staged with `O_DIRECT`, so
/// a blob's first download finds nothing cached; left to the default readahead it read at 0.58
/// GB/s here, with the hint at 1.7 GB/s (`bench/registry/README.md`, session 8). A cached read
/// costs nothing more: `RWF_NOWAIT` makes it the same one call.
fn read_at(file: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    use rustix::io::{Errno, ReadWriteFlags};
    use std::os::unix::fs::FileExt;
    let cached = rustix::io::preadv2(
        file,
        &mut [std::io::IoSliceMut::new(buf)],
        at,
        ReadWriteFlags::NOWAIT,
    );
    match cached {
        Ok(n) => return Ok(n),
        Err(Errno::AGAIN) => {
            let ahead = std::num::NonZeroU64::new(COLD_READ_AHEAD);
            // Only a hint: if it fails, the read below is just slower.
            let _ = rustix::fs::fadvise(file, at, ahead, rustix::fs::Advice::WillNeed);
        }
        // A file system without RWF_NOWAIT, or a signal: read as usual.
        Err(Errno::OPNOTSUPP | Errno::INTR) => {}
        Err(e) => return Err(e.into()),
    }
    file.read_at(buf, at)
}

/// `range` of `file` as a stream of chunks of at most [`READ_CHUNK`] bytes, one read ahead.
pub fn file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let file = Arc::new(file);
    let end = range.end;
    let chunk = move |at: u64| (end - at).min(READ_CHUNK as u64) as usize;
    futures_util::stream::unfold((range.start, None::<ChunkRead>), move |(at, pending)| {
        let file = file.clone();
        async move {
            if at >= end {
                return None;
            }
            let len = chunk(at);
            let current = pending.unwrap_or_else(|| read_chunk(&file, at, len));
            let next_at = at + len as u64;
            let ahead = (next_at < end).then(|| read_chunk(&file, next_at, chunk(next_at)));
            match current.await.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(bytes) => Some((Ok(bytes), (next_at, ahead))),
                // One error ends the stream.
                Err(e) => Some((Err(e), (end, None))),
            }
        }
    })
}

pub fn upload_path(id: &str) -> Path {
    Path::from(format!("uploads/{id}"))
}

/// One upload in progress.
pub struct Session {
    pub repo: String,
    /// Bytes received and kept so far.
    pub offset: u64,
    hash: RunningHash,
    /// `None` once the session failed or finished; it is then removed from the table.
    writer: Option<Staging>,
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
pub struct Uploads {
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// The directory the blob store is a local file system over, if it is one: sessions then
    /// stage into its `uploads/` directly (`staging.rs`).
    local_root: Option<std::path::PathBuf>,
}

impl Uploads {
    pub fn new(local_root: Option<std::path::PathBuf>) -> Self {
        Uploads {
            sessions: Mutex::default(),
            local_root,
        }
    }

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
        let staging = Staging::open(blobs, self.local_root.as_deref(), &id).await?;
        let session = Arc::new(tokio::sync::Mutex::new(Session {
            repo: repo.to_owned(),
            offset: 0,
            hash: RunningHash::new(algorithm),
            writer: Some(staging),
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
                // What arrived is kept for the client to resume from.
                self.park(id, session).await?;
                return Err(AppendError::Body);
            };
            if session.writer.is_none() {
                return Err(AppendError::Storage(RegistryError::BlobUploadUnknown));
            }
            // The hash of the batch before last must be done before another batch gathers
            // (bounded memory); like the wait below, it happens before the frame is taken.
            if let Err(e) = session.hash.ready_for_more().await {
                self.abort(id, session).await;
                return Err(AppendError::Storage(e));
            }
            let Some(writer) = session.writer.as_mut() else {
                return Err(AppendError::Storage(RegistryError::BlobUploadUnknown));
            };
            // Back-pressure before taking the frame: if this await is cancelled (client gone),
            // the frame was never counted, so the session stays consistent.
            if let Err(e) = writer.ready().await {
                self.abort(id, session).await;
                return Err(AppendError::Storage(e));
            }
            // From here to the end of the iteration nothing awaits: hash, count and write are
            // one step as far as cancellation is concerned.
            session.hash.push(bytes.clone());
            let n = bytes.len() as u64;
            session.offset += n;
            appended += n;
            writer.put(bytes);
        }
        self.park(id, session).await?;
        Ok(appended)
    }

    /// Between requests a session holds no received chunk and no descriptor (`staging.rs`,
    /// [`Staging::park`]): clients may leave many sessions open for a long time.
    async fn park(&self, id: &str, session: &mut Session) -> Result<(), AppendError> {
        let Some(writer) = session.writer.as_mut() else {
            return Ok(());
        };
        let parked = match session.hash.park().await {
            Ok(()) => writer.park().await,
            Err(e) => Err(e),
        };
        if let Err(e) = parked {
            self.abort(id, session).await;
            return Err(AppendError::Storage(e));
        }
        Ok(())
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
        let computed = if session.hash.algorithm == digest.algorithm() {
            match session.hash.finish().await {
                Ok(d) => d,
                Err(e) => {
                    discard(blobs, &staged).await;
                    return Err(e);
                }
            }
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
/// upload of the same content won, or the client pushed a blob the registry had), the copy is
/// dropped: same address, same bytes. The drop runs after the answer, in a task of its own:
/// deleting a freshly written 512 MiB file costs ~40 ms of page-cache truncation that the client
/// has no reason to wait for, and nothing depends on it (the session is gone, the id is never
/// reused; if the process stops first, start-up and GC clear `uploads/`).
async fn promote(
    blobs: &Arc<dyn ObjectStore>,
    from: &Path,
    to: &Path,
) -> Result<(), RegistryError> {
    match blobs.rename_if_not_exists(from, to).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let (blobs, from) = (blobs.clone(), from.clone());
            tokio::spawn(async move { discard(&blobs, &from).await });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn collect(file: std::fs::File, range: std::ops::Range<u64>) -> Vec<Bytes> {
        file_stream(file, range)
            .map(|r| r.expect("read"))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_file_is_served_in_bounded_chunks_with_the_exact_bytes_of_the_range() {
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&data).expect("write");
        let open = || std::fs::File::open(f.path()).expect("open");

        let whole = collect(open(), 0..data.len() as u64).await;
        assert_eq!(whole.len(), 3);
        assert!(whole.iter().all(|c| c.len() <= READ_CHUNK));
        assert_eq!(whole.concat(), data);

        let (a, b) = (READ_CHUNK as u64 - 10, READ_CHUNK as u64 * 2 + 100);
        assert_eq!(
            collect(open(), a..b).await.concat(),
            &data[a as usize..b as usize]
        );
        assert!(collect(open(), 5..5).await.is_empty());
    }

    fn frames(total: usize) -> Vec<Bytes> {
        let data: Vec<u8> = (0..total).map(|i| (i * 31 % 253) as u8).collect();
        let mut out = Vec::new();
        let mut at = 0;
        let mut step = 1;
        while at < total {
            let end = (at + step).min(total);
            out.push(Bytes::copy_from_slice(&data[at..end]));
            at = end;
            step = step * 7 % 300_001 + 1;
        }
        out
    }

    fn one_shot(frames: &[Bytes]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        for f in frames {
            h.update(f);
        }
        h.finish()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_running_hash_of_batches_hashed_apart_is_the_hash_of_the_bytes() {
        let frames = frames(HASH_GATHER * 2 + 4567);
        let mut h = RunningHash::new(Algorithm::Sha256);
        for f in &frames {
            h.ready_for_more().await.expect("hash");
            h.push(f.clone());
            assert!(
                h.batch_len < HASH_GATHER + 300_002,
                "the gathered batch is bounded"
            );
        }
        assert_eq!(h.finish().await.expect("digest"), one_shot(&frames));
        let empty = RunningHash::new(Algorithm::Sha256)
            .finish()
            .await
            .expect("digest");
        assert_eq!(empty, one_shot(&[]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hasher_that_finished_takes_the_next_batch_at_once() {
        let frames = [
            Bytes::from(vec![1u8; HASH_BATCH]),
            Bytes::from(vec![2u8; HASH_BATCH]),
        ];
        let mut h = RunningHash::new(Algorithm::Sha256);
        h.push(frames[0].clone());
        assert_eq!(h.batch_len, 0, "a free hasher takes a full batch");
        while !matches!(&h.state, HashState::Busy(j) if j.is_finished()) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Nothing awaited the finished hash; the next full batch still goes to it now, not
        // once HASH_GATHER bytes have piled up.
        h.push(frames[1].clone());
        assert_eq!(h.batch_len, 0);
        assert!(matches!(h.state, HashState::Busy(_)));
        assert_eq!(h.finish().await.expect("digest"), one_shot(&frames));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_hash_keeps_no_received_chunk() {
        let frames = frames(HASH_BATCH * 2 + 777);
        let (first, second) = frames.split_at(frames.len() / 2);
        let mut h = RunningHash::new(Algorithm::Sha256);
        for request in [first, second] {
            for f in request {
                h.ready_for_more().await.expect("hash");
                h.push(f.clone());
            }
            h.park().await.expect("park");
            assert!(h.batch.is_empty() && h.batch_len == 0);
            // Once the batch handed over at the park is hashed, the chunks are free.
            h.settle().await.expect("hash");
            assert!(request.iter().all(Bytes::is_unique));
        }
        assert_eq!(h.finish().await.expect("digest"), one_shot(&frames));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_wait_for_the_hash_loses_no_bytes() {
        use futures_util::FutureExt;
        let frames = frames(HASH_BATCH * 4 + 99);
        let mut h = RunningHash::new(Algorithm::Sha256);
        for f in &frames {
            // Polled once and dropped when it would wait: a client that went away. The next
            // frame only comes after a wait that completed, as in `Uploads::append`.
            while h.ready_for_more().now_or_never().is_none() {
                tokio::task::yield_now().await;
            }
            h.push(f.clone());
        }
        assert_eq!(h.finish().await.expect("digest"), one_shot(&frames));
    }

    #[tokio::test]
    async fn a_file_not_in_the_page_cache_is_served_with_the_exact_bytes() {
        let len = READ_CHUNK * 3;
        let data: Vec<u8> = (0..len).map(|i| (i * 11 % 247) as u8).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cold");
        // Written around the page cache by staging's own direct write, so the first reads
        // would wait for the disk; a file system without O_DIRECT gets a cached file and the
        // same checks.
        let file = std::fs::File::create(&path).expect("create");
        let direct = crate::staging::open_direct(&path).ok();
        let batch = [Bytes::from(data.clone())];
        let (written, _) =
            crate::staging::write_batch(&file, direct.as_ref(), Some(Vec::new()), &batch, 0);
        written.expect("write");
        let open = || std::fs::File::open(&path).expect("open");
        let (a, b) = (READ_CHUNK as u64 / 2 + 3, len as u64 - 5);
        assert_eq!(
            collect(open(), a..b).await.concat(),
            &data[a as usize..b as usize]
        );
        assert_eq!(collect(open(), 0..len as u64).await.concat(), data);
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_range_ends_the_stream_with_an_error() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&[1u8; 100]).expect("write");
        let file = std::fs::File::open(f.path()).expect("open");
        let got: Vec<_> = file_stream(file, 0..200).collect().await;
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }
}
