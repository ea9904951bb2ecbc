//! Tags on secrets, by `SecretId`.

use crate::SecretsManager;
use crate::common::{self};
use crate::records;
use berth_aws::{AwsError, RequestContext};
use berth_shapes::secretsmanager as wire;
use berth_store::{Expect, Op, retry_on_conflict};

type Empty = serde_json::Map<String, serde_json::Value>;

pub async fn tag_resource(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::TagResourceRequest,
) -> Result<Empty, AwsError> {
    let id = req.secret_id.unwrap_or_default();
    let tags = common::tags_of(req.tags)?;
    change(sm, ctx, &id, |existing| {
        common::merge_tags(existing, tags.clone())
    })
    .await
}

pub async fn untag_resource(
    sm: &SecretsManager,
    ctx: &RequestContext,
    req: wire::UntagResourceRequest,
) -> Result<Empty, AwsError> {
    let id = req.secret_id.unwrap_or_default();
    let keys = req.tag_keys.unwrap_or_default();
    change(sm, ctx, &id, |existing| {
        existing.retain(|(k, _)| !keys.contains(k));
        Ok(())
    })
    .await
}

async fn change(
    sm: &SecretsManager,
    ctx: &RequestContext,
    id: &str,
    edit: impl Fn(&mut Vec<(String, String)>) -> Result<(), AwsError>,
) -> Result<Empty, AwsError> {
    retry_on_conflict(sm.store(), || async {
        let (mut s, version) = common::find_live(sm, ctx, id).await?;
        edit(&mut s.tags)?;
        let value = serde_json::to_value(&s).map_err(AwsError::internal)?;
        let op = Op::put(
            records::SECRET,
            ctx.partition(),
            &s.name,
            value,
            Expect::Version(version),
        );
        Ok((vec![op], Empty::new()))
    })
    .await
}
