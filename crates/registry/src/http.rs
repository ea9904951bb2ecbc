//! The `/v2/` HTTP surface: authentication, path parsing, and one handler per endpoint. Each
//! handler parses the request into typed values, reads and commits through the store, and moves
//! bytes through the object store; every failure is a [`RegistryError`] rendered by
//! [`error_response`].

use crate::cache::{CachedManifest, Ticket};
use crate::digest::{Algorithm, Digest};
use crate::error::{RegistryError, error_response, range_header};
use crate::manifest::{self, MAX_MANIFEST_BYTES};
use crate::path::{self, Reference, Route};
use crate::records::{self, BlobLinkRecord, ManifestRecord, TagRecord};
use crate::uploads::{self, AppendError, SessionHandle};
use crate::{Access, Registry};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use berth_store::{Expect, Op, Store, get_as, retry_on_conflict};
use futures_util::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tracing::Instrument;

/// Largest page a list endpoint returns when the client asks for more (or for everything).
const MAX_PAGE: usize = 10_000;

pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .with_state(registry)
        // Blob bodies are streamed to object storage; manifests are bounded in `put_manifest`.
        .layer(DefaultBodyLimit::disable())
}

async fn dispatch(State(registry): State<Registry>, req: Request) -> Response {
    let span = tracing::info_span!("registry", method = %req.method(), path = %req.uri().path());
    // Kept only for a 401's challenge: most requests do not need a copy of it.
    let host = req.headers().get("host").cloned();
    let mut response = match handle(&registry, req).instrument(span).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    let unauthorized = response.status() == StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    if unauthorized {
        let host = host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("berth");
        // ECR's challenge; docker then retries with the credentials from `docker login`.
        let challenge = format!(r#"Basic realm="https://{host}/",service="ecr.amazonaws.com""#);
        let value = HeaderValue::from_str(&challenge)
            .unwrap_or_else(|_| HeaderValue::from_static(r#"Basic realm="berth""#));
        headers.insert("www-authenticate", value);
    }
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn handle(registry: &Registry, req: Request) -> Result<Response, RegistryError> {
    let authorized = authorize(&registry.inner.access, req.headers());
    let raw = req.uri().path();
    let route = raw
        .strip_prefix("/v2")
        .map(|r| r.strip_prefix('/').unwrap_or(r))
        .ok_or(RegistryError::NotFound)
        .and_then(|rest| {
            percent_encoding::percent_decode_str(rest)
                .decode_utf8()
                .map_err(|_| RegistryError::NotFound)
        })
        .and_then(|rest| Ok(path::parse(&rest)?));
    let query = query_map(req.uri().query());
    // Without credentials, only a presigned blob URL (ECR's GetDownloadUrlForLayer) gets in;
    // an unauthenticated client learns nothing else, not even whether its path parses.
    if let Err(e) = authorized {
        let presigned = matches!(*req.method(), Method::GET | Method::HEAD)
            && matches!(&route, Ok(Route::Blob { name, digest })
                if registry.presigned_ok(name, digest, &query));
        if !presigned {
            return Err(e);
        }
    }
    let route = route?;
    let method = req.method().clone();
    match (method, route) {
        (Method::GET | Method::HEAD, Route::Base) => Ok(json_response(StatusCode::OK, "{}".into())),
        (Method::GET, Route::Catalog) => catalog(registry, &query).await,
        (Method::GET, Route::Manifest { name, reference }) => {
            get_manifest(registry, &name, &reference, false).await
        }
        (Method::HEAD, Route::Manifest { name, reference }) => {
            get_manifest(registry, &name, &reference, true).await
        }
        (Method::PUT, Route::Manifest { name, reference }) => {
            put_manifest(registry, &name, &reference, req).await
        }
        (Method::DELETE, Route::Manifest { name, reference }) => {
            delete_manifest(registry, &name, &reference).await
        }
        (Method::GET, Route::Blob { name, digest }) => {
            get_blob(registry, &name, &digest, req.headers(), false).await
        }
        (Method::HEAD, Route::Blob { name, digest }) => {
            get_blob(registry, &name, &digest, req.headers(), true).await
        }
        (Method::DELETE, Route::Blob { name, digest }) => {
            delete_blob(registry, &name, &digest).await
        }
        (Method::POST, Route::UploadStart { name }) => {
            start_upload(registry, &name, &query, req).await
        }
        (Method::GET, Route::Upload { name, id }) => upload_status(registry, &name, &id).await,
        (Method::PATCH, Route::Upload { name, id }) => {
            patch_upload(registry, &name, &id, req).await
        }
        (Method::PUT, Route::Upload { name, id }) => {
            put_upload(registry, &name, &id, &query, req).await
        }
        (Method::DELETE, Route::Upload { name, id }) => cancel_upload(registry, &name, &id).await,
        (Method::GET, Route::TagsList { name }) => tags_list(registry, &name, &query).await,
        (Method::GET, Route::Referrers { name, digest }) => {
            referrers(registry, &name, &digest, &query).await
        }
        (method, _) => Err(RegistryError::Unsupported(format!(
            "{method} is not supported on this endpoint"
        ))),
    }
}

fn authorize(access: &Access, headers: &HeaderMap) -> Result<(), RegistryError> {
    let verify = match access {
        Access::Open => return Ok(()),
        Access::Basic(verify) => verify,
    };
    let credentials = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    match credentials.as_deref().and_then(|c| c.split_once(':')) {
        Some((user, password)) if verify(user, password) => Ok(()),
        _ => Err(RegistryError::Unauthorized),
    }
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// An empty-bodied response with the given headers (values that are not valid header text are
/// skipped; every value here is built from validated names, digests and numbers).
fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut r = status.into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut().insert(*name, v);
        }
    }
    r
}

fn blob_location(name: &str, digest: &Digest) -> String {
    format!("/v2/{name}/blobs/{digest}")
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

impl Registry {
    pub(crate) fn part(&self) -> &str {
        &self.inner.partition
    }

    pub(crate) async fn require_repo(&self, name: &str) -> Result<(), RegistryError> {
        if self.repository_exists(name).await? {
            Ok(())
        } else {
            Err(RegistryError::NameUnknown(name.to_owned()))
        }
    }

    /// A push needs the repository: it exists, or `create_on_push` creates it.
    async fn repo_for_push(&self, name: &str) -> Result<(), RegistryError> {
        if self.repository_exists(name).await? {
            return Ok(());
        }
        if !self.inner.options.create_on_push {
            return Err(RegistryError::NameUnknown(name.to_owned()));
        }
        self.create_repository(name).await.map(|_| ())
    }

    pub(crate) async fn link(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<Option<(BlobLinkRecord, u64)>, RegistryError> {
        Ok(get_as(
            &self.inner.store,
            records::BLOB_LINK,
            self.part(),
            &records::key(name, &digest.to_string()),
        )
        .await?)
    }

    /// Links a blob into a repository. Always a write (never a no-op), so the link's version
    /// moves and a garbage collection that read the old version cannot delete it.
    async fn add_link(&self, name: &str, digest: &Digest, size: u64) -> Result<(), RegistryError> {
        let value = serde_json::to_value(BlobLinkRecord {
            size,
            linked_at_ms: self.now(),
        })
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.inner
            .store
            .commit(vec![Op::put(
                records::BLOB_LINK,
                self.part(),
                records::key(name, &digest.to_string()),
                value,
                Expect::Any,
            )])
            .await?;
        Ok(())
    }

    /// Every record of `kind` under `prefix`, page by page.
    pub(crate) async fn list_all(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<berth_store::Record>, RegistryError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .inner
                .store
                .list(kind, self.part(), prefix, after.as_deref(), 1000)
                .await?;
            let done = page.len() < 1000;
            after = page.last().map(|r| r.key.clone());
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// The digest a tag names, from the cache or the store (offered to the cache under `ticket`).
async fn resolve(
    registry: &Registry,
    name: &str,
    tag: &str,
    ticket: Ticket,
) -> Result<Arc<str>, RegistryError> {
    let key = records::key(name, tag);
    if let Some(digest) = registry.inner.cache.tag(&key) {
        return Ok(digest);
    }
    let found: Option<(TagRecord, u64)> =
        get_as(&registry.inner.store, records::TAG, registry.part(), &key).await?;
    match found {
        Some((t, _)) => {
            let digest: Arc<str> = t.digest.into();
            registry.inner.cache.offer_tag(ticket, key, digest.clone());
            Ok(digest)
        }
        None => {
            // An unknown repository is NAME_UNKNOWN, an unknown tag MANIFEST_UNKNOWN.
            registry.require_repo(name).await?;
            Err(RegistryError::ManifestUnknown(String::new()))
        }
    }
}

/// A manifest of `name` by digest, from the cache or the store (offered under `ticket`).
async fn manifest_by_digest(
    registry: &Registry,
    name: &str,
    digest: &str,
    ticket: Ticket,
) -> Result<Arc<CachedManifest>, RegistryError> {
    let key = records::key(name, digest);
    if let Some(m) = registry.inner.cache.manifest(&key) {
        return Ok(m);
    }
    let found: Option<(ManifestRecord, u64)> = get_as(
        &registry.inner.store,
        records::MANIFEST,
        registry.part(),
        &key,
    )
    .await?;
    let Some((m, _)) = found else {
        registry.require_repo(name).await?;
        return Err(RegistryError::ManifestUnknown(digest.to_owned()));
    };
    let m = CachedManifest::of(digest, m)
        .map(Arc::new)
        .ok_or_else(|| RegistryError::Internal("a stored manifest has unusable headers".into()))?;
    registry.inner.cache.offer_manifest(ticket, key, m.clone());
    Ok(m)
}

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`. The stored bytes and media type are served as
/// pushed, whatever `Accept` says: like ECR and the CNCF registry for schema2/OCI content, berth
/// converts nothing, and clients check the media type they get. Served from the manifest cache
/// when it holds the tag and manifest (no store read), else from the store.
async fn get_manifest(
    registry: &Registry,
    name: &str,
    reference: &Reference,
    head: bool,
) -> Result<Response, RegistryError> {
    // Taken before any read, so nothing read here is cached past a write that overtook it.
    let ticket = registry.inner.cache.ticket();
    let m = match reference {
        Reference::Digest(d) => manifest_by_digest(registry, name, &d.to_string(), ticket).await?,
        Reference::Tag(tag) => {
            let digest = resolve(registry, name, tag, ticket).await?;
            manifest_by_digest(registry, name, &digest, ticket).await?
        }
    };
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(m.body.clone()))
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, m.content_type.clone());
    headers.insert("docker-content-digest", m.docker_content_digest.clone());
    headers.insert(CONTENT_LENGTH, m.content_length.clone());
    headers.insert(ETAG, m.etag.clone());
    Ok(response)
}

/// Reads at most `limit` bytes of a body; more is `MANIFEST_INVALID` (413).
async fn read_bounded(body: Body, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let bytes = frame.map_err(|_| {
            RegistryError::ManifestInvalid(manifest::ManifestError::Invalid(
                "the request body could not be read".into(),
            ))
        })?;
        if out.len() + bytes.len() > limit {
            return Err(manifest::ManifestError::TooLarge.into());
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

async fn put_manifest(
    registry: &Registry,
    name: &str,
    reference: &Reference,
    req: Request,
) -> Result<Response, RegistryError> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(manifest::ManifestError::TooLarge.into());
    }
    let bytes = read_bounded(body, MAX_MANIFEST_BYTES).await?;
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let (tag, expected) = match reference {
        Reference::Tag(t) => (Some(t.as_str()), None),
        Reference::Digest(d) => (None, Some(d)),
    };
    let stored = store_manifest(registry, name, tag, expected, bytes, content_type).await?;
    let mut headers = vec![
        (
            "location",
            format!("/v2/{name}/manifests/{}", stored.digest),
        ),
        ("docker-content-digest", stored.digest.to_string()),
    ];
    if let Some(subject) = &stored.subject {
        headers.push(("oci-subject", subject.clone()));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

/// What [`store_manifest`] did.
pub(crate) struct Stored {
    pub digest: Digest,
    pub media_type: String,
    pub subject: Option<String>,
    /// The manifest was already in the repository before this push.
    pub existed: bool,
    /// The digest the tag named before this push, if it was set.
    pub previous_tag_digest: Option<String>,
}

/// Validates a manifest and makes it visible in `name`, with `tag` when given, in one commit:
/// the one path for both `PUT /v2/<name>/manifests/<ref>` and the ECR API's PutImage.
/// `expected` is the digest the client named (checked against the bytes). Moving a tag the
/// repository's [`crate::TagPolicy`] makes immutable is `TAG_INVALID`, decided inside the
/// transaction so two racing pushes cannot both move it.
pub(crate) async fn store_manifest(
    registry: &Registry,
    name: &str,
    tag: Option<&str>,
    expected: Option<&Digest>,
    bytes: Vec<u8>,
    content_type: Option<&str>,
) -> Result<Stored, RegistryError> {
    if let Some(t) = tag
        && !path::valid_tag(t)
    {
        return Err(RegistryError::TagInvalid);
    }
    let parsed = manifest::parse(&bytes, content_type)?;
    let digest = match expected {
        Some(d) => {
            let computed = Digest::of(d.algorithm(), &bytes);
            if &computed != d {
                return Err(RegistryError::DigestMismatch {
                    expected: d.to_string(),
                    computed: computed.to_string(),
                });
            }
            computed
        }
        None => Digest::of(Algorithm::Sha256, &bytes),
    };
    let size = bytes.len() as u64;
    // `parse` accepted the bytes as JSON, which is UTF-8.
    let body = String::from_utf8(bytes)
        .map_err(|_| RegistryError::ManifestInvalid(manifest::ManifestError::NotJson))?;
    registry.repo_for_push(name).await?;

    // Required blobs, deduplicated (a layer may repeat).
    let blobs: BTreeMap<String, ()> = parsed
        .required_blobs()
        .map(|d| (d.digest.to_string(), ()))
        .collect();
    let children: Vec<String> = parsed
        .manifests
        .iter()
        .map(|d| d.digest.to_string())
        .collect();
    let digest_s = digest.to_string();
    let store = &registry.inner.store;
    let part = registry.part().to_owned();
    let now = registry.now();

    // Dropped after the commit (or on failure): cached pulls of this repository re-read.
    let _forget = registry.inner.cache.forget_on_drop(name);
    let (existed, previous_tag_digest) = retry_on_conflict(store, || async {
        let mut ops = Vec::new();
        let mut missing = Vec::new();
        for blob in blobs.keys() {
            let key = records::key(name, blob);
            match get_as::<BlobLinkRecord, _>(store, records::BLOB_LINK, &part, &key).await? {
                // Rewriting the link (same size, fresh time) moves its version: a concurrent
                // garbage collection holding the old version can no longer delete it, and if it
                // already did, this commit conflicts and the retry reports the blob missing.
                Some((link, version)) => ops.push(Op::put(
                    records::BLOB_LINK,
                    &part,
                    key,
                    to_value(&BlobLinkRecord {
                        size: link.size,
                        linked_at_ms: now,
                    })?,
                    Expect::Version(version),
                )),
                None => missing.push(blob.clone()),
            }
        }
        for child in &children {
            let key = records::key(name, child);
            match store.get(records::MANIFEST, &part, &key).await? {
                Some(r) => ops.push(Op::put(
                    records::MANIFEST,
                    &part,
                    key,
                    r.value,
                    Expect::Version(r.version),
                )),
                None => missing.push(child.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(RegistryError::ManifestBlobUnknown(missing));
        }
        let key = records::key(name, &digest_s);
        let existing: Option<(ManifestRecord, u64)> =
            get_as(store, records::MANIFEST, &part, &key).await?;
        let (pushed_at_ms, expect) = match &existing {
            Some((m, v)) => (m.pushed_at_ms, Expect::Version(*v)),
            None => (now, Expect::Absent),
        };
        let record = ManifestRecord {
            media_type: parsed.media_type.clone(),
            size,
            body: body.clone(),
            blobs: blobs.keys().cloned().collect(),
            manifests: children.clone(),
            subject: parsed.subject.as_ref().map(|s| s.digest.to_string()),
            artifact_type: parsed.effective_artifact_type(),
            pushed_at_ms,
        };
        ops.push(Op::put(
            records::MANIFEST,
            &part,
            key,
            to_value(&record)?,
            expect,
        ));
        if let Some(subject) = &parsed.subject {
            let mut descriptor = serde_json::json!({
                "mediaType": parsed.media_type,
                "digest": digest_s,
                "size": size,
            });
            if let Some(t) = parsed.effective_artifact_type() {
                descriptor["artifactType"] = t.into();
            }
            if let Some(a) = &parsed.annotations {
                descriptor["annotations"] = serde_json::Value::Object(a.clone());
            }
            ops.push(Op::put(
                records::REFERRER,
                &part,
                records::referrer_key(name, &subject.digest.to_string(), &digest_s),
                descriptor,
                Expect::Any,
            ));
        }
        let mut previous = None;
        if let Some(tag) = tag {
            let key = records::key(name, tag);
            let current: Option<(TagRecord, u64)> =
                get_as(store, records::TAG, &part, &key).await?;
            let expect = match &current {
                Some((t, v)) => {
                    if t.digest != digest_s {
                        let policy = registry.tag_policy(name).await?;
                        if policy.is_immutable(tag) {
                            return Err(RegistryError::TagImmutable {
                                tag: tag.to_owned(),
                                repository: name.to_owned(),
                            });
                        }
                    }
                    previous = Some(t.digest.clone());
                    Expect::Version(*v)
                }
                None => Expect::Absent,
            };
            ops.push(Op::put(
                records::TAG,
                &part,
                key,
                to_value(&TagRecord {
                    digest: digest_s.clone(),
                    updated_at_ms: now,
                })?,
                expect,
            ));
        }
        Ok((ops, (existing.is_some(), previous)))
    })
    .await?;
    Ok(Stored {
        digest,
        media_type: parsed.media_type.clone(),
        subject: parsed.subject.as_ref().map(|s| s.digest.to_string()),
        existed,
        previous_tag_digest,
    })
}

pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, RegistryError> {
    serde_json::to_value(v).map_err(|e| RegistryError::Internal(e.to_string()))
}

/// `DELETE /v2/<name>/manifests/<reference>`: by tag, removes only the tag (spec 1.1); by
/// digest, removes the manifest, every tag naming it and its referrers entry.
async fn delete_manifest(
    registry: &Registry,
    name: &str,
    reference: &Reference,
) -> Result<Response, RegistryError> {
    let store = &registry.inner.store;
    let part = registry.part().to_owned();
    match reference {
        Reference::Tag(tag) => {
            let key = records::key(name, tag);
            let _forget = registry.inner.cache.forget_on_drop(name);
            retry_on_conflict(store, || async {
                match store.get(records::TAG, &part, &key).await? {
                    Some(r) => Ok((
                        vec![Op::delete(
                            records::TAG,
                            &part,
                            &key,
                            Expect::Version(r.version),
                        )],
                        (),
                    )),
                    None => {
                        registry.require_repo(name).await?;
                        Err(RegistryError::ManifestUnknown(String::new()))
                    }
                }
            })
            .await?;
        }
        Reference::Digest(d) => {
            let digest = d.to_string();
            if registry.delete_image(name, &digest).await?.is_none() {
                registry.require_repo(name).await?;
                return Err(RegistryError::ManifestUnknown(digest));
            }
        }
    }
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

/// Parses `n` (page size; absent means everything up to [`MAX_PAGE`]) and `last`.
fn page_params(query: &HashMap<String, String>) -> Result<(usize, Option<&str>), RegistryError> {
    let n = match query.get("n") {
        None => MAX_PAGE,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| {
                RegistryError::InvalidParameter("n must be a non-negative integer".into())
            })?
            .min(MAX_PAGE),
    };
    Ok((n, query.get("last").map(String::as_str)))
}

/// One page of keys under `prefix` (with the prefix removed), after `last`; and whether more
/// follow.
async fn key_page(
    registry: &Registry,
    kind: &str,
    prefix: &str,
    n: usize,
    last: Option<&str>,
) -> Result<(Vec<String>, bool), RegistryError> {
    if n == 0 {
        return Ok((Vec::new(), false));
    }
    let after = last.map(|l| format!("{prefix}{l}"));
    let records = registry
        .inner
        .store
        .list(kind, registry.part(), prefix, after.as_deref(), n + 1)
        .await?;
    let more = records.len() > n;
    let keys = records
        .into_iter()
        .take(n)
        .map(|r| r.key[prefix.len()..].to_owned())
        .collect();
    Ok((keys, more))
}

fn link_header(path: &str, n: usize, last: &str) -> String {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    format!("<{path}?n={n}&last={last}>; rel=\"next\"")
}

async fn tags_list(
    registry: &Registry,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response, RegistryError> {
    registry.require_repo(name).await?;
    let (n, last) = page_params(query)?;
    let (tags, more) = key_page(registry, records::TAG, &records::prefix(name), n, last).await?;
    let body = serde_json::json!({ "name": name, "tags": tags }).to_string();
    let mut response = json_response(StatusCode::OK, body);
    if more && let Some(last) = tags.last() {
        let link = link_header(&format!("/v2/{name}/tags/list"), n, last);
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert("link", v);
        }
    }
    Ok(response)
}

async fn catalog(
    registry: &Registry,
    query: &HashMap<String, String>,
) -> Result<Response, RegistryError> {
    let (n, last) = page_params(query)?;
    let (repos, more) = key_page(registry, records::REPOSITORY, "", n, last).await?;
    let body = serde_json::json!({ "repositories": repos }).to_string();
    let mut response = json_response(StatusCode::OK, body);
    if more
        && let Some(last) = repos.last()
        && let Ok(v) = HeaderValue::from_str(&link_header("/v2/_catalog", n, last))
    {
        response.headers_mut().insert("link", v);
    }
    Ok(response)
}

/// `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose `subject` is
/// `digest`, optionally filtered by `artifactType`.
async fn referrers(
    registry: &Registry,
    name: &str,
    digest: &Digest,
    query: &HashMap<String, String>,
) -> Result<Response, RegistryError> {
    registry.require_repo(name).await?;
    let prefix = format!("{}{}|", records::prefix(name), digest);
    // Media types have no spaces (RFC 6838) but often a `+`, which some clients (the Rust
    // oci-client) leave unescaped and form decoding reads as a space: read it as the `+` it was.
    let filter = query
        .get("artifactType")
        .filter(|t| !t.is_empty())
        .map(|t| t.replace(' ', "+"));
    let manifests: Vec<serde_json::Value> = registry
        .list_all(records::REFERRER, &prefix)
        .await?
        .into_iter()
        .map(|r| r.value)
        .filter(|d| {
            filter
                .as_deref()
                .is_none_or(|t| d.get("artifactType").and_then(|v| v.as_str()) == Some(t))
        })
        .collect();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": manifests,
    })
    .to_string();
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(manifest::OCI_INDEX),
    );
    if filter.is_some() {
        headers.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Blobs

/// A single `bytes=` range resolved against `size`: `Ok(None)` to serve the whole blob (no
/// header, or one berth does not interpret, which RFC 9110 lets a server ignore), `Err` when it
/// lies outside the blob.
fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = RegistryError::RangeNotSatisfiable { size };
    let (first, last) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let Ok(n) = suffix.parse::<u64>() else {
                return Ok(None);
            };
            if n == 0 || size == 0 {
                return Err(unsatisfiable);
            }
            (size.saturating_sub(n), size - 1)
        }
        (start, end) => {
            let Ok(first) = start.parse::<u64>() else {
                return Ok(None);
            };
            let last = if end.is_empty() {
                size.saturating_sub(1)
            } else {
                match end.parse::<u64>() {
                    Ok(l) if l >= first => l.min(size.saturating_sub(1)),
                    _ => return Ok(None),
                }
            };
            if first >= size {
                return Err(unsatisfiable);
            }
            (first, last)
        }
    };
    Ok(Some((first, last)))
}

async fn get_blob(
    registry: &Registry,
    name: &str,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, RegistryError> {
    let Some((link, _)) = registry.link(name, digest).await? else {
        registry.require_repo(name).await?;
        return Err(RegistryError::BlobUnknown(digest.to_string()));
    };
    let digest_s = digest.to_string();
    let mut out = vec![
        ("docker-content-digest", digest_s.clone()),
        ("content-type", "application/octet-stream".to_owned()),
        ("accept-ranges", "bytes".to_owned()),
        ("etag", format!("\"{digest_s}\"")),
    ];
    if head {
        out.push(("content-length", link.size.to_string()));
        return Ok(empty(StatusCode::OK, &out));
    }
    let range = parse_range(
        headers.get("range").and_then(|v| v.to_str().ok()),
        link.size,
    )?;
    let options = GetOptions {
        range: range.map(|(a, b)| GetRange::Bounded(a..b + 1)),
        ..Default::default()
    };
    let result = match registry
        .inner
        .blobs
        .get_opts(&uploads::blob_path(digest), options)
        .await
    {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(RegistryError::BlobUnknown(digest_s));
        }
        Err(e) => return Err(e.into()),
    };
    let size = result.meta.size;
    let served = result.range.clone();
    let status = match range {
        Some(_) => {
            out.push((
                "content-range",
                format!(
                    "bytes {}-{}/{size}",
                    served.start,
                    served.end.saturating_sub(1)
                ),
            ));
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    };
    out.push(("content-length", (served.end - served.start).to_string()));
    let mut response = Response::new(Body::from_stream(uploads::blob_body(result)));
    *response.status_mut() = status;
    for (k, v) in out {
        if let Ok(v) = HeaderValue::from_str(&v) {
            response.headers_mut().insert(k, v);
        }
    }
    Ok(response)
}

/// `DELETE /v2/<name>/blobs/<digest>`: unlinks the blob from the repository; garbage collection
/// frees the bytes once nothing links or references them.
async fn delete_blob(
    registry: &Registry,
    name: &str,
    digest: &Digest,
) -> Result<Response, RegistryError> {
    let store = &registry.inner.store;
    let part = registry.part().to_owned();
    let key = records::key(name, &digest.to_string());
    retry_on_conflict(store, || async {
        match store.get(records::BLOB_LINK, &part, &key).await? {
            Some(r) => Ok((
                vec![Op::delete(
                    records::BLOB_LINK,
                    &part,
                    &key,
                    Expect::Version(r.version),
                )],
                (),
            )),
            None => {
                registry.require_repo(name).await?;
                Err(RegistryError::BlobUnknown(digest.to_string()))
            }
        }
    })
    .await?;
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// `POST /v2/<name>/blobs/uploads/`: a cross-repository mount (`?mount=&from=`), a monolithic
/// upload (`?digest=`, body is the blob), or the start of a session.
async fn start_upload(
    registry: &Registry,
    name: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> Result<Response, RegistryError> {
    registry.repo_for_push(name).await?;
    if let Some(mount) = query.get("mount") {
        let digest = Digest::parse(mount)?;
        if let Some(from) = query.get("from").filter(|f| path::valid_name(f))
            && let Some(response) = try_mount(registry, name, from, &digest).await?
        {
            return Ok(response);
        }
        // Not mountable: the spec's fallback is an ordinary session (202).
    }
    if let Some(d) = query.get("digest") {
        let digest = Digest::parse(d)?;
        let (id, session) = registry
            .inner
            .uploads
            .start(
                &registry.inner.blobs,
                name,
                digest.algorithm(),
                registry.now(),
            )
            .await?;
        let mut guard = session.lock().await;
        append_body(registry, &id, &mut guard, req.into_body(), true).await?;
        return complete(registry, name, &id, &mut guard, &digest).await;
    }
    let (id, _) = registry
        .inner
        .uploads
        .start(
            &registry.inner.blobs,
            name,
            Algorithm::Sha256,
            registry.now(),
        )
        .await?;
    Ok(empty(
        StatusCode::ACCEPTED,
        &[
            ("location", upload_location(name, &id)),
            ("range", range_header(0)),
            ("docker-upload-uuid", id.clone()),
            ("content-length", "0".into()),
        ],
    ))
}

/// Links `digest` into `name` when `from` has it. `None` when it cannot be mounted.
async fn try_mount(
    registry: &Registry,
    name: &str,
    from: &str,
    digest: &Digest,
) -> Result<Option<Response>, RegistryError> {
    let Some((link, _)) = registry.link(from, digest).await? else {
        return Ok(None);
    };
    // Under the gate, garbage collection cannot delete the bytes between this check and the
    // new link's commit.
    let _gate = registry.inner.gate.read().await;
    match registry.inner.blobs.head(&uploads::blob_path(digest)).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    registry.add_link(name, digest, link.size).await?;
    Ok(Some(empty(
        StatusCode::CREATED,
        &[
            ("location", blob_location(name, digest)),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
    )))
}

/// Streams a request body into a session. A body that breaks off keeps what arrived (the
/// client resumes from the offset a status `GET` reports), unless `discard_on_break`, for
/// one-shot uploads that have no later request to resume them.
async fn append_body(
    registry: &Registry,
    id: &str,
    session: &mut uploads::Session,
    body: Body,
    discard_on_break: bool,
) -> Result<u64, RegistryError> {
    let uploads = &registry.inner.uploads;
    match uploads
        .append(id, session, body.into_data_stream(), registry.now())
        .await
    {
        Ok(n) => Ok(n),
        Err(AppendError::Body) => {
            if discard_on_break {
                uploads.abort(id, session).await;
            }
            Err(RegistryError::BlobUploadInvalid(
                "the request body broke off; query the upload for its offset and resume".into(),
            ))
        }
        Err(AppendError::Storage(e)) => Err(e),
    }
}

/// Verifies and publishes an upload, then links the blob into the repository. Returns the
/// blob's size. The one way an upload becomes a blob, for `/v2/` and the management API alike.
pub(crate) async fn publish(
    registry: &Registry,
    name: &str,
    id: &str,
    session: &mut uploads::Session,
    digest: &Digest,
) -> Result<u64, RegistryError> {
    // Held from the rename into `blobs/` to the link's commit, so garbage collection sees
    // either no blob or a linked one.
    let _gate = registry.inner.gate.read().await;
    let size = registry
        .inner
        .uploads
        .finish(&registry.inner.blobs, id, session, digest, None)
        .await?;
    registry.add_link(name, digest, size).await?;
    Ok(size)
}

/// [`publish`], answered with 201.
async fn complete(
    registry: &Registry,
    name: &str,
    id: &str,
    session: &mut uploads::Session,
    digest: &Digest,
) -> Result<Response, RegistryError> {
    publish(registry, name, id, session, digest).await?;
    Ok(empty(
        StatusCode::CREATED,
        &[
            ("location", blob_location(name, digest)),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
    ))
}

pub(crate) fn session_for(registry: &Registry, id: &str) -> Result<SessionHandle, RegistryError> {
    registry
        .inner
        .uploads
        .get(id)
        .ok_or(RegistryError::BlobUploadUnknown)
}

async fn upload_status(
    registry: &Registry,
    name: &str,
    id: &str,
) -> Result<Response, RegistryError> {
    let session = session_for(registry, id)?;
    let guard = session.lock().await;
    if guard.repo != name {
        return Err(RegistryError::BlobUploadUnknown);
    }
    Ok(empty(
        StatusCode::NO_CONTENT,
        &[
            ("location", upload_location(name, id)),
            ("range", range_header(guard.offset)),
            ("docker-upload-uuid", id.to_owned()),
        ],
    ))
}

/// `Content-Range: <start>-<end>` of a chunk (also accepting a `bytes ` / `bytes=` prefix and a
/// `/<total>` suffix, which some clients send).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split_once('/').map_or(v, |(r, _)| r);
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (b >= a).then_some((a, b))
}

/// Checks a chunk's `Content-Range` against the session: it must start at the current offset
/// (else 416 with the current `Range`). Returns the chunk length it announces, if any.
fn check_chunk(
    headers: &HeaderMap,
    name: &str,
    id: &str,
    offset: u64,
) -> Result<Option<u64>, RegistryError> {
    let Some(raw) = headers.get("content-range") else {
        return Ok(None);
    };
    let (start, end) = raw
        .to_str()
        .ok()
        .and_then(parse_content_range)
        .ok_or_else(|| RegistryError::BlobUploadInvalid("malformed Content-Range".into()))?;
    if start != offset {
        return Err(RegistryError::RangeInvalid {
            location: upload_location(name, id),
            offset,
        });
    }
    let len = end - start + 1;
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|d| d != len) {
        return Err(RegistryError::BlobUploadInvalid(
            "Content-Range and Content-Length disagree".into(),
        ));
    }
    Ok(Some(len))
}

async fn patch_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    let session = session_for(registry, id)?;
    let mut guard = session.lock().await;
    if guard.repo != name {
        return Err(RegistryError::BlobUploadUnknown);
    }
    let (parts, body) = req.into_parts();
    let announced = check_chunk(&parts.headers, name, id, guard.offset)?;
    let appended = append_body(registry, id, &mut guard, body, false).await?;
    if announced.is_some_and(|n| n != appended) {
        return Err(RegistryError::SizeInvalid(format!(
            "Content-Range announced {} bytes, the body had {appended}; the upload is at {}",
            announced.unwrap_or_default(),
            guard.offset
        )));
    }
    Ok(empty(
        StatusCode::ACCEPTED,
        &[
            ("location", upload_location(name, id)),
            ("range", range_header(guard.offset)),
            ("docker-upload-uuid", id.to_owned()),
            ("content-length", "0".into()),
        ],
    ))
}

async fn put_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> Result<Response, RegistryError> {
    let digest = Digest::parse(query.get("digest").ok_or(RegistryError::DigestInvalid(
        crate::digest::DigestError::Syntax,
    ))?)?;
    let session = session_for(registry, id)?;
    let mut guard = session.lock().await;
    if guard.repo != name {
        return Err(RegistryError::BlobUploadUnknown);
    }
    let (parts, body) = req.into_parts();
    check_chunk(&parts.headers, name, id, guard.offset)?;
    append_body(registry, id, &mut guard, body, false).await?;
    complete(registry, name, id, &mut guard, &digest).await
}

async fn cancel_upload(
    registry: &Registry,
    name: &str,
    id: &str,
) -> Result<Response, RegistryError> {
    let session = session_for(registry, id)?;
    let mut guard = session.lock().await;
    if guard.repo != name {
        return Err(RegistryError::BlobUploadUnknown);
    }
    registry.inner.uploads.abort(id, &mut guard).await;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).ok(), Some(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10).ok(), Some(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10).ok(), Some(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10).ok(), Some(Some((7, 9))));
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10).ok(),
            Some(Some((8, 9)))
        );
        assert!(parse_range(Some("bytes=10-"), 10).is_err());
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10).ok(), Some(None));
        assert_eq!(parse_range(Some("items=0-1"), 10).ok(), Some(None));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("9-0"), None);
        assert_eq!(parse_content_range("x"), None);
    }
}
