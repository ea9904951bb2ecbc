//! Garbage collection of blobs: mark what manifests reference, sweep the rest from object
//! storage, and drop the abandoned uploads' sessions and staged bytes.
//!
//! Why a running push never loses a blob:
//! - A blob, or a repository link to it, younger than the grace period is never touched, so the
//!   layers a push uploaded before its manifest survive until that manifest lands.
//! - Links are read (with their versions) *before* manifests are listed, and deleted with
//!   `Expect::Version`. A manifest push rewrites the links of every blob it needs in the same
//!   commit as the manifest, so: a manifest committed before the link read is seen by the mark;
//!   one committed after it moved the link versions, and the collector's delete conflicts and
//!   keeps the link; one that commits after the collector deleted a link conflicts itself and
//!   answers `MANIFEST_BLOB_UNKNOWN`.
//! - Bytes are deleted only under the write side of the registry's gate, after re-reading the
//!   links, while upload completion and cross-repository mount hold the read side from finding
//!   or placing the bytes until their link is committed. So the collector sees either no blob
//!   or a linked one, and never deletes bytes a new link is about to name.
//! - In-progress uploads write under `uploads/`, which the blob sweep does not touch; staged
//!   bytes are deleted only when no live session owns them and they are past the grace period.
//!
//! Scope: the collector marks the manifests of the registry's partition only, so it assumes the
//! object store's `blobs/` belong to that partition (true while one account/region is served).

use crate::records::{self, BlobLinkRecord};
use crate::uploads;
use crate::{Registry, RegistryError};
use berth_store::{Expect, Op, Store};
use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use std::collections::HashSet;

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted from object storage, and their bytes.
    pub blobs_deleted: u64,
    pub bytes_deleted: u64,
    /// Repository links removed because no manifest referenced the blob.
    pub links_deleted: u64,
    /// Unreferenced blobs or links left alone because they are younger than the grace period
    /// (or changed while the collector ran).
    pub kept_recent: u64,
    /// Idle upload sessions abandoned, and staged upload objects deleted.
    pub uploads_abandoned: u64,
    pub staged_deleted: u64,
}

pub async fn run(registry: &Registry) -> Result<GcReport, RegistryError> {
    let inner = &registry.inner;
    let mut report = GcReport::default();
    let now = registry.now();
    let grace_ms = i64::try_from(inner.options.gc_grace.as_millis()).unwrap_or(i64::MAX);
    let idle_ms = i64::try_from(inner.options.upload_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let old = |t: i64| now.saturating_sub(t) >= grace_ms;

    // Abandon idle sessions. A session whose lock is held is in use, hence not idle.
    for id in inner.uploads.ids() {
        if let Some(session) = inner.uploads.get(&id)
            && let Ok(mut guard) = session.try_lock()
            && now.saturating_sub(guard.last_activity_ms) >= idle_ms
        {
            inner.uploads.abort(&id, &mut guard).await;
            report.uploads_abandoned += 1;
        }
    }

    // Links first, then the mark (see the module comment for why this order).
    let links = registry.list_all(records::BLOB_LINK, "").await?;
    let mut referenced: HashSet<String> = HashSet::new();
    for m in registry.list_all(records::MANIFEST, "").await? {
        if let Some(blobs) = m.value.get("blobs").and_then(|b| b.as_array()) {
            referenced.extend(blobs.iter().filter_map(|b| b.as_str()).map(str::to_owned));
        }
    }

    for link in &links {
        let Some((_, digest)) = link.key.rsplit_once('|') else {
            continue;
        };
        if referenced.contains(digest) {
            continue;
        }
        let linked_at = serde_json::from_value::<BlobLinkRecord>(link.value.clone())
            .map(|l| l.linked_at_ms)
            .unwrap_or(now);
        if !old(linked_at) {
            report.kept_recent += 1;
            continue;
        }
        let op = Op::delete(
            records::BLOB_LINK,
            &inner.partition,
            &link.key,
            Expect::Version(link.version),
        );
        match inner.store.commit(vec![op]).await {
            Ok(_) => report.links_deleted += 1,
            Err(e) if e.is_conflict() => report.kept_recent += 1,
            Err(e) => return Err(e.into()),
        }
    }

    // Candidates: blob objects no manifest references and older than the grace period.
    let mut candidates = Vec::new();
    let mut listing = inner.blobs.list(Some(&Path::from("blobs")));
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(digest) = uploads::digest_of_path(&meta.location) else {
            continue;
        };
        if referenced.contains(&digest.to_string()) {
            continue;
        }
        if !old(meta.last_modified.timestamp_millis()) {
            report.kept_recent += 1;
            continue;
        }
        candidates.push((digest, meta.location, meta.size));
    }

    if !candidates.is_empty() {
        let _gate = inner.gate.write().await;
        let linked: HashSet<String> = registry
            .list_all(records::BLOB_LINK, "")
            .await?
            .into_iter()
            .filter_map(|r| r.key.rsplit_once('|').map(|(_, d)| d.to_owned()))
            .collect();
        for (digest, location, size) in candidates {
            if linked.contains(&digest.to_string()) {
                report.kept_recent += 1;
                continue;
            }
            match inner.blobs.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    report.blobs_deleted += 1;
                    report.bytes_deleted += size;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    // Staged bytes no live session owns (left by a crash, or by a store that keeps them).
    let live: HashSet<String> = inner.uploads.ids().into_iter().collect();
    let mut listing = inner.blobs.list(Some(&Path::from("uploads")));
    let mut stale = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let id = meta
            .location
            .parts()
            .nth(1)
            .map(|p| p.as_ref().to_owned())
            .unwrap_or_default();
        if !live.contains(&id) && old(meta.last_modified.timestamp_millis()) {
            stale.push(meta.location);
        }
    }
    drop(listing);
    for location in stale {
        match inner.blobs.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => report.staged_deleted += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}
