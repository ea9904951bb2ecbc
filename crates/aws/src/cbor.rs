//! Smithy RPC v2 CBOR: `POST /service/<ServiceName>/operation/<Operation>` with
//! `smithy-protocol: rpc-v2-cbor`, a CBOR body in and out (`application/cbor`), and errors as a
//! CBOR map `{"__type": "<namespace>#<Shape>", "message": …}`. The AWS SDK for Rust and the
//! other Smithy-generated SDKs speak it to CloudWatch. The only place that reads or writes CBOR.
//!
//! The handlers never see CBOR: a body is turned into the JSON form awsJson would have carried
//! (epoch-seconds timestamps from tag 1, base64 text from byte strings, absent members for
//! nulls), then checked by the same validator; an answer goes the other way, guided by the
//! output shape (doubles as floats, timestamps as tag 1, blobs as byte strings), as the
//! clients' generated deserializers insist on exact CBOR types.

use crate::AwsError;
use crate::model::{ServiceModel, Shape, ShapeKind};
use crate::validate::Patterns;
use base64::Engine as _;
use minicbor::data::{IanaTag, Tag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};
use std::convert::Infallible;

/// The content type of every CBOR request and response.
pub const CONTENT_TYPE: &str = "application/cbor";
/// The header that names the protocol on requests and responses, and its value.
pub const PROTOCOL_HEADER: &str = "smithy-protocol";
pub const PROTOCOL: &str = "rpc-v2-cbor";

/// Deepest nesting a body may have. CloudWatch's deepest input (GetMetricData's metric stat
/// dimensions) is 6 levels; the bound keeps a hostile body from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Splits a request path `…/service/<ServiceName>/operation/<Operation>` (an endpoint may put
/// a prefix before it) into service and operation.
pub fn parse_path(path: &str) -> Option<(&str, &str)> {
    let at = path.rfind("/service/")?;
    let rest = &path[at + "/service/".len()..];
    let (service, op) = rest.split_once("/operation/")?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    (plain(service) && plain(op) && !op.contains('.')).then_some((service, op))
}

/// Parses a CBOR body of `operation` into the JSON form of its input shape and validates it.
pub fn decode(
    model: &ServiceModel,
    patterns: &Patterns,
    validation_code: &'static str,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    if body.len() > crate::json::MAX_BODY {
        return Err(crate::json::too_large());
    }
    let input = model
        .operations
        .get(operation)
        .and_then(|op| op.input.as_ref())
        .and_then(|r| model.shape(&r.shape));
    let value = to_json(model, input, body)?;
    crate::json::validate_input(model, patterns, validation_code, operation, &value)?;
    Ok(value)
}

/// One CBOR data item (the whole body) as JSON, typed by `shape` where the model knows it. An
/// empty body is an empty structure, as the SDKs send for operations without input members.
pub fn to_json(
    model: &ServiceModel,
    shape: Option<&Shape>,
    body: &[u8],
) -> Result<Value, AwsError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let mut reader = Reader {
        model,
        dec: Decoder::new(body),
    };
    let value = reader.item(shape, "", 0)?;
    if reader.dec.position() != body.len() {
        return Err(AwsError::serialization(format!(
            "The request body has {} bytes after its CBOR data item.",
            body.len() - reader.dec.position()
        )));
    }
    Ok(value)
}

fn malformed(e: minicbor::decode::Error) -> AwsError {
    AwsError::serialization(format!("The request body is not valid CBOR: {e}"))
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the request body".into()
    } else {
        format!("'{path}'")
    }
}

fn wrong(kind: ShapeKind, path: &str, found: &str) -> AwsError {
    let want = match kind {
        ShapeKind::Blob => "a byte string",
        ShapeKind::Timestamp => "a timestamp (tag 1)",
        _ => "a text string",
    };
    AwsError::serialization(format!("Expected {want} at {}, found {found}.", at(path)))
}

struct Reader<'m, 'b> {
    model: &'m ServiceModel,
    dec: Decoder<'b>,
}

impl<'m> Reader<'m, '_> {
    fn shape_of(&self, name: Option<&str>) -> Option<&'m Shape> {
        self.model.shape(name?).filter(|s| !s.document)
    }

    fn item(
        &mut self,
        shape: Option<&'m Shape>,
        path: &str,
        depth: usize,
    ) -> Result<Value, AwsError> {
        if depth > MAX_DEPTH {
            return Err(AwsError::serialization(format!(
                "The request body nests deeper than {MAX_DEPTH} levels."
            )));
        }
        let kind = shape.map(|s| s.kind);
        match self.dec.datatype().map_err(malformed)? {
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int => {
                let n = i128::from(self.dec.int().map_err(malformed)?);
                let number = i64::try_from(n)
                    .map(Number::from)
                    .or_else(|_| u64::try_from(n).map(Number::from))
                    .map_err(|_| {
                        AwsError::serialization(format!(
                            "The integer at {} is out of range.",
                            at(path)
                        ))
                    })?;
                Ok(Value::Number(number))
            }
            Type::F16 | Type::F32 | Type::F64 => {
                let f = self.dec.f64().map_err(malformed)?;
                Ok(float(f))
            }
            Type::Bool => Ok(Value::Bool(self.dec.bool().map_err(malformed)?)),
            Type::Null => {
                self.dec.null().map_err(malformed)?;
                Ok(Value::Null)
            }
            Type::Undefined => {
                self.dec.undefined().map_err(malformed)?;
                Ok(Value::Null)
            }
            Type::Bytes | Type::BytesIndef => {
                if let Some(k) = kind.filter(|k| *k != ShapeKind::Blob) {
                    return Err(wrong(k, path, "a byte string"));
                }
                let mut bytes = Vec::new();
                for chunk in self.dec.bytes_iter().map_err(malformed)? {
                    bytes.extend_from_slice(chunk.map_err(malformed)?);
                }
                Ok(Value::String(BASE64.encode(bytes)))
            }
            Type::String | Type::StringIndef => {
                if kind == Some(ShapeKind::Blob) || kind == Some(ShapeKind::Timestamp) {
                    return Err(wrong(
                        kind.unwrap_or(ShapeKind::Blob),
                        path,
                        "a text string",
                    ));
                }
                Ok(Value::String(self.text()?))
            }
            Type::Array | Type::ArrayIndef => {
                let member = shape
                    .filter(|s| s.kind == ShapeKind::List)
                    .and_then(|s| s.member.as_ref());
                let member = self.shape_of(member.map(|m| m.shape.as_str()));
                let len = self.dec.array().map_err(malformed)?;
                let mut items = Vec::new();
                let mut i = 0u64;
                while self.more(len, i)? {
                    let item_path = format!("{path}[{i}]");
                    items.push(self.item(member, &item_path, depth + 1)?);
                    i += 1;
                }
                Ok(Value::Array(items))
            }
            Type::Map | Type::MapIndef => {
                let len = self.dec.map().map_err(malformed)?;
                let mut obj = Map::new();
                let mut i = 0u64;
                while self.more(len, i)? {
                    i += 1;
                    if !matches!(
                        self.dec.datatype().map_err(malformed)?,
                        Type::String | Type::StringIndef
                    ) {
                        return Err(AwsError::serialization(format!(
                            "A key of the map at {} is not a text string.",
                            at(path)
                        )));
                    }
                    let key = self.text()?;
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    let (child, is_structure) = match shape {
                        Some(s) if s.kind == ShapeKind::Structure => (
                            self.shape_of(s.members.get(&key).map(|r| r.shape.as_str())),
                            true,
                        ),
                        Some(s) if s.kind == ShapeKind::Map => (
                            self.shape_of(s.value.as_ref().map(|r| r.shape.as_str())),
                            false,
                        ),
                        _ => (None, false),
                    };
                    let value = self.item(child, &child_path, depth + 1)?;
                    // A structure's null member is an absent one (Smithy's rule for non-sparse
                    // shapes); a map keeps it so the validator can refuse it.
                    if is_structure && value.is_null() {
                        continue;
                    }
                    obj.insert(key, value);
                }
                Ok(Value::Object(obj))
            }
            Type::Tag => {
                let tag = self.dec.tag().map_err(malformed)?;
                if tag != Tag::from(IanaTag::Timestamp) {
                    return Err(AwsError::serialization(format!(
                        "Unsupported CBOR tag {} at {}.",
                        tag.as_u64(),
                        at(path)
                    )));
                }
                if let Some(k) = kind.filter(|k| *k != ShapeKind::Timestamp) {
                    return Err(AwsError::serialization(format!(
                        "Expected {} at {}, found a timestamp.",
                        crate::validate::type_name(k),
                        at(path)
                    )));
                }
                match self.dec.datatype().map_err(malformed)? {
                    Type::F16 | Type::F32 | Type::F64 => {
                        let f = self.dec.f64().map_err(malformed)?;
                        Number::from_f64(f).map(Value::Number).ok_or_else(|| {
                            AwsError::serialization(format!(
                                "The timestamp at {} is not a finite number.",
                                at(path)
                            ))
                        })
                    }
                    Type::U8
                    | Type::U16
                    | Type::U32
                    | Type::U64
                    | Type::I8
                    | Type::I16
                    | Type::I32
                    | Type::I64 => Ok(Value::Number(self.dec.i64().map_err(malformed)?.into())),
                    _ => Err(AwsError::serialization(format!(
                        "The timestamp at {} is not a number.",
                        at(path)
                    ))),
                }
            }
            other => Err(AwsError::serialization(format!(
                "Unexpected CBOR item ({other}) at {}.",
                at(path)
            ))),
        }
    }

    /// Whether a container of `len` items (indefinite when `None`) has another after `seen`;
    /// consumes the break that ends an indefinite one.
    fn more(&mut self, len: Option<u64>, seen: u64) -> Result<bool, AwsError> {
        match len {
            Some(n) => Ok(seen < n),
            None => {
                if self.dec.datatype().map_err(malformed)? == Type::Break {
                    self.dec.skip().map_err(malformed)?;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    fn text(&mut self) -> Result<String, AwsError> {
        let mut out = String::new();
        for chunk in self.dec.str_iter().map_err(malformed)? {
            out.push_str(chunk.map_err(malformed)?);
        }
        Ok(out)
    }
}

/// A double as awsJson carries it: a number, or the text `NaN`/`Infinity`/`-Infinity`.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

type Written = Result<(), minicbor::encode::Error<Infallible>>;

/// The CBOR body of a successful `operation` whose output is `output` (the JSON form of the
/// output shape). An operation without output answers with an empty body.
pub fn encode(model: &ServiceModel, operation: &str, output: &Value) -> Result<Vec<u8>, AwsError> {
    let op = model
        .operations
        .get(operation)
        .ok_or_else(|| AwsError::internal(format!("no operation {operation} in the model")))?;
    let Some(out) = &op.output else {
        return Ok(Vec::new());
    };
    let mut e = Encoder::new(Vec::new());
    write(model, &mut e, model.shape(&out.shape), output, 0).map_err(AwsError::internal)?;
    Ok(e.into_writer())
}

fn write(
    model: &ServiceModel,
    e: &mut Encoder<Vec<u8>>,
    shape: Option<&Shape>,
    value: &Value,
    depth: usize,
) -> Written {
    let Some(shape) = shape.filter(|s| !s.document && depth <= MAX_DEPTH) else {
        return write_plain(e, value, depth);
    };
    let child = |name: &str| model.shape(name);
    match (shape.kind, value) {
        (ShapeKind::Structure, Value::Object(obj)) => {
            let present: Vec<_> = shape
                .members
                .iter()
                .filter_map(|(name, r)| {
                    obj.get(name.as_str())
                        .filter(|v| !v.is_null())
                        .map(|v| (name, r, v))
                })
                .collect();
            e.map(present.len() as u64)?;
            for (name, r, v) in present {
                e.str(name)?;
                write(model, e, child(&r.shape), v, depth + 1)?;
            }
        }
        (ShapeKind::List, Value::Array(items)) => {
            let member = shape.member.as_ref().and_then(|m| child(&m.shape));
            e.array(items.len() as u64)?;
            for item in items {
                write(model, e, member, item, depth + 1)?;
            }
        }
        (ShapeKind::Map, Value::Object(obj)) => {
            let val = shape.value.as_ref().and_then(|v| child(&v.shape));
            let present: Vec<_> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
            e.map(present.len() as u64)?;
            for (k, v) in present {
                e.str(k)?;
                write(model, e, val, v, depth + 1)?;
            }
        }
        (ShapeKind::Integer | ShapeKind::Long, Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                e.i64(i)?;
            } else if let Some(u) = n.as_u64() {
                e.u64(u)?;
            } else {
                e.i64(n.as_f64().unwrap_or_default() as i64)?;
            }
        }
        (ShapeKind::Double | ShapeKind::Float, Value::Number(n)) => {
            e.f64(n.as_f64().unwrap_or_default())?;
        }
        (ShapeKind::Double | ShapeKind::Float, Value::String(s)) => {
            let f = match s.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => return write_plain(e, value, depth),
            };
            e.f64(f)?;
        }
        (ShapeKind::Timestamp, Value::Number(n)) => {
            e.tag(IanaTag::Timestamp)?
                .f64(n.as_f64().unwrap_or_default())?;
        }
        (ShapeKind::Timestamp, Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                e.tag(IanaTag::Timestamp)?
                    .f64(t.timestamp_millis() as f64 / 1000.0)?;
            }
            Err(_) => {
                e.str(s)?;
            }
        },
        (ShapeKind::Blob, Value::String(s)) => match BASE64.decode(s) {
            Ok(bytes) => {
                e.bytes(&bytes)?;
            }
            Err(_) => {
                e.bytes(s.as_bytes())?;
            }
        },
        _ => return write_plain(e, value, depth),
    }
    Ok(())
}

/// A value the model does not type (a document, or a handler answer that disagrees with its
/// shape) written as JSON's own types.
fn write_plain(e: &mut Encoder<Vec<u8>>, value: &Value, depth: usize) -> Written {
    match value {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                e.i64(i)?;
            } else if let Some(u) = n.as_u64() {
                e.u64(u)?;
            } else {
                e.f64(n.as_f64().unwrap_or_default())?;
            }
        }
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Array(items) if depth <= MAX_DEPTH => {
            e.array(items.len() as u64)?;
            for item in items {
                write_plain(e, item, depth + 1)?;
            }
        }
        Value::Object(obj) if depth <= MAX_DEPTH => {
            e.map(obj.len() as u64)?;
            for (k, v) in obj {
                e.str(k)?;
                write_plain(e, v, depth + 1)?;
            }
        }
        Value::Array(_) | Value::Object(_) => {
            e.null()?;
        }
    }
    Ok(())
}

/// The Smithy namespace an error's `__type` is qualified with, from the model's service id
/// (`CloudWatch` → `com.amazonaws.cloudwatch`), as AWS qualifies them; clients keep only what
/// follows the `#`.
pub fn namespace(model: &ServiceModel) -> String {
    let id: String = model
        .metadata
        .service_id
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    format!("com.amazonaws.{id}")
}

/// The body of an error response: `{"__type": "<namespace>#<Shape>", "message": …}`. For a
/// query-compatible service the `__type` is the exception shape's name and the awsQuery code
/// goes in the `x-amzn-query-error` header ([`crate::json::query_error_header`]).
pub fn error_body(model: &ServiceModel, err: &AwsError) -> Vec<u8> {
    let type_name = format!(
        "{}#{}",
        namespace(model),
        crate::json::error_type(model, err)
    );
    error_map(&type_name, &err.message)
}

/// The body of an error raised before the service is known (a bad signature, an unknown
/// service): `__type` is the bare code.
pub fn plain_error_body(err: &AwsError) -> Vec<u8> {
    error_map(&err.code, &err.message)
}

fn error_map(type_name: &str, message: &str) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    let written = e
        .map(2)
        .and_then(|e| e.str("__type"))
        .and_then(|e| e.str(type_name))
        .and_then(|e| e.str("message"))
        .and_then(|e| e.str(message))
        .map(|_| ());
    match written {
        Ok(()) => e.into_writer(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ecs() -> ServiceModel {
        ServiceModel::parse(include_str!("../../shapes/models/ecs.json")).expect("ecs model")
    }

    fn cloudwatch() -> ServiceModel {
        ServiceModel::parse(include_str!("../../shapes/models/cloudwatch.json"))
            .expect("cloudwatch model")
    }

    fn cbor(build: impl FnOnce(&mut Encoder<Vec<u8>>) -> Written) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        build(&mut e).expect("encode");
        e.into_writer()
    }

    fn decode_ecs(op: &str, body: &[u8]) -> Result<Value, AwsError> {
        decode(
            &ecs(),
            &Patterns::default(),
            "InvalidParameterException",
            op,
            body,
        )
    }

    #[test]
    fn paths_name_service_and_operation() {
        assert_eq!(
            parse_path("/service/GraniteServiceVersion20100801/operation/ListMetrics"),
            Some(("GraniteServiceVersion20100801", "ListMetrics"))
        );
        assert_eq!(
            parse_path("/prefix/service/S/operation/Op"),
            Some(("S", "Op"))
        );
        assert_eq!(parse_path("/service/S/operation/"), None);
        assert_eq!(parse_path("/service//operation/Op"), None);
        assert_eq!(parse_path("/"), None);
        assert_eq!(parse_path("/service/S/operation/a/b"), None);
    }

    #[test]
    fn requests_become_the_json_awsjson_would_carry() {
        // RunTask: a string, an integer, a boolean, a list of structures, and a null member.
        let body = cbor(|e| {
            e.map(6)?
                .str("cluster")?
                .str("c")?
                .str("taskDefinition")?
                .str("td")?
                .str("count")?
                .u8(2)?
                .str("enableECSManagedTags")?
                .bool(true)?
                .str("tags")?
                .array(1)?
                .map(2)?
                .str("key")?
                .str("k")?
                .str("value")?
                .str("v")?
                .str("group")?
                .null()?;
            Ok(())
        });
        let v = decode_ecs("RunTask", &body).expect("valid");
        assert_eq!(
            v,
            json!({"cluster": "c", "taskDefinition": "td", "count": 2, "enableECSManagedTags": true,
                   "tags": [{"key": "k", "value": "v"}]})
        );
    }

    #[test]
    fn indefinite_items_timestamps_and_blobs_decode() {
        // CloudWatch PutMetricData with indefinite map, array and text, a tag-1 timestamp, and
        // GetMetricWidgetImage-style bytes checked on a blob member below.
        let body = cbor(|e| {
            e.begin_map()?
                .str("Namespace")?
                .begin_str()?
                .str("Ber")?
                .str("th")?
                .end()?
                .str("MetricData")?
                .begin_array()?
                .map(3)?
                .str("MetricName")?
                .str("m")?
                .str("Timestamp")?
                .tag(IanaTag::Timestamp)?
                .f64(1_700_000_000.5)?
                .str("Value")?
                .u8(3)?
                .end()?
                .end()?;
            Ok(())
        });
        let v = decode(
            &cloudwatch(),
            &Patterns::default(),
            "InvalidParameterValue",
            "PutMetricData",
            &body,
        )
        .expect("valid");
        assert_eq!(
            v,
            json!({"Namespace": "Berth", "MetricData": [
                {"MetricName": "m", "Timestamp": 1_700_000_000.5, "Value": 3}]})
        );
        // An integer timestamp is whole seconds.
        let model = cloudwatch();
        let shape = model.shape("MetricDatum");
        let v = to_json(
            &model,
            shape,
            &cbor(|e| {
                e.map(1)?
                    .str("Timestamp")?
                    .tag(IanaTag::Timestamp)?
                    .u32(7)?;
                Ok(())
            }),
        )
        .expect("valid");
        assert_eq!(v, json!({"Timestamp": 7}));
    }

    #[test]
    fn byte_strings_are_base64_blobs_and_only_blobs() {
        // ECS has no blob input; a synthetic model checks the blob path.
        let m = ServiceModel::parse(
            r#"{"metadata": {"protocol": "smithy-rpc-v2-cbor", "endpointPrefix": "x",
                "serviceId": "X"},
                "operations": {},
                "shapes": {"In": {"type": "structure", "members": {
                    "B": {"shape": "B"}, "S": {"shape": "S"}}},
                  "B": {"type": "blob"}, "S": {"type": "string"}}}"#,
        )
        .expect("model");
        let v = to_json(
            &m,
            m.shape("In"),
            &cbor(|e| {
                e.map(1)?
                    .str("B")?
                    .begin_bytes()?
                    .bytes(b"he")?
                    .bytes(b"llo")?
                    .end()?;
                Ok(())
            }),
        )
        .expect("valid");
        assert_eq!(v, json!({"B": "aGVsbG8="}));
        let e = to_json(
            &m,
            m.shape("In"),
            &cbor(|e| {
                e.map(1)?.str("S")?.bytes(b"x")?;
                Ok(())
            }),
        )
        .unwrap_err();
        assert_eq!(e.code, "SerializationException");
        assert!(e.message.contains("'S'"), "{}", e.message);
        let e = to_json(
            &m,
            m.shape("In"),
            &cbor(|e| {
                e.map(1)?.str("B")?.str("x")?;
                Ok(())
            }),
        )
        .unwrap_err();
        assert_eq!(e.code, "SerializationException");
    }

    #[test]
    fn bad_bodies_are_serialization_errors() {
        let valid = cbor(|e| {
            e.map(1)?.str("cluster")?.str("c")?;
            Ok(())
        });
        let mut trailing = valid.clone();
        trailing.push(0x00);
        let e = decode_ecs("ListServices", &trailing).unwrap_err();
        assert_eq!(e.code, "SerializationException");
        assert!(e.message.contains("after"), "{}", e.message);
        let e = decode_ecs("ListServices", &valid[..valid.len() - 1]).unwrap_err();
        assert_eq!(e.code, "SerializationException");
        // A tag other than 1, a non-text key, a break out of place.
        for bad in [
            cbor(|e| {
                e.map(1)?.str("cluster")?.tag(Tag::new(2))?.bytes(b"\x01")?;
                Ok(())
            }),
            cbor(|e| {
                e.map(1)?.u8(1)?.str("c")?;
                Ok(())
            }),
            vec![0xff],
            vec![0x1c],
        ] {
            let e = decode_ecs("ListServices", &bad).unwrap_err();
            assert_eq!(e.code, "SerializationException", "{bad:?}: {}", e.message);
        }
        // Too deep: 100 nested arrays.
        let mut deep = vec![0xa1, 0x67];
        deep.extend_from_slice(b"cluster");
        deep.extend(std::iter::repeat_n(0x81, 100));
        deep.push(0x00);
        let e = decode_ecs("ListServices", &deep).unwrap_err();
        assert!(e.message.contains("deeper"), "{}", e.message);
        // Wrong types and broken constraints go through the shared validator.
        let e = decode_ecs(
            "ListServices",
            &cbor(|e| {
                e.map(1)?.str("maxResults")?.str("x")?;
                Ok(())
            }),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Expected integer at 'maxResults', found a string."
        );
        let e = decode_ecs("DescribeServices", &cbor(|e| e.map(0).map(|_| ()))).unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
    }

    #[test]
    fn answers_follow_the_output_shape() {
        let m = cloudwatch();
        let out = json!({"Datapoints": [{"Timestamp": 1_700_000_000.0, "Average": 2,
                                          "Unit": "Percent", "ExtendedStatistics": {"p99": 5}}],
                         "Label": "CPU", "Bogus": null});
        let body = encode(&m, "GetMetricStatistics", &out).expect("encode");
        // Read back with the decoder: doubles are floats, the timestamp is tag 1 + float.
        let mut d = Decoder::new(&body);
        assert_eq!(d.map().expect("map"), Some(2));
        assert_eq!(d.str().expect("key"), "Label");
        assert_eq!(d.str().expect("label"), "CPU");
        assert_eq!(d.str().expect("key"), "Datapoints");
        assert_eq!(d.array().expect("array"), Some(1));
        assert_eq!(d.map().expect("map"), Some(4));
        assert_eq!(d.str().expect("key"), "Timestamp");
        assert_eq!(d.tag().expect("tag"), Tag::from(IanaTag::Timestamp));
        assert_eq!(d.f64().expect("secs"), 1_700_000_000.0);
        assert_eq!(d.str().expect("key"), "Average");
        assert_eq!(d.datatype().expect("type"), Type::F64);
        assert_eq!(d.f64().expect("avg"), 2.0);
        assert_eq!(d.str().expect("key"), "Unit");
        assert_eq!(d.str().expect("unit"), "Percent");
        assert_eq!(d.str().expect("key"), "ExtendedStatistics");
        assert_eq!(d.map().expect("map"), Some(1));
        assert_eq!(d.str().expect("key"), "p99");
        assert_eq!(d.f64().expect("p99"), 5.0);
        assert_eq!(d.position(), body.len());
        // An operation without output answers with nothing.
        assert!(
            encode(&m, "PutMetricData", &json!({}))
                .expect("encode")
                .is_empty()
        );
    }

    #[test]
    fn round_trips_through_ecs_shapes() {
        // Whatever the encoder writes for an output shape, the decoder reads back as the same
        // JSON (DescribeClusters' output has strings, integers, lists, maps of structures).
        let m = ecs();
        let out = json!({"clusters": [{"clusterName": "c", "clusterArn": "arn:aws:ecs:r:1:cluster/c",
            "runningTasksCount": 3, "statistics": [{"name": "n", "value": "v"}],
            "tags": [{"key": "k", "value": "v"}], "settings": []}],
            "failures": []});
        let body = encode(&m, "DescribeClusters", &out).expect("encode");
        let output = m.operations["DescribeClusters"]
            .output
            .as_ref()
            .expect("output");
        let back = to_json(&m, m.shape(&output.shape), &body).expect("decode");
        assert_eq!(back, out);
    }

    #[test]
    fn errors_carry_the_qualified_shape_name() {
        let m = cloudwatch();
        let body = error_body(&m, &AwsError::client("InvalidParameterValue", "bad value"));
        let back = to_json(&m, None, &body).expect("decode");
        assert_eq!(
            back,
            json!({"__type": "com.amazonaws.cloudwatch#InvalidParameterValueException",
                   "message": "bad value"})
        );
        assert_eq!(
            crate::json::query_error_header(&m, &AwsError::client("ResourceNotFound", "x"))
                .as_deref(),
            Some("ResourceNotFound;Sender")
        );
        assert_eq!(
            crate::json::query_error_header(
                &m,
                &AwsError::client("InternalServiceFault", "x")
                    .with_status(http::StatusCode::INTERNAL_SERVER_ERROR)
            )
            .as_deref(),
            Some("InternalServiceError;Receiver")
        );
        assert_eq!(
            crate::json::query_error_header(&ecs(), &AwsError::client("X", "x")),
            None
        );
    }

    #[test]
    fn a_missing_required_member_is_missing_parameter_where_declared() {
        let m = cloudwatch();
        let p = Patterns::default();
        let e = decode(
            &m,
            &p,
            "InvalidParameterValue",
            "PutMetricData",
            &cbor(|e| {
                e.map(1)?.str("MetricData")?.array(0)?;
                Ok(())
            }),
        )
        .unwrap_err();
        assert_eq!(e.code, "MissingParameter", "{}", e.message);
        assert_eq!(
            m.error_names(&e.code).type_name,
            "MissingRequiredParameterException"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let m = cloudwatch();
            let _ = decode(&m, &Patterns::default(), "InvalidParameterValue", "PutMetricData", &bytes);
            let _ = to_json(&m, None, &bytes);
        }

        #[test]
        fn every_prefix_of_a_valid_body_is_refused_cleanly(cut in 1usize..60) {
            let body = cbor(|e| {
                e.map(2)?.str("Namespace")?.str("Berth/Test")?.str("MetricData")?.array(1)?
                    .map(2)?.str("MetricName")?.str("cpu")?.str("Value")?.f64(1.5)?;
                Ok(())
            });
            let cut = cut.min(body.len() - 1);
            let r = decode(&cloudwatch(), &Patterns::default(), "InvalidParameterValue",
                "PutMetricData", &body[..cut]);
            prop_assert!(r.is_err());
        }
    }
}
