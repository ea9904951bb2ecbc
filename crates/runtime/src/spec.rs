//! What the agent asks a runtime for: berth's own container description, free of any wire shape,
//! and the validation both drivers apply so the fake refuses exactly what Docker would.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::RuntimeError;

/// Everything needed to create one container. Fields left at their default mean "the image's
/// own setting" (command, entrypoint, user, working dir) or "no limit".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    /// The runtime's container name; unique on the node.
    pub name: String,
    /// Image reference as pulled (`repo:tag` or `repo@digest`).
    pub image: String,
    /// Replaces the image's `CMD` when set.
    pub command: Option<Vec<String>>,
    /// Replaces the image's `ENTRYPOINT` when set.
    pub entrypoint: Option<Vec<String>>,
    /// Environment, in order; later entries win for duplicate names (Docker's rule).
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// Docker labels, passed through unchanged (the agent sets the `com.amazonaws.ecs.*` ones).
    pub labels: BTreeMap<String, String>,
    /// Relative CPU weight (ECS `cpu` units map 1:1; Docker's minimum is 2).
    pub cpu_shares: Option<i64>,
    /// Hard memory limit: the container is OOM-killed above it.
    pub memory_limit_mib: Option<u64>,
    /// Soft memory limit (reservation).
    pub memory_reservation_mib: Option<u64>,
    pub ulimits: Vec<Ulimit>,
    /// Run an init process (tini) as PID 1 that reaps zombies and forwards signals.
    pub init: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    /// Extra `/etc/hosts` entries: (hostname, ip).
    pub extra_hosts: Vec<(String, String)>,
    pub dns_servers: Vec<String>,
    pub dns_search_domains: Vec<String>,
    /// Grace period between SIGTERM and SIGKILL when the container is stopped without an
    /// explicit timeout.
    pub stop_timeout: Option<Duration>,
    pub network: NetworkMode,
    pub ports: Vec<PortMapping>,
    pub mounts: Vec<Mount>,
    pub health_check: Option<HealthCheck>,
    pub log_config: Option<LogConfig>,
}

/// How the container is attached to the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// Docker's default bridge; ports are published through `ports`.
    #[default]
    Bridge,
    /// The host's network stack; ports are the container's own.
    Host,
    /// A loopback interface only.
    None,
    /// Join another container's network namespace (awsvpc: a pause container per task holds
    /// the namespace and the task's containers join it).
    Container(String),
}

/// Transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// Parses Docker's and ECS's spelling (`tcp`, `udp`, any case).
    pub fn parse(s: &str) -> Option<Protocol> {
        if s.eq_ignore_ascii_case("tcp") {
            Some(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Some(Protocol::Udp)
        } else {
            None
        }
    }
}

/// Publishes a container port on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    pub protocol: Protocol,
    /// `None` lets the runtime pick a free port (ECS dynamic port mapping).
    pub host_port: Option<u16>,
    /// Address the host side binds to; loopback unless the agent is configured otherwise, so a
    /// test or a single-machine setup exposes nothing to the network by accident.
    pub host_ip: String,
}

impl PortMapping {
    /// A dynamic TCP mapping bound to loopback.
    pub fn new(container_port: u16) -> PortMapping {
        PortMapping {
            container_port,
            protocol: Protocol::Tcp,
            host_port: None,
            host_ip: "127.0.0.1".to_owned(),
        }
    }
}

/// One resource limit (`nofile`, `nproc`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Storage attached to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A host directory (created if missing, as ECS host volumes are).
    Bind {
        host_path: String,
        container_path: String,
        read_only: bool,
    },
    /// A named runtime volume (created on first use unless [`crate::Runtime::create_volume`]
    /// made it with a driver first).
    Volume {
        name: String,
        container_path: String,
        read_only: bool,
    },
    /// Every volume of another container (ECS `volumesFrom`).
    VolumesFrom { container: String, read_only: bool },
    /// A memory-backed filesystem (ECS `linuxParameters.tmpfs`).
    Tmpfs {
        container_path: String,
        size_mib: Option<u64>,
        options: Vec<String>,
    },
}

/// A container health check as ECS gives it: `test` is `["CMD-SHELL", "cmd"]`,
/// `["CMD", "exe", "arg"...]` or `["NONE"]`; durations in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub test: Vec<String>,
    pub interval_secs: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub retries: Option<u32>,
    pub start_period_secs: Option<u32>,
}

/// A runtime log driver and its options (`json-file`, `none`, ...). The agent ships `awslogs`
/// itself, so it normally leaves this unset and reads [`crate::Runtime::logs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

/// Credentials for one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// Registry host (`127.0.0.1:5000`); informational for Docker, which matches by image.
    pub server: String,
}

/// A named volume to create before containers use it (ECS `dockerVolumeConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    /// `None` is the runtime's default (`local`).
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl ContainerSpec {
    /// Refuses what the Docker Engine would refuse at create time (so the fake and Docker
    /// agree), and what cannot be expressed in its string formats without ambiguity.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |m: String| Err(RuntimeError::Invalid(m));
        if self.image.is_empty() {
            return invalid("image is empty".into());
        }
        if !valid_name(&self.name) {
            return invalid(format!(
                "container name {:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]+",
                self.name
            ));
        }
        if let NetworkMode::Container(id) = &self.network {
            if id.is_empty() {
                return invalid("network container id is empty".into());
            }
            // Docker: "conflicting options: ... and the network mode".
            if !self.ports.is_empty() {
                return invalid("port mappings cannot be set when joining another container's network; publish them on that container".into());
            }
            if self.hostname.is_some() {
                return invalid(
                    "hostname cannot be set when joining another container's network".into(),
                );
            }
            if !self.extra_hosts.is_empty() || !self.dns_servers.is_empty() {
                return invalid(
                    "extra hosts and DNS cannot be set when joining another container's network"
                        .into(),
                );
            }
        }
        if self.network == NetworkMode::Host && self.hostname.is_some() {
            return invalid("hostname cannot be set in host network mode".into());
        }
        for p in &self.ports {
            if p.container_port == 0 {
                return invalid("container port 0".into());
            }
            if p.host_ip.parse::<std::net::IpAddr>().is_err() {
                return invalid(format!("host ip {:?} is not an IP address", p.host_ip));
            }
        }
        for m in &self.mounts {
            // Bind strings are `src:dst[:ro]`; a colon inside a path would be misread.
            let (src, dst) = match m {
                Mount::Bind {
                    host_path,
                    container_path,
                    ..
                } => (host_path.as_str(), container_path.as_str()),
                Mount::Volume {
                    name,
                    container_path,
                    ..
                } => (name.as_str(), container_path.as_str()),
                Mount::VolumesFrom { container, .. } => (container.as_str(), "/"),
                Mount::Tmpfs { container_path, .. } => ("tmpfs", container_path.as_str()),
            };
            if src.is_empty() || src.contains(':') || dst.contains(':') || !dst.starts_with('/') {
                return invalid(format!(
                    "mount {src:?} -> {dst:?}: paths must be absolute, non-empty, and hold no ':'"
                ));
            }
        }
        for (k, _) in &self.env {
            if k.is_empty() || k.contains('=') {
                return invalid(format!("environment name {k:?} is empty or holds '='"));
            }
        }
        for (host, ip) in &self.extra_hosts {
            if host.is_empty() || host.contains(':') || ip.parse::<std::net::IpAddr>().is_err() {
                return invalid(format!("extra host {host:?} -> {ip:?}"));
            }
        }
        if let Some(hc) = &self.health_check
            && hc.test.is_empty()
        {
            return invalid("health check test is empty".into());
        }
        for u in &self.ulimits {
            if u.name.is_empty() || u.soft > u.hard {
                return invalid(format!("ulimit {:?}: soft above hard", u.name));
            }
        }
        Ok(())
    }
}

/// Docker's container name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`: two characters at least).
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() >= 2 && valid_reference(name)
}

/// What may name a container or volume in a URL path: an id or a name, nothing that could
/// step to another endpoint (`/`, `..`, `?`).
pub(crate) fn valid_reference(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ContainerSpec {
        ContainerSpec {
            name: "web-1".into(),
            image: "busybox:1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_matches_docker_rules() {
        assert_eq!(base().validate(), Ok(()));
        let refused = |f: &dyn Fn(&mut ContainerSpec)| {
            let mut s = base();
            f(&mut s);
            matches!(s.validate(), Err(RuntimeError::Invalid(_)))
        };
        assert!(refused(&|s| s.name = "a".into()));
        assert!(refused(&|s| s.name = "-ab".into()));
        assert!(refused(&|s| s.name = "a/../b".into()));
        assert!(refused(&|s| s.image.clear()));
        assert!(refused(&|s| {
            let mut p = PortMapping::new(80);
            p.host_ip = "localhost".into();
            s.ports.push(p);
        }));
        assert!(refused(&|s| s.mounts.push(Mount::Bind {
            host_path: "/a:b".into(),
            container_path: "/c".into(),
            read_only: false,
        })));
        assert!(refused(&|s| s.mounts.push(Mount::Volume {
            name: "v".into(),
            container_path: "relative".into(),
            read_only: false,
        })));
        assert!(refused(&|s| s.env.push(("A=B".into(), "c".into()))));
        assert!(refused(&|s| s
            .extra_hosts
            .push(("db".into(), "nope".into()))));
        assert!(refused(&|s| {
            s.network = NetworkMode::Container("pause".into());
            s.hostname = Some("h".into());
        }));
        assert!(refused(&|s| s.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: 5,
        })));
    }
}
