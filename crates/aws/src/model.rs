//! A service model as botocore ships it, trimmed of documentation (see `xtask codegen`): the
//! operations with their input, output and error shapes, and every shape's constraints.

use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::OnceLock;

/// A service's model, either parsed at once ([`ServiceModel::parse`]) or on first use
/// ([`ServiceModel::lazy`]: a parsed model is 0.2–0.9 MiB of heap, and a server that is never
/// asked for a service should not hold it). It derefs to the parsed [`Model`].
pub struct ServiceModel {
    source: &'static str,
    parsed: OnceLock<Model>,
}

impl std::fmt::Debug for ServiceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parsed.get() {
            Some(model) => model.fmt(f),
            None => f.write_str("ServiceModel(not parsed yet)"),
        }
    }
}

impl ServiceModel {
    /// Parses a trimmed model now.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let model: Model = serde_json::from_str(text)?;
        Ok(ServiceModel {
            source: "",
            parsed: OnceLock::from(model),
        })
    }

    /// A model compiled into the binary, parsed the first time it is used. A model that does
    /// not parse is a build defect: every family's tests use their model, and so fail on it.
    pub const fn lazy(source: &'static str) -> Self {
        ServiceModel {
            source,
            parsed: OnceLock::new(),
        }
    }
}

impl Deref for ServiceModel {
    type Target = Model;

    fn deref(&self) -> &Model {
        self.parsed.get_or_init(|| {
            serde_json::from_str(self.source).expect("a model compiled into berth parses")
        })
    }
}

/// A parsed model: the operations and every shape by name.
#[derive(Debug, Deserialize)]
pub struct Model {
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
    /// Every protocol the service speaks (`["smithy-rpc-v2-cbor", "json", "query"]`); empty
    /// for models that name only `protocol`.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Present (as `{}`) on a former awsQuery service that now speaks awsJson or CBOR: its
    /// errors also carry their awsQuery code in `x-amzn-query-error`.
    #[serde(default)]
    pub aws_query_compatible: Option<serde_json::Value>,
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

impl Model {
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// Whether the model lists `protocol` (`"smithy-rpc-v2-cbor"`, `"json"`, `"query"`) among
    /// the ones it speaks.
    pub fn speaks(&self, protocol: &str) -> bool {
        self.metadata.protocol == protocol || self.metadata.protocols.iter().any(|p| p == protocol)
    }

    pub fn is_query_compatible(&self) -> bool {
        self.metadata.aws_query_compatible.is_some()
    }

    /// The two names of the error `code` a handler returned: the exception shape's name (what
    /// awsJson and CBOR carry in `__type`) and its awsQuery code (the `error.code` trait, what
    /// awsQuery writes and `x-amzn-query-error` carries). A handler may name either; a code
    /// the model does not declare keeps its name in both.
    pub fn error_names<'a>(&'a self, code: &'a str) -> ErrorNames<'a> {
        let query_code = |shape: &'a Shape| {
            shape
                .error
                .as_ref()
                .and_then(|e| e.code.as_deref())
                .unwrap_or(code)
        };
        if let Some(shape) = self.shapes.get(code).filter(|s| s.exception) {
            return ErrorNames {
                type_name: code,
                query_code: query_code(shape),
            };
        }
        // Several shapes may share a query code (CloudWatch's `ResourceNotFound`); the one
        // whose name sorts first is taken, so the answer does not depend on hash order.
        let by_code = self
            .shapes
            .iter()
            .filter(|(_, s)| {
                s.exception && s.error.as_ref().and_then(|e| e.code.as_deref()) == Some(code)
            })
            .map(|(name, _)| name.as_str())
            .min();
        ErrorNames {
            type_name: by_code.unwrap_or(code),
            query_code: code,
        }
    }
}

/// An error's names in each protocol, see [`Model::error_names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorNames<'a> {
    pub type_name: &'a str,
    pub query_code: &'a str,
}
