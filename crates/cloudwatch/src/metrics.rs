//! PutMetricData, GetMetricStatistics and ListMetrics.

use crate::Cloudwatch;
use crate::common::{self, combination, invalid, missing};
use crate::interface::{Datapoint, Values};
use crate::series::SeriesKey;
use crate::stats::Statistic;
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::cloudwatch as wire;

/// PutMetricData's limits (CloudWatch quotas).
pub const MAX_METRICS_PER_CALL: usize = 1000;
pub const MAX_VALUES_PER_DATUM: usize = 150;
pub const MAX_PAST_MS: i64 = 14 * 86_400_000;
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
/// GetMetricStatistics answers at most this many datapoints.
pub const MAX_DATAPOINTS: i64 = 1440;
const LIST_PAGE: usize = 500;
/// Values outside ±2^360, and non-zero values closer to zero than 2^-360, are refused.
const MAX_MAGNITUDE: f64 = 2.348_542_582_773_833e108;
const MIN_MAGNITUDE: f64 = 4.258e-109;

type Empty = serde_json::Map<String, serde_json::Value>;

fn check_value(v: f64, at: &str) -> Result<(), AwsError> {
    let magnitude = v.abs();
    if !v.is_finite() || magnitude > MAX_MAGNITUDE || (v != 0.0 && magnitude < MIN_MAGNITUDE) {
        return Err(invalid(format!(
            "The value {v} for parameter {at} is invalid: values must be within ±2^360 and non-zero values at least 2^-360 in magnitude."
        )));
    }
    Ok(())
}

/// One datum of PutMetricData as the datapoints it stands for (`Values`/`Counts` give several).
fn datum_points(
    namespace: &str,
    datum: &wire::MetricDatum,
    n: usize,
    now_ms: i64,
) -> Result<Vec<Datapoint>, AwsError> {
    let at = format!("MetricData.member.{n}");
    let metric_name = datum
        .metric_name
        .clone()
        .ok_or_else(|| missing(format!("The parameter {at}.MetricName is required.")))?;
    let dimensions = common::dimensions(datum.dimensions.as_ref(), &format!("{at}.Dimensions"))?;
    let timestamp_ms = match datum.timestamp {
        Some(t) => t.to_millis(),
        None => now_ms,
    };
    if timestamp_ms < now_ms - MAX_PAST_MS {
        return Err(invalid(format!(
            "The parameter {at}.Timestamp must specify a time no more than two weeks in the past."
        )));
    }
    if timestamp_ms > now_ms + MAX_FUTURE_MS {
        return Err(invalid(format!(
            "The parameter {at}.Timestamp must specify a time no more than two hours in the future."
        )));
    }
    let storage_resolution = match datum.storage_resolution {
        None | Some(60) => 60,
        Some(1) => 1,
        Some(other) => {
            return Err(invalid(format!(
                "The value {other} for parameter {at}.StorageResolution is invalid: it must be 1 or 60."
            )));
        }
    };
    let given = [
        datum.value.is_some(),
        datum.statistic_values.is_some(),
        datum.values.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(combination(format!(
            "The parameters {at}.Value, {at}.StatisticValues and {at}.Values are mutually exclusive and you have specified more than one."
        )));
    }
    if datum.counts.is_some() && datum.values.is_none() {
        return Err(combination(format!(
            "The parameter {at}.Counts requires {at}.Values."
        )));
    }
    let mut values = Vec::new();
    if let Some(v) = datum.value {
        check_value(v, &format!("{at}.Value"))?;
        values.push(Values::One(v));
    } else if let Some(set) = &datum.statistic_values {
        let field = |v: Option<f64>, name: &str| {
            v.ok_or_else(|| {
                missing(format!(
                    "The parameter {at}.StatisticValues.{name} is required."
                ))
            })
        };
        let sample_count = field(set.sample_count, "SampleCount")?;
        let sum = field(set.sum, "Sum")?;
        let minimum = field(set.minimum, "Minimum")?;
        let maximum = field(set.maximum, "Maximum")?;
        for (v, name) in [
            (sample_count, "SampleCount"),
            (sum, "Sum"),
            (minimum, "Minimum"),
            (maximum, "Maximum"),
        ] {
            check_value(v, &format!("{at}.StatisticValues.{name}"))?;
        }
        if sample_count <= 0.0 {
            return Err(invalid(format!(
                "The parameter {at}.StatisticValues.SampleCount must be greater than 0."
            )));
        }
        if minimum > maximum {
            return Err(invalid(format!(
                "The parameter {at}.StatisticValues.Maximum must be greater than or equal to {at}.StatisticValues.Minimum."
            )));
        }
        values.push(Values::Set {
            sample_count,
            sum,
            minimum,
            maximum,
        });
    } else if let Some(list) = &datum.values {
        if list.len() > MAX_VALUES_PER_DATUM {
            return Err(invalid(format!(
                "The collection {at}.Values must not have a size greater than {MAX_VALUES_PER_DATUM}."
            )));
        }
        let counts = datum.counts.as_ref();
        if let Some(counts) = counts
            && counts.len() != list.len()
        {
            return Err(invalid(format!(
                "The parameters {at}.Values and {at}.Counts must be of the same size."
            )));
        }
        for (i, v) in list.iter().enumerate() {
            check_value(*v, &format!("{at}.Values.member.{}", i + 1))?;
            let count = counts.map_or(1.0, |c| c[i]);
            if !count.is_finite() || count < 0.0 {
                return Err(invalid(format!(
                    "The value {count} for parameter {at}.Counts.member.{} is invalid.",
                    i + 1
                )));
            }
            if count == 0.0 {
                continue;
            }
            values.push(if count == 1.0 {
                Values::One(*v)
            } else {
                Values::Set {
                    sample_count: count,
                    sum: v * count,
                    minimum: *v,
                    maximum: *v,
                }
            });
        }
    } else {
        return Err(missing(format!(
            "One of the parameters {at}.Value, {at}.StatisticValues or {at}.Values is required."
        )));
    }
    Ok(values
        .into_iter()
        .map(|values| Datapoint {
            namespace: namespace.to_string(),
            metric_name: metric_name.clone(),
            dimensions: dimensions.clone(),
            timestamp_ms,
            values,
            unit: datum.unit.clone().filter(|u| u != "None"),
            storage_resolution,
        })
        .collect())
}

pub async fn put_metric_data(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::PutMetricDataInput,
) -> Result<Empty, AwsError> {
    let namespace = req.namespace.unwrap_or_default();
    if namespace.starts_with("AWS/") {
        return Err(invalid(format!(
            "The value {namespace} for parameter Namespace is invalid: the AWS/ prefix is reserved for AWS metrics."
        )));
    }
    let mut data: Vec<&wire::MetricDatum> = req.metric_data.iter().flatten().collect();
    for entity in req.entity_metric_data.iter().flatten() {
        data.extend(entity.metric_data.iter().flatten());
    }
    if data.is_empty() {
        return Err(missing("The parameter MetricData is required."));
    }
    if data.len() > MAX_METRICS_PER_CALL {
        return Err(invalid(format!(
            "The collection MetricData must not have a size greater than {MAX_METRICS_PER_CALL}."
        )));
    }
    let now_ms = cw.now_ms();
    let mut points = Vec::with_capacity(data.len());
    for (i, datum) in data.iter().enumerate() {
        points.extend(datum_points(&namespace, datum, i + 1, now_ms)?);
    }
    cw.ingest(&ctx.partition(), points)
        .map_err(AwsError::internal)?;
    Ok(Empty::new())
}

/// The period rule of GetMetricStatistics, GetMetricData and alarms: 1, 5, 10, 30 or a multiple
/// of 60 seconds.
pub fn check_period(period: i32, at: &str) -> Result<i64, AwsError> {
    if matches!(period, 1 | 5 | 10 | 30) || (period > 0 && period % 60 == 0) {
        Ok(i64::from(period))
    } else {
        Err(invalid(format!(
            "The parameter {at} must be 1, 5, 10, 30 or a multiple of 60."
        )))
    }
}

pub fn time_range(
    start: Option<Timestamp>,
    end: Option<Timestamp>,
) -> Result<(i64, i64), AwsError> {
    let start = start
        .ok_or_else(|| missing("The parameter StartTime is required."))?
        .to_millis();
    let end = end
        .ok_or_else(|| missing("The parameter EndTime is required."))?
        .to_millis();
    if start >= end {
        return Err(invalid(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    Ok((start, end))
}

pub async fn get_metric_statistics(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::GetMetricStatisticsInput,
) -> Result<wire::GetMetricStatisticsOutput, AwsError> {
    let namespace = req.namespace.unwrap_or_default();
    let metric_name = req.metric_name.unwrap_or_default();
    let dimensions = common::dimensions(req.dimensions.as_ref(), "Dimensions")?;
    let period = check_period(req.period.unwrap_or(0), "Period")?;
    let (start, end) = time_range(req.start_time, req.end_time)?;
    let statistics = req.statistics.unwrap_or_default();
    let extended = req.extended_statistics.unwrap_or_default();
    match (statistics.is_empty(), extended.is_empty()) {
        (true, true) => {
            return Err(missing(
                "Must specify either Statistics or ExtendedStatistics.",
            ));
        }
        (false, false) => {
            return Err(combination(
                "The parameters Statistics and ExtendedStatistics are mutually exclusive and you have specified both.",
            ));
        }
        _ => {}
    }
    if let Some(name) = extended.first() {
        return Err(invalid(format!(
            "The extended statistic {name} is not supported by berth, which keeps per-minute aggregates (SampleCount, Sum, Minimum, Maximum), not raw samples."
        )));
    }
    let statistics: Vec<Statistic> = statistics
        .iter()
        .map(|s| {
            Statistic::parse(s).ok_or_else(|| {
                invalid(format!(
                    "The value {s} for parameter Statistics is invalid."
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let requested = (end - start).div_euclid(period * 1000) + 1;
    if requested > MAX_DATAPOINTS {
        return Err(combination(format!(
            "You have requested up to {requested} datapoints, which exceeds the limit of {MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
        )));
    }
    let key = SeriesKey::new(&namespace, &metric_name, &dimensions);
    let found = cw
        .series()
        .buckets(&ctx.partition(), &key, start, end, period);
    let unit_matches = match (&req.unit, &found.unit) {
        (None, _) => true,
        (Some(want), Some(have)) => want == have,
        (Some(want), None) => want == "None",
    };
    let datapoints = if unit_matches {
        found
            .buckets
            .iter()
            .map(|(ts, agg)| {
                let mut point = wire::Datapoint {
                    timestamp: Some(Timestamp::from_millis(*ts)),
                    unit: found.unit.clone(),
                    ..Default::default()
                };
                for stat in &statistics {
                    let value = Some(agg.statistic(*stat));
                    match stat {
                        Statistic::SampleCount => point.sample_count = value,
                        Statistic::Average => point.average = value,
                        Statistic::Sum => point.sum = value,
                        Statistic::Minimum => point.minimum = value,
                        Statistic::Maximum => point.maximum = value,
                    }
                }
                point
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(wire::GetMetricStatisticsOutput {
        label: Some(metric_name),
        datapoints: Some(datapoints),
    })
}

pub async fn list_metrics(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::ListMetricsInput,
) -> Result<wire::ListMetricsOutput, AwsError> {
    let partition = ctx.partition();
    let binding = format!("cloudwatch.ListMetrics/{partition}");
    let after: Option<SeriesKey> = match &req.next_token {
        Some(token) => {
            // ListMetrics declares no InvalidNextToken: a bad token is a bad parameter value.
            let bad_token = || invalid("The value for parameter NextToken is not valid.");
            let position = cw.tokens().decode(&binding, token).ok_or_else(bad_token)?;
            let (namespace, metric_name, dimensions): (String, String, Vec<(String, String)>) =
                serde_json::from_str(&position).map_err(|_| bad_token())?;
            Some(SeriesKey {
                namespace,
                metric_name,
                dimensions,
            })
        }
        None => None,
    };
    let filters: Vec<(String, Option<String>)> = req
        .dimensions
        .iter()
        .flatten()
        .map(|f| (f.name.clone().unwrap_or_default(), f.value.clone()))
        .collect();
    let active_since = match req.recently_active.as_deref() {
        Some(_) => cw.now_ms() - 3 * 3_600_000,
        None => i64::MIN,
    };
    let mut matching = cw.series().list(&partition).into_iter().filter(|s| {
        let key = &s.key;
        after.as_ref().is_none_or(|a| key > a)
            && req.namespace.as_ref().is_none_or(|n| *n == key.namespace)
            && req
                .metric_name
                .as_ref()
                .is_none_or(|n| *n == key.metric_name)
            && filters.iter().all(|(name, value)| {
                key.dimensions
                    .iter()
                    .any(|(n, v)| n == name && value.as_ref().is_none_or(|want| want == v))
            })
            && s.last_ms >= active_since
    });
    let page: Vec<_> = matching.by_ref().take(LIST_PAGE).collect();
    let next_token = match (matching.next(), page.last()) {
        (Some(_), Some(last)) => {
            let position = serde_json::to_string(&(
                &last.key.namespace,
                &last.key.metric_name,
                &last.key.dimensions,
            ))
            .map_err(AwsError::internal)?;
            Some(cw.tokens().encode(&binding, &position))
        }
        _ => None,
    };
    Ok(wire::ListMetricsOutput {
        metrics: Some(page.iter().map(|s| common::wire_metric(&s.key)).collect()),
        next_token,
        owning_accounts: None,
    })
}
