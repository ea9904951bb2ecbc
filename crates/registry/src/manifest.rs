//! Manifest validation: which of the four supported media types a pushed document is, and which
//! blobs, child manifests and subject it references. Pure: bytes in, a [`Manifest`] or a
//! [`ManifestError`] out; the registry decides what to do with the references.

use crate::digest::Digest;
use serde_json::{Map, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest accepted. The spec asks registries to accept at least 4 MiB; ECR's limit is
/// the same.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Whether a manifest lists blobs (image) or other manifests (index / manifest list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// A content descriptor as it appears in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
    /// Foreign layers name external URLs; their bytes need not be in the registry.
    pub urls: Vec<String>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
    /// The config descriptor of an image manifest.
    pub config: Option<Descriptor>,
    /// Layers of an image manifest.
    pub layers: Vec<Descriptor>,
    /// Children of an index or manifest list.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

impl Manifest {
    /// Blobs that must already be in the repository: the config and every layer that is not a
    /// foreign (URL-only) layer.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|d| d.urls.is_empty())
    }

    /// The artifact type a referrers listing shows for this manifest: its own `artifactType`,
    /// else, for an image manifest, the config's media type (spec, "Listing Referrers").
    pub fn effective_artifact_type(&self) -> Option<String> {
        match (&self.artifact_type, self.kind, &self.config) {
            (Some(t), _, _) if !t.is_empty() => Some(t.clone()),
            (_, Kind::Image, Some(config)) => Some(config.media_type.clone()),
            _ => None,
        }
    }
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest is not a JSON object")]
    NotJson,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("Content-Type {content_type:?} does not match the manifest's mediaType {media_type:?}")]
    MediaTypeMismatch {
        content_type: String,
        media_type: String,
    },
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

fn known(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST
    )
}

/// The media type without parameters (`; charset=...`), as the spec asks registries to ignore
/// them.
pub fn bare_media_type(content_type: &str) -> &str {
    content_type
        .split_once(';')
        .map_or(content_type, |(t, _)| t)
        .trim()
}

/// Validates a pushed manifest. The media type comes from the body's `mediaType` when present,
/// else from the request's `Content-Type`, else from the document's shape (OCI manifests may omit
/// `mediaType`).
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge);
    }
    let doc: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ManifestError::NotJson),
    };
    match doc.get("schemaVersion") {
        Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {
            return Err(ManifestError::UnsupportedMediaType(
                "application/vnd.docker.distribution.manifest.v1+json".into(),
            ));
        }
        _ => return Err(invalid("schemaVersion must be 2")),
    }
    let content_type = content_type.map(bare_media_type).filter(|t| !t.is_empty());
    let body_type = match doc.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType must be a string")),
    };
    let media_type = match (body_type, content_type) {
        (Some(b), Some(c)) if known(c) && b != c => {
            return Err(ManifestError::MediaTypeMismatch {
                content_type: c.to_owned(),
                media_type: b.to_owned(),
            });
        }
        (Some(b), _) => b.to_owned(),
        (None, Some(c)) if known(c) => c.to_owned(),
        (None, _) if doc.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, _) if doc.contains_key("config") => OCI_MANIFEST.to_owned(),
        (None, Some(c)) => return Err(ManifestError::UnsupportedMediaType(c.to_owned())),
        (None, None) => return Err(invalid("cannot tell the manifest's media type")),
    };
    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Image,
        OCI_INDEX | DOCKER_LIST => Kind::Index,
        other => return Err(ManifestError::UnsupportedMediaType(other.to_owned())),
    };
    let (config, layers, manifests) = match kind {
        Kind::Image => {
            let config = descriptor(
                doc.get("config")
                    .ok_or_else(|| invalid("config is required"))?,
                "config",
            )?;
            let layers = descriptors(doc.get("layers"), "layers")?;
            (Some(config), layers, Vec::new())
        }
        Kind::Index => {
            let manifests = descriptors(doc.get("manifests"), "manifests")?;
            (None, Vec::new(), manifests)
        }
    };
    let subject = doc
        .get("subject")
        .map(|s| descriptor(s, "subject"))
        .transpose()?;
    let artifact_type = match doc.get("artifactType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("artifactType must be a string")),
    };
    let annotations = annotations(doc.get("annotations"), "annotations")?;
    Ok(Manifest {
        media_type,
        kind,
        config,
        layers,
        manifests,
        subject,
        artifact_type,
        annotations,
    })
}

fn descriptors(v: Option<&Value>, field: &str) -> Result<Vec<Descriptor>, ManifestError> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, d)| descriptor(d, &format!("{field}[{i}]")))
            .collect(),
        Some(_) => Err(invalid(format!("{field} must be an array"))),
        None => Err(invalid(format!("{field} is required"))),
    }
}

fn descriptor(v: &Value, field: &str) -> Result<Descriptor, ManifestError> {
    let Value::Object(m) = v else {
        return Err(invalid(format!("{field} must be a descriptor object")));
    };
    let media_type = match m.get("mediaType") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(invalid(format!("{field}.mediaType is required"))),
    };
    let digest = match m.get("digest") {
        Some(Value::String(s)) => {
            Digest::parse(s).map_err(|e| invalid(format!("{field}.digest: {e}")))?
        }
        _ => return Err(invalid(format!("{field}.digest is required"))),
    };
    let size = match m.get("size") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| invalid(format!("{field}.size must be a non-negative integer")))?,
        _ => return Err(invalid(format!("{field}.size is required"))),
    };
    let artifact_type = match m.get("artifactType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid(format!("{field}.artifactType must be a string"))),
    };
    let urls = match m.get("urls") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|u| {
                u.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{field}.urls must be strings")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(format!("{field}.urls must be an array"))),
    };
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type,
        annotations: annotations(m.get("annotations"), &format!("{field}.annotations"))?,
        urls,
    })
}

fn annotations(
    v: Option<&Value>,
    field: &str,
) -> Result<Option<Map<String, Value>>, ManifestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(Some(m.clone())),
        Some(_) => Err(invalid(format!(
            "{field} must be an object of string values"
        ))),
    }
}
