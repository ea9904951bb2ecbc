//! Simple placement, as pure functions: what a task needs (CPU, memory, static host ports, from
//! its definition and overrides), whether an instance can take it, and which instance to pick
//! (the one with the most remaining memory). The scheduler issue replaces the choice with the
//! full strategy/constraint engine; the resource accounting stays.

use crate::records::Capacity;
use berth_shapes::ecs as wire;

/// Why an instance cannot take a task, as ECS names it in `failures[].reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    Cpu,
    Memory,
    Ports,
    /// The agent is disconnected or the node has no working container runtime.
    Agent,
    /// A placement constraint (here `distinctInstance`) rules it out.
    Attribute,
}

impl Misfit {
    pub fn reason(self) -> &'static str {
        match self {
            Misfit::Cpu => "RESOURCE:CPU",
            Misfit::Memory => "RESOURCE:MEMORY",
            Misfit::Ports => "RESOURCE:PORTS",
            Misfit::Agent => "AGENT",
            Misfit::Attribute => "ATTRIBUTE",
        }
    }
}

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

/// Whether `remaining` can take `need`; ECS checks CPU, then memory, then ports.
pub fn fits(remaining: &Capacity, need: &Capacity) -> Result<(), Misfit> {
    if need.cpu > remaining.cpu {
        return Err(Misfit::Cpu);
    }
    if need.memory > remaining.memory {
        return Err(Misfit::Memory);
    }
    let clash = |taken: &[u16], wanted: &[u16]| wanted.iter().any(|p| taken.contains(p));
    let dup = |v: &[u16]| v.windows(2).any(|w| w[0] == w[1]);
    if clash(&remaining.ports, &need.ports)
        || clash(&remaining.udp_ports, &need.udp_ports)
        || dup(&need.ports)
        || dup(&need.udp_ports)
    {
        return Err(Misfit::Ports);
    }
    Ok(())
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

/// One instance as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub arn: String,
    /// Connected, ACTIVE and able to run tasks.
    pub usable: bool,
    pub remaining: Capacity,
    /// Ruled out by a constraint (e.g. `distinctInstance` and a task of this call is there).
    pub excluded: bool,
}

/// Picks the usable candidate that fits `need` with the most remaining memory (ties: the first
/// in the given order, so the answer is deterministic). Otherwise every candidate's reason.
pub fn choose(candidates: &[Candidate], need: &Capacity) -> Result<usize, Vec<(String, Misfit)>> {
    let mut best: Option<usize> = None;
    let mut misfits = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let verdict = if !c.usable {
            Err(Misfit::Agent)
        } else if c.excluded {
            Err(Misfit::Attribute)
        } else {
            fits(&c.remaining, need)
        };
        match verdict {
            Ok(()) => {
                if best.is_none_or(|b| c.remaining.memory > candidates[b].remaining.memory) {
                    best = Some(i);
                }
            }
            Err(m) => misfits.push((c.arn.clone(), m)),
        }
    }
    best.ok_or(misfits)
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
    fn fits_checks_cpu_memory_ports_in_order() {
        let r = cap(1024, 512, &[22]);
        assert_eq!(fits(&r, &cap(2048, 1024, &[])), Err(Misfit::Cpu));
        assert_eq!(fits(&r, &cap(10, 1024, &[])), Err(Misfit::Memory));
        assert_eq!(fits(&r, &cap(10, 10, &[22])), Err(Misfit::Ports));
        assert_eq!(fits(&r, &cap(10, 10, &[80, 80])), Err(Misfit::Ports));
        assert_eq!(fits(&r, &cap(1024, 512, &[80])), Ok(()));
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

    #[test]
    fn choose_prefers_most_memory_and_explains_misfits() {
        let c = |arn: &str, usable, mem| Candidate {
            arn: arn.into(),
            usable,
            remaining: cap(1024, mem, &[]),
            excluded: false,
        };
        let all = [c("a", true, 100), c("b", true, 900), c("c", false, 5000)];
        assert_eq!(choose(&all, &cap(1, 50, &[])), Ok(1));
        assert_eq!(
            choose(&all, &cap(1, 1000, &[])),
            Err(vec![
                ("a".into(), Misfit::Memory),
                ("b".into(), Misfit::Memory),
                ("c".into(), Misfit::Agent)
            ])
        );
        let mut ex = all.clone();
        ex[1].excluded = true;
        assert_eq!(choose(&ex, &cap(1, 50, &[])), Ok(0));
    }
}
