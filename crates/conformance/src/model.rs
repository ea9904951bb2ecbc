//! botocore's files for one service — `service-2.json.gz`, `paginators-1.json`,
//! `waiters-2.json`, `examples-1.json` — read as JSON, with the look-ups the suite needs.
//!
//! The model stays a `serde_json::Value`: the suite walks shapes generically and must not lose
//! a trait (`min`, `pattern`, `enum`, …) to a typed mirror that forgot it.

use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One service's model and its companion files.
#[derive(Debug, Clone)]
pub struct Model {
    /// The directory name in botocore's data (`ecs`).
    pub service: String,
    pub service_json: Value,
    /// `{"pagination": {Op: {input_token, output_token, limit_key, result_key}}}`, or `{}`.
    pub paginators: Value,
    /// `{"version": 2, "waiters": {Name: {operation, acceptors, …}}}`, or `{}`.
    pub waiters: Value,
    /// `{"examples": {Op: [{input, output, …}]}}`, or `{}`.
    pub examples: Value,
}

/// botocore's `data` directory, found by asking the installed botocore where it lives.
pub fn botocore_data_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("BERTH_BOTOCORE_DATA") {
        return Ok(PathBuf::from(dir));
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import botocore,os;print(os.path.dirname(botocore.__file__))",
        ])
        .output()?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "python3 could not import botocore: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(dir).join("data"))
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", path.display())))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)?;
        Ok(serde_json::from_str(&text)?)
    } else {
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// Reads a companion file, `{}` when botocore has none for the service.
fn read_optional(dir: &Path, name: &str) -> Result<Value> {
    let path = dir.join(name);
    if path.exists() {
        read_json(&path)
    } else {
        Ok(Value::Object(Map::new()))
    }
}

impl Model {
    /// Loads `<data_dir>/<service>/<newest version>/…`.
    pub fn load(data_dir: &Path, service: &str) -> Result<Model> {
        let service_dir = data_dir.join(service);
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&service_dir)
            .map_err(|e| Error::Other(format!("cannot list {}: {e}", service_dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("service-2.json.gz").exists() || p.join("service-2.json").exists())
            .collect();
        // Version directories are dates (`2014-11-13`), so the lexically last is the newest.
        versions.sort();
        let dir = versions.pop().ok_or_else(|| {
            Error::Other(format!("no service model under {}", service_dir.display()))
        })?;
        let gz = dir.join("service-2.json.gz");
        let path = if gz.exists() {
            gz
        } else {
            dir.join("service-2.json")
        };
        let service_json = read_json(&path)?;
        Ok(Model {
            service: service.to_string(),
            service_json,
            paginators: read_optional(&dir, "paginators-1.json")?,
            waiters: read_optional(&dir, "waiters-2.json")?,
            examples: read_optional(&dir, "examples-1.json")?,
        })
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.service_json["metadata"][key].as_str()
    }

    /// The awsJson target prefix (`AmazonEC2ContainerServiceV20141113`).
    pub fn target_prefix(&self) -> &str {
        self.metadata("targetPrefix").unwrap_or_default()
    }

    /// The SigV4 signing name (`ecs`).
    pub fn signing_name(&self) -> &str {
        self.metadata("signingName")
            .or_else(|| self.metadata("endpointPrefix"))
            .unwrap_or_default()
    }

    /// `1.0` or `1.1`.
    pub fn json_version(&self) -> &str {
        self.metadata("jsonVersion").unwrap_or("1.0")
    }

    /// Every operation name, sorted.
    pub fn operations(&self) -> Vec<String> {
        let mut ops: Vec<String> = self.service_json["operations"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        ops.sort();
        ops
    }

    pub fn operation(&self, op: &str) -> Option<&Value> {
        self.service_json["operations"].get(op)
    }

    pub fn shape(&self, name: &str) -> Option<&Value> {
        self.service_json["shapes"].get(name)
    }

    pub fn input_shape(&self, op: &str) -> Option<&str> {
        self.operation(op)?["input"]["shape"].as_str()
    }

    pub fn output_shape(&self, op: &str) -> Option<&str> {
        self.operation(op)?["output"]["shape"].as_str()
    }

    /// The error codes `op` declares. A shape's code is its `error.code` when it has one (awsQuery
    /// services rename some), else its name.
    pub fn errors(&self, op: &str) -> Vec<String> {
        let Some(list) = self.operation(op).and_then(|o| o["errors"].as_array()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in list {
            let Some(name) = e["shape"].as_str() else {
                continue;
            };
            out.push(name.to_string());
            if let Some(code) = self.shape(name).and_then(|s| s["error"]["code"].as_str()) {
                out.push(code.to_string());
            }
        }
        out
    }

    /// The paginator of `op`, if the service has one.
    pub fn paginator(&self, op: &str) -> Option<&Value> {
        self.paginators["pagination"].get(op)
    }

    /// Operations with a paginator, sorted.
    pub fn paginated_operations(&self) -> Vec<String> {
        let mut ops: Vec<String> = self.paginators["pagination"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        ops.sort();
        ops
    }

    /// `(waiter name, operation)` for every waiter, sorted by name.
    pub fn waiters(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.waiters["waiters"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v["operation"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Whether waiter `name` has an acceptor that ends it in failure.
    pub fn waiter_has_failure_acceptor(&self, name: &str) -> bool {
        self.waiters["waiters"][name]["acceptors"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["state"] == "failure"))
    }

    /// The example inputs of `op` from `examples-1.json`.
    pub fn example_inputs(&self, op: &str) -> Vec<Value> {
        self.examples["examples"][op]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.get("input").cloned()).collect())
            .unwrap_or_default()
    }

    /// The operations a server implements: the model's operations minus the ones listed in an
    /// "unsupported" ledger (`Name: reason` lines, `#` comments), as berth keeps them.
    pub fn implemented(&self, unsupported_ledger: &str) -> Vec<String> {
        let unsupported: Vec<&str> = unsupported_ledger
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').next().unwrap_or(l).trim())
            .collect();
        self.operations()
            .into_iter()
            .filter(|op| !unsupported.contains(&op.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_subtracts_listed_operations() {
        let model = Model {
            service: "x".into(),
            service_json: serde_json::json!({"operations": {"A": {}, "B": {}, "C": {}}}),
            paginators: Value::Null,
            waiters: Value::Null,
            examples: Value::Null,
        };
        let ledger = "# comment\nB: not yet\n\n";
        assert_eq!(model.implemented(ledger), vec!["A", "C"]);
    }
}
