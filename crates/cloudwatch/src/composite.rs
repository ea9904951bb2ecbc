//! Composite alarms: PutCompositeAlarm, and their evaluation. A composite's state is a function
//! of its children's states, so it is judged when it is put and whenever an alarm it names
//! changes state (`Cloudwatch::alarm_changed`, called after every committed transition: the
//! evaluator's, SetAlarmState's and a composite's own), not on a timer; the evaluator's first
//! tick judges them all once more, to catch up what a stop between a child's commit and its
//! parents' evaluation left behind. Actions its `ActionsSuppressor` holds back wait in the
//! record, and the evaluator's ticks step them on (`release_deferred`).

use crate::Cloudwatch;
use crate::alarms::{self, alarm_arn, all_alarms, check_actions, check_tags, tag_pairs};
use crate::common::{long_date, validation};
use crate::evaluate::State;
use crate::interface::AlarmTransition;
use crate::records::{self, AlarmRecord, CompositeRecord, Deferred, Suppression};
use crate::rule::{self, Expr};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::cloudwatch as wire;
use berth_store::{Expect, Op, Store, get_as, retry_on_conflict};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

type Empty = serde_json::Map<String, serde_json::Value>;

const LIST_BATCH: usize = 1000;
/// How many composite evaluations one state change may cause at most: rules form no cycles
/// (PutCompositeAlarm refuses them), so this only bounds the damage of a store written by hand.
const MAX_CASCADE: usize = 10_000;
/// CloudWatch's quota: one alarm can be named in the rules of at most this many composites.
const MAX_PARENTS: usize = 150;

/// Every composite alarm of a partition, in name order.
pub async fn all_composites(
    cw: &Cloudwatch,
    partition: &str,
) -> Result<Vec<(CompositeRecord, u64)>, AwsError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = cw
            .store()
            .list_as::<CompositeRecord>(
                records::COMPOSITE,
                partition,
                "",
                after.as_deref(),
                LIST_BATCH,
            )
            .await?;
        let done = page.len() < LIST_BATCH;
        after = page.last().map(|r| r.key.clone());
        out.extend(page.into_iter().map(|r| (r.value, r.version)));
        if done {
            return Ok(out);
        }
    }
}

/// The alarm name a rule reference (a name, or the ARN of an alarm of this partition) stands
/// for; `None` for the ARN of an alarm elsewhere, which cannot exist here.
pub fn referenced_name(partition: &str, reference: &str) -> Option<String> {
    if reference.starts_with("arn:") {
        let prefix = alarm_arn(partition, "");
        reference
            .strip_prefix(&prefix)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    } else {
        Some(reference.to_string())
    }
}

/// The names a stored composite's rule names (references resolved; unresolvable ones left out).
pub fn children_of(partition: &str, alarm: &wire::CompositeAlarm) -> Vec<String> {
    alarm
        .alarm_rule
        .as_deref()
        .and_then(|text| rule::parse(text).ok())
        .map(|r| {
            r.children()
                .iter()
                .filter_map(|c| referenced_name(partition, c))
                .collect()
        })
        .unwrap_or_default()
}

/// An alarm of either kind, as much as a composite's evaluation needs of it.
struct Child {
    arn: String,
    state: State,
    transitioned_ms: i64,
}

async fn child(cw: &Cloudwatch, partition: &str, name: &str) -> Result<Option<Child>, AwsError> {
    // Metric and composite alarms keep the same four facts a parent reads, under the same names.
    let child = |arn: Option<String>,
                 state: Option<String>,
                 transitioned: Option<Timestamp>,
                 updated: Option<Timestamp>| Child {
        arn: arn.unwrap_or_default(),
        state: state
            .as_deref()
            .and_then(State::parse)
            .unwrap_or(State::InsufficientData),
        transitioned_ms: transitioned
            .or(updated)
            .map(Timestamp::to_millis)
            .unwrap_or_default(),
    };
    if let Some((r, _)) =
        get_as::<AlarmRecord, _>(cw.store(), records::ALARM, partition, name).await?
    {
        let a = r.alarm;
        return Ok(Some(child(
            a.alarm_arn,
            a.state_value,
            a.state_transitioned_timestamp,
            a.state_updated_timestamp,
        )));
    }
    if let Some((r, _)) =
        get_as::<CompositeRecord, _>(cw.store(), records::COMPOSITE, partition, name).await?
    {
        let a = r.alarm;
        return Ok(Some(child(
            a.alarm_arn,
            a.state_value,
            a.state_transitioned_timestamp,
            a.state_updated_timestamp,
        )));
    }
    Ok(None)
}

/// Checks the pairing rules of the suppressor members.
fn check_suppressor(req: &wire::PutCompositeAlarmInput) -> Result<(), AwsError> {
    let wait = req.actions_suppressor_wait_period;
    let extension = req.actions_suppressor_extension_period;
    match (&req.actions_suppressor, wait, extension) {
        (Some(_), Some(w), Some(e)) => {
            if w < 0 || e < 0 {
                return Err(validation(
                    "ActionsSuppressorWaitPeriod and ActionsSuppressorExtensionPeriod must not be negative.",
                ));
            }
            Ok(())
        }
        (Some(_), _, _) => Err(validation(
            "ActionsSuppressorWaitPeriod and ActionsSuppressorExtensionPeriod are required when ActionsSuppressor is specified.",
        )),
        (None, None, None) => Ok(()),
        (None, _, _) => Err(validation(
            "ActionsSuppressorWaitPeriod and ActionsSuppressorExtensionPeriod can only be specified with ActionsSuppressor.",
        )),
    }
}

/// A path from `from` back to `target` through composite rules, if there is one.
fn cycle_through(
    graph: &HashMap<String, Vec<String>>,
    from: &str,
    target: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen: HashSet<String> = HashSet::new();
    while let Some((node, path)) = stack.pop() {
        if node == target {
            return Some(path);
        }
        if !seen.insert(node.clone()) {
            continue;
        }
        for next in graph.get(&node).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next.clone());
            stack.push((next.clone(), longer));
        }
    }
    None
}

pub async fn put_composite_alarm(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::PutCompositeAlarmInput,
) -> Result<Empty, AwsError> {
    let partition = ctx.partition();
    let name = req.alarm_name.clone().unwrap_or_default();
    let rule_text = req.alarm_rule.clone().unwrap_or_default();
    let rule = rule::parse(&rule_text).map_err(|e| validation(e.to_string()))?;
    for (list, at) in [
        (&req.alarm_actions, "AlarmActions"),
        (&req.ok_actions, "OKActions"),
        (&req.insufficient_data_actions, "InsufficientDataActions"),
    ] {
        check_actions(list.as_ref(), at)?;
    }
    check_suppressor(&req)?;
    let tags: Vec<(String, String)> = tag_pairs(req.tags.as_deref());
    check_tags(&tags)?;
    let references = rule.children();
    let now = cw.now_ms();
    let config = wire::CompositeAlarm {
        alarm_name: Some(name.clone()),
        alarm_arn: Some(alarm_arn(&partition, &name)),
        alarm_description: req.alarm_description.clone(),
        alarm_rule: Some(rule_text.clone()),
        alarm_configuration_updated_timestamp: Some(Timestamp::from_millis(now)),
        actions_enabled: Some(req.actions_enabled.unwrap_or(true)),
        ok_actions: Some(req.ok_actions.clone().unwrap_or_default()),
        alarm_actions: Some(req.alarm_actions.clone().unwrap_or_default()),
        insufficient_data_actions: Some(req.insufficient_data_actions.clone().unwrap_or_default()),
        actions_suppressor: req.actions_suppressor.clone(),
        actions_suppressor_wait_period: req.actions_suppressor_wait_period,
        actions_suppressor_extension_period: req.actions_suppressor_extension_period,
        ..Default::default()
    };
    retry_on_conflict(cw.store(), || async {
        let metric: HashSet<String> = all_alarms(cw, &partition)
            .await?
            .into_iter()
            .filter_map(|(r, _)| r.alarm.alarm_name)
            .collect();
        if metric.contains(&name) {
            return Err(validation(format!(
                "The alarm {name} is a metric alarm; PutCompositeAlarm cannot replace it."
            )));
        }
        let composites: BTreeMap<String, (CompositeRecord, u64)> = all_composites(cw, &partition)
            .await?
            .into_iter()
            .map(|(r, v)| (r.alarm.alarm_name.clone().unwrap_or_default(), (r, v)))
            .collect();
        let exists = |n: &str| metric.contains(n) || composites.contains_key(n);
        let mut children = Vec::new();
        let mut missing = Vec::new();
        for reference in &references {
            match referenced_name(&partition, reference) {
                Some(n) if n == name => {
                    return Err(validation(format!(
                        "Could not save the composite alarm as its alarm rule names the alarm itself ({reference})."
                    )));
                }
                Some(n) if exists(&n) => children.push(n),
                _ => missing.push(reference.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(validation(format!(
                "Could not save the composite alarm as alarms [{}] in the alarm rule do not exist",
                missing.join(", ")
            )));
        }
        if let Some(suppressor) = &req.actions_suppressor {
            match referenced_name(&partition, suppressor) {
                Some(n) if n == name => {
                    return Err(validation(
                        "A composite alarm cannot be its own ActionsSuppressor.",
                    ));
                }
                Some(n) if exists(&n) => {}
                _ => {
                    return Err(validation(format!(
                        "The ActionsSuppressor alarm {suppressor} does not exist."
                    )));
                }
            }
        }
        let mut graph: HashMap<String, Vec<String>> = composites
            .iter()
            .map(|(n, (r, _))| (n.clone(), children_of(&partition, &r.alarm)))
            .collect();
        for c in &children {
            let parents = graph
                .iter()
                .filter(|(parent, named)| **parent != name && named.contains(c))
                .count();
            if parents >= MAX_PARENTS {
                return Err(AwsError::client(
                    "LimitExceeded",
                    format!(
                        "The alarm {c} is already included in the alarm rules of {MAX_PARENTS} composite alarms, the most one alarm can be in."
                    ),
                ));
            }
        }
        graph.insert(name.clone(), children.clone());
        for c in &children {
            if let Some(path) = cycle_through(&graph, c, &name) {
                return Err(validation(format!(
                    "Could not save the composite alarm as its alarm rule would make a cycle: {name} -> {}",
                    path.join(" -> ")
                )));
            }
        }
        let mut alarm = config.clone();
        let (record, expect, kind) = match composites.get(&name) {
            Some((old, version)) => {
                // An update keeps the state and the tags, as CloudWatch's does.
                let o = &old.alarm;
                alarm.state_value = o.state_value.clone();
                alarm.state_reason = o.state_reason.clone();
                alarm.state_reason_data = o.state_reason_data.clone();
                alarm.state_updated_timestamp = o.state_updated_timestamp;
                alarm.state_transitioned_timestamp = o.state_transitioned_timestamp;
                // Held actions stay held while there is a suppressor to hold them; its
                // periods are the new ones from the next step on.
                let deferred = old.deferred.clone().filter(|_| alarm.actions_suppressor.is_some());
                show_suppression(&mut alarm, deferred.as_ref());
                let record = CompositeRecord {
                    alarm,
                    tags: old.tags.clone(),
                    deferred,
                };
                (record, Expect::Version(*version), "Update")
            }
            None => {
                alarm.state_value = Some("INSUFFICIENT_DATA".into());
                alarm.state_reason = Some("Unchecked: Initial alarm creation".into());
                alarm.state_updated_timestamp = Some(Timestamp::from_millis(now));
                alarm.state_transitioned_timestamp = Some(Timestamp::from_millis(now));
                let record = CompositeRecord {
                    alarm,
                    tags: tags.clone(),
                    deferred: None,
                };
                (record, Expect::Absent, "Create")
            }
        };
        let shown = serde_json::to_value(&record.alarm).map_err(AwsError::internal)?;
        let (summary, data_key) = if kind == "Create" {
            (format!("Alarm \"{name}\" created"), "createdAlarm")
        } else {
            (format!("Alarm \"{name}\" updated"), "updatedAlarm")
        };
        let item = alarms::history_item(
            &name,
            "CompositeAlarm",
            "ConfigurationUpdate",
            summary,
            serde_json::json!({"version": "1.0", "type": kind, data_key: shown}),
            now,
        );
        let ops = vec![
            Op::put(
                records::COMPOSITE,
                &partition,
                &name,
                serde_json::to_value(&record).map_err(AwsError::internal)?,
                expect,
            ),
            // Names are one namespace: no metric alarm may take it meanwhile.
            Op::delete(records::ALARM, &partition, &name, Expect::Absent),
            alarms::history_op(&partition, &item)?,
            Op::put(
                records::PARTITIONS,
                "",
                &partition,
                serde_json::json!({}),
                Expect::Any,
            ),
        ];
        Ok::<_, AwsError>((ops, ()))
    })
    .await?;
    // Judged at once (a new one leaves INSUFFICIENT_DATA; an updated one is re-evaluated, as
    // CloudWatch does), and its parents after it if it moved.
    if cw.evaluate_composite(&partition, &name, None).await? {
        cw.alarm_changed(&partition, &name).await;
    }
    Ok(Empty::new())
}

/// The state a composite's rule gives, with CloudWatch's reason and reason data.
struct Judgement {
    state: State,
    reason: String,
    reason_data: String,
}

fn judge(
    partition: &str,
    rule: &Expr,
    children: &HashMap<String, Child>,
    trigger: Option<&str>,
) -> Judgement {
    let state_of = |reference: &str| {
        referenced_name(partition, reference)
            .and_then(|n| children.get(&n))
            .map(|c| c.state)
    };
    let state = if rule.eval(&state_of) {
        State::Alarm
    } else {
        State::Ok
    };
    let triggering: Vec<&Child> = rule
        .triggering(&state_of)
        .iter()
        .filter_map(|r| referenced_name(partition, r))
        .filter_map(|n| children.get(&n))
        .collect();
    let entry = |c: &Child| {
        serde_json::json!({"arn": c.arn, "state": {
            "value": c.state.wire(), "timestamp": crate::common::iso(c.transitioned_ms)}})
    };
    let reason_data = serde_json::json!({
        "triggeringAlarms": triggering.iter().map(|c| entry(c)).collect::<Vec<_>>()
    })
    .to_string();
    // The alarm whose change this evaluation follows, else the first that holds.
    let cause = trigger
        .and_then(|t| children.get(t))
        .or_else(|| triggering.first().copied());
    let reason = match cause {
        Some(c) => format!(
            "{} transitioned to {} at {}",
            c.arn,
            c.state.wire(),
            long_date(c.transitioned_ms)
        ),
        None => format!(
            "The alarm rule evaluated to {}",
            if state == State::Alarm {
                "TRUE"
            } else {
                "FALSE"
            }
        ),
    };
    Judgement {
        state,
        reason,
        reason_data,
    }
}

/// Writes a composite's transition to `new_state` (read at `version`) with its history, and
/// returns the transition to fire when its actions are enabled and not held back by its
/// actions suppressor (`suppressor_in_alarm`: whether that is in ALARM now); held actions are
/// kept in the record for [`Cloudwatch::release_deferred`]. The caller commits the ops.
pub(crate) fn transition(
    partition: &str,
    record: &mut CompositeRecord,
    version: u64,
    change: (State, String, String),
    suppressor_in_alarm: bool,
    now_ms: i64,
) -> Result<(Vec<Op>, Option<AlarmTransition>), AwsError> {
    let (new_state, reason, reason_data) = change;
    let alarm = &mut record.alarm;
    let name = alarm.alarm_name.clone().unwrap_or_default();
    let old_state = alarm
        .state_value
        .clone()
        .unwrap_or_else(|| "INSUFFICIENT_DATA".into());
    let old_reason = alarm.state_reason.clone().unwrap_or_default();
    alarm.state_value = Some(new_state.wire().into());
    alarm.state_reason = Some(reason.clone());
    alarm.state_reason_data = Some(reason_data.clone()).filter(|d| !d.is_empty());
    alarm.state_updated_timestamp = Some(Timestamp::from_millis(now_ms));
    alarm.state_transitioned_timestamp = Some(Timestamp::from_millis(now_ms));
    let enabled = alarm.actions_enabled.unwrap_or(true);
    let fired = AlarmTransition {
        partition: partition.to_string(),
        alarm_name: name.clone(),
        alarm_arn: alarm.alarm_arn.clone().unwrap_or_default(),
        old_state: old_state.clone(),
        new_state: new_state.wire().into(),
        reason: reason.clone(),
        actions: actions_of(alarm, new_state),
        timestamp_ms: now_ms,
        value: None,
        threshold: None,
    };
    // A new transition replaces whatever the last one still held back: those actions are
    // dropped, as they belong to a state the alarm has left.
    let deferred = if enabled && alarm.actions_suppressor.is_some() {
        let wait_ms = i64::from(alarm.actions_suppressor_wait_period.unwrap_or(0)) * 1000;
        hold(fired.clone(), suppressor_in_alarm, wait_ms, now_ms)
    } else {
        None
    };
    show_suppression(alarm, deferred.as_ref());
    let held = deferred.is_some();
    record.deferred = deferred;
    let item = alarms::state_history(
        &name,
        "CompositeAlarm",
        (&old_state, &old_reason),
        (new_state.wire(), &reason, &reason_data),
        now_ms,
    );
    let mut ops = vec![
        Op::put(
            records::COMPOSITE,
            partition,
            &name,
            serde_json::to_value(&*record).map_err(AwsError::internal)?,
            Expect::Version(version),
        ),
        alarms::history_op(partition, &item)?,
    ];
    if !enabled || held {
        return Ok((ops, None));
    }
    for action in &fired.actions {
        ops.push(alarms::history_op(
            partition,
            &alarms::action_history(&name, "CompositeAlarm", action, now_ms),
        )?);
    }
    Ok((ops, Some(fired)))
}

/// The actions a composite runs on entering `state`.
fn actions_of(alarm: &wire::CompositeAlarm, state: State) -> Vec<String> {
    match state {
        State::Ok => alarm.ok_actions.clone(),
        State::Alarm => alarm.alarm_actions.clone(),
        State::InsufficientData => alarm.insufficient_data_actions.clone(),
    }
    .unwrap_or_default()
}

/// Whether a transition's actions are held back when it happens (`None`: they run now). The
/// suppressor in ALARM holds any transition's; otherwise only a move into ALARM waits, up to
/// the wait period, for the suppressor to follow.
fn hold(
    transition: AlarmTransition,
    suppressor_in_alarm: bool,
    wait_ms: i64,
    now_ms: i64,
) -> Option<Deferred> {
    if suppressor_in_alarm {
        return Some(Deferred {
            transition,
            by: Suppression::Alarm,
            until_ms: now_ms,
        });
    }
    (transition.new_state == State::Alarm.wire() && wait_ms > 0).then(|| Deferred {
        transition,
        by: Suppression::WaitPeriod,
        until_ms: now_ms + wait_ms,
    })
}

/// What becomes of held actions now.
#[derive(Debug, PartialEq)]
enum Step {
    Keep,
    /// Held on, for a new reason until a new time.
    Become(Suppression, i64),
    Fire,
}

/// One step of held actions: the suppressor going into ALARM holds them for as long as it stays
/// there; leaving ALARM starts the extension period; a wait or extension period that ends with
/// the suppressor not in ALARM releases them.
fn step(deferred: &Deferred, suppressor_in_alarm: bool, extension_ms: i64, now_ms: i64) -> Step {
    match (deferred.by, suppressor_in_alarm) {
        (Suppression::Alarm, true) => Step::Keep,
        (Suppression::Alarm, false) if extension_ms <= 0 => Step::Fire,
        (Suppression::Alarm, false) => {
            Step::Become(Suppression::ExtensionPeriod, now_ms + extension_ms)
        }
        (_, true) => Step::Become(Suppression::Alarm, now_ms),
        (_, false) if now_ms >= deferred.until_ms => Step::Fire,
        (_, false) => Step::Keep,
    }
}

/// DescribeAlarms' `ActionsSuppressedBy` and `ActionsSuppressedReason` for held actions.
fn show_suppression(alarm: &mut wire::CompositeAlarm, deferred: Option<&Deferred>) {
    let suppressor = alarm.actions_suppressor.clone().unwrap_or_default();
    alarm.actions_suppressed_by = deferred.map(|d| d.by.wire().to_string());
    alarm.actions_suppressed_reason = deferred.map(|d| match d.by {
        Suppression::WaitPeriod => format!(
            "Actions suppressed while waiting for alarm {suppressor} to go into ALARM state, until {}",
            crate::common::iso(d.until_ms)
        ),
        Suppression::Alarm => format!("Actions suppressed by alarm {suppressor} in ALARM state"),
        Suppression::ExtensionPeriod => format!(
            "Actions suppressed after alarm {suppressor} left ALARM state, until {}",
            crate::common::iso(d.until_ms)
        ),
    });
}

/// Whether the composite's actions suppressor is in ALARM now (false without one).
async fn suppressor_in_alarm(
    cw: &Cloudwatch,
    partition: &str,
    record: &CompositeRecord,
) -> Result<bool, AwsError> {
    match record
        .alarm
        .actions_suppressor
        .as_deref()
        .and_then(|s| referenced_name(partition, s))
    {
        Some(s) => Ok(child(cw, partition, &s)
            .await?
            .is_some_and(|c| c.state == State::Alarm)),
        None => Ok(false),
    }
}

/// SetAlarmState on a composite: the state stays until a child changes state or the alarm is
/// put again, as in CloudWatch. Returns whether the state changed.
pub(crate) async fn set_state(
    cw: &Cloudwatch,
    partition: &str,
    name: &str,
    change: (State, String, String),
    now: i64,
) -> Result<bool, AwsError> {
    let (state, reason, reason_data) = change;
    let (fired, changed) = retry_on_conflict(cw.store(), || async {
        let Some((mut record, version)) =
            get_as::<CompositeRecord, _>(cw.store(), records::COMPOSITE, partition, name).await?
        else {
            return Err(crate::common::not_found(format!(
                "Alarm {name} does not exist."
            )));
        };
        if record.alarm.state_value.as_deref() == Some(state.wire()) {
            // Same state: only the reason changes; no transition, no actions.
            record.alarm.state_reason = Some(reason.clone());
            record.alarm.state_reason_data = Some(reason_data.clone()).filter(|d| !d.is_empty());
            record.alarm.state_updated_timestamp = Some(Timestamp::from_millis(now));
            let op = Op::put(
                records::COMPOSITE,
                partition,
                name,
                serde_json::to_value(&record).map_err(AwsError::internal)?,
                Expect::Version(version),
            );
            return Ok((vec![op], (None, false)));
        }
        let suppressor = suppressor_in_alarm(cw, partition, &record).await?;
        let (ops, fired) = transition(
            partition,
            &mut record,
            version,
            (state, reason.clone(), reason_data.clone()),
            suppressor,
            now,
        )?;
        Ok((ops, (fired, true)))
    })
    .await?;
    if let Some(t) = fired {
        cw.fire(t);
    }
    Ok(changed)
}

impl Cloudwatch {
    /// Judges the composite `name` on its children's current states; on a change of state,
    /// commits it (under the composite's version) and fires its actions. `trigger` is the
    /// child whose transition caused this evaluation, for the reason. Returns whether the state
    /// changed.
    pub(crate) async fn evaluate_composite(
        &self,
        partition: &str,
        name: &str,
        trigger: Option<&str>,
    ) -> Result<bool, AwsError> {
        let now = self.now_ms();
        let fired = retry_on_conflict(self.store(), || async {
            let Some((mut record, version)) =
                get_as::<CompositeRecord, _>(self.store(), records::COMPOSITE, partition, name)
                    .await?
            else {
                return Ok((Vec::new(), None));
            };
            let Some(rule) = record
                .alarm
                .alarm_rule
                .as_deref()
                .and_then(|t| rule::parse(t).ok())
            else {
                return Ok((Vec::new(), None));
            };
            let mut children = HashMap::new();
            for reference in rule.children() {
                if let Some(n) = referenced_name(partition, &reference)
                    && let Some(c) = child(self, partition, &n).await?
                {
                    children.insert(n, c);
                }
            }
            let judged = judge(partition, &rule, &children, trigger);
            let current = record
                .alarm
                .state_value
                .as_deref()
                .and_then(State::parse)
                .unwrap_or(State::InsufficientData);
            if judged.state == current {
                return Ok((Vec::new(), None));
            }
            let suppressor = suppressor_in_alarm(self, partition, &record).await?;
            let (ops, fired) = transition(
                partition,
                &mut record,
                version,
                (judged.state, judged.reason, judged.reason_data),
                suppressor,
                now,
            )?;
            Ok::<_, AwsError>((ops, Some(fired)))
        })
        .await?;
        match fired {
            Some(fired) => {
                if let Some(t) = fired {
                    self.fire(t);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// After `changed` (an alarm of either kind) changed state: re-evaluates the composites
    /// that name it, and the ones naming those that changed in turn. Errors are logged: the
    /// child's change is committed whatever its parents do; the evaluator catches up on its
    /// next tick (returns whether every evaluation ran).
    pub(crate) async fn alarm_changed(&self, partition: &str, changed: &str) -> bool {
        let complete = self.judge_parents(partition, changed).await;
        if !complete {
            self.composites_stale();
        }
        complete
    }

    async fn judge_parents(&self, partition: &str, changed: &str) -> bool {
        let composites = match all_composites(self, partition).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%partition, error = %e, "composite alarms could not be read");
                return false;
            }
        };
        if composites.is_empty() {
            return true;
        }
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        for (r, _) in &composites {
            let parent = r.alarm.alarm_name.clone().unwrap_or_default();
            for c in children_of(partition, &r.alarm) {
                parents.entry(c).or_default().push(parent.clone());
            }
        }
        let mut queue = VecDeque::from([changed.to_string()]);
        let mut evaluations = 0;
        let mut complete = true;
        while let Some(child) = queue.pop_front() {
            for parent in parents.get(&child).into_iter().flatten() {
                evaluations += 1;
                if evaluations > MAX_CASCADE {
                    tracing::warn!(%partition, "composite alarm evaluation cascade cut short");
                    return false;
                }
                match self
                    .evaluate_composite(partition, parent, Some(&child))
                    .await
                {
                    Ok(true) => queue.push_back(parent.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        complete = false;
                        tracing::warn!(%partition, alarm = %parent, error = %e, "composite alarm evaluation failed");
                    }
                }
            }
        }
        complete
    }

    /// Re-judges the composites of `partition` that have a child whose transition is not older
    /// than their own state, and their parents after any that moved: what catches up a change
    /// whose parents were never judged (berth stopped between the child's commit and its
    /// parents' evaluation, or that evaluation failed). A composite SetAlarmState moved after
    /// its children's last transitions keeps that state, as it would without the restart.
    /// Returns whether every evaluation ran.
    pub(crate) async fn catch_up_composites(&self, partition: &str) -> bool {
        let composites = match all_composites(self, partition).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%partition, error = %e, "composite alarms could not be read");
                return false;
            }
        };
        let mut complete = true;
        for (record, _) in composites {
            let updated_ms = record
                .alarm
                .state_updated_timestamp
                .map(Timestamp::to_millis)
                .unwrap_or(i64::MIN);
            let mut behind = false;
            for name in children_of(partition, &record.alarm) {
                match child(self, partition, &name).await {
                    Ok(Some(c)) if c.transitioned_ms >= updated_ms => {
                        behind = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Judged anyway: a failed read must not leave it behind.
                        tracing::warn!(%partition, alarm = %name, error = %e, "alarm could not be read");
                        behind = true;
                        break;
                    }
                }
            }
            if !behind {
                continue;
            }
            let name = record.alarm.alarm_name.unwrap_or_default();
            match self.evaluate_composite(partition, &name, None).await {
                Ok(true) => complete &= self.alarm_changed(partition, &name).await,
                Ok(false) => {}
                Err(e) => {
                    complete = false;
                    tracing::warn!(%partition, alarm = %name, error = %e, "composite alarm evaluation failed");
                }
            }
        }
        complete
    }

    /// Moves held composite actions of `partition` one step on (see [`step`]): fires those whose
    /// wait or extension period ended, with the actions the alarm has for that state now.
    pub(crate) async fn release_deferred(&self, partition: &str, now: i64) -> Result<(), AwsError> {
        for (record, _) in all_composites(self, partition).await? {
            if record.deferred.is_none() {
                continue;
            }
            let name = record.alarm.alarm_name.unwrap_or_default();
            let fired = retry_on_conflict(self.store(), || async {
                let Some((mut record, version)) = get_as::<CompositeRecord, _>(
                    self.store(),
                    records::COMPOSITE,
                    partition,
                    &name,
                )
                .await?
                else {
                    return Ok((Vec::new(), None));
                };
                let Some(deferred) = record.deferred.clone() else {
                    return Ok((Vec::new(), None));
                };
                let in_alarm = suppressor_in_alarm(self, partition, &record).await?;
                let extension_ms = i64::from(
                    record
                        .alarm
                        .actions_suppressor_extension_period
                        .unwrap_or(0),
                ) * 1000;
                let mut fired = match step(&deferred, in_alarm, extension_ms, now) {
                    Step::Keep => return Ok((Vec::new(), None)),
                    Step::Become(by, until_ms) => {
                        record.deferred = Some(Deferred {
                            by,
                            until_ms,
                            ..deferred
                        });
                        None
                    }
                    Step::Fire => {
                        record.deferred = None;
                        Some(deferred.transition)
                    }
                };
                show_suppression(&mut record.alarm, record.deferred.as_ref());
                // Disabled meanwhile: the held actions are dropped.
                if !record.alarm.actions_enabled.unwrap_or(true) {
                    fired = None;
                }
                let mut ops = vec![Op::put(
                    records::COMPOSITE,
                    partition,
                    &name,
                    serde_json::to_value(&record).map_err(AwsError::internal)?,
                    Expect::Version(version),
                )];
                if let Some(t) = &mut fired {
                    let state = State::parse(&t.new_state).unwrap_or(State::InsufficientData);
                    t.actions = actions_of(&record.alarm, state);
                    t.timestamp_ms = now;
                    for action in &t.actions {
                        ops.push(alarms::history_op(
                            partition,
                            &alarms::action_history(&name, "CompositeAlarm", action, now),
                        )?);
                    }
                }
                Ok::<_, AwsError>((ops, fired))
            })
            .await?;
            if let Some(t) = fired {
                self.fire(t);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_names_and_this_partitions_arns() {
        let p = "000000000000/us-east-1";
        assert_eq!(referenced_name(p, "a").as_deref(), Some("a"));
        assert_eq!(
            referenced_name(p, "arn:aws:cloudwatch:us-east-1:000000000000:alarm:a b").as_deref(),
            Some("a b")
        );
        assert_eq!(
            referenced_name(p, "arn:aws:cloudwatch:eu-west-1:000000000000:alarm:a"),
            None
        );
    }

    fn to(state: State) -> AlarmTransition {
        AlarmTransition {
            partition: "p".into(),
            alarm_name: "c".into(),
            alarm_arn: "arn".into(),
            old_state: "OK".into(),
            new_state: state.wire().into(),
            reason: "r".into(),
            actions: vec!["arn:aws:sns:us-east-1:000000000000:t".into()],
            timestamp_ms: 0,
            value: None,
            threshold: None,
        }
    }

    #[test]
    fn only_a_move_into_alarm_waits_for_the_suppressor() {
        let held = hold(to(State::Alarm), false, 60_000, 1_000).unwrap();
        assert_eq!((held.by, held.until_ms), (Suppression::WaitPeriod, 61_000));
        assert_eq!(hold(to(State::Ok), false, 60_000, 1_000), None);
        assert_eq!(hold(to(State::Alarm), false, 0, 1_000), None);
        // The suppressor in ALARM holds any transition's actions.
        assert_eq!(
            hold(to(State::Ok), true, 0, 1_000).map(|d| d.by),
            Some(Suppression::Alarm)
        );
    }

    #[test]
    fn held_actions_step_through_wait_alarm_and_extension() {
        let moved = |d: &Deferred, by, until_ms| Deferred {
            by,
            until_ms,
            ..d.clone()
        };
        let wait = hold(to(State::Alarm), false, 60_000, 0).unwrap();
        assert_eq!(step(&wait, false, 120_000, 59_999), Step::Keep);
        assert_eq!(step(&wait, false, 120_000, 60_000), Step::Fire);
        assert_eq!(
            step(&wait, true, 120_000, 30_000),
            Step::Become(Suppression::Alarm, 30_000),
            "the suppressor in ALARM holds the actions"
        );
        let by_alarm = moved(&wait, Suppression::Alarm, 30_000);
        // However long it stays in ALARM.
        assert_eq!(step(&by_alarm, true, 120_000, 10_000_000), Step::Keep);
        assert_eq!(
            step(&by_alarm, false, 120_000, 100_000),
            Step::Become(Suppression::ExtensionPeriod, 220_000),
            "leaving ALARM starts the extension period"
        );
        let extension = moved(&by_alarm, Suppression::ExtensionPeriod, 220_000);
        assert_eq!(step(&extension, false, 120_000, 219_999), Step::Keep);
        assert_eq!(step(&extension, false, 120_000, 220_000), Step::Fire);
        assert_eq!(
            step(&extension, true, 120_000, 150_000),
            Step::Become(Suppression::Alarm, 150_000)
        );
        // No extension: released as soon as the suppressor leaves ALARM.
        assert_eq!(step(&by_alarm, false, 0, 100_000), Step::Fire);
    }

    #[test]
    fn cycles_are_found_through_other_composites() {
        let graph: HashMap<String, Vec<String>> = [
            ("x".to_string(), vec!["y".to_string()]),
            ("y".to_string(), vec!["z".to_string(), "m".to_string()]),
            ("z".to_string(), vec!["x".to_string()]),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            cycle_through(&graph, "y", "x"),
            Some(vec!["y".to_string(), "z".to_string(), "x".to_string()])
        );
        assert_eq!(cycle_through(&graph, "m", "x"), None);
    }

    #[test]
    fn the_reason_names_the_child_that_moved() {
        let p = "000000000000/us-east-1";
        let rule = rule::parse("ALARM(a) AND NOT ALARM(b)").unwrap();
        let mk = |name: &str, state| Child {
            arn: alarm_arn(p, name),
            state,
            transitioned_ms: 1_691_153_686_138,
        };
        let children: HashMap<String, Child> = [
            ("a".to_string(), mk("a", State::Alarm)),
            ("b".to_string(), mk("b", State::Ok)),
        ]
        .into_iter()
        .collect();
        let j = judge(p, &rule, &children, Some("a"));
        assert_eq!(j.state, State::Alarm);
        assert_eq!(
            j.reason,
            "arn:aws:cloudwatch:us-east-1:000000000000:alarm:a transitioned to ALARM at Friday 04 August, 2023 12:54:46 UTC"
        );
        let data: serde_json::Value = serde_json::from_str(&j.reason_data).unwrap();
        assert_eq!(
            data["triggeringAlarms"],
            serde_json::json!([{"arn": alarm_arn(p, "a"),
                "state": {"value": "ALARM", "timestamp": "2023-08-04T12:54:46.138+0000"}}])
        );
    }
}
