//! GetMetricData and the metric-data queries it shares with metric-math alarms.

use crate::Cloudwatch;
use crate::common::{self, combination, invalid, missing};
use crate::math::{self, Env, Series, Value};
use crate::metrics::{check_period, time_range};
use crate::series::SeriesKey;
use crate::stats::{Statistic, is_extended};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::Timestamp;
use berth_shapes::cloudwatch as wire;
use std::collections::{BTreeMap, HashMap};

pub const MAX_QUERIES: usize = 500;
pub const DEFAULT_MAX_DATAPOINTS: usize = 100_800;

#[derive(Debug, Clone)]
pub enum Source {
    Stat {
        key: SeriesKey,
        period: i64,
        stat: Statistic,
        unit: Option<String>,
    },
    Expression(math::Expr),
}

#[derive(Debug, Clone)]
pub struct Query {
    pub id: String,
    pub source: Source,
    pub label: String,
    pub return_data: bool,
    /// The period of a metric stat, or the one an expression query gives.
    pub period: Option<i64>,
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks and compiles wire queries (`at` names the list in messages: `MetricDataQueries` or
/// `Metrics`).
pub fn compile(list: &[wire::MetricDataQuery], at: &str) -> Result<Vec<Query>, AwsError> {
    if list.is_empty() {
        return Err(missing(format!("The parameter {at} is required.")));
    }
    if list.len() > MAX_QUERIES {
        return Err(invalid(format!(
            "The collection {at} must not have a size greater than {MAX_QUERIES}."
        )));
    }
    let mut out: Vec<Query> = Vec::with_capacity(list.len());
    for (i, q) in list.iter().enumerate() {
        let here = format!("{at}.member.{}", i + 1);
        let id = q.id.clone().unwrap_or_default();
        if !valid_id(&id) {
            return Err(invalid(format!(
                "The value {id} for parameter {here}.Id is invalid: it must start with a lowercase letter and contain only letters, numbers and underscores."
            )));
        }
        if out.iter().any(|o| o.id == id) {
            return Err(invalid(format!(
                "The value {id} for parameter {here}.Id is used more than once."
            )));
        }
        let (source, label, period) = match (&q.metric_stat, &q.expression) {
            (Some(_), Some(_)) => {
                return Err(combination(format!(
                    "The parameters {here}.MetricStat and {here}.Expression are mutually exclusive and you have specified both."
                )));
            }
            (None, None) => {
                return Err(missing(format!(
                    "One of the parameters {here}.MetricStat or {here}.Expression is required."
                )));
            }
            (Some(stat), None) => {
                let metric = stat.metric.as_ref().ok_or_else(|| {
                    missing(format!(
                        "The parameter {here}.MetricStat.Metric is required."
                    ))
                })?;
                let namespace = metric.namespace.clone().ok_or_else(|| {
                    missing(format!(
                        "The parameter {here}.MetricStat.Metric.Namespace is required."
                    ))
                })?;
                let metric_name = metric.metric_name.clone().ok_or_else(|| {
                    missing(format!(
                        "The parameter {here}.MetricStat.Metric.MetricName is required."
                    ))
                })?;
                let dimensions = common::dimensions(
                    metric.dimensions.as_ref(),
                    &format!("{here}.MetricStat.Metric.Dimensions"),
                )?;
                let period = check_period(
                    stat.period.unwrap_or(0),
                    &format!("{here}.MetricStat.Period"),
                )?;
                let name = stat.stat.clone().unwrap_or_default();
                let parsed = Statistic::parse(&name).ok_or_else(|| {
                    if is_extended(&name) {
                        invalid(format!(
                            "The statistic {name} in {here}.MetricStat.Stat is not supported by berth, which keeps per-minute aggregates, not raw samples."
                        ))
                    } else {
                        invalid(format!(
                            "The value {name} for parameter {here}.MetricStat.Stat is invalid."
                        ))
                    }
                })?;
                (
                    Source::Stat {
                        key: SeriesKey::new(&namespace, &metric_name, &dimensions),
                        period,
                        stat: parsed,
                        unit: stat.unit.clone(),
                    },
                    q.label.clone().unwrap_or(metric_name),
                    Some(period),
                )
            }
            (None, Some(text)) => {
                let expr = math::parse(text)
                    .map_err(|e| invalid(format!("Error in expression {id}: {e}")))?;
                let period = match q.period {
                    Some(p) => Some(check_period(p, &format!("{here}.Period"))?),
                    None => None,
                };
                (
                    Source::Expression(expr),
                    q.label.clone().unwrap_or_else(|| id.clone()),
                    period,
                )
            }
        };
        out.push(Query {
            id,
            source,
            label,
            return_data: q.return_data.unwrap_or(true),
            period,
        });
    }
    // Every id an expression names exists, and no expression depends on itself.
    let index: HashMap<&str, usize> = out
        .iter()
        .enumerate()
        .map(|(i, q)| (q.id.as_str(), i))
        .collect();
    for q in &out {
        if let Source::Expression(expr) = &q.source {
            let mut names = Vec::new();
            math::references(expr, &mut names);
            for name in names {
                if !index.contains_key(name.as_str()) {
                    return Err(invalid(format!(
                        "Error in expression {}: Unrecognized metric or expression id {name}",
                        q.id
                    )));
                }
            }
        }
    }
    for start in 0..out.len() {
        let mut stack = vec![(start, 0usize)];
        let mut seen = vec![false; out.len()];
        while let Some((at_query, depth)) = stack.pop() {
            if depth > out.len() {
                return Err(invalid(format!(
                    "Error in expression {}: Circular dependency between expressions",
                    out[start].id
                )));
            }
            if let Source::Expression(expr) = &out[at_query].source {
                let mut names = Vec::new();
                math::references(expr, &mut names);
                for name in names {
                    let next = index[name.as_str()];
                    if next == start {
                        return Err(invalid(format!(
                            "Error in expression {}: Circular dependency between expressions",
                            out[start].id
                        )));
                    }
                    if !seen[next] {
                        seen[next] = true;
                        stack.push((next, depth + 1));
                    }
                }
            }
        }
    }
    Ok(out)
}

struct Evaluation<'a> {
    cw: &'a Cloudwatch,
    partition: &'a str,
    queries: &'a [Query],
    start_ms: i64,
    end_ms: i64,
    done: HashMap<usize, Value>,
}

impl Evaluation<'_> {
    fn by_id(&self, id: &str) -> Option<usize> {
        self.queries.iter().position(|q| q.id == id)
    }

    fn value(&mut self, index: usize) -> Result<Value, String> {
        if let Some(v) = self.done.get(&index) {
            return Ok(v.clone());
        }
        let query = &self.queries[index];
        let value = match &query.source {
            Source::Stat {
                key,
                period,
                stat,
                unit,
            } => {
                let found = self.cw.series().buckets(
                    self.partition,
                    key,
                    self.start_ms,
                    self.end_ms,
                    *period,
                );
                let unit_matches = unit
                    .as_ref()
                    .is_none_or(|u| found.unit.as_deref().unwrap_or("None") == u);
                let series: Series = if unit_matches {
                    found
                        .buckets
                        .iter()
                        .map(|(t, agg)| (*t, agg.statistic(*stat)))
                        .collect()
                } else {
                    Series::new()
                };
                Value::Series(series)
            }
            Source::Expression(expr) => {
                let expr = expr.clone();
                math::eval(&expr, self)?
            }
        };
        self.done.insert(index, value.clone());
        Ok(value)
    }

    /// Every timestamp a metric stat of the request has: where a scalar result is shown.
    fn grid(&mut self) -> Result<Vec<i64>, String> {
        let mut all = std::collections::BTreeSet::new();
        for i in 0..self.queries.len() {
            if matches!(self.queries[i].source, Source::Stat { .. })
                && let Value::Series(s) = self.value(i)?
            {
                all.extend(s.keys().copied());
            }
        }
        Ok(all.into_iter().collect())
    }
}

impl Env for Evaluation<'_> {
    fn query(&mut self, id: &str) -> Result<Value, String> {
        let index = self
            .by_id(id)
            .ok_or_else(|| format!("Unrecognized metric or expression id {id}"))?;
        self.value(index)
    }

    fn metrics(&mut self, filter: Option<&str>) -> Result<Vec<Series>, String> {
        let mut out = Vec::new();
        for i in 0..self.queries.len() {
            let q = &self.queries[i];
            if matches!(q.source, Source::Stat { .. })
                && filter.is_none_or(|f| q.id.contains(f))
                && let Value::Series(s) = self.value(i)?
            {
                out.push(s);
            }
        }
        Ok(out)
    }
}

/// The time series of every query, in query order.
pub fn run(
    cw: &Cloudwatch,
    partition: &str,
    queries: &[Query],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Series>, AwsError> {
    let mut evaluation = Evaluation {
        cw,
        partition,
        queries,
        start_ms,
        end_ms,
        done: HashMap::new(),
    };
    let mut out = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let value = evaluation
            .value(i)
            .map_err(|e| invalid(format!("Error in expression {}: {e}", q.id)))?;
        out.push(match value {
            Value::Series(s) => s,
            Value::Scalar(v) => {
                let grid = evaluation
                    .grid()
                    .map_err(|e| invalid(format!("Error in expression {}: {e}", q.id)))?;
                if v.is_finite() {
                    grid.into_iter().map(|t| (t, v)).collect()
                } else {
                    BTreeMap::new()
                }
            }
            Value::Array(_) => {
                return Err(invalid(format!(
                    "Error in expression {}: berth supports expressions that give one time series or a number; wrap an array in SUM, AVG, MIN or MAX.",
                    q.id
                )));
            }
        });
    }
    Ok(out)
}

pub async fn get_metric_data(
    cw: &Cloudwatch,
    ctx: &RequestContext,
    req: wire::GetMetricDataInput,
) -> Result<wire::GetMetricDataOutput, AwsError> {
    let partition = ctx.partition();
    let queries = compile(
        req.metric_data_queries.as_deref().unwrap_or_default(),
        "MetricDataQueries",
    )?;
    if !queries.iter().any(|q| q.return_data) {
        return Err(invalid(
            "At least one query in MetricDataQueries must have ReturnData set to true.",
        ));
    }
    let (start, end) = time_range(req.start_time, req.end_time)?;
    let max_datapoints = match req.max_datapoints {
        Some(n) if n <= 0 => {
            return Err(invalid(
                "The parameter MaxDatapoints must be greater than 0.",
            ));
        }
        Some(n) => n as usize,
        None => DEFAULT_MAX_DATAPOINTS,
    };
    let descending = req.scan_by.as_deref() != Some("TimestampAscending");
    let binding = format!("cloudwatch.GetMetricData/{partition}/{start}/{end}");
    let (mut result_at, mut offset) = match &req.next_token {
        Some(token) => {
            let position = cw
                .tokens()
                .decode(&binding, token)
                .ok_or_else(common::invalid_token)?;
            let (r, o) = position.split_once(':').ok_or_else(common::invalid_token)?;
            (
                r.parse::<usize>().map_err(|_| common::invalid_token())?,
                o.parse::<usize>().map_err(|_| common::invalid_token())?,
            )
        }
        None => (0, 0),
    };
    let series = run(cw, &partition, &queries, start, end)?;
    let returned: Vec<(&Query, Series)> = queries
        .iter()
        .zip(series)
        .filter(|(q, _)| q.return_data)
        .collect();
    let mut budget = max_datapoints;
    let mut results = Vec::new();
    let mut next_token = None;
    while result_at < returned.len() {
        let (query, series) = &returned[result_at];
        let mut points: Vec<(i64, f64)> = series.iter().map(|(t, v)| (*t, *v)).collect();
        if descending {
            points.reverse();
        }
        let rest = &points[offset.min(points.len())..];
        let take = rest.len().min(budget);
        budget -= take;
        let complete = take == rest.len();
        results.push(wire::MetricDataResult {
            id: Some(query.id.clone()),
            label: Some(query.label.clone()),
            timestamps: Some(
                rest[..take]
                    .iter()
                    .map(|(t, _)| Timestamp::from_millis(*t))
                    .collect(),
            ),
            values: Some(rest[..take].iter().map(|(_, v)| *v).collect()),
            status_code: Some(if complete { "Complete" } else { "PartialData" }.into()),
            messages: Some(Vec::new()),
        });
        if !complete {
            next_token = Some(
                cw.tokens()
                    .encode(&binding, &format!("{result_at}:{}", offset + take)),
            );
            break;
        }
        result_at += 1;
        offset = 0;
        if budget == 0 && result_at < returned.len() {
            next_token = Some(cw.tokens().encode(&binding, &format!("{result_at}:0")));
            break;
        }
    }
    Ok(wire::GetMetricDataOutput {
        metric_data_results: Some(results),
        next_token,
        messages: Some(Vec::new()),
    })
}
