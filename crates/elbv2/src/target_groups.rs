//! Target groups: create, describe, modify, delete, and their attributes.

use crate::Elbv2;
use crate::common::{
    self, Snapshot, Writes, checked_attributes, int_in, invalid_config, mutate, one_of, validation,
};
use crate::load_balancers::DEFAULT_VPC;
use crate::records::{self, HealthCheck, TargetGroupRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::elbv2 as wire;
use std::collections::BTreeMap;

/// Target group names: 1–32 alphanumerics and hyphens, no hyphen at either end.
fn check_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 32 {
        return Err(validation(format!(
            "Target group name '{name}' cannot be longer than '32' characters"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(validation(format!(
            "Target group name '{name}' can only contain characters that are alphanumeric characters or hyphens(-), and cannot begin or end with a hyphen"
        )));
    }
    Ok(())
}

/// Success codes: `200`, `200,202` or `200-299`, each within 200–499 (ELBv2's HTTP range).
fn check_matcher(m: &str) -> Result<(), AwsError> {
    let bad = || {
        validation(format!(
            "Health check matcher HTTP code '{m}' must be a value between 200 and 499, a comma-separated list or a range"
        ))
    };
    let code = |s: &str| -> Result<u16, AwsError> {
        let n: u16 = s.trim().parse().map_err(|_| bad())?;
        if (200..=499).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some((a, b)) = m.split_once('-') {
        if code(a)? > code(b)? {
            return Err(bad());
        }
        return Ok(());
    }
    for part in m.split(',') {
        code(part)?;
    }
    Ok(())
}

fn check_health(h: &HealthCheck) -> Result<(), AwsError> {
    if !h.path.starts_with('/') {
        return Err(validation(
            "Health check path must begin with a '/' character",
        ));
    }
    if h.port != "traffic-port" && !h.port.parse::<u16>().is_ok_and(|p| p >= 1) {
        return Err(validation(format!(
            "Health check port '{}' must be 'traffic-port' or a number between 1 and 65535",
            h.port
        )));
    }
    if !matches!(h.protocol.as_str(), "HTTP" | "HTTPS") {
        return Err(validation(format!(
            "Health check protocol '{}' is not supported for target groups with the HTTP or HTTPS protocol",
            h.protocol
        )));
    }
    if h.timeout_seconds >= h.interval_seconds {
        return Err(validation(format!(
            "Health check timeout '{}' must be smaller than the interval '{}'",
            h.timeout_seconds, h.interval_seconds
        )));
    }
    check_matcher(&h.matcher)
}

/// The attributes of an HTTP target group and their defaults.
pub fn default_attributes() -> BTreeMap<String, String> {
    [
        ("deregistration_delay.timeout_seconds", "300"),
        ("load_balancing.algorithm.type", "round_robin"),
        ("load_balancing.algorithm.anomaly_mitigation", "off"),
        (
            "load_balancing.cross_zone.enabled",
            "use_load_balancer_configuration",
        ),
        ("slow_start.duration_seconds", "0"),
        ("stickiness.enabled", "false"),
        ("stickiness.type", "lb_cookie"),
        ("stickiness.lb_cookie.duration_seconds", "86400"),
        ("stickiness.app_cookie.cookie_name", ""),
        ("stickiness.app_cookie.duration_seconds", "86400"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Checks one attribute as ELBv2 does for an HTTP target group.
fn check_attribute(key: &str, value: &str) -> Result<(), AwsError> {
    match key {
        "deregistration_delay.timeout_seconds" => int_in(key, value, 0, 3600),
        "load_balancing.algorithm.type" => one_of(
            key,
            value,
            &[
                "round_robin",
                "least_outstanding_requests",
                "weighted_random",
            ],
        ),
        "load_balancing.algorithm.anomaly_mitigation" => one_of(key, value, &["on", "off"]),
        "load_balancing.cross_zone.enabled" => one_of(
            key,
            value,
            &["true", "false", "use_load_balancer_configuration"],
        ),
        "slow_start.duration_seconds" => {
            int_in(key, value, 0, 900)?;
            if (1..30).contains(&value.parse::<i64>().unwrap_or(0)) {
                return Err(validation(
                    "The value of 'slow_start.duration_seconds' must be 0 or between 30 and 900",
                ));
            }
            Ok(())
        }
        "stickiness.enabled" => one_of(key, value, &["true", "false"]),
        "stickiness.type" => one_of(key, value, &["lb_cookie", "app_cookie"]),
        "stickiness.lb_cookie.duration_seconds" | "stickiness.app_cookie.duration_seconds" => {
            int_in(key, value, 1, 604_800)
        }
        "stickiness.app_cookie.cookie_name" => {
            if value.len() > 128 || value.starts_with("AWSALB") || value.starts_with("AWSELB") {
                return Err(validation(
                    "The app cookie name must be at most 128 characters and cannot start with AWSALB, AWSALBAPP or AWSALBTG",
                ));
            }
            Ok(())
        }
        _ => Err(validation(format!(
            "Target group attribute key '{key}' is not recognized"
        ))),
    }
}

pub fn to_wire(snap: &Snapshot, r: &TargetGroupRecord) -> wire::TargetGroup {
    let h = &r.health_check;
    wire::TargetGroup {
        target_group_arn: Some(r.arn.clone()),
        target_group_name: Some(r.name.clone()),
        protocol: Some(r.protocol.clone()),
        port: Some(r.port),
        vpc_id: Some(r.vpc_id.clone()),
        health_check_protocol: Some(h.protocol.clone()),
        health_check_port: Some(h.port.clone()),
        health_check_enabled: Some(h.enabled),
        health_check_interval_seconds: Some(h.interval_seconds),
        health_check_timeout_seconds: Some(h.timeout_seconds),
        healthy_threshold_count: Some(h.healthy_threshold),
        unhealthy_threshold_count: Some(h.unhealthy_threshold),
        health_check_path: Some(h.path.clone()),
        matcher: Some(wire::Matcher {
            http_code: Some(h.matcher.clone()),
            grpc_code: None,
        }),
        load_balancer_arns: Some(snap.load_balancers_of(&r.arn)),
        target_type: Some(r.target_type.clone()),
        protocol_version: Some(r.protocol_version.clone()),
        ip_address_type: Some(r.ip_address_type.clone()),
        target_control_port: r.target_control_port,
    }
}

pub async fn create_target_group(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::CreateTargetGroupInput,
) -> Result<wire::CreateTargetGroupOutput, AwsError> {
    let name = req.name.clone().unwrap_or_default();
    check_name(&name)?;
    let target_type = req.target_type.clone().unwrap_or_else(|| "instance".into());
    if !matches!(target_type.as_str(), "instance" | "ip") {
        return Err(invalid_config(format!(
            "berth serves target groups of type instance and ip; '{target_type}' is not supported"
        )));
    }
    let Some(protocol) = req.protocol.clone() else {
        return Err(validation(
            "A protocol must be specified for target groups of type instance or ip",
        ));
    };
    let Some(port) = req.port else {
        return Err(validation(
            "A port must be specified for target groups of type instance or ip",
        ));
    };
    if !matches!(protocol.as_str(), "HTTP" | "HTTPS") {
        return Err(invalid_config(format!(
            "berth serves Application Load Balancer target groups: protocol '{protocol}' is not supported, use HTTP or HTTPS"
        )));
    }
    let protocol_version = req
        .protocol_version
        .clone()
        .unwrap_or_else(|| "HTTP1".into());
    if !matches!(protocol_version.as_str(), "HTTP1" | "HTTP2" | "GRPC") {
        return Err(validation(format!(
            "Protocol version '{protocol_version}' must be one of HTTP1, HTTP2 or GRPC"
        )));
    }
    let health = HealthCheck {
        enabled: req.health_check_enabled.unwrap_or(true),
        protocol: req
            .health_check_protocol
            .clone()
            .unwrap_or_else(|| protocol.clone()),
        port: req
            .health_check_port
            .clone()
            .unwrap_or_else(|| "traffic-port".into()),
        path: req.health_check_path.clone().unwrap_or_else(|| "/".into()),
        interval_seconds: req.health_check_interval_seconds.unwrap_or(30),
        timeout_seconds: req.health_check_timeout_seconds.unwrap_or(5),
        healthy_threshold: req.healthy_threshold_count.unwrap_or(5),
        unhealthy_threshold: req.unhealthy_threshold_count.unwrap_or(2),
        matcher: req
            .matcher
            .as_ref()
            .and_then(|m| m.http_code.clone())
            .unwrap_or_else(|| "200".into()),
    };
    check_health(&health)?;
    let tags = common::tags_from(req.tags.as_ref())?;
    let vpc_id = req.vpc_id.clone().unwrap_or_else(|| DEFAULT_VPC.into());
    let ip_address_type = req.ip_address_type.clone().unwrap_or_else(|| "ipv4".into());
    let out = mutate(elb, ctx, |snap| {
        if let Some(existing) = snap.target_groups.values().find(|t| t.name == name) {
            if existing.protocol == protocol
                && existing.port == port
                && existing.vpc_id == vpc_id
                && existing.health_check == health
                && existing.target_control_port == req.target_control_port
            {
                return Ok((Writes::default(), to_wire(snap, existing)));
            }
            return Err(AwsError::client(
                "DuplicateTargetGroupName",
                format!(
                    "A target group with the same name '{name}' exists, but with different settings"
                ),
            ));
        }
        let id = common::new_id();
        let arn = common::arn(ctx, format!("targetgroup/{name}/{id}"));
        let record = TargetGroupRecord {
            arn: arn.clone(),
            name: name.clone(),
            protocol: protocol.clone(),
            protocol_version: protocol_version.clone(),
            port,
            vpc_id: vpc_id.clone(),
            target_type: target_type.clone(),
            ip_address_type: ip_address_type.clone(),
            target_control_port: req.target_control_port,
            health_check: health.clone(),
            attributes: default_attributes(),
            tags: tags.clone(),
        };
        let mut w = Writes::default();
        w.put(ctx, records::TARGET_GROUP, &arn, &record)?;
        Ok((w, to_wire(snap, &record)))
    })
    .await?;
    Ok(wire::CreateTargetGroupOutput {
        target_groups: Some(vec![out]),
    })
}

pub async fn describe_target_groups(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeTargetGroupsInput,
) -> Result<wire::DescribeTargetGroupsOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let arns = req.target_group_arns.unwrap_or_default();
    let names = req.names.unwrap_or_default();
    let filters = [
        !arns.is_empty(),
        !names.is_empty(),
        req.load_balancer_arn.is_some(),
    ];
    if filters.iter().filter(|f| **f).count() > 1 {
        return Err(validation(
            "Target group names, target group ARNs, and a load balancer ARN cannot be specified at the same time",
        ));
    }
    let mut items: Vec<(String, wire::TargetGroup)> = Vec::new();
    if !arns.is_empty() {
        for arn in &arns {
            let tg = snap.target_group(arn)?;
            items.push((tg.arn.clone(), to_wire(&snap, tg)));
        }
    } else if !names.is_empty() {
        for name in &names {
            let tg = snap
                .target_groups
                .values()
                .find(|t| &t.name == name)
                .ok_or_else(|| {
                    AwsError::client(
                        "TargetGroupNotFound",
                        format!("One or more target groups not found: '{name}'"),
                    )
                })?;
            items.push((tg.arn.clone(), to_wire(&snap, tg)));
        }
    } else if let Some(lb) = &req.load_balancer_arn {
        snap.load_balancer(lb)?;
        for tg in snap.target_groups.values() {
            if snap.load_balancers_of(&tg.arn).contains(lb) {
                items.push((tg.arn.clone(), to_wire(&snap, tg)));
            }
        }
    } else {
        items = snap
            .target_groups
            .values()
            .map(|t| (t.arn.clone(), to_wire(&snap, t)))
            .collect();
    }
    let (page, next) = common::page(
        elb,
        ctx,
        "DescribeTargetGroups",
        items,
        req.marker.as_deref(),
        req.page_size,
    )?;
    Ok(wire::DescribeTargetGroupsOutput {
        target_groups: Some(page),
        next_marker: next,
    })
}

pub async fn modify_target_group(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::ModifyTargetGroupInput,
) -> Result<wire::ModifyTargetGroupOutput, AwsError> {
    let arn = req.target_group_arn.clone().unwrap_or_default();
    let out = mutate(elb, ctx, |snap| {
        let mut tg = snap.target_group(&arn)?.clone();
        let h = &mut tg.health_check;
        if let Some(v) = &req.health_check_protocol {
            h.protocol = v.clone();
        }
        if let Some(v) = &req.health_check_port {
            h.port = v.clone();
        }
        if let Some(v) = &req.health_check_path {
            h.path = v.clone();
        }
        if let Some(v) = req.health_check_enabled {
            h.enabled = v;
        }
        if let Some(v) = req.health_check_interval_seconds {
            h.interval_seconds = v;
        }
        if let Some(v) = req.health_check_timeout_seconds {
            h.timeout_seconds = v;
        }
        if let Some(v) = req.healthy_threshold_count {
            h.healthy_threshold = v;
        }
        if let Some(v) = req.unhealthy_threshold_count {
            h.unhealthy_threshold = v;
        }
        if let Some(v) = req.matcher.as_ref().and_then(|m| m.http_code.clone()) {
            h.matcher = v;
        }
        check_health(h)?;
        let mut w = Writes::default();
        w.put(ctx, records::TARGET_GROUP, &arn, &tg)?;
        Ok((w, to_wire(snap, &tg)))
    })
    .await?;
    Ok(wire::ModifyTargetGroupOutput {
        target_groups: Some(vec![out]),
    })
}

pub async fn delete_target_group(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DeleteTargetGroupInput,
) -> Result<wire::DeleteTargetGroupOutput, AwsError> {
    let arn = req.target_group_arn.unwrap_or_default();
    mutate(elb, ctx, |snap| {
        // Deleting a target group that does not exist (any more) succeeds: the model declares
        // no not-found error for DeleteTargetGroup.
        if !snap.target_groups.contains_key(&arn) {
            return Ok((Writes::default(), ()));
        }
        if !snap.load_balancers_of(&arn).is_empty() {
            return Err(AwsError::client(
                "ResourceInUse",
                format!("Target group '{arn}' is currently in use by a listener or a rule"),
            ));
        }
        let mut w = Writes::default();
        let prefix = records::targets_prefix(&arn);
        for key in snap.targets.keys().filter(|k| k.starts_with(&prefix)) {
            w.delete(ctx, records::TARGET, key);
        }
        for key in snap.health.keys().filter(|k| k.starts_with(&prefix)) {
            w.delete(ctx, records::TARGET_HEALTH, key);
        }
        w.delete(ctx, records::TARGET_GROUP, &arn);
        Ok((w, ()))
    })
    .await?;
    Ok(Default::default())
}

fn attribute_list(attrs: &BTreeMap<String, String>) -> Vec<wire::TargetGroupAttribute> {
    attrs
        .iter()
        .map(|(k, v)| wire::TargetGroupAttribute {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

pub async fn describe_target_group_attributes(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeTargetGroupAttributesInput,
) -> Result<wire::DescribeTargetGroupAttributesOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let tg = snap.target_group(req.target_group_arn.as_deref().unwrap_or_default())?;
    Ok(wire::DescribeTargetGroupAttributesOutput {
        attributes: Some(attribute_list(&tg.attributes)),
    })
}

pub async fn modify_target_group_attributes(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::ModifyTargetGroupAttributesInput,
) -> Result<wire::ModifyTargetGroupAttributesOutput, AwsError> {
    let arn = req.target_group_arn.clone().unwrap_or_default();
    let changes = checked_attributes(
        req.attributes
            .iter()
            .flatten()
            .map(|a| (a.key.as_deref(), a.value.as_deref())),
        check_attribute,
    )?;
    let attrs = mutate(elb, ctx, |snap| {
        let mut tg = snap.target_group(&arn)?.clone();
        tg.attributes.extend(changes.iter().cloned());
        let mut w = Writes::default();
        w.put(ctx, records::TARGET_GROUP, &arn, &tg)?;
        Ok((w, tg.attributes))
    })
    .await?;
    Ok(wire::ModifyTargetGroupAttributesOutput {
        attributes: Some(attribute_list(&attrs)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_and_attributes_follow_elbv2() {
        assert!(check_matcher("200").is_ok());
        assert!(check_matcher("200,202").is_ok());
        assert!(check_matcher("200-299").is_ok());
        assert!(check_matcher("500").is_err());
        assert!(check_matcher("299-200").is_err());
        assert!(
            check_attribute(
                "load_balancing.algorithm.type",
                "least_outstanding_requests"
            )
            .is_ok()
        );
        assert!(check_attribute("load_balancing.algorithm.type", "random").is_err());
        assert!(check_attribute("deregistration_delay.timeout_seconds", "3601").is_err());
        assert!(check_attribute("stickiness.lb_cookie.duration_seconds", "0").is_err());
        assert!(check_attribute("nope", "1").is_err());
    }
}
