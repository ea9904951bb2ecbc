//! Load balancers: create, describe, delete, their attributes and IPAM pools; and the account's
//! limits.

use crate::Elbv2;
use crate::common::{
    self, Snapshot, Writes, checked_attributes, int_in, invalid_config, mutate, not_permitted,
    one_of, validation,
};
use crate::records::{self, LoadBalancerRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::elbv2 as wire;
use std::collections::BTreeMap;

/// berth's stand-in for the hosted zone of a load balancer's DNS name.
pub const HOSTED_ZONE_ID: &str = "ZBERTHELB00001";
/// The VPC every berth load balancer and target group is in, unless the request names one.
pub const DEFAULT_VPC: &str = "vpc-berth";

/// Load balancer names: 1–32 alphanumerics and hyphens, no hyphen at either end, not starting
/// with `internal-`.
fn check_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 32 {
        return Err(validation(format!(
            "The load balancer name '{name}' must be between 1 and 32 characters long"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(validation(format!(
            "The load balancer name '{name}' can contain only alphanumeric characters and hyphens"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(validation(format!(
            "The load balancer name '{name}' cannot begin or end with a hyphen"
        )));
    }
    if name.starts_with("internal-") {
        return Err(validation(
            "Load balancer names cannot start with 'internal-'",
        ));
    }
    Ok(())
}

pub fn to_wire(r: &LoadBalancerRecord) -> wire::LoadBalancer {
    let zones = if r.subnets.is_empty() {
        vec![
            ("a", "subnet-berth-a".to_string()),
            ("b", "subnet-berth-b".to_string()),
        ]
    } else {
        const LETTERS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
        r.subnets
            .iter()
            .enumerate()
            .map(|(i, s)| (LETTERS[i % LETTERS.len()], s.clone()))
            .collect()
    };
    let region = r.arn.split(':').nth(3).unwrap_or_default();
    wire::LoadBalancer {
        load_balancer_arn: Some(r.arn.clone()),
        dns_name: Some(r.dns_name.clone()),
        canonical_hosted_zone_id: Some(HOSTED_ZONE_ID.into()),
        created_time: Some(Timestamp::from_millis(r.created_ms)),
        load_balancer_name: Some(r.name.clone()),
        scheme: Some(r.scheme.clone()),
        vpc_id: Some(r.vpc_id.clone()),
        state: Some(wire::LoadBalancerState {
            code: Some(r.state.clone()),
            reason: None,
        }),
        r#type: Some("application".into()),
        availability_zones: Some(
            zones
                .into_iter()
                .map(|(letter, subnet)| wire::AvailabilityZone {
                    zone_name: Some(format!("{region}{letter}")),
                    subnet_id: Some(subnet),
                    ..Default::default()
                })
                .collect(),
        ),
        security_groups: Some(r.security_groups.clone()),
        ip_address_type: Some(r.ip_address_type.clone()),
        customer_owned_ipv4_pool: r.customer_owned_ipv4_pool.clone(),
        ipam_pools: ipam_pools(r.ipv4_ipam_pool_id.as_deref()),
        enable_prefix_for_ipv6_source_nat: r.enable_prefix_for_ipv6_source_nat.clone(),
        ..Default::default()
    }
}

fn ipam_pools(ipv4: Option<&str>) -> Option<wire::IpamPools> {
    ipv4.map(|id| wire::IpamPools {
        ipv4_ipam_pool_id: Some(id.into()),
    })
}

pub async fn create_load_balancer(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::CreateLoadBalancerInput,
) -> Result<wire::CreateLoadBalancerOutput, AwsError> {
    let name = req.name.clone().unwrap_or_default();
    check_name(&name)?;
    let kind = req.r#type.clone().unwrap_or_else(|| "application".into());
    if kind != "application" {
        return Err(not_permitted(format!(
            "berth serves Application Load Balancers only; load balancer type '{kind}' is not supported"
        )));
    }
    let scheme = req
        .scheme
        .clone()
        .unwrap_or_else(|| "internet-facing".into());
    let ip_type = req.ip_address_type.clone().unwrap_or_else(|| "ipv4".into());
    let mut subnets = req.subnets.clone().unwrap_or_default();
    subnets.extend(
        req.subnet_mappings
            .iter()
            .flatten()
            .filter_map(|m| m.subnet_id.clone()),
    );
    let tags = common::tags_from(req.tags.as_ref())?;
    let security_groups = req.security_groups.clone().unwrap_or_default();
    let source_nat_prefix = req.enable_prefix_for_ipv6_source_nat.clone();
    if source_nat_prefix.as_deref() == Some("on") {
        // Source NAT prefixes serve UDP listeners of dual-stack Network Load Balancers; the only
        // type berth serves has neither, so turning them on is refused rather than forgotten.
        return Err(validation(
            "A prefix for IPv6 source NAT can be enabled only for Network Load Balancers",
        ));
    }
    let coip_pool = req.customer_owned_ipv4_pool.clone();
    let ipam_pool = req
        .ipam_pools
        .as_ref()
        .and_then(|p| p.ipv4_ipam_pool_id.clone());
    let now = elb.now_ms();
    let record = mutate(elb, ctx, |snap: &Snapshot| {
        if let Some(existing) = snap.load_balancers.values().find(|l| l.name == name) {
            // CreateLoadBalancer is idempotent: the same request again answers the same one.
            if existing.scheme == scheme
                && existing.ip_address_type == ip_type
                && existing.customer_owned_ipv4_pool == coip_pool
                && existing.ipv4_ipam_pool_id == ipam_pool
                && existing.enable_prefix_for_ipv6_source_nat == source_nat_prefix
            {
                return Ok((Writes::default(), existing.clone()));
            }
            return Err(AwsError::client(
                "DuplicateLoadBalancerName",
                format!(
                    "A load balancer with the same name '{name}' exists, but with different settings"
                ),
            ));
        }
        let id = common::new_id();
        let arn = common::arn(ctx, format!("loadbalancer/app/{name}/{id}"));
        let record = LoadBalancerRecord {
            dns_name: format!("{name}-{id}.{}.elb.localhost", ctx.region),
            arn: arn.clone(),
            name: name.clone(),
            id,
            created_ms: now,
            scheme: scheme.clone(),
            ip_address_type: ip_type.clone(),
            vpc_id: DEFAULT_VPC.into(),
            subnets: subnets.clone(),
            security_groups: security_groups.clone(),
            state: "active".into(),
            customer_owned_ipv4_pool: coip_pool.clone(),
            ipv4_ipam_pool_id: ipam_pool.clone(),
            enable_prefix_for_ipv6_source_nat: source_nat_prefix.clone(),
            attributes: BTreeMap::new(),
            tags: tags.clone(),
        };
        let mut w = Writes::default();
        w.put(ctx, records::LOAD_BALANCER, &arn, &record)?;
        Ok((w, record))
    })
    .await?;
    Ok(wire::CreateLoadBalancerOutput {
        load_balancers: Some(vec![to_wire(&record)]),
    })
}

pub async fn describe_load_balancers(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeLoadBalancersInput,
) -> Result<wire::DescribeLoadBalancersOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let arns = req.load_balancer_arns.unwrap_or_default();
    let names = req.names.unwrap_or_default();
    if !arns.is_empty() && !names.is_empty() {
        return Err(validation(
            "Load balancer names and load balancer ARNs cannot be specified at the same time",
        ));
    }
    let mut items: Vec<(String, wire::LoadBalancer)> = Vec::new();
    if !arns.is_empty() {
        for arn in &arns {
            let lb = snap.load_balancer(arn)?;
            items.push((lb.arn.clone(), to_wire(lb)));
        }
    } else if !names.is_empty() {
        for name in &names {
            let lb = snap
                .load_balancers
                .values()
                .find(|l| &l.name == name)
                .ok_or_else(|| {
                    AwsError::client(
                        "LoadBalancerNotFound",
                        format!("Load balancers '[{name}]' not found"),
                    )
                })?;
            items.push((lb.arn.clone(), to_wire(lb)));
        }
    } else {
        items = snap
            .load_balancers
            .values()
            .map(|l| (l.arn.clone(), to_wire(l)))
            .collect();
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.dedup_by(|a, b| a.0 == b.0);
    let (page, next) = common::page(
        elb,
        ctx,
        "DescribeLoadBalancers",
        items,
        req.marker.as_deref(),
        req.page_size,
    )?;
    Ok(wire::DescribeLoadBalancersOutput {
        load_balancers: Some(page),
        next_marker: next,
    })
}

pub async fn delete_load_balancer(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DeleteLoadBalancerInput,
) -> Result<wire::DeleteLoadBalancerOutput, AwsError> {
    let arn = req.load_balancer_arn.unwrap_or_default();
    mutate(elb, ctx, |snap| {
        let mut w = Writes::default();
        // Deleting a load balancer that does not exist (any more) succeeds, as in AWS.
        if let Some(lb) = snap.load_balancers.get(&arn) {
            if attribute(lb, DELETION_PROTECTION) == "true" {
                return Err(not_permitted(format!(
                    "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
                )));
            }
            for l in snap.listeners_of(&arn) {
                for r in snap.rules_of(&l.arn) {
                    w.delete(ctx, records::RULE, &r.arn);
                }
                w.delete(ctx, records::LISTENER, &l.arn);
            }
            w.delete(ctx, records::LOAD_BALANCER, &arn);
        }
        Ok((w, ()))
    })
    .await?;
    Ok(Default::default())
}

const DELETION_PROTECTION: &str = "deletion_protection.enabled";

/// The attributes of an Application Load Balancer and AWS's defaults for them (botocore's
/// `LoadBalancerAttribute` documentation). The data plane acts on `idle_timeout.timeout_seconds`,
/// the two `X-Forwarded-For` attributes and `routing.http2.enabled`, the API on
/// `deletion_protection.enabled`; the rest are checked, kept and shown (an Application Load
/// Balancer's cross-zone load balancing is always on).
fn default_attributes(lb: &LoadBalancerRecord) -> BTreeMap<&'static str, &'static str> {
    let internal = lb.scheme == "internal";
    BTreeMap::from([
        ("access_logs.s3.bucket", ""),
        ("access_logs.s3.enabled", "false"),
        ("access_logs.s3.prefix", ""),
        ("client_keep_alive.seconds", "3600"),
        ("connection_logs.s3.bucket", ""),
        ("connection_logs.s3.enabled", "false"),
        ("connection_logs.s3.prefix", ""),
        (DELETION_PROTECTION, "false"),
        ("health_check_logs.s3.bucket", ""),
        ("health_check_logs.s3.enabled", "false"),
        ("health_check_logs.s3.prefix", ""),
        ("idle_timeout.timeout_seconds", "60"),
        (
            "ipv6.deny_all_igw_traffic",
            if internal { "true" } else { "false" },
        ),
        ("load_balancing.cross_zone.enabled", "true"),
        ("routing.http.desync_mitigation_mode", "defensive"),
        ("routing.http.drop_invalid_header_fields.enabled", "false"),
        ("routing.http.preserve_host_header.enabled", "false"),
        (
            "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
            "false",
        ),
        ("routing.http.xff_client_port.enabled", "false"),
        ("routing.http.xff_header_processing.mode", "append"),
        ("routing.http2.enabled", "true"),
        ("waf.fail_open.enabled", "false"),
        ("zonal_shift.config.enabled", "false"),
    ])
}

/// An attribute's value: what was set, else AWS's default.
fn attribute<'a>(lb: &'a LoadBalancerRecord, key: &str) -> &'a str {
    lb.attributes
        .get(key)
        .map(String::as_str)
        .or_else(|| default_attributes(lb).get(key).copied())
        .unwrap_or_default()
}

/// Checks one attribute as ELBv2 does for an Application Load Balancer.
fn check_attribute(key: &str, value: &str) -> Result<(), AwsError> {
    let boolean = ["true", "false"];
    match key {
        "idle_timeout.timeout_seconds" => int_in(key, value, 1, 4000),
        "client_keep_alive.seconds" => int_in(key, value, 60, 604_800),
        "routing.http.desync_mitigation_mode" => {
            one_of(key, value, &["monitor", "defensive", "strictest"])
        }
        "routing.http.xff_header_processing.mode" => {
            one_of(key, value, &["append", "preserve", "remove"])
        }
        "load_balancing.cross_zone.enabled" => {
            one_of(key, value, &boolean)?;
            if value == "false" {
                return Err(invalid_config(
                    "Cross-zone load balancing cannot be disabled for Application Load Balancers",
                ));
            }
            Ok(())
        }
        // berth has no S3 to write logs to: enabling them would promise logs nobody gets.
        "access_logs.s3.enabled"
        | "connection_logs.s3.enabled"
        | "health_check_logs.s3.enabled" => {
            one_of(key, value, &boolean)?;
            if value == "true" {
                return Err(invalid_config(format!(
                    "'{key}' cannot be enabled: berth load balancers have no S3 bucket to write logs to"
                )));
            }
            Ok(())
        }
        "access_logs.s3.bucket"
        | "access_logs.s3.prefix"
        | "connection_logs.s3.bucket"
        | "connection_logs.s3.prefix"
        | "health_check_logs.s3.bucket"
        | "health_check_logs.s3.prefix" => Ok(()),
        DELETION_PROTECTION
        | "ipv6.deny_all_igw_traffic"
        | "routing.http.drop_invalid_header_fields.enabled"
        | "routing.http.preserve_host_header.enabled"
        | "routing.http.x_amzn_tls_version_and_cipher_suite.enabled"
        | "routing.http.xff_client_port.enabled"
        | "routing.http2.enabled"
        | "waf.fail_open.enabled"
        | "zonal_shift.config.enabled" => one_of(key, value, &boolean),
        _ => Err(validation(format!(
            "Load balancer attribute key '{key}' is not recognized"
        ))),
    }
}

fn attribute_list(lb: &LoadBalancerRecord) -> Vec<wire::LoadBalancerAttribute> {
    let mut all: BTreeMap<&str, &str> = default_attributes(lb);
    for (k, v) in &lb.attributes {
        all.insert(k, v);
    }
    all.into_iter()
        .map(|(k, v)| wire::LoadBalancerAttribute {
            key: Some(k.to_string()),
            value: Some(v.to_string()),
        })
        .collect()
}

pub async fn describe_load_balancer_attributes(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeLoadBalancerAttributesInput,
) -> Result<wire::DescribeLoadBalancerAttributesOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let lb = snap.load_balancer(req.load_balancer_arn.as_deref().unwrap_or_default())?;
    Ok(wire::DescribeLoadBalancerAttributesOutput {
        attributes: Some(attribute_list(lb)),
    })
}

pub async fn modify_load_balancer_attributes(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::ModifyLoadBalancerAttributesInput,
) -> Result<wire::ModifyLoadBalancerAttributesOutput, AwsError> {
    let arn = req.load_balancer_arn.clone().unwrap_or_default();
    let changes = checked_attributes(
        req.attributes
            .iter()
            .flatten()
            .map(|a| (a.key.as_deref(), a.value.as_deref())),
        check_attribute,
    )?;
    let lb = mutate(elb, ctx, |snap| {
        let mut lb = snap.load_balancer(&arn)?.clone();
        lb.attributes.extend(changes.iter().cloned());
        let mut w = Writes::default();
        w.put(ctx, records::LOAD_BALANCER, &arn, &lb)?;
        Ok((w, lb))
    })
    .await?;
    Ok(wire::ModifyLoadBalancerAttributesOutput {
        attributes: Some(attribute_list(&lb)),
    })
}

/// Sets or removes the load balancer's IPv4 IPAM pool. berth keeps the pool id as AWS would
/// report it; addresses still come from the host.
pub async fn modify_ip_pools(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::ModifyIpPoolsInput,
) -> Result<wire::ModifyIpPoolsOutput, AwsError> {
    let arn = req.load_balancer_arn.clone().unwrap_or_default();
    let set = req
        .ipam_pools
        .as_ref()
        .and_then(|p| p.ipv4_ipam_pool_id.clone());
    let remove = req.remove_ipam_pools.iter().flatten().any(|p| p == "ipv4");
    if set.is_some() && remove {
        return Err(validation(
            "The IPv4 IPAM pool cannot be both set and removed in the same request",
        ));
    }
    let pool = mutate(elb, ctx, |snap| {
        let mut lb = snap.load_balancer(&arn)?.clone();
        let pool = match &set {
            Some(id) => Some(id.clone()),
            None if remove => None,
            None => lb.ipv4_ipam_pool_id.clone(),
        };
        let mut w = Writes::default();
        if pool != lb.ipv4_ipam_pool_id {
            lb.ipv4_ipam_pool_id = pool.clone();
            w.put(ctx, records::LOAD_BALANCER, &arn, &lb)?;
        }
        Ok((w, pool))
    })
    .await?;
    Ok(wire::ModifyIpPoolsOutput {
        ipam_pools: ipam_pools(pool.as_deref()),
    })
}

/// ELBv2's default quotas for Application Load Balancers.
const LIMITS: &[(&str, &str)] = &[
    ("application-load-balancers", "50"),
    ("target-groups", "3000"),
    ("targets-per-application-load-balancer", "1000"),
    ("listeners-per-application-load-balancer", "50"),
    ("rules-per-application-load-balancer", "100"),
    ("target-groups-per-action-on-application-load-balancer", "5"),
    ("target-groups-per-application-load-balancer", "100"),
    ("certificates-per-application-load-balancer", "25"),
];

pub async fn describe_account_limits(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeAccountLimitsInput,
) -> Result<wire::DescribeAccountLimitsOutput, AwsError> {
    let items = LIMITS
        .iter()
        .map(|(name, max)| {
            (
                (*name).to_string(),
                wire::Limit {
                    name: Some((*name).into()),
                    max: Some((*max).into()),
                },
            )
        })
        .collect();
    let (page, next) = common::page(
        elb,
        ctx,
        "DescribeAccountLimits",
        items,
        req.marker.as_deref(),
        req.page_size,
    )?;
    Ok(wire::DescribeAccountLimitsOutput {
        limits: Some(page),
        next_marker: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_elbv2_for_application_load_balancers() {
        for (key, value) in [
            ("idle_timeout.timeout_seconds", "1"),
            ("idle_timeout.timeout_seconds", "4000"),
            ("client_keep_alive.seconds", "60"),
            ("routing.http.desync_mitigation_mode", "strictest"),
            ("routing.http.xff_header_processing.mode", "remove"),
            ("deletion_protection.enabled", "true"),
            ("access_logs.s3.enabled", "false"),
            ("access_logs.s3.bucket", "logs"),
            ("load_balancing.cross_zone.enabled", "true"),
        ] {
            assert!(check_attribute(key, value).is_ok(), "{key}={value}");
        }
        for (key, value, code) in [
            ("idle_timeout.timeout_seconds", "0", "ValidationError"),
            ("idle_timeout.timeout_seconds", "x", "ValidationError"),
            ("client_keep_alive.seconds", "59", "ValidationError"),
            ("deletion_protection.enabled", "yes", "ValidationError"),
            // Network Load Balancer only.
            (
                "dns_record.client_routing_policy",
                "any_availability_zone",
                "ValidationError",
            ),
            (
                "load_balancing.cross_zone.enabled",
                "false",
                "InvalidConfigurationRequest",
            ),
            (
                "connection_logs.s3.enabled",
                "true",
                "InvalidConfigurationRequest",
            ),
        ] {
            let e = check_attribute(key, value).expect_err(key);
            assert_eq!(e.code, code, "{key}={value}");
        }
    }
}
