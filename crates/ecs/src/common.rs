//! What several ECS actions share: resolving identifiers given as name or ARN, ARNs in ECS's
//! long format, pagination, tag rules and ECS's error codes.

use crate::Ecs;
use crate::records::{ClusterRecord, kinds};
use berth_aws::{AwsError, RequestContext};
use berth_model::Arn;
use berth_shapes::ecs as wire;
use berth_store::{Store, StoreError, TypedRecord};
use serde::de::DeserializeOwned;

pub const DEFAULT_CLUSTER: &str = "default";

pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", message)
}

pub fn client(message: impl Into<String>) -> AwsError {
    AwsError::client("ClientException", message)
}

pub fn cluster_not_found() -> AwsError {
    AwsError::client("ClusterNotFoundException", "Cluster not found.")
}

pub fn store_error(e: StoreError) -> AwsError {
    AwsError::internal(e)
}

pub fn arn(ctx: &RequestContext, resource: impl Into<String>) -> String {
    Arn::new("ecs", &ctx.region, &ctx.account_id, resource).to_string()
}

/// The resource part of an ECS ARN of type `kind` that belongs to this account and region, or
/// the identifier itself when it is not an ARN. `None` for an ARN of another type or place.
pub fn resource_name<'a>(ctx: &RequestContext, ident: &'a str, kind: &str) -> Option<&'a str> {
    if !ident.starts_with("arn:") {
        return Some(ident);
    }
    let arn = Arn::parse(ident).ok()?;
    if arn.service != "ecs" || arn.region != ctx.region || arn.account != ctx.account_id {
        return None;
    }
    let (k, name) = arn.resource.split_once('/')?;
    if k != kind || name.is_empty() {
        return None;
    }
    // The name ends the identifier; slice it from there so callers keep the borrow of `ident`.
    ident.get(ident.len() - name.len()..)
}

/// The cluster a request names (or `default`), which must exist and be ACTIVE.
pub async fn active_cluster(
    ecs: &Ecs,
    ctx: &RequestContext,
    ident: Option<&str>,
) -> Result<(ClusterRecord, u64), AwsError> {
    let ident = ident.unwrap_or(DEFAULT_CLUSTER);
    let name = resource_name(ctx, ident, "cluster").ok_or_else(cluster_not_found)?;
    match get::<ClusterRecord>(ecs, ctx, kinds::CLUSTER, name).await? {
        Some((c, v)) if c.status == "ACTIVE" => Ok((c, v)),
        _ => Err(cluster_not_found()),
    }
}

pub async fn get<T: DeserializeOwned + Send>(
    ecs: &Ecs,
    ctx: &RequestContext,
    kind: &str,
    key: &str,
) -> Result<Option<(T, u64)>, AwsError> {
    // The list of keys starting with `key` begins with `key` itself when it exists; decoding it
    // from the stored text skips the `serde_json::Value` tree a plain `get` builds (task
    // records are read once per agent report).
    let mut first = ecs
        .store()
        .list_as::<T>(kind, &ctx.partition(), key, None, 1)
        .await
        .map_err(store_error)?;
    Ok(match first.pop() {
        Some(r) if r.key == key => Some((r.value, r.version)),
        _ => None,
    })
}

/// Every record of `kind` in the caller's partition whose key starts with `prefix`, decoded.
pub async fn all<T: DeserializeOwned + Send>(
    ecs: &Ecs,
    ctx: &RequestContext,
    kind: &str,
    prefix: &str,
) -> Result<Vec<(String, T)>, AwsError> {
    Ok(all_versioned(ecs, ctx, kind, prefix)
        .await?
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect())
}

/// Like [`all`], with each record's store version (for `Expect::Version`).
pub async fn all_versioned<T: DeserializeOwned + Send>(
    ecs: &Ecs,
    ctx: &RequestContext,
    kind: &str,
    prefix: &str,
) -> Result<Vec<(String, T, u64)>, AwsError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    let partition = ctx.partition();
    loop {
        let page: Vec<TypedRecord<T>> = ecs
            .store()
            .list_as(kind, &partition, prefix, after.as_deref(), 1000)
            .await
            .map_err(store_error)?;
        let done = page.len() < 1000;
        for r in page {
            after = Some(r.key.clone());
            out.push((r.key, r.value, r.version));
        }
        if done {
            return Ok(out);
        }
    }
}

/// One page of `items` (already in list order, each with its position key), as ECS pages:
/// `maxResults` between 1 and `max_page` (default `max_page`), and a `nextToken` while more remain.
pub fn page<T>(
    ecs: &Ecs,
    binding: &str,
    items: Vec<(String, T)>,
    max_results: Option<i32>,
    next_token: Option<&str>,
    max_page: i32,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let limit = match max_results {
        None => max_page,
        Some(n) if (1..=max_page).contains(&n) => n,
        Some(_) => {
            return Err(invalid(format!(
                "maxResults must be between 1 and {max_page}."
            )));
        }
    } as usize;
    let start = match next_token {
        None => 0,
        Some(t) => {
            let after = ecs
                .tokens()
                .decode(binding, t)
                .ok_or_else(|| invalid("Invalid nextToken."))?;
            items.partition_point(|(k, _)| k.as_str() <= after.as_str())
        }
    };
    let rest: Vec<(String, T)> = items.into_iter().skip(start).collect();
    let more = rest.len() > limit;
    let mut out = Vec::with_capacity(limit.min(rest.len()));
    let mut last = None;
    for (k, v) in rest.into_iter().take(limit) {
        last = Some(k);
        out.push(v);
    }
    let token = match (more, last) {
        (true, Some(k)) => Some(ecs.tokens().encode(binding, &k)),
        _ => None,
    };
    Ok((out, token))
}

/// The binding that ties a pagination token to one list in one partition.
pub fn binding(ctx: &RequestContext, list: &str) -> String {
    format!("ecs.{list}/{}", ctx.partition())
}

/// ECS's tag rules beyond the model's lengths: at most 50, no `aws:` prefix, no duplicate keys.
pub fn check_tags(tags: &[wire::Tag]) -> Result<(), AwsError> {
    if tags.len() > berth_model::ecs::MAX_TAGS {
        return Err(invalid("The resource can have at most 50 tags."));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        let key = t.key.as_deref().unwrap_or_default();
        if key.is_empty() {
            return Err(invalid("Tag keys must not be empty."));
        }
        if berth_model::ecs::reserved_tag_key(key) {
            return Err(invalid(
                "Tag keys beginning with 'aws:' are reserved for AWS use.",
            ));
        }
        if !seen.insert(key) {
            return Err(invalid(format!("Duplicate tag key '{key}'.")));
        }
    }
    Ok(())
}

/// Applies `new` over `existing`: same key replaces the value, new keys are added.
pub fn merge_tags(existing: &mut Vec<wire::Tag>, new: Vec<wire::Tag>) {
    for t in new {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value,
            None => existing.push(t),
        }
    }
}

pub fn failure(arn: impl Into<String>, reason: &str) -> wire::Failure {
    wire::Failure {
        arn: Some(arn.into()),
        reason: Some(reason.into()),
        detail: None,
    }
}

/// Runs a read-modify-write until it commits without conflict (see
/// [`berth_store::retry_on_conflict`]); `f` returns the ops to commit and the answer.
pub async fn transact<R, F, Fut>(ecs: &Ecs, f: F) -> Result<R, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<berth_store::Op>, R), AwsError>>,
{
    berth_store::retry_on_conflict(ecs.store(), f).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The request context unit tests act in: the default account, us-east-1.
    pub(crate) fn ctx() -> RequestContext {
        RequestContext {
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            request_id: "r".into(),
            access_key_id: None,
        }
    }

    #[test]
    fn resource_names() {
        let c = ctx();
        assert_eq!(resource_name(&c, "web", "cluster"), Some("web"));
        assert_eq!(
            resource_name(
                &c,
                "arn:aws:ecs:us-east-1:000000000000:cluster/web",
                "cluster"
            ),
            Some("web")
        );
        assert_eq!(
            resource_name(
                &c,
                "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
                "task-definition"
            ),
            Some("web:3")
        );
        assert_eq!(
            resource_name(
                &c,
                "arn:aws:ecs:us-east-1:000000000000:cluster/web",
                "task-definition"
            ),
            None
        );
        assert_eq!(
            resource_name(
                &c,
                "arn:aws:ecs:eu-west-1:000000000000:cluster/web",
                "cluster"
            ),
            None
        );
        assert_eq!(
            resource_name(
                &c,
                "arn:aws:ecs:us-east-1:111111111111:cluster/web",
                "cluster"
            ),
            None
        );
        assert_eq!(
            resource_name(&c, "arn:aws:ecs:us-east-1:000000000000:cluster/", "cluster"),
            None
        );
    }
}
