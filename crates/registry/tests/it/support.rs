//! Test helpers: a registry on an in-memory store and object store, and a one-call HTTP driver.

use axum::Router;
use axum::body::Body;
use berth_registry::digest::{Algorithm, Digest};
use berth_registry::{Access, Registry, RegistryOptions};
use berth_store::SqliteStore;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use std::sync::Arc;
use tower::ServiceExt;

pub const PARTITION: &str = "000000000000/us-east-1";

pub struct Harness {
    pub registry: Registry,
    pub store: berth_store::AnyStore,
    pub router: Router,
    pub blobs: Arc<dyn ObjectStore>,
}

pub fn harness() -> Harness {
    harness_with(Access::Open, |_| {})
}

pub fn harness_with(access: Access, tweak: impl FnOnce(&mut RegistryOptions)) -> Harness {
    let store: berth_store::AnyStore = SqliteStore::open_in_memory()
        .expect("in-memory store")
        .into();
    let blobs: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut options = RegistryOptions {
        create_on_push: true,
        ..RegistryOptions::default()
    };
    tweak(&mut options);
    let registry = Registry::new(
        store.clone(),
        blobs.clone(),
        PARTITION.into(),
        access,
        options,
    );
    Harness {
        store,
        router: registry.router(),
        registry,
        blobs,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first error code of an OCI error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl Harness {
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(body.into()).expect("request")).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }

    /// Monolithic push of a blob; asserts 201 and returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[("content-type", "application/octet-stream")],
                Bytes::copy_from_slice(data),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        digest
    }

    /// Pushes a manifest; returns the reply.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Reply {
        self.call(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            Bytes::copy_from_slice(body),
        )
        .await
    }

    /// Pushes a config and one layer, then an OCI image manifest tagged `tag`; returns
    /// (manifest digest, manifest bytes, layer digest).
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
    ) -> (String, Vec<u8>, String) {
        let config = self.push_blob(repo, b"{\"architecture\":\"amd64\"}").await;
        let layer_digest = self.push_blob(repo, layer).await;
        let manifest = image_manifest(&config, 24, &[(&layer_digest, layer.len())], None, None);
        let r = self
            .put_manifest(repo, tag, berth_registry::manifest::OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        (
            r.header("docker-content-digest").to_owned(),
            manifest,
            layer_digest,
        )
    }
}

pub fn sha256(data: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, data).to_string()
}

/// An OCI image manifest as bytes.
pub fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    subject: Option<(&str, usize)>,
    artifact_type: Option<&str>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": berth_registry::manifest::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_size,
        },
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": s,
        })).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = serde_json::json!({
            "mediaType": berth_registry::manifest::OCI_MANIFEST,
            "digest": d,
            "size": s,
        });
    }
    if let Some(t) = artifact_type {
        m["artifactType"] = t.into();
        m["annotations"] = serde_json::json!({ "org.example.kind": t });
    }
    serde_json::to_vec(&m).expect("json")
}
