//! AddTags, RemoveTags, DescribeTags on load balancers, target groups, listeners and rules.

use crate::Elbv2;
use crate::common::{self, MAX_TAGS, Snapshot, Writes, mutate, validation};
use crate::records::{self, Tags};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::elbv2 as wire;

/// The tags of the resource `arn` names, or that resource kind's not-found error.
fn tags_of<'a>(snap: &'a Snapshot, arn: &str) -> Result<&'a Tags, AwsError> {
    if arn.contains(":loadbalancer/") {
        return Ok(&snap.load_balancer(arn)?.tags);
    }
    if arn.contains(":targetgroup/") {
        return Ok(&snap.target_group(arn)?.tags);
    }
    if arn.contains(":listener/") {
        return Ok(&snap.listener(arn)?.tags);
    }
    if arn.contains(":listener-rule/") {
        if let Some(r) = snap.rules.get(arn) {
            return Ok(&r.tags);
        }
        if let Some(l) = snap.listeners.values().find(|l| l.default_rule_arn == arn) {
            return Ok(&l.default_rule_tags);
        }
        return Err(common::rule_not_found());
    }
    Err(validation(format!("'{arn}' is not a valid resource ARN")))
}

/// Writes `tags` as the tags of the resource `arn` names (which exists: `tags_of` said so).
fn put_tags(
    snap: &Snapshot,
    ctx: &RequestContext,
    w: &mut Writes,
    arn: &str,
    tags: Tags,
) -> Result<(), AwsError> {
    if let Some(r) = snap.load_balancers.get(arn) {
        let mut r = r.clone();
        r.tags = tags;
        return w.put(ctx, records::LOAD_BALANCER, arn, &r);
    }
    if let Some(r) = snap.target_groups.get(arn) {
        let mut r = r.clone();
        r.tags = tags;
        return w.put(ctx, records::TARGET_GROUP, arn, &r);
    }
    if let Some(r) = snap.listeners.get(arn) {
        let mut r = r.clone();
        r.tags = tags;
        return w.put(ctx, records::LISTENER, arn, &r);
    }
    if let Some(r) = snap.rules.get(arn) {
        let mut r = r.clone();
        r.tags = tags;
        return w.put(ctx, records::RULE, arn, &r);
    }
    if let Some(l) = snap.listeners.values().find(|l| l.default_rule_arn == arn) {
        let mut l = l.clone();
        l.default_rule_tags = tags;
        return w.put(ctx, records::LISTENER, &l.arn.clone(), &l);
    }
    Err(common::rule_not_found())
}

pub async fn add_tags(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::AddTagsInput,
) -> Result<wire::AddTagsOutput, AwsError> {
    let arns = req.resource_arns.clone().unwrap_or_default();
    let new = common::tags_from(req.tags.as_ref())?;
    mutate(elb, ctx, |snap| {
        let mut w = Writes::default();
        for arn in &arns {
            let mut tags = tags_of(snap, arn)?.clone();
            tags.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            if tags.len() > MAX_TAGS {
                return Err(common::too_many_tags());
            }
            put_tags(snap, ctx, &mut w, arn, tags)?;
        }
        Ok((w, ()))
    })
    .await?;
    Ok(Default::default())
}

pub async fn remove_tags(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::RemoveTagsInput,
) -> Result<wire::RemoveTagsOutput, AwsError> {
    let arns = req.resource_arns.clone().unwrap_or_default();
    let keys = req.tag_keys.clone().unwrap_or_default();
    mutate(elb, ctx, |snap| {
        let mut w = Writes::default();
        for arn in &arns {
            let mut tags = tags_of(snap, arn)?.clone();
            for k in &keys {
                tags.remove(k);
            }
            put_tags(snap, ctx, &mut w, arn, tags)?;
        }
        Ok((w, ()))
    })
    .await?;
    Ok(Default::default())
}

pub async fn describe_tags(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeTagsInput,
) -> Result<wire::DescribeTagsOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let mut out = Vec::new();
    for arn in req.resource_arns.unwrap_or_default() {
        let tags = tags_of(&snap, &arn)?;
        out.push(wire::TagDescription {
            tags: Some(common::tag_list(tags)),
            resource_arn: Some(arn),
        });
    }
    Ok(wire::DescribeTagsOutput {
        tag_descriptions: Some(out),
    })
}
