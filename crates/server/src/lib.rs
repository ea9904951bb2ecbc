//! Assembles berth's control plane: reads the configuration, opens the store, creates the root
//! identity, and serves every API on one HTTP endpoint until shutdown.
//!
//! **API Boundary:** the only crate that knows both HTTP (axum/hyper) and the API families. It
//! wires; it decides nothing about what an operation means.

mod aws_profile;
mod config;
mod http_api;
mod identity;

pub use config::{AuthMode, Config, Role};

use berth_store::{AnyStore, SqliteStore};
pub use error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Errors that stop berth from starting.
pub mod error {
    #[derive(Debug, thiserror::Error)]
    pub enum Error {
        #[error("cannot use data directory {path}: {source}")]
        DataDir {
            path: String,
            source: std::io::Error,
        },
        #[error("cannot open the store: {0}")]
        Store(#[from] berth_store::StoreError),
        #[error("cannot listen on {addr}: {source}")]
        Listen {
            addr: String,
            source: std::io::Error,
        },
        #[error("server error: {0}")]
        Serve(std::io::Error),
    }
}

/// The OCI registry, its object storage under `<data-dir>/registry` (`blobs/…` content-addressed,
/// `uploads/…` staged), serving the configured account and region.
///
/// Auth: `--auth open` lets anyone push and pull. Under SigV4, `/v2/` takes HTTP Basic with user
/// `AWS` and the root secret access key as password. That is a stopgap until the ECR API's
/// `GetAuthorizationToken` issues the 12-hour tokens `docker login` uses with ECR, which will
/// replace it. `create_on_push` is on until the ECR API can create repositories.
fn open_registry(
    config: &Config,
    identity: &identity::Identity,
    store: AnyStore,
) -> Result<berth_registry::Registry, Error> {
    let dir = config.data_dir.join("registry");
    let data_dir_error = |source: std::io::Error| Error::DataDir {
        path: dir.display().to_string(),
        source,
    };
    // Upload sessions live in memory, so none survives a restart: their staged bytes are
    // garbage. Clearing them here is safe because this process is the directory's only user.
    match std::fs::remove_dir_all(dir.join("uploads")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(data_dir_error(e)),
    }
    std::fs::create_dir_all(&dir).map_err(data_dir_error)?;
    let blobs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| data_dir_error(std::io::Error::other(e.to_string())))?;
    let access = match config.auth {
        AuthMode::Open => berth_registry::Access::Open,
        AuthMode::Sigv4 => {
            berth_registry::Access::fixed("AWS", identity.root.secret_access_key.clone())
        }
    };
    let options = berth_registry::RegistryOptions {
        create_on_push: true,
        ..berth_registry::RegistryOptions::default()
    };
    Ok(berth_registry::Registry::new(
        store,
        Arc::new(blobs),
        format!("{}/{}", config.account_id, config.region),
        access,
        options,
    ))
}

/// A started server: where it listens, and what a client needs to call it.
#[derive(Debug, Clone)]
pub struct Started {
    pub addr: SocketAddr,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Starts berth and serves until `shutdown` resolves. `on_ready` is called once the endpoint
/// accepts connections and every API is ready.
pub async fn run(
    config: Config,
    on_ready: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store: AnyStore = SqliteStore::open(&config.data_dir.join("berth.db"))?.into();
    let identity = identity::Identity::load_or_create(&config.data_dir, &config.account_id)
        .map_err(|source| Error::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let ecs = berth_ecs::Ecs::new(store.clone(), identity.token_key, berth_ecs::system_clock());
    let registry = open_registry(&config, &identity, store.clone())?;
    let state = Arc::new(http_api::State::new(&config, &identity, store, ecs));
    let app = http_api::router(state, &registry);
    let started = Started {
        addr,
        access_key_id: identity.root.access_key_id.clone(),
        secret_access_key: identity.root.secret_access_key.clone(),
    };
    if config.auth == AuthMode::Sigv4 {
        if identity.created {
            println!(
                "berth: created root access key {} (secret in {})",
                started.access_key_id,
                identity.path.display()
            );
        }
        match aws_profile::ensure(&config, &started) {
            Ok(note) => println!("berth: {note}"),
            Err(e) => eprintln!("berth: could not write the AWS CLI profile 'berth': {e}"),
        }
    }
    on_ready(&started);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}
