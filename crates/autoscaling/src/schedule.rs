//! Scheduled actions' schedules as Application Auto Scaling writes them — `at(…)`, `rate(…)`
//! and `cron(…)` — and when they next fire. Pure: times are Unix milliseconds given by the caller.
//!
//! `cron(…)` has AWS's six fields (minutes, hours, day of month, month, day of week, year; `?`
//! in one of the day fields; days of week 1–7 = SUN–SAT); the `cron` crate evaluates it with a
//! seconds field of 0 prepended. AWS's `L`, `W` and `#` are not supported by that crate and are
//! refused rather than guessed.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub enum Schedule {
    /// Once, at a wall-clock time in the action's time zone.
    At(NaiveDateTime),
    /// Every `every_ms`, counted from the action's start time (or its creation).
    Rate {
        every_ms: i64,
    },
    Cron(Box<cron::Schedule>),
}

/// Parses a schedule expression; the error is the message for `ValidationException`.
pub fn parse(expression: &str) -> Result<Schedule, String> {
    let bad = || format!("Schedule expression is invalid: {expression}");
    let inner = |prefix: &str| {
        expression
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(at) = inner("at(") {
        let t = NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S").map_err(|_| bad())?;
        return Ok(Schedule::At(t));
    }
    if let Some(rate) = inner("rate(") {
        let mut parts = rate.split_whitespace();
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let n: i64 = n.parse().map_err(|_| bad())?;
        if n <= 0 {
            return Err(bad());
        }
        // AWS wants the singular for 1 and the plural otherwise.
        let unit_ms = match (unit, n == 1) {
            ("minute", true) | ("minutes", false) => 60_000,
            ("hour", true) | ("hours", false) => 3_600_000,
            ("day", true) | ("days", false) => 86_400_000,
            _ => return Err(bad()),
        };
        return Ok(Schedule::Rate {
            every_ms: n.checked_mul(unit_ms).ok_or_else(bad)?,
        });
    }
    if let Some(cron) = inner("cron(") {
        let fields: Vec<&str> = cron.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(bad());
        }
        // One of day-of-month and day-of-week must be `?`, as AWS requires.
        if (fields[2] == "?") == (fields[4] == "?") {
            return Err(bad());
        }
        let six = format!("0 {}", fields.join(" "));
        let schedule = cron::Schedule::from_str(&six).map_err(|_| bad())?;
        return Ok(Schedule::Cron(Box::new(schedule)));
    }
    Err(bad())
}

/// A time zone as `Timezone` names it (IANA names; UTC when absent).
pub fn zone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => Tz::from_str(n).map_err(|_| format!("Invalid timezone: {n}")),
    }
}

fn to_ms<Z: TimeZone>(t: &DateTime<Z>) -> i64 {
    t.timestamp_millis()
}

impl Schedule {
    /// The first time the schedule fires strictly after `after_ms`, within `[start, end]` when
    /// given; `anchor_ms` is where a rate counts from. `None` when it never fires again.
    pub fn next_after(
        &self,
        after_ms: i64,
        tz: Tz,
        anchor_ms: i64,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> Option<i64> {
        // Nothing before the start time fires: look from just before it.
        let from = match start_ms {
            Some(s) if s - 1 > after_ms => s - 1,
            _ => after_ms,
        };
        let next = match self {
            Schedule::At(t) => {
                let at = tz.from_local_datetime(t).earliest()?;
                Some(to_ms(&at)).filter(|&t| t > from)
            }
            Schedule::Rate { every_ms } => {
                let anchor = start_ms.unwrap_or(anchor_ms);
                if from < anchor {
                    Some(anchor)
                } else {
                    Some(anchor + ((from - anchor) / every_ms + 1) * every_ms)
                }
            }
            Schedule::Cron(c) => {
                let from_dt = Utc.timestamp_millis_opt(from).single()?.with_timezone(&tz);
                c.after(&from_dt).next().map(|t| to_ms(&t))
            }
        }?;
        match end_ms {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn next(expr: &str, tz: &str, after: &str) -> Option<i64> {
        parse(expr)
            .unwrap()
            .next_after(ms(after), zone(Some(tz)).unwrap(), ms(after), None, None)
    }

    #[test]
    fn parses_what_aws_accepts_and_refuses_the_rest() {
        for ok in [
            "at(2026-12-01T10:00:00)",
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 hour)",
            "rate(2 days)",
            "cron(0 12 * * ? *)",
            "cron(15 10 ? * MON-FRI *)",
            "cron(0/5 8-17 ? * 2-6 2026)",
            "cron(0 0 1 JAN,JUL ? *)",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "every 5 minutes",
            "at(2026-12-01 10:00)",
            "rate(0 minutes)",
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(5 weeks)",
            "cron(0 12 * * * *)",
            "cron(0 12 ? * ? *)",
            "cron(0 12 * * ?)",
            "cron(0 12 L * ? *)",
            "cron(0 12 ? * 6#3 *)",
            "cron(61 12 * * ? *)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_fire_times() {
        // (expression, zone, after, expected)
        let table = [
            (
                "cron(0 12 * * ? *)",
                "UTC",
                "2026-11-26T09:00:00Z",
                Some("2026-11-26T12:00:00Z"),
            ),
            (
                "cron(0 12 * * ? *)",
                "UTC",
                "2026-11-26T12:00:00Z",
                Some("2026-11-27T12:00:00Z"),
            ),
            // Noon in New York is 17:00 UTC in winter.
            (
                "cron(0 12 * * ? *)",
                "America/New_York",
                "2026-11-26T09:00:00Z",
                Some("2026-11-26T17:00:00Z"),
            ),
            // 1 = Sunday: 2026-11-29 is a Sunday.
            (
                "cron(30 6 ? * 1 *)",
                "UTC",
                "2026-11-26T00:00:00Z",
                Some("2026-11-29T06:30:00Z"),
            ),
            ("cron(0 0 1 1 ? 2025)", "UTC", "2026-11-26T00:00:00Z", None),
            (
                "at(2026-12-01T10:00:00)",
                "Europe/Paris",
                "2026-11-26T00:00:00Z",
                Some("2026-12-01T09:00:00Z"),
            ),
            (
                "at(2026-11-01T10:00:00)",
                "UTC",
                "2026-11-26T00:00:00Z",
                None,
            ),
        ];
        for (expr, tz, after, expected) in table {
            assert_eq!(
                next(expr, tz, after),
                expected.map(ms),
                "{expr} {tz} {after}"
            );
        }
    }

    #[test]
    fn rates_count_from_their_anchor_and_respect_the_window() {
        let rate = parse("rate(5 minutes)").unwrap();
        let anchor = 1_000_000;
        let tz = Tz::UTC;
        assert_eq!(
            rate.next_after(anchor, tz, anchor, None, None),
            Some(anchor + 300_000)
        );
        assert_eq!(
            rate.next_after(anchor + 299_999, tz, anchor, None, None),
            Some(anchor + 300_000)
        );
        assert_eq!(
            rate.next_after(anchor + 300_000, tz, anchor, None, None),
            Some(anchor + 600_000)
        );
        // A start time moves the anchor; nothing fires before it.
        let start = anchor + 1_000_000;
        assert_eq!(
            rate.next_after(anchor, tz, anchor, Some(start), None),
            Some(start)
        );
        // Nothing fires after the end time.
        assert_eq!(
            rate.next_after(anchor + 300_000, tz, anchor, None, Some(anchor + 500_000)),
            None
        );
        let cron = parse("cron(0 * * * ? *)").unwrap();
        let start = ms("2026-11-26T10:30:00Z");
        assert_eq!(
            cron.next_after(ms("2026-11-26T00:00:00Z"), tz, 0, Some(start), None),
            Some(ms("2026-11-26T11:00:00Z"))
        );
    }

    #[test]
    fn zones_are_iana_names() {
        assert_eq!(zone(None).unwrap(), Tz::UTC);
        assert!(zone(Some("Europe/Berlin")).is_ok());
        assert!(zone(Some("Mars/Olympus")).is_err());
    }
}
