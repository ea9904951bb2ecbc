//! Secret values: get (one or a batch), put a new version, list versions, and random
//! passwords.

use crate::SecretsManager;
use crate::common::{self, Value, invalid_parameter, ts};
use crate::filter;
use crate::records::{self, CURRENT, SecretRecord, VersionRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Blob;
use berth_shapes::secretsmanager as wire;
use berth_store::{Expect, Op, Store, retry_on_conflict};
use rand::Rng;
use rand::seq::SliceRandom;

/// What Secrets Manager says when BatchGetSecretValue names neither or both of its selectors.
const ONE_OF_IDS_OR_FILTERS: &str = "You must include Filters or SecretIdList, but not both.";

/// BatchGetSecretValue answers at most this many secrets per page of a filter.
const BATCH_DEFAULT_PAGE: usize = 20;
/// ListSecretVersionIds answers at most this many versions when MaxResults is not given.
const VERSIONS_DEFAULT_PAGE: usize = 100;

fn value_fields(v: &VersionRecord) -> (Option<String>, Option<Blob>) {
    (v.string.clone(), v.binary.clone().map(Blob))
}

pub async fn get_secret_value(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::GetSecretValueRequest,
) -> Result<wire::GetSecretValueResponse, AwsError> {
    let (s, version) = common::find_live(sm, ctx, &req.secret_id.unwrap_or_default()).await?;
    let (id, v) =
        common::select_version(&s, req.version_id.as_deref(), req.version_stage.as_deref())
            .map_err(|e| AwsError::client("ResourceNotFoundException", e.message()))?;
    let (secret_string, secret_binary) = value_fields(v);
    let out = wire::GetSecretValueResponse {
        arn: Some(s.arn.clone()),
        name: Some(s.name.clone()),
        version_id: Some(id.clone()),
        secret_binary,
        secret_string,
        version_stages: Some(v.stages.clone()),
        created_date: Some(ts(v.created_ms)),
    };
    note_access(sm, ctx, s, version).await;
    Ok(out)
}

/// Records the day of this read as `LastAccessedDate`: one write per secret per day, best
/// effort (a concurrent change wins; the next read tries again).
async fn note_access(sm: &SecretsManager, ctx: &RequestContext, mut s: SecretRecord, version: u64) {
    let today = common::day_of(sm.now_ms());
    if s.last_accessed_ms == Some(today) {
        return;
    }
    s.last_accessed_ms = Some(today);
    let Ok(value) = serde_json::to_value(&s) else {
        return;
    };
    let op = Op::put(
        records::SECRET,
        ctx.partition(),
        &s.name,
        value,
        Expect::Version(version),
    );
    if let Err(e) = sm.store().commit(vec![op]).await
        && !e.is_conflict()
    {
        tracing::warn!("secretsmanager: recording the last access failed: {e}");
    }
}

pub async fn put_secret_value(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::PutSecretValueRequest,
) -> Result<wire::PutSecretValueResponse, AwsError> {
    let id = req.secret_id.unwrap_or_default();
    let Some(value) = Value::from_request(req.secret_string, req.secret_binary)? else {
        return Err(invalid_parameter(
            "You must provide either SecretString or SecretBinary.",
        ));
    };
    let stages = req
        .version_stages
        .unwrap_or_else(|| vec![CURRENT.to_owned()]);
    let version_id = common::version_id(req.client_request_token);
    retry_on_conflict(sm.store(), || async {
        let now = sm.now_ms();
        let (mut s, version) = common::find_live(sm, ctx, &id).await?;
        let mut ops = Vec::new();
        match s.versions.get(&version_id) {
            // The same request again: nothing changes.
            Some(existing) if value.same_as(existing) => {}
            Some(_) => {
                return Err(AwsError::client(
                    "ResourceExistsException",
                    "A resource with the ID you requested already exists.",
                ));
            }
            None => {
                s.add_version(version_id.clone(), value.version(now), stages.clone());
                s.last_changed_ms = now;
                let record = serde_json::to_value(&s).map_err(AwsError::internal)?;
                ops.push(Op::put(
                    records::SECRET,
                    ctx.partition(),
                    &s.name,
                    record,
                    Expect::Version(version),
                ));
            }
        }
        let out = wire::PutSecretValueResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
            version_id: Some(version_id.clone()),
            version_stages: s.versions.get(&version_id).map(|v| v.stages.clone()),
        };
        Ok((ops, out))
    })
    .await
}

pub async fn list_secret_version_ids(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::ListSecretVersionIdsRequest,
) -> Result<wire::ListSecretVersionIdsResponse, AwsError> {
    let (s, _) = common::find(sm, ctx, &req.secret_id.unwrap_or_default()).await?;
    let include_deprecated = req.include_deprecated.unwrap_or(false);
    let limit = req
        .max_results
        .map_or(VERSIONS_DEFAULT_PAGE, |n| n.max(1) as usize);
    let binding = common::binding(ctx, &format!("ListSecretVersionIds/{}", s.arn));
    // Newest first; the token is the last version id shown.
    let mut versions: Vec<(&String, &VersionRecord)> = s
        .versions
        .iter()
        .filter(|(_, v)| include_deprecated || !v.stages.is_empty())
        .collect();
    versions.sort_by(|a, b| (b.1.created_ms, b.0).cmp(&(a.1.created_ms, a.0)));
    let start = match req.next_token.as_deref() {
        Some(t) => {
            let last = sm
                .tokens()
                .decode(&binding, t)
                .ok_or_else(common::invalid_token)?;
            versions
                .iter()
                .position(|(id, _)| **id == last)
                .map(|i| i + 1)
                .ok_or_else(common::invalid_token)?
        }
        None => 0,
    };
    let page: Vec<_> = versions.iter().skip(start).take(limit).collect();
    let next_token = match page.last() {
        Some((id, _)) if start + page.len() < versions.len() => {
            Some(sm.tokens().encode(&binding, id))
        }
        _ => None,
    };
    Ok(wire::ListSecretVersionIdsResponse {
        versions: Some(
            page.iter()
                .map(|(id, v)| wire::SecretVersionsListEntry {
                    version_id: Some((*id).clone()),
                    version_stages: Some(v.stages.clone()),
                    created_date: Some(ts(v.created_ms)),
                    ..Default::default()
                })
                .collect(),
        ),
        next_token,
        arn: Some(s.arn.clone()),
        name: Some(s.name.clone()),
    })
}

fn entry(s: &SecretRecord, id: &str, v: &VersionRecord) -> wire::SecretValueEntry {
    let (secret_string, secret_binary) = value_fields(v);
    wire::SecretValueEntry {
        arn: Some(s.arn.clone()),
        name: Some(s.name.clone()),
        version_id: Some(id.to_owned()),
        secret_binary,
        secret_string,
        version_stages: Some(v.stages.clone()),
        created_date: Some(ts(v.created_ms)),
    }
}

pub async fn batch_get_secret_value(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::BatchGetSecretValueRequest,
) -> Result<wire::BatchGetSecretValueResponse, AwsError> {
    match (req.secret_id_list, req.filters) {
        (Some(ids), None) => {
            if req.max_results.is_some() || req.next_token.is_some() {
                return Err(invalid_parameter(
                    "MaxResults and NextToken can be used only with Filters.",
                ));
            }
            let mut values = Vec::new();
            let mut errors = Vec::new();
            for id in ids {
                let failure = |code: &str, message: String| wire::APIErrorType {
                    secret_id: Some(id.clone()),
                    error_code: Some(code.to_owned()),
                    message: Some(message),
                };
                match common::find_live(sm, ctx, &id).await {
                    Ok((s, _)) => match common::select_version(&s, None, None) {
                        Ok((vid, v)) => values.push(entry(&s, vid, v)),
                        Err(e) => errors.push(failure("ResourceNotFoundException", e.message())),
                    },
                    Err(e) if e.status.is_client_error() => {
                        errors.push(failure(&e.code, e.message));
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(wire::BatchGetSecretValueResponse {
                secret_values: Some(values),
                next_token: None,
                errors: Some(errors),
            })
        }
        (None, Some(filters)) => {
            let filters = filter::parse(Some(filters))?;
            let limit = req
                .max_results
                .map_or(BATCH_DEFAULT_PAGE, |n| n.max(1) as usize);
            let binding = common::binding(ctx, "BatchGetSecretValue");
            let after = match req.next_token.as_deref() {
                Some(t) => Some(
                    sm.tokens()
                        .decode(&binding, t)
                        .ok_or_else(common::invalid_token)?,
                ),
                None => None,
            };
            // Name order (the store's), resuming after the last name of the previous page.
            let matching: Vec<SecretRecord> = common::all_secrets(sm, ctx)
                .await?
                .into_iter()
                .filter(|s| !s.marked_for_deletion() && filter::matches(&filters, s))
                .filter(|s| after.as_ref().is_none_or(|a| s.name > *a))
                .collect();
            let more = matching.len() > limit;
            let page = &matching[..matching.len().min(limit)];
            let mut values = Vec::new();
            let mut errors = Vec::new();
            for s in page {
                match common::select_version(s, None, None) {
                    Ok((vid, v)) => values.push(entry(s, vid, v)),
                    Err(e) => errors.push(wire::APIErrorType {
                        secret_id: Some(s.arn.clone()),
                        error_code: Some("ResourceNotFoundException".into()),
                        message: Some(e.message()),
                    }),
                }
            }
            let next_token = match (more, page.last()) {
                (true, Some(s)) => Some(sm.tokens().encode(&binding, &s.name)),
                _ => None,
            };
            Ok(wire::BatchGetSecretValueResponse {
                secret_values: Some(values),
                next_token,
                errors: Some(errors),
            })
        }
        // "You must include Filters or SecretIdList, but not both" (the API reference): a
        // request naming neither is refused, not read as "every secret".
        (None, None) | (Some(_), Some(_)) => Err(invalid_parameter(ONE_OF_IDS_OR_FILTERS)),
    }
}

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

pub async fn get_random_password(
    _sm: &SecretsManager,
    _ctx: &RequestContext,
    req: wire::GetRandomPasswordRequest,
) -> Result<wire::GetRandomPasswordResponse, AwsError> {
    let length = req.password_length.unwrap_or(32) as usize;
    let excluded: Vec<char> = req.exclude_characters.unwrap_or_default().chars().collect();
    let mut classes: Vec<Vec<char>> = Vec::new();
    let mut class = |skip: Option<bool>, chars: &mut dyn Iterator<Item = char>| {
        if !skip.unwrap_or(false) {
            let kept: Vec<char> = chars.filter(|c| !excluded.contains(c)).collect();
            if !kept.is_empty() {
                classes.push(kept);
            }
        }
    };
    class(req.exclude_lowercase, &mut ('a'..='z'));
    class(req.exclude_uppercase, &mut ('A'..='Z'));
    class(req.exclude_numbers, &mut ('0'..='9'));
    class(req.exclude_punctuation, &mut PUNCTUATION.chars());
    class(
        Some(!req.include_space.unwrap_or(false)),
        &mut std::iter::once(' '),
    );
    if classes.is_empty() {
        return Err(invalid_parameter(
            "The password cannot be generated: every character type is excluded.",
        ));
    }
    let each = req.require_each_included_type.unwrap_or(true);
    if each && length < classes.len() {
        return Err(invalid_parameter(format!(
            "The password length must be at least {} to include each character type.",
            classes.len()
        )));
    }
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    let mut rng = rand::thread_rng();
    let mut password: Vec<char> = Vec::with_capacity(length);
    if each {
        for c in &classes {
            password.push(c[rng.gen_range(0..c.len())]);
        }
    }
    while password.len() < length {
        password.push(all[rng.gen_range(0..all.len())]);
    }
    password.shuffle(&mut rng);
    Ok(wire::GetRandomPasswordResponse {
        random_password: Some(password.into_iter().collect()),
    })
}

pub async fn update_secret_version_stage(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::UpdateSecretVersionStageRequest,
) -> Result<wire::UpdateSecretVersionStageResponse, AwsError> {
    let id = req.secret_id.unwrap_or_default();
    let stage = req.version_stage.unwrap_or_default();
    let (remove_from, move_to) = (req.remove_from_version_id, req.move_to_version_id);
    retry_on_conflict(sm.store(), || async {
        let (mut s, version) = common::find_live(sm, ctx, &id).await?;
        let holder = s.version_with_stage(&stage).map(|(v, _)| v.clone());
        for named in [&remove_from, &move_to].into_iter().flatten() {
            if !s.versions.contains_key(named) {
                return Err(invalid_parameter(format!(
                    "Secrets Manager can't find the specified secret version: {named}"
                )));
            }
        }
        if let Some(from) = &remove_from
            && holder.as_ref() != Some(from)
        {
            return Err(invalid_parameter(format!(
                "The staging label {stage} is not attached to version {from}."
            )));
        }
        match &move_to {
            Some(to) => {
                // A label attached elsewhere moves only when the request names where from.
                if let Some(h) = &holder
                    && h != to
                    && remove_from.as_ref() != Some(h)
                {
                    return Err(invalid_parameter(format!(
                        "The staging label {stage} is currently attached to version {h}, so you must explicitly reference that version in RemoveFromVersionId."
                    )));
                }
                s.move_stage(&stage, to);
            }
            None => {
                if stage == CURRENT && remove_from.is_some() {
                    return Err(invalid_parameter(
                        "You can't remove the staging label AWSCURRENT from a version without moving it to another version.",
                    ));
                }
                if let Some(from) = &remove_from
                    && let Some(v) = s.versions.get_mut(from)
                {
                    v.stages.retain(|l| *l != stage);
                }
            }
        }
        s.last_changed_ms = sm.now_ms();
        let record = serde_json::to_value(&s).map_err(AwsError::internal)?;
        let out = wire::UpdateSecretVersionStageResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
        };
        let op = Op::put(
            records::SECRET,
            ctx.partition(),
            &s.name,
            record,
            Expect::Version(version),
        );
        Ok((vec![op], out))
    })
    .await
}
