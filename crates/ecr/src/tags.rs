//! TagResource, UntagResource and ListTagsForResource. Repositories are ECR's only taggable
//! resource here; their tags live in the settings ECR keeps with the repository.

use crate::Ecr;
use crate::common::{self, Settings, invalid, registry_error, repository_not_found};
use berth_aws::{AwsError, RequestContext};
use berth_model::Arn;
use berth_shapes::ecr as wire;

/// The repository name a resource ARN names in this registry.
fn repository_of(ecr: &Ecr, resource_arn: &str) -> Result<String, AwsError> {
    let bad = || {
        invalid(format!(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN {resource_arn}'"
        ))
    };
    let arn = Arn::parse(resource_arn).map_err(|_| bad())?;
    let (kind, name) = arn.resource_parts();
    if arn.service != "ecr" || kind != "repository" || name.is_empty() {
        return Err(bad());
    }
    let place = ecr.place();
    if arn.account != place.account_id || arn.region != place.region {
        return Err(repository_not_found(ecr, name));
    }
    Ok(name.to_owned())
}

/// Rewrites a repository's tags with `f`, in one commit retried on conflicting writes.
async fn modify(
    ecr: &Ecr,
    resource_arn: &str,
    f: impl Fn(&mut Vec<wire::Tag>) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    let name = repository_of(ecr, resource_arn)?;
    common::update_settings(ecr, &name, |s| f(&mut s.tags)).await?;
    Ok(())
}

pub async fn tag_resource(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::TagResourceRequest,
) -> Result<wire::TagResourceResponse, AwsError> {
    let new = req.tags.unwrap_or_default();
    common::check_tags(&new)?;
    modify(
        ecr,
        req.resource_arn.as_deref().unwrap_or_default(),
        |tags| {
            common::merge_tags(tags, new.clone());
            common::check_tags(tags)
        },
    )
    .await?;
    Ok(wire::TagResourceResponse {})
}

pub async fn untag_resource(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::UntagResourceRequest,
) -> Result<wire::UntagResourceResponse, AwsError> {
    let keys = req.tag_keys.unwrap_or_default();
    modify(
        ecr,
        req.resource_arn.as_deref().unwrap_or_default(),
        |tags| {
            tags.retain(|t| !keys.iter().any(|k| Some(k) == t.key.as_ref()));
            Ok(())
        },
    )
    .await?;
    Ok(wire::UntagResourceResponse {})
}

pub async fn list_tags_for_resource(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::ListTagsForResourceRequest,
) -> Result<wire::ListTagsForResourceResponse, AwsError> {
    let name = repository_of(ecr, req.resource_arn.as_deref().unwrap_or_default())?;
    let info = ecr
        .registry()
        .repository(&name)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| repository_not_found(ecr, &name))?;
    Ok(wire::ListTagsForResourceResponse {
        tags: Some(Settings::of(&info).tags),
    })
}
