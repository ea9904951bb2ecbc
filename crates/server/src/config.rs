//! berth's settings, as the CLI, `BERTH_*` variables and the config file give them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every request must carry a valid SigV4 signature of a known key.
    Sigv4,
    /// Any well-formed signature (or none) is accepted, as the configured account: for local CI.
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything on one machine (the local agent joins with the agent issue).
    Up,
    /// The control plane only.
    Server,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub role: Role,
    pub listen: String,
    pub data_dir: PathBuf,
    pub auth: AuthMode,
    pub account_id: String,
    pub region: String,
    pub allow_reset: bool,
    /// Where the `berth` AWS CLI profile goes; `None` means the AWS CLI's own defaults
    /// (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, then `~/.aws`).
    pub aws_config_dir: Option<PathBuf>,
    /// The secret agents present to join (`--join-token`); `None` uses the one generated once
    /// and kept in `<data-dir>/identity.json`.
    pub join_token: Option<String>,
    /// An agent silent for this long has its tasks stopped by the liveness sweep.
    pub node_grace_secs: u64,
    /// The address load balancer listeners bind (`--lb-bind`); their ports come from the
    /// ELBv2 listeners.
    pub lb_bind: std::net::IpAddr,
    /// How long a target may take to answer (and a client to send its headers) when a load
    /// balancer sets no `idle_timeout.timeout_seconds`.
    pub lb_idle_timeout_secs: u64,
    /// How often agents sample their tasks' CPU and memory (`berth up`'s agent uses it), and
    /// the window the server aggregates the samples over into one `AWS/ECS` datapoint.
    pub metrics_interval_secs: u64,
    /// Store `AWS/ECS` utilization at 1-second resolution instead of ECS's 60 (for tests and
    /// high-resolution alarms).
    pub metrics_high_resolution: bool,
    /// The period of target-tracking policies' alarms (`BERTH_TARGET_TRACKING_PERIOD_SECS`):
    /// AWS fixes 60 s; 10 or 30 (CloudWatch's high-resolution periods) keep end-to-end tests
    /// short.
    pub target_tracking_period_secs: u32,
}

impl Config {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:4566";
    pub const DEFAULT_ACCOUNT: &'static str = "000000000000";
    pub const DEFAULT_REGION: &'static str = "us-east-1";
    pub const DEFAULT_NODE_GRACE_SECS: u64 = 300;
    pub const DEFAULT_METRICS_INTERVAL_SECS: u64 = berth_agent_api::METRICS_INTERVAL_SECS;
    pub const DEFAULT_LB_BIND: &'static str = "127.0.0.1";
    pub const DEFAULT_TARGET_TRACKING_PERIOD_SECS: u32 = 60;
    /// ALB's default idle timeout.
    pub const DEFAULT_LB_IDLE_TIMEOUT_SECS: u64 = 60;

    /// The default data directory: the user's data dir, as the platform names it.
    pub fn default_data_dir() -> PathBuf {
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("berth")
    }
}
