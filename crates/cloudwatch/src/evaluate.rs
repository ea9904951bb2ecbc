//! Alarm evaluation as a pure function of the alarm's rule, the datapoints of its evaluation
//! range and the time: no store, no clock, no I/O.
//!
//! CloudWatch's rules, as berth applies them:
//! - the evaluation range is the `EvaluationPeriods` (N) complete periods before `now`, periods
//!   aligned on the epoch (the period in progress is not judged until it ends);
//! - a period with a value is breaching when `value <op> threshold`;
//! - a period without one counts as breaching (`breaching`), not breaching (`notBreaching`), or
//!   is left out (`missing`, `ignore`);
//! - when nothing is left: `missing` → INSUFFICIENT_DATA, `ignore` → the current state;
//! - otherwise ALARM when at least `DatapointsToAlarm` (M) periods breach — or, when fewer than M
//!   periods are present, when all present ones breach (CloudWatch's "missing data" table: with 3
//!   of 3, `- X -` is ALARM and `0 - -` is OK) — else OK.

use crate::common::{iso, number, short_time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    Alarm,
    InsufficientData,
}

impl State {
    pub fn wire(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "OK" => State::Ok,
            "ALARM" => State::Alarm,
            "INSUFFICIENT_DATA" => State::InsufficientData,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanOrEqual,
    GreaterThan,
    LessThan,
    LessThanOrEqual,
}

impl Comparison {
    pub fn parse(s: &str) -> Option<Comparison> {
        Some(match s {
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqual,
            "GreaterThanThreshold" => Comparison::GreaterThan,
            "LessThanThreshold" => Comparison::LessThan,
            "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqual,
            _ => return None,
        })
    }

    fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanOrEqual => value >= threshold,
            Comparison::GreaterThan => value > threshold,
            Comparison::LessThan => value < threshold,
            Comparison::LessThanOrEqual => value <= threshold,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Comparison::GreaterThanOrEqual => "greater than or equal to",
            Comparison::GreaterThan => "greater than",
            Comparison::LessThan => "less than",
            Comparison::LessThanOrEqual => "less than or equal to",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreatMissing {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl TreatMissing {
    pub fn parse(s: &str) -> Option<TreatMissing> {
        Some(match s {
            "missing" => TreatMissing::Missing,
            "ignore" => TreatMissing::Ignore,
            "breaching" => TreatMissing::Breaching,
            "notBreaching" => TreatMissing::NotBreaching,
            _ => return None,
        })
    }
}

/// What an alarm judges by.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub period_s: i64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub threshold: f64,
    pub comparison: Comparison,
    pub treat_missing: TreatMissing,
    /// For the reason data: the statistic, or `None` for a metric-math alarm.
    pub statistic: Option<String>,
}

impl Rule {
    /// The starts of the periods of the evaluation range at `now_ms`, oldest first.
    pub fn range(&self, now_ms: i64) -> Vec<i64> {
        let period_ms = self.period_s.max(1) * 1000;
        let end = now_ms.div_euclid(period_ms) * period_ms;
        (1..=self.evaluation_periods as i64)
            .rev()
            .map(|k| end - k * period_ms)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub state: State,
    pub reason: String,
    /// `StateReasonData`, JSON text.
    pub reason_data: String,
    /// The newest value evaluated, if any.
    pub value: Option<f64>,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Judges the evaluation range: `datapoints` holds one entry per period of `rule.range(now)`,
/// oldest first, with the period's value when it has one.
pub fn evaluate(
    rule: &Rule,
    datapoints: &[(i64, Option<f64>)],
    current: State,
    now_ms: i64,
) -> Outcome {
    let n = datapoints.len();
    let m = rule.datapoints_to_alarm.min(n.max(1));
    // Per period: Some(breaching) when it takes part in the decision.
    let judged: Vec<Option<bool>> = datapoints
        .iter()
        .map(|(_, v)| match (v, rule.treat_missing) {
            (Some(v), _) => Some(rule.comparison.breaches(*v, rule.threshold)),
            (None, TreatMissing::Breaching) => Some(true),
            (None, TreatMissing::NotBreaching) => Some(false),
            (None, _) => None,
        })
        .collect();
    let present = judged.iter().flatten().count();
    let breaching = judged.iter().flatten().filter(|b| **b).count();
    let values: Vec<(i64, f64)> = datapoints
        .iter()
        .filter_map(|(t, v)| v.map(|v| (*t, v)))
        .collect();
    let newest = values.last().map(|(_, v)| *v);
    let reason_data = reason_data(rule, datapoints, now_ms);
    if present == 0 {
        let state = match rule.treat_missing {
            TreatMissing::Ignore => current,
            _ => State::InsufficientData,
        };
        let reason = format!(
            "Insufficient Data: {} unknown.",
            plural(n, "datapoint was", "datapoints were")
        );
        return Outcome {
            state,
            reason,
            reason_data,
            value: newest,
        };
    }
    let alarm = if present < m {
        breaching == present
    } else {
        breaching >= m
    };
    let state = if alarm { State::Alarm } else { State::Ok };
    let shown: Vec<(i64, f64)> = values
        .iter()
        .rev()
        .filter(|(_, v)| rule.comparison.breaches(*v, rule.threshold) == alarm)
        .copied()
        .collect();
    let listed = shown
        .iter()
        .map(|(t, v)| format!("{} ({})", number(*v), short_time(*t)))
        .collect::<Vec<_>>()
        .join(", ");
    let counted = if alarm {
        breaching
    } else {
        present - breaching
    };
    let words = rule.comparison.words();
    let negation = if alarm { "" } else { "not " };
    let verb = if counted == 1 { "was" } else { "were" };
    let threshold = number(rule.threshold);
    let reason = if n == 1 {
        format!(
            "Threshold Crossed: 1 datapoint [{listed}] {verb} {negation}{words} the threshold ({threshold})."
        )
    } else {
        let transition = if alarm { "OK -> ALARM" } else { "ALARM -> OK" };
        let minimum = if alarm { m } else { 1 };
        format!(
            "Threshold Crossed: {counted} out of the last {n} datapoints [{listed}] {verb} {negation}{words} the threshold ({threshold}) (minimum {} for {transition} transition).",
            plural(minimum, "datapoint", "datapoints")
        )
    };
    Outcome {
        state,
        reason,
        reason_data,
        value: newest,
    }
}

fn reason_data(rule: &Rule, datapoints: &[(i64, Option<f64>)], now_ms: i64) -> String {
    let mut data = serde_json::json!({
        "version": "1.0",
        "queryDate": iso(now_ms),
    });
    if let Some((start, _)) = datapoints.first() {
        data["startDate"] = iso(*start).into();
    }
    if let Some(stat) = &rule.statistic {
        data["statistic"] = stat.clone().into();
    }
    data["period"] = rule.period_s.into();
    data["recentDatapoints"] = datapoints
        .iter()
        .filter_map(|(_, v)| *v)
        .collect::<Vec<f64>>()
        .into();
    data["threshold"] = rule.threshold.into();
    data["evaluatedDatapoints"] = datapoints
        .iter()
        .rev()
        .filter_map(|(t, v)| v.map(|v| serde_json::json!({"timestamp": iso(*t), "value": v})))
        .collect::<Vec<_>>()
        .into();
    data.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    const NOW: i64 = 1_764_000_000_000 + 5_000;

    fn rule(n: usize, m: usize, treat: TreatMissing) -> Rule {
        Rule {
            period_s: 10,
            evaluation_periods: n,
            datapoints_to_alarm: m,
            threshold: 50.0,
            comparison: Comparison::GreaterThan,
            treat_missing: treat,
            statistic: Some("Average".into()),
        }
    }

    /// `pattern` is CloudWatch's notation, oldest first: `X` breaching, `0` not, `-` missing.
    fn points(rule: &Rule, pattern: &str) -> Vec<(i64, Option<f64>)> {
        rule.range(NOW)
            .into_iter()
            .zip(pattern.chars())
            .map(|(t, c)| {
                (
                    t,
                    match c {
                        'X' => Some(75.0),
                        '0' => Some(10.0),
                        _ => None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_range_is_the_complete_periods_before_now() {
        let r = rule(3, 3, TreatMissing::Missing);
        let base = 1_764_000_000_000;
        assert_eq!(
            r.range(NOW),
            vec![base - 30_000, base - 20_000, base - 10_000]
        );
        assert_eq!(
            r.range(base),
            vec![base - 30_000, base - 20_000, base - 10_000]
        );
    }

    #[test]
    fn missing_data_table_three_of_three() {
        use TreatMissing::*;
        // pattern, then the state for missing, ignore, breaching, notBreaching (current: OK).
        let table: &[(&str, [State; 4])] = &[
            ("000", [Ok, Ok, Ok, Ok]),
            ("0XX", [Ok, Ok, Ok, Ok]),
            ("XXX", [Alarm, Alarm, Alarm, Alarm]),
            ("00-", [Ok, Ok, Ok, Ok]),
            ("0--", [Ok, Ok, Ok, Ok]),
            ("---", [InsufficientData, Ok, Alarm, Ok]),
            ("-X-", [Alarm, Alarm, Alarm, Ok]),
            ("0X-", [Ok, Ok, Ok, Ok]),
            ("XX-", [Alarm, Alarm, Alarm, Ok]),
        ];
        for (pattern, want) in table {
            for (treat, want) in [Missing, Ignore, Breaching, NotBreaching]
                .into_iter()
                .zip(want)
            {
                let r = rule(3, 3, treat);
                let got = evaluate(&r, &points(&r, pattern), Ok, NOW).state;
                assert_eq!(got, *want, "{pattern} with {treat:?}");
            }
        }
    }

    #[test]
    fn m_out_of_n() {
        use TreatMissing::*;
        let table: &[(&str, usize, TreatMissing, State)] = &[
            ("X0X0X", 3, Missing, Alarm),
            ("X0X00", 3, Missing, Ok),
            ("X-X--", 3, Missing, Alarm), // fewer than M present, all breaching
            ("X-0--", 3, Missing, Ok),
            ("X-X--", 3, Breaching, Alarm),
            ("X-X-0", 2, NotBreaching, Alarm),
            ("-----", 2, Ignore, Alarm), // keeps the current state
            ("0000X", 1, Missing, Alarm),
        ];
        for (pattern, m, treat, want) in table {
            let r = rule(5, *m, *treat);
            let got = evaluate(&r, &points(&r, pattern), Alarm, NOW).state;
            assert_eq!(got, *want, "{pattern} {m} of 5 with {treat:?}");
        }
    }

    #[test]
    fn comparison_operators_at_the_threshold() {
        for (op, at, want) in [
            (Comparison::GreaterThan, 50.0, Ok),
            (Comparison::GreaterThanOrEqual, 50.0, Alarm),
            (Comparison::LessThan, 50.0, Ok),
            (Comparison::LessThanOrEqual, 50.0, Alarm),
            (Comparison::LessThan, 49.9, Alarm),
        ] {
            let mut r = rule(1, 1, TreatMissing::Missing);
            r.comparison = op;
            let range = r.range(NOW);
            let got = evaluate(&r, &[(range[0], Some(at))], InsufficientData, NOW);
            assert_eq!(got.state, want, "{op:?} {at}");
        }
    }

    #[test]
    fn reasons_read_like_cloudwatch() {
        let r = rule(1, 1, TreatMissing::Missing);
        let range = r.range(NOW);
        let alarm = evaluate(&r, &[(range[0], Some(75.0))], Ok, NOW);
        assert_eq!(
            alarm.reason,
            "Threshold Crossed: 1 datapoint [75.0 (24/11/25 15:59:50)] was greater than the threshold (50.0)."
        );
        assert_eq!(alarm.value, Some(75.0));
        let data: serde_json::Value = serde_json::from_str(&alarm.reason_data).unwrap();
        assert_eq!(data["recentDatapoints"], serde_json::json!([75.0]));
        assert_eq!(data["threshold"], serde_json::json!(50.0));
        assert_eq!(data["statistic"], "Average");
        let missing = evaluate(&r, &[(range[0], None)], Ok, NOW);
        assert_eq!(
            missing.reason,
            "Insufficient Data: 1 datapoint was unknown."
        );
        let r3 = rule(3, 2, TreatMissing::Missing);
        let ok = evaluate(&r3, &points(&r3, "0X0"), Alarm, NOW);
        assert!(
            ok.reason
                .starts_with("Threshold Crossed: 2 out of the last 3 datapoints [10.0 ("),
            "{}",
            ok.reason
        );
        assert!(ok.reason.ends_with("were not greater than the threshold (50.0) (minimum 1 datapoint for ALARM -> OK transition)."));
    }
}
