//! berth's image registry: the OCI Distribution Specification v1.1 under `/v2/`, with blobs
//! content-addressed in object storage and metadata (repositories, manifests, tags, blob links,
//! referrers) in berth's store.
//!
//! **API Boundary:** the server mounts [`Registry::router`] and injects the store, the object
//! store, the partition (`<account>/<region>`) and how clients authenticate ([`Access`]). The ECR
//! JSON API drives the same [`Registry`] through the repository and image accessors of
//! `images.rs` ([`Registry::create_repository_with`], [`Registry::images`], …); nothing here
//! knows about SigV4 or awsJson.
//!
//! **Architecture Invariant:** a blob is visible under `blobs/` only once complete and verified;
//! a manifest is visible only once every blob and child manifest it names is in its repository,
//! and it becomes visible together with its tag, in one store commit.

mod cache;
pub mod digest;
mod error;
mod gc;
mod http;
mod images;
mod layers;
pub mod manifest;
pub mod path;
mod records;
mod staging;
mod uploads;

pub use error::{RegistryError, error_response};
pub use gc::GcReport;
pub use images::{ImageInfo, ManifestInfo, PutOutcome, RepositoryInfo, TagPolicy, wildcard_match};
pub use layers::{LayerInfo, UploadState};

pub use berth_model::clock::{Clock, system_clock};
use berth_store::{AnyStore, Expect, Op, Store};
use object_store::ObjectStore;
use std::sync::Arc;
use std::time::Duration;

/// Checks a user name and password from an HTTP Basic `Authorization` header.
pub type BasicVerifier = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// How `/v2/` clients authenticate.
#[derive(Clone)]
pub enum Access {
    /// Anonymous push and pull (`--auth open`, local CI).
    Open,
    /// HTTP Basic, as ECR does after `docker login`: every request needs credentials the
    /// verifier accepts, else 401 with a `WWW-Authenticate: Basic` challenge.
    Basic(BasicVerifier),
}

impl Access {
    /// Basic auth with one fixed user name and password, compared in constant time.
    pub fn fixed(user: impl Into<String>, password: impl Into<String>) -> Access {
        use subtle::ConstantTimeEq;
        let (user, password) = (user.into(), password.into());
        Access::Basic(Arc::new(move |u: &str, p: &str| {
            let user_ok = u.as_bytes().ct_eq(user.as_bytes());
            let password_ok = p.as_bytes().ct_eq(password.as_bytes());
            bool::from(user_ok & password_ok)
        }))
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Open => f.write_str("Open"),
            Access::Basic(_) => f.write_str("Basic(..)"),
        }
    }
}

#[derive(Clone)]
pub struct RegistryOptions {
    /// Push to a repository that does not exist creates it (ECR's "create on push"). Without
    /// it, a push to an unknown repository is `NAME_UNKNOWN`, as in ECR before that feature (the
    /// server leaves it off: repositories come from the ECR API's CreateRepository).
    pub create_on_push: bool,
    /// Garbage collection leaves alone any blob written or linked more recently than this, so a
    /// push that uploaded its layers but not yet its manifest never loses them.
    pub gc_grace: Duration,
    /// An upload session idle this long is abandoned by the next garbage collection.
    pub upload_idle_timeout: Duration,
    pub clock: Clock,
    /// The directory the blob store is a local file system over
    /// (`LocalFileSystem::new_with_prefix(dir)`), when it is one: uploads are then written
    /// straight into `<dir>/uploads/<id>` with positional (`O_DIRECT` where the file system
    /// takes it) writes instead of through object_store's multipart writer (fewer copies and
    /// tasks per byte). It must be that store's
    /// directory; `None` (the default) works with any store.
    pub local_dir: Option<std::path::PathBuf>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            create_on_push: false,
            gc_grace: Duration::from_secs(3600),
            upload_idle_timeout: Duration::from_secs(3600),
            clock: system_clock(),
            local_dir: None,
        }
    }
}

/// The registry. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    blobs: Arc<dyn ObjectStore>,
    partition: String,
    access: Access,
    options: RegistryOptions,
    uploads: uploads::Uploads,
    /// What manifest pulls read, kept in memory; every write of tags or manifests drops the
    /// repository's entries (see `cache.rs` for why that keeps it correct).
    cache: cache::ManifestCache,
    /// Serializes blob deletion by garbage collection (write) against upload completion and
    /// cross-repository mounts (read), which link a blob they found in object storage: see
    /// `gc.rs` for why this closes the race.
    gate: tokio::sync::RwLock<()>,
    /// Signs presigned blob URLs ([`Registry::presigned_blob_path`]). Random per process: a
    /// presigned URL is short-lived and a restart simply ends it.
    url_key: [u8; 32],
}

impl Registry {
    /// `partition` is the store partition the registry serves (`<account>/<region>`); `blobs` is
    /// the object store holding `blobs/` and `uploads/` (local files, S3, or memory in tests).
    pub fn new(
        store: AnyStore,
        blobs: Arc<dyn ObjectStore>,
        partition: String,
        access: Access,
        options: RegistryOptions,
    ) -> Self {
        Registry {
            inner: Arc::new(Inner {
                store,
                blobs,
                partition,
                access,
                uploads: uploads::Uploads::new(options.local_dir.clone()),
                options,
                cache: cache::ManifestCache::default(),
                gate: tokio::sync::RwLock::new(()),
                url_key: layers::random_key(),
            }),
        }
    }

    /// Routes `/v2/` and `/v2/{*rest}` (every method), with no body size limit: blob bodies are
    /// streamed, manifests are bounded by the handler.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Creates a repository with default settings (all tags mutable). Returns `false` when it
    /// already existed. The ECR API uses [`Registry::create_repository_with`].
    pub async fn create_repository(&self, name: &str) -> Result<bool, RegistryError> {
        if !path::valid_name(name) {
            return Err(RegistryError::NameInvalid(name.to_owned()));
        }
        let value = serde_json::to_value(records::RepositoryRecord {
            created_at_ms: self.now(),
            tag_policy: TagPolicy::default(),
            settings: serde_json::Value::Null,
        })
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
        let op = Op::put(
            records::REPOSITORY,
            &self.inner.partition,
            name,
            value,
            Expect::Absent,
        );
        match self.inner.store.commit(vec![op]).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a repository exists.
    pub async fn repository_exists(&self, name: &str) -> Result<bool, RegistryError> {
        Ok(self
            .inner
            .store
            .get(records::REPOSITORY, &self.inner.partition, name)
            .await?
            .is_some())
    }

    /// Forgets every cached tag and manifest: to be called after the store was reset behind
    /// the registry's back (`/_berth/reset`), since no write of the registry did it.
    pub fn forget_cached(&self) {
        self.inner.cache.forget_all();
    }

    /// Deletes blobs that no manifest references and that are past the grace period, their
    /// repository links, and the staged bytes of abandoned uploads. See `gc.rs`.
    pub async fn gc(&self) -> Result<GcReport, RegistryError> {
        gc::run(self).await
    }

    fn now(&self) -> i64 {
        (self.inner.options.clock)()
    }
}
