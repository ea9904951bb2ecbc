//! What several actions share: Application Auto Scaling's errors and wording, the checks of
//! namespace, dimension and resource id, ARNs, reading records, and the ECS service a target
//! scales.

use crate::Autoscaling;
use crate::records::{self, TargetRecord};
use berth_aws::{AwsError, JsonService, RequestContext};
use berth_store::{Store, StoreError, get_as};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub const NAMESPACE: &str = "ecs";
pub const DIMENSION: &str = "ecs:service:DesiredCount";

pub fn validation(message: impl Into<String>) -> AwsError {
    AwsError::client("ValidationException", message)
}

pub fn limit_exceeded(message: impl Into<String>) -> AwsError {
    AwsError::client("LimitExceededException", message)
}

/// A store conflict that outlived `retry_on_conflict`'s attempts is AWS's
/// `ConcurrentUpdateException`; any other store failure is a server fault.
pub fn store_error(e: StoreError) -> AwsError {
    if e.is_conflict() {
        AwsError::client(
            "ConcurrentUpdateException",
            "Concurrent update to the resource, please retry.",
        )
    } else {
        AwsError::internal(e)
    }
}

/// `AwsError` for `retry_on_conflict`, whose error type must come from `StoreError`.
#[derive(Debug)]
pub struct Failure(pub AwsError);

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(store_error(e))
    }
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        Failure(e)
    }
}

pub fn target_not_found(resource_id: &str) -> AwsError {
    AwsError::client(
        "ObjectNotFoundException",
        format!(
            "No scalable target registered for service namespace: {NAMESPACE}, resource ID: {resource_id}, scalable dimension: {DIMENSION}"
        ),
    )
}

/// berth scales ECS services only: other namespaces are refused by name.
pub fn check_namespace(namespace: Option<&str>) -> Result<(), AwsError> {
    match namespace {
        Some(NAMESPACE) => Ok(()),
        Some(other) => Err(validation(format!(
            "berth supports only the ecs service namespace; {other} is not supported."
        ))),
        None => Err(validation("ServiceNamespace is required.")),
    }
}

/// For the Describe actions: whether the namespace is ecs (others have nothing in berth).
pub fn is_ecs(namespace: Option<&str>) -> Result<bool, AwsError> {
    match namespace {
        Some(n) => Ok(n == NAMESPACE),
        None => Err(validation("ServiceNamespace is required.")),
    }
}

pub fn check_dimension(dimension: Option<&str>) -> Result<(), AwsError> {
    match dimension {
        Some(DIMENSION) => Ok(()),
        Some(_) => Err(validation(
            "Unsupported service namespace, resource type or scalable dimension",
        )),
        None => Err(validation("ScalableDimension is required.")),
    }
}

/// `service/<cluster>/<service>`: returns the cluster and service names.
pub fn parse_resource_id(resource_id: &str) -> Result<(String, String), AwsError> {
    let bad = || {
        validation(format!(
            "Unsupported resource ID {resource_id}: an ECS service's resource ID is service/<cluster-name>/<service-name>."
        ))
    };
    let rest = resource_id.strip_prefix("service/").ok_or_else(bad)?;
    let (cluster, service) = rest.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !ok(cluster) || !ok(service) {
        return Err(bad());
    }
    Ok((cluster.to_owned(), service.to_owned()))
}

/// The namespace, resource id and dimension every target-scoped request carries, checked.
pub fn target_ids(
    namespace: Option<&str>,
    resource_id: Option<&str>,
    dimension: Option<&str>,
) -> Result<String, AwsError> {
    check_namespace(namespace)?;
    let resource_id = resource_id.ok_or_else(|| validation("ResourceId is required."))?;
    parse_resource_id(resource_id)?;
    check_dimension(dimension)?;
    Ok(resource_id.to_owned())
}

/// The service-linked role AWS fills in when RegisterScalableTarget names none.
pub fn default_role_arn(ctx: &RequestContext) -> String {
    format!(
        "arn:aws:iam::{}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
        ctx.account_id
    )
}

/// 36 hex digits, as AWS's scalable-target ids.
pub fn scalable_target_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{}", &b[..4])
}

pub fn scalable_target_arn(ctx: &RequestContext, id: &str) -> String {
    format!(
        "arn:aws:application-autoscaling:{}:{}:scalable-target/{id}",
        ctx.region, ctx.account_id
    )
}

pub fn policy_arn(ctx: &RequestContext, id: &str, resource_id: &str, name: &str) -> String {
    format!(
        "arn:aws:autoscaling:{}:{}:scalingPolicy:{id}:resource/{NAMESPACE}/{resource_id}:policyName/{name}",
        ctx.region, ctx.account_id
    )
}

pub fn scheduled_action_arn(
    ctx: &RequestContext,
    id: &str,
    resource_id: &str,
    name: &str,
) -> String {
    format!(
        "arn:aws:autoscaling:{}:{}:scheduledAction:{id}:resource/{NAMESPACE}/{resource_id}:scheduledActionName/{name}",
        ctx.region, ctx.account_id
    )
}

/// `(partition, policy id, resource id, policy name)` of a policy ARN berth issued.
pub fn parse_policy_arn(arn: &str) -> Option<(String, String, String, String)> {
    let rest = arn.strip_prefix("arn:aws:autoscaling:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("scalingPolicy:")?;
    let (id, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix(&format!("resource/{NAMESPACE}/"))?;
    let (resource_id, name) = rest.split_once(":policyName/")?;
    Some((
        format!("{account}/{region}"),
        id.to_owned(),
        resource_id.to_owned(),
        name.to_owned(),
    ))
}

pub async fn target(
    a: &Autoscaling,
    partition: &str,
    resource_id: &str,
) -> Result<Option<(TargetRecord, u64)>, AwsError> {
    get_as::<TargetRecord, _>(a.store(), records::TARGET, partition, resource_id)
        .await
        .map_err(store_error)
}

/// Every record of `kind` under `prefix`, decoded, in key order.
pub async fn all<T: DeserializeOwned + Send>(
    a: &Autoscaling,
    kind: &str,
    partition: &str,
    prefix: &str,
) -> Result<Vec<(String, u64, T)>, AwsError> {
    const PAGE: usize = 500;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = a
            .store()
            .list_as::<T>(kind, partition, prefix, after.as_deref(), PAGE)
            .await
            .map_err(store_error)?;
        let full = page.len() == PAGE;
        for r in page {
            after = Some(r.key.clone());
            out.push((r.key, r.version, r.value));
        }
        if !full {
            return Ok(out);
        }
    }
}

/// The binding that ties a pagination token to one list in one account and region.
pub fn binding(ctx: &RequestContext, list: &str) -> String {
    format!("autoscaling.{list}/{}", ctx.partition())
}

/// One page of `items` (already in order, each with its key) after the token's key.
pub fn page<T>(
    a: &Autoscaling,
    ctx: &RequestContext,
    list: &str,
    items: Vec<(String, T)>,
    max_results: Option<i32>,
    next_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let binding = binding(ctx, list);
    let after = match next_token {
        Some(t) => Some(
            a.tokens()
                .decode(&binding, t)
                .ok_or_else(|| AwsError::client("InvalidNextTokenException", "Invalid token."))?,
        ),
        None => None,
    };
    let limit = max_results.map_or(50, |n| n.clamp(1, 50) as usize);
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    let mut started = after.is_none();
    for (key, item) in items {
        if !started {
            started = Some(&key) == after.as_ref();
            continue;
        }
        if out.len() == limit {
            more = true;
            break;
        }
        last = Some(key);
        out.push(item);
    }
    let token = match (more, last) {
        (true, Some(k)) => Some(a.tokens().encode(&binding, &k)),
        _ => None,
    };
    Ok((out, token))
}

/// The ECS service a scalable target scales, as DescribeServices shows it.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub status: String,
    pub desired_count: i32,
    pub deployment_in_progress: bool,
}

pub fn ctx_for(partition: &str) -> RequestContext {
    let (account, region) = partition.split_once('/').unwrap_or((partition, ""));
    RequestContext {
        account_id: account.to_owned(),
        region: region.to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        access_key_id: None,
    }
}

/// Reads the service through the ECS API; `None` when ECS does not know it.
pub async fn service(
    a: &Autoscaling,
    partition: &str,
    resource_id: &str,
) -> Result<Option<ServiceView>, AwsError> {
    let (cluster, name) = parse_resource_id(resource_id)?;
    let bytes = match a
        .ecs()
        .call(
            ctx_for(partition),
            "DescribeServices",
            json!({"cluster": cluster, "services": [name]}),
        )
        .await
    {
        Ok(b) => b,
        Err(e) if e.code == "ClusterNotFoundException" => return Ok(None),
        Err(e) => return Err(e),
    };
    let answer: Value = serde_json::from_slice(&bytes).map_err(AwsError::internal)?;
    let Some(s) = answer["services"].as_array().and_then(|s| s.first()) else {
        return Ok(None);
    };
    let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
    let live = deployments
        .iter()
        .filter(|d| d["status"] == "PRIMARY" || d["status"] == "ACTIVE")
        .count();
    let deployment_in_progress = live > 1
        || deployments
            .iter()
            .any(|d| d["rolloutState"] == "IN_PROGRESS");
    Ok(Some(ServiceView {
        status: s["status"].as_str().unwrap_or_default().to_owned(),
        desired_count: s["desiredCount"].as_i64().unwrap_or(0) as i32,
        deployment_in_progress,
    }))
}

/// Sets the service's desiredCount through the ECS API.
pub async fn set_desired_count(
    a: &Autoscaling,
    partition: &str,
    resource_id: &str,
    count: i32,
) -> Result<(), AwsError> {
    let (cluster, name) = parse_resource_id(resource_id)?;
    a.ecs()
        .call(
            ctx_for(partition),
            "UpdateService",
            json!({"cluster": cluster, "service": name, "desiredCount": count}),
        )
        .await
        .map(drop)
}

/// The record key prefix a Describe call's filters select: `None` when the namespace is not
/// `ecs` (nothing of it exists), the resource's children when a resource id is given, else all.
pub fn describe_prefix(
    namespace: Option<&str>,
    dimension: Option<&str>,
    resource_id: Option<&str>,
) -> Result<Option<String>, AwsError> {
    if !is_ecs(namespace)? {
        return Ok(None);
    }
    if let Some(d) = dimension {
        check_dimension(Some(d))?;
    }
    Ok(Some(match resource_id {
        Some(r) => {
            parse_resource_id(r)?;
            records::children_prefix(r)
        }
        None => String::new(),
    }))
}
