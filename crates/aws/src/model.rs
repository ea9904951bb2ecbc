//! A service model as botocore ships it, trimmed of documentation (see `xtask codegen`): the
//! operations with their input, output and error shapes, and every shape's constraints.

use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Deserialize)]
pub struct ServiceModel {
    pub metadata: Metadata,
    pub operations: HashMap<String, Operation>,
    pub shapes: HashMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub protocol: String,
    #[serde(default)]
    pub json_version: Option<String>,
    #[serde(default)]
    pub target_prefix: Option<String>,
    pub endpoint_prefix: String,
    #[serde(default)]
    pub signing_name: Option<String>,
    pub service_id: String,
    /// awsQuery: the API version clients send as `Version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// awsQuery: the namespace of every XML response.
    #[serde(default)]
    pub xml_namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Operation {
    pub name: String,
    #[serde(default)]
    pub input: Option<ShapeRef>,
    #[serde(default)]
    pub output: Option<ShapeRef>,
    #[serde(default)]
    pub errors: Vec<ShapeRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeRef {
    pub shape: String,
    /// awsQuery/XML: the name a member or list element travels under, when not its own.
    #[serde(default)]
    pub location_name: Option<String>,
    /// awsQuery: an operation's output is wrapped in `<{resultWrapper}>`.
    #[serde(default)]
    pub result_wrapper: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Shape {
    #[serde(rename = "type")]
    pub kind: ShapeKind,
    #[serde(default)]
    pub members: indexmap_lite::Members,
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default, rename = "enum")]
    pub enum_values: Option<Vec<String>>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub member: Option<ShapeRef>,
    #[serde(default)]
    pub key: Option<ShapeRef>,
    #[serde(default)]
    pub value: Option<ShapeRef>,
    #[serde(default)]
    pub exception: bool,
    #[serde(default)]
    pub document: bool,
    /// awsQuery/XML: a list or map written without its wrapper element.
    #[serde(default)]
    pub flattened: bool,
    /// An exception's wire code and status (`{"code": "DuplicateListener", …}`), when the
    /// protocol's code is not the shape name.
    #[serde(default)]
    pub error: Option<ErrorTrait>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTrait {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub http_status_code: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKind {
    Structure,
    List,
    Map,
    String,
    Integer,
    Long,
    Boolean,
    Double,
    Float,
    Timestamp,
    Blob,
}

/// Structure members keep the model's order, which is the order AWS lists them in.
pub mod indexmap_lite {
    use super::ShapeRef;
    use serde::Deserialize;

    #[derive(Debug, Default)]
    pub struct Members(pub Vec<(String, ShapeRef)>);

    impl Members {
        pub fn get(&self, name: &str) -> Option<&ShapeRef> {
            self.0.iter().find(|(n, _)| n == name).map(|(_, r)| r)
        }
        pub fn iter(&self) -> impl Iterator<Item = (&String, &ShapeRef)> {
            self.0.iter().map(|(n, r)| (n, r))
        }
    }

    impl<'de> Deserialize<'de> for Members {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            // serde_json's preserve_order feature keeps the model's member order in a Map.
            let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
            let mut out = Vec::with_capacity(map.len());
            for (name, v) in map {
                let r = ShapeRef::deserialize(v).map_err(serde::de::Error::custom)?;
                out.push((name, r));
            }
            Ok(Members(out))
        }
    }
}

impl ServiceModel {
    /// Parses a trimmed model. The models are compiled into the binary, so a failure here is a
    /// build defect, caught by every test that starts a server.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }
}
