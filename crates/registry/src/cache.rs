//! An in-memory cache of what a manifest pull reads: tag → digest, and a repository's manifest by
//! digest with its response headers ready. A pull served from it reads nothing from the store.
//!
//! **Why it stays beside the store's read cache.** `berth-store` caches recent rows too, so
//! without this cache a pull still reads no SQLite page; what this one saves is decoding two
//! records and building the headers on every pull. Measured with both caches on, against a build
//! with this one bypassed (`bench/registry/ab.sh`, 64 connections, two runs of 6 interleaved
//! rounds at load 4–6, 2026-11-26): manifest GET 36,044 vs 31,184 and 25,280 vs 22,326 req/s
//! (+16 %, +13 %; ahead in 11 of 12 rounds), p99 10.8 vs 15.1 and 11.5 vs 14.2 ms.
//!
//! **Why it is correct.** The store is the truth; the cache holds copies of records, and a copy
//! may be served only while no write of this process has changed the record since it was read:
//! - Every write that can change what a pull sees — a tag set, moved or removed, a manifest
//!   stored or deleted, a repository deleted, the store reset — drops the repository's entries
//!   (or all of them) *after* its commit ([`ManifestCache::forget_on_drop`] is a guard dropped at
//!   the end of the write, also when the write is cancelled). A client that got the answer to
//!   its write therefore never reads the old state from the cache.
//! - A pull that missed reads the store and then offers what it read with the
//!   [`Ticket`] it took *before* reading. Every invalidation moves the generation, and an offer
//!   whose ticket is older is refused: a read that may have seen the state before a write is
//!   never put in after that write's invalidation.
//!
//! This relies on this process being the only writer of the registry's records, which holds
//! today (SQLite, one server per data directory; nothing else writes `registry.*` kinds). A
//! store shared by several servers (PostgreSQL) must also drop entries from the change feed
//! (`Store::subscribe`), and then a pull may see another server's tag move a moment late.
//!
//! Memory is bounded: at most [`MAX_TAGS`] tags and [`MAX_MANIFESTS`] manifests, least recently
//! used first out, and manifest bodies add up to at most [`MAX_BODY_BYTES`] (a larger body is
//! served but not kept).

use crate::records::ManifestRecord;
use bytes::Bytes;
use hashlink::LruCache;
use http::HeaderValue;
use parking_lot::Mutex;
use std::sync::Arc;

pub const MAX_TAGS: usize = 8192;
pub const MAX_MANIFESTS: usize = 4096;
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest body kept: one manifest must not push out hundreds of ordinary ones.
const MAX_KEPT_BODY: usize = MAX_BODY_BYTES / 32;

/// A manifest as a pull serves it: the bytes as pushed and its headers, built once.
#[derive(Debug)]
pub struct CachedManifest {
    pub body: Bytes,
    pub content_type: HeaderValue,
    pub docker_content_digest: HeaderValue,
    pub content_length: HeaderValue,
    pub etag: HeaderValue,
}

impl CachedManifest {
    /// `None` when a stored value cannot be a header (it never happens for validated records;
    /// such a manifest is simply not cached and served the slow way).
    pub fn of(digest: &str, m: ManifestRecord) -> Option<CachedManifest> {
        Some(CachedManifest {
            content_type: HeaderValue::from_str(&m.media_type).ok()?,
            docker_content_digest: HeaderValue::from_str(digest).ok()?,
            content_length: HeaderValue::from(m.size),
            etag: HeaderValue::from_str(&format!("\"{digest}\"")).ok()?,
            body: Bytes::from(m.body),
        })
    }
}

/// The generation a pull saw before it read the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

#[derive(Default)]
pub struct ManifestCache {
    state: Mutex<State>,
}

struct State {
    generation: u64,
    /// `<repo>|<tag>` → digest.
    tags: LruCache<String, Arc<str>>,
    /// `<repo>|<digest>` → manifest.
    manifests: LruCache<String, Arc<CachedManifest>>,
    body_bytes: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            generation: 0,
            tags: LruCache::new(MAX_TAGS),
            manifests: LruCache::new(MAX_MANIFESTS),
            body_bytes: 0,
        }
    }
}

impl State {
    fn remove_manifest(&mut self, key: &str) {
        if let Some(m) = self.manifests.remove(key) {
            self.body_bytes -= m.body.len();
        }
    }
}

impl ManifestCache {
    pub fn ticket(&self) -> Ticket {
        Ticket(self.state.lock().generation)
    }

    /// The digest `key` (`<repo>|<tag>`) names, if cached.
    pub fn tag(&self, key: &str) -> Option<Arc<str>> {
        self.state.lock().tags.get(key).cloned()
    }

    /// The manifest under `key` (`<repo>|<digest>`), if cached.
    pub fn manifest(&self, key: &str) -> Option<Arc<CachedManifest>> {
        self.state.lock().manifests.get(key).cloned()
    }

    /// Offers a tag read from the store under `ticket`; refused if anything was invalidated
    /// since the ticket was taken.
    pub fn offer_tag(&self, ticket: Ticket, key: String, digest: Arc<str>) {
        let mut state = self.state.lock();
        if state.generation == ticket.0 {
            state.tags.insert(key, digest);
        }
    }

    /// Offers a manifest read from the store under `ticket` (see [`ManifestCache::offer_tag`]).
    pub fn offer_manifest(&self, ticket: Ticket, key: String, manifest: Arc<CachedManifest>) {
        let len = manifest.body.len();
        if len > MAX_KEPT_BODY {
            return;
        }
        let mut state = self.state.lock();
        if state.generation != ticket.0 {
            return;
        }
        state.remove_manifest(&key);
        while state.body_bytes + len > MAX_BODY_BYTES {
            let Some((_, old)) = state.manifests.remove_lru() else {
                break;
            };
            state.body_bytes -= old.body.len();
        }
        if state.manifests.len() == state.manifests.capacity()
            && let Some((_, old)) = state.manifests.remove_lru()
        {
            state.body_bytes -= old.body.len();
        }
        state.body_bytes += len;
        state.manifests.insert(key, manifest);
    }

    /// Drops every entry of repository `repo` and refuses offers read before now.
    pub fn forget_repository(&self, repo: &str) {
        let prefix = crate::records::prefix(repo);
        let mut state = self.state.lock();
        state.generation += 1;
        let tags: Vec<String> = state
            .tags
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in tags {
            state.tags.remove(&k);
        }
        let manifests: Vec<String> = state
            .manifests
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in manifests {
            state.remove_manifest(&k);
        }
    }

    /// Drops everything (the store was reset).
    pub fn forget_all(&self) {
        let mut state = self.state.lock();
        state.generation += 1;
        state.tags.clear();
        state.manifests.clear();
        state.body_bytes = 0;
    }

    /// A guard that forgets `repo` when dropped: hold it across a write so the entries go after
    /// the commit, whether the write finished, failed or was cancelled.
    pub fn forget_on_drop<'a>(&'a self, repo: &'a str) -> ForgetOnDrop<'a> {
        ForgetOnDrop { cache: self, repo }
    }

    #[cfg(test)]
    fn body_bytes(&self) -> usize {
        self.state.lock().body_bytes
    }
}

pub struct ForgetOnDrop<'a> {
    cache: &'a ManifestCache,
    repo: &'a str,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.cache.forget_repository(self.repo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(digest: &str, body_len: usize) -> Arc<CachedManifest> {
        Arc::new(
            CachedManifest::of(
                digest,
                ManifestRecord {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    size: body_len as u64,
                    body: "x".repeat(body_len),
                    blobs: vec![],
                    manifests: vec![],
                    subject: None,
                    artifact_type: None,
                    pushed_at_ms: 0,
                },
            )
            .expect("valid headers"),
        )
    }

    #[test]
    fn an_offer_read_before_an_invalidation_is_refused() {
        let cache = ManifestCache::default();
        let before = cache.ticket();
        cache.forget_repository("a");
        cache.offer_tag(before, "a|v1".into(), "sha256:old".into());
        cache.offer_manifest(before, "a|sha256:old".into(), manifest("sha256:old", 10));
        assert!(cache.tag("a|v1").is_none());
        assert!(cache.manifest("a|sha256:old").is_none());

        let after = cache.ticket();
        cache.offer_tag(after, "a|v1".into(), "sha256:new".into());
        assert_eq!(cache.tag("a|v1").as_deref(), Some("sha256:new"));
    }

    #[test]
    fn forgetting_a_repository_keeps_the_others_including_longer_names() {
        let cache = ManifestCache::default();
        let t = cache.ticket();
        for repo in ["a", "a/b", "ab"] {
            cache.offer_tag(t, format!("{repo}|v1"), "sha256:x".into());
            cache.offer_manifest(t, format!("{repo}|sha256:x"), manifest("sha256:x", 5));
        }
        cache.forget_repository("a");
        assert!(cache.tag("a|v1").is_none());
        assert!(cache.manifest("a|sha256:x").is_none());
        assert!(cache.tag("a/b|v1").is_some());
        assert!(cache.manifest("ab|sha256:x").is_some());
        assert_eq!(cache.body_bytes(), 10);
        cache.forget_all();
        assert!(cache.tag("ab|v1").is_none());
        assert_eq!(cache.body_bytes(), 0);
    }

    #[test]
    fn bodies_stay_within_the_byte_budget() {
        let cache = ManifestCache::default();
        let t = cache.ticket();
        for i in 0..(MAX_BODY_BYTES / MAX_KEPT_BODY * 3) {
            cache.offer_manifest(t, format!("r|{i}"), manifest("sha256:x", MAX_KEPT_BODY));
            assert!(cache.body_bytes() <= MAX_BODY_BYTES);
        }
        assert_eq!(cache.body_bytes(), MAX_BODY_BYTES);
        cache.offer_manifest(t, "r|big".into(), manifest("sha256:x", MAX_KEPT_BODY + 1));
        assert!(cache.manifest("r|big").is_none());
        // Least recently used first out: the newest entry is still there.
        let last = MAX_BODY_BYTES / MAX_KEPT_BODY * 3 - 1;
        assert!(cache.manifest(&format!("r|{last}")).is_some());
        assert!(cache.manifest("r|0").is_none());
    }

    #[test]
    fn the_forget_guard_forgets_when_dropped() {
        let cache = ManifestCache::default();
        let t = cache.ticket();
        cache.offer_tag(t, "a|v1".into(), "sha256:x".into());
        {
            let _guard = cache.forget_on_drop("a");
            assert!(cache.tag("a|v1").is_some());
        }
        assert!(cache.tag("a|v1").is_none());
    }
}
