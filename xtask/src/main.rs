//! Developer tasks. `cargo run -p xtask -- codegen` regenerates berth's AWS wire shapes from the
//! service models that botocore ships, so field names, types and constraints come from the spec
//! rather than from memory.
//!
//! For each service it writes two files into `crates/shapes`:
//! - `src/<service>.rs`: a serde struct per structure shape, every member optional, so that a
//!   request missing a required member still parses and gets the model's error from the validator
//!   instead of a deserializer message;
//! - `models/<service>.json`: the model without its documentation, which the request validator and
//!   the conformance suite read at run time.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The services berth serves, as (module name, botocore folder).
const SERVICES: &[(&str, &str)] = &[
    ("ecs", "ecs/2014-11-13"),
    ("ecr", "ecr/2015-09-21"),
    ("logs", "logs/2014-03-28"),
    ("elbv2", "elbv2/2015-12-01"),
    ("cloudwatch", "cloudwatch/2010-08-01"),
    ("autoscaling", "application-autoscaling/2016-02-06"),
    ("secretsmanager", "secretsmanager/2017-10-17"),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => codegen(&args[1..]),
        _ => bail!("usage: cargo run -p xtask -- codegen [service…]"),
    }
}

fn botocore_data() -> Result<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import botocore,os;print(os.path.dirname(botocore.__file__))",
        ])
        .output()
        .context("running python3 to find botocore")?;
    if !out.status.success() {
        bail!("botocore is not installed: pip install botocore");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()).join("data"))
}

/// Regenerates every service, or only those named (`codegen elbv2`).
fn codegen(only: &[String]) -> Result<()> {
    let data = botocore_data()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("crates/shapes");
    for (module, folder) in SERVICES {
        if !only.is_empty() && !only.iter().any(|o| o == module) {
            continue;
        }
        let path = data.join(folder).join("service-2.json.gz");
        let file = std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
        let model: Value = serde_json::from_reader(flate2::read::GzDecoder::new(file))?;
        let trimmed = trim(&model);
        std::fs::create_dir_all(root.join("models"))?;
        std::fs::write(
            root.join("models").join(format!("{module}.json")),
            serde_json::to_string(&trimmed)? + "\n",
        )?;
        std::fs::write(
            root.join("src").join(format!("{module}.rs")),
            rust(module, &trimmed)?,
        )?;
        eprintln!("generated {module} from {}", path.display());
    }
    Ok(())
}

/// Keys that carry meaning for the wire; everything else (documentation, examples) is dropped.
const SHAPE_KEYS: &[&str] = &[
    "type",
    "members",
    "required",
    "enum",
    "min",
    "max",
    "pattern",
    "member",
    "key",
    "value",
    "exception",
    "fault",
    "error",
    "document",
    "timestampFormat",
    "union",
    "flattened",
];
const MEMBER_KEYS: &[&str] = &[
    "shape",
    "location",
    "locationName",
    "jsonvalue",
    "idempotencyToken",
];

fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    if let Some(obj) = v.as_object() {
        for k in keys {
            if let Some(x) = obj.get(*k) {
                out.insert((*k).to_string(), x.clone());
            }
        }
    }
    Value::Object(out)
}

fn trim(model: &Value) -> Value {
    let mut shapes = Map::new();
    for (name, shape) in model["shapes"].as_object().into_iter().flatten() {
        let mut s = pick(shape, SHAPE_KEYS);
        if let Some(members) = shape["members"].as_object() {
            let m: Map<String, Value> = members
                .iter()
                .map(|(k, v)| (k.clone(), pick(v, MEMBER_KEYS)))
                .collect();
            s["members"] = Value::Object(m);
        }
        for key in ["member", "key", "value"] {
            if let Some(x) = shape.get(key) {
                s[key] = pick(x, MEMBER_KEYS);
            }
        }
        shapes.insert(name.clone(), s);
    }
    let mut operations = Map::new();
    for (name, op) in model["operations"].as_object().into_iter().flatten() {
        operations.insert(
            name.clone(),
            pick(op, &["name", "http", "input", "output", "errors"]),
        );
    }
    json!({
        "metadata": model["metadata"],
        "operations": operations,
        "shapes": shapes,
    })
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

fn snake(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(*c);
        }
    }
    if RUST_KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

/// The Rust type of a shape reference.
fn rust_type(shapes: &Map<String, Value>, name: &str) -> Result<String> {
    let shape = shapes
        .get(name)
        .with_context(|| format!("unknown shape {name}"))?;
    Ok(match shape["type"].as_str().unwrap_or_default() {
        "string" => "String".into(),
        "integer" => "i32".into(),
        "long" => "i64".into(),
        "boolean" => "bool".into(),
        "double" | "float" => "f64".into(),
        "timestamp" => "crate::Timestamp".into(),
        "blob" => "crate::Blob".into(),
        "list" => format!(
            "Vec<{}>",
            rust_type(
                shapes,
                shape["member"]["shape"].as_str().unwrap_or_default()
            )?
        ),
        "map" => format!(
            "std::collections::BTreeMap<String, {}>",
            rust_type(shapes, shape["value"]["shape"].as_str().unwrap_or_default())?
        ),
        "structure" if shape.get("document").is_some() => "serde_json::Value".into(),
        "structure" => name.to_string(),
        other => bail!("shape {name} has unsupported type {other}"),
    })
}

/// Structures that can reach themselves need a `Box` on the way round.
fn reaches(
    shapes: &Map<String, Value>,
    from: &str,
    target: &str,
    seen: &mut BTreeSet<String>,
) -> bool {
    if !seen.insert(from.to_string()) {
        return false;
    }
    let shape = &shapes[from];
    let mut next = Vec::new();
    for key in ["member", "key", "value"] {
        if let Some(s) = shape[key]["shape"].as_str() {
            next.push(s);
        }
    }
    for m in shape["members"].as_object().into_iter().flatten() {
        if let Some(s) = m.1["shape"].as_str() {
            next.push(s);
        }
    }
    next.into_iter()
        .any(|n| n == target || reaches(shapes, n, target, seen))
}

fn rust(module: &str, model: &Value) -> Result<String> {
    let shapes = model["shapes"].as_object().context("no shapes")?;
    let mut out = String::new();
    writeln!(
        out,
        "//! Wire shapes of the `{module}` service, generated by `cargo run -p xtask -- codegen`"
    )?;
    writeln!(
        out,
        "//! from botocore's model. Do not edit by hand: change the generator instead."
    )?;
    writeln!(out)?;
    writeln!(out, "#![allow(clippy::all)]")?;
    writeln!(out, "use serde::{{Deserialize, Serialize}};")?;
    let sorted: BTreeMap<&String, &Value> = shapes.iter().collect();
    for (name, shape) in sorted {
        if shape["type"] != "structure" || shape.get("document").is_some() {
            continue;
        }
        writeln!(out)?;
        writeln!(
            out,
            "#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]"
        )?;
        writeln!(out, "pub struct {name} {{")?;
        for (member, spec) in shape["members"].as_object().into_iter().flatten() {
            let target = spec["shape"].as_str().unwrap_or_default();
            let mut ty = rust_type(shapes, target)?;
            if shapes[target]["type"] == "structure"
                && reaches(shapes, target, name, &mut BTreeSet::new())
            {
                ty = format!("Box<{ty}>");
            }
            writeln!(
                out,
                "    #[serde(rename = \"{member}\", default, skip_serializing_if = \"Option::is_none\")]"
            )?;
            writeln!(out, "    pub {}: Option<{ty}>,", snake(member))?;
        }
        writeln!(out, "}}")?;
    }
    Ok(out)
}
