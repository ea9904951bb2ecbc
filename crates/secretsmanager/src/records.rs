//! What the store holds for Secrets Manager: one `secretsmanager.secret` record per secret in
//! the request's partition (`account/region`), keyed by the secret's name, with its versions
//! inside. A secret is at most 64 KiB per version and keeps at most [`MAX_VERSIONS`] versions,
//! so the record stays bounded, and a staging label moves between versions in the one write
//! that changes the secret.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SECRET: &str = "secretsmanager.secret";

/// Secrets Manager keeps about 100 versions of a secret; past that the oldest versions without
/// a staging label (deprecated) are removed.
pub const MAX_VERSIONS: usize = 100;

pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRecord {
    pub name: String,
    /// `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 random characters>`; a
    /// secret deleted and created again under the same name gets a new one.
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// As the caller gave it: berth stores values as given and encrypts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// In the order they were first given; keys are unique.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    pub created_ms: i64,
    pub last_changed_ms: i64,
    /// The day (midnight UTC) of the last GetSecretValue, as AWS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed_ms: Option<i64>,
    /// Set while the secret is scheduled for deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<Deletion>,
    /// By version id (the `ClientRequestToken` that made it).
    #[serde(default)]
    pub versions: BTreeMap<String, VersionRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deletion {
    /// When DeleteSecret was called (`DeletedDate`).
    pub deleted_ms: i64,
    /// When the recovery window ends; from then on the secret is gone.
    pub due_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Base64, as the wire carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    #[serde(default)]
    pub stages: Vec<String>,
    pub created_ms: i64,
}

impl SecretRecord {
    /// Whether the secret no longer exists at `now_ms`: its recovery window has ended. Such a
    /// record is treated as absent everywhere and replaced by the next CreateSecret of its name.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.deletion.is_some_and(|d| d.due_ms <= now_ms)
    }

    pub fn marked_for_deletion(&self) -> bool {
        self.deletion.is_some()
    }

    /// The version carrying `stage`, if any.
    pub fn version_with_stage(&self, stage: &str) -> Option<(&String, &VersionRecord)> {
        self.versions
            .iter()
            .find(|(_, v)| v.stages.iter().any(|s| s == stage))
    }

    /// Version id → staging labels, for versions that have any (`VersionIdsToStages`).
    pub fn stages_by_version(&self) -> BTreeMap<String, Vec<String>> {
        self.versions
            .iter()
            .filter(|(_, v)| !v.stages.is_empty())
            .map(|(id, v)| (id.clone(), v.stages.clone()))
            .collect()
    }

    /// Adds version `id` with `stages` as Secrets Manager does: each label is taken from the
    /// version that had it; when `AWSCURRENT` moves, the version losing it gets `AWSPREVIOUS`
    /// (taken from wherever it was). Then deprecated versions past [`MAX_VERSIONS`] go, oldest
    /// first.
    pub fn add_version(&mut self, id: String, mut version: VersionRecord, stages: Vec<String>) {
        version.stages = Vec::new();
        self.versions.insert(id.clone(), version);
        for stage in stages {
            self.move_stage(&stage, &id);
        }
        self.prune();
    }

    /// Moves `stage` to version `to` (which exists), with `AWSPREVIOUS` following
    /// `AWSCURRENT`.
    pub fn move_stage(&mut self, stage: &str, to: &str) {
        let from = self
            .version_with_stage(stage)
            .map(|(id, _)| id.clone())
            .filter(|id| id != to);
        if self
            .versions
            .get(to)
            .is_some_and(|v| v.stages.iter().any(|s| s == stage))
        {
            return;
        }
        if let Some(from) = &from
            && let Some(v) = self.versions.get_mut(from)
        {
            v.stages.retain(|s| s != stage);
        }
        if let Some(v) = self.versions.get_mut(to) {
            v.stages.push(stage.to_owned());
        }
        if stage == CURRENT
            && let Some(from) = from
        {
            for v in self.versions.values_mut() {
                v.stages.retain(|s| s != PREVIOUS);
            }
            if let Some(v) = self.versions.get_mut(&from) {
                v.stages.push(PREVIOUS.to_owned());
            }
        }
    }

    fn prune(&mut self) {
        while self.versions.len() > MAX_VERSIONS {
            let oldest = self
                .versions
                .iter()
                .filter(|(_, v)| v.stages.is_empty())
                .min_by_key(|(id, v)| (v.created_ms, (*id).clone()))
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    self.versions.remove(&id);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretRecord {
        SecretRecord {
            name: "s".into(),
            arn: "arn".into(),
            description: None,
            kms_key_id: None,
            secret_type: None,
            tags: Vec::new(),
            created_ms: 0,
            last_changed_ms: 0,
            last_accessed_ms: None,
            deletion: None,
            versions: BTreeMap::new(),
        }
    }

    fn value(s: &str, at: i64) -> VersionRecord {
        VersionRecord {
            string: Some(s.into()),
            binary: None,
            stages: Vec::new(),
            created_ms: at,
        }
    }

    #[test]
    fn current_moves_and_previous_follows() {
        let mut s = secret();
        s.add_version("v1".into(), value("a", 1), vec![CURRENT.into()]);
        assert_eq!(s.versions["v1"].stages, vec![CURRENT]);
        s.add_version("v2".into(), value("b", 2), vec![CURRENT.into()]);
        assert_eq!(s.versions["v2"].stages, vec![CURRENT]);
        assert_eq!(s.versions["v1"].stages, vec![PREVIOUS]);
        s.add_version("v3".into(), value("c", 3), vec![CURRENT.into()]);
        assert_eq!(s.versions["v3"].stages, vec![CURRENT]);
        assert_eq!(s.versions["v2"].stages, vec![PREVIOUS]);
        assert!(s.versions["v1"].stages.is_empty());
        assert_eq!(s.stages_by_version().len(), 2);
    }

    #[test]
    fn a_custom_stage_leaves_current_alone() {
        let mut s = secret();
        s.add_version("v1".into(), value("a", 1), vec![CURRENT.into()]);
        s.add_version("v2".into(), value("b", 2), vec!["AWSPENDING".into()]);
        assert_eq!(s.versions["v1"].stages, vec![CURRENT]);
        assert_eq!(s.versions["v2"].stages, vec!["AWSPENDING"]);
        s.move_stage("AWSPENDING", "v1");
        assert!(s.versions["v2"].stages.is_empty());
        assert_eq!(s.versions["v1"].stages, vec![CURRENT, "AWSPENDING"]);
    }

    #[test]
    fn deprecated_versions_past_the_limit_go_oldest_first() {
        let mut s = secret();
        for i in 0..(MAX_VERSIONS + 5) {
            s.add_version(
                format!("v{i:03}"),
                value("x", i as i64),
                vec![CURRENT.into()],
            );
        }
        assert_eq!(s.versions.len(), MAX_VERSIONS);
        assert!(!s.versions.contains_key("v000"));
        assert!(!s.versions.contains_key("v004"));
        assert!(s.versions.contains_key("v005"));
        let last = format!("v{:03}", MAX_VERSIONS + 4);
        assert_eq!(s.versions[&last].stages, vec![CURRENT]);
    }

    #[test]
    fn expiry_follows_the_recovery_window() {
        let mut s = secret();
        assert!(!s.expired(10));
        s.deletion = Some(Deletion {
            deleted_ms: 0,
            due_ms: 10,
        });
        assert!(s.marked_for_deletion());
        assert!(!s.expired(9));
        assert!(s.expired(10));
    }
}
