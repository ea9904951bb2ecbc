//! Checks a request body against its input shape before any handler sees it, so every operation
//! enforces the model's types, required members, enums, lengths, ranges and patterns the same way.
//!
//! Messages follow the wording AWS services use ("1 validation error detected: Value null at
//! 'cluster' failed to satisfy constraint: Member must not be null"). Members the model does not
//! know are ignored, as AWS's JSON services ignore them (a newer client may send them).

use crate::model::{ServiceModel, Shape, ShapeKind};
use parking_lot::RwLock;
use regex::Regex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// How a body failed its shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Invalid {
    /// A value of the wrong JSON type: the protocol's serialization error.
    Type(String),
    /// Constraint violations, in the order found (AWS reports up to a handful at once).
    Constraints(Vec<String>),
}

impl Invalid {
    pub fn message(&self) -> String {
        match self {
            Invalid::Type(m) => m.clone(),
            Invalid::Constraints(v) => {
                let n = v.len();
                let noun = if n == 1 { "error" } else { "errors" };
                format!("{n} validation {noun} detected: {}", v.join("; "))
            }
        }
    }
}

/// Compiled `pattern` constraints, shared by every request.
#[derive(Default)]
pub struct Patterns(RwLock<HashMap<String, Option<Arc<Regex>>>>);

impl Patterns {
    fn get(&self, pattern: &str) -> Option<Arc<Regex>> {
        if let Some(r) = self.0.read().get(pattern) {
            return r.clone();
        }
        // A model pattern that Rust's regex cannot compile is not enforced rather than failing
        // every request: the model is the authority and AWS would accept what it accepts.
        let compiled = Regex::new(pattern).ok().map(Arc::new);
        self.0.write().insert(pattern.to_string(), compiled.clone());
        compiled
    }
}

const MAX_REPORTED: usize = 10;

/// Validates `value` against shape `shape_name` of `model`.
pub fn validate(
    model: &ServiceModel,
    patterns: &Patterns,
    shape_name: &str,
    value: &Value,
) -> Result<(), Invalid> {
    let mut errors = Vec::new();
    check(model, patterns, shape_name, value, "", &mut errors)?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid::Constraints(errors))
    }
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

pub(crate) fn type_name(kind: ShapeKind) -> &'static str {
    match kind {
        ShapeKind::Structure => "structure",
        ShapeKind::List => "list",
        ShapeKind::Map => "map",
        ShapeKind::String => "string",
        ShapeKind::Integer => "integer",
        ShapeKind::Long => "long",
        ShapeKind::Boolean => "boolean",
        ShapeKind::Double | ShapeKind::Float => "number",
        ShapeKind::Timestamp => "timestamp",
        ShapeKind::Blob => "blob",
    }
}

fn wrong_type(kind: ShapeKind, path: &str, value: &Value) -> Invalid {
    let found = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    let at = if path.is_empty() {
        "the request body".to_string()
    } else {
        format!("'{path}'")
    };
    Invalid::Type(format!(
        "Expected {} at {at}, found {found}.",
        type_name(kind)
    ))
}

fn check(
    model: &ServiceModel,
    patterns: &Patterns,
    shape_name: &str,
    value: &Value,
    path: &str,
    errors: &mut Vec<String>,
) -> Result<(), Invalid> {
    let Some(shape) = model.shape(shape_name) else {
        return Ok(());
    };
    if shape.document {
        return Ok(());
    }
    match shape.kind {
        ShapeKind::Structure => {
            let obj = value
                .as_object()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
            for req in &shape.required {
                if obj.get(req).is_none_or(Value::is_null) && errors.len() < MAX_REPORTED {
                    errors.push(format!(
                        "Value null at '{}' failed to satisfy constraint: Member must not be null",
                        join(path, req)
                    ));
                }
            }
            for (name, member) in shape.members.iter() {
                if let Some(v) = obj.get(name).filter(|v| !v.is_null()) {
                    check(model, patterns, &member.shape, v, &join(path, name), errors)?;
                }
            }
        }
        ShapeKind::List => {
            let items = value
                .as_array()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
            length(shape, items.len(), path, "Member must have length", errors);
            if let Some(member) = &shape.member {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}.{}.member", i + 1);
                    if item.is_null() {
                        continue;
                    }
                    check(model, patterns, &member.shape, item, &p, errors)?;
                }
            }
        }
        ShapeKind::Map => {
            let obj = value
                .as_object()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
            length(shape, obj.len(), path, "Member must have length", errors);
            for (k, v) in obj {
                if let Some(key) = &shape.key {
                    check(
                        model,
                        patterns,
                        &key.shape,
                        &Value::String(k.clone()),
                        &format!("{path}.key"),
                        errors,
                    )?;
                }
                if let (Some(val), false) = (&shape.value, v.is_null()) {
                    check(
                        model,
                        patterns,
                        &val.shape,
                        v,
                        &format!("{path}.{k}"),
                        errors,
                    )?;
                }
            }
        }
        ShapeKind::String => {
            let s = value
                .as_str()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
            if let Some(values) = &shape.enum_values
                && !values.iter().any(|v| v == s)
                && errors.len() < MAX_REPORTED
            {
                errors.push(format!(
                    "Value '{s}' at '{path}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                    values.join(", ")
                ));
            }
            length(
                shape,
                s.chars().count(),
                path,
                "Member must have length",
                errors,
            );
            if let Some(p) = &shape.pattern
                && let Some(re) = patterns.get(p)
                && !re.is_match(s)
                && errors.len() < MAX_REPORTED
            {
                errors.push(format!(
                    "Value at '{path}' failed to satisfy constraint: Member must satisfy regular expression pattern: {p}"
                ));
            }
        }
        ShapeKind::Integer | ShapeKind::Long => {
            let n = value
                .as_i64()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
            if shape.kind == ShapeKind::Integer && i32::try_from(n).is_err() {
                return Err(wrong_type(shape.kind, path, value));
            }
            range(shape, n as f64, path, errors);
        }
        ShapeKind::Double | ShapeKind::Float => {
            let n = value
                .as_f64()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
            range(shape, n, path, errors);
        }
        ShapeKind::Boolean => {
            value
                .as_bool()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
        }
        ShapeKind::Timestamp => {
            value
                .as_f64()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
        }
        ShapeKind::Blob => {
            value
                .as_str()
                .ok_or_else(|| wrong_type(shape.kind, path, value))?;
        }
    }
    Ok(())
}

fn length(shape: &Shape, len: usize, path: &str, what: &str, errors: &mut Vec<String>) {
    let len = len as f64;
    if errors.len() >= MAX_REPORTED {
        return;
    }
    if let Some(min) = shape.min
        && len < min
    {
        errors.push(format!(
            "Value at '{path}' failed to satisfy constraint: {what} greater than or equal to {min}"
        ));
    } else if let Some(max) = shape.max
        && len > max
    {
        errors.push(format!(
            "Value at '{path}' failed to satisfy constraint: {what} less than or equal to {max}"
        ));
    }
}

fn range(shape: &Shape, n: f64, path: &str, errors: &mut Vec<String>) {
    if errors.len() >= MAX_REPORTED {
        return;
    }
    if let Some(min) = shape.min
        && n < min
    {
        errors.push(format!(
            "Value '{n}' at '{path}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
        ));
    } else if let Some(max) = shape.max
        && n > max
    {
        errors.push(format!(
            "Value '{n}' at '{path}' failed to satisfy constraint: Member must have value less than or equal to {max}"
        ));
    }
}
