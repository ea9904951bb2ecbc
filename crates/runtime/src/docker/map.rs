//! Pure translations between berth's runtime types and the Engine API's shapes (bollard's
//! models), kept apart from the I/O so every field mapping is unit-tested without a daemon.

use std::collections::{BTreeMap, HashMap};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, EventMessage,
    HealthConfig, HealthStatusEnum, HostConfig, HostConfigLogConfig, PortMap, ResourcesUlimits,
};

use crate::observe::{
    ContainerEvent, ContainerId, ContainerState, ContainerStatus, ContainerSummary, EventKind,
    Health, LogChunk, LogStream, PortBinding, StatsSample,
};
use crate::spec::{ContainerSpec, Mount, NetworkMode, Protocol};

const MIB: i64 = 1024 * 1024;
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// ECS's `ecs.cpu-architecture` spelling of the engine's architecture.
pub(super) fn ecs_arch(engine: &str) -> String {
    match engine {
        "aarch64" | "arm64" => "arm64".into(),
        "x86_64" | "amd64" => "x86_64".into(),
        other => other.into(),
    }
}

/// The digest part of the `repo@sha256:...` entry that belongs to `repo`.
pub(super) fn repo_digest(repo: &str, repo_digests: &[String]) -> Option<String> {
    let pairs = || repo_digests.iter().filter_map(|d| d.split_once('@'));
    pairs()
        .find(|(r, _)| *r == repo || r.ends_with(&format!("/{repo}")))
        .or_else(|| pairs().next())
        .map(|(_, d)| d.to_owned())
}

fn mib_to_bytes(mib: u64) -> i64 {
    i64::try_from(mib)
        .unwrap_or(i64::MAX / MIB)
        .saturating_mul(MIB)
}

fn secs_to_nanos(secs: Option<u32>) -> Option<i64> {
    secs.map(|s| i64::from(s) * NANOS_PER_SEC)
}

/// The create body for `spec` (already validated).
pub(super) fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut port_bindings: PortMap = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        exposed.push(key.clone());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(bollard::models::PortBinding {
                host_ip: Some(p.host_ip.clone()),
                // An empty host port asks the daemon for an ephemeral one.
                host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
    }

    let mut binds = Vec::new();
    let mut volumes_from = Vec::new();
    let mut tmpfs = HashMap::new();
    for m in &spec.mounts {
        match m {
            // `Binds` rather than `Mounts`: a missing host directory is created, as ECS host
            // volumes expect, and a named volume is created on first use.
            Mount::Bind {
                host_path: src,
                container_path: dst,
                read_only,
            }
            | Mount::Volume {
                name: src,
                container_path: dst,
                read_only,
            } => binds.push(format!(
                "{src}:{dst}{}",
                if *read_only { ":ro" } else { "" }
            )),
            Mount::VolumesFrom {
                container,
                read_only,
            } => volumes_from.push(format!(
                "{container}{}",
                if *read_only { ":ro" } else { "" }
            )),
            Mount::Tmpfs {
                container_path,
                size_mib,
                options,
            } => {
                let mut opts = options.clone();
                if let Some(size) = size_mib {
                    opts.push(format!("size={size}m"));
                }
                tmpfs.insert(container_path.clone(), opts.join(","));
            }
        }
    }

    let network_mode = match &spec.network {
        NetworkMode::Bridge => "bridge".to_owned(),
        NetworkMode::Host => "host".to_owned(),
        NetworkMode::None => "none".to_owned(),
        NetworkMode::Container(id) => format!("container:{id}"),
    };

    let host_config = HostConfig {
        cpu_shares: spec.cpu_shares,
        memory: spec.memory_limit_mib.map(mib_to_bytes),
        memory_reservation: spec.memory_reservation_mib.map(mib_to_bytes),
        ulimits: non_empty(
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        ),
        init: spec.init.then_some(true),
        cap_add: non_empty(spec.cap_add.clone()),
        cap_drop: non_empty(spec.cap_drop.clone()),
        privileged: spec.privileged.then_some(true),
        readonly_rootfs: spec.readonly_rootfs.then_some(true),
        extra_hosts: non_empty(
            spec.extra_hosts
                .iter()
                .map(|(h, ip)| format!("{h}:{ip}"))
                .collect(),
        ),
        dns: non_empty(spec.dns_servers.clone()),
        dns_search: non_empty(spec.dns_search_domains.clone()),
        network_mode: Some(network_mode),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        binds: non_empty(binds),
        volumes_from: non_empty(volumes_from),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        log_config: spec.log_config.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: Some(l.options.clone().into_iter().collect()),
        }),
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: non_empty(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        stop_timeout: spec
            .stop_timeout
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        exposed_ports: non_empty(exposed),
        healthcheck: spec.health_check.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: secs_to_nanos(h.interval_secs),
            timeout: secs_to_nanos(h.timeout_secs),
            retries: h.retries.map(i64::from),
            start_period: secs_to_nanos(h.start_period_secs),
            start_interval: None,
        }),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Unix millis of an RFC 3339 time; Docker's zero time (`0001-01-01T00:00:00Z`, "never")
/// and anything unparsable are `None`.
pub(super) fn parse_time(s: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let ms = t.timestamp_millis();
    (ms > 0).then_some(ms)
}

fn health(status: &HealthStatusEnum) -> Option<Health> {
    match status {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::EMPTY | HealthStatusEnum::NONE => None,
    }
}

fn labels(map: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().collect()
}

/// Port bindings from `NetworkSettings.Ports` (`"8080/tcp": [{HostIp, HostPort}]`); exposed
/// but unpublished ports (`null`) are skipped.
fn host_ports(ports: Option<PortMap>) -> Vec<PortBinding> {
    let mut out = Vec::new();
    for (key, bindings) in ports.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let (Ok(container_port), Some(protocol)) = (port.parse::<u16>(), Protocol::parse(proto))
        else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            out.push(PortBinding {
                container_port,
                host_port,
                protocol,
                host_ip: b.host_ip.unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.container_port, a.protocol, &a.host_ip).cmp(&(b.container_port, b.protocol, &b.host_ip))
    });
    out
}

pub(super) fn container_state(resp: ContainerInspectResponse) -> ContainerState {
    let state = resp.state.unwrap_or_default();
    let status = state
        .status
        .map(|s| ContainerStatus::parse(s.as_ref()))
        .unwrap_or(ContainerStatus::Unknown);
    let network = resp.network_settings.unwrap_or_default();
    let ip_address = network
        .networks
        .unwrap_or_default()
        .into_values()
        .filter_map(|n| n.ip_address)
        .find(|ip| !ip.is_empty());
    ContainerState {
        id: ContainerId(resp.id.unwrap_or_default()),
        name: resp
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image_id: resp.image.unwrap_or_default(),
        labels: labels(resp.config.and_then(|c| c.labels)),
        // Docker reports 0 for a container that never ran; only an exited one has a code.
        exit_code: if status.is_stopped() {
            state.exit_code
        } else {
            None
        },
        status,
        created_at: resp.created.as_deref().and_then(parse_time),
        started_at: state.started_at.as_deref().and_then(parse_time),
        finished_at: state.finished_at.as_deref().and_then(parse_time),
        health: state.health.and_then(|h| h.status).and_then(|s| health(&s)),
        oom_killed: state.oom_killed.unwrap_or(false),
        host_ports: host_ports(network.ports),
        ip_address,
        error: state.error.filter(|e| !e.is_empty()),
    }
}

pub(super) fn summary(s: bollard::models::ContainerSummary) -> ContainerSummary {
    ContainerSummary {
        id: ContainerId(s.id.unwrap_or_default()),
        name: s
            .names
            .unwrap_or_default()
            .first()
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        labels: labels(s.labels),
        status: s
            .state
            .map(|st| ContainerStatus::parse(st.as_ref()))
            .unwrap_or(ContainerStatus::Unknown),
    }
}

/// A container event, or `None` for actions this crate does not model (`exec_start`,
/// `attach`, ...).
pub(super) fn event(e: EventMessage) -> Option<ContainerEvent> {
    let action = e.action?;
    let actor = e.actor.unwrap_or_default();
    let mut attributes = actor.attributes.unwrap_or_default();
    let kind = match action.as_str() {
        "create" => EventKind::Create,
        "start" => EventKind::Start,
        "die" => EventKind::Die {
            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => EventKind::Oom,
        "destroy" => EventKind::Destroy,
        // Docker spells it `health_status: healthy`.
        other => match other.strip_prefix("health_status:").map(str::trim) {
            Some("starting") => EventKind::HealthStatus(Health::Starting),
            Some("healthy") => EventKind::HealthStatus(Health::Healthy),
            Some("unhealthy") => EventKind::HealthStatus(Health::Unhealthy),
            _ => return None,
        },
    };
    // Attributes mix labels with Docker's own keys; these are the ones Docker adds.
    for key in ["image", "name", "exitCode", "signal"] {
        attributes.remove(key);
    }
    let time_millis = e
        .time_nano
        .map(|n| n / 1_000_000)
        .or(e.time.map(|s| s.saturating_mul(1000)))
        .unwrap_or(0);
    Some(ContainerEvent {
        id: ContainerId(actor.id?),
        kind,
        time_millis,
        labels: attributes.into_iter().collect(),
    })
}

/// A log frame requested with `timestamps=true`: `<RFC 3339 nanos> <message>`.
pub(super) fn log_chunk(out: LogOutput) -> Option<LogChunk> {
    let (stream, message) = match out {
        LogOutput::StdOut { message } => (LogStream::Stdout, message),
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        // Not produced without a TTY or stdin attach; nothing to ship.
        LogOutput::StdIn { .. } | LogOutput::Console { .. } => return None,
    };
    let space = message.iter().position(|&b| b == b' ');
    let stamp = space
        .and_then(|i| std::str::from_utf8(&message[..i]).ok())
        .and_then(parse_time);
    Some(match (space, stamp) {
        (Some(i), Some(ts)) => LogChunk {
            stream,
            bytes: message.slice(i + 1..),
            timestamp_millis: ts,
        },
        _ => LogChunk {
            stream,
            bytes: message,
            timestamp_millis: 0,
        },
    })
}

pub(super) fn stats(s: ContainerStatsResponse) -> StatsSample {
    let cpu = s.cpu_stats.unwrap_or_default();
    let mem = s.memory_stats.unwrap_or_default();
    let usage = mem.usage.unwrap_or(0);
    // What `docker stats` subtracts: the inactive page cache, which the kernel reclaims before
    // it would OOM-kill. cgroup v1 reports it as `total_inactive_file` (hierarchical; v1's own
    // `inactive_file` leaves out child cgroups), v2 as `inactive_file`. Like the docker CLI,
    // a value not below the usage is ignored rather than driving the result to zero.
    let cache = mem
        .stats
        .as_ref()
        .and_then(|m| {
            m.get("total_inactive_file")
                .or_else(|| m.get("inactive_file"))
                .copied()
        })
        .filter(|&c| c < usage)
        .unwrap_or(0);
    let (rx, tx) = s
        .networks
        .unwrap_or_default()
        .values()
        .fold((0u64, 0u64), |(rx, tx), n| {
            (
                rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                tx.saturating_add(n.tx_bytes.unwrap_or(0)),
            )
        });
    StatsSample {
        cpu_total_ns: cpu
            .cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        system_cpu_ns: cpu.system_cpu_usage.unwrap_or(0),
        // Engines before API 1.27 send no `online_cpus`; the docker CLI then counts
        // `percpu_usage`.
        online_cpus: cpu.online_cpus.filter(|&n| n > 0).unwrap_or_else(|| {
            cpu.cpu_usage
                .as_ref()
                .and_then(|u| u.percpu_usage.as_ref())
                .map_or(0, |p| u32::try_from(p.len()).unwrap_or(u32::MAX))
        }),
        memory_usage_bytes: usage.saturating_sub(cache),
        memory_limit_bytes: mem.limit.unwrap_or(0),
        network_rx_bytes: rx,
        network_tx_bytes: tx,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::spec::{HealthCheck, LogConfig, PortMapping, Ulimit};

    fn full_spec() -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            image: "local/busybox:1".into(),
            command: Some(vec!["sh".into(), "-c".into(), "echo hi".into()]),
            entrypoint: Some(vec!["/bin/env".into()]),
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            working_dir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
            hostname: Some("web-1".into()),
            labels: BTreeMap::from([("com.amazonaws.ecs.cluster".into(), "default".into())]),
            cpu_shares: Some(256),
            memory_limit_mib: Some(512),
            memory_reservation_mib: Some(128),
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 4096,
            }],
            init: true,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["MKNOD".into()],
            privileged: false,
            readonly_rootfs: true,
            extra_hosts: vec![("db".into(), "10.0.0.5".into())],
            dns_servers: vec!["10.0.0.2".into()],
            dns_search_domains: vec![],
            stop_timeout: Some(Duration::from_secs(7)),
            network: NetworkMode::Bridge,
            ports: vec![
                PortMapping::new(80),
                PortMapping {
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_port: Some(5353),
                    host_ip: "0.0.0.0".into(),
                },
            ],
            mounts: vec![
                Mount::Bind {
                    host_path: "/srv/data".into(),
                    container_path: "/data".into(),
                    read_only: true,
                },
                Mount::Volume {
                    name: "cache".into(),
                    container_path: "/cache".into(),
                    read_only: false,
                },
                Mount::VolumesFrom {
                    container: "abc".into(),
                    read_only: true,
                },
                Mount::Tmpfs {
                    container_path: "/run".into(),
                    size_mib: Some(64),
                    options: vec!["noexec".into()],
                },
            ],
            health_check: Some(HealthCheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval_secs: Some(5),
                timeout_secs: Some(2),
                retries: Some(3),
                start_period_secs: Some(10),
            }),
            log_config: Some(LogConfig {
                driver: "json-file".into(),
                options: BTreeMap::from([("max-size".into(), "10m".into())]),
            }),
        }
    }

    #[test]
    fn every_spec_field_reaches_the_create_body() {
        let spec = full_spec();
        spec.validate().unwrap();
        let body = create_body(&spec);
        let hc = body.host_config.clone().unwrap();
        assert_eq!(body.image.as_deref(), Some("local/busybox:1"));
        assert_eq!(body.cmd.as_ref().unwrap()[2], "echo hi");
        assert_eq!(body.entrypoint, Some(vec!["/bin/env".to_string()]));
        assert_eq!(body.env, Some(vec!["A=1".to_string(), "B=x=y".to_string()]));
        assert_eq!(body.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.hostname.as_deref(), Some("web-1"));
        assert_eq!(
            body.labels.as_ref().unwrap()["com.amazonaws.ecs.cluster"],
            "default"
        );
        assert_eq!(body.stop_timeout, Some(7));
        let mut exposed = body.exposed_ports.clone().unwrap();
        exposed.sort();
        assert_eq!(exposed, vec!["53/udp", "80/tcp"]);
        let health = body.healthcheck.clone().unwrap();
        assert_eq!(health.interval, Some(5_000_000_000));
        assert_eq!(health.timeout, Some(2_000_000_000));
        assert_eq!(health.start_period, Some(10_000_000_000));
        assert_eq!(health.retries, Some(3));

        assert_eq!(hc.cpu_shares, Some(256));
        assert_eq!(hc.memory, Some(512 * MIB));
        assert_eq!(hc.memory_reservation, Some(128 * MIB));
        assert_eq!(hc.ulimits.as_ref().unwrap()[0].hard, Some(4096));
        assert_eq!(hc.init, Some(true));
        assert_eq!(hc.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(hc.cap_drop, Some(vec!["MKNOD".to_string()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.privileged, None);
        assert_eq!(hc.extra_hosts, Some(vec!["db:10.0.0.5".to_string()]));
        assert_eq!(hc.dns, Some(vec!["10.0.0.2".to_string()]));
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        let ports = hc.port_bindings.unwrap();
        let web = ports["80/tcp"].as_ref().unwrap();
        assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(web[0].host_port.as_deref(), Some(""));
        let dns = ports["53/udp"].as_ref().unwrap();
        assert_eq!(dns[0].host_port.as_deref(), Some("5353"));
        assert_eq!(
            hc.binds,
            Some(vec![
                "/srv/data:/data:ro".to_string(),
                "cache:/cache".to_string()
            ])
        );
        assert_eq!(hc.volumes_from, Some(vec!["abc:ro".to_string()]));
        assert_eq!(hc.tmpfs.unwrap()["/run"], "noexec,size=64m");
        let log = hc.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.unwrap()["max-size"], "10m");
    }

    #[test]
    fn network_modes() {
        let mut spec = ContainerSpec {
            name: "a".into(),
            image: "i".into(),
            ..Default::default()
        };
        for (mode, want) in [
            (NetworkMode::Host, "host"),
            (NetworkMode::None, "none"),
            (NetworkMode::Container("pause1".into()), "container:pause1"),
        ] {
            spec.network = mode;
            let hc = create_body(&spec).host_config.unwrap();
            assert_eq!(hc.network_mode.as_deref(), Some(want));
        }
    }

    #[test]
    fn times_and_arch() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("garbage"), None);
        assert_eq!(
            parse_time("2024-01-02T03:04:05.678901234Z"),
            Some(1_704_164_645_678)
        );
        assert_eq!(ecs_arch("aarch64"), "arm64");
        assert_eq!(ecs_arch("x86_64"), "x86_64");
    }

    #[test]
    fn log_lines_lose_their_timestamp_prefix() {
        let c = log_chunk(LogOutput::StdErr {
            message: bytes::Bytes::from_static(b"2024-01-02T03:04:05.000000001Z hi there\n"),
        })
        .unwrap();
        assert_eq!(c.stream, LogStream::Stderr);
        assert_eq!(&c.bytes[..], b"hi there\n");
        assert_eq!(c.timestamp_millis, 1_704_164_645_000);
        // Without a stamp the bytes pass through whole.
        let c = log_chunk(LogOutput::StdOut {
            message: bytes::Bytes::from_static(b"plain"),
        })
        .unwrap();
        assert_eq!(&c.bytes[..], b"plain");
    }

    #[test]
    fn events_parse_health_and_die() {
        let msg = |action: &str, attrs: &[(&str, &str)]| EventMessage {
            action: Some(action.into()),
            actor: Some(bollard::models::EventActor {
                id: Some("c1".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            time_nano: Some(1_500_000_000),
            ..Default::default()
        };
        let e = event(msg(
            "die",
            &[("exitCode", "3"), ("app", "x"), ("name", "n")],
        ))
        .unwrap();
        assert_eq!(e.kind, EventKind::Die { exit_code: Some(3) });
        assert_eq!(e.time_millis, 1500);
        assert_eq!(e.labels, BTreeMap::from([("app".into(), "x".into())]));
        let e = event(msg("health_status: healthy", &[])).unwrap();
        assert_eq!(e.kind, EventKind::HealthStatus(Health::Healthy));
        assert!(event(msg("exec_start: sh", &[])).is_none());
    }

    fn stats_response(memory: &[(&str, u64)], online_cpus: Option<u32>) -> ContainerStatsResponse {
        ContainerStatsResponse {
            cpu_stats: Some(bollard::models::ContainerCpuStats {
                cpu_usage: Some(bollard::models::ContainerCpuUsage {
                    total_usage: Some(7_000_000_000),
                    percpu_usage: Some(vec![1, 2, 3]),
                    ..Default::default()
                }),
                system_cpu_usage: Some(90_000_000_000),
                online_cpus,
                ..Default::default()
            }),
            memory_stats: Some(bollard::models::ContainerMemoryStats {
                usage: Some(100 * MIB as u64),
                limit: Some(512 * MIB as u64),
                stats: Some(memory.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn stats_compute_memory_as_docker_stats_does() {
        let mib = MIB as u64;
        // cgroup v2: usage less `inactive_file`.
        let v2 = stats(stats_response(&[("inactive_file", 30 * mib)], Some(2)));
        assert_eq!(v2.memory_usage_bytes, 70 * mib);
        assert_eq!(v2.memory_limit_bytes, 512 * mib);
        assert_eq!(v2.cpu_total_ns, 7_000_000_000);
        assert_eq!(v2.system_cpu_ns, 90_000_000_000);
        assert_eq!(v2.online_cpus, 2);
        // cgroup v1 reports both; the hierarchical `total_inactive_file` is the one subtracted.
        let v1 = stats(stats_response(
            &[
                ("inactive_file", 5 * mib),
                ("total_inactive_file", 40 * mib),
            ],
            Some(2),
        ));
        assert_eq!(v1.memory_usage_bytes, 60 * mib);
        // A cache figure not below the usage is ignored, as the docker CLI does.
        let odd = stats(stats_response(&[("inactive_file", 200 * mib)], Some(2)));
        assert_eq!(odd.memory_usage_bytes, 100 * mib);
        // No `online_cpus` (old engines): the per-CPU list's length.
        assert_eq!(stats(stats_response(&[], None)).online_cpus, 3);
        assert_eq!(
            stats(ContainerStatsResponse::default()),
            StatsSample::default()
        );
    }

    #[test]
    fn repo_digest_picks_the_matching_repository() {
        let digests = vec![
            "other/x@sha256:aa".to_string(),
            "127.0.0.1:5000/app@sha256:bb".to_string(),
        ];
        assert_eq!(
            repo_digest("127.0.0.1:5000/app", &digests).as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(repo_digest("nope", &[]), None);
    }
}
