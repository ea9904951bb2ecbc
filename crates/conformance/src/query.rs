//! awsQuery for the suite: the JSON requests the generator makes are sent as the forms botocore's
//! `QuerySerializer` writes, and XML answers are read back into the JSON form of the output
//! shape (as botocore's `QueryParser` reads them; timestamps as epoch seconds) or into
//! `{"__type": Code, "message": Message}` for errors, so every check judges one form whatever
//! the protocol. Translation happens only in [`crate::client`].

use serde_json::{Map, Value, json};

/// The form body of `op` with `input` (the JSON form of its input shape). An input that is not
/// an object (an invalid request's body) has no form: it is sent as its JSON text.
pub fn to_form(service: &Value, op: &str, input: &Value) -> String {
    if !input.is_object() {
        return input.to_string();
    }
    let mut pairs = vec![
        ("Action".to_string(), op.to_string()),
        (
            "Version".to_string(),
            service["metadata"]["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
    ];
    if let Some(shape) = service["operations"][op]["input"]["shape"].as_str() {
        write(&service["shapes"], shape, input, "", &mut pairs);
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn escape(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, SET).to_string()
}

fn write(
    shapes: &Value,
    shape: &str,
    value: &Value,
    prefix: &str,
    out: &mut Vec<(String, String)>,
) {
    let s = &shapes[shape];
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    match (s["type"].as_str().unwrap_or_default(), value) {
        (_, Value::Null) => {}
        ("structure", Value::Object(obj)) => {
            for (k, v) in obj {
                let member = &s["members"][k];
                let Some(target) = member["shape"].as_str() else {
                    // A member the model does not have is sent as it is named.
                    out.push((join(k), scalar(v)));
                    continue;
                };
                let name = member["locationName"].as_str().unwrap_or(k);
                write(shapes, target, v, &join(name), out);
            }
        }
        ("list", Value::Array(items)) => {
            if items.is_empty() {
                out.push((prefix.to_string(), String::new()));
                return;
            }
            let member = s["member"]["shape"].as_str().unwrap_or_default();
            let item = if s["flattened"].as_bool() == Some(true) {
                prefix.to_string()
            } else {
                format!(
                    "{prefix}.{}",
                    s["member"]["locationName"].as_str().unwrap_or("member")
                )
            };
            for (i, v) in items.iter().enumerate() {
                write(shapes, member, v, &format!("{item}.{}", i + 1), out);
            }
        }
        ("map", Value::Object(obj)) => {
            let val = s["value"]["shape"].as_str().unwrap_or_default();
            for (i, (k, v)) in obj.iter().enumerate() {
                out.push((format!("{prefix}.entry.{}.key", i + 1), k.clone()));
                write(
                    shapes,
                    val,
                    v,
                    &format!("{prefix}.entry.{}.value", i + 1),
                    out,
                );
            }
        }
        ("timestamp", Value::Number(n)) => {
            out.push((prefix.to_string(), iso8601(n.as_f64().unwrap_or_default())));
        }
        // A value of the wrong kind (an invalid request) goes as its text, as a client that
        // skipped validation would send it.
        (_, v) => out.push((prefix.to_string(), scalar(v))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Epoch seconds as ISO 8601 UTC (`1970-01-01T00:00:01Z`), civil-from-days.
fn iso8601(secs: f64) -> String {
    let total = secs.floor() as i64;
    let days = total.div_euclid(86_400);
    let rem = total.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// ISO 8601 UTC (`2026-11-26T07:35:50.949Z`) as epoch seconds.
fn parse_iso8601(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// One XML element: its name (without a prefix), child elements and text.
#[derive(Debug, Default)]
pub struct Node {
    pub name: String,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn find(&self, name: &str) -> Option<&Node> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

/// Parses the XML awsQuery services answer: elements, text, the five entities and character
/// references; attributes, comments and the prolog are skipped. `None` when it is not XML.
pub fn parse_xml(text: &str) -> Option<Node> {
    let mut stack: Vec<Node> = vec![Node::default()];
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            let end = after.find('>')?;
            let tag = &after[..end];
            rest = &after[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let node = stack.pop()?;
                if node.name != local(name.trim()) {
                    return None;
                }
                stack.last_mut()?.children.push(node);
            } else {
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let name = local(tag.split_whitespace().next()?);
                let node = Node {
                    name: name.to_string(),
                    ..Default::default()
                };
                if self_closing {
                    stack.last_mut()?.children.push(node);
                } else {
                    stack.push(node);
                }
            }
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let raw = &rest[..end];
            rest = &rest[end..];
            stack.last_mut()?.text.push_str(&unescape(raw)?);
        }
    }
    if stack.len() != 1 {
        return None;
    }
    let mut root = stack.pop()?;
    if root.children.len() != 1 {
        return None;
    }
    root.children.pop()
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';')? + i;
        let entity = &rest[i + 1..end];
        match entity {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            e => {
                let code = if let Some(hex) = e.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    e.strip_prefix('#')?.parse().ok()?
                };
                out.push(char::from_u32(code)?);
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The JSON form of a successful answer of `op`, or `None` when the XML is not what botocore
/// could read (no `<OpResponse>`, no result wrapper).
pub fn response_to_json(service: &Value, op: &str, xml: &str) -> Option<Value> {
    let root = parse_xml(xml)?;
    if root.name != format!("{op}Response") {
        return None;
    }
    let output = &service["operations"][op]["output"];
    let Some(shape) = output["shape"].as_str() else {
        return Some(json!({}));
    };
    let start = match output["resultWrapper"].as_str() {
        Some(w) => root.find(w)?,
        None => &root,
    };
    Some(read(&service["shapes"], shape, start))
}

fn read(shapes: &Value, shape: &str, node: &Node) -> Value {
    let s = &shapes[shape];
    match s["type"].as_str().unwrap_or_default() {
        "structure" => {
            let mut obj = Map::new();
            for (name, member) in s["members"].as_object().into_iter().flatten() {
                let target = member["shape"].as_str().unwrap_or_default();
                let tag = member["locationName"].as_str().unwrap_or(name);
                let t = &shapes[target];
                if t["type"] == "list" && t["flattened"].as_bool() == Some(true) {
                    let item_tag = t["member"]["locationName"].as_str().unwrap_or(tag);
                    let item = t["member"]["shape"].as_str().unwrap_or_default();
                    let items: Vec<Value> = node
                        .children
                        .iter()
                        .filter(|c| c.name == item_tag)
                        .map(|c| read(shapes, item, c))
                        .collect();
                    if !items.is_empty() {
                        obj.insert(name.clone(), Value::Array(items));
                    }
                    continue;
                }
                if let Some(child) = node.child(tag) {
                    obj.insert(name.clone(), read(shapes, target, child));
                }
            }
            Value::Object(obj)
        }
        "list" => {
            let tag = s["member"]["locationName"].as_str().unwrap_or("member");
            let item = s["member"]["shape"].as_str().unwrap_or_default();
            Value::Array(
                node.children
                    .iter()
                    .filter(|c| c.name == tag)
                    .map(|c| read(shapes, item, c))
                    .collect(),
            )
        }
        "map" => {
            let val = s["value"]["shape"].as_str().unwrap_or_default();
            let mut obj = Map::new();
            for e in node.children.iter().filter(|c| c.name == "entry") {
                if let (Some(k), Some(v)) = (e.child("key"), e.child("value")) {
                    obj.insert(k.text.clone(), read(shapes, val, v));
                }
            }
            Value::Object(obj)
        }
        // A value that does not parse as its type stays text, so the shape check reports it.
        "integer" | "long" => node
            .text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(node.text.clone())),
        "double" | "float" => node
            .text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(node.text.clone())),
        "boolean" => match node.text.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(node.text.clone()),
        },
        "timestamp" => parse_iso8601(node.text.trim())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(node.text.clone())),
        _ => Value::String(node.text.clone()),
    }
}

/// An `<ErrorResponse>` as `{"__type": Code, "message": Message}`; `None` when it is not one.
pub fn error_to_json(xml: &str) -> Option<Value> {
    let root = parse_xml(xml)?;
    let error = root.find("Error")?;
    let code = error.child("Code")?.text.clone();
    let message = error
        .child("Message")
        .map(|m| m.text.clone())
        .unwrap_or_default();
    Some(json!({"__type": code, "message": message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000.0), "2023-11-14T22:13:20Z");
        assert_eq!(
            parse_iso8601("2023-11-14T22:13:20.500Z"),
            Some(1_700_000_000.5)
        );
    }

    #[test]
    fn xml_reads_back_as_json() {
        let service = json!({
            "operations": {"Op": {"output": {"shape": "Out", "resultWrapper": "OpResult"}}},
            "shapes": {
                "Out": {"type": "structure", "members": {"Items": {"shape": "L"}, "N": {"shape": "I"}}},
                "L": {"type": "list", "member": {"shape": "S"}},
                "S": {"type": "string"}, "I": {"type": "integer"}
            }
        });
        let xml = "<?xml version=\"1.0\"?>\n<OpResponse xmlns=\"x\"><OpResult><Items><member>a&amp;b</member>\
                   <member/></Items><N>3</N></OpResult><ResponseMetadata><RequestId>r</RequestId>\
                   </ResponseMetadata></OpResponse>";
        assert_eq!(
            response_to_json(&service, "Op", xml),
            Some(json!({"Items": ["a&b", ""], "N": 3}))
        );
        let err = "<ErrorResponse><Error><Type>Sender</Type><Code>C</Code><Message>m &lt;</Message></Error></ErrorResponse>";
        assert_eq!(
            error_to_json(err),
            Some(json!({"__type": "C", "message": "m <"}))
        );
    }
}
