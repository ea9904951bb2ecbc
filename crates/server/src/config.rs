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

/// Where the registry keeps blobs and staged uploads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BlobStore {
    /// `<data-dir>/registry`: uploads are written straight into its files.
    #[default]
    DataDir,
    /// An S3 or S3-compatible bucket (`s3://BUCKET[/PREFIX]`). The endpoint, region and keys
    /// come from the usual `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`; `AWS_ALLOW_HTTP=true` for a plain-HTTP
    /// endpoint), as object_store's S3 client reads them.
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for BlobStore {
    type Err = String;

    /// `data-dir`, or `s3://BUCKET` with an optional `/PREFIX`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "data-dir" {
            return Ok(BlobStore::DataDir);
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Err(format!(
                "registry store {s:?}: expected data-dir or s3://BUCKET[/PREFIX]"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules: 3-63 of lower case letters, digits, dots and hyphens,
        // starting and ending with a letter or digit.
        let edge_ok =
            |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && edge_ok(bucket.as_bytes().first())
            && edge_ok(bucket.as_bytes().last());
        if !bucket_ok {
            return Err(format!(
                "registry store {s:?}: {bucket:?} is not an S3 bucket name"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!(
                "registry store {s:?}: the prefix has an empty, . or .. part"
            ));
        }
        Ok(BlobStore::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

#[derive(Debug, Clone)]
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
    /// Where the registry keeps blobs (`--registry-store`).
    pub registry_store: BlobStore,
    /// How often the registry's garbage collection runs, and the age (unreferenced blobs,
    /// orphaned staged uploads) or idleness (upload sessions) at which it removes things.
    pub registry_gc_secs: u64,
}

impl Config {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:4566";
    pub const DEFAULT_ACCOUNT: &'static str = "000000000000";
    pub const DEFAULT_REGION: &'static str = "us-east-1";
    pub const DEFAULT_NODE_GRACE_SECS: u64 = 300;
    pub const DEFAULT_METRICS_INTERVAL_SECS: u64 = berth_agent_api::METRICS_INTERVAL_SECS;
    pub const DEFAULT_LB_BIND: &'static str = "127.0.0.1";
    pub const DEFAULT_TARGET_TRACKING_PERIOD_SECS: u32 = 60;
    /// An hour: a push that uploads its layers and then its manifest is never that slow, and
    /// an abandoned upload holds its staged bytes no longer.
    pub const DEFAULT_REGISTRY_GC_SECS: u64 = 3600;
    /// ALB's default idle timeout.
    pub const DEFAULT_LB_IDLE_TIMEOUT_SECS: u64 = 60;

    /// The default data directory: the user's data dir, as the platform names it.
    pub fn default_data_dir() -> PathBuf {
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("berth")
    }
}

#[cfg(test)]
mod tests {
    use super::BlobStore;

    #[test]
    fn registry_stores_parse_and_bad_ones_are_refused() {
        let s3 = |b: &str, p: &str| BlobStore::S3 {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!("data-dir".parse(), Ok(BlobStore::DataDir));
        assert_eq!("s3://images".parse(), Ok(s3("images", "")));
        assert_eq!("s3://images/".parse(), Ok(s3("images", "")));
        assert_eq!(
            "s3://my.images-1/berth/prod/".parse(),
            Ok(s3("my.images-1", "berth/prod"))
        );
        for bad in [
            "",
            "s3://",
            "s3://ab",
            "s3://Images",
            "s3://-images",
            "s3://images-",
            "s3://im_ages",
            "file:///tmp",
            "gs://images",
            "s3://images/a//b",
            "s3://images/../x",
            "/var/lib",
        ] {
            assert!(bad.parse::<BlobStore>().is_err(), "{bad:?} was accepted");
        }
    }
}
