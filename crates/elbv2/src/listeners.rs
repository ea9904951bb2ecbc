//! Listeners: create, describe, modify, delete. Each listener has a default rule whose actions
//! are the listener's default actions; it has no record of its own (`rules.rs` shows it).

use crate::Elbv2;
use crate::actions;
use crate::common::{self, Snapshot, Writes, mutate, validation};
use crate::records::{self, ListenerRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::elbv2 as wire;

/// The security policy an HTTPS listener gets when none is named.
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-2016-08";

/// Checks that every target group `actions` forward to exists and is not attached to another
/// load balancer (an Application Load Balancer's target group serves one load balancer).
pub fn check_targets(
    snap: &Snapshot,
    lb_arn: &str,
    actions: &[wire::Action],
) -> Result<(), AwsError> {
    for arn in actions::target_groups(actions) {
        let tg = snap.target_group(arn)?;
        if snap.load_balancers_of(&tg.arn).iter().any(|l| l != lb_arn) {
            return Err(AwsError::client(
                "TargetGroupAssociationLimit",
                format!(
                    "The following target groups cannot be associated with more than one load balancer: {arn}"
                ),
            ));
        }
    }
    Ok(())
}

fn check_protocol(protocol: &str, certificates: &[wire::Certificate]) -> Result<(), AwsError> {
    match protocol {
        "HTTP" => Ok(()),
        "HTTPS" if certificates.is_empty() => Err(AwsError::client(
            "CertificateNotFound",
            "A certificate must be specified for HTTPS listeners",
        )),
        "HTTPS" => Ok(()),
        other => Err(AwsError::client(
            "UnsupportedProtocol",
            format!("Protocol '{other}' is not supported by Application Load Balancers"),
        )),
    }
}

/// Refuses what an Application Load Balancer listener of `protocol` cannot carry, as ELBv2
/// does, instead of accepting and forgetting it.
fn check_tls_members(
    protocol: &str,
    ssl_policy: Option<&String>,
    alpn_policy: Option<&Vec<String>>,
) -> Result<(), AwsError> {
    if protocol != "HTTPS" && ssl_policy.is_some() {
        // ELBv2's wording, its spelling included.
        return Err(validation(format!(
            "An SSL policy cannot be specifed for {protocol} listeners"
        )));
    }
    if alpn_policy.is_some_and(|a| !a.is_empty()) {
        // ALPN policies are a Network Load Balancer TLS listener setting; an Application Load
        // Balancer negotiates ALPN from its target groups' protocol version.
        return Err(validation(format!(
            "An ALPN policy cannot be specified for {protocol} listeners"
        )));
    }
    Ok(())
}

/// Checks a listener's mutual TLS settings as ELBv2 does and returns what is kept. `verify`
/// needs a trust store, and berth serves none (see `unsupported-operations.txt`), so it is
/// refused the way ELBv2 refuses a trust store it does not know.
pub fn mutual_authentication(
    protocol: &str,
    m: &wire::MutualAuthenticationAttributes,
) -> Result<wire::MutualAuthenticationAttributes, AwsError> {
    if protocol != "HTTPS" {
        return Err(validation(format!(
            "Mutual authentication cannot be specified for {protocol} listeners"
        )));
    }
    if m.trust_store_association_status.is_some() {
        return Err(validation(
            "TrustStoreAssociationStatus is reported by ELBv2 and cannot be specified",
        ));
    }
    let mode = m.mode.clone().unwrap_or_else(|| "off".into());
    match mode.as_str() {
        "off" | "passthrough" => {
            if m.trust_store_arn.is_some() {
                return Err(validation(format!(
                    "Mutual Authentication mode {mode} does not support a trust store"
                )));
            }
            if m.advertise_trust_store_ca_names.is_some() {
                return Err(validation(format!(
                    "Mutual Authentication mode {mode} does not support advertising trust store CA names"
                )));
            }
            // Terraform sends `false` with `off`; only `passthrough` refuses the member at all.
            if m.ignore_client_certificate_expiry == Some(true)
                || (mode == "passthrough" && m.ignore_client_certificate_expiry.is_some())
            {
                return Err(validation(format!(
                    "Mutual Authentication mode {mode} does not support ignoring certificate expiry"
                )));
            }
            Ok(wire::MutualAuthenticationAttributes {
                mode: Some(mode),
                ..m.clone()
            })
        }
        "verify" => match &m.trust_store_arn {
            None => Err(validation(
                "A trust store must be specified for Mutual Authentication mode verify",
            )),
            Some(arn) => Err(AwsError::client(
                "TrustStoreNotFound",
                format!("Trust store '{arn}' not found"),
            )),
        },
        other => Err(validation(format!(
            "Mutual Authentication mode '{other}' is not valid; valid modes are off, passthrough and verify"
        ))),
    }
}

pub fn to_wire(r: &ListenerRecord) -> wire::Listener {
    wire::Listener {
        listener_arn: Some(r.arn.clone()),
        load_balancer_arn: Some(r.load_balancer_arn.clone()),
        port: Some(r.port),
        protocol: Some(r.protocol.clone()),
        certificates: (!r.certificates.is_empty()).then(|| r.certificates.clone()),
        ssl_policy: r.ssl_policy.clone(),
        mutual_authentication: r.mutual_authentication.clone(),
        default_actions: Some(r.default_actions.clone()),
        ..Default::default()
    }
}

fn duplicate(lb_arn: &str) -> AwsError {
    AwsError::client(
        "DuplicateListener",
        format!("A listener already exists on this port for this load balancer '{lb_arn}'"),
    )
}

pub async fn create_listener(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::CreateListenerInput,
) -> Result<wire::CreateListenerOutput, AwsError> {
    let lb_arn = req.load_balancer_arn.clone().unwrap_or_default();
    let protocol = req.protocol.clone().unwrap_or_else(|| "HTTP".into());
    let certificates = req.certificates.clone().unwrap_or_default();
    let Some(port) = req.port else {
        return Err(validation("A listener port must be specified"));
    };
    check_protocol(&protocol, &certificates)?;
    check_tls_members(&protocol, req.ssl_policy.as_ref(), req.alpn_policy.as_ref())?;
    let mutual = req
        .mutual_authentication
        .as_ref()
        .map(|m| mutual_authentication(&protocol, m))
        .transpose()?;
    let default_actions = actions::normalize(req.default_actions.clone().unwrap_or_default())?;
    let tags = common::tags_from(req.tags.as_ref())?;
    let ssl_policy = (protocol == "HTTPS").then(|| {
        req.ssl_policy
            .clone()
            .unwrap_or_else(|| DEFAULT_SSL_POLICY.into())
    });
    let record = mutate(elb, ctx, |snap| {
        let lb = snap.load_balancer(&lb_arn)?;
        if let Some(existing) = snap.listeners_of(&lb_arn).find(|l| l.port == port) {
            // The same listener again is answered with the existing one, as AWS does.
            if existing.protocol == protocol
                && existing.default_actions == default_actions
                && existing.ssl_policy == ssl_policy
                && existing.mutual_authentication == mutual
            {
                return Ok((Writes::default(), existing.clone()));
            }
            return Err(duplicate(&lb_arn));
        }
        if snap.listeners_of(&lb_arn).count() >= 50 {
            return Err(AwsError::client(
                "TooManyListeners",
                "A load balancer can have at most 50 listeners",
            ));
        }
        check_targets(snap, &lb_arn, &default_actions)?;
        let id = common::new_id();
        let base = format!("app/{}/{}/{id}", lb.name, lb.id);
        let arn = common::arn(ctx, format!("listener/{base}"));
        let record = ListenerRecord {
            arn: arn.clone(),
            load_balancer_arn: lb_arn.clone(),
            port,
            protocol: protocol.clone(),
            certificates: certificates.clone(),
            ssl_policy: ssl_policy.clone(),
            mutual_authentication: mutual.clone(),
            default_actions: default_actions.clone(),
            default_rule_arn: common::arn(
                ctx,
                format!("listener-rule/{base}/{}", common::new_id()),
            ),
            tags: tags.clone(),
            default_rule_tags: Default::default(),
        };
        let mut w = Writes::default();
        w.put(ctx, records::LISTENER, &arn, &record)?;
        Ok((w, record))
    })
    .await?;
    Ok(wire::CreateListenerOutput {
        listeners: Some(vec![to_wire(&record)]),
    })
}

pub async fn describe_listeners(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeListenersInput,
) -> Result<wire::DescribeListenersOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let arns = req.listener_arns.unwrap_or_default();
    let items: Vec<(String, wire::Listener)> = match (&req.load_balancer_arn, arns.is_empty()) {
        (Some(_), false) => {
            return Err(validation(
                "Listener ARNs and a load balancer ARN cannot be specified at the same time",
            ));
        }
        // Neither: berth lists every listener of the partition (the model requires neither).
        (None, true) => snap
            .listeners
            .values()
            .map(|l| (l.arn.clone(), to_wire(l)))
            .collect(),
        (Some(lb), true) => {
            snap.load_balancer(lb)?;
            snap.listeners_of(lb)
                .map(|l| (l.arn.clone(), to_wire(l)))
                .collect()
        }
        (None, false) => arns
            .iter()
            .map(|a| snap.listener(a).map(|l| (l.arn.clone(), to_wire(l))))
            .collect::<Result<_, _>>()?,
    };
    let (page, next) = common::page(
        elb,
        ctx,
        "DescribeListeners",
        items,
        req.marker.as_deref(),
        req.page_size,
    )?;
    Ok(wire::DescribeListenersOutput {
        listeners: Some(page),
        next_marker: next,
    })
}

pub async fn modify_listener(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::ModifyListenerInput,
) -> Result<wire::ModifyListenerOutput, AwsError> {
    let arn = req.listener_arn.clone().unwrap_or_default();
    let new_actions = match req.default_actions.clone() {
        Some(a) => Some(actions::normalize(a)?),
        None => None,
    };
    let record = mutate(elb, ctx, |snap| {
        let mut l = snap.listener(&arn)?.clone();
        if let Some(port) = req.port
            && port != l.port
        {
            if snap
                .listeners_of(&l.load_balancer_arn)
                .any(|o| o.port == port)
            {
                return Err(duplicate(&l.load_balancer_arn));
            }
            l.port = port;
        }
        if let Some(p) = &req.protocol {
            l.protocol = p.clone();
        }
        if let Some(c) = &req.certificates {
            l.certificates = c.clone();
        }
        check_protocol(&l.protocol, &l.certificates)?;
        check_tls_members(
            &l.protocol,
            req.ssl_policy.as_ref(),
            req.alpn_policy.as_ref(),
        )?;
        if let Some(m) = &req.mutual_authentication {
            l.mutual_authentication = Some(mutual_authentication(&l.protocol, m)?);
        } else if l.protocol != "HTTPS" {
            l.mutual_authentication = None;
        }
        l.ssl_policy = (l.protocol == "HTTPS").then(|| {
            req.ssl_policy
                .clone()
                .or(l.ssl_policy.clone())
                .unwrap_or_else(|| DEFAULT_SSL_POLICY.into())
        });
        if l.protocol == "HTTP" {
            l.certificates.clear();
        }
        if let Some(a) = &new_actions {
            check_targets(snap, &l.load_balancer_arn, a)?;
            l.default_actions = a.clone();
        }
        let mut w = Writes::default();
        w.put(ctx, records::LISTENER, &arn, &l)?;
        Ok((w, l))
    })
    .await?;
    Ok(wire::ModifyListenerOutput {
        listeners: Some(vec![to_wire(&record)]),
    })
}

pub async fn delete_listener(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DeleteListenerInput,
) -> Result<wire::DeleteListenerOutput, AwsError> {
    let arn = req.listener_arn.unwrap_or_default();
    mutate(elb, ctx, |snap| {
        snap.listener(&arn)?;
        let mut w = Writes::default();
        for r in snap.rules_of(&arn) {
            w.delete(ctx, records::RULE, &r.arn);
        }
        w.delete(ctx, records::LISTENER, &arn);
        Ok((w, ()))
    })
    .await?;
    Ok(Default::default())
}
