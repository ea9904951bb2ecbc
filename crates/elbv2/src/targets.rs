//! Targets: register, deregister, and their health as the health checker last saw it.
//!
//! A registered target gets a health record `initial` / `Elb.RegistrationInProgress`; the health
//! checker (the data plane, not built yet) moves it on. What DescribeTargetHealth reports is
//! derived at read time where AWS derives it: a target group no load balancer uses reports its
//! targets `unused` / `Target.NotInUse`; a deregistered target is `draining` /
//! `Target.DeregistrationInProgress` until the group's deregistration delay has passed, then gone.
//!
//! The API handlers and the in-process callers ([`register`], [`deregister`], [`group_views`],
//! used by the ECS service controller for a service's load balancers) share the same decisions
//! (`plan_register`, `plan_deregister`, `observed`) and the same guarded write.

use crate::Elbv2;
use crate::common::{Snapshot, Writes, mutate, mutate_in, validation};
use crate::records::{self, HealthRecord, TargetGroupRecord, TargetRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::elbv2 as wire;
use berth_store::AnyStore;
use std::collections::BTreeMap;
use std::net::IpAddr;

fn invalid_target(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidTarget", message)
}

/// The port of a target description: its own, or the target group's.
fn port_of(tg: &TargetGroupRecord, t: &wire::TargetDescription) -> i32 {
    t.port.unwrap_or(tg.port)
}

fn check_target(tg: &TargetGroupRecord, t: &wire::TargetDescription) -> Result<(), AwsError> {
    let id = t.id.as_deref().unwrap_or_default();
    if tg.target_type == "ip" {
        let ip: IpAddr = id.parse().map_err(|_| {
            invalid_target(format!(
                "The IP address '{id}' is not a valid IPv4 or IPv6 address"
            ))
        })?;
        if (tg.ip_address_type == "ipv6") != ip.is_ipv6() {
            return Err(invalid_target(format!(
                "The IP address '{id}' does not match the IP address type of the target group"
            )));
        }
    } else if id.is_empty() || id.len() > 255 || id.contains('|') {
        return Err(invalid_target(format!("The target '{id}' is not valid")));
    }
    Ok(())
}

pub fn deregistration_delay_ms(tg: &TargetGroupRecord) -> i64 {
    tg.attributes
        .get("deregistration_delay.timeout_seconds")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(300)
        * 1000
}

/// RegisterTargets on a snapshot: the records to write. Registering a registered target again
/// changes nothing, as in AWS; registering a draining one takes it back.
fn plan_register(
    snap: &Snapshot,
    ctx: &RequestContext,
    arn: &str,
    targets: &[wire::TargetDescription],
    now: i64,
) -> Result<Writes, AwsError> {
    let tg = snap.target_group(arn)?;
    let mut w = Writes::default();
    for t in targets {
        check_target(tg, t)?;
        let id = t.id.clone().unwrap_or_default();
        let port = port_of(tg, t);
        let key = records::target_key(arn, &id, port);
        if snap
            .targets
            .get(&key)
            .is_some_and(|r| r.deregistered_ms.is_none())
        {
            continue;
        }
        let record = TargetRecord {
            target_group_arn: arn.to_string(),
            id,
            port,
            availability_zone: t.availability_zone.clone(),
            registered_ms: now,
            deregistered_ms: None,
        };
        w.put(ctx, records::TARGET, &key, &record)?;
        w.put(
            ctx,
            records::TARGET_HEALTH,
            &key,
            &HealthRecord {
                state: "initial".into(),
                reason: Some("Elb.RegistrationInProgress".into()),
                description: Some("Target registration is in progress".into()),
                successes: 0,
                failures: 0,
                updated_ms: now,
            },
        )?;
    }
    Ok(w)
}

/// DeregisterTargets on a snapshot: the records to write. A target that is not registered is
/// refused (`InvalidTarget`) unless `missing_ok`, which an in-process caller converging on a
/// desired state sets (the target it saw may have drained away meanwhile).
fn plan_deregister(
    snap: &Snapshot,
    ctx: &RequestContext,
    arn: &str,
    targets: &[wire::TargetDescription],
    now: i64,
    missing_ok: bool,
) -> Result<Writes, AwsError> {
    let tg = snap.target_group(arn)?;
    let in_use = !snap.load_balancers_of(arn).is_empty();
    let mut w = Writes::default();
    for t in targets {
        let id = t.id.clone().unwrap_or_default();
        let key = records::target_key(arn, &id, port_of(tg, t));
        let Some(record) = snap.targets.get(&key) else {
            if missing_ok {
                continue;
            }
            return Err(invalid_target(format!(
                "The target '{id}' is not registered to the target group"
            )));
        };
        if record.deregistered_ms.is_some() {
            continue;
        }
        if !in_use || deregistration_delay_ms(tg) == 0 {
            // Nothing routes to it: it is gone at once.
            w.delete(ctx, records::TARGET, &key);
            w.delete(ctx, records::TARGET_HEALTH, &key);
            continue;
        }
        let mut r = record.clone();
        r.deregistered_ms = Some(now);
        w.put(ctx, records::TARGET, &key, &r)?;
    }
    Ok(w)
}

pub async fn register_targets(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::RegisterTargetsInput,
) -> Result<wire::RegisterTargetsOutput, AwsError> {
    let arn = req.target_group_arn.clone().unwrap_or_default();
    let targets = req.targets.clone().unwrap_or_default();
    let now = elb.now_ms();
    mutate(elb, ctx, |snap| {
        Ok((plan_register(snap, ctx, &arn, &targets, now)?, ()))
    })
    .await?;
    Ok(Default::default())
}

pub async fn deregister_targets(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DeregisterTargetsInput,
) -> Result<wire::DeregisterTargetsOutput, AwsError> {
    let arn = req.target_group_arn.clone().unwrap_or_default();
    let targets = req.targets.clone().unwrap_or_default();
    let now = elb.now_ms();
    mutate(elb, ctx, |snap| {
        Ok((plan_deregister(snap, ctx, &arn, &targets, now, false)?, ()))
    })
    .await?;
    Ok(Default::default())
}

/// RegisterTargets for an in-process caller (the ECS service controller): the same rules and
/// guarded write as the API, at `now`.
pub async fn register(
    store: &AnyStore,
    ctx: &RequestContext,
    target_group_arn: &str,
    targets: &[wire::TargetDescription],
    now: i64,
) -> Result<(), AwsError> {
    mutate_in(store, ctx, |snap| {
        Ok((
            plan_register(snap, ctx, target_group_arn, targets, now)?,
            (),
        ))
    })
    .await
}

/// DeregisterTargets for an in-process caller: as the API, except that a target no longer
/// registered is skipped rather than refused.
pub async fn deregister(
    store: &AnyStore,
    ctx: &RequestContext,
    target_group_arn: &str,
    targets: &[wire::TargetDescription],
    now: i64,
) -> Result<(), AwsError> {
    mutate_in(store, ctx, |snap| {
        Ok((
            plan_deregister(snap, ctx, target_group_arn, targets, now, true)?,
            (),
        ))
    })
    .await
}

/// A target group as an in-process reader needs it (the ECS service controller, to validate a
/// service's `loadBalancers` and follow its tasks' targets).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    /// `instance` or `ip` (or `lambda`, `alb`).
    pub target_type: String,
    pub deregistration_delay_ms: i64,
    /// Whether a listener or rule of some load balancer forwards to the group.
    pub in_use: bool,
    /// Every target the group holds now, keyed `(id, port)`, with the health
    /// DescribeTargetHealth reports for it; drained targets are gone.
    pub targets: BTreeMap<(String, i32), wire::TargetHealth>,
}

impl GroupView {
    /// The health of target `id:port`, `None` when it is not (or no longer) registered.
    pub fn health(&self, id: &str, port: i32) -> Option<&wire::TargetHealth> {
        self.targets.get(&(id.to_string(), port))
    }
}

/// The target groups named by `arns` that exist in the partition, read at one moment, as
/// DescribeTargetHealth would report them at `now`.
pub async fn group_views(
    store: &AnyStore,
    ctx: &RequestContext,
    arns: &[&str],
    now: i64,
) -> Result<BTreeMap<String, GroupView>, AwsError> {
    let snap = Snapshot::load_from(store, ctx).await?;
    let mut out = BTreeMap::new();
    for arn in arns {
        let Some(tg) = snap.target_groups.get(*arn) else {
            continue;
        };
        let in_use = !snap.load_balancers_of(arn).is_empty();
        let prefix = records::targets_prefix(arn);
        let targets = snap
            .targets
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(key, r)| {
                let h = observed(&snap, tg, key, r, in_use, now)?;
                Some(((r.id.clone(), r.port), h))
            })
            .collect();
        out.insert(
            arn.to_string(),
            GroupView {
                target_type: tg.target_type.clone(),
                deregistration_delay_ms: deregistration_delay_ms(tg),
                in_use,
                targets,
            },
        );
    }
    Ok(out)
}

fn description(
    t: &TargetRecord,
    health_port: &str,
    health: wire::TargetHealth,
) -> wire::TargetHealthDescription {
    wire::TargetHealthDescription {
        target: Some(wire::TargetDescription {
            id: Some(t.id.clone()),
            port: Some(t.port),
            availability_zone: t.availability_zone.clone(),
            ..Default::default()
        }),
        health_check_port: Some(if health_port == "traffic-port" {
            t.port.to_string()
        } else {
            health_port.to_string()
        }),
        target_health: Some(health),
        ..Default::default()
    }
}

fn health(state: &str, reason: Option<&str>, description: Option<&str>) -> wire::TargetHealth {
    wire::TargetHealth {
        state: Some(state.into()),
        reason: reason.map(Into::into),
        description: description.map(Into::into),
    }
}

/// What DescribeTargetHealth says of one registered target at `now`; `None` once a drained
/// target is gone.
fn observed(
    snap: &Snapshot,
    tg: &TargetGroupRecord,
    key: &str,
    t: &TargetRecord,
    in_use: bool,
    now: i64,
) -> Option<wire::TargetHealth> {
    if let Some(at) = t.deregistered_ms {
        if now >= at + deregistration_delay_ms(tg) {
            return None;
        }
        return Some(health(
            "draining",
            Some("Target.DeregistrationInProgress"),
            Some("Target deregistration is in progress"),
        ));
    }
    if !in_use {
        return Some(health(
            "unused",
            Some("Target.NotInUse"),
            Some("Target group is not configured to receive traffic from the load balancer"),
        ));
    }
    if !tg.health_check.enabled {
        return Some(health(
            "unavailable",
            Some("Target.HealthCheckDisabled"),
            Some("Health checks disabled"),
        ));
    }
    let h = snap.health.get(key);
    Some(match h {
        Some(h) => health(&h.state, h.reason.as_deref(), h.description.as_deref()),
        None => health(
            "initial",
            Some("Elb.RegistrationInProgress"),
            Some("Target registration is in progress"),
        ),
    })
}

pub async fn describe_target_health(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeTargetHealthInput,
) -> Result<wire::DescribeTargetHealthOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let arn = req.target_group_arn.clone().unwrap_or_default();
    let tg = snap.target_group(&arn)?;
    let in_use = !snap.load_balancers_of(&arn).is_empty();
    let now = elb.now_ms();
    let mut out = Vec::new();
    match &req.targets {
        Some(asked) if !asked.is_empty() => {
            for t in asked {
                let id = t.id.clone().unwrap_or_default();
                if id.is_empty() {
                    return Err(validation("A target ID must be specified"));
                }
                let port = port_of(tg, t);
                let key = records::target_key(&arn, &id, port);
                let found = snap
                    .targets
                    .get(&key)
                    .and_then(|r| Some((r, observed(&snap, tg, &key, r, in_use, now)?)));
                match found {
                    Some((r, h)) => out.push(description(r, &tg.health_check.port, h)),
                    None => {
                        let r = TargetRecord {
                            target_group_arn: arn.clone(),
                            id,
                            port,
                            availability_zone: t.availability_zone.clone(),
                            registered_ms: 0,
                            deregistered_ms: None,
                        };
                        out.push(description(
                            &r,
                            &tg.health_check.port,
                            health(
                                "unused",
                                Some("Target.NotRegistered"),
                                Some("Target is not registered to the target group"),
                            ),
                        ));
                    }
                }
            }
        }
        _ => {
            let prefix = records::targets_prefix(&arn);
            for (key, r) in snap.targets.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                if let Some(h) = observed(&snap, tg, key, r, in_use, now) {
                    out.push(description(r, &tg.health_check.port, h));
                }
            }
        }
    }
    Ok(wire::DescribeTargetHealthOutput {
        target_health_descriptions: Some(out),
    })
}
