//! TagResource, UntagResource and ListTagsForResource for every ECS resource kind. Each kind
//! keeps its tags inside its own record; the table below says where.

use crate::Ecs;
use crate::common::{self, cluster_not_found, invalid};
use crate::records::{kinds, task_definition_key};
use berth_aws::{AwsError, RequestContext};
use berth_model::Arn;
use berth_shapes::ecs as wire;
use berth_store::{Expect, Op, Store};
use serde_json::Value;

/// Where a resource ARN's record lives and where its tags sit inside it (a JSON pointer).
struct Located {
    kind: &'static str,
    key: String,
    tags_at: &'static str,
    not_found: fn() -> AwsError,
}

fn not_found() -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        "The specified resource could not be found.",
    )
}

fn locate(ctx: &RequestContext, resource_arn: &str) -> Result<Located, AwsError> {
    let arn = Arn::parse(resource_arn)
        .map_err(|_| invalid(format!("Invalid resource ARN: {resource_arn}")))?;
    if arn.service != "ecs" {
        return Err(invalid(format!(
            "The ARN {resource_arn} is not an Amazon ECS resource ARN."
        )));
    }
    let (kind, rest) = arn.resource_parts();
    let located = match kind {
        "cluster" => Ok(Located {
            kind: kinds::CLUSTER,
            key: rest.to_string(),
            tags_at: "/tags",
            not_found: cluster_not_found,
        }),
        "task-definition" => {
            let (family, rev) = rest
                .split_once(':')
                .ok_or_else(|| invalid("The task definition ARN must include a revision."))?;
            let rev: i32 = rev
                .parse()
                .map_err(|_| invalid("The task definition ARN has an invalid revision."))?;
            Ok(Located {
                kind: kinds::TASK_DEFINITION,
                key: task_definition_key(family, rev),
                tags_at: "/tags",
                not_found,
            })
        }
        "capacity-provider" => Ok(Located {
            kind: kinds::CAPACITY_PROVIDER,
            key: rest.to_string(),
            tags_at: "/provider/tags",
            not_found,
        }),
        // Long-format ARNs carry the cluster: `<kind>/<cluster>/<id>`.
        "container-instance" | "task" => {
            let (cluster, id) = rest
                .split_once('/')
                .filter(|(c, id)| !c.is_empty() && !id.is_empty() && !id.contains('/'))
                .ok_or_else(not_found)?;
            Ok(Located {
                kind: if kind == "task" {
                    kinds::TASK
                } else {
                    kinds::CONTAINER_INSTANCE
                },
                key: crate::records::pair_key(cluster, id),
                tags_at: "/tags",
                not_found,
            })
        }
        _ => Err(invalid(format!(
            "Resources of type '{kind}' cannot be tagged in berth yet."
        ))),
    }?;
    // A resource of another region or account is not found here, with the same error as a
    // missing one of this partition (ClusterNotFoundException for a cluster).
    if arn.region != ctx.region || arn.account != ctx.account_id {
        return Err((located.not_found)());
    }
    Ok(located)
}

fn tags_of(value: &Value, at: &str) -> Result<Vec<wire::Tag>, AwsError> {
    match value.pointer(at) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(v) => serde_json::from_value(v.clone()).map_err(AwsError::internal),
    }
}

/// Rewrites the tags of the resource at `resource_arn`, retried on conflicting writes.
async fn modify(
    ecs: &Ecs,
    ctx: &RequestContext,
    resource_arn: &str,
    f: impl Fn(&mut Vec<wire::Tag>) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    let loc = locate(ctx, resource_arn)?;
    let partition = ctx.partition();
    common::transact(ecs, || async {
        let record = ecs
            .store()
            .get(loc.kind, &partition, &loc.key)
            .await
            .map_err(common::store_error)?;
        let Some(record) = record else {
            return Err((loc.not_found)());
        };
        let mut value = record.value;
        if loc.kind == kinds::CLUSTER
            && value.pointer("/status").and_then(Value::as_str) != Some("ACTIVE")
        {
            return Err(cluster_not_found());
        }
        let mut tags = tags_of(&value, loc.tags_at)?;
        f(&mut tags)?;
        let encoded = serde_json::to_value(&tags).map_err(AwsError::internal)?;
        match value.pointer_mut(loc.tags_at) {
            Some(slot) => *slot = encoded,
            None => {
                // The tags slot is a direct member of the record or of one nested object.
                let (parent, leaf) = loc.tags_at.rsplit_once('/').unwrap_or(("", "tags"));
                let target = if parent.is_empty() {
                    Some(&mut value)
                } else {
                    value.pointer_mut(parent)
                };
                if let Some(Value::Object(o)) = target {
                    o.insert(leaf.to_string(), encoded);
                }
            }
        }
        Ok((
            vec![Op::put(
                loc.kind,
                partition.clone(),
                loc.key.clone(),
                value,
                Expect::Version(record.version),
            )],
            (),
        ))
    })
    .await
}

pub async fn tag_resource(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::TagResourceRequest,
) -> Result<wire::TagResourceResponse, AwsError> {
    let new = req.tags.unwrap_or_default();
    common::check_tags(&new)?;
    modify(ecs, ctx, &req.resource_arn.unwrap_or_default(), |tags| {
        common::merge_tags(tags, new.clone());
        if tags.len() > berth_model::ecs::MAX_TAGS {
            return Err(AwsError::client(
                "LimitExceededException",
                "The resource can have at most 50 tags.",
            ));
        }
        Ok(())
    })
    .await?;
    Ok(wire::TagResourceResponse {})
}

pub async fn untag_resource(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::UntagResourceRequest,
) -> Result<wire::UntagResourceResponse, AwsError> {
    let keys = req.tag_keys.unwrap_or_default();
    modify(ecs, ctx, &req.resource_arn.unwrap_or_default(), |tags| {
        tags.retain(|t| !keys.iter().any(|k| Some(k) == t.key.as_ref()));
        Ok(())
    })
    .await?;
    Ok(wire::UntagResourceResponse {})
}

pub async fn list_tags_for_resource(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListTagsForResourceRequest,
) -> Result<wire::ListTagsForResourceResponse, AwsError> {
    // ListTagsForResource, unlike TagResource and UntagResource, declares no
    // ResourceNotFoundException: a missing resource other than a cluster is a ClientException.
    let loc = locate(ctx, req.resource_arn.as_deref().unwrap_or_default()).map_err(list_error)?;
    let record = ecs
        .store()
        .get(loc.kind, &ctx.partition(), &loc.key)
        .await
        .map_err(common::store_error)?;
    let record = record.ok_or_else(|| list_error((loc.not_found)()))?;
    Ok(wire::ListTagsForResourceResponse {
        tags: Some(tags_of(&record.value, loc.tags_at)?),
    })
}

/// ListTagsForResource's codes: its model has no ResourceNotFoundException.
fn list_error(e: AwsError) -> AwsError {
    if e.code == "ResourceNotFoundException" {
        AwsError::client("ClientException", e.message)
    } else {
        e
    }
}
