//! Secrets as resources: create, describe, update, delete (with a recovery window), restore
//! and list.

use crate::SecretsManager;
use crate::common::{self, Value, invalid_parameter, invalid_request, ts};
use crate::filter;
use crate::records::{self, CURRENT, Deletion, SecretRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::secretsmanager as wire;
use berth_store::{Expect, Op, get_as, retry_on_conflict};
use std::collections::BTreeMap;

const DAY_MS: i64 = 86_400_000;

/// ListSecrets answers at most this many secrets when MaxResults is not given.
const DEFAULT_PAGE: usize = 100;

fn put(ctx: &RequestContext, secret: &SecretRecord, expect: Expect) -> Result<Op, AwsError> {
    let value = serde_json::to_value(secret).map_err(AwsError::internal)?;
    Ok(Op::put(
        records::SECRET,
        ctx.partition(),
        &secret.name,
        value,
        expect,
    ))
}

pub async fn create_secret(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::CreateSecretRequest,
) -> Result<wire::CreateSecretResponse, AwsError> {
    let name = req.name.unwrap_or_default();
    common::check_name(&name)?;
    let value = Value::from_request(req.secret_string, req.secret_binary)?;
    if req.add_replica_regions.is_some_and(|r| !r.is_empty()) {
        return Err(invalid_request(
            "berth does not replicate secrets to other Regions.",
        ));
    }
    let mut tags = Vec::new();
    common::merge_tags(&mut tags, common::tags_of(req.tags)?)?;
    let version_id = common::version_id(req.client_request_token);
    let partition = ctx.partition();
    retry_on_conflict(sm.store(), || async {
        let now = sm.now_ms();
        let existing =
            get_as::<SecretRecord, _>(sm.store(), records::SECRET, &partition, &name).await?;
        let expect = match &existing {
            // Past its recovery window: gone, and its name free again.
            Some((s, version)) if s.expired(now) => Expect::Version(*version),
            Some((s, _)) if s.marked_for_deletion() => {
                return Err(invalid_request(
                    "You can't create this secret because a secret with this name is already scheduled for deletion.",
                ));
            }
            Some((s, _)) => {
                // The same request again (same token, same value) succeeds and changes nothing.
                if let Some(v) = &value
                    && s.versions.get(&version_id).is_some_and(|ver| v.same_as(ver))
                {
                    let out = wire::CreateSecretResponse {
                        arn: Some(s.arn.clone()),
                        name: Some(s.name.clone()),
                        version_id: Some(version_id.clone()),
                        ..Default::default()
                    };
                    return Ok((Vec::new(), out));
                }
                return Err(AwsError::client(
                    "ResourceExistsException",
                    format!("The operation failed because the secret {name} already exists."),
                ));
            }
            None => Expect::Absent,
        };
        let mut secret = SecretRecord {
            name: name.clone(),
            arn: common::new_arn(ctx, &name),
            description: req.description.clone(),
            kms_key_id: req.kms_key_id.clone(),
            secret_type: req.r#type.clone(),
            tags: tags.clone(),
            created_ms: now,
            last_changed_ms: now,
            last_accessed_ms: None,
            deletion: None,
            versions: BTreeMap::new(),
        };
        if let Some(v) = &value {
            secret.add_version(version_id.clone(), v.version(now), vec![CURRENT.into()]);
        }
        let out = wire::CreateSecretResponse {
            arn: Some(secret.arn.clone()),
            name: Some(name.clone()),
            version_id: value.as_ref().map(|_| version_id.clone()),
            ..Default::default()
        };
        Ok((vec![put(ctx, &secret, expect)?], out))
    })
    .await
}

pub async fn describe_secret(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::DescribeSecretRequest,
) -> Result<wire::DescribeSecretResponse, AwsError> {
    let (s, _) = common::find(sm, ctx, &req.secret_id.unwrap_or_default()).await?;
    Ok(wire::DescribeSecretResponse {
        arn: Some(s.arn.clone()),
        name: Some(s.name.clone()),
        r#type: s.secret_type.clone(),
        description: s.description.clone(),
        kms_key_id: s.kms_key_id.clone(),
        last_changed_date: Some(ts(s.last_changed_ms)),
        last_accessed_date: s.last_accessed_ms.map(ts),
        deleted_date: s.deletion.map(|d| ts(d.deleted_ms)),
        tags: Some(common::wire_tags(&s.tags)),
        version_ids_to_stages: Some(s.stages_by_version()),
        created_date: Some(ts(s.created_ms)),
        ..Default::default()
    })
}

pub async fn update_secret(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::UpdateSecretRequest,
) -> Result<wire::UpdateSecretResponse, AwsError> {
    let id = req.secret_id.unwrap_or_default();
    let value = Value::from_request(req.secret_string, req.secret_binary)?;
    let version_id = common::version_id(req.client_request_token);
    retry_on_conflict(sm.store(), || async {
        let now = sm.now_ms();
        let (mut s, version) = common::find_live(sm, ctx, &id).await?;
        let mut new_version = None;
        if let Some(v) = &value {
            match s.versions.get(&version_id) {
                Some(existing) if v.same_as(existing) => new_version = Some(version_id.clone()),
                Some(_) => {
                    return Err(AwsError::client(
                        "ResourceExistsException",
                        "A resource with the ID you requested already exists.",
                    ));
                }
                None => {
                    s.add_version(version_id.clone(), v.version(now), vec![CURRENT.into()]);
                    new_version = Some(version_id.clone());
                }
            }
        }
        if let Some(d) = &req.description {
            s.description = Some(d.clone());
        }
        if let Some(k) = &req.kms_key_id {
            s.kms_key_id = Some(k.clone());
        }
        if let Some(t) = &req.r#type {
            s.secret_type = Some(t.clone());
        }
        s.last_changed_ms = now;
        let out = wire::UpdateSecretResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
            version_id: new_version,
        };
        Ok((vec![put(ctx, &s, Expect::Version(version))?], out))
    })
    .await
}

pub async fn delete_secret(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::DeleteSecretRequest,
) -> Result<wire::DeleteSecretResponse, AwsError> {
    let id = req.secret_id.unwrap_or_default();
    let force = req.force_delete_without_recovery.unwrap_or(false);
    if force && req.recovery_window_in_days.is_some() {
        return Err(invalid_parameter(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        ));
    }
    let days = req.recovery_window_in_days.unwrap_or(30);
    if !(7..=30).contains(&days) {
        return Err(invalid_parameter(
            "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
        ));
    }
    retry_on_conflict(sm.store(), || async {
        let now = sm.now_ms();
        let (mut s, version) = common::find(sm, ctx, &id).await?;
        if force {
            let out = wire::DeleteSecretResponse {
                arn: Some(s.arn.clone()),
                name: Some(s.name.clone()),
                deletion_date: Some(ts(now)),
            };
            let op = Op::delete(
                records::SECRET,
                ctx.partition(),
                &s.name,
                Expect::Version(version),
            );
            return Ok((vec![op], out));
        }
        if s.marked_for_deletion() {
            return Err(common::marked_for_deletion());
        }
        let deletion = Deletion {
            deleted_ms: now,
            due_ms: now + days * DAY_MS,
        };
        s.deletion = Some(deletion);
        let out = wire::DeleteSecretResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
            deletion_date: Some(ts(deletion.due_ms)),
        };
        Ok((vec![put(ctx, &s, Expect::Version(version))?], out))
    })
    .await
}

pub async fn restore_secret(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::RestoreSecretRequest,
) -> Result<wire::RestoreSecretResponse, AwsError> {
    let id = req.secret_id.unwrap_or_default();
    retry_on_conflict(sm.store(), || async {
        let (mut s, version) = common::find(sm, ctx, &id).await?;
        let out = wire::RestoreSecretResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
        };
        if s.deletion.take().is_none() {
            return Ok((Vec::new(), out));
        }
        Ok((vec![put(ctx, &s, Expect::Version(version))?], out))
    })
    .await
}

/// How ListSecrets orders: by `SortBy` (created date unless said), ties by name, then
/// ascending or descending. Each secret's place is `(sort key, name)`, which is also what a
/// page's token holds, so a page resumes after the last secret shown even if secrets were
/// created or deleted meanwhile.
fn sort_key(sort_by: &str, s: &SecretRecord) -> String {
    let padded = |ms: i64| format!("{:020}", ms.max(0));
    match sort_by {
        "name" => String::new(),
        "last-accessed-date" => padded(s.last_accessed_ms.unwrap_or(0)),
        "last-changed-date" => padded(s.last_changed_ms),
        _ => padded(s.created_ms),
    }
}

pub async fn list_secrets(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::ListSecretsRequest,
) -> Result<wire::ListSecretsResponse, AwsError> {
    let filters = filter::parse(req.filters)?;
    let sort_by = req.sort_by.unwrap_or_else(|| "created-date".into());
    let descending = req.sort_order.as_deref() != Some("asc");
    let include_deleted = req.include_planned_deletion.unwrap_or(false);
    let limit = req.max_results.map_or(DEFAULT_PAGE, |n| n.max(1) as usize);
    let binding = common::binding(
        ctx,
        &format!(
            "ListSecrets/{sort_by}/{}",
            if descending { "desc" } else { "asc" }
        ),
    );
    let after: Option<(String, String)> = match req.next_token.as_deref() {
        Some(t) => {
            let position = sm
                .tokens()
                .decode(&binding, t)
                .ok_or_else(common::invalid_token)?;
            let (k, n) = position
                .split_once('\0')
                .ok_or_else(common::invalid_token)?;
            Some((k.to_owned(), n.to_owned()))
        }
        None => None,
    };
    let mut secrets: Vec<((String, String), SecretRecord)> = common::all_secrets(sm, ctx)
        .await?
        .into_iter()
        .filter(|s| include_deleted || !s.marked_for_deletion())
        .filter(|s| filter::matches(&filters, s))
        .map(|s| ((sort_key(&sort_by, &s), s.name.clone()), s))
        .collect();
    secrets.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        secrets.reverse();
    }
    let remaining: Vec<_> = secrets
        .into_iter()
        .filter(|(place, _)| match &after {
            None => true,
            Some(a) if descending => place < a,
            Some(a) => place > a,
        })
        .collect();
    let more = remaining.len() > limit;
    let page: Vec<_> = remaining.into_iter().take(limit).collect();
    let next_token = match (more, page.last()) {
        (true, Some(((k, n), _))) => Some(sm.tokens().encode(&binding, &format!("{k}\0{n}"))),
        _ => None,
    };
    Ok(wire::ListSecretsResponse {
        secret_list: Some(page.into_iter().map(|(_, s)| list_entry(s)).collect()),
        next_token,
    })
}

fn list_entry(s: SecretRecord) -> wire::SecretListEntry {
    wire::SecretListEntry {
        secret_versions_to_stages: Some(s.stages_by_version()),
        last_changed_date: Some(ts(s.last_changed_ms)),
        last_accessed_date: s.last_accessed_ms.map(ts),
        deleted_date: s.deletion.map(|d| ts(d.deleted_ms)),
        created_date: Some(ts(s.created_ms)),
        tags: Some(common::wire_tags(&s.tags)),
        arn: Some(s.arn),
        name: Some(s.name),
        r#type: s.secret_type,
        description: s.description,
        kms_key_id: s.kms_key_id,
        ..Default::default()
    }
}
