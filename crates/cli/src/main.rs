//! The `berth` binary: parses the command line, merges it with `BERTH_*` variables and the
//! config file, and hands off to `berth-server`. Wiring only.

use anyhow::{Context, Result};
use berth_server::{AuthMode, Config, Role};
use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A self-hosted container platform that speaks the AWS container APIs."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on one machine: control plane, registry, load balancer and a local agent.
    Up(ServeArgs),
    /// The control plane only.
    Server(ServeArgs),
    /// A node agent: joins this machine to a cluster of a berth server and runs the tasks the
    /// server places on it through the local Docker Engine.
    Agent(AgentArgs),
}

/// Flags of `agent`; each is also a `BERTH_AGENT_*` variable.
#[derive(Args)]
struct AgentArgs {
    /// The berth server's endpoint, e.g. `http://10.0.0.1:4566`.
    #[arg(long, env = "BERTH_AGENT_SERVER")]
    server: String,
    /// The cluster to join.
    #[arg(long, env = "BERTH_AGENT_CLUSTER", default_value = "default")]
    cluster: String,
    /// The server's join token (printed by `berth server`, kept in its `identity.json`).
    #[arg(long, env = "BERTH_AGENT_TOKEN")]
    token: Option<String>,
    /// Where the agent keeps its identity (default: `<user data dir>/berth/agent`).
    #[arg(long, env = "BERTH_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A custom attribute of the container instance, `name=value` or `name`; repeatable.
    #[arg(long = "attribute", value_parser = parse_attribute)]
    attributes: Vec<(String, Option<String>)>,
    /// The host address published container ports bind to (ECS binds 0.0.0.0; berth defaults
    /// to loopback so nothing is exposed by accident).
    #[arg(long, env = "BERTH_AGENT_BIND_ADDRESS", default_value = "127.0.0.1")]
    bind_address: String,
    /// Memory (MiB) kept back from tasks for the OS and the agent.
    #[arg(long, env = "BERTH_AGENT_MEMORY_RESERVE_MIB", default_value_t = 256)]
    memory_reserve_mib: u64,
    /// Seconds stopped containers stay on the node before they are removed.
    #[arg(long, env = "BERTH_AGENT_CLEANUP_SECS", default_value_t = 600)]
    cleanup_secs: u64,
    /// When to pull images, as ECS_IMAGE_PULL_BEHAVIOR: `default` (pull, fall back to a
    /// cached image), `always`, `prefer-cached`.
    #[arg(long, env = "BERTH_AGENT_IMAGE_PULL_BEHAVIOR", default_value = "default",
          value_parser = ["default", "always", "prefer-cached"])]
    image_pull_behavior: String,
    /// Seconds between samples of the tasks' CPU and memory, shipped for CloudWatch's
    /// `AWS/ECS` metrics; 0 turns sampling off.
    #[arg(long, env = "BERTH_AGENT_METRICS_INTERVAL_SECS", default_value_t = Config::DEFAULT_METRICS_INTERVAL_SECS)]
    metrics_interval_secs: u64,
    /// Port of the task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`), served on loopback
    /// and on the Docker bridge's gateway; 0 picks a free port.
    #[arg(long, env = "BERTH_METADATA_PORT", default_value_t = berth_agent::metadata::DEFAULT_PORT)]
    metadata_port: u16,
}

fn parse_attribute(s: &str) -> Result<(String, Option<String>), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (s, None),
    };
    if k.is_empty() {
        return Err("an attribute needs a name: name=value".into());
    }
    Ok((k.to_string(), v))
}

impl AgentArgs {
    fn config(self) -> berth_agent::Config {
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| Config::default_data_dir().join("agent"));
        let mut c = berth_agent::Config::new(&self.server, &self.cluster, data_dir);
        c.join_token = self.token;
        c.attributes = self.attributes;
        c.bind_address = self.bind_address;
        c.memory_reserve_mib = self.memory_reserve_mib;
        c.cleanup_after = std::time::Duration::from_secs(self.cleanup_secs);
        c.metrics_interval = std::time::Duration::from_secs(self.metrics_interval_secs);
        c.metadata_port = Some(self.metadata_port);
        c.pull_behavior = match self.image_pull_behavior.as_str() {
            "always" => berth_agent::PullBehavior::Always,
            "prefer-cached" => berth_agent::PullBehavior::PreferCached,
            _ => berth_agent::PullBehavior::Default,
        };
        c
    }
}

/// Flags of `up` and `server`. Each is also a `BERTH_*` variable and a key of the config file;
/// the command line wins over the environment, which wins over the file.
#[derive(Args, Serialize, Deserialize, Default)]
struct ServeArgs {
    /// Config file (TOML) with any of the keys below, e.g. `listen = "127.0.0.1:4566"`.
    #[arg(long, env = "BERTH_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to serve every API on.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Where the store, blobs and keys live.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// `sigv4` verifies every signature; `open` accepts any well-formed one (local CI).
    #[arg(long, value_parser = ["sigv4", "open"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    /// The account every resource belongs to.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    /// The region of requests that do not sign one.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    /// Serve `POST /_berth/reset`, which wipes all state (for test suites).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_reset: bool,
    /// Folder for the AWS CLI `credentials` and `config` files that get the `berth` profile
    /// (default: the AWS CLI's own).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    aws_config_dir: Option<PathBuf>,
    /// The secret agents present to join (default: generated once, kept in the data dir's
    /// `identity.json`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    join_token: Option<String>,
    /// Seconds an agent may stay silent before its tasks are reported STOPPED.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_grace_secs: Option<u64>,
    /// The address load balancer listeners bind (loopback by default, so nothing is exposed
    /// by accident; `0.0.0.0` serves every interface).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lb_bind: Option<String>,
    /// Seconds a target may take to answer before the client gets 504 (and a client to send
    /// its request headers), for load balancers that set no `idle_timeout.timeout_seconds`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lb_idle_timeout_secs: Option<u64>,
    /// Seconds between samples of the tasks' CPU and memory (`berth up`'s agent), and the
    /// window each `AWS/ECS` CPUUtilization/MemoryUtilization datapoint covers.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_interval_secs: Option<u64>,
    /// Store `AWS/ECS` utilization at 1-second resolution (ECS's is 60 seconds).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    metrics_high_resolution: bool,
    /// Seconds in a period of target-tracking alarms: 60 as in AWS, or 10 or 30 for tests.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    target_tracking_period_secs: Option<u32>,
    /// Port of the task metadata endpoint `berth up`'s agent serves its containers
    /// (`ECS_CONTAINER_METADATA_URI_V4`) on loopback and the Docker bridge's gateway; 0 picks
    /// a free port.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_port: Option<u16>,
    /// Where the registry keeps image blobs: `data-dir` (under the data directory) or
    /// `s3://BUCKET[/PREFIX]`, an S3 or S3-compatible bucket reached with the `AWS_*`
    /// variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_store: Option<String>,
    /// Seconds between the registry's garbage collections, and how long a blob must have been
    /// unreferenced, a staged upload orphaned or an upload session idle before one removes it.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_gc_secs: Option<u64>,
}

#[derive(Deserialize)]
struct Settings {
    listen: String,
    data_dir: PathBuf,
    auth: AuthMode,
    account_id: String,
    region: String,
    allow_reset: bool,
    aws_config_dir: Option<PathBuf>,
    join_token: Option<String>,
    node_grace_secs: u64,
    lb_bind: String,
    lb_idle_timeout_secs: u64,
    metrics_interval_secs: u64,
    metrics_high_resolution: bool,
    target_tracking_period_secs: u32,
    metadata_port: u16,
    registry_store: String,
    registry_gc_secs: u64,
}

/// The server's configuration, and the metadata port of `up`'s agent (not the server's).
fn config(role: Role, args: ServeArgs) -> Result<(Config, u16)> {
    let defaults = serde_json::json!({
        "listen": Config::DEFAULT_LISTEN,
        "data_dir": Config::default_data_dir(),
        "auth": "sigv4",
        "account_id": Config::DEFAULT_ACCOUNT,
        "region": Config::DEFAULT_REGION,
        "allow_reset": false,
        "node_grace_secs": Config::DEFAULT_NODE_GRACE_SECS,
        "lb_bind": Config::DEFAULT_LB_BIND,
        "lb_idle_timeout_secs": Config::DEFAULT_LB_IDLE_TIMEOUT_SECS,
        "metrics_interval_secs": Config::DEFAULT_METRICS_INTERVAL_SECS,
        "metrics_high_resolution": false,
        "target_tracking_period_secs": Config::DEFAULT_TARGET_TRACKING_PERIOD_SECS,
        "metadata_port": berth_agent::metadata::DEFAULT_PORT,
        "registry_store": "data-dir",
        "registry_gc_secs": Config::DEFAULT_REGISTRY_GC_SECS,
    });
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(file) = &args.config {
        anyhow::ensure!(
            file.exists(),
            "config file {} does not exist",
            file.display()
        );
        figment = figment.merge(Toml::file(file));
    }
    let s: Settings = figment
        .merge(Env::prefixed("BERTH_").ignore(&["config"]))
        .merge(Serialized::defaults(&args))
        .extract()
        .context("reading berth's configuration")?;
    anyhow::ensure!(
        s.account_id.len() == 12 && s.account_id.bytes().all(|b| b.is_ascii_digit()),
        "--account-id must be 12 digits"
    );
    let lb_bind = s
        .lb_bind
        .parse()
        .with_context(|| format!("--lb-bind {} is not an IP address", s.lb_bind))?;
    anyhow::ensure!(
        s.lb_idle_timeout_secs >= 1,
        "--lb-idle-timeout-secs must be at least 1"
    );
    anyhow::ensure!(
        s.metrics_interval_secs >= 1,
        "--metrics-interval-secs must be at least 1"
    );
    anyhow::ensure!(
        matches!(s.target_tracking_period_secs, 10 | 30)
            || (s.target_tracking_period_secs >= 60
                && s.target_tracking_period_secs.is_multiple_of(60)),
        "--target-tracking-period-secs must be 10, 30 or a multiple of 60"
    );
    anyhow::ensure!(
        s.registry_gc_secs >= 1,
        "--registry-gc-secs must be at least 1"
    );
    let registry_store = s
        .registry_store
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--registry-store: {e}"))?;
    let config = Config {
        role,
        listen: s.listen,
        data_dir: s.data_dir,
        auth: s.auth,
        account_id: s.account_id,
        region: s.region,
        allow_reset: s.allow_reset,
        aws_config_dir: s.aws_config_dir,
        join_token: s.join_token,
        node_grace_secs: s.node_grace_secs,
        lb_bind,
        lb_idle_timeout_secs: s.lb_idle_timeout_secs,
        metrics_interval_secs: s.metrics_interval_secs,
        metrics_high_resolution: s.metrics_high_resolution,
        target_tracking_period_secs: s.target_tracking_period_secs,
        registry_store,
        registry_gc_secs: s.registry_gc_secs,
    };
    Ok((config, s.metadata_port))
}

/// Registers the SIGINT and SIGTERM handlers now, before berth says it is ready, and returns a
/// future that resolves on the first of them. tokio installs a handler only when its stream is
/// created, so a lazily created one would let an early SIGTERM kill berth with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            }
            _ => std::future::pending::<()>().await,
        }
        eprintln!("berth: shutting down");
    }
}

/// glibc's malloc settings for a server that streams large bodies, unless the user chose their
/// own. By default glibc hands freed memory at the top of a thread's heap back to the kernel
/// once 128 KiB of it is free (and moves that threshold as it goes), so during a blob upload,
/// whose received buffers are freed on the blocking threads that hash and write them, it
/// returned and faulted in again 100–250 MiB per 512 MiB uploaded. Keeping up to 16 MiB free per
/// heap (above an upload's ~14 MiB in flight: 3 × 4 MiB file batches, 2 × 1 MiB hash batches)
/// and serving everything below 32 MiB (glibc's own ceiling for its moving threshold) from the
/// heaps removed those faults and 5–15 % of an upload's CPU. Setting one threshold stops glibc
/// moving both, and either alone measured worse than the default, so a user who sets either
/// one gets no change from berth. The price: after an upload a heap keeps what it used, up to
/// 16 MiB (RSS after two uploads 43 MiB instead of 30, peak the same); a fresh server's RSS is
/// unchanged, untouched memory being never resident. Measurements: bench/registry/README.md.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    const TRIM_THRESHOLD: libc::c_int = 16 * 1024 * 1024;
    const MMAP_THRESHOLD: libc::c_int = 32 * 1024 * 1024;
    if malloc_thresholds_set_by_user(|name| std::env::var_os(name)) {
        return;
    }
    // SAFETY: `mallopt` takes two plain integers and changes only malloc's own parameters. It
    // is called first thing in `main`, before any thread or runtime exists, so no allocation
    // runs concurrently with the change. A refused setting (return value 0) leaves glibc's
    // default, which is correct, only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Whether the environment (`var`) sets either malloc threshold glibc reads at start-up.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn malloc_thresholds_set_by_user(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    var("MALLOC_TRIM_THRESHOLD_").is_some()
        || var("MALLOC_MMAP_THRESHOLD_").is_some()
        || var("GLIBC_TUNABLES").is_some_and(|t| {
            let t = t.to_string_lossy();
            t.contains("glibc.malloc.trim_threshold") || t.contains("glibc.malloc.mmap_threshold")
        })
}

/// Lifts the soft limit on open files to the hard one. The soft limit is 1,024 under systemd
/// and most shells, a relic of `select(2)`, which berth does not use; the hard limit is what the
/// administrator allows. One berth holds a descriptor per client connection, per load balancer
/// connection on each side, per upload being written and per blob being read, so 1,024 is a
/// few hundred clients, and running out fails `accept` for everyone. Go's runtime does the same
/// at start (Go 1.19 on), so distribution and Docker run with their hard limit. berth starts no
/// child process that could inherit the raised limit. A refusal leaves the limit as it was.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            eprintln!("berth: could not raise the open file limit: {e}");
        }
    }
}

fn main() -> Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tune_malloc();
    raise_open_file_limit();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (role, args) = match cli.command {
        Command::Up(a) => (Role::Up, a),
        Command::Server(a) => (Role::Server, a),
        Command::Agent(a) => {
            // The agent waits on its server, Docker and its tasks' timers: one thread keeps up
            // with a node's tasks, and each further worker costs memory (its stack and its own
            // malloc arena) on every node of the fleet.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(run_agent(a.config()));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (config, metadata_port) = config(role, args)?;
    runtime.block_on(async move {
        // One signal stops both the server and (under `up`) its agent.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // `up` runs an agent against the local Docker Engine, in this process but through the
        // same HTTP protocol as `berth agent`, so there is one code path.
        let docker = match role {
            Role::Up => Some(berth_runtime::DockerRuntime::connect().await),
            Role::Server => None,
        };
        let agent_dir = config.data_dir.join("agent");
        let metrics_interval = std::time::Duration::from_secs(config.metrics_interval_secs);
        let agent_stop = stop_rx.clone();
        berth_server::run(
            config,
            move |s| {
                println!(
                    "berth: serving every API on http://{} (health: /_berth/health)",
                    s.addr
                );
                if let Some(docker) = docker {
                    let mut addr = s.addr;
                    if addr.ip().is_unspecified() {
                        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    let mut c =
                        berth_agent::Config::new(&format!("http://{addr}"), "default", agent_dir);
                    c.join_token = Some(s.join_token.clone());
                    c.metrics_interval = metrics_interval;
                    c.metadata_port = Some(metadata_port);
                    tokio::spawn(run_local_agent(c, docker, stopped(agent_stop)));
                }
            },
            stopped(stop_rx),
        )
        .await
    })?;
    Ok(())
}

/// `berth up`'s agent. A failure here leaves the control plane serving: it is reported, not
/// fatal.
async fn run_local_agent(
    config: berth_agent::Config,
    docker: Result<berth_runtime::DockerRuntime, berth_runtime::RuntimeError>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    if let Err(e) = &docker {
        println!("berth: this node cannot run tasks: {e}");
    }
    let agent = match berth_agent::Agent::new(config, docker.map(Into::into)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth: the local agent cannot start: {e}");
            return;
        }
    };
    let announced = std::sync::atomic::AtomicBool::new(false);
    let on_registered = move |r: &berth_agent::Registered| {
        if !announced.swap(true, std::sync::atomic::Ordering::SeqCst) && r.can_run_tasks {
            println!(
                "berth: this node runs tasks of cluster default as {}",
                r.container_instance_arn
            );
        }
    };
    if let Err(e) = agent.run(on_registered, shutdown).await {
        eprintln!("berth: the local agent stopped: {e}");
    }
}

async fn run_agent(config: berth_agent::Config) -> Result<()> {
    let docker = berth_runtime::DockerRuntime::connect().await;
    if let Err(e) = &docker {
        println!("berth: this node cannot run tasks: {e}");
    }
    let server = config.server.clone();
    let cluster = config.cluster.clone();
    let agent =
        berth_agent::Agent::new(config, docker.map(Into::into)).context("starting the agent")?;
    println!("berth: agent joining cluster {cluster} at {server}");
    agent
        .run(
            |r| {
                println!(
                    "berth: registered as {}{}",
                    r.container_instance_arn,
                    match &r.reason {
                        Some(why) => format!(" (cannot run tasks: {why})"),
                        None => String::new(),
                    }
                )
            },
            shutdown_signal(),
        )
        .await
        .context("running the agent")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::malloc_thresholds_set_by_user;
    use std::ffi::OsString;

    fn set_by_user(env: &[(&str, &str)]) -> bool {
        malloc_thresholds_set_by_user(|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn either_threshold_set_by_the_user_leaves_malloc_alone() {
        assert!(!set_by_user(&[]));
        assert!(!set_by_user(&[("MALLOC_ARENA_MAX", "2")]));
        assert!(set_by_user(&[("MALLOC_TRIM_THRESHOLD_", "1048576")]));
        assert!(set_by_user(&[("MALLOC_MMAP_THRESHOLD_", "1048576")]));
        assert!(set_by_user(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"
        )]));
        assert!(!set_by_user(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.arena_max=2"
        )]));
    }
}
