//! ECS task definition + overrides (wire JSON) → berth's plan of the task's containers, in start
//! order. Pure: no I/O, no clock; everything the ECS agent derives from a `ContainerDefinition`
//! is decided here so it can be tested without Docker.

use berth_agent_api::{AssignedTask, labels};
use berth_runtime::{
    ContainerSpec, HealthCheck, Mount, NetworkMode as RtNetworkMode, PortMapping, Protocol, Ulimit,
    VolumeSpec,
};
use berth_shapes::ecs::{ContainerDefinition, ContainerOverride, TaskDefinition, TaskOverride};
use std::collections::BTreeMap;
use std::time::Duration;

/// ECS's default `stopTimeout` on EC2 (the agent's `ECS_CONTAINER_STOP_TIMEOUT`).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The ECS agent never gives a container fewer CPU shares than this (Docker's own minimum).
const MIN_CPU_SHARES: i64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("the task definition does not parse: {0}")]
    TaskDefinition(String),
    #[error("the overrides do not parse: {0}")]
    Overrides(String),
    #[error("the task definition has no containers")]
    NoContainers,
    #[error("a container definition has no {0}")]
    Missing(&'static str),
    #[error("two containers are named {0}")]
    DuplicateName(String),
    #[error("container {container} depends on {target}, which is not in the task")]
    UnknownDependency { container: String, target: String },
    #[error(
        "container {container} waits for {target} to be HEALTHY, but {target} has no health check"
    )]
    HealthyWithoutCheck { container: String, target: String },
    #[error("unknown dependsOn condition {0}")]
    UnknownCondition(String),
    #[error("the containers' dependsOn form a cycle through {0}")]
    Cycle(String),
    #[error("container {container} mounts volume {volume}, which the task does not define")]
    UnknownVolume { container: String, volume: String },
    #[error("container {container} takes volumes from {from}, which is not in the task")]
    UnknownVolumesFrom { container: String, from: String },
    #[error("network mode {0} is not supported")]
    NetworkMode(String),
    #[error("port mapping of container {container}: {detail}")]
    Port { container: String, detail: String },
    #[error("the task has no essential container")]
    NoEssential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Bridge,
    Host,
    None,
    /// One network namespace per task, held by a holder container the task's containers join.
    Awsvpc,
}

impl NetworkMode {
    /// ECS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
            NetworkMode::Awsvpc => "awsvpc",
        }
    }

    fn parse(s: Option<&str>) -> Result<NetworkMode, TranslateError> {
        // ECS on EC2 (Linux) defaults to bridge when the definition names no mode.
        match s.unwrap_or("bridge") {
            "bridge" => Ok(NetworkMode::Bridge),
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            "awsvpc" => Ok(NetworkMode::Awsvpc),
            other => Err(TranslateError::NetworkMode(other.into())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Start,
    Complete,
    Success,
    Healthy,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Start => "START",
            Condition::Complete => "COMPLETE",
            Condition::Success => "SUCCESS",
            Condition::Healthy => "HEALTHY",
        }
    }

    fn parse(s: &str) -> Result<Condition, TranslateError> {
        match s {
            "START" => Ok(Condition::Start),
            "COMPLETE" => Ok(Condition::Complete),
            "SUCCESS" => Ok(Condition::Success),
            "HEALTHY" => Ok(Condition::Healthy),
            other => Err(TranslateError::UnknownCondition(other.into())),
        }
    }
}

/// `dependency` is an index into [`TaskPlan::containers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    pub container: usize,
    pub condition: Condition,
}

/// One container of the task: what the supervisor needs to order, watch and stop it, and the
/// runtime spec to create it with.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// The name in the task definition.
    pub name: String,
    pub essential: bool,
    pub depends_on: Vec<Dependency>,
    pub stop_timeout: Duration,
    /// `logDriver: awslogs`: where the agent ships the container's output.
    pub awslogs: Option<crate::logship::AwsLogs>,
    /// The container names `secrets` or `repositoryCredentials`, which the server resolves
    /// before the pull (their values are added to `spec` then, never kept in the plan).
    pub needs_secrets: bool,
    /// What the task metadata endpoint reports of the container beyond its spec.
    pub metadata: ContainerMetadataPlan,
    /// `spec.name` is deterministic per task (`ecs-<family>-<rev>-<name>-<task id>`), so a create
    /// repeated after a crash finds the container it made instead of making a second one.
    pub spec: ContainerSpec,
}

/// A container's task-metadata facts that its runtime spec does not carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMetadataPlan {
    /// The id in the container's metadata URI; `None` when it was given no URI.
    pub token: Option<String>,
    /// The definition's `cpu` units (ECS's container `Limits.CPU`).
    pub cpu: i32,
    /// The container's ARN, as the control plane made it.
    pub arn: Option<String>,
    pub log_driver: Option<String>,
    pub log_options: BTreeMap<String, String>,
}

/// The task-level `cpu` and `memory` of the definition, as the metadata endpoint reports them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TaskLimits {
    pub vcpu: Option<f64>,
    pub memory_mib: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    pub task_arn: String,
    /// The last segment of the task ARN.
    pub task_id: String,
    pub family: String,
    pub revision: i32,
    pub network_mode: NetworkMode,
    /// In start order: every container comes after the containers it depends on.
    pub containers: Vec<ContainerPlan>,
    /// Named Docker volumes to create before the containers.
    pub volumes: Vec<VolumePlan>,
    /// `awsvpc` only: the container that holds the task's network namespace (and publishes its
    /// ports); created and started before, and stopped after, every other container.
    pub holder: Option<ContainerSpec>,
    pub limits: TaskLimits,
    /// The service the task belongs to (its group is `service:<name>`).
    pub service_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub spec: VolumeSpec,
    /// Task-scoped volumes are named per task and removed with the task's containers.
    pub task_scoped: bool,
}

/// Node settings translation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    pub cluster: String,
    pub instance_id: String,
    /// Host address published ports bind to.
    pub bind_address: String,
    /// Image of the `awsvpc` namespace holder.
    pub holder_image: String,
    /// The task metadata endpoint, when the agent serves one.
    pub metadata: Option<crate::metadata::Endpoints>,
}

impl TaskPlan {
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.containers.iter().position(|c| c.name == name)
    }
}

/// The container name ECS gives the namespace holder, kept as the label value too.
pub const HOLDER_CONTAINER_NAME: &str = "~internal~ecs~pause";

/// Builds the plan of `task` for the node described by `node`.
pub fn plan(task: &AssignedTask, node: &NodeContext) -> Result<TaskPlan, TranslateError> {
    let def: TaskDefinition = serde_json::from_value(task.task_definition.clone())
        .map_err(|e| TranslateError::TaskDefinition(e.to_string()))?;
    let overrides: TaskOverride = if task.overrides.is_null() {
        TaskOverride::default()
    } else {
        serde_json::from_value(task.overrides.clone())
            .map_err(|e| TranslateError::Overrides(e.to_string()))?
    };
    let family = def.family.clone().unwrap_or_default();
    let revision = def.revision.unwrap_or(0);
    let task_id = task_id(&task.task_arn).to_string();
    let network_mode = NetworkMode::parse(def.network_mode.as_deref())?;
    let defs = def.container_definitions.clone().unwrap_or_default();
    if defs.is_empty() {
        return Err(TranslateError::NoContainers);
    }
    let mut names: Vec<String> = Vec::with_capacity(defs.len());
    for d in &defs {
        let name = d.name.clone().ok_or(TranslateError::Missing("name"))?;
        if names.contains(&name) {
            return Err(TranslateError::DuplicateName(name));
        }
        names.push(name);
    }
    let order = start_order(&defs, &names)?;

    let volumes = volume_plans(&def, &task_id);
    let common_labels = BTreeMap::from([
        (labels::CLUSTER.to_string(), node.cluster.clone()),
        (labels::TASK_ARN.to_string(), task.task_arn.clone()),
        (labels::FAMILY.to_string(), family.clone()),
        (labels::REVISION.to_string(), revision.to_string()),
        (labels::INSTANCE.to_string(), node.instance_id.clone()),
    ]);
    let docker_name = |name: &str| format!("ecs-{family}-{revision}-{name}-{task_id}");
    let holder_name = docker_name("internalecspause");
    let cx = ContainerContext {
        task_id: &task_id,
        network_mode,
        common_labels: &common_labels,
        def: &def,
        volumes: &volumes,
        defs: &defs,
        names: &names,
        order: &order,
        bind_address: &node.bind_address,
        task_arn: &task.task_arn,
        container_arns: &task.container_arns,
        metadata: node.metadata.as_ref(),
        docker_name: &docker_name,
        holder_name: &holder_name,
    };

    let mut containers = Vec::with_capacity(defs.len());
    for &i in &order {
        let name = &names[i];
        let o = overrides
            .container_overrides
            .iter()
            .flatten()
            .find(|o| o.name.as_deref() == Some(name.as_str()));
        containers.push(container_plan(&defs[i], o, name, &cx)?);
    }
    if !containers.iter().any(|c| c.essential) {
        return Err(TranslateError::NoEssential);
    }
    let holder = (network_mode == NetworkMode::Awsvpc).then(|| {
        holder_spec(
            holder_name.clone(),
            &node.holder_image,
            &common_labels,
            &mut containers,
        )
    });
    Ok(TaskPlan {
        task_arn: task.task_arn.clone(),
        task_id,
        family,
        revision,
        network_mode,
        containers,
        volumes,
        holder,
        limits: TaskLimits {
            vcpu: def.cpu.as_deref().and_then(task_vcpu),
            memory_mib: def.memory.as_deref().and_then(task_memory_mib),
        },
        service_name: task
            .group
            .as_deref()
            .and_then(|g| g.strip_prefix("service:"))
            .map(str::to_owned),
    })
}

/// A task-level `cpu`: CPU units (`256`) or vCPUs (`0.25 vCPU`), in vCPUs.
fn task_vcpu(cpu: &str) -> Option<f64> {
    let cpu = cpu.trim();
    let lower = cpu.to_ascii_lowercase();
    match lower.strip_suffix("vcpu") {
        Some(v) => v.trim().parse().ok(),
        None => cpu.parse::<f64>().ok().map(|units| units / 1024.0),
    }
    .filter(|v: &f64| v.is_finite() && *v > 0.0)
}

/// A task-level `memory`: MiB (`512`) or GB (`1 GB`), in MiB.
fn task_memory_mib(memory: &str) -> Option<u64> {
    let lower = memory.trim().to_ascii_lowercase();
    let mib = match lower.strip_suffix("gb") {
        Some(gb) => gb.trim().parse::<f64>().ok()? * 1024.0,
        None => lower
            .strip_suffix("mb")
            .unwrap_or(&lower)
            .trim()
            .parse::<f64>()
            .ok()?,
    };
    (mib.is_finite() && mib > 0.0).then(|| mib.round() as u64)
}

/// The `awsvpc` namespace holder: a container that only sleeps, so the namespace outlives any of
/// the task's own containers. The network settings that Docker allows only on a namespace's
/// owner (published ports, extra hosts, DNS) move from the task's containers to it.
fn holder_spec(
    name: String,
    image: &str,
    common_labels: &BTreeMap<String, String>,
    containers: &mut [ContainerPlan],
) -> ContainerSpec {
    let mut labels = common_labels.clone();
    labels.insert(labels::CONTAINER_NAME.into(), HOLDER_CONTAINER_NAME.into());
    let mut spec = ContainerSpec {
        name,
        image: image.to_string(),
        // busybox's sleep takes no `infinity`; 2^31-1 seconds is 68 years. An absolute path,
        // since an imported image has no PATH of its own.
        entrypoint: Some(vec!["/bin/sleep".into()]),
        command: Some(vec!["2147483647".into()]),
        labels,
        cpu_shares: Some(MIN_CPU_SHARES),
        network: RtNetworkMode::Bridge,
        ..ContainerSpec::default()
    };
    for c in containers.iter_mut() {
        spec.ports.append(&mut c.spec.ports);
        spec.extra_hosts.append(&mut c.spec.extra_hosts);
        spec.dns_servers.append(&mut c.spec.dns_servers);
        spec.dns_search_domains
            .append(&mut c.spec.dns_search_domains);
        c.spec.hostname = None;
    }
    spec
}

/// The task id: the last `/` segment of the ARN (`arn:…:task/cluster/ID`).
pub fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

struct ContainerContext<'a> {
    task_id: &'a str,
    network_mode: NetworkMode,
    common_labels: &'a BTreeMap<String, String>,
    def: &'a TaskDefinition,
    volumes: &'a [VolumePlan],
    defs: &'a [ContainerDefinition],
    names: &'a [String],
    /// Definition indexes in start order.
    order: &'a [usize],
    bind_address: &'a str,
    task_arn: &'a str,
    container_arns: &'a BTreeMap<String, String>,
    metadata: Option<&'a crate::metadata::Endpoints>,
    docker_name: &'a dyn Fn(&str) -> String,
    holder_name: &'a str,
}

impl ContainerContext<'_> {
    /// Plan index (start order) of the container named `name`.
    fn index(&self, name: &str) -> Option<usize> {
        let i = self.names.iter().position(|n| n == name)?;
        self.order.iter().position(|&j| j == i)
    }
}

fn container_plan(
    d: &ContainerDefinition,
    o: Option<&ContainerOverride>,
    name: &str,
    cx: &ContainerContext<'_>,
) -> Result<ContainerPlan, TranslateError> {
    let image = d.image.clone().ok_or(TranslateError::Missing("image"))?;

    let mut env: Vec<(String, String)> = Vec::new();
    let pairs = d
        .environment
        .iter()
        .flatten()
        .chain(o.and_then(|o| o.environment.as_ref()).into_iter().flatten());
    for kv in pairs {
        let Some(k) = kv.name.clone() else { continue };
        let v = kv.value.clone().unwrap_or_default();
        match env.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    }

    // The task metadata endpoint, where the agent serves one this container can reach; a
    // variable the definition sets itself is left as it is.
    let metadata_base = cx.metadata.and_then(|m| m.base_for(cx.network_mode));
    let token = cx
        .metadata
        .filter(|_| metadata_base.is_some())
        .map(|m| m.key.token(cx.task_arn, name));
    if let (Some(base), Some(token)) = (metadata_base, &token) {
        for (var, version) in [
            (crate::metadata::ENV_V4, "v4"),
            (crate::metadata::ENV_V3, "v3"),
        ] {
            if !env.iter().any(|(n, _)| n == var) {
                env.push((var.to_string(), format!("{base}/{version}/{token}")));
            }
        }
    }

    let cpu = o.and_then(|o| o.cpu).or(d.cpu).unwrap_or(0);
    let memory = o.and_then(|o| o.memory).or(d.memory);
    let reservation = o
        .and_then(|o| o.memory_reservation)
        .or(d.memory_reservation);

    let mut depends_on = Vec::new();
    for dep in d.depends_on.iter().flatten() {
        let target = dep.container_name.clone().unwrap_or_default();
        let condition = Condition::parse(dep.condition.as_deref().unwrap_or("START"))?;
        let container = cx
            .index(&target)
            .ok_or_else(|| TranslateError::UnknownDependency {
                container: name.into(),
                target: target.clone(),
            })?;
        if condition == Condition::Healthy {
            let has_check = cx
                .names
                .iter()
                .position(|n| *n == target)
                .is_some_and(|i| cx.defs[i].health_check.is_some());
            if !has_check {
                return Err(TranslateError::HealthyWithoutCheck {
                    container: name.into(),
                    target,
                });
            }
        }
        depends_on.push(Dependency {
            container,
            condition,
        });
    }

    let mut ports = Vec::new();
    for p in d.port_mappings.iter().flatten() {
        let port_err = |detail: String| TranslateError::Port {
            container: name.into(),
            detail,
        };
        let Some(cp) = p.container_port else {
            // A range (`containerPortRange`) needs Docker port-range publishing; not yet.
            return Err(port_err("containerPortRange is not supported yet".into()));
        };
        let container_port = u16::try_from(cp)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| port_err(format!("containerPort {cp} is out of range")))?;
        let protocol = p.protocol.as_deref().unwrap_or("tcp");
        let protocol = Protocol::parse(protocol)
            .ok_or_else(|| port_err(format!("protocol {protocol} is not tcp or udp")))?;
        let host_port = match p.host_port {
            None | Some(0) => None,
            Some(hp) => Some(
                u16::try_from(hp)
                    .map_err(|_| port_err(format!("hostPort {hp} is out of range")))?,
            ),
        };
        match cx.network_mode {
            // The container binds the host's ports itself; nothing is published.
            NetworkMode::Host | NetworkMode::None => {}
            // ECS publishes bridge ports through Docker: a dynamic host port when none is given.
            // awsvpc ports move to the namespace holder (see `holder_spec`).
            NetworkMode::Bridge | NetworkMode::Awsvpc => ports.push(PortMapping {
                container_port,
                protocol,
                host_port,
                host_ip: cx.bind_address.to_string(),
            }),
        }
    }

    let health_check = d.health_check.as_ref().and_then(|h| {
        let test = h.command.clone().filter(|c| !c.is_empty())?;
        // ECS's defaults: 30 s interval, 5 s timeout, 3 retries, no start period.
        let secs = |v: Option<i32>, default: u32| {
            Some(v.and_then(|v| u32::try_from(v).ok()).unwrap_or(default))
        };
        Some(HealthCheck {
            test,
            interval_secs: secs(h.interval, 30),
            timeout_secs: secs(h.timeout, 5),
            retries: secs(h.retries, 3),
            start_period_secs: secs(h.start_period, 0),
        })
    });

    let mut mounts = Vec::new();
    for m in d.mount_points.iter().flatten() {
        let volume = m.source_volume.clone().unwrap_or_default();
        let unknown = || TranslateError::UnknownVolume {
            container: name.into(),
            volume: volume.clone(),
        };
        let v = cx
            .def
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name.as_deref() == Some(volume.as_str()))
            .ok_or_else(unknown)?;
        let container_path = m.container_path.clone().unwrap_or_default();
        let read_only = m.read_only.unwrap_or(false);
        mounts.push(match v.host.as_ref().and_then(|h| h.source_path.clone()) {
            Some(host_path) => Mount::Bind {
                host_path,
                container_path,
                read_only,
            },
            None => Mount::Volume {
                name: docker_volume_name(&volume, cx.volumes, cx.task_id),
                container_path,
                read_only,
            },
        });
    }
    for v in d.volumes_from.iter().flatten() {
        let source = v.source_container.clone().unwrap_or_default();
        if cx.index(&source).is_none() {
            return Err(TranslateError::UnknownVolumesFrom {
                container: name.into(),
                from: source,
            });
        }
        // Docker accepts a container name here, and the source's name is known in advance.
        mounts.push(Mount::VolumesFrom {
            container: (cx.docker_name)(&source),
            read_only: v.read_only.unwrap_or(false),
        });
    }
    for t in d
        .linux_parameters
        .as_ref()
        .and_then(|l| l.tmpfs.as_ref())
        .into_iter()
        .flatten()
    {
        mounts.push(Mount::Tmpfs {
            container_path: t.container_path.clone().unwrap_or_default(),
            size_mib: t.size.and_then(|s| u64::try_from(s).ok()),
            options: t.mount_options.clone().unwrap_or_default(),
        });
    }

    // User labels first, so the ECS agent's own labels win, as they do on ECS.
    let mut labels: BTreeMap<String, String> = d.docker_labels.clone().unwrap_or_default();
    labels.extend(cx.common_labels.clone());
    labels.insert(labels::CONTAINER_NAME.into(), name.into());

    let linux = d.linux_parameters.as_ref();
    let caps = linux.and_then(|l| l.capabilities.as_ref());
    let stop_timeout = d
        .stop_timeout
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    let network = match cx.network_mode {
        NetworkMode::Bridge => RtNetworkMode::Bridge,
        NetworkMode::Host => RtNetworkMode::Host,
        NetworkMode::None => RtNetworkMode::None,
        NetworkMode::Awsvpc => RtNetworkMode::Container(cx.holder_name.to_string()),
    };
    let spec = ContainerSpec {
        name: (cx.docker_name)(name),
        image,
        command: o
            .and_then(|o| o.command.clone())
            .or_else(|| d.command.clone()),
        entrypoint: d.entry_point.clone(),
        env,
        working_dir: d.working_directory.clone(),
        user: d.user.clone(),
        hostname: match cx.network_mode {
            // Docker refuses a hostname in host mode; ECS refuses it at registration.
            NetworkMode::Host => None,
            _ => d.hostname.clone(),
        },
        labels,
        cpu_shares: Some(i64::from(cpu).max(MIN_CPU_SHARES)),
        memory_limit_mib: memory.and_then(|m| u64::try_from(m).ok()),
        memory_reservation_mib: reservation.and_then(|m| u64::try_from(m).ok()),
        ulimits: d
            .ulimits
            .iter()
            .flatten()
            .filter_map(|u| {
                Some(Ulimit {
                    name: u.name.clone()?,
                    soft: i64::from(u.soft_limit?),
                    hard: i64::from(u.hard_limit?),
                })
            })
            .collect(),
        init: linux.and_then(|l| l.init_process_enabled).unwrap_or(false),
        cap_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        privileged: d.privileged.unwrap_or(false),
        readonly_rootfs: d.readonly_root_filesystem.unwrap_or(false),
        extra_hosts: d
            .extra_hosts
            .iter()
            .flatten()
            .filter_map(|h| Some((h.hostname.clone()?, h.ip_address.clone()?)))
            .collect(),
        dns_servers: d.dns_servers.clone().unwrap_or_default(),
        dns_search_domains: d.dns_search_domains.clone().unwrap_or_default(),
        stop_timeout: Some(stop_timeout),
        network,
        ports,
        mounts,
        health_check,
        // Left to the runtime's default (json-file), so `docker logs` works; `awslogs` is
        // shipped by the agent itself.
        log_config: None,
    };
    Ok(ContainerPlan {
        name: name.into(),
        essential: d.essential.unwrap_or(true),
        depends_on,
        stop_timeout,
        awslogs: crate::logship::AwsLogs::of(d.log_configuration.as_ref()),
        metadata: ContainerMetadataPlan {
            token,
            cpu,
            arn: cx.container_arns.get(name).cloned(),
            log_driver: d
                .log_configuration
                .as_ref()
                .and_then(|l| l.log_driver.clone()),
            log_options: d
                .log_configuration
                .as_ref()
                .and_then(|l| l.options.clone())
                .unwrap_or_default(),
        },
        needs_secrets: d.secrets.as_ref().is_some_and(|s| !s.is_empty())
            || d.repository_credentials.is_some(),
        spec,
    })
}

/// The Docker volumes the task's definition asks for. `host` without a `sourcePath` is, as on
/// ECS, a Docker-managed volume that lives as long as the task.
fn volume_plans(def: &TaskDefinition, task_id: &str) -> Vec<VolumePlan> {
    let mut out = Vec::new();
    for v in def.volumes.iter().flatten() {
        let Some(name) = v.name.clone() else { continue };
        if v.host.as_ref().is_some_and(|h| h.source_path.is_some()) {
            continue;
        }
        let dv = v.docker_volume_configuration.as_ref();
        // ECS's default scope is `task`; a `shared` volume outlives the task under its own name.
        let task_scoped = dv.and_then(|d| d.scope.as_deref()) != Some("shared");
        out.push(VolumePlan {
            spec: VolumeSpec {
                name: if task_scoped {
                    format!("ecs-{task_id}-{name}")
                } else {
                    name
                },
                driver: dv.and_then(|d| d.driver.clone()),
                driver_opts: dv.and_then(|d| d.driver_opts.clone()).unwrap_or_default(),
                labels: dv.and_then(|d| d.labels.clone()).unwrap_or_default(),
            },
            task_scoped,
        });
    }
    out
}

fn docker_volume_name(volume: &str, plans: &[VolumePlan], task_id: &str) -> String {
    let scoped = format!("ecs-{task_id}-{volume}");
    if plans.iter().any(|p| p.spec.name == scoped) {
        scoped
    } else {
        volume.to_string()
    }
}

/// Definition indexes in start order: a stable topological sort (definition order among
/// containers that are free to start), failing on a cycle as ECS's registration does.
fn start_order(
    defs: &[ContainerDefinition],
    names: &[String],
) -> Result<Vec<usize>, TranslateError> {
    let n = defs.len();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in defs.iter().enumerate() {
        for dep in d.depends_on.iter().flatten() {
            let target = dep.container_name.clone().unwrap_or_default();
            let j = names.iter().position(|n| *n == target).ok_or_else(|| {
                TranslateError::UnknownDependency {
                    container: names[i].clone(),
                    target,
                }
            })?;
            deps[i].push(j);
        }
        // volumesFrom needs its source to exist first.
        for v in d.volumes_from.iter().flatten() {
            let source = v.source_container.clone().unwrap_or_default();
            let j = names.iter().position(|n| *n == source).ok_or_else(|| {
                TranslateError::UnknownVolumesFrom {
                    container: names[i].clone(),
                    from: source,
                }
            })?;
            deps[i].push(j);
        }
    }
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&j| placed[j] && j != i));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                let stuck = (0..n).find(|&i| !placed[i]).unwrap_or(0);
                return Err(TranslateError::Cycle(names[stuck].clone()));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(def: serde_json::Value, overrides: serde_json::Value) -> AssignedTask {
        AssignedTask {
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/abc123".into(),
            desired_status: "RUNNING".into(),
            task_definition: def,
            overrides,
            reserved_ports: vec![],
            stop_reason: None,
            group: None,
            container_arns: Default::default(),
        }
    }

    fn node() -> NodeContext {
        NodeContext {
            cluster: "default".into(),
            instance_id: "inst-1".into(),
            bind_address: "127.0.0.1".into(),
            holder_image: "berth/pause:1".into(),
            metadata: None,
        }
    }

    fn plan_of(def: serde_json::Value) -> Result<TaskPlan, TranslateError> {
        plan(&task(def, json!(null)), &node())
    }

    fn web_app(network_mode: &str) -> serde_json::Value {
        json!({
            "family": "shop",
            "revision": 7,
            "networkMode": network_mode,
            "volumes": [
                {"name": "logs", "host": {"sourcePath": "/var/log/shop"}},
                {"name": "scratch", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}},
                {"name": "cache", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true}}
            ],
            "containerDefinitions": [
                {
                    "name": "web",
                    "image": "shop/web:1",
                    "cpu": 256,
                    "memory": 512,
                    "memoryReservation": 256,
                    "essential": true,
                    "entryPoint": ["/bin/sh", "-c"],
                    "command": ["serve"],
                    "environment": [{"name": "MODE", "value": "prod"}, {"name": "PORT", "value": "80"}],
                    "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081, "protocol": "udp"}],
                    "healthCheck": {"command": ["CMD-SHELL", "wget -q -O- localhost"], "interval": 10},
                    "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}, {"containerName": "proxy", "condition": "START"}],
                    "mountPoints": [
                        {"sourceVolume": "logs", "containerPath": "/logs"},
                        {"sourceVolume": "scratch", "containerPath": "/tmp/s", "readOnly": true},
                        {"sourceVolume": "cache", "containerPath": "/cache"}
                    ],
                    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
                    "linuxParameters": {"initProcessEnabled": true, "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                                        "tmpfs": [{"containerPath": "/run", "size": 64}]},
                    "readonlyRootFilesystem": true,
                    "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}],
                    "dockerLabels": {"team": "shop", "com.amazonaws.ecs.cluster": "spoofed"},
                    "stopTimeout": 5,
                    "workingDirectory": "/app",
                    "user": "1000",
                    "hostname": "web1"
                },
                {"name": "migrate", "image": "shop/migrate:1", "essential": false, "memory": 64},
                {
                    "name": "proxy",
                    "image": "proxy:2",
                    "essential": true,
                    "memoryReservation": 32,
                    "volumesFrom": [{"sourceContainer": "migrate", "readOnly": true}]
                }
            ]
        })
    }

    #[test]
    fn a_realistic_task_translates_to_ordered_container_specs() {
        let overrides = json!({"containerOverrides": [
            {"name": "web", "command": ["serve", "--debug"], "environment": [{"name": "MODE", "value": "debug"}, {"name": "EXTRA", "value": "1"}], "memory": 1024}
        ]});
        let p = plan(&task(web_app("bridge"), overrides), &node()).expect("plan");
        let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
        // migrate has no deps, proxy needs migrate (volumesFrom), web needs both.
        assert_eq!(names, ["migrate", "proxy", "web"]);
        assert_eq!(p.task_id, "abc123");
        assert_eq!(p.network_mode, NetworkMode::Bridge);
        assert_eq!(p.holder, None);
        p.containers
            .iter()
            .for_each(|c| c.spec.validate().expect("the runtime accepts the spec"));

        let web = &p.containers[2];
        let s = &web.spec;
        assert_eq!(s.name, "ecs-shop-7-web-abc123");
        assert_eq!(s.image, "shop/web:1");
        assert_eq!(s.command, Some(vec!["serve".into(), "--debug".into()]));
        assert_eq!(s.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
        let env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["MODE=debug", "PORT=80", "EXTRA=1"]);
        assert_eq!(s.cpu_shares, Some(256));
        assert_eq!(s.memory_limit_mib, Some(1024));
        assert_eq!(s.memory_reservation_mib, Some(256));
        assert_eq!(web.stop_timeout, Duration::from_secs(5));
        assert_eq!(s.stop_timeout, Some(Duration::from_secs(5)));
        assert!(s.init && s.readonly_rootfs && web.essential && !s.privileged);
        assert_eq!(s.cap_add, ["NET_ADMIN"]);
        assert_eq!(s.cap_drop, ["MKNOD"]);
        assert_eq!(s.extra_hosts, [("db".to_string(), "10.0.0.5".to_string())]);
        assert_eq!(s.working_dir.as_deref(), Some("/app"));
        assert_eq!(s.user.as_deref(), Some("1000"));
        assert_eq!(s.hostname.as_deref(), Some("web1"));
        assert_eq!(s.network, RtNetworkMode::Bridge);
        assert_eq!(
            s.ulimits,
            [Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 4096
            }]
        );
        assert_eq!(
            s.ports,
            [
                PortMapping {
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_port: None,
                    host_ip: "127.0.0.1".into()
                },
                PortMapping {
                    container_port: 81,
                    protocol: Protocol::Udp,
                    host_port: Some(8081),
                    host_ip: "127.0.0.1".into()
                }
            ]
        );
        assert_eq!(
            s.health_check,
            Some(HealthCheck {
                test: vec!["CMD-SHELL".into(), "wget -q -O- localhost".into()],
                interval_secs: Some(10),
                timeout_secs: Some(5),
                retries: Some(3),
                start_period_secs: Some(0),
            })
        );
        assert_eq!(
            web.depends_on,
            [
                Dependency {
                    container: 0,
                    condition: Condition::Success
                },
                Dependency {
                    container: 1,
                    condition: Condition::Start
                }
            ]
        );
        assert_eq!(
            s.mounts,
            [
                Mount::Bind {
                    host_path: "/var/log/shop".into(),
                    container_path: "/logs".into(),
                    read_only: false
                },
                Mount::Volume {
                    name: "ecs-abc123-scratch".into(),
                    container_path: "/tmp/s".into(),
                    read_only: true
                },
                Mount::Volume {
                    name: "cache".into(),
                    container_path: "/cache".into(),
                    read_only: false
                },
                Mount::Tmpfs {
                    container_path: "/run".into(),
                    size_mib: Some(64),
                    options: vec![]
                }
            ]
        );
        // The agent's labels win over a user label of the same name.
        assert_eq!(s.labels["com.amazonaws.ecs.cluster"], "default");
        assert_eq!(s.labels["team"], "shop");
        assert_eq!(s.labels[labels::CONTAINER_NAME], "web");
        assert_eq!(s.labels[labels::TASK_ARN], p.task_arn);
        assert_eq!(s.labels[labels::FAMILY], "shop");
        assert_eq!(s.labels[labels::REVISION], "7");
        assert_eq!(s.labels[labels::INSTANCE], "inst-1");

        let migrate = &p.containers[0];
        assert!(!migrate.essential);
        // No cpu: the ECS agent's minimum shares.
        assert_eq!(migrate.spec.cpu_shares, Some(2));
        assert_eq!(migrate.stop_timeout, DEFAULT_STOP_TIMEOUT);
        assert_eq!(migrate.spec.memory_reservation_mib, None);
        let proxy = &p.containers[1];
        assert_eq!(proxy.spec.memory_limit_mib, None);
        assert_eq!(proxy.spec.memory_reservation_mib, Some(32));
        assert_eq!(
            proxy.spec.mounts,
            [Mount::VolumesFrom {
                container: "ecs-shop-7-migrate-abc123".into(),
                read_only: true
            }]
        );

        assert_eq!(p.volumes.len(), 2);
        assert!(p.volumes[0].task_scoped && p.volumes[0].spec.name == "ecs-abc123-scratch");
        assert_eq!(p.volumes[0].spec.driver.as_deref(), Some("local"));
        assert!(!p.volumes[1].task_scoped && p.volumes[1].spec.name == "cache");
    }

    #[test]
    fn awsvpc_tasks_join_a_holder_that_publishes_their_ports() {
        let p = plan_of(web_app("awsvpc")).expect("plan");
        let holder = p.holder.as_ref().expect("a namespace holder");
        assert_eq!(holder.name, "ecs-shop-7-internalecspause-abc123");
        assert_eq!(holder.image, "berth/pause:1");
        assert_eq!(holder.network, RtNetworkMode::Bridge);
        assert_eq!(holder.labels[labels::CONTAINER_NAME], HOLDER_CONTAINER_NAME);
        assert_eq!(holder.ports.len(), 2);
        assert_eq!(holder.extra_hosts.len(), 1);
        holder.validate().expect("valid holder");
        for c in &p.containers {
            assert_eq!(
                c.spec.network,
                RtNetworkMode::Container(holder.name.clone())
            );
            assert!(c.spec.ports.is_empty() && c.spec.hostname.is_none());
            c.spec.validate().expect("the runtime accepts the spec");
        }
    }

    #[test]
    fn host_mode_publishes_nothing_and_sets_no_hostname() {
        let def = json!({"family": "f", "revision": 1, "networkMode": "host", "containerDefinitions": [
            {"name": "a", "image": "i", "hostname": "x", "portMappings": [{"containerPort": 8080}]}
        ]});
        let p = plan_of(def).expect("plan");
        assert_eq!(p.network_mode, NetworkMode::Host);
        assert!(p.containers[0].spec.ports.is_empty());
        assert_eq!(p.containers[0].spec.hostname, None);
        assert_eq!(p.containers[0].spec.network, RtNetworkMode::Host);
        p.containers[0].spec.validate().expect("valid");
    }

    #[test]
    fn bad_definitions_are_refused_with_the_reason() {
        let cases = [
            (
                json!([{"name": "a", "image": "i", "dependsOn": [{"containerName": "b"}]},
                       {"name": "b", "image": "i", "dependsOn": [{"containerName": "a"}]}]),
                TranslateError::Cycle("a".into()),
            ),
            (
                json!([{"name": "a", "image": "i", "dependsOn": [{"containerName": "a"}]}]),
                TranslateError::Cycle("a".into()),
            ),
            (
                json!([{"name": "a", "image": "i", "dependsOn": [{"containerName": "zz"}]}]),
                TranslateError::UnknownDependency {
                    container: "a".into(),
                    target: "zz".into(),
                },
            ),
            (
                json!([{"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "HEALTHY"}]},
                       {"name": "b", "image": "i"}]),
                TranslateError::HealthyWithoutCheck {
                    container: "a".into(),
                    target: "b".into(),
                },
            ),
            (
                json!([{"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "SOON"}]},
                       {"name": "b", "image": "i"}]),
                TranslateError::UnknownCondition("SOON".into()),
            ),
            (
                json!([{"name": "a", "image": "i", "mountPoints": [{"sourceVolume": "v", "containerPath": "/v"}]}]),
                TranslateError::UnknownVolume {
                    container: "a".into(),
                    volume: "v".into(),
                },
            ),
            (
                json!([{"name": "a", "image": "i", "essential": false}]),
                TranslateError::NoEssential,
            ),
            (
                json!([{"name": "a", "image": "i"}, {"name": "a", "image": "j"}]),
                TranslateError::DuplicateName("a".into()),
            ),
            (json!([{"name": "a"}]), TranslateError::Missing("image")),
            (json!([]), TranslateError::NoContainers),
        ];
        for (containers, want) in cases {
            let def = json!({"family": "f", "revision": 1, "containerDefinitions": containers});
            assert_eq!(plan_of(def), Err(want.clone()), "{containers}");
        }
        let def = json!({"family": "f", "networkMode": "nat", "containerDefinitions": [{"name": "a", "image": "i"}]});
        assert_eq!(plan_of(def), Err(TranslateError::NetworkMode("nat".into())));
    }

    #[test]
    fn containers_get_the_metadata_uri_their_network_mode_reaches() {
        let endpoints = crate::metadata::Endpoints {
            key: crate::metadata::TokenKey::from_bytes([3; 32]),
            bridge: Some("http://172.17.0.1:51679".into()),
            host: Some("http://127.0.0.1:51679".into()),
        };
        let served = NodeContext {
            metadata: Some(endpoints.clone()),
            ..node()
        };
        let uris = |mode: &str, env: serde_json::Value| {
            let def = json!({"family": "f", "revision": 1, "networkMode": mode, "containerDefinitions": [
                {"name": "a", "image": "i", "environment": env}
            ]});
            let p = plan(&task(def, json!(null)), &served).expect("plan");
            let c = &p.containers[0];
            let var = |name: &str| {
                c.spec
                    .env
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            (
                var(crate::metadata::ENV_V4),
                var(crate::metadata::ENV_V3),
                c.metadata.token.clone(),
            )
        };
        let token = endpoints
            .key
            .token(&task(json!({}), json!(null)).task_arn, "a");
        assert_eq!(
            uris("bridge", json!([])),
            (
                Some(format!("http://172.17.0.1:51679/v4/{token}")),
                Some(format!("http://172.17.0.1:51679/v3/{token}")),
                Some(token.clone())
            )
        );
        // The awsvpc namespace holder sits on the bridge too.
        assert_eq!(
            uris("awsvpc", json!([])).0,
            Some(format!("http://172.17.0.1:51679/v4/{token}"))
        );
        assert_eq!(
            uris("host", json!([])).0,
            Some(format!("http://127.0.0.1:51679/v4/{token}"))
        );
        assert_eq!(uris("none", json!([])), (None, None, None));
        // The definition's own value wins; the other variable is still set.
        let (v4, v3, _) = uris(
            "bridge",
            json!([{"name": "ECS_CONTAINER_METADATA_URI_V4", "value": "http://mine"}]),
        );
        assert_eq!(v4.as_deref(), Some("http://mine"));
        assert!(v3.is_some());
        // No endpoint bound for a mode: no variable, no token.
        let bridge_only = NodeContext {
            metadata: Some(crate::metadata::Endpoints {
                host: None,
                ..endpoints
            }),
            ..node()
        };
        let def = json!({"family": "f", "networkMode": "host", "containerDefinitions": [{"name": "a", "image": "i"}]});
        let p = plan(&task(def, json!(null)), &bridge_only).expect("plan");
        assert!(p.containers[0].spec.env.is_empty());
        assert_eq!(p.containers[0].metadata.token, None);
        // And none at all without an endpoint.
        let p = plan_of(web_app("bridge")).expect("plan");
        assert!(p.containers.iter().all(|c| {
            c.metadata.token.is_none()
                && c.spec
                    .env
                    .iter()
                    .all(|(k, _)| !k.starts_with("ECS_CONTAINER_METADATA"))
        }));
    }

    #[test]
    fn task_limits_read_both_spellings() {
        assert_eq!(task_vcpu("256"), Some(0.25));
        assert_eq!(task_vcpu("1 vCPU"), Some(1.0));
        assert_eq!(task_vcpu(".5 vcpu"), Some(0.5));
        assert_eq!(task_vcpu("lots"), None);
        assert_eq!(task_vcpu("0"), None);
        assert_eq!(task_memory_mib("512"), Some(512));
        assert_eq!(task_memory_mib("2 GB"), Some(2048));
        assert_eq!(task_memory_mib("0.5GB"), Some(512));
        assert_eq!(task_memory_mib("1024 MB"), Some(1024));
        assert_eq!(task_memory_mib("-1"), None);
        let p = plan_of(json!({"family": "f", "cpu": "512", "memory": "1 GB",
                               "containerDefinitions": [{"name": "a", "image": "i"}]}))
        .expect("plan");
        assert_eq!(
            p.limits,
            TaskLimits {
                vcpu: Some(0.5),
                memory_mib: Some(1024)
            }
        );
        let p = plan_of(web_app("bridge")).expect("plan");
        assert_eq!(p.limits, TaskLimits::default());
        assert_eq!(p.containers[2].metadata.cpu, 256);
    }

    #[test]
    fn a_service_task_knows_its_service_and_container_arns() {
        let mut t = task(
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]}),
            json!(null),
        );
        t.group = Some("service:web".into());
        t.container_arns
            .insert("a".into(), "arn:aws:ecs:us-east-1:0:container/c/t/1".into());
        let p = plan(&t, &node()).expect("plan");
        assert_eq!(p.service_name.as_deref(), Some("web"));
        assert_eq!(
            p.containers[0].metadata.arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:0:container/c/t/1")
        );
        t.group = Some("family:f".into());
        assert_eq!(plan(&t, &node()).expect("plan").service_name, None);
    }

    #[test]
    fn independent_containers_keep_definition_order() {
        let def = json!({"family": "f", "revision": 1, "containerDefinitions": [
            {"name": "c", "image": "i"}, {"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "COMPLETE"}]}, {"name": "b", "image": "i"}
        ]});
        let p = plan_of(def).expect("plan");
        let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
        assert_eq!(
            p.containers[2].depends_on,
            [Dependency {
                container: 1,
                condition: Condition::Complete
            }]
        );
    }
}
