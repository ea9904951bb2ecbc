//! Listener rules: create, describe, modify, delete, and SetRulePriorities. A listener's
//! default rule (priority `default`) is shown from the listener record and changed through it.

use crate::Elbv2;
use crate::actions;
use crate::common::{self, Snapshot, Writes, mutate, not_permitted, rule_not_found, validation};
use crate::listeners::check_targets;
use crate::records::{self, ListenerRecord, RuleRecord};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::elbv2 as wire;
use std::collections::BTreeMap;

/// Rules per listener besides the default one (ELBv2's default quota is 100 per load balancer).
const MAX_RULES: usize = 100;

fn priority_in_use(priority: i32) -> AwsError {
    AwsError::client(
        "PriorityInUse",
        format!("Priority '{priority}' is currently in use"),
    )
}

pub fn to_wire(r: &RuleRecord) -> wire::Rule {
    wire::Rule {
        rule_arn: Some(r.arn.clone()),
        priority: Some(r.priority.to_string()),
        conditions: Some(r.conditions.clone()),
        actions: Some(r.actions.clone()),
        is_default: Some(false),
        transforms: (!r.transforms.is_empty()).then(|| r.transforms.clone()),
    }
}

pub fn default_rule(l: &ListenerRecord) -> wire::Rule {
    wire::Rule {
        rule_arn: Some(l.default_rule_arn.clone()),
        priority: Some("default".into()),
        conditions: Some(vec![]),
        actions: Some(l.default_actions.clone()),
        is_default: Some(true),
        ..Default::default()
    }
}

/// The listener whose default rule is `rule_arn`, if it is one.
fn default_of<'a>(snap: &'a Snapshot, rule_arn: &str) -> Option<&'a ListenerRecord> {
    snap.listeners
        .values()
        .find(|l| l.default_rule_arn == rule_arn)
}

pub async fn create_rule(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::CreateRuleInput,
) -> Result<wire::CreateRuleOutput, AwsError> {
    let listener_arn = req.listener_arn.clone().unwrap_or_default();
    let priority = req.priority.unwrap_or_default();
    let conditions = actions::conditions(req.conditions.clone().unwrap_or_default())?;
    let rule_actions = actions::normalize(req.actions.clone().unwrap_or_default())?;
    let transforms = actions::transforms(req.transforms.clone().unwrap_or_default())?;
    let tags = common::tags_from(req.tags.as_ref())?;
    let record = mutate(elb, ctx, |snap| {
        let l = snap.listener(&listener_arn)?;
        if snap.rules_of(&listener_arn).any(|r| r.priority == priority) {
            return Err(priority_in_use(priority));
        }
        if snap.rules_of(&listener_arn).count() >= MAX_RULES {
            return Err(AwsError::client(
                "TooManyRules",
                format!("A listener can have at most {MAX_RULES} rules"),
            ));
        }
        check_targets(snap, &l.load_balancer_arn, &rule_actions)?;
        // `listener/app/<lb>/<lb id>/<listener id>` → `listener-rule/app/…/<rule id>`.
        let (_, rest) = listener_arn
            .split_once(":listener/")
            .ok_or_else(common::listener_not_found)?;
        let arn = common::arn(ctx, format!("listener-rule/{rest}/{}", common::new_id()));
        let record = RuleRecord {
            arn: arn.clone(),
            listener_arn: listener_arn.clone(),
            priority,
            conditions: conditions.clone(),
            actions: rule_actions.clone(),
            transforms: transforms.clone(),
            tags: tags.clone(),
        };
        let mut w = Writes::default();
        w.put(ctx, records::RULE, &arn, &record)?;
        Ok((w, record))
    })
    .await?;
    Ok(wire::CreateRuleOutput {
        rules: Some(vec![to_wire(&record)]),
    })
}

pub async fn describe_rules(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DescribeRulesInput,
) -> Result<wire::DescribeRulesOutput, AwsError> {
    let snap = Snapshot::load(elb, ctx).await?;
    let arns = req.rule_arns.unwrap_or_default();
    // Keyed so that pages keep AWS's order: by priority, the default rule last.
    let key = |p: Option<i32>, arn: &str| format!("{:06}|{arn}", p.unwrap_or(999_999));
    let items: Vec<(String, wire::Rule)> = match (&req.listener_arn, arns.is_empty()) {
        (Some(_), false) => {
            return Err(validation(
                "Rule ARNs and a listener ARN cannot be specified at the same time",
            ));
        }
        // Neither: berth lists every rule of the partition (the model requires neither).
        (None, true) => {
            let mut v: Vec<(String, wire::Rule)> = snap
                .rules
                .values()
                .map(|r| (key(Some(r.priority), &r.arn), to_wire(r)))
                .collect();
            for l in snap.listeners.values() {
                v.push((key(None, &l.default_rule_arn), default_rule(l)));
            }
            v
        }
        (Some(l), true) => {
            let listener = snap.listener(l)?;
            let mut v: Vec<(String, wire::Rule)> = snap
                .rules_of(l)
                .map(|r| (key(Some(r.priority), &r.arn), to_wire(r)))
                .collect();
            v.push((
                key(None, &listener.default_rule_arn),
                default_rule(listener),
            ));
            v
        }
        (None, false) => {
            let mut v = Vec::new();
            for a in &arns {
                if let Some(r) = snap.rules.get(a) {
                    v.push((key(Some(r.priority), &r.arn), to_wire(r)));
                } else if let Some(l) = default_of(&snap, a) {
                    v.push((key(None, a), default_rule(l)));
                } else {
                    return Err(rule_not_found());
                }
            }
            v
        }
    };
    let (page, next) = common::page(
        elb,
        ctx,
        "DescribeRules",
        items,
        req.marker.as_deref(),
        req.page_size,
    )?;
    Ok(wire::DescribeRulesOutput {
        rules: Some(page),
        next_marker: next,
    })
}

pub async fn modify_rule(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::ModifyRuleInput,
) -> Result<wire::ModifyRuleOutput, AwsError> {
    let arn = req.rule_arn.clone().unwrap_or_default();
    let conditions = match req.conditions.clone() {
        Some(c) => Some(actions::conditions(c)?),
        None => None,
    };
    let new_actions = match req.actions.clone() {
        Some(a) => Some(actions::normalize(a)?),
        None => None,
    };
    let reset = req.reset_transforms == Some(true);
    let new_transforms = match req.transforms.clone() {
        Some(_) if reset => {
            return Err(validation(
                "Transforms and ResetTransforms cannot be specified at the same time",
            ));
        }
        Some(t) => Some(actions::transforms(t)?),
        None if reset => Some(Vec::new()),
        None => None,
    };
    let rule = mutate(elb, ctx, |snap| {
        let mut w = Writes::default();
        if let Some(l) = default_of(snap, &arn) {
            if conditions.is_some() {
                return Err(not_permitted(
                    "Conditions cannot be specified for the default rule",
                ));
            }
            if new_transforms.as_ref().is_some_and(|t| !t.is_empty()) {
                return Err(not_permitted(
                    "Transforms cannot be specified for the default rule",
                ));
            }
            let mut l = l.clone();
            if let Some(a) = &new_actions {
                check_targets(snap, &l.load_balancer_arn, a)?;
                l.default_actions = a.clone();
            }
            w.put(ctx, records::LISTENER, &l.arn, &l)?;
            return Ok((w, default_rule(&l)));
        }
        let mut r = snap.rules.get(&arn).ok_or_else(rule_not_found)?.clone();
        if let Some(c) = &conditions {
            r.conditions = c.clone();
        }
        if let Some(a) = &new_actions {
            let l = snap.listener(&r.listener_arn)?;
            check_targets(snap, &l.load_balancer_arn, a)?;
            r.actions = a.clone();
        }
        if let Some(t) = &new_transforms {
            r.transforms = t.clone();
        }
        w.put(ctx, records::RULE, &arn, &r)?;
        Ok((w, to_wire(&r)))
    })
    .await?;
    Ok(wire::ModifyRuleOutput {
        rules: Some(vec![rule]),
    })
}

pub async fn delete_rule(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::DeleteRuleInput,
) -> Result<wire::DeleteRuleOutput, AwsError> {
    let arn = req.rule_arn.unwrap_or_default();
    mutate(elb, ctx, |snap| {
        if default_of(snap, &arn).is_some() {
            return Err(not_permitted("Default rule cannot be deleted"));
        }
        snap.rules.get(&arn).ok_or_else(rule_not_found)?;
        let mut w = Writes::default();
        w.delete(ctx, records::RULE, &arn);
        Ok((w, ()))
    })
    .await?;
    Ok(Default::default())
}

pub async fn set_rule_priorities(
    elb: &Elbv2,
    ctx: &RequestContext,
    req: wire::SetRulePrioritiesInput,
) -> Result<wire::SetRulePrioritiesOutput, AwsError> {
    let pairs = req.rule_priorities.clone().unwrap_or_default();
    let rules = mutate(elb, ctx, |snap| {
        let mut changed: BTreeMap<String, RuleRecord> = BTreeMap::new();
        for p in &pairs {
            let arn = p.rule_arn.clone().unwrap_or_default();
            if default_of(snap, &arn).is_some() {
                return Err(not_permitted(
                    "The priority of the default rule cannot be changed",
                ));
            }
            let Some(priority) = p.priority else {
                return Err(validation("A rule priority must be specified"));
            };
            let mut r = snap.rules.get(&arn).ok_or_else(rule_not_found)?.clone();
            r.priority = priority;
            if changed.insert(arn, r).is_some() {
                return Err(validation("A rule is specified more than once"));
            }
        }
        // The priorities after the change must be unique within each listener.
        let mut seen: BTreeMap<(String, i32), String> = BTreeMap::new();
        for r in snap.rules.values() {
            let r = changed.get(&r.arn).unwrap_or(r);
            if seen
                .insert((r.listener_arn.clone(), r.priority), r.arn.clone())
                .is_some()
            {
                return Err(priority_in_use(r.priority));
            }
        }
        let mut w = Writes::default();
        for r in changed.values() {
            w.put(ctx, records::RULE, &r.arn, r)?;
        }
        let out: Vec<wire::Rule> = pairs
            .iter()
            .filter_map(|p| changed.get(p.rule_arn.as_deref().unwrap_or_default()))
            .map(to_wire)
            .collect();
        Ok((w, out))
    })
    .await?;
    Ok(wire::SetRulePrioritiesOutput { rules: Some(rules) })
}
