//! Metric alarms: PutMetricAlarm, DescribeAlarmsForMetric, and the operations that see both
//! kinds of alarm (DescribeAlarms, DescribeAlarmHistory, DeleteAlarms, SetAlarmState,
//! Enable/DisableAlarmActions and the tag operations; composite alarms themselves live in
//! `composite.rs`), plus the transition write the evaluator shares with SetAlarmState.

use crate::Cloudwatch;
use crate::common::{self, combination, invalid, missing, not_found, validation};
use crate::composite;
use crate::data;
use crate::evaluate::{Comparison, Outcome, Rule, State, TreatMissing};
use crate::interface::AlarmTransition;
use crate::records::{self, AlarmRecord, CompositeRecord, history_key};
use crate::stats::{Statistic, is_extended};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::cloudwatch as wire;
use berth_store::{Expect, Op, Store, get_as, retry_on_conflict};

type Empty = serde_json::Map<String, serde_json::Value>;

const LIST_BATCH: usize = 1000;
const MAX_TAGS: usize = 50;

pub fn alarm_arn(partition: &str, name: &str) -> String {
    let (account, region) = partition.split_once('/').unwrap_or((partition, ""));
    format!("arn:aws:cloudwatch:{region}:{account}:alarm:{name}")
}

/// Every alarm of a partition, in name order.
pub async fn all_alarms(
    cw: &Cloudwatch,
    partition: &str,
) -> Result<Vec<(AlarmRecord, u64)>, AwsError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = cw
            .store()
            .list_as::<AlarmRecord>(records::ALARM, partition, "", after.as_deref(), LIST_BATCH)
            .await?;
        let done = page.len() < LIST_BATCH;
        after = page.last().map(|r| r.key.clone());
        out.extend(page.into_iter().map(|r| (r.value, r.version)));
        if done {
            return Ok(out);
        }
    }
}

pub(crate) fn history_item(
    alarm_name: &str,
    alarm_type: &str,
    kind: &str,
    summary: String,
    data: serde_json::Value,
    timestamp_ms: i64,
) -> wire::AlarmHistoryItem {
    wire::AlarmHistoryItem {
        alarm_name: Some(alarm_name.to_string()),
        alarm_type: Some(alarm_type.into()),
        timestamp: Some(Timestamp::from_millis(timestamp_ms)),
        history_item_type: Some(kind.into()),
        history_summary: Some(summary),
        history_data: Some(data.to_string()),
        ..Default::default()
    }
}

pub(crate) fn history_op(partition: &str, item: &wire::AlarmHistoryItem) -> Result<Op, AwsError> {
    let ts = item.timestamp.map(Timestamp::to_millis).unwrap_or_default();
    Ok(Op::put(
        records::HISTORY,
        partition,
        history_key(ts),
        serde_json::to_value(item).map_err(AwsError::internal)?,
        Expect::Absent,
    ))
}

/// The rule an alarm is evaluated by; `None` when the stored alarm lacks what evaluation needs.
pub fn rule_of(alarm: &wire::MetricAlarm) -> Option<Rule> {
    let evaluation_periods = usize::try_from(alarm.evaluation_periods?).ok()?;
    let period = match alarm.period {
        Some(p) => i64::from(p),
        None => {
            let returned = alarm
                .metrics
                .iter()
                .flatten()
                .find(|q| q.return_data.unwrap_or(true))?;
            i64::from(
                returned
                    .metric_stat
                    .as_ref()
                    .and_then(|s| s.period)
                    .or(returned.period)
                    .or_else(|| {
                        alarm
                            .metrics
                            .iter()
                            .flatten()
                            .find_map(|q| q.metric_stat.as_ref().and_then(|s| s.period))
                    })?,
            )
        }
    };
    Some(Rule {
        period_s: period,
        evaluation_periods,
        datapoints_to_alarm: alarm
            .datapoints_to_alarm
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(evaluation_periods),
        threshold: alarm.threshold?,
        comparison: Comparison::parse(alarm.comparison_operator.as_deref()?)?,
        treat_missing: alarm
            .treat_missing_data
            .as_deref()
            .and_then(TreatMissing::parse)
            .unwrap_or(TreatMissing::Missing),
        statistic: alarm.statistic.clone(),
    })
}

/// Writes a state change of `record` (read at `version`) with its history, and returns the
/// transition to fire when actions are enabled. The caller commits the ops.
pub fn transition(
    partition: &str,
    record: &mut AlarmRecord,
    version: u64,
    outcome: Outcome,
    now_ms: i64,
) -> Result<(Vec<Op>, Option<AlarmTransition>), AwsError> {
    let Outcome {
        state: new_state,
        reason,
        reason_data,
        value,
    } = outcome;
    let alarm = &mut record.alarm;
    let name = alarm.alarm_name.clone().unwrap_or_default();
    let old_state = alarm
        .state_value
        .clone()
        .unwrap_or_else(|| "INSUFFICIENT_DATA".into());
    let old_reason = alarm.state_reason.clone().unwrap_or_default();
    let new_wire = new_state.wire();
    alarm.state_value = Some(new_wire.into());
    alarm.state_reason = Some(reason.clone());
    alarm.state_reason_data = Some(reason_data.clone()).filter(|d| !d.is_empty());
    alarm.state_updated_timestamp = Some(Timestamp::from_millis(now_ms));
    alarm.state_transitioned_timestamp = Some(Timestamp::from_millis(now_ms));
    let state_item = state_history(
        &name,
        "MetricAlarm",
        (&old_state, &old_reason),
        (new_wire, &reason, &reason_data),
        now_ms,
    );
    let mut ops = vec![
        Op::put(
            records::ALARM,
            partition,
            &name,
            serde_json::to_value(&*record).map_err(AwsError::internal)?,
            Expect::Version(version),
        ),
        history_op(partition, &state_item)?,
    ];
    let alarm = &record.alarm;
    if !alarm.actions_enabled.unwrap_or(true) {
        return Ok((ops, None));
    }
    let actions = match new_state {
        State::Ok => alarm.ok_actions.clone(),
        State::Alarm => alarm.alarm_actions.clone(),
        State::InsufficientData => alarm.insufficient_data_actions.clone(),
    }
    .unwrap_or_default();
    for action in &actions {
        ops.push(history_op(
            partition,
            &action_history(&name, "MetricAlarm", action, now_ms),
        )?);
    }
    Ok((
        ops,
        Some(AlarmTransition {
            partition: partition.to_string(),
            alarm_name: name.clone(),
            alarm_arn: alarm.alarm_arn.clone().unwrap_or_default(),
            old_state,
            new_state: new_wire.into(),
            reason,
            actions,
            timestamp_ms: now_ms,
            value,
            threshold: alarm.threshold,
        }),
    ))
}

/// The history item of a state change: CloudWatch's summary and its `oldState`/`newState`
/// data (the reason data inlined as JSON). `old` is (state, reason); `new` is (state, reason,
/// reason data as JSON text).
pub(crate) fn state_history(
    name: &str,
    alarm_type: &str,
    old: (&str, &str),
    new: (&str, &str, &str),
    now_ms: i64,
) -> wire::AlarmHistoryItem {
    let (old_state, old_reason) = old;
    let (new_state, reason, reason_data) = new;
    let reason_data_json: serde_json::Value =
        serde_json::from_str(reason_data).unwrap_or(serde_json::Value::Null);
    let mut new_state_json = serde_json::json!({"stateValue": new_state, "stateReason": reason});
    if !reason_data_json.is_null() {
        new_state_json["stateReasonData"] = reason_data_json;
    }
    history_item(
        name,
        alarm_type,
        "StateUpdate",
        format!("Alarm updated from {old_state} to {new_state}"),
        serde_json::json!({
            "version": "1.0",
            "oldState": {"stateValue": old_state, "stateReason": old_reason},
            "newState": new_state_json,
        }),
        now_ms,
    )
}

/// The history item of one action run on a transition.
pub(crate) fn action_history(
    name: &str,
    alarm_type: &str,
    action: &str,
    now_ms: i64,
) -> wire::AlarmHistoryItem {
    history_item(
        name,
        alarm_type,
        "Action",
        format!("Successfully executed action {action}"),
        serde_json::json!({"actionState": "Succeeded", "notificationResource": action, "stateUpdateTimestamp": now_ms}),
        now_ms,
    )
}

/// The actions an alarm staying in ALARM fires again: its Application Auto Scaling policies,
/// when actions are enabled. Nothing is written: a repeat is not a state change.
pub fn repeat(
    partition: &str,
    record: &AlarmRecord,
    outcome: &Outcome,
    now_ms: i64,
) -> Option<AlarmTransition> {
    let alarm = &record.alarm;
    if outcome.state != State::Alarm || !alarm.actions_enabled.unwrap_or(true) {
        return None;
    }
    let actions: Vec<String> = alarm
        .alarm_actions
        .iter()
        .flatten()
        .filter(|a| a.starts_with("arn:aws:autoscaling:"))
        .cloned()
        .collect();
    if actions.is_empty() {
        return None;
    }
    Some(AlarmTransition {
        partition: partition.to_string(),
        alarm_name: alarm.alarm_name.clone().unwrap_or_default(),
        alarm_arn: alarm.alarm_arn.clone().unwrap_or_default(),
        old_state: "ALARM".into(),
        new_state: "ALARM".into(),
        reason: outcome.reason.clone(),
        actions,
        timestamp_ms: now_ms,
        value: outcome.value,
        threshold: alarm.threshold,
    })
}

pub(crate) fn check_actions(list: Option<&Vec<String>>, at: &str) -> Result<(), AwsError> {
    for action in list.into_iter().flatten() {
        if berth_model::Arn::parse(action).is_err() {
            return Err(invalid(format!("Invalid arn syntax: {action} (in {at}).")));
        }
    }
    Ok(())
}

fn check_alarm_period(period: i64, evaluation_periods: i64, at: &str) -> Result<(), AwsError> {
    if !(matches!(period, 10 | 30) || (period > 0 && period % 60 == 0)) {
        return Err(invalid(format!(
            "The parameter {at} must be 10, 30 or a multiple of 60."
        )));
    }
    let limit = if period >= 3600 { 7 * 86_400 } else { 86_400 };
    if period * evaluation_periods > limit {
        return Err(invalid(format!(
            "The product of EvaluationPeriods and {at} must not exceed {limit} seconds."
        )));
    }
    Ok(())
}

pub async fn put_metric_alarm(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::PutMetricAlarmInput,
) -> Result<Empty, AwsError> {
    let partition = ctx.partition();
    let name = req.alarm_name.clone().unwrap_or_default();
    let evaluation_periods = req
        .evaluation_periods
        .ok_or_else(|| missing("The parameter EvaluationPeriods is required."))?;
    let comparison = req
        .comparison_operator
        .clone()
        .ok_or_else(|| missing("The parameter ComparisonOperator is required."))?;
    if Comparison::parse(&comparison).is_none() || req.threshold_metric_id.is_some() {
        return Err(invalid(format!(
            "The comparison operator {comparison} needs an anomaly detection band, which berth does not support; use GreaterThanThreshold, GreaterThanOrEqualToThreshold, LessThanThreshold or LessThanOrEqualToThreshold with a Threshold."
        )));
    }
    if req.evaluation_criteria.is_some() {
        return Err(invalid(
            "EvaluationCriteria (PromQL alarms) is not supported by berth.",
        ));
    }
    // CloudWatch's model: required with EvaluationCriteria, refused with MetricName or Metrics.
    // berth refuses EvaluationCriteria, so no alarm it accepts may carry an interval: a metric
    // or metric-math alarm is evaluated once per period.
    if req.evaluation_interval.is_some() {
        return Err(combination(
            "The parameter EvaluationInterval can only be specified with EvaluationCriteria, not with MetricName or Metrics.",
        ));
    }
    let threshold = req
        .threshold
        .ok_or_else(|| missing("The parameter Threshold is required."))?;
    if !threshold.is_finite() {
        return Err(invalid("The parameter Threshold must be a finite number."));
    }
    if let Some(m) = req.datapoints_to_alarm
        && m > evaluation_periods
    {
        return Err(invalid(
            "DatapointsToAlarm must be less than or equal to EvaluationPeriods.",
        ));
    }
    if let Some(treat) = &req.treat_missing_data
        && TreatMissing::parse(treat).is_none()
    {
        return Err(invalid(format!(
            "The value {treat} for parameter TreatMissingData is invalid: it must be breaching, notBreaching, ignore or missing."
        )));
    }
    for (list, at) in [
        (&req.alarm_actions, "AlarmActions"),
        (&req.ok_actions, "OKActions"),
        (&req.insufficient_data_actions, "InsufficientDataActions"),
    ] {
        check_actions(list.as_ref(), at)?;
    }
    let mut dimensions = None;
    if let Some(metrics) = &req.metrics {
        if req.metric_name.is_some()
            || req.namespace.is_some()
            || req.statistic.is_some()
            || req.extended_statistic.is_some()
            || req.dimensions.is_some()
            || req.period.is_some()
            || req.unit.is_some()
        {
            return Err(combination(
                "The parameters Metrics and MetricName, Namespace, Statistic, ExtendedStatistic, Dimensions, Period or Unit are mutually exclusive.",
            ));
        }
        let queries = data::compile(metrics, "Metrics")?;
        let returned: Vec<&data::Query> = queries.iter().filter(|q| q.return_data).collect();
        if returned.len() != 1 {
            return Err(invalid(
                "Exactly one element of the metrics list should return data.",
            ));
        }
        let period = returned[0]
            .period
            .or_else(|| queries.iter().find_map(|q| q.period))
            .ok_or_else(|| missing("The parameter Metrics.member.N.Period is required."))?;
        check_alarm_period(period, i64::from(evaluation_periods), "Period")?;
    } else {
        if req.metric_name.is_none() {
            return Err(missing("The parameter MetricName is required."));
        }
        if req.namespace.is_none() {
            return Err(missing("The parameter Namespace is required."));
        }
        match (&req.statistic, &req.extended_statistic) {
            (Some(_), Some(_)) => {
                return Err(combination(
                    "The parameters Statistic and ExtendedStatistic are mutually exclusive and you have specified both.",
                ));
            }
            (None, None) => {
                return Err(missing(
                    "One of the parameters Statistic or ExtendedStatistic is required.",
                ));
            }
            (None, Some(ext)) => {
                let why = if is_extended(ext) {
                    "is not supported by berth, which keeps per-minute aggregates, not raw samples"
                } else {
                    "is invalid"
                };
                return Err(invalid(format!("The extended statistic {ext} {why}.")));
            }
            (Some(stat), None) => {
                if Statistic::parse(stat).is_none() {
                    return Err(invalid(format!(
                        "The value {stat} for parameter Statistic is invalid."
                    )));
                }
            }
        }
        let period = req
            .period
            .ok_or_else(|| missing("The parameter Period is required."))?;
        check_alarm_period(i64::from(period), i64::from(evaluation_periods), "Period")?;
        dimensions = Some(common::wire_dimensions(&common::dimensions(
            req.dimensions.as_ref(),
            "Dimensions",
        )?));
    }
    let tags: Vec<(String, String)> = tag_pairs(req.tags.as_deref());
    check_tags(&tags)?;
    let now = cw.now_ms();
    let arn = alarm_arn(&partition, &name);
    let config = wire::MetricAlarm {
        alarm_name: Some(name.clone()),
        alarm_arn: Some(arn),
        alarm_description: req.alarm_description.clone(),
        alarm_configuration_updated_timestamp: Some(Timestamp::from_millis(now)),
        actions_enabled: Some(req.actions_enabled.unwrap_or(true)),
        ok_actions: Some(req.ok_actions.clone().unwrap_or_default()),
        alarm_actions: Some(req.alarm_actions.clone().unwrap_or_default()),
        insufficient_data_actions: Some(req.insufficient_data_actions.clone().unwrap_or_default()),
        metric_name: req.metric_name.clone(),
        namespace: req.namespace.clone(),
        statistic: req.statistic.clone(),
        dimensions,
        period: req.period,
        unit: req.unit.clone(),
        evaluation_periods: Some(evaluation_periods),
        datapoints_to_alarm: req.datapoints_to_alarm,
        threshold: Some(threshold),
        comparison_operator: Some(comparison),
        treat_missing_data: req.treat_missing_data.clone(),
        evaluate_low_sample_count_percentile: req.evaluate_low_sample_count_percentile.clone(),
        metrics: req.metrics.clone(),
        ..Default::default()
    };
    retry_on_conflict(cw.store(), || async {
        let existing =
            get_as::<AlarmRecord, _>(cw.store(), records::ALARM, &partition, &name).await?;
        if cw
            .store()
            .get(records::COMPOSITE, &partition, &name)
            .await?
            .is_some()
        {
            return Err(validation(format!(
                "The alarm {name} is a composite alarm; PutMetricAlarm cannot replace it."
            )));
        }
        let mut alarm = config.clone();
        let (record, expect, summary, kind) = match existing {
            Some((old, version)) => {
                // An update keeps the state and the tags, as CloudWatch's does.
                alarm.state_value = old.alarm.state_value.clone();
                alarm.state_reason = old.alarm.state_reason.clone();
                alarm.state_reason_data = old.alarm.state_reason_data.clone();
                alarm.state_updated_timestamp = old.alarm.state_updated_timestamp;
                alarm.state_transitioned_timestamp = old.alarm.state_transitioned_timestamp;
                (
                    AlarmRecord {
                        alarm,
                        tags: old.tags,
                    },
                    Expect::Version(version),
                    format!("Alarm \"{name}\" updated"),
                    "Update",
                )
            }
            None => {
                alarm.state_value = Some("INSUFFICIENT_DATA".into());
                alarm.state_reason = Some("Unchecked: Initial alarm creation".into());
                alarm.state_updated_timestamp = Some(Timestamp::from_millis(now));
                alarm.state_transitioned_timestamp = Some(Timestamp::from_millis(now));
                (
                    AlarmRecord {
                        alarm,
                        tags: tags.clone(),
                    },
                    Expect::Absent,
                    format!("Alarm \"{name}\" created"),
                    "Create",
                )
            }
        };
        let shown = serde_json::to_value(&record.alarm).map_err(AwsError::internal)?;
        let data_key = if kind == "Create" {
            "createdAlarm"
        } else {
            "updatedAlarm"
        };
        let item = history_item(
            &name,
            "MetricAlarm",
            "ConfigurationUpdate",
            summary,
            serde_json::json!({"version": "1.0", "type": kind, data_key: shown}),
            now,
        );
        let ops = vec![
            Op::put(
                records::ALARM,
                &partition,
                &name,
                serde_json::to_value(&record).map_err(AwsError::internal)?,
                expect,
            ),
            history_op(&partition, &item)?,
            // Names are one namespace: no composite alarm may take it meanwhile.
            Op::delete(records::COMPOSITE, &partition, &name, Expect::Absent),
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
    Ok(Empty::new())
}

/// A request's tags as `(key, value)` pairs, how alarm records keep them.
pub(crate) fn tag_pairs(tags: Option<&[wire::Tag]>) -> Vec<(String, String)> {
    tags.into_iter()
        .flatten()
        .map(|t| {
            (
                t.key.clone().unwrap_or_default(),
                t.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

pub(crate) fn check_tags(tags: &[(String, String)]) -> Result<(), AwsError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "The collection Tags must not have a size greater than {MAX_TAGS}."
        )));
    }
    for (key, _) in tags {
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(
                "Tag keys beginning with 'aws:' are reserved for AWS use.",
            ));
        }
    }
    Ok(())
}

fn page_size(max_records: Option<i32>, default: usize) -> usize {
    max_records
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(default)
        .max(1)
}

/// One alarm of either kind, for the listings that show both.
enum Listed {
    Metric(Box<wire::MetricAlarm>),
    Composite(Box<wire::CompositeAlarm>),
}

impl Listed {
    fn name(&self) -> &str {
        match self {
            Listed::Metric(a) => a.alarm_name.as_deref(),
            Listed::Composite(a) => a.alarm_name.as_deref(),
        }
        .unwrap_or_default()
    }

    fn state(&self) -> Option<&String> {
        match self {
            Listed::Metric(a) => a.state_value.as_ref(),
            Listed::Composite(a) => a.state_value.as_ref(),
        }
    }

    fn actions(&self) -> [&Option<Vec<String>>; 3] {
        match self {
            Listed::Metric(a) => [
                &a.alarm_actions,
                &a.ok_actions,
                &a.insufficient_data_actions,
            ],
            Listed::Composite(a) => [
                &a.alarm_actions,
                &a.ok_actions,
                &a.insufficient_data_actions,
            ],
        }
    }
}

/// Which kinds `AlarmTypes` asks for: (metric, composite). `default` when it is absent.
fn wanted_types(types: Option<&Vec<String>>, default: (bool, bool)) -> (bool, bool) {
    match types {
        None => default,
        Some(types) => (
            types.iter().any(|t| t == "MetricAlarm"),
            types.iter().any(|t| t == "CompositeAlarm"),
        ),
    }
}

/// ChildrenOfAlarmName / ParentsOfAlarmName: the children's name, ARN, state and its time;
/// the parents' name and ARN, as CloudWatch answers them.
async fn related_alarms(
    cw: &Cloudwatch,
    partition: &str,
    req: &wire::DescribeAlarmsInput,
) -> Result<Vec<Listed>, AwsError> {
    let composites = composite::all_composites(cw, partition).await?;
    if let Some(parent) = &req.children_of_alarm_name {
        let Some((record, _)) = composites
            .iter()
            .find(|(r, _)| r.alarm.alarm_name.as_ref() == Some(parent))
        else {
            return Ok(Vec::new());
        };
        let children = composite::children_of(partition, &record.alarm);
        let mut out = Vec::new();
        for (r, _) in all_alarms(cw, partition).await? {
            if r.alarm
                .alarm_name
                .as_ref()
                .is_some_and(|n| children.contains(n))
            {
                out.push(Listed::Metric(Box::new(wire::MetricAlarm {
                    alarm_name: r.alarm.alarm_name,
                    alarm_arn: r.alarm.alarm_arn,
                    state_value: r.alarm.state_value,
                    state_updated_timestamp: r.alarm.state_updated_timestamp,
                    ..Default::default()
                })));
            }
        }
        for (r, _) in composites {
            if r.alarm
                .alarm_name
                .as_ref()
                .is_some_and(|n| children.contains(n))
            {
                out.push(Listed::Composite(Box::new(wire::CompositeAlarm {
                    alarm_name: r.alarm.alarm_name,
                    alarm_arn: r.alarm.alarm_arn,
                    state_value: r.alarm.state_value,
                    state_updated_timestamp: r.alarm.state_updated_timestamp,
                    ..Default::default()
                })));
            }
        }
        return Ok(out);
    }
    let child = req.parents_of_alarm_name.clone().unwrap_or_default();
    Ok(composites
        .into_iter()
        .filter(|(r, _)| composite::children_of(partition, &r.alarm).contains(&child))
        .map(|(r, _)| {
            Listed::Composite(Box::new(wire::CompositeAlarm {
                alarm_name: r.alarm.alarm_name,
                alarm_arn: r.alarm.alarm_arn,
                ..Default::default()
            }))
        })
        .collect())
}

pub async fn describe_alarms(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::DescribeAlarmsInput,
) -> Result<wire::DescribeAlarmsOutput, AwsError> {
    let partition = ctx.partition();
    if req.alarm_names.is_some() && req.alarm_name_prefix.is_some() {
        return Err(combination(
            "The parameters AlarmNames and AlarmNamePrefix are mutually exclusive and you have specified both.",
        ));
    }
    let about_relations =
        req.children_of_alarm_name.is_some() || req.parents_of_alarm_name.is_some();
    if about_relations {
        if req.children_of_alarm_name.is_some() && req.parents_of_alarm_name.is_some() {
            return Err(validation(
                "ChildrenOfAlarmName and ParentsOfAlarmName cannot be specified together.",
            ));
        }
        // Only paging (and the kinds to list) may go with them.
        if req.alarm_names.is_some()
            || req.alarm_name_prefix.is_some()
            || req.state_value.is_some()
            || req.action_prefix.is_some()
        {
            return Err(validation(
                "If you specify ChildrenOfAlarmName or ParentsOfAlarmName, you cannot specify any other parameters in the request except for MaxRecords and NextToken.",
            ));
        }
    }
    let binding = format!("cloudwatch.DescribeAlarms/{partition}");
    let after = match &req.next_token {
        Some(t) => Some(
            cw.tokens()
                .decode(&binding, t)
                .ok_or_else(common::invalid_token)?,
        ),
        None => None,
    };
    // Only metric alarms unless asked, as CloudWatch; the relations list both kinds.
    let (metric, composites) = wanted_types(req.alarm_types.as_ref(), (true, about_relations));
    let mut listed: Vec<Listed> = if about_relations {
        related_alarms(cw, &partition, &req).await?
    } else {
        let mut all = Vec::new();
        if metric {
            all.extend(
                all_alarms(cw, &partition)
                    .await?
                    .into_iter()
                    .map(|(r, _)| Listed::Metric(Box::new(r.alarm))),
            );
        }
        if composites {
            all.extend(
                composite::all_composites(cw, &partition)
                    .await?
                    .into_iter()
                    .map(|(r, _)| Listed::Composite(Box::new(r.alarm))),
            );
        }
        all
    };
    // Names are unique across both kinds, so the last name shown is the whole cursor.
    listed.sort_by(|a, b| a.name().cmp(b.name()));
    let mut matching = listed.into_iter().filter(|a| {
        let name = a.name();
        (match a {
            Listed::Metric(_) => metric,
            Listed::Composite(_) => composites,
        }) && after.as_deref().is_none_or(|after| name > after)
            && req
                .alarm_names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
            && req
                .alarm_name_prefix
                .as_ref()
                .is_none_or(|p| name.starts_with(p.as_str()))
            && req
                .state_value
                .as_ref()
                .is_none_or(|s| a.state() == Some(s))
            && req.action_prefix.as_ref().is_none_or(|p| {
                a.actions()
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|action| action.starts_with(p.as_str()))
            })
    });
    let size = page_size(req.max_records, 50);
    let page: Vec<Listed> = matching.by_ref().take(size).collect();
    let next_token = match (matching.next(), page.last()) {
        (Some(_), Some(last)) => Some(cw.tokens().encode(&binding, last.name())),
        _ => None,
    };
    let mut metric_alarms = Vec::new();
    let mut composite_alarms = Vec::new();
    for a in page {
        match a {
            Listed::Metric(m) => metric_alarms.push(*m),
            Listed::Composite(c) => composite_alarms.push(*c),
        }
    }
    Ok(wire::DescribeAlarmsOutput {
        composite_alarms: Some(composite_alarms),
        metric_alarms: Some(metric_alarms),
        next_token,
    })
}

fn same_dimensions(a: Option<&Vec<wire::Dimension>>, b: &[(String, String)]) -> bool {
    let mut left: Vec<(String, String)> = a
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d.name.clone().unwrap_or_default(),
                d.value.clone().unwrap_or_default(),
            )
        })
        .collect();
    left.sort();
    let mut right = b.to_vec();
    right.sort();
    left == right
}

pub async fn describe_alarms_for_metric(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::DescribeAlarmsForMetricInput,
) -> Result<wire::DescribeAlarmsForMetricOutput, AwsError> {
    let dimensions = common::dimensions(req.dimensions.as_ref(), "Dimensions")?;
    let namespace = req.namespace.clone().unwrap_or_default();
    let metric_name = req.metric_name.clone().unwrap_or_default();
    let matches_metric =
        |ns: Option<&String>, name: Option<&String>, dims: Option<&Vec<wire::Dimension>>| {
            ns == Some(&namespace)
                && name == Some(&metric_name)
                && (req.dimensions.is_none() || same_dimensions(dims, &dimensions))
        };
    let alarms = all_alarms(cw, &ctx.partition())
        .await?
        .into_iter()
        .map(|(r, _)| r.alarm)
        .filter(|a| {
            let direct = matches_metric(
                a.namespace.as_ref(),
                a.metric_name.as_ref(),
                a.dimensions.as_ref(),
            ) && req
                .statistic
                .as_ref()
                .is_none_or(|s| a.statistic.as_ref() == Some(s))
                && req.period.is_none_or(|p| a.period == Some(p))
                && req.unit.as_ref().is_none_or(|u| a.unit.as_ref() == Some(u));
            let in_math = a.metrics.iter().flatten().any(|q| {
                q.metric_stat.as_ref().is_some_and(|s| {
                    s.metric.as_ref().is_some_and(|m| {
                        matches_metric(
                            m.namespace.as_ref(),
                            m.metric_name.as_ref(),
                            m.dimensions.as_ref(),
                        )
                    }) && req
                        .statistic
                        .as_ref()
                        .is_none_or(|st| s.stat.as_ref() == Some(st))
                        && req.period.is_none_or(|p| s.period == Some(p))
                })
            });
            direct || in_math
        })
        .collect();
    Ok(wire::DescribeAlarmsForMetricOutput {
        metric_alarms: Some(alarms),
    })
}

pub async fn describe_alarm_history(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::DescribeAlarmHistoryInput,
) -> Result<wire::DescribeAlarmHistoryOutput, AwsError> {
    let partition = ctx.partition();
    let binding = format!("cloudwatch.DescribeAlarmHistory/{partition}");
    let after = match &req.next_token {
        Some(t) => Some(
            cw.tokens()
                .decode(&binding, t)
                .ok_or_else(common::invalid_token)?,
        ),
        None => None,
    };
    let ascending = req.scan_by.as_deref() == Some("TimestampAscending");
    let start = req.start_date.map(Timestamp::to_millis).unwrap_or(i64::MIN);
    let end = req.end_date.map(Timestamp::to_millis).unwrap_or(i64::MAX);
    let (metric, composites) = wanted_types(req.alarm_types.as_ref(), (true, false));
    let mut items: Vec<(String, wire::AlarmHistoryItem)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = cw
            .store()
            .list_as::<wire::AlarmHistoryItem>(
                records::HISTORY,
                &partition,
                "",
                cursor.as_deref(),
                LIST_BATCH,
            )
            .await?;
        let done = page.len() < LIST_BATCH;
        cursor = page.last().map(|r| r.key.clone());
        items.extend(page.into_iter().map(|r| (r.key, r.value)));
        if done {
            break;
        }
    }
    if !ascending {
        items.reverse();
    }
    let mut matching = items.into_iter().filter(|(key, item)| {
        let ts = item.timestamp.map(Timestamp::to_millis).unwrap_or_default();
        (match item.alarm_type.as_deref() {
            Some("CompositeAlarm") => composites,
            _ => metric,
        }) && after.as_deref().is_none_or(|a| {
            if ascending {
                key.as_str() > a
            } else {
                key.as_str() < a
            }
        }) && req
            .alarm_name
            .as_ref()
            .is_none_or(|n| item.alarm_name.as_ref() == Some(n))
            && req
                .history_item_type
                .as_ref()
                .is_none_or(|t| item.history_item_type.as_ref() == Some(t))
            && ts >= start
            && ts <= end
    });
    let size = page_size(req.max_records, 100);
    let page: Vec<(String, wire::AlarmHistoryItem)> = matching.by_ref().take(size).collect();
    let next_token = match (matching.next(), page.last()) {
        (Some(_), Some((key, _))) => Some(cw.tokens().encode(&binding, key)),
        _ => None,
    };
    Ok(wire::DescribeAlarmHistoryOutput {
        alarm_history_items: Some(page.into_iter().map(|(_, item)| item).collect()),
        next_token,
    })
}

pub async fn delete_alarms(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::DeleteAlarmsInput,
) -> Result<Empty, AwsError> {
    let partition = ctx.partition();
    let names = req.alarm_names.unwrap_or_default();
    retry_on_conflict(cw.store(), || async {
        let mut ops = Vec::new();
        let mut composites_deleted = 0;
        for name in &names {
            if let Some(record) = cw.store().get(records::ALARM, &partition, name).await? {
                ops.push(Op::delete(
                    records::ALARM,
                    &partition,
                    name,
                    Expect::Version(record.version),
                ));
            } else if let Some(record) = cw.store().get(records::COMPOSITE, &partition, name).await?
            {
                composites_deleted += 1;
                ops.push(Op::delete(
                    records::COMPOSITE,
                    &partition,
                    name,
                    Expect::Version(record.version),
                ));
            } else {
                return Err(not_found(format!("Alarm {name} does not exist.")));
            }
        }
        if composites_deleted > 1 {
            return Err(validation(
                "You can delete at most one composite alarm in one DeleteAlarms call.",
            ));
        }
        // An alarm a remaining composite names would leave its rule naming nothing.
        for (composite, _) in composite::all_composites(cw, &partition).await? {
            let parent = composite.alarm.alarm_name.clone().unwrap_or_default();
            if names.contains(&parent) {
                continue;
            }
            if let Some(child) = composite::children_of(&partition, &composite.alarm)
                .into_iter()
                .find(|c| names.contains(c))
            {
                return Err(validation(format!(
                    "Could not delete alarm {child} as it is referenced in the alarm rule of composite alarm {parent}."
                )));
            }
        }
        Ok((ops, ()))
    })
    .await?;
    Ok(Empty::new())
}

pub async fn set_alarm_state(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::SetAlarmStateInput,
) -> Result<Empty, AwsError> {
    let partition = ctx.partition();
    let name = req.alarm_name.clone().unwrap_or_default();
    let state = req
        .state_value
        .as_deref()
        .and_then(State::parse)
        .ok_or_else(|| missing("The parameter StateValue is required."))?;
    let reason = req.state_reason.clone().unwrap_or_default();
    let reason_data = match &req.state_reason_data {
        Some(text) => {
            if serde_json::from_str::<serde_json::Value>(text).is_err() {
                return Err(AwsError::client(
                    "InvalidFormat",
                    "The parameter StateReasonData must be valid JSON.",
                ));
            }
            text.clone()
        }
        None => String::new(),
    };
    let now = cw.now_ms();
    let is_composite = cw
        .store()
        .get(records::COMPOSITE, &partition, &name)
        .await?
        .is_some();
    let changed = if is_composite {
        crate::composite::set_state(
            cw,
            &partition,
            &name,
            (state, reason.clone(), reason_data.clone()),
            now,
        )
        .await?
    } else {
        let (fired, changed) = retry_on_conflict(cw.store(), || async {
            let Some((mut record, version)) =
                get_as::<AlarmRecord, _>(cw.store(), records::ALARM, &partition, &name).await?
            else {
                return Err(not_found(format!("Alarm {name} does not exist.")));
            };
            if record.alarm.state_value.as_deref() == Some(state.wire()) {
                // Same state: only the reason changes; no transition, no actions.
                record.alarm.state_reason = Some(reason.clone());
                record.alarm.state_reason_data =
                    Some(reason_data.clone()).filter(|d| !d.is_empty());
                record.alarm.state_updated_timestamp = Some(Timestamp::from_millis(now));
                let op = Op::put(
                    records::ALARM,
                    &partition,
                    &name,
                    serde_json::to_value(&record).map_err(AwsError::internal)?,
                    Expect::Version(version),
                );
                return Ok((vec![op], (None, false)));
            }
            let outcome = Outcome {
                state,
                reason: reason.clone(),
                reason_data: reason_data.clone(),
                value: None,
            };
            let (ops, fired) = transition(&partition, &mut record, version, outcome, now)?;
            Ok((ops, (fired, true)))
        })
        .await?;
        if let Some(t) = fired {
            cw.fire(t);
        }
        changed
    };
    if changed {
        cw.alarm_changed(&partition, &name).await;
    }
    Ok(Empty::new())
}

async fn set_actions_enabled(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    names: Vec<String>,
    enabled: bool,
) -> Result<Empty, AwsError> {
    let partition = ctx.partition();
    let now = cw.now_ms();
    retry_on_conflict(cw.store(), || async {
        let mut ops = Vec::new();
        for name in &names {
            // Names that do not exist are skipped, as CloudWatch does.
            let alarm_type = if let Some((mut record, version)) =
                get_as::<AlarmRecord, _>(cw.store(), records::ALARM, &partition, name).await?
            {
                record.alarm.actions_enabled = Some(enabled);
                record.alarm.alarm_configuration_updated_timestamp =
                    Some(Timestamp::from_millis(now));
                ops.push(Op::put(
                    records::ALARM,
                    &partition,
                    name,
                    serde_json::to_value(&record).map_err(AwsError::internal)?,
                    Expect::Version(version),
                ));
                "MetricAlarm"
            } else if let Some((mut record, version)) =
                get_as::<CompositeRecord, _>(cw.store(), records::COMPOSITE, &partition, name)
                    .await?
            {
                record.alarm.actions_enabled = Some(enabled);
                record.alarm.alarm_configuration_updated_timestamp =
                    Some(Timestamp::from_millis(now));
                ops.push(Op::put(
                    records::COMPOSITE,
                    &partition,
                    name,
                    serde_json::to_value(&record).map_err(AwsError::internal)?,
                    Expect::Version(version),
                ));
                "CompositeAlarm"
            } else {
                continue;
            };
            let item = history_item(
                name,
                alarm_type,
                "ConfigurationUpdate",
                format!("Alarm \"{name}\" updated"),
                serde_json::json!({"version": "1.0", "type": "Update", "updatedAlarm": {"actionsEnabled": enabled}}),
                now,
            );
            ops.push(history_op(&partition, &item)?);
        }
        Ok::<_, AwsError>((ops, ()))
    })
    .await?;
    Ok(Empty::new())
}

pub async fn enable_alarm_actions(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::EnableAlarmActionsInput,
) -> Result<Empty, AwsError> {
    set_actions_enabled(cw, ctx, req.alarm_names.unwrap_or_default(), true).await
}

pub async fn disable_alarm_actions(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::DisableAlarmActionsInput,
) -> Result<Empty, AwsError> {
    set_actions_enabled(cw, ctx, req.alarm_names.unwrap_or_default(), false).await
}

/// The alarm an ARN of this partition names.
fn alarm_name_of(partition: &str, arn: &str) -> Result<String, AwsError> {
    let prefix = alarm_arn(partition, "");
    arn.strip_prefix(&prefix)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::client(
                "ResourceNotFoundException",
                format!("The resource {arn} does not exist."),
            )
            .with_status(http::StatusCode::NOT_FOUND)
        })
}

async fn update_tags(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    arn: &str,
    change: impl Fn(&mut Vec<(String, String)>) -> Result<(), AwsError>,
) -> Result<Vec<(String, String)>, AwsError> {
    let partition = ctx.partition();
    let name = alarm_name_of(&partition, arn)?;
    retry_on_conflict(cw.store(), || async {
        // An alarm of either kind: the tags are all that changes.
        let (kind, mut value, version) =
            match cw.store().get(records::ALARM, &partition, &name).await? {
                Some(r) => (records::ALARM, r.value, r.version),
                None => match cw
                    .store()
                    .get(records::COMPOSITE, &partition, &name)
                    .await?
                {
                    Some(r) => (records::COMPOSITE, r.value, r.version),
                    None => {
                        return Err(AwsError::client(
                            "ResourceNotFoundException",
                            format!("The resource {arn} does not exist."),
                        )
                        .with_status(http::StatusCode::NOT_FOUND));
                    }
                },
            };
        let before: Vec<(String, String)> =
            serde_json::from_value(value["tags"].take()).unwrap_or_default();
        let mut tags = before.clone();
        change(&mut tags)?;
        check_tags(&tags)?;
        if tags == before {
            return Ok((Vec::new(), tags));
        }
        value["tags"] = serde_json::to_value(&tags).map_err(AwsError::internal)?;
        let op = Op::put(kind, &partition, &name, value, Expect::Version(version));
        Ok((vec![op], tags))
    })
    .await
}

pub async fn tag_resource(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::TagResourceInput,
) -> Result<wire::TagResourceOutput, AwsError> {
    let arn = req.resource_arn.clone().unwrap_or_default();
    let given: Vec<(String, String)> = tag_pairs(req.tags.as_deref());
    update_tags(cw, ctx, &arn, |tags| {
        for (key, value) in &given {
            match tags.iter_mut().find(|(k, _)| k == key) {
                Some(existing) => existing.1 = value.clone(),
                None => tags.push((key.clone(), value.clone())),
            }
        }
        Ok(())
    })
    .await?;
    Ok(wire::TagResourceOutput::default())
}

pub async fn untag_resource(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::UntagResourceInput,
) -> Result<wire::UntagResourceOutput, AwsError> {
    let arn = req.resource_arn.clone().unwrap_or_default();
    let keys = req.tag_keys.clone().unwrap_or_default();
    update_tags(cw, ctx, &arn, |tags| {
        tags.retain(|(k, _)| !keys.contains(k));
        Ok(())
    })
    .await?;
    Ok(wire::UntagResourceOutput::default())
}

pub async fn list_tags_for_resource(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::ListTagsForResourceInput,
) -> Result<wire::ListTagsForResourceOutput, AwsError> {
    let arn = req.resource_arn.clone().unwrap_or_default();
    let tags = update_tags(cw, ctx, &arn, |_| Ok(())).await?;
    Ok(wire::ListTagsForResourceOutput {
        tags: Some(
            tags.into_iter()
                .map(|(key, value)| wire::Tag {
                    key: Some(key),
                    value: Some(value),
                })
                .collect(),
        ),
    })
}
