//! Assembles berth's control plane: reads the configuration, opens the store, creates the root
//! identity, and serves every API on one HTTP endpoint until shutdown.
//!
//! **API Boundary:** the only crate that knows both HTTP (axum/hyper) and the API families. It
//! wires; it decides nothing about what an operation means.

mod agent_api;
mod aws_profile;
mod config;
mod http_api;
mod identity;
mod load_balancer;

pub use config::{AuthMode, BlobStore, Config, Role};

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
        #[error("cannot set up: {0}")]
        Setup(String),
    }
}

/// How long the start-up check of a registry bucket may take.
const STORE_PROBE: std::time::Duration = std::time::Duration::from_secs(20);

/// The OCI registry, its object storage under `<data-dir>/registry` or in an S3 bucket
/// (`blobs/…` content-addressed, `uploads/…` staged), serving the configured account and region.
///
/// Auth: `--auth open` lets anyone push and pull. Under SigV4, `/v2/` takes HTTP Basic as ECR
/// does: user `AWS` and an unexpired token from the ECR API's `GetAuthorizationToken` (signed
/// with the token key, for the configured account). Repositories come from CreateRepository:
/// a push to a missing one is `NAME_UNKNOWN`, as in ECR.
async fn open_registry(
    config: &Config,
    identity: &identity::Identity,
    store: AnyStore,
) -> Result<berth_registry::Registry, Error> {
    let dir = config.data_dir.join("registry");
    let data_dir_error = |source: std::io::Error| Error::DataDir {
        path: dir.display().to_string(),
        source,
    };
    let (blobs, local_dir): (Arc<dyn object_store::ObjectStore>, _) = match &config.registry_store {
        BlobStore::DataDir => {
            // Upload sessions live in memory, so none survives a restart: their staged bytes
            // are garbage. Clearing them here is safe because this process is the directory's
            // only user. (A bucket may be shared; there garbage collection clears what no live
            // session owns once it is older than the grace period.)
            match std::fs::remove_dir_all(dir.join("uploads")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(data_dir_error(e)),
            }
            std::fs::create_dir_all(&dir).map_err(data_dir_error)?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| data_dir_error(std::io::Error::other(e.to_string())))?;
            // Uploads stage straight into the directory's files.
            (Arc::new(local), Some(dir.clone()))
        }
        BlobStore::S3 { bucket, prefix } => {
            let setup = |e: String| Error::Setup(format!("registry store s3://{bucket}: {e}"));
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| setup(e.to_string()))?;
            let blobs: Arc<dyn object_store::ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
            };
            // One listing now, so a wrong endpoint, bucket or key stops berth with the store's
            // own words instead of failing every push later. Bounded, because object_store
            // retries an endpoint that does not answer for minutes.
            let root = object_store::path::Path::from("blobs");
            match tokio::time::timeout(STORE_PROBE, blobs.list_with_delimiter(Some(&root))).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(setup(e.to_string())),
                Err(_) => return Err(setup(format!("no answer in {STORE_PROBE:?}"))),
            }
            (blobs, None)
        }
    };
    let access = match config.auth {
        AuthMode::Open => berth_registry::Access::Open,
        AuthMode::Sigv4 => {
            let tokens = berth_ecr::AuthTokens::new(identity.token_key);
            let account = config.account_id.clone();
            let clock = berth_registry::system_clock();
            berth_registry::Access::Basic(Arc::new(move |user: &str, password: &str| {
                tokens.check_basic(user, password, &account, clock())
            }))
        }
    };
    let gc = std::time::Duration::from_secs(config.registry_gc_secs);
    let options = berth_registry::RegistryOptions {
        local_dir,
        gc_grace: gc,
        upload_idle_timeout: gc,
        ..berth_registry::RegistryOptions::default()
    };
    Ok(berth_registry::Registry::new(
        store,
        blobs,
        format!("{}/{}", config.account_id, config.region),
        access,
        options,
    ))
}

/// Where clients reach the registry: the address berth really bound (so `repositoryUri` and
/// `proxyEndpoint` work with `--listen 127.0.0.1:0`), with a wildcard listen address replaced by
/// loopback, which clients cannot dial.
fn registry_place(config: &Config, addr: SocketAddr) -> berth_ecr::RegistryPlace {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    berth_ecr::RegistryPlace {
        account_id: config.account_id.clone(),
        region: config.region.clone(),
        host: host.to_string(),
    }
}

/// A started server: where it listens, and what a client needs to call it.
#[derive(Debug, Clone)]
pub struct Started {
    pub addr: SocketAddr,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The token agents join with (`berth up` hands it to its in-process agent).
    pub join_token: String,
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
    // Records an earlier berth wrote are brought to the current layout before anything reads
    // them: tasks that ran before an upgrade go on running after it.
    berth_ecs::upgrade::upgrade_records(&ecs)
        .await
        .map_err(|e| Error::Setup(format!("upgrading stored records: {}", e.message)))?;
    let registry = open_registry(&config, &identity, store.clone()).await?;
    let join_token = config
        .join_token
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| identity.join_token.clone());
    let logs = berth_logs::Logs::new(
        store.clone(),
        identity.token_key,
        berth_logs::system_clock(),
    );
    if config.role == Role::Up {
        create_default_cluster(&ecs, &config).await?;
    }
    let sweeper = tokio::spawn(liveness_sweep(ecs.clone(), config.clone()));
    let controller = tokio::spawn(service_controller(
        ecs.clone(),
        config.clone(),
        berth_store::Store::subscribe(&store),
    ));
    let ecr = berth_ecr::Ecr::new(
        registry.clone(),
        identity.token_key,
        registry_place(&config, addr),
        berth_registry::system_clock(),
    );
    let logs_sweeper = tokio::spawn(logs_sweep(logs.clone()));
    let registry_gc = tokio::spawn(registry_gc(
        registry.clone(),
        std::time::Duration::from_secs(config.registry_gc_secs),
    ));
    // ECR applies lifecycle policies within 24 hours of their due time; hourly is well inside.
    let lifecycle_sweeper = tokio::spawn(
        ecr.clone()
            .lifecycle_sweep(std::time::Duration::from_secs(3600)),
    );
    let elbv2 = berth_elbv2::Elbv2::new(
        store.clone(),
        identity.token_key,
        berth_elbv2::system_clock(),
    );
    // The load balancer's data plane; its request metrics go to CloudWatch.
    let (load_balancer, load_balancer_task) = load_balancer::spawn(store.clone(), &config);
    let cloudwatch = berth_cloudwatch::Cloudwatch::new(
        store.clone(),
        identity.token_key,
        berth_cloudwatch::system_clock(),
        Some(config.data_dir.join("metrics")),
    )
    .map_err(|e| Error::Setup(format!("opening the metrics store: {e}")))?;
    let alarm_evaluator = tokio::spawn(evaluate_alarms(cloudwatch.clone()));
    let lb_metrics = tokio::spawn(load_balancer::publish_metrics(
        load_balancer,
        cloudwatch.clone(),
        std::time::Duration::from_secs(config.metrics_interval_secs.clamp(1, 60)),
        if config.metrics_high_resolution {
            1
        } else {
            60
        },
    ));
    // Application Auto Scaling and CloudWatch, both ways: its target-tracking policies put their
    // alarms through CloudWatch's API, and CloudWatch's alarm transitions drive its policies.
    let autoscaling = berth_autoscaling::Autoscaling::new(
        store.clone(),
        identity.token_key,
        berth_autoscaling::system_clock(),
        ecs.clone(),
        Arc::new(berth_autoscaling::JsonAlarms(cloudwatch.clone())),
        berth_autoscaling::Options {
            alarm_period_secs: i32::try_from(config.target_tracking_period_secs).unwrap_or(60),
        },
    );
    cloudwatch.set_actions(Arc::new(autoscaling.clone()));
    let autoscaling_ticker = tokio::spawn(autoscaling_tick(autoscaling.clone()));
    // Secrets Manager; the agent routes read tasks' `secrets` and `repositoryCredentials`
    // through its `resolve`.
    let secrets = berth_secretsmanager::SecretsManager::new(
        store.clone(),
        identity.token_key,
        berth_secretsmanager::system_clock(),
    );
    // The agents' usage samples become CloudWatch's `AWS/ECS` utilization metrics.
    let agents = Arc::new(agent_api::AgentApi {
        ecs: ecs.clone(),
        logs: logs.clone(),
        account_id: config.account_id.clone(),
        region: config.region.clone(),
        join_token: join_token.clone(),
        poll_wait: std::time::Duration::from_secs(berth_agent_api::POLL_WAIT_SECS),
        utilization: std::sync::Mutex::new(berth_ecs::utilization::Aggregator::new(
            i64::try_from(config.metrics_interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            if config.metrics_high_resolution {
                1
            } else {
                60
            },
        )),
        metrics: agent_api::cloudwatch_sink(cloudwatch.clone()),
        registry_login: {
            let ecr = ecr.clone();
            Arc::new(move || ecr.pull_credentials())
        },
        secrets: {
            let secrets = secrets.clone();
            Arc::new(move |ctx, reference| {
                let secrets = secrets.clone();
                Box::pin(async move {
                    secrets
                        .resolve(&ctx.account_id, &ctx.region, &reference)
                        .await
                        .map_err(|e| e.to_string())
                })
            })
        },
    });
    let metrics_publisher = tokio::spawn(agent_api::publish_metrics(agents.clone()));
    let state = Arc::new(http_api::State::new(
        &config,
        &identity,
        store,
        ecs,
        ecr,
        logs,
        elbv2,
        cloudwatch,
        autoscaling,
        secrets,
    ));
    let app = http_api::router(state, &registry).merge(agent_api::router(agents));
    let started = Started {
        addr,
        access_key_id: identity.root.access_key_id.clone(),
        secret_access_key: identity.root.secret_access_key.clone(),
        join_token,
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
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    sweeper.abort();
    controller.abort();
    logs_sweeper.abort();
    registry_gc.abort();
    lifecycle_sweeper.abort();
    metrics_publisher.abort();
    load_balancer_task.abort();
    alarm_evaluator.abort();
    autoscaling_ticker.abort();
    lb_metrics.abort();
    served
}

/// Runs scheduled actions and re-evaluates alarms that stay in ALARM, every two seconds: well
/// inside the shortest alarm period (10 s) and a schedule's one-minute resolution.
async fn autoscaling_tick(autoscaling: berth_autoscaling::Autoscaling) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        autoscaling.tick().await;
    }
}

/// Evaluates CloudWatch alarms every second: high-resolution alarms have 10-second periods, and
/// a transition is due within a second of the period that decides it.
async fn evaluate_alarms(cloudwatch: berth_cloudwatch::Cloudwatch) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = cloudwatch.evaluate_alarms().await {
            tracing::warn!("cloudwatch: alarm evaluation failed: {e}");
        }
    }
}

/// The request context of the server's own account and region, where agents' instances live.
fn own_context(config: &Config) -> berth_aws::RequestContext {
    berth_aws::RequestContext {
        account_id: config.account_id.clone(),
        region: config.region.clone(),
        request_id: berth_aws::new_request_id(),
        access_key_id: None,
    }
}

/// `berth up` joins its agent to the cluster `default`, which a call naming no cluster means,
/// so it exists from the start (CreateCluster is idempotent on the name).
async fn create_default_cluster(ecs: &berth_ecs::Ecs, config: &Config) -> Result<(), Error> {
    use berth_aws::JsonService;
    ecs.call(
        own_context(config),
        "CreateCluster",
        serde_json::json!({"clusterName": "default"}),
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::Setup(format!("creating the cluster 'default': {e}")))
}

/// Runs the registry's garbage collection every `every`: blobs no manifest references, staged
/// uploads no session owns and upload sessions idle for at least that long are removed. The
/// first run is one period after start, not at start.
async fn registry_gc(registry: berth_registry::Registry, every: std::time::Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match registry.gc().await {
            Ok(r)
                if r.blobs_deleted + r.links_deleted + r.uploads_abandoned + r.staged_deleted
                    > 0 =>
            {
                tracing::info!(
                    blobs = r.blobs_deleted,
                    bytes = r.bytes_deleted,
                    links = r.links_deleted,
                    uploads = r.uploads_abandoned,
                    staged = r.staged_deleted,
                    "registry: garbage collected"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("registry: garbage collection failed: {e}"),
        }
    }
}

/// Deletes log events past their group's retention, every ten minutes (reads already hide
/// them; the sweep is what bounds the store's growth).
async fn logs_sweep(logs: berth_logs::Logs) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match logs.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(batches = n, "logs: swept expired events"),
            Err(e) => tracing::warn!("logs: retention sweep failed: {e}"),
        }
    }
}

/// Stops the tasks of agents silent for longer than `node_grace_secs`, and forgets STOPPED
/// tasks after an hour. Runs a few times per grace period (at most every 10 s), so a task is
/// stopped at most a quarter grace late.
async fn liveness_sweep(ecs: berth_ecs::Ecs, config: Config) {
    let grace_ms = config.node_grace_secs.saturating_mul(1000);
    let every = std::time::Duration::from_millis((grace_ms / 4).clamp(100, 10_000));
    let policy = berth_ecs::nodes::SweepPolicy {
        grace_ms: i64::try_from(grace_ms).unwrap_or(i64::MAX),
        ..berth_ecs::nodes::SweepPolicy::default()
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match berth_ecs::nodes::sweep(&ecs, &own_context(&config), policy).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!("stopped {n} task(s) of disconnected container instances"),
            Err(e) => tracing::warn!(code = %e.code, "liveness sweep failed"),
        }
    }
}

/// Runs the service controller: a pass whenever a service, task, container instance or target
/// health (the load balancer's verdict gates rollouts) of the node's partition changes (changes
/// that arrive together make one pass), and at least every second, which is what wakes launches
/// held back by the failure backoff and tasks whose targets have drained.
async fn service_controller(
    ecs: berth_ecs::Ecs,
    config: Config,
    mut changes: tokio::sync::broadcast::Receiver<berth_store::Change>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let ctx = own_context(&config);
    let partition = ctx.partition();
    let watched = [
        berth_ecs::kinds::SERVICE,
        berth_ecs::kinds::TASK,
        berth_ecs::kinds::CONTAINER_INSTANCE,
        berth_elbv2::records::TARGET_HEALTH,
    ];
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            change = changes.recv() => match change {
                Ok(c) if c.partition == partition && watched.contains(&c.kind.as_str()) => {
                    // Let the rest of a burst arrive, then take it all in one pass.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    while changes.try_recv().is_ok() {}
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
        match berth_ecs::service_controller::reconcile(&ecs, &ctx).await {
            Ok(p) if p.started + p.stopped > 0 => {
                tracing::info!(
                    started = p.started,
                    stopped = p.stopped,
                    "service controller pass"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(code = %e.code, "service controller pass failed: {}", e.message)
            }
        }
    }
}
