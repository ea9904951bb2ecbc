//! What the actions share: ELBv2's error codes and wording, ARNs and ids, the partition
//! snapshot every action reads, the one guarded write path, paging and tags.

use crate::Elbv2;
use crate::records::{
    self, HealthRecord, ListenerRecord, LoadBalancerRecord, RuleRecord, Tags, TargetGroupRecord,
    TargetRecord,
};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::elbv2 as wire;
use berth_store::{AnyStore, Expect, Op, Store};
use serde::Serialize;
use std::collections::BTreeMap;

pub fn validation(message: impl Into<String>) -> AwsError {
    AwsError::client("ValidationError", message)
}

/// An attribute whose value must be an integer in `lo..=hi`.
pub fn int_in(key: &str, value: &str, lo: i64, hi: i64) -> Result<(), AwsError> {
    match value.parse::<i64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(()),
        _ => Err(validation(format!(
            "The value of '{key}' must be an integer between {lo} and {hi}"
        ))),
    }
}

/// An attribute whose value must be one of `allowed`.
pub fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), AwsError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(validation(format!(
            "The value of '{key}' must be one of [{}]",
            allowed.join(", ")
        )))
    }
}

/// The attributes a Modify*Attributes request sets, as `(key, value)` pairs, each checked by
/// `check` first: one bad pair refuses the whole request before anything is written.
pub fn checked_attributes<'a>(
    pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
    check: fn(&str, &str) -> Result<(), AwsError>,
) -> Result<Vec<(String, String)>, AwsError> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let (k, v) = (k.unwrap_or_default(), v.unwrap_or_default());
            check(k, v)?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

pub fn invalid_config(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidConfigurationRequest", message)
}

pub fn not_permitted(message: impl Into<String>) -> AwsError {
    AwsError::client("OperationNotPermitted", message)
}

pub fn lb_not_found() -> AwsError {
    AwsError::client(
        "LoadBalancerNotFound",
        "One or more load balancers not found",
    )
}

pub fn tg_not_found() -> AwsError {
    AwsError::client("TargetGroupNotFound", "One or more target groups not found")
}

pub fn listener_not_found() -> AwsError {
    AwsError::client("ListenerNotFound", "One or more listeners not found")
}

pub fn rule_not_found() -> AwsError {
    AwsError::client("RuleNotFound", "One or more rules not found")
}

/// 16 random hex digits, the id that ends every ELBv2 ARN.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub fn arn(ctx: &RequestContext, resource: String) -> String {
    berth_model::Arn::new(
        "elasticloadbalancing",
        &ctx.region,
        &ctx.account_id,
        resource,
    )
    .to_string()
}

/// Everything in a partition that the API's rules look at, read at one moment, plus the
/// guard's version the write will be conditioned on.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub guard: Option<u64>,
    pub load_balancers: BTreeMap<String, LoadBalancerRecord>,
    pub target_groups: BTreeMap<String, TargetGroupRecord>,
    pub listeners: BTreeMap<String, ListenerRecord>,
    pub rules: BTreeMap<String, RuleRecord>,
    pub targets: BTreeMap<String, TargetRecord>,
    pub health: BTreeMap<String, HealthRecord>,
}

const PAGE: usize = 1000;

async fn list_all<T: serde::de::DeserializeOwned>(
    store: &AnyStore,
    kind: &str,
    partition: &str,
) -> Result<BTreeMap<String, T>, AwsError> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(kind, partition, "", after.as_deref(), PAGE)
            .await?;
        let n = page.len();
        for r in page {
            let v: T = serde_json::from_value(r.value).map_err(AwsError::internal)?;
            after = Some(r.key.clone());
            out.insert(r.key, v);
        }
        if n < PAGE {
            return Ok(out);
        }
    }
}

impl Snapshot {
    /// Reads the partition. The guard is read first: a write conditioned on its version fails
    /// if anything changed after it, so a stale snapshot never commits.
    pub async fn load(elb: &Elbv2, ctx: &RequestContext) -> Result<Snapshot, AwsError> {
        Snapshot::load_from(elb.store(), ctx).await
    }

    /// [`Snapshot::load`] for an in-process caller that holds the store, not the API.
    pub async fn load_from(store: &AnyStore, ctx: &RequestContext) -> Result<Snapshot, AwsError> {
        let p = ctx.partition();
        let guard = store.get(records::GUARD, &p, "").await?.map(|r| r.version);
        Ok(Snapshot {
            guard,
            load_balancers: list_all(store, records::LOAD_BALANCER, &p).await?,
            target_groups: list_all(store, records::TARGET_GROUP, &p).await?,
            listeners: list_all(store, records::LISTENER, &p).await?,
            rules: list_all(store, records::RULE, &p).await?,
            targets: list_all(store, records::TARGET, &p).await?,
            health: list_all(store, records::TARGET_HEALTH, &p).await?,
        })
    }

    pub fn load_balancer(&self, arn: &str) -> Result<&LoadBalancerRecord, AwsError> {
        self.load_balancers.get(arn).ok_or_else(lb_not_found)
    }

    pub fn target_group(&self, arn: &str) -> Result<&TargetGroupRecord, AwsError> {
        self.target_groups.get(arn).ok_or_else(tg_not_found)
    }

    pub fn listener(&self, arn: &str) -> Result<&ListenerRecord, AwsError> {
        self.listeners.get(arn).ok_or_else(listener_not_found)
    }

    pub fn listeners_of<'a>(&'a self, lb_arn: &'a str) -> impl Iterator<Item = &'a ListenerRecord> {
        self.listeners
            .values()
            .filter(move |l| l.load_balancer_arn == lb_arn)
    }

    pub fn rules_of<'a>(&'a self, listener_arn: &'a str) -> impl Iterator<Item = &'a RuleRecord> {
        self.rules
            .values()
            .filter(move |r| r.listener_arn == listener_arn)
    }

    /// The load balancers whose listeners or rules forward to `tg_arn`.
    pub fn load_balancers_of(&self, tg_arn: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in self.listeners.values() {
            let in_rules = self
                .rules_of(&l.arn)
                .any(|r| crate::actions::target_groups(&r.actions).contains(&tg_arn));
            if (in_rules || crate::actions::target_groups(&l.default_actions).contains(&tg_arn))
                && !out.contains(&l.load_balancer_arn)
            {
                out.push(l.load_balancer_arn.clone());
            }
        }
        out.sort();
        out
    }
}

/// Writes of one API action: the records to put and delete, applied with the guard in one
/// commit.
#[derive(Debug, Default)]
pub struct Writes(pub Vec<Op>);

impl Writes {
    pub fn put<T: Serialize>(
        &mut self,
        ctx: &RequestContext,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), AwsError> {
        let v = serde_json::to_value(value).map_err(AwsError::internal)?;
        self.0
            .push(Op::put(kind, ctx.partition(), key, v, Expect::Any));
        Ok(())
    }

    pub fn delete(&mut self, ctx: &RequestContext, kind: &str, key: &str) {
        self.0
            .push(Op::delete(kind, ctx.partition(), key, Expect::Any));
    }
}

/// The one write path of the API: read a snapshot, let `f` decide (pure, may refuse), commit
/// its writes together with the guard; on a conflict, read again and decide again
/// (`berth_store::retry_on_conflict`, with its backoff).
pub async fn mutate<R>(
    elb: &Elbv2,
    ctx: &RequestContext,
    f: impl Fn(&Snapshot) -> Result<(Writes, R), AwsError>,
) -> Result<R, AwsError> {
    mutate_in(elb.store(), ctx, f).await
}

/// [`mutate`] for an in-process caller that holds the store (the ECS service controller
/// registering its tasks): the same snapshot, guard and retry.
pub async fn mutate_in<R>(
    store: &AnyStore,
    ctx: &RequestContext,
    f: impl Fn(&Snapshot) -> Result<(Writes, R), AwsError>,
) -> Result<R, AwsError> {
    let f = &f;
    berth_store::retry_on_conflict(store, || async move {
        let snap = Snapshot::load_from(store, ctx).await?;
        let (writes, out) = f(&snap)?;
        let mut ops = writes.0;
        if !ops.is_empty() {
            ops.push(Op::put(
                records::GUARD,
                ctx.partition(),
                "",
                serde_json::json!({}),
                snap.guard.map_or(Expect::Absent, Expect::Version),
            ));
        }
        Ok((ops, out))
    })
    .await
}

/// One page of `items` (in key order) after `marker`, and the marker of the next page. Markers
/// are opaque: the last key of a page, HMAC-bound to the list (`op`) and partition that issued
/// it, so a marker that was not issued here is refused rather than guessed at.
pub fn page<T: Clone>(
    elb: &Elbv2,
    ctx: &RequestContext,
    op: &str,
    mut items: Vec<(String, T)>,
    marker: Option<&str>,
    page_size: Option<i32>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let binding = format!("elbv2:{op}:{}", ctx.partition());
    let size = page_size.unwrap_or(400).clamp(1, 400) as usize;
    let start = match marker {
        Some(m) => {
            let after = elb
                .tokens()
                .decode(&binding, m)
                .ok_or_else(|| validation(format!("The marker '{m}' is not valid")))?;
            items
                .iter()
                .position(|(k, _)| *k > after)
                .unwrap_or(items.len())
        }
        None => 0,
    };
    let rest = &items[start..];
    let next = (rest.len() > size).then(|| elb.tokens().encode(&binding, &rest[size - 1].0));
    Ok((
        rest.iter().take(size).map(|(_, v)| v.clone()).collect(),
        next,
    ))
}

pub const MAX_TAGS: usize = 50;

/// Tags given at creation or by AddTags, checked as ELBv2 checks them.
pub fn tags_from(list: Option<&Vec<wire::Tag>>) -> Result<Tags, AwsError> {
    let mut out = Tags::new();
    for t in list.into_iter().flatten() {
        let key = t.key.clone().unwrap_or_default();
        if key.starts_with("aws:") {
            return Err(validation(
                "Tag keys starting with 'aws:' are reserved for internal use",
            ));
        }
        if out
            .insert(key.clone(), t.value.clone().unwrap_or_default())
            .is_some()
        {
            return Err(AwsError::client(
                "DuplicateTagKeys",
                format!("Tag key '{key}' is duplicated"),
            ));
        }
    }
    if out.len() > MAX_TAGS {
        return Err(too_many_tags());
    }
    Ok(out)
}

pub fn too_many_tags() -> AwsError {
    AwsError::client(
        "TooManyTags",
        format!("A resource can have at most {MAX_TAGS} tags"),
    )
}

pub fn tag_list(tags: &Tags) -> Vec<wire::Tag> {
    tags.iter()
        .map(|(k, v)| wire::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}
