//! The health check state machine, pure: a probe's outcome and the thresholds move a target
//! between `initial`, `healthy` and `unhealthy`, with ELBv2's reasons and descriptions; the
//! schedule is a function of virtual time. The checker (`checker.rs`) runs the probes and writes
//! what this decides.

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The response code was one the matcher accepts.
    Ok,
    /// A response with a code the matcher refuses.
    Code(u16),
    /// No response within `timeout_seconds`.
    Timeout,
    /// The connection failed or broke, or the target has no address.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initial,
    Healthy,
    Unhealthy,
}

impl State {
    pub fn parse(s: &str) -> State {
        match s {
            "healthy" => State::Healthy,
            "unhealthy" => State::Unhealthy,
            _ => State::Initial,
        }
    }
}

/// The thresholds and timing of a target group's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub healthy: u32,
    pub unhealthy: u32,
    pub interval_ms: i64,
}

/// What the checker remembers of one target between probes (in memory only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    pub state: State,
    pub successes: u32,
    pub failures: u32,
    /// The failure that made (or keeps) the target unhealthy, for its reason.
    pub last_failure: Option<Outcome>,
    /// When the next probe is due (Unix ms).
    pub next_due_ms: i64,
}

impl Tracker {
    /// A target first seen at `now_ms` in `state` (as stored), probed at once.
    pub fn new(state: State, now_ms: i64) -> Tracker {
        Tracker {
            state,
            successes: 0,
            failures: 0,
            last_failure: None,
            next_due_ms: now_ms,
        }
    }
}

/// The state after a probe that ended at `now_ms` with `outcome`: consecutive successes make a
/// target healthy at `healthy` of them, consecutive failures unhealthy at `unhealthy`, from any
/// state (also `initial`); the next probe is one interval later.
pub fn step(t: &Tracker, th: Thresholds, now_ms: i64, outcome: Outcome) -> Tracker {
    let mut next = t.clone();
    next.next_due_ms = now_ms + th.interval_ms;
    if outcome == Outcome::Ok {
        next.successes = t.successes.saturating_add(1);
        next.failures = 0;
        if next.successes >= th.healthy {
            next.state = State::Healthy;
            next.last_failure = None;
        }
    } else {
        next.failures = t.failures.saturating_add(1);
        next.successes = 0;
        if next.failures >= th.unhealthy {
            next.state = State::Unhealthy;
            next.last_failure = Some(outcome);
        } else if next.state == State::Unhealthy {
            // Still unhealthy: the reason follows the latest failure.
            next.last_failure = Some(outcome);
        }
    }
    next
}

/// What DescribeTargetHealth shows for a tracker: state, reason, description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: &'static str,
    pub reason: Option<&'static str>,
    pub description: Option<String>,
}

pub fn verdict(t: &Tracker) -> Verdict {
    match t.state {
        State::Healthy => Verdict {
            state: "healthy",
            reason: None,
            description: None,
        },
        State::Initial => Verdict {
            state: "initial",
            reason: Some("Elb.InitialHealthChecking"),
            description: Some("Initial health checks in progress".into()),
        },
        State::Unhealthy => {
            let (reason, description) = match &t.last_failure {
                Some(Outcome::Code(code)) => (
                    "Target.ResponseCodeMismatch",
                    format!("Health checks failed with these codes: [{code}]"),
                ),
                Some(Outcome::Timeout) => ("Target.Timeout", "Request timed out".to_string()),
                _ => (
                    "Target.FailedHealthChecks",
                    "Health checks failed".to_string(),
                ),
            };
            Verdict {
                state: "unhealthy",
                reason: Some(reason),
                description: Some(description),
            }
        }
    }
}

/// Whether a matcher (`200`, `200,202`, `200-299`) accepts `code`. A malformed part accepts
/// nothing (the API refuses such matchers, so this only guards old records).
pub fn matcher_accepts(matcher: &str, code: u16) -> bool {
    matcher
        .split(',')
        .map(str::trim)
        .any(|part| match part.split_once('-') {
            Some((lo, hi)) => match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                (Ok(lo), Ok(hi)) => (lo..=hi).contains(&code),
                _ => false,
            },
            None => part.parse::<u16>() == Ok(code),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    const TH: Thresholds = Thresholds {
        healthy: 3,
        unhealthy: 2,
        interval_ms: 5_000,
    };

    /// Runs `outcomes` from a fresh `initial` tracker, one per interval, and returns the
    /// `(state, reason)` after each.
    fn run(outcomes: &[Outcome]) -> Vec<(&'static str, Option<&'static str>)> {
        let mut t = Tracker::new(State::Initial, 0);
        let mut out = Vec::new();
        for o in outcomes {
            let now = t.next_due_ms;
            t = step(&t, TH, now, o.clone());
            assert_eq!(
                t.next_due_ms,
                now + TH.interval_ms,
                "one probe per interval"
            );
            let v = verdict(&t);
            out.push((v.state, v.reason));
        }
        out
    }

    #[test]
    fn thresholds_move_a_target_between_states() {
        let init = ("initial", Some("Elb.InitialHealthChecking"));
        let ok = ("healthy", None);
        let mismatch = ("unhealthy", Some("Target.ResponseCodeMismatch"));
        let timeout = ("unhealthy", Some("Target.Timeout"));
        let failed = ("unhealthy", Some("Target.FailedHealthChecks"));
        type Shown = (&'static str, Option<&'static str>);
        let cases: Vec<(Vec<Outcome>, Vec<Shown>)> = vec![
            (vec![Ok, Ok, Ok], vec![init, init, ok]),
            (vec![Code(500), Code(500)], vec![init, mismatch]),
            (vec![Timeout, Timeout], vec![init, timeout]),
            (vec![Failed, Failed], vec![init, failed]),
            // A failure resets the run of successes.
            (
                vec![Ok, Ok, Failed, Ok, Ok, Ok],
                vec![init, init, init, init, init, ok],
            ),
            // Healthy stays healthy through one failure, then falls at the threshold.
            (
                vec![Ok, Ok, Ok, Code(503), Code(503)],
                vec![init, init, ok, ok, mismatch],
            ),
            // Unhealthy needs the full healthy threshold to recover; the reason follows the
            // latest failure meanwhile.
            (
                vec![Failed, Failed, Timeout, Ok, Ok, Ok],
                vec![init, failed, timeout, timeout, timeout, ok],
            ),
        ];
        for (outcomes, want) in cases {
            assert_eq!(run(&outcomes), want, "{outcomes:?}");
        }
    }

    #[test]
    fn descriptions_name_the_codes() {
        let mut t = Tracker::new(State::Healthy, 0);
        for _ in 0..2 {
            t = step(&t, TH, t.next_due_ms, Code(500));
        }
        assert_eq!(
            verdict(&t).description.as_deref(),
            Some("Health checks failed with these codes: [500]")
        );
        assert_eq!(t.next_due_ms, 10_000);
    }

    #[test]
    fn matchers() {
        let cases = [
            ("200", 200, true),
            ("200", 201, false),
            ("200,202", 202, true),
            ("200,202", 201, false),
            ("200-299", 250, true),
            ("200-299", 300, false),
            ("200-299,404", 404, true),
            ("x", 200, false),
        ];
        for (m, code, want) in cases {
            assert_eq!(matcher_accepts(m, code), want, "{m} {code}");
        }
    }
}
