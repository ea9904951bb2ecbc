//! Smithy RPC v2 CBOR for the suite's client: a JSON request is written as the CBOR a
//! Smithy-generated SDK sends (the input shape decides the CBOR type: doubles as floats,
//! timestamps as tag 1, blobs as byte strings), and a CBOR answer is read back into JSON
//! (tag-1 timestamps as epoch seconds, byte strings as base64), so every check stays the same.
//! Written apart from berth's own codec (`berth-aws::cbor`) on purpose: the suite must not
//! agree with the server by sharing its code.

use base64::Engine as _;
use minicbor::data::{IanaTag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};
use std::convert::Infallible;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

type Written = Result<(), minicbor::encode::Error<Infallible>>;

/// `input` (the JSON form of `op`'s input) as a CBOR body. A value the shape does not type
/// (a deliberately wrong type, a member the model lacks) keeps its JSON type.
pub fn request(service: &Value, op: &str, input: &Value) -> Vec<u8> {
    let shape = service["operations"][op]["input"]["shape"].as_str();
    let mut e = Encoder::new(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = write(service, &mut e, shape, input, 0);
    e.into_writer()
}

fn write(
    service: &Value,
    e: &mut Encoder<Vec<u8>>,
    shape_name: Option<&str>,
    value: &Value,
    depth: usize,
) -> Written {
    let shape = shape_name.map(|n| &service["shapes"][n]);
    let kind = shape.and_then(|s| s["type"].as_str()).unwrap_or_default();
    if depth > 64 {
        e.null()?;
        return Ok(());
    }
    match (kind, value) {
        ("structure", Value::Object(obj)) => {
            let present: Vec<_> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
            e.map(present.len() as u64)?;
            for (k, v) in present {
                e.str(k)?;
                let member = shape.and_then(|s| s["members"][k.as_str()]["shape"].as_str());
                write(service, e, member, v, depth + 1)?;
            }
        }
        ("list", Value::Array(items)) => {
            let member = shape.and_then(|s| s["member"]["shape"].as_str());
            e.array(items.len() as u64)?;
            for item in items {
                write(service, e, member, item, depth + 1)?;
            }
        }
        ("map", Value::Object(obj)) => {
            let val = shape.and_then(|s| s["value"]["shape"].as_str());
            e.map(obj.len() as u64)?;
            for (k, v) in obj {
                e.str(k)?;
                write(service, e, val, v, depth + 1)?;
            }
        }
        ("double" | "float", Value::Number(n)) => {
            e.f64(n.as_f64().unwrap_or_default())?;
        }
        ("timestamp", Value::Number(n)) => {
            e.tag(IanaTag::Timestamp)?
                .f64(n.as_f64().unwrap_or_default())?;
        }
        ("blob", Value::String(s)) => match BASE64.decode(s) {
            Ok(bytes) => {
                e.bytes(&bytes)?;
            }
            Err(_) => {
                e.bytes(s.as_bytes())?;
            }
        },
        _ => plain(e, value)?,
    }
    Ok(())
}

fn plain(e: &mut Encoder<Vec<u8>>, value: &Value) -> Written {
    match value {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => {
                e.i64(i)?;
            }
            (None, Some(u)) => {
                e.u64(u)?;
            }
            _ => {
                e.f64(n.as_f64().unwrap_or_default())?;
            }
        },
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for item in items {
                plain(e, item)?;
            }
        }
        Value::Object(obj) => {
            e.map(obj.len() as u64)?;
            for (k, v) in obj {
                e.str(k)?;
                plain(e, v)?;
            }
        }
    }
    Ok(())
}

/// A CBOR answer as JSON; `None` when it is not one well-formed CBOR item (an empty body is
/// `{}`, as for an operation without output).
pub fn response(body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return Some(Value::Object(Map::new()));
    }
    let mut d = Decoder::new(body);
    let v = item(&mut d, 0)?;
    (d.position() == body.len()).then_some(v)
}

fn item(d: &mut Decoder<'_>, depth: usize) -> Option<Value> {
    if depth > 64 {
        return None;
    }
    Some(match d.datatype().ok()? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => {
            let n = i128::from(d.int().ok()?);
            Value::Number(
                i64::try_from(n)
                    .map(Number::from)
                    .or_else(|_| u64::try_from(n).map(Number::from))
                    .ok()?,
            )
        }
        Type::F16 | Type::F32 | Type::F64 => {
            let f = d.f64().ok()?;
            Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string()))
        }
        Type::Bool => Value::Bool(d.bool().ok()?),
        Type::Null => {
            d.null().ok()?;
            Value::Null
        }
        Type::Undefined => {
            d.undefined().ok()?;
            Value::Null
        }
        Type::Bytes | Type::BytesIndef => {
            let mut bytes = Vec::new();
            for chunk in d.bytes_iter().ok()? {
                bytes.extend_from_slice(chunk.ok()?);
            }
            Value::String(BASE64.encode(bytes))
        }
        Type::String | Type::StringIndef => {
            let mut s = String::new();
            for chunk in d.str_iter().ok()? {
                s.push_str(chunk.ok()?);
            }
            Value::String(s)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().ok()?;
            let mut items = Vec::new();
            while more(d, len, items.len() as u64)? {
                items.push(item(d, depth + 1)?);
            }
            Value::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().ok()?;
            let mut obj = Map::new();
            let mut n = 0;
            while more(d, len, n)? {
                n += 1;
                let Value::String(k) = item(d, depth + 1)? else {
                    return None;
                };
                obj.insert(k, item(d, depth + 1)?);
            }
            Value::Object(obj)
        }
        Type::Tag => {
            if d.tag().ok()? != minicbor::data::Tag::from(IanaTag::Timestamp) {
                return None;
            }
            match item(d, depth + 1)? {
                n @ Value::Number(_) => n,
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn more(d: &mut Decoder<'_>, len: Option<u64>, seen: u64) -> Option<bool> {
    match len {
        Some(n) => Some(seen < n),
        None if d.datatype().ok()? == Type::Break => {
            d.skip().ok()?;
            Some(false)
        }
        None => Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_take_the_cbor_types_of_their_shapes_and_come_back() {
        let service = json!({
            "operations": {"Op": {"input": {"shape": "In"}}},
            "shapes": {
                "In": {"type": "structure", "members": {
                    "D": {"shape": "D"}, "T": {"shape": "T"}, "B": {"shape": "B"},
                    "N": {"shape": "N"}, "L": {"shape": "L"}}},
                "D": {"type": "double"}, "T": {"type": "timestamp"}, "B": {"type": "blob"},
                "N": {"type": "integer"}, "L": {"type": "list", "member": {"shape": "D"}}
            }
        });
        let body = request(
            &service,
            "Op",
            &json!({"D": 2, "T": 1700000000, "B": "aGk=", "N": 3, "L": [1], "X": null}),
        );
        // The blob travels as a byte string (0x42 "hi"), not as its base64 text.
        assert!(body.windows(3).any(|w| w == [0x42, b'h', b'i']), "{body:?}");
        // Read back, the JSON is what was sent; the double and the timestamp come back as
        // floats, which they would not had they been written as integers.
        let back = response(&body).expect("cbor");
        assert_eq!(
            back,
            json!({"B": "aGk=", "D": 2.0, "L": [1.0], "N": 3, "T": 1700000000.0})
        );
        assert_eq!(response(&body[..body.len() - 1]), None);
        assert_eq!(response(b""), Some(json!({})));
    }
}
