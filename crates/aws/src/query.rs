//! awsQuery: `POST /` with a form-encoded body (`Action=CreateLoadBalancer&Version=2015-12-01&
//! Name=web&Tags.member.1.Key=team&…`), XML out, and errors as
//! `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error>…`.
//! The only place that reads awsQuery forms and writes awsQuery XML (ELBv2 today; IAM, STS and
//! CloudWatch are awsQuery too).
//!
//! A form is turned into the JSON form of the operation's input shape — lists from
//! `Foo.member.N`, maps from `Foo.entry.N.key`/`.value`, numbers and booleans parsed as the model
//! types them — and then checked by [`validate`](crate::validate), so awsQuery services get the
//! same validation and wording as awsJson ones. Outputs go the other way: the handler's typed
//! response is serialized to JSON and written as XML by walking the model's output shape
//! (member order, `locationName`, `<member>` list elements, ISO 8601 timestamps), which is what
//! botocore's `QueryParser` reads.

use crate::AwsError;
use crate::model::{ServiceModel, ShapeKind, ShapeRef};
use crate::validate::Patterns;
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;

/// The content type of every awsQuery response.
pub const CONTENT_TYPE: &str = "text/xml";

/// The form parameters of one request, by their full dotted name.
pub type Params = BTreeMap<String, String>;

/// Whether a request is awsQuery: a form-encoded body and no `X-Amz-Target`.
pub fn is_query(content_type: Option<&str>, has_target: bool) -> bool {
    !has_target
        && content_type.is_some_and(|c| {
            c.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// Decodes a form body (`a=b&c=d`, `+` as space, percent escapes). A name given twice keeps its
/// last value.
pub fn parse_form(body: &[u8]) -> Params {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The error for an `Action` the service does not have.
pub fn invalid_action(action: &str) -> AwsError {
    AwsError::client(
        "InvalidAction",
        format!("The action {action} is not valid for this web service."),
    )
}

/// Builds the JSON input of `operation` from its form parameters and validates it against the
/// model. Every failure, type or constraint, is the service's `validation_code` (awsQuery has no
/// separate serialization error).
pub fn decode(
    model: &ServiceModel,
    patterns: &Patterns,
    validation_code: &'static str,
    operation: &str,
    params: &Params,
) -> Result<Value, AwsError> {
    let shape = model
        .operations
        .get(operation)
        .and_then(|op| op.input.as_ref());
    let Some(input) = shape else {
        return Ok(Value::Object(Map::new()));
    };
    let value = build(model, &input.shape, "", params, 0).unwrap_or(Value::Object(Map::new()));
    crate::json::validate_input(model, patterns, validation_code, operation, &value).map_err(
        |mut e| {
            if e.code == "SerializationException" {
                e.code = validation_code.into();
            }
            e
        },
    )?;
    Ok(value)
}

/// Deepest nesting a form may describe; ELBv2's deepest input is 5 levels.
const MAX_DEPTH: usize = 32;

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Whether any parameter is `prefix` itself or lies below it (`prefix.…`).
fn present(params: &Params, prefix: &str) -> bool {
    if params.contains_key(prefix) {
        return true;
    }
    let below = format!("{prefix}.");
    params
        .range(below.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&below))
}

/// The element indices present under `prefix.` (`Foo.member.` → 1, 2, …), in numeric order.
fn indices(params: &Params, prefix: &str) -> Vec<usize> {
    let below = format!("{prefix}.");
    let mut out: Vec<usize> = params
        .range(below.clone()..)
        .take_while(|(k, _)| k.starts_with(&below))
        .filter_map(|(k, _)| k[below.len()..].split('.').next()?.parse().ok())
        .filter(|i| *i >= 1)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn build(
    model: &ServiceModel,
    shape_name: &str,
    prefix: &str,
    params: &Params,
    depth: usize,
) -> Option<Value> {
    let shape = model.shape(shape_name)?;
    if depth > MAX_DEPTH {
        return None;
    }
    // A plain value where a structure, list or map belongs (`Tags=x`; botocore writes only
    // `Tags=` for an empty list): kept as text, so the validator reports the wrong type.
    if matches!(
        shape.kind,
        ShapeKind::Structure | ShapeKind::List | ShapeKind::Map
    ) && let Some(raw) = params.get(prefix).filter(|v| !v.is_empty())
    {
        return Some(Value::String(raw.clone()));
    }
    match shape.kind {
        ShapeKind::Structure => {
            if !prefix.is_empty() && !present(params, prefix) {
                return None;
            }
            let mut obj = Map::new();
            for (name, member) in shape.members.iter() {
                let wire = member.location_name.as_deref().unwrap_or(name);
                if let Some(v) = build(model, &member.shape, &join(prefix, wire), params, depth + 1)
                {
                    obj.insert(name.clone(), v);
                }
            }
            Some(Value::Object(obj))
        }
        ShapeKind::List => {
            let member = shape.member.as_ref()?;
            let list_prefix = if shape.flattened {
                prefix.to_string()
            } else {
                join(prefix, member.location_name.as_deref().unwrap_or("member"))
            };
            let idx = indices(params, &list_prefix);
            if idx.is_empty() {
                // botocore writes an empty list as `Prefix=`.
                return params.contains_key(prefix).then(|| Value::Array(vec![]));
            }
            let items = idx
                .into_iter()
                .map(|i| {
                    build(
                        model,
                        &member.shape,
                        &format!("{list_prefix}.{i}"),
                        params,
                        depth + 1,
                    )
                    .unwrap_or(Value::Null)
                })
                .collect();
            Some(Value::Array(items))
        }
        ShapeKind::Map => {
            let entry_prefix = if shape.flattened {
                prefix.to_string()
            } else {
                join(prefix, "entry")
            };
            let key_name = shape
                .key
                .as_ref()
                .and_then(|k| k.location_name.as_deref())
                .unwrap_or("key");
            let value_name = shape
                .value
                .as_ref()
                .and_then(|k| k.location_name.as_deref())
                .unwrap_or("value");
            let idx = indices(params, &entry_prefix);
            if idx.is_empty() {
                return params
                    .contains_key(prefix)
                    .then(|| Value::Object(Map::new()));
            }
            let mut obj = Map::new();
            for i in idx {
                let Some(k) = params.get(&format!("{entry_prefix}.{i}.{key_name}")) else {
                    continue;
                };
                let v = shape.value.as_ref().and_then(|v| {
                    build(
                        model,
                        &v.shape,
                        &format!("{entry_prefix}.{i}.{value_name}"),
                        params,
                        depth + 1,
                    )
                });
                obj.insert(k.clone(), v.unwrap_or(Value::Null));
            }
            Some(Value::Object(obj))
        }
        kind => {
            let raw = params.get(prefix)?;
            Some(scalar(kind, raw))
        }
    }
}

/// A form value typed as the model says. A value that does not parse stays a string, so the
/// validator reports it with its usual wording ("Expected integer at 'Port', found a string.").
fn scalar(kind: ShapeKind, raw: &str) -> Value {
    let text = || Value::String(raw.to_string());
    match kind {
        ShapeKind::Integer | ShapeKind::Long => raw
            .trim()
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .unwrap_or_else(|_| text()),
        ShapeKind::Double | ShapeKind::Float => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(text),
        ShapeKind::Boolean => match raw.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => text(),
        },
        ShapeKind::Timestamp => {
            let secs = chrono::DateTime::parse_from_rfc3339(raw.trim())
                .map(|t| t.timestamp_millis() as f64 / 1000.0)
                .ok()
                .or_else(|| raw.trim().parse::<f64>().ok());
            secs.and_then(Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(text)
        }
        _ => text(),
    }
}

/// Escapes text for an XML element body or attribute.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// A timestamp (seconds since the epoch) as awsQuery writes it: ISO 8601, UTC, milliseconds.
pub fn iso8601(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as i64;
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The XML body of a successful `operation` whose output is `output` (the JSON form of the
/// output shape).
pub fn encode(
    model: &ServiceModel,
    operation: &str,
    output: &Value,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let op = model
        .operations
        .get(operation)
        .ok_or_else(|| AwsError::internal(format!("no operation {operation} in the model")))?;
    let mut out = String::with_capacity(512);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(out, "<{operation}Response");
    if let Some(ns) = &model.metadata.xml_namespace {
        out.push_str(" xmlns=\"");
        escape(ns, &mut out);
        out.push('"');
    }
    out.push('>');
    if let Some(shape) = &op.output {
        let wrapper = shape
            .result_wrapper
            .clone()
            .unwrap_or_else(|| format!("{operation}Result"));
        let _ = write!(out, "<{wrapper}>");
        content(model, &shape.shape, output, &mut out, 0);
        let _ = write!(out, "</{wrapper}>");
    }
    out.push_str("<ResponseMetadata><RequestId>");
    escape(request_id, &mut out);
    out.push_str("</RequestId></ResponseMetadata>");
    let _ = write!(out, "</{operation}Response>");
    Ok(out.into_bytes())
}

/// Writes the children (or text) of a value of `shape_name`.
fn content(model: &ServiceModel, shape_name: &str, value: &Value, out: &mut String, depth: usize) {
    let Some(shape) = model.shape(shape_name) else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    match shape.kind {
        ShapeKind::Structure => {
            let Some(obj) = value.as_object() else { return };
            for (name, member) in shape.members.iter() {
                let Some(v) = obj.get(name).filter(|v| !v.is_null()) else {
                    continue;
                };
                element(model, name, member, v, out, depth + 1);
            }
        }
        ShapeKind::List => {
            let (Some(items), Some(member)) = (value.as_array(), &shape.member) else {
                return;
            };
            let tag = member.location_name.as_deref().unwrap_or("member");
            for item in items {
                let _ = write!(out, "<{tag}>");
                content(model, &member.shape, item, out, depth + 1);
                let _ = write!(out, "</{tag}>");
            }
        }
        ShapeKind::Map => {
            let (Some(obj), Some(val)) = (value.as_object(), &shape.value) else {
                return;
            };
            for (k, v) in obj {
                out.push_str("<entry><key>");
                escape(k, out);
                out.push_str("</key><value>");
                content(model, &val.shape, v, out, depth + 1);
                out.push_str("</value></entry>");
            }
        }
        ShapeKind::Timestamp => {
            if let Some(secs) = value.as_f64() {
                out.push_str(&iso8601(secs));
            } else if let Some(s) = value.as_str() {
                escape(s, out);
            }
        }
        _ => match value {
            Value::String(s) => escape(s, out),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            _ => {}
        },
    }
}

/// Writes one structure member as its element(s).
fn element(
    model: &ServiceModel,
    name: &str,
    member: &ShapeRef,
    value: &Value,
    out: &mut String,
    depth: usize,
) {
    let tag = member.location_name.as_deref().unwrap_or(name);
    let target = model.shape(&member.shape);
    if let Some(list) = target.filter(|s| s.kind == ShapeKind::List && s.flattened) {
        // A flattened list repeats the member's element instead of wrapping `<member>`s.
        let (Some(items), Some(item_ref)) = (value.as_array(), &list.member) else {
            return;
        };
        let item_tag = item_ref.location_name.as_deref().unwrap_or(tag);
        for item in items {
            let _ = write!(out, "<{item_tag}>");
            content(model, &item_ref.shape, item, out, depth);
            let _ = write!(out, "</{item_tag}>");
        }
        return;
    }
    let _ = write!(out, "<{tag}>");
    content(model, &member.shape, value, out, depth);
    let _ = write!(out, "</{tag}>");
}

/// The body of an awsQuery error response. The status comes from the same [`AwsError`].
pub fn error_body(err: &AwsError, request_id: &str) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>");
    out.push_str(if err.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    });
    out.push_str("</Type><Code>");
    escape(&err.code, &mut out);
    out.push_str("</Code><Message>");
    escape(&err.message, &mut out);
    out.push_str("</Message></Error><RequestId>");
    escape(request_id, &mut out);
    out.push_str("</RequestId></ErrorResponse>");
    out.into_bytes()
}

/// An API family served over awsQuery. Like [`JsonService`](crate::JsonService), but a handler's
/// answer stays JSON (the output shape's JSON form) until [`encode`] writes it as XML.
pub trait QueryService: Send + Sync + 'static {
    fn model(&self) -> &ServiceModel;

    /// The error code of a request that fails the model (`ValidationError` for ELBv2, IAM, STS).
    fn validation_error_code(&self) -> &'static str;

    fn implements(&self, operation: &str) -> bool;

    /// Runs one operation on an input that already passed model validation.
    fn call(
        &self,
        ctx: crate::RequestContext,
        operation: &str,
        input: Value,
    ) -> impl Future<Output = Result<Value, AwsError>> + Send;
}

/// Serializes a typed response to the JSON form [`encode`] writes.
pub fn output<T: serde::Serialize>(value: &T) -> Result<Value, AwsError> {
    serde_json::to_value(value).map_err(AwsError::internal)
}

/// Reads a request's operation, checks it and its input against the model, and runs it: the
/// one awsQuery request path. Returns the XML body.
pub async fn serve<S: QueryService>(
    service: &S,
    patterns: &Patterns,
    ctx: crate::RequestContext,
    params: &Params,
) -> Result<Vec<u8>, AwsError> {
    let model = service.model();
    let action = check_action(model, params, |op| service.implements(op))?;
    let input = decode(
        model,
        patterns,
        service.validation_error_code(),
        action,
        params,
    )?;
    let request_id = ctx.request_id.clone();
    tracing::debug!(operation = action, "dispatch");
    let output = service.call(ctx, action, input).await?;
    encode(model, action, &output, &request_id)
}

/// Serves a query-compatible awsJson family (CloudWatch) over awsQuery: the same request path
/// as [`serve`], with the handler's JSON answer written as XML and its errors named by their
/// awsQuery code (the model's `error.code`).
pub async fn serve_json<S: crate::JsonService>(
    service: &S,
    patterns: &Patterns,
    ctx: crate::RequestContext,
    params: &Params,
) -> Result<Vec<u8>, AwsError> {
    let model = service.model();
    let to_query = |mut e: AwsError| {
        e.code = model.error_names(&e.code).query_code.to_string().into();
        e
    };
    let action = check_action(model, params, |op| service.implements(op))?;
    let input = decode(
        model,
        patterns,
        service.validation_error_code(),
        action,
        params,
    )
    .map_err(to_query)?;
    let request_id = ctx.request_id.clone();
    tracing::debug!(operation = action, "dispatch");
    let body = service.call(ctx, action, input).await.map_err(to_query)?;
    let output: Value = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(&body).map_err(AwsError::internal)?
    };
    encode(model, action, &output, &request_id)
}

/// The form's `Action`, checked against the model, its `Version` and what berth implements.
fn check_action<'p>(
    model: &ServiceModel,
    params: &'p Params,
    implements: impl Fn(&str) -> bool,
) -> Result<&'p str, AwsError> {
    let action = params.get("Action").map(String::as_str).unwrap_or_default();
    if action.is_empty() {
        return Err(AwsError::client(
            "MissingAction",
            "The request must contain the parameter Action.",
        ));
    }
    if !model.operations.contains_key(action) {
        return Err(invalid_action(action));
    }
    if let (Some(want), Some(got)) = (&model.metadata.api_version, params.get("Version"))
        && want != got
    {
        return Err(AwsError::client(
            "InvalidAction",
            format!("Could not find operation {action} for version {got}"),
        ));
    }
    if !implements(action) {
        return Err(AwsError::client(
            "UnsupportedOperationException",
            format!("berth does not support the operation {action} yet."),
        ));
    }
    Ok(action)
}

/// Declares an awsQuery family's implemented operations once, like
/// [`json_service!`](crate::json_service): dispatch, the [`QueryService`] impl and
/// `implemented_operations()` for the ledger.
#[macro_export]
macro_rules! query_service {
    (
        service: $service:ty,
        title: $title:literal,
        validation_error: $code:literal,
        model: |$this:ident| $model:expr,
        operations: { $($name:literal => $module:ident :: $func:ident),* $(,)? } $(,)?
    ) => {
        const IMPLEMENTED: &[&str] = &[$($name),*];

        /// Every operation berth implements, for the ledger and the conformance suite.
        pub fn implemented_operations() -> &'static [&'static str] {
            IMPLEMENTED
        }

        impl $crate::query::QueryService for $service {
            fn model(&self) -> &$crate::model::ServiceModel {
                let $this = self;
                $model
            }

            fn validation_error_code(&self) -> &'static str {
                $code
            }

            fn implements(&self, operation: &str) -> bool {
                IMPLEMENTED.contains(&operation)
            }

            async fn call(
                &self,
                ctx: $crate::RequestContext,
                operation: &str,
                input: $crate::service::__private::Value,
            ) -> Result<$crate::service::__private::Value, $crate::AwsError> {
                let ctx = &ctx;
                match operation {
                    $($name => $crate::query::output(
                        &$module::$func(self, ctx, $crate::json::input(input)?).await?,
                    ),)*
                    _ => Err($crate::AwsError::client(
                        "UnsupportedOperationException",
                        format!(
                            concat!("berth does not support the ", $title, " operation {} yet."),
                            operation
                        ),
                    )),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"{
      "metadata": {"protocol": "query", "endpointPrefix": "x", "serviceId": "X",
                   "apiVersion": "2015-12-01", "xmlNamespace": "http://x/doc/"},
      "operations": {"Op": {"name": "Op", "input": {"shape": "In"},
                            "output": {"shape": "Out", "resultWrapper": "OpResult"}}},
      "shapes": {
        "In": {"type": "structure", "required": ["Name"], "members": {
          "Name": {"shape": "S"}, "Port": {"shape": "I"}, "On": {"shape": "B"},
          "Tags": {"shape": "Tags"}, "Names": {"shape": "Names"}}},
        "Out": {"type": "structure", "members": {
          "Items": {"shape": "Items"}, "When": {"shape": "T"}, "Next": {"shape": "S"}}},
        "Items": {"type": "list", "member": {"shape": "Item"}},
        "Item": {"type": "structure", "members": {"Name": {"shape": "S"}, "Port": {"shape": "I"}}},
        "Tags": {"type": "list", "member": {"shape": "Tag"}, "min": 1},
        "Tag": {"type": "structure", "required": ["Key"], "members": {
          "Key": {"shape": "S"}, "Value": {"shape": "S"}}},
        "Names": {"type": "list", "member": {"shape": "S"}},
        "S": {"type": "string"},
        "I": {"type": "integer", "min": 1, "max": 65535},
        "B": {"type": "boolean"},
        "T": {"type": "timestamp"}
      }
    }"#;

    fn model() -> ServiceModel {
        ServiceModel::parse(MODEL).expect("model")
    }

    #[test]
    fn forms_become_the_json_of_the_input_shape() {
        let params = parse_form(
            b"Action=Op&Version=2015-12-01&Name=a+b%21&Port=80&On=true\
              &Tags.member.2.Key=k2&Tags.member.1.Key=k1&Tags.member.1.Value=v1&Names=",
        );
        let v = decode(
            &model(),
            &Patterns::default(),
            "ValidationError",
            "Op",
            &params,
        )
        .expect("valid");
        assert_eq!(
            v,
            serde_json::json!({"Name": "a b!", "Port": 80, "On": true,
                "Tags": [{"Key": "k1", "Value": "v1"}, {"Key": "k2"}], "Names": []})
        );
    }

    #[test]
    fn bad_forms_get_the_validation_error() {
        let m = model();
        let p = Patterns::default();
        let e = decode(&m, &p, "ValidationError", "Op", &parse_form(b"Port=0")).unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(
            e.message.contains("2 validation errors detected"),
            "{}",
            e.message
        );
        assert!(e.message.contains("Value null at 'Name'"), "{}", e.message);
        let e = decode(
            &m,
            &p,
            "ValidationError",
            "Op",
            &parse_form(b"Name=a&Port=x"),
        )
        .unwrap_err();
        assert_eq!(e.message, "Expected integer at 'Port', found a string.");
        let e = decode(
            &m,
            &p,
            "ValidationError",
            "Op",
            &parse_form(b"Name=a&Tags="),
        )
        .unwrap_err();
        assert!(e.message.contains("'Tags'"), "{}", e.message);
    }

    #[test]
    fn outputs_are_written_as_botocore_reads_them() {
        let body = encode(
            &model(),
            "Op",
            &serde_json::json!({"Items": [{"Name": "a<b", "Port": 80}], "When": 1.5, "Next": null}),
            "rid",
        )
        .expect("encode");
        let text = String::from_utf8(body).expect("utf8");
        assert!(
            text.ends_with(
                "<OpResponse xmlns=\"http://x/doc/\"><OpResult><Items><member><Name>a&lt;b</Name>\
             <Port>80</Port></member></Items><When>1970-01-01T00:00:01.500Z</When></OpResult>\
             <ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></OpResponse>"
            ),
            "{text}"
        );
    }

    #[test]
    fn errors_are_error_responses() {
        let e = AwsError::client(
            "DuplicateListener",
            "A listener already exists on that port.",
        );
        let text = String::from_utf8(error_body(&e, "rid")).expect("utf8");
        assert!(
            text.ends_with(
                "<ErrorResponse><Error><Type>Sender</Type><Code>DuplicateListener</Code>\
             <Message>A listener already exists on that port.</Message></Error>\
             <RequestId>rid</RequestId></ErrorResponse>"
            ),
            "{text}"
        );
    }
}
