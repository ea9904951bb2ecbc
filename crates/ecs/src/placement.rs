//! Resource accounting and the scheduler's view of the cluster, as pure functions: what a task
//! holds (CPU, memory, static host ports, from its definition and overrides) and how that is
//! taken from and given back to an instance; how a container instance record becomes a
//! [`berth_scheduler::Instance`] and a launch a [`berth_scheduler::Demand`]. The choice itself
//! is `berth-scheduler`'s (`tasks::place_tasks` calls it).

use crate::records::{Capacity, ContainerInstanceRecord, TaskRecord};
use berth_model::task::TaskStatus;
use berth_shapes::ecs as wire;
use std::collections::BTreeMap;

/// The host ports Docker assigns for `hostPort` 0 in bridge mode: the ephemeral range ECS
/// assumes when the kernel's is not known (`ECS_DYNAMIC_HOST_PORT_RANGE`'s default).
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 49153..=65535;

/// What a task holds on its instance: task-level cpu/memory when the definition (or the
/// override) sets them, otherwise the sum over containers (memory: the hard limit, or the
/// reservation when only that is set, as ECS reserves).
pub fn demand(def: &wire::TaskDefinition, overrides: &wire::TaskOverride) -> Capacity {
    let container_override = |name: &Option<String>| {
        overrides
            .container_overrides
            .iter()
            .flatten()
            .find(|o| o.name.is_some() && o.name == *name)
    };
    let (mut cpu, mut memory) = (0i64, 0i64);
    let (mut ports, mut udp_ports) = (Vec::new(), Vec::new());
    let host_network = def.network_mode.as_deref() == Some("host");
    let awsvpc = def.network_mode.as_deref() == Some("awsvpc");
    for c in def.container_definitions.iter().flatten() {
        let o = container_override(&c.name);
        cpu += i64::from(o.and_then(|o| o.cpu).or(c.cpu).unwrap_or(0).max(0));
        let reservation = o
            .and_then(|o| o.memory_reservation)
            .or(c.memory_reservation);
        let hard = o.and_then(|o| o.memory).or(c.memory);
        memory += i64::from(reservation.or(hard).unwrap_or(0).max(0));
        if awsvpc {
            continue;
        }
        for p in c.port_mappings.iter().flatten() {
            // In host mode the host port is the container port; in bridge mode 0 or absent
            // means Docker picks one, which needs no reservation.
            let host = match (p.host_port, host_network) {
                (Some(h), _) if h > 0 => h,
                (_, true) => p.container_port.unwrap_or(0),
                _ => 0,
            };
            let Ok(host) = u16::try_from(host) else {
                continue;
            };
            if host == 0 {
                continue;
            }
            if p.protocol.as_deref() == Some("udp") {
                udp_ports.push(host);
            } else {
                ports.push(host);
            }
        }
    }
    let task_cpu = overrides.cpu.as_deref().or(def.cpu.as_deref());
    if let Some(c) = task_cpu.and_then(berth_model::ecs::parse_task_cpu) {
        cpu = i64::from(c);
    }
    let task_memory = overrides.memory.as_deref().or(def.memory.as_deref());
    if let Some(m) = task_memory.and_then(berth_model::ecs::parse_task_memory) {
        memory = i64::from(m);
    }
    ports.sort_unstable();
    udp_ports.sort_unstable();
    Capacity {
        cpu,
        memory,
        ports,
        udp_ports,
    }
}

/// `remaining` after placing `need` (which must fit).
pub fn take(remaining: &mut Capacity, need: &Capacity) {
    remaining.cpu -= need.cpu;
    remaining.memory -= need.memory;
    remaining.ports.extend(&need.ports);
    remaining.ports.sort_unstable();
    remaining.udp_ports.extend(&need.udp_ports);
    remaining.udp_ports.sort_unstable();
}

/// `remaining` after a task holding `held` stops, never above `registered`.
pub fn release(remaining: &mut Capacity, held: &Capacity, registered: &Capacity) {
    remaining.cpu = (remaining.cpu + held.cpu).min(registered.cpu);
    remaining.memory = (remaining.memory + held.memory).min(registered.memory);
    for p in &held.ports {
        if !registered.ports.contains(p)
            && let Some(i) = remaining.ports.iter().position(|x| x == p)
        {
            remaining.ports.remove(i);
        }
    }
    for p in &held.udp_ports {
        if !registered.udp_ports.contains(p)
            && let Some(i) = remaining.udp_ports.iter().position(|x| x == p)
        {
            remaining.udp_ports.remove(i);
        }
    }
}

/// How many host ports Docker picks for a task: bridge-mode port mappings (the EC2 default
/// network mode) without a `hostPort` or with 0. Host, awsvpc and none modes pick none.
pub fn dynamic_ports(def: &wire::TaskDefinition) -> u32 {
    if !matches!(def.network_mode.as_deref(), None | Some("bridge")) {
        return 0;
    }
    let n = def
        .container_definitions
        .iter()
        .flatten()
        .flat_map(|c| c.port_mappings.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) == 0 && p.container_port_range.is_none())
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What the scheduler reserves for one task holding `need` and `dynamic` picked host ports.
pub fn scheduler_demand(need: &Capacity, dynamic: u32) -> berth_scheduler::Demand {
    berth_scheduler::Demand {
        cpu: need.cpu,
        memory: need.memory,
        tcp_ports: need.ports.clone(),
        udp_ports: need.udp_ports.clone(),
        dynamic_ports: dynamic,
    }
}

/// Container instance `r` as the scheduler (and the cluster query language) sees it.
/// `custom` are its PutAttributes attributes (added to the built-in `ecs.*` ones it registered
/// with); `tasks` are the cluster's tasks (only those on `r` not yet STOPPED count: their
/// groups, how many run, and the ephemeral ports they hold); `connected` is whether its agent
/// polled recently (`container_instances::connected`). Only an ACTIVE instance can run tasks.
pub fn to_instance<'a>(
    r: &ContainerInstanceRecord,
    custom: &[wire::Attribute],
    tasks: impl IntoIterator<Item = &'a TaskRecord>,
    connected: bool,
) -> berth_scheduler::Instance {
    let mut attributes = BTreeMap::new();
    for a in r.attributes.iter().chain(custom) {
        if let Some(name) = &a.name {
            attributes.insert(name.clone(), a.value.clone());
        }
    }
    let mut task_groups: BTreeMap<String, u32> = BTreeMap::new();
    let (mut running, mut dynamic_held) = (0u32, 0u32);
    for t in tasks {
        let status = TaskStatus::parse(&t.last_status);
        if t.container_instance_id != r.id || status.is_some_and(|s| s.is_stopped()) {
            continue;
        }
        // A task asked to stop no longer holds its group's place (as ECS counts for
        // distinctInstance and `task:group`), though it holds its resources until STOPPED.
        if t.desired_status == "RUNNING" {
            *task_groups.entry(t.group.clone()).or_default() += 1;
        }
        // Pending tasks count as running, as the tasks a batch places do: two placements a
        // moment apart must see each other.
        running += 1;
        dynamic_held = dynamic_held.saturating_add(t.dynamic_ports);
    }
    let range = u32::from(DYNAMIC_PORTS.end() - DYNAMIC_PORTS.start()) + 1;
    let taken_in_range = r
        .remaining
        .ports
        .iter()
        .chain(&r.remaining.udp_ports)
        .filter(|p| DYNAMIC_PORTS.contains(p))
        .count();
    let free_dynamic_ports = range
        .saturating_sub(u32::try_from(taken_in_range).unwrap_or(u32::MAX))
        .saturating_sub(dynamic_held);
    berth_scheduler::Instance {
        id: r.id.clone(),
        ec2_instance_id: r.ec2_instance_id.clone(),
        attributes,
        registered_at_ms: r.registered_at_ms,
        agent_connected: connected,
        agent_version: r.version_info.agent_version.clone().unwrap_or_default(),
        can_run_tasks: r.can_run_tasks && r.status == "ACTIVE",
        running_tasks_count: running,
        remaining: berth_scheduler::Resources {
            cpu: r.remaining.cpu,
            memory: r.remaining.memory,
            tcp_ports: r.remaining.ports.clone(),
            udp_ports: r.remaining.udp_ports.clone(),
            free_dynamic_ports,
        },
        task_groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(cpu: i64, memory: i64, ports: &[u16]) -> Capacity {
        Capacity {
            cpu,
            memory,
            ports: ports.to_vec(),
            udp_ports: vec![],
        }
    }

    fn def(json: serde_json::Value) -> wire::TaskDefinition {
        serde_json::from_value(json).unwrap_or_default()
    }

    #[test]
    fn demand_sums_containers_or_takes_task_level() {
        let d = def(serde_json::json!({"containerDefinitions": [
            {"name": "a", "cpu": 100, "memory": 128, "portMappings": [{"containerPort": 80, "hostPort": 8080}]},
            {"name": "b", "memoryReservation": 64, "memory": 256, "portMappings": [{"containerPort": 53, "hostPort": 53, "protocol": "udp"}, {"containerPort": 81}]}
        ]}));
        let none = wire::TaskOverride::default();
        assert_eq!(
            demand(&d, &none),
            Capacity {
                cpu: 100,
                memory: 192,
                ports: vec![8080],
                udp_ports: vec![53]
            }
        );
        let o: wire::TaskOverride = serde_json::from_value(serde_json::json!({
            "containerOverrides": [{"name": "a", "memory": 512, "cpu": 10}]
        }))
        .unwrap_or_default();
        assert_eq!(demand(&d, &o).memory, 576);
        assert_eq!(demand(&d, &o).cpu, 10);
        let task_level = def(
            serde_json::json!({"cpu": "1 vCPU", "memory": "2GB", "networkMode": "host",
            "containerDefinitions": [{"name": "a", "portMappings": [{"containerPort": 9000}]}]}),
        );
        assert_eq!(demand(&task_level, &none), cap(1024, 2048, &[9000]));
        let awsvpc = def(serde_json::json!({"networkMode": "awsvpc",
            "containerDefinitions": [{"name": "a", "memory": 5, "portMappings": [{"containerPort": 9000, "hostPort": 9000}]}]}));
        assert!(demand(&awsvpc, &none).ports.is_empty());
    }

    #[test]
    fn take_then_release_restores() {
        let registered = cap(2048, 4096, &[22]);
        let mut r = registered.clone();
        let need = cap(512, 1000, &[80]);
        take(&mut r, &need);
        assert_eq!(r, cap(1536, 3096, &[22, 80]));
        release(&mut r, &need, &registered);
        assert_eq!(r, registered);
        // Releasing twice never goes above what the instance registered.
        release(&mut r, &need, &registered);
        assert_eq!(r, registered);
    }

    fn record(id: &str) -> ContainerInstanceRecord {
        ContainerInstanceRecord {
            cluster: "default".into(),
            id: id.into(),
            arn: format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/{id}"),
            ec2_instance_id: format!("i-{id}"),
            status: "ACTIVE".into(),
            registered: cap(2048, 4096, &[22]),
            remaining: cap(1792, 3584, &[22, 8080, 50000]),
            attributes: vec![
                attr("ecs.os-type", Some("linux")),
                attr("ecs.cpu-architecture", Some("x86_64")),
                attr("ecs.instance-type", Some("m5.large")),
            ],
            version_info: wire::VersionInfo {
                agent_version: Some("1.2.3".into()),
                ..wire::VersionInfo::default()
            },
            registered_at_ms: 1_700_000_000_000,
            last_heartbeat_ms: 1_700_000_000_000,
            token_hash: None,
            can_run_tasks: true,
            cannot_run_reason: None,
            tags: vec![],
            version: 3,
        }
    }

    fn attr(name: &str, value: Option<&str>) -> wire::Attribute {
        wire::Attribute {
            name: Some(name.into()),
            value: value.map(str::to_string),
            target_type: None,
            target_id: None,
        }
    }

    fn task(
        instance: &str,
        group: &str,
        status: &str,
        definition: serde_json::Value,
    ) -> TaskRecord {
        let mut t: TaskRecord = serde_json::from_value(serde_json::json!({
            "cluster": "default", "id": "t", "arn": "arn", "cluster_arn": "c",
            "container_instance_id": instance, "container_instance_arn": "ci",
            "task_definition_arn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
            "health_checked": false, "dynamic_ports": dynamic_ports(&def(definition)),
            "overrides": {}, "last_status": status,
            "desired_status": "RUNNING", "containers": [], "group": group,
            "started_by": null, "launch_type": "EC2", "cpu": "0", "memory": "0",
            "reserved": {"cpu": 0, "memory": 0, "ports": [], "udp_ports": []},
            "created_at_ms": 0, "pull_started_at_ms": null, "pull_stopped_at_ms": null,
            "started_at_ms": null, "stopping_at_ms": null, "stopped_at_ms": null,
            "execution_stopped_at_ms": null, "connectivity_at_ms": null, "stop_code": null,
            "stopped_reason": null, "health_status": "UNKNOWN", "tags": [], "attributes": [],
            "enable_execute_command": false, "version": 1
        }))
        .unwrap_or_else(|e| panic!("task record: {e}"));
        t.id = format!("{instance}-{group}-{status}");
        t
    }

    #[test]
    fn dynamic_ports_count_bridge_mappings_without_host_port() {
        let bridge = def(serde_json::json!({"containerDefinitions": [
            {"name": "a", "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}, {"containerPort": 82, "hostPort": 8082}]},
            {"name": "b", "portMappings": [{"containerPort": 53, "protocol": "udp"}]}
        ]}));
        assert_eq!(dynamic_ports(&bridge), 3);
        let mut host = bridge.clone();
        host.network_mode = Some("host".into());
        assert_eq!(dynamic_ports(&host), 0);
        let mut awsvpc = bridge;
        awsvpc.network_mode = Some("awsvpc".into());
        assert_eq!(dynamic_ports(&awsvpc), 0);
        assert_eq!(
            scheduler_demand(&cap(256, 512, &[8082]), 3),
            berth_scheduler::Demand {
                cpu: 256,
                memory: 512,
                tcp_ports: vec![8082],
                udp_ports: vec![],
                dynamic_ports: 3
            }
        );
    }

    #[test]
    fn an_instance_record_maps_to_the_scheduler_view() {
        let r = record("a");
        let bridge = serde_json::json!({"containerDefinitions": [
            {"name": "a", "portMappings": [{"containerPort": 80}, {"containerPort": 81}]}]});
        let tasks = [
            task("a", "family:web", "RUNNING", bridge.clone()),
            task("a", "family:web", "PENDING", bridge.clone()),
            task("a", "service:api", "RUNNING", serde_json::json!({})),
            // Stopped tasks and tasks elsewhere do not count.
            task("a", "family:old", "STOPPED", bridge.clone()),
            task("b", "family:web", "RUNNING", bridge),
        ];
        let custom = [attr("stack", Some("prod")), attr("flag", None)];
        let i = to_instance(&r, &custom, &tasks, true);
        assert_eq!(i.id, "a");
        assert_eq!(i.ec2_instance_id, "i-a");
        assert_eq!(i.agent_version, "1.2.3");
        assert_eq!(i.registered_at_ms, 1_700_000_000_000);
        assert!(i.agent_connected && i.can_run_tasks);
        assert_eq!(i.attributes.get("ecs.os-type"), Some(&Some("linux".into())));
        assert_eq!(
            i.attributes.get("ecs.instance-type"),
            Some(&Some("m5.large".into()))
        );
        assert_eq!(i.attributes.get("stack"), Some(&Some("prod".into())));
        assert_eq!(i.attributes.get("flag"), Some(&None));
        assert_eq!(i.running_tasks_count, 3);
        assert_eq!(
            i.task_groups.into_iter().collect::<Vec<_>>(),
            vec![
                ("family:web".to_string(), 2),
                ("service:api".to_string(), 1)
            ]
        );
        assert_eq!(i.remaining.cpu, 1792);
        assert_eq!(i.remaining.memory, 3584);
        assert_eq!(i.remaining.tcp_ports, vec![22, 8080, 50000]);
        // 16383 ephemeral ports, less 50000 (taken statically) and 2 × 2 picked by the web tasks.
        assert_eq!(i.remaining.free_dynamic_ports, 16383 - 1 - 4);
        // The query language reads the same view.
        let e = berth_scheduler::parse(
            "attribute:stack == prod and task:group == service:api and runningTasksCount == 3",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(e.matches(&to_instance(&r, &custom, &tasks, true)));

        // Draining, a broken runtime, or a silent agent: not usable.
        let mut draining = record("a");
        draining.status = "DRAINING".into();
        assert!(!to_instance(&draining, &[], &[], true).can_run_tasks);
        let mut broken = record("a");
        broken.can_run_tasks = false;
        assert!(!to_instance(&broken, &[], &[], true).can_run_tasks);
        assert!(!to_instance(&r, &[], &[], false).agent_connected);
    }
}
