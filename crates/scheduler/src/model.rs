//! What placement reads and answers: the cluster view (instances with what remains on them), the
//! task request (demand, group, constraints, strategies, count) and the plan. Constraints and
//! strategies are built from ECS's wire strings here, so the caller maps `type`/`expression`/
//! `field` straight through and returns any error as `InvalidParameterException`.

use crate::query::{self, Expr, QueryError};
use std::collections::BTreeMap;

/// One container instance as placement sees it.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    /// The caller's identifier (container instance id or ARN); placement does not read it.
    pub id: String,
    pub ec2_instance_id: String,
    /// ECS attributes; an attribute can be set without a value.
    pub attributes: BTreeMap<String, Option<String>>,
    pub registered_at_ms: i64,
    pub agent_connected: bool,
    pub agent_version: String,
    /// ACTIVE and able to run tasks (a DRAINING instance or one with a broken runtime is not).
    pub can_run_tasks: bool,
    pub running_tasks_count: u32,
    /// What is left once running *and pending* tasks are counted: pending tasks reserve.
    pub remaining: Resources,
    /// Groups of the tasks on the instance, with how many tasks of each.
    pub task_groups: BTreeMap<String, u32>,
}

/// What an instance still offers. Ports are listed as *taken* (as ECS's `remainingResources`
/// PORTS lists them); dynamic host ports only need free ephemeral ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    pub free_dynamic_ports: u32,
}

/// What one task needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    pub cpu: i64,
    pub memory: i64,
    /// Static host ports.
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    /// Host ports Docker picks from the ephemeral range (`hostPort` 0 in bridge mode).
    pub dynamic_ports: u32,
}

impl Resources {
    pub fn get(&self, r: Resource) -> i64 {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
        }
    }

    /// Reserves `d` (which must fit: see [`crate::misfit`]).
    pub fn take(&mut self, d: &Demand) {
        self.cpu = self.cpu.saturating_sub(d.cpu);
        self.memory = self.memory.saturating_sub(d.memory);
        self.tcp_ports.extend(&d.tcp_ports);
        self.udp_ports.extend(&d.udp_ports);
        self.free_dynamic_ports = self.free_dynamic_ports.saturating_sub(d.dynamic_ports);
    }
}

impl Demand {
    pub fn get(&self, r: Resource) -> i64 {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
        }
    }
}

/// A batch of identical tasks to place (RunTask's `count`, a service's missing tasks).
#[derive(Debug, Clone, Default)]
pub struct TaskRequest {
    pub demand: Demand,
    /// `family:<name>` by default, `service:<name>` for a service's tasks.
    pub group: String,
    pub constraints: Vec<Constraint>,
    /// Applied in order; ties go to the next strategy, then to the lowest instance index.
    pub strategies: Vec<Strategy>,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Each task of the group on a different instance: no instance that already runs a task of
    /// the request's group (as `task_groups` counts them: desired RUNNING), nor two of the batch.
    DistinctInstance,
    MemberOf(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId` or `host` (the same thing for ECS).
    InstanceId,
    /// `attribute:<name>`, e.g. `attribute:ecs.availability-zone`.
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Least remaining of the resource that still fits.
    Binpack(Resource),
    /// Fewest tasks of the group per value of the field.
    Spread(SpreadField),
    Random,
}

/// Why a task was not placed, as ECS words it in `failures[].reason`. Ordered as the filters
/// run, so the latest filter any instance reached is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Agent,
    Attribute,
    Cpu,
    Memory,
    Ports,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Agent => "AGENT",
            Reason::Attribute => "ATTRIBUTE",
            Reason::Cpu => "RESOURCE:CPU",
            Reason::Memory => "RESOURCE:MEMORY",
            Reason::Ports => "RESOURCE:PORTS",
        }
    }
}

/// Task `task` (0-based within the batch) goes on `instances[instance]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub task: u32,
    pub instance: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub task: u32,
    pub reason: Reason,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    pub failures: Vec<Failure>,
}

/// A request placement refuses; every variant is a client error (`InvalidParameterException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("Unknown placement constraint type '{0}'; expected distinctInstance or memberOf.")]
    UnknownConstraint(String),
    #[error("A memberOf placement constraint requires an expression.")]
    MissingExpression,
    #[error("An expression cannot be specified for the distinctInstance placement constraint.")]
    UnexpectedExpression,
    #[error("Unknown placement strategy type '{0}'; expected binpack, spread or random.")]
    UnknownStrategy(String),
    #[error("Invalid field '{field}' for the {strategy} placement strategy; expected {expected}.")]
    InvalidField {
        strategy: &'static str,
        field: String,
        expected: &'static str,
    },
    #[error("No Container Instances were found in your cluster.")]
    NoInstances,
}

impl Constraint {
    /// From ECS's `placementConstraints[]` members.
    pub fn from_wire(kind: &str, expression: Option<&str>) -> Result<Self, PlacementError> {
        match (kind, expression) {
            ("distinctInstance", None) => Ok(Constraint::DistinctInstance),
            ("distinctInstance", Some(e)) if e.trim().is_empty() => {
                Ok(Constraint::DistinctInstance)
            }
            ("distinctInstance", Some(_)) => Err(PlacementError::UnexpectedExpression),
            ("memberOf", Some(e)) if !e.trim().is_empty() => {
                Ok(Constraint::MemberOf(query::parse(e)?))
            }
            ("memberOf", _) => Err(PlacementError::MissingExpression),
            (other, _) => Err(PlacementError::UnknownConstraint(other.to_string())),
        }
    }
}

impl Strategy {
    /// From ECS's `placementStrategy[]` members.
    pub fn from_wire(kind: &str, field: Option<&str>) -> Result<Self, PlacementError> {
        const PREFIX: &str = "attribute:";
        match kind {
            "random" => Ok(Strategy::Random),
            "binpack" => match field {
                Some(f) if f.eq_ignore_ascii_case("cpu") => Ok(Strategy::Binpack(Resource::Cpu)),
                Some(f) if f.eq_ignore_ascii_case("memory") => {
                    Ok(Strategy::Binpack(Resource::Memory))
                }
                f => Err(PlacementError::InvalidField {
                    strategy: "binpack",
                    field: f.unwrap_or_default().to_string(),
                    expected: "cpu or memory",
                }),
            },
            "spread" => match field {
                Some(f)
                    if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") =>
                {
                    Ok(Strategy::Spread(SpreadField::InstanceId))
                }
                Some(f)
                    if f.get(..PREFIX.len())
                        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
                        && f.len() > PREFIX.len() =>
                {
                    let name = f.get(PREFIX.len()..).unwrap_or_default();
                    Ok(Strategy::Spread(SpreadField::Attribute(name.to_string())))
                }
                f => Err(PlacementError::InvalidField {
                    strategy: "spread",
                    field: f.unwrap_or_default().to_string(),
                    expected: "instanceId, host or attribute:<name>",
                }),
            },
            other => Err(PlacementError::UnknownStrategy(other.to_string())),
        }
    }
}

/// An instance as it stands answers queries directly (ListContainerInstances' `filter`).
impl query::Facts for Instance {
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> &str {
        &self.agent_version
    }
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(|v| v.as_deref())
    }
    fn ec2_instance_id(&self) -> &str {
        &self.ec2_instance_id
    }
    fn registered_at_ms(&self) -> i64 {
        self.registered_at_ms
    }
    fn running_tasks_count(&self) -> u64 {
        u64::from(self.running_tasks_count)
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.task_groups.iter().any(|(g, n)| *n > 0 && pred(g))
    }
}
