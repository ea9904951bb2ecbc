//! What the registry keeps in berth's store, and the keys it keeps it under. Partition:
//! `<account>/<region>`. Keys join a repository name and a tag or digest with `|`, which no
//! repository name, tag or digest contains, so `<repo>|` is a prefix that lists exactly one
//! repository's records (`a|` never matches `a/b|…`).

use serde::{Deserialize, Serialize};

pub const REPOSITORY: &str = "registry.repository";
pub const MANIFEST: &str = "registry.manifest";
pub const TAG: &str = "registry.tag";
pub const BLOB_LINK: &str = "registry.blob-link";
/// Index from a subject digest to the manifests that name it, so the referrers API reads one
/// key range instead of every manifest of the repository.
pub const REFERRER: &str = "registry.referrer";

pub fn key(repo: &str, item: &str) -> String {
    format!("{repo}|{item}")
}

pub fn prefix(repo: &str) -> String {
    format!("{repo}|")
}

/// Key of a referrer entry: `<repo>|<subject digest>|<manifest digest>`.
pub fn referrer_key(repo: &str, subject: &str, digest: &str) -> String {
    format!("{repo}|{subject}|{digest}")
}

/// A repository. `tagPolicy` is the one setting the registry itself enforces (on every manifest
/// push); `settings` belongs to the API that manages repositories (ECR's encryption, scanning and
/// tags) and is kept as it gave it. Both default, so records written before them still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRecord {
    pub created_at_ms: i64,
    #[serde(default)]
    pub tag_policy: crate::TagPolicy,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub settings: serde_json::Value,
}

/// A manifest in a repository. `body` is the document exactly as pushed (it was validated as
/// UTF-8 JSON, so a JSON string holds it byte for byte); keeping it in the record makes a manifest
/// visible atomically with its tags and serves a pull from one store read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    pub body: String,
    /// Config and layer digests (the blobs this manifest keeps alive).
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Child manifests of an index or manifest list.
    #[serde(default)]
    pub manifests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub pushed_at_ms: i64,
}

/// A tag: which manifest it names now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRecord {
    pub digest: String,
    pub updated_at_ms: i64,
}

/// A repository's right to serve a (global, deduplicated) blob. `linked_at_ms` is refreshed
/// whenever a manifest push relies on the link, so garbage collection's grace period protects
/// blobs a push is about to reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobLinkRecord {
    pub size: u64,
    pub linked_at_ms: i64,
}
