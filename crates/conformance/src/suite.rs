//! The runner: for each implemented operation of a service, the six parts of issue 8 (valid
//! requests, invalid requests with state snapshots, echo, paginators, waiters, presigned
//! protocol) and the report — per operation passed / failed / not applicable, the failures with
//! their request and response, a summary table, and the `conformance: N passed, M failed` line.

use crate::check::{self, Kind, Violation};
use crate::client::{Auth, Client, Response};
use crate::generate::{Case, Generator};
use crate::model::Model;
use crate::profile::{PageFixture, Profile};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The seed used when `BERTH_CONFORMANCE_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x00be_47b0_0008;

/// The parts of the suite, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    Valid,
    Invalid,
    Echo,
    Paginators,
    Waiters,
    Presigned,
}

impl Part {
    pub const ALL: [Part; 6] = [
        Part::Valid,
        Part::Invalid,
        Part::Echo,
        Part::Paginators,
        Part::Waiters,
        Part::Presigned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Valid => "valid",
            Part::Invalid => "invalid",
            Part::Echo => "echo",
            Part::Paginators => "paginator",
            Part::Waiters => "waiter",
            Part::Presigned => "presigned",
        }
    }
}

/// How a run is configured; [`Config::from_env`] reads the `BERTH_CONFORMANCE_*` variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// Only these operations (and paginators/waiters/echoes of them); all when `None`.
    pub ops: Option<Vec<String>>,
    pub parts: Vec<Part>,
    /// At most this many invalid requests per operation (top-level breaks always included).
    pub invalid_cap: usize,
    /// The unsigned POST that wipes the server's state before each case (`/_berth/reset`);
    /// `None` when the server has none.
    pub reset_path: Option<String>,
    /// The Python that runs waiters with boto3.
    pub python: String,
    /// Print every request and response to stderr (`BERTH_CONFORMANCE_VERBOSE=1`).
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: DEFAULT_SEED,
            ops: None,
            parts: Part::ALL.to_vec(),
            invalid_cap: 40,
            reset_path: Some("/_berth/reset".into()),
            python: "python3".into(),
            verbose: false,
        }
    }
}

impl Config {
    /// `BERTH_CONFORMANCE_SEED` (decimal or 0x-hex), `BERTH_CONFORMANCE_OPS` (comma-separated
    /// operation names), `BERTH_CONFORMANCE_PARTS` (comma-separated part names).
    pub fn from_env() -> Config {
        let mut c = Config::default();
        if let Ok(seed) = std::env::var("BERTH_CONFORMANCE_SEED") {
            let seed = seed.trim();
            let parsed = match seed.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => seed.parse().ok(),
            };
            c.seed = parsed.unwrap_or(DEFAULT_SEED);
        }
        if let Ok(ops) = std::env::var("BERTH_CONFORMANCE_OPS") {
            let ops: Vec<String> = split_list(&ops);
            if !ops.is_empty() {
                c.ops = Some(ops);
            }
        }
        if let Ok(parts) = std::env::var("BERTH_CONFORMANCE_PARTS") {
            let names = split_list(&parts);
            let chosen: Vec<Part> = Part::ALL
                .into_iter()
                .filter(|p| names.iter().any(|n| n.eq_ignore_ascii_case(p.name())))
                .collect();
            if !chosen.is_empty() {
                c.parts = chosen;
            }
        }
        c.verbose = std::env::var("BERTH_CONFORMANCE_VERBOSE").is_ok_and(|v| v != "0");
        c
    }

    fn wants(&self, op: &str) -> bool {
        self.ops
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| o == op))
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The result of one check.
#[derive(Debug, Clone)]
pub enum Outcome {
    Passed,
    Failed {
        request: String,
        response: String,
        violations: Vec<Violation>,
    },
    NotApplicable(String),
}

/// One check of one operation.
#[derive(Debug, Clone)]
pub struct Record {
    pub service: String,
    pub op: String,
    pub part: Part,
    pub case: String,
    pub outcome: Outcome,
}

/// Everything a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub records: Vec<Record>,
    /// Per operation: (valid requests answered 200, valid requests sent).
    pub accepted: BTreeMap<String, (usize, usize)>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }

    pub fn not_applicable(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotApplicable(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.records.iter().filter(|r| f(&r.outcome)).count()
    }

    /// The failed records.
    pub fn failures(&self) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }

    /// Whether some failure of `part` has a violation of `kind`.
    pub fn has_failure(&self, part: Option<Part>, kind: Kind) -> bool {
        self.failures().any(|r| {
            part.is_none_or(|p| p == r.part)
                && matches!(&r.outcome, Outcome::Failed { violations, .. }
                    if violations.iter().any(|v| v.kind == kind))
        })
    }

    /// Whether some check of `part` passed.
    pub fn has_passed(&self, part: Part) -> bool {
        self.records
            .iter()
            .any(|r| r.part == part && matches!(r.outcome, Outcome::Passed))
    }

    /// `conformance: N passed, M failed`.
    pub fn summary_line(&self) -> String {
        format!(
            "conformance: {} passed, {} failed",
            self.passed(),
            self.failed()
        )
    }

    /// The failures in full, then a table per service and operation, then the summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for r in self.failures() {
            if let Outcome::Failed {
                request,
                response,
                violations,
            } = &r.outcome
            {
                let _ = writeln!(
                    out,
                    "FAILED {}/{} [{}] {}",
                    r.service,
                    r.op,
                    r.part.name(),
                    r.case
                );
                for v in violations {
                    let _ = writeln!(out, "    {v}");
                }
                let _ = writeln!(out, "    request:  {}", truncate(request, 2000));
                let _ = writeln!(out, "    response: {}", truncate(response, 2000));
            }
        }
        for r in &self.records {
            if let Outcome::NotApplicable(why) = &r.outcome {
                let _ = writeln!(
                    out,
                    "n/a    {}/{} [{}] {}: {why}",
                    r.service,
                    r.op,
                    r.part.name(),
                    r.case
                );
            }
        }
        // service/op → part → (passed, failed, n/a)
        let mut table: BTreeMap<(String, String), BTreeMap<Part, [usize; 3]>> = BTreeMap::new();
        for r in &self.records {
            let cell = table
                .entry((r.service.clone(), r.op.clone()))
                .or_default()
                .entry(r.part)
                .or_default();
            match r.outcome {
                Outcome::Passed => cell[0] += 1,
                Outcome::Failed { .. } => cell[1] += 1,
                Outcome::NotApplicable(_) => cell[2] += 1,
            }
        }
        let _ = write!(out, "\n{:<40}", "operation");
        for p in Part::ALL {
            let _ = write!(out, " {:>11}", p.name());
        }
        let _ = writeln!(out, " {:>9}", "200s");
        let _ = writeln!(out, "{}", "-".repeat(40 + 12 * 6 + 10));
        for ((service, op), parts) in &table {
            let _ = write!(out, "{:<40}", format!("{service}/{op}"));
            for p in Part::ALL {
                let cell = match parts.get(&p) {
                    None => "-".to_string(),
                    Some([pass, 0, 0]) => format!("{pass} ok"),
                    Some([0, 0, na]) => format!("{na} n/a"),
                    Some([pass, fail, _]) if *fail > 0 => format!("{pass}/{} FAIL", pass + fail),
                    Some([pass, _, na]) => format!("{pass} ok+{na}na"),
                };
                let _ = write!(out, " {cell:>11}");
            }
            let accepted = self
                .accepted
                .get(op)
                .map(|(ok, n)| format!("{ok}/{n}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(out, " {accepted:>9}");
        }
        let _ = writeln!(
            out,
            "({} not applicable)\n{}",
            self.not_applicable(),
            self.summary_line()
        );
        out
    }

    fn push(&mut self, service: &str, op: &str, part: Part, case: &str, outcome: Outcome) {
        self.records.push(Record {
            service: service.into(),
            op: op.into(),
            part,
            case: case.into(),
            outcome,
        });
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

fn describe(resp: &Response) -> String {
    format!("{} {}", resp.status, resp.text())
}

/// A conformance run against one endpoint for one service.
pub struct Suite {
    pub model: Model,
    /// The operations the server claims to implement.
    pub implemented: Vec<String>,
    pub client: Client,
    pub profile: Profile,
    pub config: Config,
}

impl Suite {
    pub fn new(
        model: Model,
        implemented: Vec<String>,
        client: Client,
        profile: Profile,
        config: Config,
    ) -> Suite {
        Suite {
            model,
            implemented,
            client,
            profile,
            config,
        }
    }

    fn service(&self) -> &str {
        &self.model.service
    }

    /// Runs every configured part.
    pub fn run(&self) -> Report {
        let mut report = Report::default();
        let ops: Vec<String> = self
            .implemented
            .iter()
            .filter(|op| self.config.wants(op))
            .cloned()
            .collect();
        let parts = &self.config.parts;
        for op in &ops {
            if parts.contains(&Part::Valid)
                || parts.contains(&Part::Invalid)
                || parts.contains(&Part::Echo)
            {
                self.operation(op, &mut report);
            }
            if parts.contains(&Part::Presigned) {
                self.presigned(op, &mut report);
            }
        }
        if parts.contains(&Part::Paginators) {
            self.paginators(&mut report);
        }
        if parts.contains(&Part::Waiters) {
            self.waiters(&mut report);
        }
        report
    }

    /// Resets the server and builds the fixture state; returns the bindings.
    pub fn fresh(&self) -> crate::Result<Map<String, Value>> {
        if let Some(path) = &self.config.reset_path {
            let r = self.client.post_unsigned(path)?;
            if r.status != 200 {
                return Err(crate::Error::Other(format!(
                    "reset failed: {}",
                    describe(&r)
                )));
            }
        }
        match self.profile.setup {
            Some(setup) => setup(&self.client),
            None => Ok(Map::new()),
        }
    }

    /// The state as the profile's read-only calls show it.
    pub fn snapshot(&self, bindings: &Map<String, Value>) -> Vec<(String, Value)> {
        (self.profile.snapshot)(bindings)
            .into_iter()
            .map(|(op, body)| {
                let seen = match self.client.call(op, &body) {
                    Ok(r) => {
                        let mut seen = r.json().unwrap_or(Value::Null);
                        strip(&mut seen, &self.profile.volatile);
                        json!({"status": r.status, "body": seen})
                    }
                    Err(e) => json!({"transport": e.to_string()}),
                };
                (format!("{op} {body}"), seen)
            })
            .collect()
    }

    /// Sends one generated request, logging it when verbose.
    fn send(&self, op: &str, label: &str, body: &Value, auth: Auth) -> crate::Result<Response> {
        let r = self.client.call_raw(op, body.to_string().as_bytes(), auth);
        if self.config.verbose {
            let answer = match &r {
                Ok(r) => truncate(&describe(r), 300),
                Err(e) => e.to_string(),
            };
            eprintln!(
                "{op} [{label}] {} -> {answer}",
                truncate(&body.to_string(), 300)
            );
        }
        r
    }

    fn has_required(&self, op: &str) -> bool {
        let input = self.model.input_shape(op).and_then(|s| self.model.shape(s));
        [
            input.and_then(|s| s["required"].as_array()),
            input.and_then(|s| s[crate::generate::REQUIRES_ONE_OF].as_array()),
        ]
        .into_iter()
        .flatten()
        .any(|r| !r.is_empty())
    }

    fn generator(&self, op: &str, bindings: Map<String, Value>) -> Generator<'_> {
        // Each operation gets its own stream, so filtering operations does not change what
        // the others send.
        let mut h: u64 = self.config.seed;
        for b in op.bytes() {
            h = h.rotate_left(5) ^ u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        let fresh = self
            .profile
            .fresh_names
            .iter()
            .find(|(o, _)| *o == op)
            .map_or(&[][..], |(_, members)| *members);
        Generator::new(&self.model, h)
            .with_bindings(bindings)
            .with_fresh(fresh)
    }

    fn fail_setup(&self, report: &mut Report, op: &str, part: Part, e: &crate::Error) {
        report.push(
            self.service(),
            op,
            part,
            "set-up",
            Outcome::Failed {
                request: "-".into(),
                response: "-".into(),
                violations: vec![Violation::new(Kind::Transport, "-", e.to_string())],
            },
        );
    }

    /// Parts 1–3 for one operation: valid requests (with echo after each accepted create),
    /// then invalid requests built on the best accepted valid request.
    fn operation(&self, op: &str, report: &mut Report) {
        let parts = &self.config.parts;
        let bindings = match self.fresh() {
            Ok(b) => b,
            Err(e) => return self.fail_setup(report, op, Part::Valid, &e),
        };
        let first = bindings.clone();
        let mut generator = self.generator(op, bindings);
        let cases = generator.valid_cases(op);
        let skipped_valid = generator.skipped().len();
        if parts.contains(&Part::Valid) {
            self.skipped(op, Part::Valid, generator.skipped(), report);
        }
        let echo = self.profile.echoes.iter().find(|e| e.create == op);
        let mut accepted_labels = Vec::new();
        let run_valid = parts.contains(&Part::Valid) || parts.contains(&Part::Echo);
        if run_valid {
            let (mut ok, mut n) = (0, 0);
            for case in &cases {
                let now = match self.fresh() {
                    Ok(b) => b,
                    Err(e) => {
                        self.fail_setup(report, op, Part::Valid, &e);
                        continue;
                    }
                };
                let case = &rebind(case, &first, &now);
                let resp = self.send(op, &case.label, &case.body, Auth::Header);
                n += 1;
                let violations = match &resp {
                    Ok(r) => self.valid_violations(op, case, r),
                    Err(e) => vec![Violation::new(Kind::Transport, "-", e.to_string())],
                };
                if resp.as_ref().is_ok_and(|r| r.status == 200) {
                    ok += 1;
                    accepted_labels.push(case.label.clone());
                }
                if parts.contains(&Part::Valid) {
                    report.push(
                        self.service(),
                        op,
                        Part::Valid,
                        &case.label,
                        outcome(&case.body, resp.as_ref().ok(), violations),
                    );
                }
                if let (Some(echo), Ok(r)) = (echo, &resp)
                    && r.status == 200
                    && parts.contains(&Part::Echo)
                {
                    self.echo(echo, case, r, report);
                }
            }
            report.accepted.insert(op.to_string(), (ok, n));
        }
        if parts.contains(&Part::Invalid) {
            // Constraints are broken on two bases: the largest request that was accepted (so
            // "nothing changed" means the broken constraint stopped a write that would have
            // happened) and the bound maximal one (so every member gets broken even when the
            // accepted request is small, like `{}`).
            let accepted_base = cases
                .iter()
                .filter(|c| accepted_labels.contains(&c.label))
                .max_by_key(|c| c.body.to_string().len())
                .map(|c| c.body.clone());
            let maximal = cases
                .iter()
                .find(|c| c.label == "maximal, bound")
                .or_else(|| cases.iter().find(|c| c.label == "maximal"))
                .map(|c| c.body.clone());
            // And each bound maximal request naming another member of a one-of group.
            let alternatives = cases
                .iter()
                .filter(|c| c.label.starts_with("maximal, bound, with "))
                .map(|c| c.body.clone());
            let mut invalid = Vec::new();
            for base in accepted_base.into_iter().chain(maximal).chain(alternatives) {
                for case in generator.invalid_cases(op, &base, self.config.invalid_cap) {
                    if !invalid
                        .iter()
                        .any(|c: &crate::generate::InvalidCase| c.label == case.label)
                    {
                        invalid.push(case);
                    }
                }
            }
            invalid.truncate(self.config.invalid_cap);
            self.skipped(
                op,
                Part::Invalid,
                &generator.skipped()[skipped_valid..],
                report,
            );
            for case in invalid {
                let bindings = match self.fresh() {
                    Ok(b) => b,
                    Err(e) => {
                        self.fail_setup(report, op, Part::Invalid, &e);
                        continue;
                    }
                };
                let before = self.snapshot(&bindings);
                let case = crate::generate::InvalidCase {
                    body: rebind_value(&case.body, &first, &bindings),
                    ..case
                };
                let resp = self.send(op, &case.label, &case.body, Auth::Header);
                let mut violations = match &resp {
                    Ok(r) => check::check_error(&self.model, op, r),
                    Err(e) => vec![Violation::new(Kind::Transport, "-", e.to_string())],
                };
                let after = self.snapshot(&bindings);
                if before != after {
                    let changed: Vec<String> = before
                        .iter()
                        .zip(&after)
                        .filter(|(b, a)| b != a)
                        .map(|(b, a)| format!("{}: {} → {}", b.0, b.1, a.1))
                        .collect();
                    violations.push(Violation::new(
                        Kind::StateChanged,
                        "-",
                        format!("invalid input changed the state: {}", changed.join("; ")),
                    ));
                }
                report.push(
                    self.service(),
                    op,
                    Part::Invalid,
                    &case.label,
                    outcome(&case.body, resp.as_ref().ok(), violations),
                );
            }
        }
    }

    /// Cases the generator left out (a body past the request size limit), as not applicable.
    fn skipped(&self, op: &str, part: Part, skipped: &[(String, String)], report: &mut Report) {
        for (i, (label, why)) in skipped.iter().enumerate() {
            // Invalid cases are made on two bases, which may leave out the same case twice.
            if skipped[..i].iter().any(|(seen, _)| seen == label) {
                continue;
            }
            report.push(
                self.service(),
                op,
                part,
                label,
                Outcome::NotApplicable(why.clone()),
            );
        }
    }

    fn valid_violations(&self, op: &str, case: &Case, r: &Response) -> Vec<Violation> {
        let mut v = check::check_any(&self.model, op, r);
        if case.label == "minimal" && !self.has_required(op) && r.status != 200 {
            v.push(Violation::new(
                Kind::UnexpectedStatus,
                "-",
                "an operation without required members must accept its empty request",
            ));
        }
        v
    }

    /// Part 3: what `case` created comes back from the Describe, under every identifier form.
    fn echo(
        &self,
        echo: &crate::profile::Echo,
        case: &Case,
        created: &Response,
        report: &mut Report,
    ) {
        let created = created.json().unwrap_or(Value::Null);
        // The forms known from the request and the answer first; then those that need what the
        // first form found (a log group's ARN, which CreateLogGroup does not answer).
        let mut forms = (echo.lookups)(&case.body, &created, &Value::Null);
        let mut tried: Vec<String> = Vec::new();
        let mut first_found: Option<Value> = None;
        while let Some((form, body)) = (!forms.is_empty()).then(|| forms.remove(0)) {
            tried.push(form.clone());
            let label = format!("{} by {form}", case.label);
            let resp = match self.client.call(echo.describe, &body) {
                Ok(r) => r,
                Err(e) => {
                    report.push(
                        self.service(),
                        echo.create,
                        Part::Echo,
                        &label,
                        outcome(
                            &body,
                            None,
                            vec![Violation::new(Kind::Transport, "-", e.to_string())],
                        ),
                    );
                    continue;
                }
            };
            let mut violations = check::check_success(&self.model, echo.describe, &resp);
            let described = resp.json().unwrap_or(Value::Null);
            match (echo.pick)(&case.body, &described) {
                None => violations.push(Violation::new(
                    Kind::EchoMismatch,
                    "$",
                    format!(
                        "{} did not return what {} created",
                        echo.describe, echo.create
                    ),
                )),
                Some(found) => {
                    let shared = shared_members(&case.body, &found);
                    for d in check::subset_diffs(&shared, &found) {
                        violations.push(Violation::new(Kind::EchoMismatch, "-", d));
                    }
                    // A member the answer's shape has but the answer lacks was accepted and
                    // dropped.
                    if let Some(shape) = check::shape_of(&self.model, echo.describe, &found) {
                        for m in check::dropped_members(&self.model, &shape, &case.body, &found) {
                            if let Some((_, _, why)) = self
                                .profile
                                .echo_unreturned
                                .iter()
                                .find(|(op, member, _)| *op == echo.create && *member == m)
                            {
                                let gap = format!("{m} not returned");
                                let known = report.records.iter().any(|r| {
                                    r.op == echo.create && r.part == Part::Echo && r.case == gap
                                });
                                if !known {
                                    report.push(
                                        self.service(),
                                        echo.create,
                                        Part::Echo,
                                        &gap,
                                        Outcome::NotApplicable((*why).to_string()),
                                    );
                                }
                                continue;
                            }
                            violations.push(Violation::new(
                                Kind::EchoMismatch,
                                format!("$.{m}"),
                                format!(
                                    "{} accepted {m}, which {shape} has, and {} does not return it",
                                    echo.create, echo.describe
                                ),
                            ));
                        }
                    }
                    if first_found.is_none() {
                        forms = (echo.lookups)(&case.body, &created, &found)
                            .into_iter()
                            .filter(|(f, _)| !tried.contains(f))
                            .collect();
                        first_found = Some(found);
                    }
                }
            }
            let request = format!(
                "{} {} ; then {} {}",
                echo.create, case.body, echo.describe, body
            );
            report.push(
                self.service(),
                echo.create,
                Part::Echo,
                &label,
                outcome_str(request, Some(&resp), violations),
            );
        }
    }

    /// Part 6: the valid requests again, presigned instead of header-signed.
    fn presigned(&self, op: &str, report: &mut Report) {
        let bindings = match self.fresh() {
            Ok(b) => b,
            Err(e) => return self.fail_setup(report, op, Part::Presigned, &e),
        };
        let first = bindings.clone();
        let mut generator = self.generator(op, bindings);
        let cases = generator.valid_cases(op);
        self.skipped(op, Part::Presigned, generator.skipped(), report);
        for case in &cases {
            let now = match self.fresh() {
                Ok(b) => b,
                Err(e) => {
                    self.fail_setup(report, op, Part::Presigned, &e);
                    continue;
                }
            };
            let case = &rebind(case, &first, &now);
            let resp = self.send(op, &case.label, &case.body, Auth::Presigned);
            let violations = match &resp {
                Ok(r) => self.valid_violations(op, case, r),
                Err(e) => vec![Violation::new(Kind::Transport, "-", e.to_string())],
            };
            report.push(
                self.service(),
                op,
                Part::Presigned,
                &case.label,
                outcome(&case.body, resp.as_ref().ok(), violations),
            );
        }
    }

    /// Part 4: every paginator of an implemented operation.
    pub fn paginators(&self, report: &mut Report) {
        let mut issued = Vec::new();
        for op in self.model.paginated_operations() {
            if !self.config.wants(&op) {
                continue;
            }
            if !self.implemented.contains(&op) {
                report.push(
                    self.service(),
                    &op,
                    Part::Paginators,
                    "paginator",
                    Outcome::NotApplicable(format!("{op} is not implemented")),
                );
                continue;
            }
            if let Some((_, why)) = self
                .profile
                .page_not_applicable
                .iter()
                .find(|(o, _)| *o == op)
            {
                report.push(
                    self.service(),
                    &op,
                    Part::Paginators,
                    "paginator",
                    Outcome::NotApplicable((*why).to_string()),
                );
                continue;
            }
            let Some(fixture) = self.profile.page_fixtures.iter().find(|f| f.op == op) else {
                report.push(
                    self.service(),
                    &op,
                    Part::Paginators,
                    "paginator",
                    Outcome::Failed {
                        request: "-".into(),
                        response: "-".into(),
                        violations: vec![Violation::new(
                            Kind::PageSkip,
                            "-",
                            "no page fixture: add one to the profile so the paginator is exercised",
                        )],
                    },
                );
                continue;
            };
            self.paginator(fixture, report, &mut issued);
        }
        self.tokens_of_other_lists(&issued, report);
    }

    /// A real token replayed on another list: `issued` holds, per paginated operation, a token
    /// its walk was given; each list is sent the next list's token and must refuse it with a
    /// declared 4xx (berth's tokens are bound to the list and partition that issued them; AWS's
    /// are opaque and refused elsewhere).
    fn tokens_of_other_lists(&self, issued: &[(String, String)], report: &mut Report) {
        if issued.len() == 1 {
            report.push(
                self.service(),
                &issued[0].0,
                Part::Paginators,
                "token of another list",
                Outcome::NotApplicable("no other paginated list issues tokens".into()),
            );
            return;
        }
        for (i, (op, _)) in issued.iter().enumerate() {
            let (other_op, token) = &issued[(i + 1) % issued.len()];
            let case = format!("token of another list ({other_op})");
            let (Some(fixture), Some(p)) = (
                self.profile.page_fixtures.iter().find(|f| f.op == op),
                self.model.paginator(op),
            ) else {
                continue;
            };
            let bindings = match self.fresh() {
                Ok(b) => b,
                Err(e) => {
                    self.fail_setup(report, op, Part::Paginators, &e);
                    continue;
                }
            };
            let mut body = bind(&fixture.list_body, &bindings);
            body[p["input_token"].as_str().unwrap_or("nextToken")] = json!(token);
            if let Some(k) = p["limit_key"].as_str() {
                body[k] = json!(2);
            }
            let outcome = match self.client.call(op, &body) {
                Ok(r) => outcome(&body, Some(&r), check::check_error(&self.model, op, &r)),
                Err(e) => outcome(
                    &body,
                    None,
                    vec![Violation::new(Kind::Transport, "-", e.to_string())],
                ),
            };
            report.push(self.service(), op, Part::Paginators, &case, outcome);
        }
    }

    /// One paginator; the first token its walk was given goes to `issued`.
    fn paginator(
        &self,
        fixture: &PageFixture,
        report: &mut Report,
        issued: &mut Vec<(String, String)>,
    ) {
        let op = fixture.op;
        let Some(p) = self.model.paginator(op) else {
            return;
        };
        let in_token = p["input_token"].as_str().unwrap_or("nextToken");
        let out_token = p["output_token"].as_str().unwrap_or("nextToken");
        // A paginator without a limit key (CloudWatch's ListMetrics) pages at the server's
        // own size, which the fixture must exceed.
        let limit_key = p["limit_key"].as_str();
        let limit = limit_key.map(|k| (k, 2));
        let limit_label = match limit_key {
            Some(k) => format!("{k}=2"),
            None => "the server's page size".to_string(),
        };
        // Of several result keys (`MetricAlarms`, `CompositeAlarms`), the fixture fills the
        // first.
        let result_key = match &p["result_key"] {
            Value::Array(keys) => keys.first().and_then(Value::as_str),
            key => key.as_str(),
        }
        .unwrap_or_default();
        let items_of = self
            .profile
            .page_items
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, f)| *f);
        let mut fail = |case: &str, request: String, response: String, v: Vec<Violation>| {
            report.push(
                self.service(),
                op,
                Part::Paginators,
                case,
                if v.is_empty() {
                    Outcome::Passed
                } else {
                    Outcome::Failed {
                        request,
                        response,
                        violations: v,
                    }
                },
            )
        };
        let bindings = match self.fresh() {
            Ok(b) => b,
            Err(e) => {
                return fail(
                    "set-up",
                    "-".into(),
                    "-".into(),
                    vec![Violation::new(Kind::Transport, "-", e.to_string())],
                );
            }
        };
        let list_body = bind(&fixture.list_body, &bindings);
        for i in 0..fixture.count {
            match (fixture.create)(&self.client, i, &bindings) {
                Ok(r) if r.status == 200 => {}
                Ok(r) => {
                    return fail(
                        "fixture",
                        format!("item {i}"),
                        describe(&r),
                        vec![Violation::new(
                            Kind::UnexpectedStatus,
                            "-",
                            "a page fixture call failed",
                        )],
                    );
                }
                Err(e) => {
                    return fail(
                        "fixture",
                        format!("item {i}"),
                        "-".into(),
                        vec![Violation::new(Kind::Transport, "-", e.to_string())],
                    );
                }
            }
        }
        // Every item, following the server's own page size.
        let paging = Paging {
            in_token,
            out_token,
            result_key,
            items_of,
            stop_on_same_token: p["stop_on_same_token"].as_bool() == Some(true),
        };
        let all = match self.walk(op, &list_body, &paging, None) {
            Ok(w) => w,
            Err((req, resp, v)) => return fail("unpaged listing", req, resp, v),
        };
        let paged = match self.walk(op, &list_body, &paging, limit) {
            Ok(w) => w,
            Err((req, resp, v)) => return fail(&limit_label, req, resp, v),
        };
        let mut v = Vec::new();
        if all.items.len() < fixture.count {
            v.push(Violation::new(
                Kind::PageSkip,
                result_key,
                format!(
                    "{} items created, {} listed: {:?}",
                    fixture.count,
                    all.items.len(),
                    all.items
                ),
            ));
        }
        let mut seen = Vec::new();
        for item in &paged.items {
            if seen.contains(item) {
                v.push(Violation::new(
                    Kind::PageRepeat,
                    result_key,
                    format!("{item} came twice"),
                ));
            }
            seen.push(item.clone());
        }
        for item in &all.items {
            if !paged.items.contains(item) {
                v.push(Violation::new(
                    Kind::PageSkip,
                    result_key,
                    format!("{item} never came"),
                ));
            }
        }
        let mut dedup = paged.items.clone();
        dedup.dedup();
        if v.is_empty() && dedup != all.items {
            v.push(Violation::new(
                Kind::PageSkip,
                result_key,
                format!(
                    "order differs: paged {:?}, unpaged {:?}",
                    paged.items, all.items
                ),
            ));
        }
        if paged.pages < 2 {
            v.push(Violation::new(
                Kind::PageSkip,
                out_token,
                format!(
                    "{} items in {} page(s) with {limit_label}: the limit was not applied",
                    paged.items.len(),
                    paged.pages
                ),
            ));
        }
        fail(
            &format!("every item once, {limit_label}"),
            format!("{op} {list_body} paged by {limit_label}"),
            format!("{:?} vs unpaged {:?}", paged.items, all.items),
            v,
        );

        // Forged tokens: a real one with a character flipped, and a plausible random one.
        let mut forged = Vec::new();
        if let Some(real) = paged.first_token.as_deref() {
            issued.push((op.to_string(), real.to_string()));
            let mut chars: Vec<char> = real.chars().collect();
            let i = chars.len() / 2;
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            forged.push(("flipped token", chars.into_iter().collect::<String>()));
        }
        forged.push((
            "random token",
            "Y29uZm9ybWFuY2UtZm9yZ2VkLXRva2VuLTEyMzQ1Njc4OTA=".to_string(),
        ));
        for (label, token) in forged {
            let mut body = list_body.clone();
            body[in_token] = json!(token);
            if let Some(k) = limit_key {
                body[k] = json!(2);
            }
            let r = match self.client.call(op, &body) {
                Ok(r) => r,
                Err(e) => {
                    fail(
                        label,
                        body.to_string(),
                        "-".into(),
                        vec![Violation::new(Kind::Transport, "-", e.to_string())],
                    );
                    continue;
                }
            };
            fail(
                label,
                body.to_string(),
                describe(&r),
                check::check_error(&self.model, op, &r),
            );
        }
    }

    /// Lists every page; each page is checked against the output shape and the limit.
    fn walk(
        &self,
        op: &str,
        base: &Value,
        paging: &Paging<'_>,
        limit: Option<(&str, usize)>,
    ) -> Result<Walk, (String, String, Vec<Violation>)> {
        let Paging {
            in_token,
            out_token,
            result_key,
            items_of,
            stop_on_same_token,
        } = *paging;
        let mut walk = Walk::default();
        let mut token: Option<Value> = None;
        // A server that never stops handing out tokens must not hang the suite.
        for _ in 0..200 {
            let mut body = base.clone();
            if let Some((key, n)) = limit {
                body[key] = json!(n);
            }
            if let Some(t) = &token {
                body[in_token] = t.clone();
            }
            let r = self.client.call(op, &body).map_err(|e| {
                (
                    body.to_string(),
                    "-".to_string(),
                    vec![Violation::new(Kind::Transport, "-", e.to_string())],
                )
            })?;
            let mut v = check::check_success(&self.model, op, &r);
            let page = r.json().unwrap_or(Value::Null);
            let mut items = page[result_key].as_array().cloned().unwrap_or_default();
            if let Some(f) = items_of {
                items = items.iter().flat_map(f).collect();
            }
            if let Some((_, n)) = limit
                && items.len() > n
            {
                v.push(Violation::new(
                    Kind::PageSkip,
                    result_key,
                    format!("{} items in a page limited to {n}", items.len()),
                ));
            }
            if !v.is_empty() {
                return Err((body.to_string(), describe(&r), v));
            }
            walk.pages += 1;
            walk.items.extend(items);
            let sent = token.take();
            token = page.get(out_token).filter(|t| !t.is_null()).cloned();
            if walk.first_token.is_none() {
                walk.first_token = token.as_ref().and_then(|t| t.as_str()).map(String::from);
            }
            if token.is_none() || (stop_on_same_token && token == sent) {
                return Ok(walk);
            }
        }
        Err((
            format!("{op} {base}"),
            "-".into(),
            vec![Violation::new(
                Kind::PageRepeat,
                out_token,
                "more than 200 pages: the tokens never end",
            )],
        ))
    }
}

/// Removes the members named `volatile` wherever they are in `v`.
fn strip(v: &mut Value, volatile: &[&str]) {
    if volatile.is_empty() {
        return;
    }
    match v {
        Value::Object(obj) => {
            obj.retain(|k, _| !volatile.contains(&k.as_str()));
            obj.values_mut().for_each(|v| strip(v, volatile));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, volatile)),
        _ => {}
    }
}

/// `case` against a fixture made anew: its requests were generated from the `first`
/// fixture's bindings, and a fixture may name its resources anew each time (random ARNs).
fn rebind(case: &Case, first: &Map<String, Value>, now: &Map<String, Value>) -> Case {
    Case {
        label: case.label.clone(),
        body: rebind_value(&case.body, first, now),
    }
}

/// `body` with every text that was a bound value of the `first` fixture replaced by the same
/// binding's value `now` (only texts: names and ARNs; a list binding is rebound item by item).
fn rebind_value(body: &Value, first: &Map<String, Value>, now: &Map<String, Value>) -> Value {
    let mut swaps: Vec<(&str, &Value)> = Vec::new();
    for (name, was) in first {
        let Some(is) = now.get(name).filter(|is| *is != was) else {
            continue;
        };
        match (was, is) {
            (Value::String(w), _) if is.is_string() => swaps.push((w.as_str(), is)),
            (Value::Array(ws), Value::Array(is)) if ws.len() == is.len() => {
                for (w, i) in ws.iter().zip(is) {
                    if let (Some(w), true) = (w.as_str(), i.is_string()) {
                        swaps.push((w, i));
                    }
                }
            }
            _ => {}
        }
    }
    if swaps.is_empty() {
        return body.clone();
    }
    fn walk(v: &Value, swaps: &[(&str, &Value)]) -> Value {
        match v {
            Value::String(s) => swaps
                .iter()
                .find(|(w, _)| *w == s.as_str())
                .map(|(_, is)| (*is).clone())
                .unwrap_or_else(|| v.clone()),
            Value::Array(items) => Value::Array(items.iter().map(|i| walk(i, swaps)).collect()),
            Value::Object(obj) => Value::Object(
                obj.iter()
                    .map(|(k, v)| (k.clone(), walk(v, swaps)))
                    .collect(),
            ),
            _ => v.clone(),
        }
    }
    walk(body, &swaps)
}

/// How a paginator's pages are read: its tokens, the list it pages, and what one result of
/// that list stands for.
#[derive(Clone, Copy)]
struct Paging<'a> {
    in_token: &'a str,
    out_token: &'a str,
    result_key: &'a str,
    items_of: Option<crate::profile::PageItemsFn>,
    /// The list ends when a page gives back the token it was asked with (GetLogEvents, whose
    /// forward token never runs out: the AWS SDKs' `stopOnSameToken`).
    stop_on_same_token: bool,
}

impl Suite {
    /// Part 5: every waiter whose operation is implemented runs its scenario, then boto3 waits.
    pub fn waiters(&self, report: &mut Report) {
        for (name, op) in self.model.waiters() {
            if !self.config.wants(&op) && !self.config.wants(&name) {
                continue;
            }
            let case = format!("waiter {name}");
            if !self.implemented.contains(&op) {
                report.push(
                    self.service(),
                    &op,
                    Part::Waiters,
                    &case,
                    Outcome::NotApplicable(format!("{op} is not implemented")),
                );
                continue;
            }
            if let Some((_, why)) = self
                .profile
                .waiter_not_applicable
                .iter()
                .find(|(n, _)| *n == name)
            {
                report.push(
                    self.service(),
                    &op,
                    Part::Waiters,
                    &case,
                    Outcome::NotApplicable((*why).to_string()),
                );
                continue;
            }
            let Some((_, scenario)) = self
                .profile
                .waiter_scenarios
                .iter()
                .find(|(n, _)| *n == name)
            else {
                report.push(
                    self.service(),
                    &op,
                    Part::Waiters,
                    &case,
                    Outcome::Failed {
                        request: "-".into(),
                        response: "-".into(),
                        violations: vec![Violation::new(
                            Kind::Waiter,
                            "-",
                            format!("{op} is implemented but waiter {name} has no scenario in the profile"),
                        )],
                    },
                );
                continue;
            };
            if let Err(e) = self.fresh() {
                self.fail_setup(report, &op, Part::Waiters, &e);
                continue;
            }
            let result =
                scenario(&self.client).and_then(|args| self.boto3_wait(&name, &args).map(|_| args));
            report.push(
                self.service(),
                &op,
                Part::Waiters,
                &case,
                match result {
                    Ok(_) => Outcome::Passed,
                    Err(e) => Outcome::Failed {
                        request: format!("waiter {name}"),
                        response: "-".into(),
                        violations: vec![Violation::new(Kind::Waiter, "-", e)],
                    },
                },
            );
            self.waiter_failure(&name, &op, report);
        }
    }

    /// A waiter's failure acceptor: its failure scenario drives the state there, and boto3's
    /// wait must stop on it ("terminal failure state") rather than succeed or time out. A
    /// waiter with failure acceptors but no such scenario is reported not applicable.
    fn waiter_failure(&self, name: &str, op: &str, report: &mut Report) {
        if !self.model.waiter_has_failure_acceptor(name) {
            return;
        }
        let case = format!("waiter {name}, failure acceptor");
        let Some((_, scenario)) = self
            .profile
            .waiter_failures
            .iter()
            .find(|(n, _)| *n == name)
        else {
            report.push(
                self.service(),
                op,
                Part::Waiters,
                &case,
                Outcome::NotApplicable("no scenario drives it into a failure state yet".into()),
            );
            return;
        };
        if let Err(e) = self.fresh() {
            return self.fail_setup(report, op, Part::Waiters, &e);
        }
        let result = scenario(&self.client).and_then(|args| match self.boto3_wait(name, &args) {
            Ok(()) => Err(format!("boto3 waiter {name} succeeded in a failure state")),
            Err(e) if e.contains("terminal failure state") => Ok(()),
            Err(e) => Err(format!("not stopped by a failure acceptor: {e}")),
        });
        report.push(
            self.service(),
            op,
            Part::Waiters,
            &case,
            match result {
                Ok(()) => Outcome::Passed,
                Err(e) => Outcome::Failed {
                    request: format!("waiter {name} (failure)"),
                    response: "-".into(),
                    violations: vec![Violation::new(Kind::Waiter, "-", e)],
                },
            },
        );
    }

    /// Runs `client.get_waiter(name).wait(**args)` with boto3 against the endpoint.
    pub fn boto3_wait(&self, waiter: &str, args: &Value) -> Result<(), String> {
        let script = r#"
import json, os, sys, boto3
from botocore.config import Config
c = boto3.client(os.environ["SERVICE"], endpoint_url=os.environ["ENDPOINT"], region_name=os.environ["REGION"],
                 aws_access_key_id=os.environ["KEY_ID"], aws_secret_access_key=os.environ["SECRET"],
                 config=Config(retries={"max_attempts": 1}))
args = json.loads(os.environ["ARGS"])
args["WaiterConfig"] = {"Delay": 1, "MaxAttempts": 60}
c.get_waiter(os.environ["WAITER"]).wait(**args)
print("waited")
"#;
        let mut cmd = std::process::Command::new(&self.config.python);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .arg("-c")
            .arg(script)
            .env("SERVICE", self.service())
            .env("ENDPOINT", self.client.endpoint())
            .env("REGION", &self.client.region)
            .env("KEY_ID", &self.client.access_key_id)
            .env("SECRET", &self.client.secret_access_key)
            .env("ARGS", args.to_string())
            .env("WAITER", snake_case(waiter))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.config.python))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "boto3 waiter {waiter} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

#[derive(Debug, Default)]
struct Walk {
    items: Vec<Value>,
    pages: usize,
    first_token: Option<String>,
}

/// `ServicesStable` → `services_stable`, boto3's waiter name.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The members of `request` that `found` also has (recursively only at the top: nested values
/// are compared whole, as "request ⊆ response").
fn shared_members(request: &Value, found: &Value) -> Value {
    match (request, found) {
        (Value::Object(r), Value::Object(f)) => Value::Object(
            r.iter()
                .filter(|(k, _)| f.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => Value::Object(Map::new()),
    }
}

fn outcome(request: &Value, resp: Option<&Response>, violations: Vec<Violation>) -> Outcome {
    outcome_str(request.to_string(), resp, violations)
}

fn outcome_str(request: String, resp: Option<&Response>, violations: Vec<Violation>) -> Outcome {
    if violations.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed {
            request,
            response: resp.map(describe).unwrap_or_else(|| "-".into()),
            violations,
        }
    }
}

/// `value` with every string `"{{Name}}"` replaced by the binding `Name` (left as it is when
/// there is no such binding).
fn bind(value: &Value, bindings: &Map<String, Value>) -> Value {
    match value {
        Value::String(s) => s
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .and_then(|name| bindings.get(name))
            .cloned()
            .unwrap_or_else(|| value.clone()),
        Value::Array(items) => Value::Array(items.iter().map(|v| bind(v, bindings)).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), bind(v, bindings)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn bindings_fill_placeholders_anywhere_in_a_list_body() {
        let bindings = match json!({"LoadBalancerArn": "arn:lb", "Ids": ["a", "b"]}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        assert_eq!(
            bind(
                &json!({"LoadBalancerArn": "{{LoadBalancerArn}}", "Nested": [{"X": "{{Ids}}"}],
                        "Unknown": "{{Nope}}", "Plain": "{{"}),
                &bindings
            ),
            json!({"LoadBalancerArn": "arn:lb", "Nested": [{"X": ["a", "b"]}],
                   "Unknown": "{{Nope}}", "Plain": "{{"})
        );
    }

    use super::*;

    #[test]
    fn waiter_names_become_boto3_names() {
        assert_eq!(snake_case("ServicesStable"), "services_stable");
        assert_eq!(snake_case("TasksRunning"), "tasks_running");
    }

    #[test]
    fn bound_names_follow_a_fixture_made_anew() {
        let map = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let first = map(json!({"arn": "arn:1", "arns": ["arn:1", "x"], "name": "same"}));
        let now = map(json!({"arn": "arn:2", "arns": ["arn:2", "y"], "name": "same"}));
        let body = json!({"ResourceARN": "arn:1", "List": ["x", "arn:1"], "Name": "same",
                          "Other": "arn:1-suffix", "N": 1});
        assert_eq!(
            rebind_value(&body, &first, &now),
            json!({"ResourceARN": "arn:2", "List": ["y", "arn:2"], "Name": "same",
                   "Other": "arn:1-suffix", "N": 1})
        );
        // Nothing changed, nothing rebound.
        assert_eq!(rebind_value(&body, &first, &first), body);
    }
}
