//! Tags on scalable targets (the only taggable Application Auto Scaling resource), by ARN.

use crate::Autoscaling;
use crate::common::{self, Failure, validation};
use crate::records::{self, TargetRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::autoscaling as wire;
use berth_store::{Expect, Op, retry_on_conflict};
use std::collections::BTreeMap;

const MAX_TAGS: usize = 50;

/// AWS's tag rules: no `aws:` keys, at most 50 tags on a resource once merged.
pub fn check(
    new: &BTreeMap<String, String>,
    existing: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    if new
        .keys()
        .any(|k| k.to_ascii_lowercase().starts_with("aws:"))
    {
        return Err(validation(
            "Tag keys beginning with 'aws:' are reserved for AWS use.",
        ));
    }
    let total = existing
        .keys()
        .chain(new.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if total > MAX_TAGS {
        return Err(AwsError::client(
            "TooManyTagsException",
            format!("A resource can have at most {MAX_TAGS} tags."),
        ));
    }
    Ok(())
}

fn not_found(arn: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("Scalable target with ARN {arn} not found."),
    )
}

/// The target a scalable-target ARN names, in the caller's partition.
async fn by_arn(
    a: &Autoscaling,
    ctx: &RequestContext,
    arn: &str,
) -> Result<(String, u64, TargetRecord), AwsError> {
    common::all::<TargetRecord>(a, records::TARGET, &ctx.partition(), "")
        .await?
        .into_iter()
        .find(|(_, _, t)| t.arn == arn)
        .ok_or_else(|| not_found(arn))
}

async fn update(
    a: &Autoscaling,
    ctx: &RequestContext,
    arn: &str,
    change: impl Fn(&mut TargetRecord) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    let partition = ctx.partition();
    retry_on_conflict(a.store(), || async {
        let (key, version, mut t) = by_arn(a, ctx, arn).await?;
        change(&mut t)?;
        let value = serde_json::to_value(&t).map_err(AwsError::internal)?;
        Ok::<_, Failure>((
            vec![Op::put(
                records::TARGET,
                &partition,
                key,
                value,
                Expect::Version(version),
            )],
            (),
        ))
    })
    .await
    .map_err(|f| f.0)
}

pub async fn tag_resource(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::TagResourceRequest,
) -> Result<wire::TagResourceResponse, AwsError> {
    let arn = req.resource_arn.unwrap_or_default();
    let tags = req.tags.unwrap_or_default();
    update(a, ctx, &arn, |t| {
        check(&tags, &t.tags)?;
        t.tags.extend(tags.clone());
        Ok(())
    })
    .await?;
    Ok(Default::default())
}

pub async fn untag_resource(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::UntagResourceRequest,
) -> Result<wire::UntagResourceResponse, AwsError> {
    let arn = req.resource_arn.unwrap_or_default();
    let keys = req.tag_keys.unwrap_or_default();
    update(a, ctx, &arn, |t| {
        for k in &keys {
            t.tags.remove(k);
        }
        Ok(())
    })
    .await?;
    Ok(Default::default())
}

pub async fn list_tags_for_resource(
    a: &Autoscaling,
    ctx: &RequestContext,
    req: wire::ListTagsForResourceRequest,
) -> Result<wire::ListTagsForResourceResponse, AwsError> {
    let arn = req.resource_arn.unwrap_or_default();
    let (_, _, t) = by_arn(a, ctx, &arn).await?;
    Ok(wire::ListTagsForResourceResponse { tags: Some(t.tags) })
}
