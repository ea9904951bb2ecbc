//! Judging responses against the model: a 200's body against the operation's output shape, an
//! error's status and code against the operation's declared errors, plus the JSON comparisons
//! the echo and state checks use. Pure functions: no I/O.

use crate::client::Response;
use crate::generate::members_of;
use crate::model::Model;
use serde_json::Value;
use std::fmt;

/// What kind of non-conformance a check found. The honesty tests assert on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The connection failed or the response was not HTTP.
    Transport,
    /// A 5xx: never acceptable.
    ServerError,
    /// A status the check did not allow (a 2xx for invalid input, a 3xx, a 4xx for a request
    /// that must succeed).
    UnexpectedStatus,
    /// A body that is not the JSON the protocol requires.
    NotJson,
    /// No `x-amzn-RequestId` header.
    MissingRequestId,
    /// An error code the operation does not declare and the protocol does not define.
    UndeclaredError,
    /// A JSON value of the wrong type for its shape.
    WrongType,
    /// A required member is absent.
    MissingRequired,
    /// A string outside its shape's enum.
    BadEnum,
    /// A member the shape does not have.
    UnknownMember,
    /// A timestamp that is not a JSON number (epoch seconds).
    BadTimestamp,
    /// Invalid input changed the service's state.
    StateChanged,
    /// What was accepted does not come back from the matching Describe/List.
    EchoMismatch,
    /// A paginator returned an item twice.
    PageRepeat,
    /// A paginator skipped an item or returned them out of order.
    PageSkip,
    /// A waiter did not succeed, or no scenario exists for an applicable waiter.
    Waiter,
}

/// One non-conformance: where and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub kind: Kind,
    /// A JSON path in the response (`$.clusters[0].status`) or `-`.
    pub path: String,
    pub detail: String,
}

impl Violation {
    pub fn new(kind: Kind, path: impl Into<String>, detail: impl Into<String>) -> Violation {
        Violation {
            kind,
            path: path.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {}: {}", self.kind, self.path, self.detail)
    }
}

/// Error codes every awsJson operation may answer, whatever it declares: the protocol's own.
pub const GENERIC_ERRORS: &[&str] = &["SerializationException", "UnknownOperationException"];

/// The same for awsQuery, whose services answer model violations with `ValidationError`.
pub const GENERIC_QUERY_ERRORS: &[&str] = &["ValidationError", "InvalidAction", "MissingAction"];

/// A former awsQuery service that speaks awsJson or CBOR (`awsQueryCompatible`, CloudWatch)
/// answers with the codes of both, and with the awsQuery "common errors" its API reference
/// says any action may return (`InvalidParameterValue`, `InvalidParameterCombination`,
/// `MissingParameter`), which the model declares on only some operations.
pub const GENERIC_QUERY_COMPATIBLE_ERRORS: &[&str] = &[
    "SerializationException",
    "UnknownOperationException",
    "ValidationError",
    "InvalidAction",
    "MissingAction",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
];

/// The protocol's own error codes for `model`'s protocol.
pub fn generic_errors(model: &Model) -> &'static [&'static str] {
    if model.service_json["metadata"]
        .get("awsQueryCompatible")
        .is_some()
    {
        GENERIC_QUERY_COMPATIBLE_ERRORS
    } else if model.metadata("protocol") == Some("query") {
        GENERIC_QUERY_ERRORS
    } else {
        GENERIC_ERRORS
    }
}

/// Checks headers every response must carry.
pub fn check_common(resp: &Response) -> Vec<Violation> {
    let mut v = Vec::new();
    if resp.header("x-amzn-requestid").is_none_or(str::is_empty) {
        v.push(Violation::new(
            Kind::MissingRequestId,
            "-",
            "no x-amzn-RequestId header",
        ));
    }
    v
}

/// A successful response of `op`: status 200 and a body conforming to the output shape.
pub fn check_success(model: &Model, op: &str, resp: &Response) -> Vec<Violation> {
    let mut v = check_common(resp);
    if resp.status != 200 {
        v.push(Violation::new(
            if resp.status >= 500 {
                Kind::ServerError
            } else {
                Kind::UnexpectedStatus
            },
            "-",
            format!("status {} where 200 was required", resp.status),
        ));
        return v;
    }
    let body = if resp.body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        match resp.json() {
            Some(b) => b,
            None => {
                v.push(Violation::new(Kind::NotJson, "$", "the body is not JSON"));
                return v;
            }
        }
    };
    if let Some(shape) = model.output_shape(op) {
        check_shape(model, shape, &body, "$", &mut v);
    }
    v
}

/// An error response of `op`: a 4xx whose code the operation declares or the protocol defines.
pub fn check_error(model: &Model, op: &str, resp: &Response) -> Vec<Violation> {
    let mut v = check_common(resp);
    if resp.status >= 500 {
        v.push(Violation::new(
            Kind::ServerError,
            "-",
            format!("status {}: a 5xx is never acceptable", resp.status),
        ));
        return v;
    }
    if !(400..500).contains(&resp.status) {
        v.push(Violation::new(
            Kind::UnexpectedStatus,
            "-",
            format!("status {} where a 4xx error was required", resp.status),
        ));
        return v;
    }
    if resp.json().is_none() {
        v.push(Violation::new(
            Kind::NotJson,
            "$",
            "the error body is not JSON",
        ));
    }
    match resp.error_code() {
        None => v.push(Violation::new(
            Kind::UndeclaredError,
            "$.__type",
            "the error has no code",
        )),
        Some(code) => {
            let declared = model.errors(op);
            if !declared.contains(&code)
                && !generic_errors(model).contains(&code.as_str())
                && !is_framework_validation(&code, resp)
            {
                v.push(Violation::new(
                    Kind::UndeclaredError,
                    "$.__type",
                    format!("{code} is neither declared by {op} ({declared:?}) nor generic"),
                ));
            }
        }
    }
    v
}

/// AWS's request validation answers a broken model constraint with `ValidationException` and
/// the wording "1 validation error detected: …" before any operation runs, whatever the
/// operation declares (Application Auto Scaling's ListTagsForResource declares only
/// `ResourceNotFoundException`). Only that wording makes the code generic.
fn is_framework_validation(code: &str, resp: &Response) -> bool {
    code == "ValidationException"
        && resp.json().is_some_and(|b| {
            b["message"]
                .as_str()
                .or_else(|| b["Message"].as_str())
                .is_some_and(|m| {
                    m.split_once(' ').is_some_and(|(n, rest)| {
                        n.parse::<u32>().is_ok()
                            && (rest.starts_with("validation error detected: ")
                                || rest.starts_with("validation errors detected: "))
                    })
                })
        })
}

/// A response that may be either a success or a declared error.
pub fn check_any(model: &Model, op: &str, resp: &Response) -> Vec<Violation> {
    if resp.status == 200 {
        check_success(model, op, resp)
    } else {
        check_error(model, op, resp)
    }
}

/// Checks `value` against `shape`, appending every violation found.
pub fn check_shape(
    model: &Model,
    shape: &str,
    value: &Value,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let Some(s) = model.shape(shape) else {
        return;
    };
    if s["document"].as_bool() == Some(true) {
        return;
    }
    let kind = s["type"].as_str().unwrap_or_default();
    let wrong = |out: &mut Vec<Violation>| {
        out.push(Violation::new(
            if kind == "timestamp" {
                Kind::BadTimestamp
            } else {
                Kind::WrongType
            },
            path,
            format!("{value} is not a {kind} ({shape})"),
        ));
    };
    match kind {
        "structure" => {
            let Some(obj) = value.as_object() else {
                return wrong(out);
            };
            let members = members_of(s);
            if let Some(required) = s["required"].as_array() {
                for r in required.iter().filter_map(Value::as_str) {
                    if obj.get(r).is_none_or(Value::is_null) {
                        out.push(Violation::new(
                            Kind::MissingRequired,
                            format!("{path}.{r}"),
                            format!("required member of {shape} is absent"),
                        ));
                    }
                }
            }
            for (k, v) in obj {
                match members.iter().find(|(n, _)| n == k) {
                    Some((_, member_shape)) => {
                        // awsJson servers may send null for an absent member; clients skip it.
                        if !v.is_null() {
                            check_shape(model, member_shape, v, &format!("{path}.{k}"), out);
                        }
                    }
                    None => out.push(Violation::new(
                        Kind::UnknownMember,
                        format!("{path}.{k}"),
                        format!("{shape} has no member {k}"),
                    )),
                }
            }
        }
        "list" => {
            let Some(items) = value.as_array() else {
                return wrong(out);
            };
            if let Some(member) = s["member"]["shape"].as_str() {
                for (i, item) in items.iter().enumerate() {
                    check_shape(model, member, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        "map" => {
            let Some(obj) = value.as_object() else {
                return wrong(out);
            };
            for (k, v) in obj {
                if let Some(key) = s["key"]["shape"].as_str() {
                    check_shape(
                        model,
                        key,
                        &Value::String(k.clone()),
                        &format!("{path}.<key {k}>"),
                        out,
                    );
                }
                if let Some(val) = s["value"]["shape"].as_str() {
                    check_shape(model, val, v, &format!("{path}.{k}"), out);
                }
            }
        }
        "string" => {
            let Some(text) = value.as_str() else {
                return wrong(out);
            };
            // An enum value berth does not know would be a bug even though AWS adds values over
            // time: berth generates its shapes from this same model.
            if let Some(values) = s["enum"].as_array()
                && !values.iter().any(|e| e.as_str() == Some(text))
            {
                out.push(Violation::new(
                    Kind::BadEnum,
                    path,
                    format!("{text:?} is not in {shape}'s enum {values:?}"),
                ));
            }
        }
        scalar => {
            let ok = match scalar {
                "integer" | "long" => value.as_i64().is_some(),
                "double" | "float" => value.as_f64().is_some(),
                "boolean" => value.is_boolean(),
                // awsJson timestamps are epoch seconds as a JSON number, never an ISO string.
                "timestamp" => value.is_number(),
                "blob" => value.is_string(),
                _ => true,
            };
            if !ok {
                wrong(out)
            }
        }
    }
}

/// Every place where `expected` is not contained in `actual`: each member of an expected object
/// must be in the actual object with a contained value; arrays must have the same length and
/// contain element by element, in order; scalars must be equal (numbers by value).
pub fn subset_diffs(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("$", expected, actual, &mut out);
    out
}

fn walk(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => walk(&p, ev, av, out),
                    None => out.push(format!("{p}: missing (expected {ev})")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!(
                    "{path}: {} elements expected, {} found",
                    e.len(),
                    a.len()
                ));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                walk(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        (Value::Number(e), Value::Number(a)) => {
            let same = match (e.as_i64(), a.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => e.as_f64() == a.as_f64(),
            };
            if !same {
                out.push(format!("{path}: expected {e}, found {a}"));
            }
        }
        // An identifier sent short comes back as the long ARN of the same resource
        // (`web:3` → `arn:aws:ecs:…:task-definition/web:3`), as AWS answers.
        (Value::String(e), Value::String(a)) if is_long_form_of(a, e) => {}
        (e, a) => {
            if e != a {
                out.push(format!("{path}: expected {e}, found {a}"));
            }
        }
    }
}

/// The structure shape in `op`'s output that `found` (an object a Describe returned) is an
/// instance of: the first, nearest the top, whose members include every key of `found`.
pub fn shape_of(model: &Model, op: &str, found: &Value) -> Option<String> {
    let keys: Vec<&String> = found.as_object()?.keys().collect();
    let mut queue: Vec<String> = model
        .output_shape(op)
        .map(String::from)
        .into_iter()
        .collect();
    let mut seen: Vec<String> = Vec::new();
    while !queue.is_empty() {
        let name = queue.remove(0);
        if seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        let Some(shape) = model.shape(&name) else {
            continue;
        };
        match shape["type"].as_str() {
            Some("structure") => {
                let members = shape["members"].as_object()?;
                if keys.iter().all(|k| members.contains_key(*k)) {
                    return Some(name);
                }
                queue.extend(members_of(shape).into_iter().map(|(_, s)| s));
            }
            Some("list") => queue.extend(shape["member"]["shape"].as_str().map(String::from)),
            Some("map") => queue.extend(shape["value"]["shape"].as_str().map(String::from)),
            _ => {}
        }
    }
    None
}

/// The members of `request` that the model says `shape` has and `found` (an instance of it)
/// lacks: what a Create accepted and its Describe dropped. Empty lists and objects are left
/// out, as services leave out an empty collection.
pub fn dropped_members(model: &Model, shape: &str, request: &Value, found: &Value) -> Vec<String> {
    let (Some(request), Some(found), Some(members)) = (
        request.as_object(),
        found.as_object(),
        model.shape(shape).and_then(|s| s["members"].as_object()),
    ) else {
        return Vec::new();
    };
    request
        .iter()
        .filter(|(k, v)| {
            let empty = match v {
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Null => true,
                _ => false,
            };
            !empty && members.contains_key(*k) && !found.contains_key(*k)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Whether `arn` is an ARN whose resource part ends with the identifier `short`.
fn is_long_form_of(arn: &str, short: &str) -> bool {
    !short.is_empty()
        && !short.starts_with("arn:")
        && arn.starts_with("arn:")
        && arn
            .strip_suffix(short)
            .is_some_and(|head| head.ends_with('/') || head.ends_with(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_identifiers_match_their_long_arn_only() {
        let arn = "arn:aws:ecs:us-east-1:0:task-definition/web:3";
        assert!(subset_diffs(&json!({"td": "web:3"}), &json!({"td": arn})).is_empty());
        assert!(!subset_diffs(&json!({"td": "eb:3"}), &json!({"td": arn})).is_empty());
        assert!(!subset_diffs(&json!({"td": "web:4"}), &json!({"td": arn})).is_empty());
        assert!(!subset_diffs(&json!({"td": "web:3"}), &json!({"td": "x/web:3"})).is_empty());
    }

    #[test]
    fn a_member_the_answer_shape_has_but_the_answer_lacks_was_dropped() {
        let mut m = model();
        m.service_json["operations"]["Describe"] = json!({"output": {"shape": "Listing"}});
        m.service_json["shapes"]["Listing"] =
            json!({"type": "structure", "members": {"items": {"shape": "Items"}}});
        m.service_json["shapes"]["Items"] = json!({"type": "list", "member": {"shape": "Out"}});
        let found = json!({"id": "a", "status": "ON"});
        assert_eq!(shape_of(&m, "Describe", &found).as_deref(), Some("Out"));
        // `n` is a member of Out and was sent; `token` is not one; `at` was sent empty.
        let request = json!({"id": "a", "n": 3, "token": "t", "at": null});
        assert_eq!(dropped_members(&m, "Out", &request, &found), vec!["n"]);
        assert!(dropped_members(&m, "Out", &json!({"id": "a"}), &found).is_empty());
        assert_eq!(shape_of(&m, "Describe", &json!({"unknown": 1})), None);
    }

    fn model() -> Model {
        Model {
            service: "t".into(),
            service_json: json!({
                "metadata": {},
                "operations": {"Op": {"output": {"shape": "Out"},
                    "errors": [{"shape": "NotFound"}]}},
                "shapes": {
                    "Out": {"type": "structure", "required": ["id"], "members": {
                        "id": {"shape": "S"}, "status": {"shape": "E"}, "at": {"shape": "T"},
                        "n": {"shape": "I"}}},
                    "S": {"type": "string"}, "E": {"type": "string", "enum": ["ON"]},
                    "T": {"type": "timestamp"}, "I": {"type": "integer"},
                    "NotFound": {"type": "structure", "members": {}, "exception": true}
                }
            }),
            paginators: Value::Null,
            waiters: Value::Null,
            examples: Value::Null,
        }
    }

    fn resp(status: u16, body: Value) -> Response {
        Response {
            status,
            headers: vec![("x-amzn-requestid".into(), "r".into())],
            body: body.to_string().into_bytes(),
        }
    }

    fn kinds(v: &[Violation]) -> Vec<Kind> {
        v.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_conforming_body_passes_and_each_defect_is_named() {
        let m = model();
        let ok = json!({"id": "x", "status": "ON", "at": 1.5, "n": 3});
        assert!(check_success(&m, "Op", &resp(200, ok)).is_empty());
        let bad = json!({"status": "OFF", "at": "2024-01-01", "n": "3", "extra": 1});
        let mut k = kinds(&check_success(&m, "Op", &resp(200, bad)));
        k.sort();
        assert_eq!(
            k,
            vec![
                Kind::WrongType,
                Kind::MissingRequired,
                Kind::BadEnum,
                Kind::UnknownMember,
                Kind::BadTimestamp
            ]
        );
    }

    #[test]
    fn errors_must_be_declared_4xx() {
        let m = model();
        let e = |code: &str| json!({"__type": code, "message": "m"});
        assert!(check_error(&m, "Op", &resp(400, e("NotFound"))).is_empty());
        assert!(check_error(&m, "Op", &resp(400, e("SerializationException"))).is_empty());
        assert_eq!(
            kinds(&check_error(&m, "Op", &resp(400, e("Nope")))),
            vec![Kind::UndeclaredError]
        );
        assert_eq!(
            kinds(&check_error(&m, "Op", &resp(500, e("NotFound")))),
            vec![Kind::ServerError]
        );
        assert_eq!(
            kinds(&check_error(&m, "Op", &resp(200, json!({})))),
            vec![Kind::UnexpectedStatus]
        );
    }

    #[test]
    fn validation_exception_is_generic_only_with_the_frameworks_wording() {
        let m = model();
        let v = |message: &str| json!({"__type": "ValidationException", "message": message});
        let framework = "1 validation error detected: Value null at 'id' failed to satisfy \
                         constraint: Member must not be null";
        assert!(check_error(&m, "Op", &resp(400, v(framework))).is_empty());
        assert!(
            check_error(
                &m,
                "Op",
                &resp(400, v("2 validation errors detected: a; b"))
            )
            .is_empty()
        );
        assert_eq!(
            kinds(&check_error(&m, "Op", &resp(400, v("the alarm is bad")))),
            vec![Kind::UndeclaredError]
        );
    }

    #[test]
    fn query_compatible_services_answer_the_query_code_and_common_errors() {
        let mut m = model();
        m.service_json["metadata"]["awsQueryCompatible"] = json!({});
        let mut r = resp(
            400,
            json!({"__type": "InvalidParameterValueException", "message": "m"}),
        );
        r.headers.push((
            "x-amzn-query-error".into(),
            "InvalidParameterValue;Sender".into(),
        ));
        assert_eq!(r.error_code().as_deref(), Some("InvalidParameterValue"));
        assert!(check_error(&m, "Op", &r).is_empty());
        // Without the trait, the same code is undeclared.
        assert_eq!(
            kinds(&check_error(&model(), "Op", &r)),
            vec![Kind::UndeclaredError]
        );
    }
}
