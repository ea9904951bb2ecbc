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
}

fn config(role: Role, args: ServeArgs) -> Result<Config> {
    let defaults = serde_json::json!({
        "listen": Config::DEFAULT_LISTEN,
        "data_dir": Config::default_data_dir(),
        "auth": "sigv4",
        "account_id": Config::DEFAULT_ACCOUNT,
        "region": Config::DEFAULT_REGION,
        "allow_reset": false,
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
    Ok(Config {
        role,
        listen: s.listen,
        data_dir: s.data_dir,
        auth: s.auth,
        account_id: s.account_id,
        region: s.region,
        allow_reset: s.allow_reset,
        aws_config_dir: s.aws_config_dir,
    })
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

fn main() -> Result<()> {
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
    };
    let config = config(role, args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        berth_server::run(
            config,
            |s| {
                println!(
                    "berth: serving every API on http://{} (health: /_berth/health)",
                    s.addr
                )
            },
            shutdown_signal(),
        )
        .await
    })?;
    Ok(())
}
