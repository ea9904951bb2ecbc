//! Request generation from an operation's input shape: valid requests (minimal, maximal, every
//! value of each top-level enum, every constrained value at its bounds, the model's examples)
//! and invalid ones that break exactly one constraint of a valid base request.
//!
//! Everything is drawn from one seeded [`Rng`], so a seed names a run: the same seed sends the
//! same bytes, and a failure can be replayed with `BERTH_CONFORMANCE_SEED`.

use crate::model::Model;
use regex::Regex;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// SplitMix64: tiny, fast, and stable across crate versions (a `rand` upgrade must not change
/// what a seed generates).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A generated request.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the case is (`minimal`, `enum status=ACTIVE`, `max length /tags/0/key`).
    pub label: String,
    pub body: Value,
}

/// Which single constraint an invalid request breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    MissingRequired,
    EnumOutside,
    TooShort,
    TooLong,
    BelowMin,
    AboveMax,
    WrongType,
    PatternMismatch,
}

/// A request with exactly one broken constraint.
#[derive(Debug, Clone)]
pub struct InvalidCase {
    pub label: String,
    pub body: Value,
    pub broken: Broken,
}

/// A place in a generated request: a JSON pointer and the shape of the value there.
#[derive(Debug, Clone)]
struct Site {
    pointer: String,
    shape: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Minimal,
    Maximal,
}

/// Structures nest this deep with all members; below it, only required members.
const MAX_DEPTH: usize = 6;
/// Lists and maps get this many entries when no bound says otherwise.
const DEFAULT_ITEMS: usize = 2;
/// Strings are this long when no bound says otherwise.
const DEFAULT_LEN: usize = 10;
/// The largest request body a generated case may have unless told otherwise: berth refuses
/// awsJson, awsQuery and CBOR bodies past 1 MiB (`berth_aws::json::MAX_BODY`) before reading
/// them, as AWS refuses oversized requests, so a bigger case would test the size limit rather
/// than the constraint it was made for.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Entries of a list or map whose values are bound or broken one by one: entries past these
/// are made alike, so breaking entry 5,000 of a list at its maximum length says nothing entry 0
/// did not, while a copy of the whole body per entry would not fit in memory.
const SITE_ITEMS: usize = 3;

/// The key of a structure shape that lists groups of members of which a request must name
/// exactly one (`[["logGroupName", "logGroupIdentifier"]]`). botocore's models cannot say this
/// (AWS writes it in the documentation: "You must include either logGroupIdentifier or
/// logGroupName, but not both"), so a profile adds it to the model; the generator then names the
/// first member of each group in minimal requests and only one in bound requests, and the suite
/// does not expect such an operation to accept `{}`.
pub const REQUIRES_ONE_OF: &str = "x-berth-requires-one-of";

/// Generates requests for one model.
pub struct Generator<'a> {
    model: &'a Model,
    rng: Rng,
    /// Member name → value, used wherever a member of that name is generated in "bound"
    /// requests, so they name resources that exist (see [`crate::Profile::bindings`]).
    bindings: Map<String, Value>,
    bind: bool,
    /// The member a bound request keeps of a group it must name exactly one of (the first
    /// otherwise; see [`REQUIRES_ONE_OF`]).
    prefer: Option<String>,
    /// Top-level members bound requests generate anew rather than bind (the name of the
    /// resource a create makes; see [`crate::Profile::fresh_names`]).
    fresh: Vec<String>,
    patterns: HashMap<String, Option<Regex>>,
    counter: u64,
    body_limit: usize,
    /// Cases not generated because their body would pass `body_limit`: `(label, why)`.
    skipped: Vec<(String, String)>,
}

/// A value of a given size, or why there is none.
enum Sized {
    Value(Value),
    /// The shape has no size (an enum string, a scalar).
    None,
    /// It would take about this many bytes, more than the room left in the body.
    TooLarge(usize),
}

impl<'a> Generator<'a> {
    pub fn new(model: &'a Model, seed: u64) -> Generator<'a> {
        Generator {
            model,
            rng: Rng::new(seed),
            bindings: Map::new(),
            bind: false,
            prefer: None,
            fresh: Vec::new(),
            patterns: HashMap::new(),
            counter: 0,
            body_limit: DEFAULT_BODY_LIMIT,
            skipped: Vec::new(),
        }
    }

    /// Generates no request body larger than `limit` bytes (see [`DEFAULT_BODY_LIMIT`]).
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The cases left out so far because their body would pass the body limit, as
    /// `(label, why)`; the suite reports them as not applicable.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// `base` with `v` at `pointer`, or `None` (noted in [`Generator::skipped`]) when `v` is
    /// too large to fit the body limit there.
    fn place(&mut self, label: &str, base: &Value, pointer: &str, v: Sized) -> Option<Value> {
        let too_large = |bytes: usize, limit: usize| {
            format!("its body would be about {bytes} bytes, past the {limit}-byte request limit")
        };
        let v = match v {
            Sized::Value(v) => v,
            Sized::None => return None,
            Sized::TooLarge(bytes) => {
                let why = too_large(bytes, self.body_limit);
                self.skipped.push((label.to_string(), why));
                return None;
            }
        };
        let mut body = base.clone();
        *body.pointer_mut(pointer)? = v;
        let bytes = json_len(&body);
        if bytes > self.body_limit {
            let why = too_large(bytes, self.body_limit);
            self.skipped.push((label.to_string(), why));
            return None;
        }
        Some(body)
    }

    /// How many bytes a value of `pointer`'s size may take in `base` and keep the body within
    /// the limit.
    fn room(&self, base: &Value, pointer: &str) -> usize {
        let slot = base.pointer(pointer).map_or(0, json_len);
        self.body_limit
            .saturating_sub(json_len(base).saturating_sub(slot))
    }

    pub fn with_bindings(mut self, bindings: Map<String, Value>) -> Self {
        self.bindings = bindings;
        self
    }

    /// Bound requests generate these top-level members anew instead of binding them.
    pub fn with_fresh(mut self, members: &[&str]) -> Self {
        self.fresh = members.iter().map(|m| m.to_string()).collect();
        self
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn shape(&self, name: &str) -> Value {
        self.model.shape(name).cloned().unwrap_or(Value::Null)
    }

    fn pattern(&mut self, p: &str) -> Option<Regex> {
        self.patterns
            .entry(p.to_string())
            .or_insert_with(|| Regex::new(p).ok())
            .clone()
    }

    /// The request with only required members, random names.
    pub fn minimal(&mut self, op: &str) -> Value {
        self.request(op, Mode::Minimal, false)
    }

    /// The request with every member (depth-limited), random names.
    pub fn maximal(&mut self, op: &str) -> Value {
        self.request(op, Mode::Maximal, false)
    }

    fn request(&mut self, op: &str, mode: Mode, bind: bool) -> Value {
        self.bind = bind;
        let v = match self.model.input_shape(op) {
            Some(shape) => self.value(shape, mode, 0),
            None => json!({}),
        };
        self.bind = false;
        v
    }

    /// Every valid request for `op`, in a fixed order.
    pub fn valid_cases(&mut self, op: &str) -> Vec<Case> {
        let mut cases = vec![
            Case {
                label: "minimal".into(),
                body: self.request(op, Mode::Minimal, false),
            },
            Case {
                label: "maximal".into(),
                body: self.request(op, Mode::Maximal, false),
            },
        ];
        if !self.bindings.is_empty() {
            cases.push(Case {
                label: "minimal, bound".into(),
                body: self.request(op, Mode::Minimal, true),
            });
            cases.push(Case {
                label: "maximal, bound".into(),
                body: self.request(op, Mode::Maximal, true),
            });
        }
        let Some(input) = self.model.input_shape(op).map(str::to_string) else {
            return cases;
        };
        // Every value of each top-level enum member, on top of the bound minimal request.
        let input_shape = self.shape(&input);
        let members: Vec<(String, String)> = members_of(&input_shape);
        for (name, member_shape) in &members {
            let s = self.shape(member_shape);
            let Some(values) = s["enum"].as_array() else {
                continue;
            };
            for v in values {
                let mut body = self.request(op, Mode::Minimal, true);
                body[name.as_str()] = v.clone();
                cases.push(Case {
                    label: format!("enum {name}={}", v.as_str().unwrap_or_default()),
                    body,
                });
            }
        }
        // Every constrained value of the maximal request at its lower and upper bound, one site
        // at a time (a list at its maximum length holds minimal entries), as long as the body
        // stays within the limit; a bound that cannot is noted, not shrunk.
        // A request that must name one of a group names the first; each other member gets a
        // bound maximal request of its own, so its constraints are reached too.
        let mut bases = vec![self.request(op, Mode::Maximal, true)];
        if !self.bindings.is_empty() {
            for member in one_of_alternatives(&input_shape) {
                self.prefer = Some(member.clone());
                let body = self.request(op, Mode::Maximal, true);
                self.prefer = None;
                cases.push(Case {
                    label: format!("maximal, bound, with {member}"),
                    body: body.clone(),
                });
                bases.push(body);
            }
        }
        for base in &bases {
            let mut sites = Vec::new();
            self.sites(&input, base, String::new(), &mut sites);
            for site in sites {
                let s = self.shape(&site.shape);
                for (which, bound) in [("min", &s["min"]), ("max", &s["max"])] {
                    let Some(bound) = bound.as_f64() else {
                        continue;
                    };
                    let label = format!("{which} {} ({bound})", site.pointer);
                    if cases.iter().any(|c| c.label == label) {
                        continue;
                    }
                    let room = self.room(base, &site.pointer);
                    let v = self.at_bound(&site.shape, bound, room);
                    if let Some(body) = self.place(&label, base, &site.pointer, v) {
                        cases.push(Case { label, body });
                    }
                }
            }
        }
        // Every value of each nested enum too, once per enum shape, at its first site in a
        // bound maximal request (top-level enums had theirs above).
        let mut covered: Vec<String> = members.iter().map(|(_, m)| m.clone()).collect();
        for base in &bases {
            let mut sites = Vec::new();
            self.sites(&input, base, String::new(), &mut sites);
            for site in sites {
                if site.pointer.matches('/').count() < 2 || covered.contains(&site.shape) {
                    continue;
                }
                let s = self.shape(&site.shape);
                let Some(values) = s["enum"].as_array() else {
                    continue;
                };
                covered.push(site.shape.clone());
                for v in values {
                    if base.pointer(&site.pointer) == Some(v) {
                        continue;
                    }
                    let mut body = base.clone();
                    if let Some(slot) = body.pointer_mut(&site.pointer) {
                        *slot = v.clone();
                        cases.push(Case {
                            label: format!(
                                "enum {}={}",
                                site.pointer,
                                v.as_str().unwrap_or_default()
                            ),
                            body,
                        });
                    }
                }
            }
        }
        for (i, example) in self.model.example_inputs(op).into_iter().enumerate() {
            cases.push(Case {
                label: format!("example {}", i + 1),
                body: example,
            });
        }
        cases
    }

    /// Invalid requests for `op`: `base` (a valid request) with one constraint broken at a time.
    /// Top-level breaks come first and are all kept; deeper ones are sampled down to `cap`.
    pub fn invalid_cases(&mut self, op: &str, base: &Value, cap: usize) -> Vec<InvalidCase> {
        let Some(input) = self.model.input_shape(op).map(str::to_string) else {
            return Vec::new();
        };
        let mut sites = vec![Site {
            pointer: String::new(),
            shape: input.clone(),
        }];
        self.sites(&input, base, String::new(), &mut sites);
        let mut top = Vec::new();
        let mut deep = Vec::new();
        for site in sites {
            let depth = site.pointer.matches('/').count();
            for case in self.break_site(base, &site) {
                if depth <= 1 { &mut top } else { &mut deep }.push(case);
            }
        }
        self.rng.shuffle(&mut deep);
        top.extend(deep);
        top.truncate(cap.max(1));
        top
    }

    /// The ways to break the value at `site`, each on a copy of `base`.
    fn break_site(&mut self, base: &Value, site: &Site) -> Vec<InvalidCase> {
        let s = self.shape(&site.shape);
        let kind = s["type"].as_str().unwrap_or_default().to_string();
        let at = if site.pointer.is_empty() {
            "the body".to_string()
        } else {
            site.pointer.clone()
        };
        let mut out = Vec::new();
        let room = self.room(base, &site.pointer);
        let mut sized_cases = Vec::new();
        let min = s["min"].as_f64();
        let max = s["max"].as_f64();
        if matches!(kind.as_str(), "string" | "list" | "map") {
            if let Some(min) = min.filter(|m| *m >= 1.0) {
                let label = format!("too short at {at} (min {min})");
                let v = self.sized(&site.shape, min as usize - 1, room);
                if let Some(body) = self.place(&label, base, &site.pointer, v) {
                    sized_cases.push(InvalidCase {
                        label,
                        body,
                        broken: Broken::TooShort,
                    });
                }
            }
            if let Some(max) = max {
                let label = format!("too long at {at} (max {max})");
                let v = self.sized(&site.shape, max as usize + 1, room);
                if let Some(body) = self.place(&label, base, &site.pointer, v) {
                    sized_cases.push(InvalidCase {
                        label,
                        body,
                        broken: Broken::TooLong,
                    });
                }
            }
        }
        let with = |out: &mut Vec<InvalidCase>, label: String, broken: Broken, v: Value| {
            let mut body = base.clone();
            if let Some(slot) = body.pointer_mut(&site.pointer) {
                *slot = v;
                out.push(InvalidCase {
                    label,
                    body,
                    broken,
                });
            }
        };
        // awsQuery carries every scalar as text, so a string member cannot be sent a value
        // of another type: the wire has no way to say it.
        let query = self.model.metadata("protocol") == Some("query");
        if !(query && matches!(kind.as_str(), "string" | "blob")) {
            with(
                &mut out,
                format!("wrong type at {at}"),
                Broken::WrongType,
                wrong_type(&kind),
            );
        }
        if s["enum"].is_array() {
            with(
                &mut out,
                format!("enum outside the set at {at}"),
                Broken::EnumOutside,
                json!("CONFORMANCE_NOT_IN_ENUM"),
            );
        }
        out.append(&mut sized_cases);
        match kind.as_str() {
            "integer" | "long" => {
                if let Some(min) = min {
                    with(
                        &mut out,
                        format!("below min at {at} ({min})"),
                        Broken::BelowMin,
                        json!(min as i64 - 1),
                    );
                }
                if let Some(max) = max {
                    with(
                        &mut out,
                        format!("above max at {at} ({max})"),
                        Broken::AboveMax,
                        json!(max as i64 + 1),
                    );
                }
            }
            "double" | "float" => {
                if let Some(min) = min {
                    with(
                        &mut out,
                        format!("below min at {at} ({min})"),
                        Broken::BelowMin,
                        json!(min - 0.5),
                    );
                }
                if let Some(max) = max {
                    with(
                        &mut out,
                        format!("above max at {at} ({max})"),
                        Broken::AboveMax,
                        json!(max + 0.5),
                    );
                }
            }
            _ => {}
        }
        if kind == "string"
            && let Some(p) = s["pattern"].as_str()
            && let Some(re) = self.pattern(p)
        {
            // botocore's patterns are unanchored (Smithy semantics), so a mismatch must not
            // match anywhere; a pattern that matches every string (`[…]*`) cannot be broken.
            let len = min.unwrap_or(1.0).max(1.0) as usize;
            for c in ["#", "!", "\u{1}", "~", "$"] {
                let v = c.repeat(len);
                if !re.is_match(&v) {
                    with(
                        &mut out,
                        format!("pattern mismatch at {at}"),
                        Broken::PatternMismatch,
                        json!(v),
                    );
                    break;
                }
            }
        }
        if kind == "structure" {
            let required: Vec<String> = s["required"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for r in required {
                let mut body = base.clone();
                let removed = match body.pointer_mut(&site.pointer) {
                    Some(Value::Object(o)) => o.remove(&r).is_some(),
                    _ => false,
                };
                if removed {
                    out.push(InvalidCase {
                        label: format!("missing required {at}/{r}"),
                        body,
                        broken: Broken::MissingRequired,
                    });
                }
            }
        }
        out
    }

    /// Every value in `value` (generated from `shape`) with its shape, depth first; of a list or
    /// map, the first [`SITE_ITEMS`] entries.
    fn sites(&self, shape: &str, value: &Value, pointer: String, out: &mut Vec<Site>) {
        let s = self.shape(shape);
        match (s["type"].as_str(), value) {
            (Some("structure"), Value::Object(obj)) => {
                for (name, member_shape) in members_of(&s) {
                    if let Some(v) = obj.get(&name) {
                        let p = format!("{pointer}/{}", escape(&name));
                        out.push(Site {
                            pointer: p.clone(),
                            shape: member_shape.clone(),
                        });
                        self.sites(&member_shape, v, p, out);
                    }
                }
            }
            (Some("list"), Value::Array(items)) => {
                if let Some(member) = s["member"]["shape"].as_str() {
                    for (i, v) in items.iter().enumerate().take(SITE_ITEMS) {
                        let p = format!("{pointer}/{i}");
                        out.push(Site {
                            pointer: p.clone(),
                            shape: member.to_string(),
                        });
                        self.sites(member, v, p, out);
                    }
                }
            }
            (Some("map"), Value::Object(obj)) => {
                if let Some(val) = s["value"]["shape"].as_str() {
                    for (k, v) in obj.iter().take(SITE_ITEMS) {
                        let p = format!("{pointer}/{}", escape(k));
                        out.push(Site {
                            pointer: p.clone(),
                            shape: val.to_string(),
                        });
                        self.sites(val, v, p, out);
                    }
                }
            }
            _ => {}
        }
    }

    /// A value of `shape` at `bound`: a string/list/map of that length (within `room` bytes),
    /// a number of that value.
    fn at_bound(&mut self, shape: &str, bound: f64, room: usize) -> Sized {
        let s = self.shape(shape);
        match s["type"].as_str().unwrap_or_default() {
            "string" | "list" | "map" => self.sized(shape, bound as usize, room),
            "integer" | "long" => Sized::Value(json!(bound as i64)),
            "double" | "float" => Sized::Value(json!(bound)),
            _ => Sized::None,
        }
    }

    /// A string of `len` characters, or a list/map of `len` generated minimal entries; nothing
    /// is built when it would take more than `room` bytes (its size is known from the first
    /// entry, so a list of 10,000 large entries is never made only to be thrown away).
    fn sized(&mut self, shape: &str, len: usize, room: usize) -> Sized {
        let s = self.shape(shape);
        match s["type"].as_str().unwrap_or_default() {
            "string" => {
                if s["enum"].is_array() {
                    return Sized::None;
                }
                // Generated strings are ASCII: one byte a character, plus the quotes.
                if len + 2 > room {
                    return Sized::TooLarge(len + 2);
                }
                Sized::Value(Value::String(self.string_of_len(&s, len, true)))
            }
            "list" => {
                let Some(member) = s["member"]["shape"].as_str().map(str::to_string) else {
                    return Sized::None;
                };
                let mut items = Vec::with_capacity(len.min(room));
                for i in 0..len {
                    let item = self.value(&member, Mode::Minimal, 1);
                    if i == 0 {
                        let bytes = len.saturating_mul(json_len(&item) + 1).saturating_add(1);
                        if bytes > room {
                            return Sized::TooLarge(bytes);
                        }
                    }
                    items.push(item);
                }
                Sized::Value(Value::Array(items))
            }
            "map" => {
                let (Some(key), Some(val)) =
                    (s["key"]["shape"].as_str(), s["value"]["shape"].as_str())
                else {
                    return Sized::None;
                };
                let (key, val) = (key.to_string(), val.to_string());
                let mut m = Map::new();
                let mut guard = 0;
                while m.len() < len && guard < len * 4 + 8 {
                    guard += 1;
                    let k = self.value(&key, Mode::Minimal, 1);
                    let k = k.as_str().unwrap_or_default().to_string();
                    let v = self.value(&val, Mode::Minimal, 1);
                    if guard == 1 {
                        let bytes = len
                            .saturating_mul(k.len() + json_len(&v) + 4)
                            .saturating_add(1);
                        if bytes > room {
                            return Sized::TooLarge(bytes);
                        }
                    }
                    m.insert(k, v);
                }
                Sized::Value(Value::Object(m))
            }
            _ => Sized::None,
        }
    }

    /// A value of `shape`.
    /// Whether a bound value fits `shape`: same JSON type, and for a list, every element fits
    /// the member shape (a binding named `services` holds service names, which must not land in
    /// a list of structures that happens to share the member name).
    fn fits(&self, bound: &Value, shape: &str) -> bool {
        let s = self.shape(shape);
        if !fits_top(bound, &s) {
            return false;
        }
        match (bound, s["member"]["shape"].as_str()) {
            (Value::Array(items), Some(member)) => items.iter().all(|i| self.fits(i, member)),
            _ => true,
        }
    }

    fn value(&mut self, shape: &str, mode: Mode, depth: usize) -> Value {
        let s = self.shape(shape);
        if s["document"].as_bool() == Some(true) {
            return json!({});
        }
        match s["type"].as_str().unwrap_or_default() {
            "structure" => {
                let mut required: Vec<&str> = s["required"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                // Of each group of members a request must name exactly one (see
                // [`REQUIRES_ONE_OF`]), the first stands in for the group.
                required.extend(
                    s[REQUIRES_ONE_OF]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|group| group[0].as_str()),
                );
                let all = mode == Mode::Maximal && depth < MAX_DEPTH;
                let union = s["union"].as_bool() == Some(true);
                let mut obj = Map::new();
                for (name, member_shape) in members_of(&s) {
                    let wanted = required.contains(&name.as_str()) || all;
                    // A union takes exactly one member.
                    if !wanted || (union && !obj.is_empty()) {
                        continue;
                    }
                    let fresh = depth == 0 && self.fresh.contains(&name);
                    let bound = self
                        .bindings
                        .get(&name)
                        .filter(|b| self.bind && !fresh && self.fits(b, &member_shape))
                        .cloned();
                    let v = match bound {
                        // A null binding leaves the member out of bound requests.
                        Some(Value::Null) => continue,
                        Some(b) => b,
                        None => self.value(&member_shape, mode, depth + 1),
                    };
                    obj.insert(name, v);
                }
                // A bound request is meant to be accepted: of each group it must name exactly
                // one of, it keeps the preferred member or else the first it holds (unbound
                // ones keep all, which the server must refuse).
                if self.bind {
                    for group in s[REQUIRES_ONE_OF].as_array().into_iter().flatten() {
                        let held: Vec<&str> = group
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .filter(|m| obj.contains_key(*m))
                            .collect();
                        let keep = self
                            .prefer
                            .as_deref()
                            .filter(|p| held.contains(p))
                            .or(held.first().copied())
                            .map(str::to_string);
                        for extra in held.iter().filter(|m| Some(**m) != keep.as_deref()) {
                            obj.remove(*extra);
                        }
                    }
                }
                Value::Object(obj)
            }
            "list" => {
                let member = s["member"]["shape"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let n = count(&s, DEFAULT_ITEMS);
                Value::Array(
                    (0..n)
                        .map(|_| self.value(&member, mode, depth + 1))
                        .collect(),
                )
            }
            "map" => {
                let n = count(&s, 1);
                match self.sized(shape, n, usize::MAX) {
                    Sized::Value(v) => v,
                    _ => json!({}),
                }
            }
            "string" => {
                if let Some(values) = s["enum"].as_array().filter(|v| !v.is_empty()) {
                    let i = self.rng.below(values.len() as u64) as usize;
                    return values[i].clone();
                }
                let len = count(&s, DEFAULT_LEN);
                Value::String(self.string_of_len(&s, len, false))
            }
            "integer" | "long" => {
                let min = s["min"].as_f64().map(|m| m as i64).unwrap_or(1);
                let max = s["max"]
                    .as_f64()
                    .map(|m| m as i64)
                    .unwrap_or(min.max(1) + 99);
                json!(min + self.rng.below((max - min).max(0) as u64 + 1) as i64)
            }
            "double" | "float" => {
                let min = s["min"].as_f64().unwrap_or(0.0);
                let max = s["max"].as_f64().unwrap_or(min + 100.0);
                json!(min + (max - min) * (self.rng.below(1000) as f64 / 1000.0))
            }
            "boolean" => json!(self.rng.below(2) == 1),
            // awsJson sends timestamps as epoch seconds.
            "timestamp" => json!(1_700_000_000 + self.rng.below(100_000_000) as i64),
            "blob" => json!("Y29uZm9ybWFuY2U="),
            _ => Value::Null,
        }
    }

    /// A string of `len` characters from `[a-z0-9-]` (the alphabet every ECS name accepts),
    /// unique within the run; where the shape has a pattern it does not match in full, one
    /// built from the pattern (see [`crate::pattern`]).
    ///
    /// With `exact`, the string is `len` long even where the pattern then cannot match (a bound
    /// or a deliberately broken length); without, a pattern that fixes the length (`[0-9]{12}`)
    /// wins over `len`.
    fn string_of_len(&mut self, s: &Value, len: usize, exact: bool) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        self.counter += 1;
        // Start with a letter and keep a run counter in the middle so names do not collide.
        let mut out = String::with_capacity(len);
        let tag = format!("c{}", self.counter);
        for (i, c) in tag.chars().enumerate() {
            if i < len {
                out.push(c);
            }
        }
        while out.chars().count() < len {
            let c = ALPHABET[self.rng.below(ALPHABET.len() as u64) as usize] as char;
            out.push(if out.len() % 7 == 3 { '-' } else { c });
        }
        let Some(p) = s["pattern"].as_str() else {
            return out;
        };
        // A value the service takes matches its pattern in full (botocore's patterns are
        // unanchored, but AWS matches them whole), within the shape's length bounds.
        let whole = self.pattern(&format!("^(?:{p})$"));
        if whole.as_ref().is_some_and(|re| re.is_match(&out)) {
            return out;
        }
        let within = |v: &str| {
            let n = v.chars().count();
            if exact {
                return n == len;
            }
            let n = n as f64;
            s["min"].as_f64().is_none_or(|m| n >= m) && s["max"].as_f64().is_none_or(|m| n <= m)
        };
        if let (Some(re), Some(v)) = (&whole, crate::pattern::generate(p, len, &mut self.rng))
            && re.is_match(&v)
            && within(&v)
        {
            return v;
        }
        if let Some(re) = self.pattern(p)
            && !re.is_match(&out)
        {
            for c in ["a", "A", "1", "x"] {
                let alt = c.repeat(len);
                if re.is_match(&alt) {
                    return alt;
                }
            }
        }
        out
    }
}

/// The members of `shape`'s [`REQUIRES_ONE_OF`] groups that do not stand for their group in
/// minimal requests (all but the first of each).
fn one_of_alternatives(shape: &Value) -> Vec<String> {
    shape[REQUIRES_ONE_OF]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flat_map(|group| group.iter().skip(1).filter_map(Value::as_str))
        .map(String::from)
        .collect()
}

/// `(member name, member shape)` of a structure shape, in model order.
pub fn members_of(shape: &Value) -> Vec<(String, String)> {
    shape["members"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v["shape"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a binding can stand for a member of `shape`: the same JSON type (members of one name
/// can differ in type across shapes, like a task's string `cpu` and a container's integer one).
/// Whether a bound value has the type of `shape` at its top (lists are checked further by
/// [`Generator::fits`]), and is one of its values where it is an enum (ELBv2's `Type` is a load
/// balancer's type in one shape and an action's in another).
fn fits_top(bound: &Value, shape: &Value) -> bool {
    if let (Value::String(_), Some(values)) = (bound, shape["enum"].as_array())
        && !values.contains(bound)
    {
        return false;
    }
    matches!(
        (bound, shape["type"].as_str().unwrap_or_default()),
        (Value::Null, _)
            | (Value::String(_), "string" | "blob")
            | (
                Value::Number(_),
                "integer" | "long" | "double" | "float" | "timestamp"
            )
            | (Value::Bool(_), "boolean")
            | (Value::Array(_), "list")
            | (Value::Object(_), "structure" | "map")
    )
}

/// How many entries a list/map or characters a string get: `default`, moved into `[min, max]`.
fn count(s: &Value, default: usize) -> usize {
    let mut n = default as f64;
    if let Some(min) = s["min"].as_f64() {
        n = n.max(min);
    }
    if let Some(max) = s["max"].as_f64() {
        n = n.min(max);
    }
    n as usize
}

/// A JSON value of the wrong type for a shape of type `kind`.
fn wrong_type(kind: &str) -> Value {
    match kind {
        "string" | "blob" => json!(12345),
        "integer" | "long" | "double" | "float" | "timestamp" => json!("not-a-number"),
        // Not `"true"`: a form would carry it as the boolean itself.
        "boolean" => json!("not-a-boolean"),
        "list" => json!({"not": "a list"}),
        "structure" | "map" => json!(["not", "an", "object"]),
        _ => json!([]),
    }
}

/// The length of `v` as compact JSON, as the suite sends it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// JSON-pointer escaping of one reference token.
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            service: "t".into(),
            service_json: json!({
                "metadata": {},
                "operations": {"Op": {"input": {"shape": "In"}}},
                "shapes": {
                    "In": {"type": "structure", "required": ["name"], "members": {
                        "name": {"shape": "Name"}, "status": {"shape": "Status"},
                        "count": {"shape": "Count"}, "tags": {"shape": "Tags"}}},
                    "Name": {"type": "string", "min": 1, "max": 5, "pattern": "[a-z0-9-]+"},
                    "Status": {"type": "string", "enum": ["A", "B"]},
                    "Count": {"type": "integer", "min": 0, "max": 10},
                    "Tags": {"type": "list", "member": {"shape": "Name"}, "max": 3}
                }
            }),
            paginators: Value::Null,
            waiters: Value::Null,
            examples: Value::Null,
        }
    }

    #[test]
    fn generation_is_deterministic_and_respects_constraints() {
        let m = model();
        let a = Generator::new(&m, 7).valid_cases("Op");
        let b = Generator::new(&m, 7).valid_cases("Op");
        assert_eq!(
            a.iter().map(|c| c.body.to_string()).collect::<Vec<_>>(),
            b.iter().map(|c| c.body.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(a[0].body.as_object().map(|o| o.len()), Some(1));
        for case in &a {
            let name = case.body["name"].as_str().unwrap();
            assert!((1..=5).contains(&name.len()), "{}: {name}", case.label);
        }
        assert!(a.iter().any(|c| c.label == "enum status=B"));
        assert!(a.iter().any(|c| c.body["count"] == json!(10)));
    }

    #[test]
    fn every_value_of_a_nested_enum_is_sent_once() {
        let mut m = model();
        m.service_json["shapes"]["In"]["members"]["inner"] = json!({"shape": "Inner"});
        m.service_json["shapes"]["Inner"] = json!({"type": "structure", "members": {
            "mode": {"shape": "Mode"}, "again": {"shape": "Mode"}}});
        m.service_json["shapes"]["Mode"] = json!({"type": "string", "enum": ["X", "Y", "Z"]});
        let bindings = match json!({"name": "bound"}) {
            Value::Object(b) => b,
            _ => unreachable!(),
        };
        let cases = Generator::new(&m, 2)
            .with_bindings(bindings)
            .valid_cases("Op");
        let base = &cases
            .iter()
            .find(|c| c.label == "maximal, bound")
            .unwrap()
            .body;
        let nested: Vec<&Case> = cases
            .iter()
            .filter(|c| c.label.starts_with("enum /inner/"))
            .collect();
        // Two values besides the one the base holds, at the first site of the shape only.
        assert_eq!(
            nested.len(),
            2,
            "{:?}",
            nested.iter().map(|c| &c.label).collect::<Vec<_>>()
        );
        let mut sent: Vec<&Value> = nested.iter().map(|c| &c.body["inner"]["mode"]).collect();
        sent.push(&base["inner"]["mode"]);
        for v in ["X", "Y", "Z"] {
            assert!(sent.contains(&&json!(v)), "{v} never sent: {sent:?}");
        }
    }

    #[test]
    fn a_bound_that_cannot_fit_the_body_is_skipped_with_a_note_and_large_lists_stay_cheap() {
        let mut m = model();
        m.service_json["shapes"]["Tags"]["max"] = json!(100_000);
        // 100,000 names of at least 1 character are ~400 KB: past a 64 KiB limit.
        let mut g = Generator::new(&m, 3).with_body_limit(64 * 1024);
        let cases = g.valid_cases("Op");
        assert!(!cases.iter().any(|c| c.label == "max /tags (100000)"));
        assert!(cases.iter().all(|c| json_len(&c.body) <= 64 * 1024));
        let (label, why) = &g.skipped()[0];
        assert_eq!(label, "max /tags (100000)");
        assert!(why.contains("65536-byte"), "{why}");
        // Within the default limit it is made, each entry minimal, and breaking it looks at a
        // few entries rather than copying the body once per entry.
        let mut g = Generator::new(&m, 3);
        let cases = g.valid_cases("Op");
        let at_max = cases
            .iter()
            .find(|c| c.label == "max /tags (100000)")
            .expect("the list at its maximum length");
        assert_eq!(at_max.body["tags"].as_array().map(Vec::len), Some(100_000));
        assert!(g.skipped().is_empty(), "{:?}", g.skipped());
        let invalid = g.invalid_cases("Op", &at_max.body, usize::MAX);
        assert!(invalid.len() < 40, "{} cases", invalid.len());
        assert!(
            invalid
                .iter()
                .any(|c| c.label == "too long at /tags/0 (max 5)")
        );
        assert!(!invalid.iter().any(|c| c.label.contains("/tags/3 ")));
    }

    #[test]
    fn one_of_a_group_is_named_minimally_and_alone_when_bound() {
        let mut m = model();
        m.service_json["shapes"]["In"]["required"] = json!([]);
        m.service_json["shapes"]["In"][REQUIRES_ONE_OF] = json!([["name", "tags"]]);
        let bindings = match json!({"name": "bound", "tags": ["x"]}) {
            Value::Object(b) => b,
            _ => unreachable!(),
        };
        let mut g = Generator::new(&m, 5).with_bindings(bindings);
        assert!(g.minimal("Op")["name"].is_string());
        let cases = g.valid_cases("Op");
        let body = |label: &str| &cases.iter().find(|c| c.label == label).unwrap().body;
        // Unbound, every member: the server must refuse both at once.
        assert!(body("maximal")["name"].is_string() && body("maximal")["tags"].is_array());
        assert_eq!(body("maximal, bound")["name"], "bound");
        assert!(body("maximal, bound").get("tags").is_none());
        // The other member of the group gets a bound maximal request of its own, and bound
        // cases at its constraints.
        assert_eq!(body("maximal, bound, with tags")["tags"], json!(["x"]));
        assert!(body("maximal, bound, with tags").get("name").is_none());
        let at_max = body("max /tags (3)");
        assert!(at_max.get("name").is_none(), "{at_max}");
    }

    #[test]
    fn a_fresh_member_is_generated_anew_in_bound_requests_within_its_pattern() {
        let bindings = match json!({"name": "fixture", "tags": ["x"]}) {
            Value::Object(b) => b,
            _ => unreachable!(),
        };
        let m = model();
        let cases = Generator::new(&m, 5)
            .with_bindings(bindings.clone())
            .with_fresh(&["name"])
            .valid_cases("Op");
        let bound: Vec<&Case> = cases.iter().filter(|c| c.label.contains("bound")).collect();
        assert!(!bound.is_empty());
        let whole = Regex::new("^(?:[a-z0-9-]+)$").unwrap();
        for case in cases.iter().filter(|c| c.body.get("name").is_some()) {
            let name = case.body["name"].as_str().unwrap();
            assert_ne!(name, "fixture", "{}", case.label);
            assert!(
                whole.is_match(name) && name.len() <= 5,
                "{}: {name}",
                case.label
            );
        }
        // Other members stay bound.
        assert_eq!(bound[1].body["tags"], json!(["x"]));
        // Without it, the fixture's name is used.
        let cases = Generator::new(&m, 5)
            .with_bindings(bindings)
            .valid_cases("Op");
        assert!(cases.iter().any(|c| c.body["name"] == "fixture"));
    }

    #[test]
    fn each_invalid_case_breaks_one_thing() {
        let m = model();
        let mut g = Generator::new(&m, 1);
        let base = g.maximal("Op");
        let cases = g.invalid_cases("Op", &base, 100);
        let kinds: Vec<Broken> = cases.iter().map(|c| c.broken).collect();
        for k in [
            Broken::MissingRequired,
            Broken::EnumOutside,
            Broken::TooShort,
            Broken::TooLong,
            Broken::BelowMin,
            Broken::AboveMax,
            Broken::WrongType,
            Broken::PatternMismatch,
        ] {
            assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
        }
    }
}
