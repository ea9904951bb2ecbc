//! PutLifecyclePolicy, GetLifecyclePolicy, DeleteLifecyclePolicy, StartLifecyclePolicyPreview
//! and GetLifecyclePolicyPreview, and the application of policies ([`Ecr::apply_lifecycle_policy`],
//! [`Ecr::apply_lifecycle_policies`]). What a policy expires is decided by the pure
//! [`crate::lifecycle::evaluate`]; this file reads the images, stores policies and previews in
//! the repository's settings, and deletes what the evaluation expires.
//!
//! A policy is applied when it is put (ECR promises "within 24 hours"; berth does it at once)
//! and by every [`Ecr::apply_lifecycle_policies`] sweep the server runs. A preview is computed
//! when it is started, so it is `COMPLETE` at once.

use crate::Ecr;
use crate::common::{self, Settings, check_registry_id, invalid, registry_error};
use crate::lifecycle::{self, Image};
use berth_aws::{AwsError, RequestContext};
use berth_registry::ImageInfo;
use berth_shapes::Timestamp;
use berth_shapes::ecr as wire;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The latest preview of a repository, as StartLifecyclePolicyPreview computed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub policy_text: String,
    pub evaluated_at_ms: i64,
    /// The images the policy would expire, oldest first.
    pub results: Vec<PreviewResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewResult {
    pub digest: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub pushed_at_ms: i64,
    pub rule_priority: i32,
}

/// What one application of lifecycle policies did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleReport {
    /// Repositories whose policy was applied.
    pub repositories: usize,
    /// Images expired (deleted).
    pub expired: usize,
}

fn parse_policy(text: &str) -> Result<lifecycle::Policy, AwsError> {
    lifecycle::parse(text).map_err(|why| {
        invalid(format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {why}'"
        ))
    })
}

fn policy_not_found(ecr: &Ecr, name: &str) -> AwsError {
    AwsError::client(
        "LifecyclePolicyNotFoundException",
        format!(
            "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            ecr.place().account_id
        ),
    )
}

/// The images a policy judges: every image but the platform images an index names (expiring
/// one would break the index); once no index names them, they are judged like any other.
fn judged(images: &[ImageInfo]) -> Vec<Image> {
    images
        .iter()
        .filter(|i| !i.in_index)
        .map(|i| Image {
            digest: i.digest.clone(),
            tags: i.tags.clone(),
            pushed_at_ms: i.pushed_at_ms,
        })
        .collect()
}

/// What `policy` expires in repository `name` now, with each image's tags and push time.
async fn expiring(
    ecr: &Ecr,
    name: &str,
    policy: &lifecycle::Policy,
    now_ms: i64,
) -> Result<Vec<PreviewResult>, AwsError> {
    let images = judged(&ecr.registry().images(name).await.map_err(registry_error)?);
    Ok(lifecycle::evaluate(policy, &images, now_ms)
        .into_iter()
        .filter_map(|e| {
            let image = images.iter().find(|i| i.digest == e.digest)?;
            Some(PreviewResult {
                digest: e.digest,
                tags: image.tags.clone(),
                pushed_at_ms: image.pushed_at_ms,
                rule_priority: e.rule_priority,
            })
        })
        .collect())
}

impl Ecr {
    /// Applies repository `name`'s lifecycle policy now: deletes the images it expires (each
    /// only if its tags did not change since the evaluation) and records the evaluation time.
    /// Returns how many images were expired; 0 when the repository has no policy.
    pub async fn apply_lifecycle_policy(&self, name: &str) -> Result<usize, AwsError> {
        let info = common::existing(self, name).await?;
        let Some(text) = Settings::of(&info).lifecycle_policy else {
            return Ok(0);
        };
        let policy = match lifecycle::parse(&text) {
            Ok(p) => p,
            Err(why) => {
                // Only a valid policy is ever stored; one that no longer parses is left alone.
                tracing::warn!(
                    repository = name,
                    "stored lifecycle policy does not parse: {why}"
                );
                return Ok(0);
            }
        };
        let now = self.now_ms();
        let mut expired = 0;
        for e in expiring(self, name, &policy, now).await? {
            if self
                .registry()
                .expire_image(name, &e.digest, &e.tags)
                .await
                .map_err(registry_error)?
            {
                tracing::info!(repository = name, digest = %e.digest, rule = e.rule_priority, "lifecycle policy expired an image");
                expired += 1;
            }
        }
        common::update_settings(self, name, |s| {
            if s.lifecycle_policy.as_deref() == Some(text.as_str()) {
                s.lifecycle_evaluated_at_ms = Some(now);
            }
            Ok(())
        })
        .await?;
        Ok(expired)
    }

    /// Applies the lifecycle policy of every repository that has one: the sweep the server runs
    /// on a schedule. A repository that fails is logged and skipped; the others go on.
    pub async fn apply_lifecycle_policies(&self) -> Result<LifecycleReport, AwsError> {
        let mut report = LifecycleReport::default();
        for info in self
            .registry()
            .repositories()
            .await
            .map_err(registry_error)?
        {
            if Settings::of(&info).lifecycle_policy.is_none() {
                continue;
            }
            match self.apply_lifecycle_policy(&info.name).await {
                Ok(n) => {
                    report.repositories += 1;
                    report.expired += n;
                }
                // Deleted meanwhile: nothing to apply.
                Err(e) if e.code == "RepositoryNotFoundException" => {}
                Err(e) => {
                    tracing::warn!(repository = %info.name, "lifecycle policy not applied: {e}")
                }
            }
        }
        Ok(report)
    }

    /// Applies every lifecycle policy every `every`, forever (the first sweep right away): the
    /// server spawns it and aborts it at shutdown.
    pub async fn lifecycle_sweep(self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.apply_lifecycle_policies().await {
                Ok(r) if r.expired > 0 => tracing::info!(
                    repositories = r.repositories,
                    expired = r.expired,
                    "lifecycle policies applied"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("lifecycle sweep failed: {e}"),
            }
        }
    }
}

pub async fn put_lifecycle_policy(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::PutLifecyclePolicyRequest,
) -> Result<wire::PutLifecyclePolicyResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let text = req.lifecycle_policy_text.unwrap_or_default();
    common::existing(ecr, &name).await?;
    parse_policy(&text)?;
    common::update_settings(ecr, &name, |s| {
        s.lifecycle_policy = Some(text.clone());
        s.lifecycle_evaluated_at_ms = None;
        Ok(())
    })
    .await?;
    // The policy is in force from now on: apply it at once. The put stands even if this
    // fails (the next sweep applies it).
    if let Err(e) = ecr.apply_lifecycle_policy(&name).await {
        tracing::warn!(repository = %name, "lifecycle policy stored but not applied yet: {e}");
    }
    Ok(wire::PutLifecyclePolicyResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        lifecycle_policy_text: Some(text),
    })
}

pub async fn get_lifecycle_policy(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::GetLifecyclePolicyRequest,
) -> Result<wire::GetLifecyclePolicyResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let s = Settings::of(&common::existing(ecr, &name).await?);
    let text = s
        .lifecycle_policy
        .ok_or_else(|| policy_not_found(ecr, &name))?;
    Ok(wire::GetLifecyclePolicyResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        lifecycle_policy_text: Some(text),
        last_evaluated_at: s.lifecycle_evaluated_at_ms.map(Timestamp::from_millis),
    })
}

pub async fn delete_lifecycle_policy(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::DeleteLifecyclePolicyRequest,
) -> Result<wire::DeleteLifecyclePolicyResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let removed = Mutex::new(None);
    common::update_settings(ecr, &name, |s| {
        let text = s
            .lifecycle_policy
            .take()
            .ok_or_else(|| policy_not_found(ecr, &name))?;
        let evaluated = s.lifecycle_evaluated_at_ms.take();
        *removed.lock().unwrap_or_else(|e| e.into_inner()) = Some((text, evaluated));
        Ok(())
    })
    .await?;
    let (text, evaluated) = removed
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_default();
    Ok(wire::DeleteLifecyclePolicyResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        lifecycle_policy_text: Some(text),
        last_evaluated_at: evaluated.map(Timestamp::from_millis),
    })
}

pub async fn start_lifecycle_policy_preview(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::StartLifecyclePolicyPreviewRequest,
) -> Result<wire::StartLifecyclePolicyPreviewResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let info = common::existing(ecr, &name).await?;
    let text = match req.lifecycle_policy_text {
        Some(t) => t,
        None => Settings::of(&info)
            .lifecycle_policy
            .ok_or_else(|| policy_not_found(ecr, &name))?,
    };
    let policy = parse_policy(&text)?;
    let now = ecr.now_ms();
    let preview = Preview {
        policy_text: text.clone(),
        evaluated_at_ms: now,
        results: expiring(ecr, &name, &policy, now).await?,
    };
    common::update_settings(ecr, &name, |s| {
        s.lifecycle_preview = Some(preview.clone());
        Ok(())
    })
    .await?;
    Ok(wire::StartLifecyclePolicyPreviewResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        lifecycle_policy_text: Some(text),
        status: Some("COMPLETE".into()),
    })
}

pub async fn get_lifecycle_policy_preview(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::GetLifecyclePolicyPreviewRequest,
) -> Result<wire::GetLifecyclePolicyPreviewResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let info = common::existing(ecr, &name).await?;
    let ids = req.image_ids.unwrap_or_default();
    if !ids.is_empty() && req.max_results.is_some() {
        return Err(invalid(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults cannot be used with imageIds'",
        ));
    }
    let preview = Settings::of(&info).lifecycle_preview.ok_or_else(|| {
        AwsError::client(
            "LifecyclePolicyPreviewNotFoundException",
            format!(
                "There is no lifecycle policy preview for the repository with name '{name}' in the registry with id '{}'",
                ecr.place().account_id
            ),
        )
    })?;
    let total = preview.results.len();
    let status = req.filter.as_ref().and_then(|f| f.tag_status.as_deref());
    let items = preview
        .results
        .iter()
        .enumerate()
        .filter(|(_, r)| match status {
            Some("TAGGED") => !r.tags.is_empty(),
            Some("UNTAGGED") => r.tags.is_empty(),
            _ => true,
        })
        .filter(|(_, r)| {
            ids.is_empty()
                || ids.iter().any(|id| {
                    id.image_digest.as_deref() == Some(r.digest.as_str())
                        || id.image_tag.as_ref().is_some_and(|t| r.tags.contains(t))
                })
        })
        .map(|(i, r)| {
            (
                format!("{i:010}"),
                wire::LifecyclePolicyPreviewResult {
                    image_tags: (!r.tags.is_empty()).then(|| r.tags.clone()),
                    image_digest: Some(r.digest.clone()),
                    image_pushed_at: Some(Timestamp::from_millis(r.pushed_at_ms)),
                    action: Some(wire::LifecyclePolicyRuleAction {
                        r#type: Some("EXPIRE".into()),
                        target_storage_class: None,
                    }),
                    applied_rule_priority: Some(r.rule_priority),
                    storage_class: None,
                },
            )
        })
        .collect();
    let (results, next_token) = common::page(
        ecr,
        &format!(
            "{}/{name}/{}",
            common::binding(ecr, "GetLifecyclePolicyPreview"),
            preview.evaluated_at_ms
        ),
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::GetLifecyclePolicyPreviewResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        lifecycle_policy_text: Some(preview.policy_text),
        status: Some("COMPLETE".into()),
        next_token,
        preview_results: Some(results),
        summary: Some(wire::LifecyclePolicyPreviewSummary {
            expiring_image_total_count: Some(i32::try_from(total).unwrap_or(i32::MAX)),
            transitioning_image_total_counts: None,
        }),
    })
}
