//! Repositories and images as a management API sees them: the accessors the ECR JSON API calls
//! (create with settings, list, delete with or without force, list images with their tags and
//! sizes, put a manifest, untag, delete by digest), and the tag policy that makes tags
//! immutable. Every write is one store commit, like the `/v2/` handlers' writes.

use crate::digest::Digest;
use crate::http::{Stored, store_manifest, to_value};
use crate::manifest::{self, Kind};
use crate::records::{self, ManifestRecord, RepositoryRecord, TagRecord};
use crate::{Registry, RegistryError, path};
use berth_store::{Expect, Op, Store, get_as, retry_on_conflict};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Which tags of a repository cannot be moved once set. ECR's four modes map onto it:
/// `MUTABLE` and `IMMUTABLE` have no exceptions; the `*_WITH_EXCLUSION` forms list wildcard
/// patterns of tags that follow the opposite rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagPolicy {
    #[serde(default)]
    pub immutable: bool,
    /// Patterns where `*` matches any run of characters (ECR's `WILDCARD` filter type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
}

impl TagPolicy {
    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable != self.exceptions.iter().any(|p| wildcard_match(p, tag))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also none) and
/// everything else matches itself. Linear-time greedy matching with backtracking to the last `*`.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A repository and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryInfo {
    pub name: String,
    pub created_at_ms: i64,
    pub tag_policy: TagPolicy,
    /// What the managing API stored with the repository, untouched by the registry.
    pub settings: Value,
}

impl RepositoryInfo {
    fn of(name: String, r: RepositoryRecord) -> Self {
        RepositoryInfo {
            name,
            created_at_ms: r.created_at_ms,
            tag_policy: r.tag_policy,
            settings: r.settings,
        }
    }
}

/// An image (a manifest) of a repository, with what ECR's DescribeImages reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub digest: String,
    pub tags: Vec<String>,
    pub media_type: String,
    /// The artifact type, else (for an image manifest) the config's media type.
    pub artifact_type: Option<String>,
    /// For an image manifest, the config and layers it names; for an index, the largest of its
    /// children present in the repository (ECR: "the max size of all manifests in the list").
    pub size_bytes: u64,
    pub pushed_at_ms: i64,
    /// An index or manifest list of the repository names it (a platform's image of a
    /// multi-platform image).
    pub in_index: bool,
}

/// A manifest's bytes, for pulls through the management API (ECR's BatchGetImage).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
    pub body: String,
}

/// What a [`Registry::put_image`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    pub digest: String,
    pub media_type: String,
    /// The manifest was already in the repository.
    pub existed: bool,
    /// The digest the tag named before, if it was set.
    pub previous_tag_digest: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, RegistryError> {
    serde_json::from_value(v).map_err(|e| RegistryError::Internal(e.to_string()))
}

impl Registry {
    /// Creates a repository with a tag policy and the managing API's settings. `None` when a
    /// repository of that name exists already.
    pub async fn create_repository_with(
        &self,
        name: &str,
        tag_policy: TagPolicy,
        settings: Value,
    ) -> Result<Option<RepositoryInfo>, RegistryError> {
        if !path::valid_name(name) {
            return Err(RegistryError::NameInvalid(name.to_owned()));
        }
        let record = RepositoryRecord {
            created_at_ms: self.now(),
            tag_policy,
            settings,
        };
        let op = Op::put(
            records::REPOSITORY,
            self.part(),
            name,
            to_value(&record)?,
            Expect::Absent,
        );
        match self.inner.store.commit(vec![op]).await {
            Ok(_) => Ok(Some(RepositoryInfo::of(name.to_owned(), record))),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn repository(&self, name: &str) -> Result<Option<RepositoryInfo>, RegistryError> {
        let found: Option<(RepositoryRecord, u64)> =
            get_as(&self.inner.store, records::REPOSITORY, self.part(), name).await?;
        Ok(found.map(|(r, _)| RepositoryInfo::of(name.to_owned(), r)))
    }

    /// Every repository, in name order.
    pub async fn repositories(&self) -> Result<Vec<RepositoryInfo>, RegistryError> {
        self.list_all(records::REPOSITORY, "")
            .await?
            .into_iter()
            .map(|r| Ok(RepositoryInfo::of(r.key, decode(r.value)?)))
            .collect()
    }

    /// Rewrites a repository's tag policy and settings with `f` (retried on conflicting writes).
    /// `None` when the repository does not exist.
    pub async fn update_repository<E>(
        &self,
        name: &str,
        f: impl Fn(&mut TagPolicy, &mut Value) -> Result<(), E>,
    ) -> Result<Option<RepositoryInfo>, E>
    where
        E: From<RegistryError> + From<berth_store::StoreError>,
    {
        let store = &self.inner.store;
        retry_on_conflict(store, || async {
            let found: Option<(RepositoryRecord, u64)> =
                get_as(store, records::REPOSITORY, self.part(), name).await?;
            let Some((mut record, version)) = found else {
                return Ok((vec![], None));
            };
            f(&mut record.tag_policy, &mut record.settings)?;
            let op = Op::put(
                records::REPOSITORY,
                self.part(),
                name,
                to_value(&record)?,
                Expect::Version(version),
            );
            Ok((vec![op], Some(RepositoryInfo::of(name.to_owned(), record))))
        })
        .await
    }

    /// Deletes a repository. Without `force`, one that holds images is
    /// [`RegistryError::RepositoryNotEmpty`]; with it, its manifests, tags, blob links and
    /// referrers go in the same commit (garbage collection frees the bytes later).
    pub async fn delete_repository(
        &self,
        name: &str,
        force: bool,
    ) -> Result<RepositoryInfo, RegistryError> {
        let store = &self.inner.store;
        let part = self.part().to_owned();
        let _forget = self.inner.cache.forget_on_drop(name);
        retry_on_conflict(store, || async {
            let found: Option<(RepositoryRecord, u64)> =
                get_as(store, records::REPOSITORY, &part, name).await?;
            let Some((record, version)) = found else {
                return Err(RegistryError::NameUnknown(name.to_owned()));
            };
            let prefix = records::prefix(name);
            let manifests = self.list_all(records::MANIFEST, &prefix).await?;
            if !manifests.is_empty() && !force {
                return Err(RegistryError::RepositoryNotEmpty(name.to_owned()));
            }
            let mut ops = vec![Op::delete(
                records::REPOSITORY,
                &part,
                name,
                Expect::Version(version),
            )];
            for kind in [
                records::MANIFEST,
                records::TAG,
                records::BLOB_LINK,
                records::REFERRER,
            ] {
                let rows = if kind == records::MANIFEST {
                    manifests.clone()
                } else {
                    self.list_all(kind, &prefix).await?
                };
                for r in rows {
                    ops.push(Op::delete(kind, &part, r.key, Expect::Version(r.version)));
                }
            }
            Ok((ops, RepositoryInfo::of(name.to_owned(), record.clone())))
        })
        .await
    }

    /// Every image of a repository with its tags, in digest order. The caller checks that the
    /// repository exists.
    pub async fn images(&self, name: &str) -> Result<Vec<ImageInfo>, RegistryError> {
        let prefix = records::prefix(name);
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.list_all(records::TAG, &prefix).await? {
            let t: TagRecord = decode(r.value)?;
            tags.entry(t.digest)
                .or_default()
                .push(r.key[prefix.len()..].to_owned());
        }
        let mut manifests: Vec<(String, ManifestRecord)> = Vec::new();
        for r in self.list_all(records::MANIFEST, &prefix).await? {
            manifests.push((r.key[prefix.len()..].to_owned(), decode(r.value)?));
        }
        // Image manifests first, so an index can take the largest of its children.
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        for (digest, m) in &manifests {
            if let Ok(parsed) = manifest::parse(m.body.as_bytes(), Some(&m.media_type))
                && parsed.kind == Kind::Image
            {
                let size = parsed
                    .config
                    .iter()
                    .chain(parsed.layers.iter())
                    .map(|d| d.size)
                    .sum();
                sizes.insert(digest.clone(), size);
            }
        }
        let children: std::collections::BTreeSet<String> = manifests
            .iter()
            .flat_map(|(_, m)| m.manifests.iter().cloned())
            .collect();
        let out = manifests
            .into_iter()
            .map(|(digest, m)| {
                let size_bytes = match sizes.get(&digest) {
                    Some(s) => *s,
                    None => m
                        .manifests
                        .iter()
                        .filter_map(|c| sizes.get(c))
                        .copied()
                        .max()
                        .unwrap_or(0),
                };
                ImageInfo {
                    in_index: children.contains(&digest),
                    tags: tags.remove(&digest).unwrap_or_default(),
                    digest,
                    media_type: m.media_type,
                    artifact_type: m.artifact_type,
                    size_bytes,
                    pushed_at_ms: m.pushed_at_ms,
                }
            })
            .collect();
        Ok(out)
    }

    /// The digest a tag names, if the tag is set.
    pub async fn tag_target(&self, name: &str, tag: &str) -> Result<Option<String>, RegistryError> {
        let found: Option<(TagRecord, u64)> = get_as(
            &self.inner.store,
            records::TAG,
            self.part(),
            &records::key(name, tag),
        )
        .await?;
        Ok(found.map(|(t, _)| t.digest))
    }

    /// A manifest of the repository by digest.
    pub async fn manifest(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let found: Option<(ManifestRecord, u64)> = get_as(
            &self.inner.store,
            records::MANIFEST,
            self.part(),
            &records::key(name, digest),
        )
        .await?;
        Ok(found.map(|(m, _)| ManifestInfo {
            digest: digest.to_owned(),
            media_type: m.media_type,
            body: m.body,
        }))
    }

    /// Stores a manifest (and tags it), exactly as a `PUT /v2/<name>/manifests/…` would: the
    /// blobs it names must be in the repository and the tag policy holds. `digest`, when given,
    /// must be the manifest's. `media_type` stands in for the request's `Content-Type`.
    pub async fn put_image(
        &self,
        name: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        manifest: String,
        media_type: Option<&str>,
    ) -> Result<PutOutcome, RegistryError> {
        let expected = digest.map(Digest::parse).transpose()?;
        let Stored {
            digest,
            media_type,
            existed,
            previous_tag_digest,
            ..
        } = store_manifest(
            self,
            name,
            tag,
            expected.as_ref(),
            manifest.into_bytes(),
            media_type,
        )
        .await?;
        Ok(PutOutcome {
            digest: digest.to_string(),
            media_type,
            existed,
            previous_tag_digest,
        })
    }

    /// Removes a tag. With `delete_untagged`, an image left without tags is deleted too (ECR's
    /// BatchDeleteImage by tag). Returns the digest the tag named, `None` when it was not set.
    pub async fn untag(
        &self,
        name: &str,
        tag: &str,
        delete_untagged: bool,
    ) -> Result<Option<String>, RegistryError> {
        let store = &self.inner.store;
        let part = self.part().to_owned();
        let key = records::key(name, tag);
        let _forget = self.inner.cache.forget_on_drop(name);
        retry_on_conflict(store, || async {
            let found: Option<(TagRecord, u64)> = get_as(store, records::TAG, &part, &key).await?;
            let Some((t, version)) = found else {
                return Ok((vec![], None));
            };
            let mut ops = vec![Op::delete(
                records::TAG,
                &part,
                &key,
                Expect::Version(version),
            )];
            if delete_untagged {
                let others = self
                    .list_all(records::TAG, &records::prefix(name))
                    .await?
                    .into_iter()
                    .any(|r| {
                        r.key != key
                            && r.value.get("digest").and_then(Value::as_str)
                                == Some(t.digest.as_str())
                    });
                if !others
                    && let Some((more, _)) = self.manifest_delete_ops(name, &t.digest).await?
                {
                    // The tag itself is among `more`'s tag deletions; keep one delete of it.
                    ops.clear();
                    ops.extend(more);
                }
            }
            Ok((ops, Some(t.digest.clone())))
        })
        .await
    }

    /// Deletes a manifest with every tag naming it and its referrers entry. Returns the tags it
    /// had, `None` when the repository has no such manifest.
    pub async fn delete_image(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<Vec<String>>, RegistryError> {
        let _forget = self.inner.cache.forget_on_drop(name);
        retry_on_conflict(&self.inner.store, || async {
            Ok(match self.manifest_delete_ops(name, digest).await? {
                Some((ops, tags)) => (ops, Some(tags)),
                None => (vec![], None),
            })
        })
        .await
    }

    /// Deletes a manifest as [`Registry::delete_image`] does, but only if the tags naming it are
    /// still exactly `tags` (in any order): an expiry decided on an image's tags never takes a
    /// tag pushed since. Returns whether it was deleted.
    pub async fn expire_image(
        &self,
        name: &str,
        digest: &str,
        tags: &[String],
    ) -> Result<bool, RegistryError> {
        let mut expected = tags.to_vec();
        expected.sort();
        let _forget = self.inner.cache.forget_on_drop(name);
        retry_on_conflict(&self.inner.store, || async {
            Ok(match self.manifest_delete_ops(name, digest).await? {
                Some((ops, mut now)) => {
                    now.sort();
                    if now == expected {
                        (ops, true)
                    } else {
                        (vec![], false)
                    }
                }
                None => (vec![], false),
            })
        })
        .await
    }

    /// The ops that delete one manifest, the tags naming it and its referrers entry, and those
    /// tags' names.
    async fn manifest_delete_ops(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<(Vec<Op>, Vec<String>)>, RegistryError> {
        let store = &self.inner.store;
        let part = self.part();
        let key = records::key(name, digest);
        let Some((m, version)) =
            get_as::<ManifestRecord, _>(store, records::MANIFEST, part, &key).await?
        else {
            return Ok(None);
        };
        let mut ops = vec![Op::delete(
            records::MANIFEST,
            part,
            &key,
            Expect::Version(version),
        )];
        let prefix = records::prefix(name);
        let mut tags = Vec::new();
        for tag in self.list_all(records::TAG, &prefix).await? {
            if tag.value.get("digest").and_then(Value::as_str) == Some(digest) {
                tags.push(tag.key[prefix.len()..].to_owned());
                ops.push(Op::delete(
                    records::TAG,
                    part,
                    tag.key,
                    Expect::Version(tag.version),
                ));
            }
        }
        if let Some(subject) = &m.subject {
            ops.push(Op::delete(
                records::REFERRER,
                part,
                records::referrer_key(name, subject, digest),
                Expect::Any,
            ));
        }
        Ok(Some((ops, tags)))
    }

    /// The repository's tag policy (the default, all mutable, when it has none).
    pub(crate) async fn tag_policy(&self, name: &str) -> Result<TagPolicy, RegistryError> {
        Ok(self
            .repository(name)
            .await?
            .map(|r| r.tag_policy)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "latest"));
        assert!(wildcard_match("dev-*", "dev-1"));
        assert!(wildcard_match("dev-*", "dev-"));
        assert!(!wildcard_match("dev-*", "prod-1"));
        assert!(wildcard_match("*-rc*", "v1-rc2"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("latest", "latest"));
        assert!(!wildcard_match("latest", "latest2"));
    }

    #[test]
    fn policies() {
        let mutable = TagPolicy::default();
        assert!(!mutable.is_immutable("v1"));
        let immutable = TagPolicy {
            immutable: true,
            exceptions: vec![],
        };
        assert!(immutable.is_immutable("v1"));
        let immutable_but_latest = TagPolicy {
            immutable: true,
            exceptions: vec!["latest".into(), "dev-*".into()],
        };
        assert!(immutable_but_latest.is_immutable("v1"));
        assert!(!immutable_but_latest.is_immutable("latest"));
        assert!(!immutable_but_latest.is_immutable("dev-7"));
        let mutable_but_releases = TagPolicy {
            immutable: false,
            exceptions: vec!["v*".into()],
        };
        assert!(mutable_but_releases.is_immutable("v1"));
        assert!(!mutable_but_releases.is_immutable("latest"));
    }
}
