//! Custom attributes on container instances: PutAttributes, DeleteAttributes, ListAttributes.
//! Placement constraints (`attribute:` expressions) read them once the scheduler lands.

use crate::Ecs;
use crate::common::{self, active_cluster, invalid, resource_name};
use crate::records::{AttributeRecord, kinds};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::ecs as wire;
use berth_store::{Expect, Op, Store};

const MAX_PER_CALL: usize = 10;
const TARGET_TYPE: &str = "container-instance";

fn valid_attr_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/.".contains(&b))
}

fn valid_attr_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./@\\: ".contains(&b))
}

/// The container instance id an attribute targets (an id or a container-instance ARN).
fn target_id(ctx: &RequestContext, cluster: &str, a: &wire::Attribute) -> Result<String, AwsError> {
    if a.target_type.as_deref().is_some_and(|t| t != TARGET_TYPE) {
        return Err(invalid(format!("targetType must be '{TARGET_TYPE}'.")));
    }
    let ident = a
        .target_id
        .as_deref()
        .ok_or_else(|| invalid("Attribute targetId is required."))?;
    let rest =
        resource_name(ctx, ident, "container-instance").ok_or_else(|| target_not_found(ident))?;
    // Container instance ARNs carry the cluster: container-instance/<cluster>/<id>.
    match rest.split_once('/') {
        Some((c, id)) if c == cluster => Ok(id.to_string()),
        Some(_) => Err(target_not_found(ident)),
        None => Ok(rest.to_string()),
    }
}

fn target_not_found(ident: &str) -> AwsError {
    AwsError::client(
        "TargetNotFoundException",
        format!("Could not find the target {ident}."),
    )
}

fn checked(
    ctx: &RequestContext,
    cluster: &str,
    attributes: &[wire::Attribute],
    values: bool,
) -> Result<Vec<(String, wire::Attribute)>, AwsError> {
    if attributes.is_empty() || attributes.len() > MAX_PER_CALL {
        return Err(invalid(format!(
            "attributes must contain between 1 and {MAX_PER_CALL} attributes."
        )));
    }
    let mut out = Vec::new();
    for a in attributes {
        let name = a.name.as_deref().unwrap_or_default();
        if !valid_attr_name(name) {
            return Err(invalid(format!(
                "Attribute name '{name}' is not valid: up to 128 letters, numbers, hyphens, underscores, forward slashes and periods."
            )));
        }
        if values && let Some(v) = a.value.as_deref().filter(|v| !valid_attr_value(v)) {
            return Err(invalid(format!(
                "Attribute value '{v}' for '{name}' is not valid."
            )));
        }
        let id = target_id(ctx, cluster, a)?;
        out.push((id, a.clone()));
    }
    Ok(out)
}

fn key(cluster: &str, target: &str, name: &str) -> String {
    format!("{cluster}|{target}|{name}")
}

fn to_wire(
    ctx: &RequestContext,
    cluster: &str,
    target: &str,
    a: &wire::Attribute,
) -> wire::Attribute {
    wire::Attribute {
        name: a.name.clone(),
        value: a.value.clone(),
        target_type: Some(TARGET_TYPE.into()),
        target_id: Some(common::arn(
            ctx,
            format!("container-instance/{cluster}/{target}"),
        )),
    }
}

pub async fn put_attributes(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::PutAttributesRequest,
) -> Result<wire::PutAttributesResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let attrs = checked(
        ctx,
        &cluster.name,
        req.attributes.as_deref().unwrap_or_default(),
        true,
    )?;
    let partition = ctx.partition();
    for (target, _) in &attrs {
        let instance = ecs
            .store()
            .get(
                kinds::CONTAINER_INSTANCE,
                &partition,
                &format!("{}|{target}", cluster.name),
            )
            .await
            .map_err(common::store_error)?;
        if instance.is_none() {
            return Err(target_not_found(target));
        }
    }
    let mut ops = Vec::new();
    for (target, a) in &attrs {
        let record = AttributeRecord {
            cluster: cluster.name.clone(),
            attribute: to_wire(ctx, &cluster.name, target, a),
        };
        let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
        let k = key(&cluster.name, target, a.name.as_deref().unwrap_or_default());
        ops.push(Op::put(
            kinds::ATTRIBUTE,
            partition.clone(),
            k,
            value,
            Expect::Any,
        ));
    }
    common::transact(ecs, || async { Ok((ops.clone(), ())) }).await?;
    let out = attrs
        .iter()
        .map(|(t, a)| to_wire(ctx, &cluster.name, t, a))
        .collect();
    Ok(wire::PutAttributesResponse {
        attributes: Some(out),
    })
}

pub async fn delete_attributes(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeleteAttributesRequest,
) -> Result<wire::DeleteAttributesResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let attrs = checked(
        ctx,
        &cluster.name,
        req.attributes.as_deref().unwrap_or_default(),
        false,
    )?;
    let partition = ctx.partition();
    let mut ops = Vec::new();
    for (target, a) in &attrs {
        let k = key(&cluster.name, target, a.name.as_deref().unwrap_or_default());
        if ecs
            .store()
            .get(kinds::ATTRIBUTE, &partition, &k)
            .await
            .map_err(common::store_error)?
            .is_none()
        {
            return Err(target_not_found(target));
        }
        ops.push(Op::delete(
            kinds::ATTRIBUTE,
            partition.clone(),
            k,
            Expect::Any,
        ));
    }
    common::transact(ecs, || async { Ok((ops.clone(), ())) }).await?;
    let out = attrs
        .iter()
        .map(|(t, a)| to_wire(ctx, &cluster.name, t, a))
        .collect();
    Ok(wire::DeleteAttributesResponse {
        attributes: Some(out),
    })
}

pub async fn list_attributes(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListAttributesRequest,
) -> Result<wire::ListAttributesResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(invalid("attributeValue requires attributeName."));
    }
    let items: Vec<(String, wire::Attribute)> =
        common::all::<AttributeRecord>(ecs, ctx, kinds::ATTRIBUTE, &format!("{}|", cluster.name))
            .await?
            .into_iter()
            .filter(|(_, r)| req.attribute_name.is_none() || r.attribute.name == req.attribute_name)
            .filter(|(_, r)| {
                req.attribute_value.is_none() || r.attribute.value == req.attribute_value
            })
            .map(|(k, r)| (k, r.attribute))
            .collect();
    let binding = common::binding(ctx, &format!("ListAttributes.{}", cluster.name));
    let (attributes, next) = common::page(
        ecs,
        &binding,
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListAttributesResponse {
        attributes: Some(attributes),
        next_token: next,
    })
}
