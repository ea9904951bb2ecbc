//! Task definition actions: RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.
//!
//! Revisions are numbered per family from 1 and never reused; registering bumps the family
//! record and writes the revision in one transaction, so concurrent registrations of one family
//! each get their own number.

use crate::Ecs;
use crate::common::{self, arn, client, invalid, resource_name};
use crate::records::{FamilyRecord, TaskDefinitionRecord, kinds, task_definition_key};
use berth_aws::{AwsError, RequestContext};
use berth_model::ecs as rules;
use berth_shapes::ecs as wire;
use berth_store::{Expect, Op};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const MAX_CONTAINERS: usize = 10;

/// Which revision an identifier names: `family`, `family:revision`, or the full ARN.
enum Revision {
    Latest(String),
    Exact(String, i32),
}

fn parse_ident(ctx: &RequestContext, ident: &str) -> Option<Revision> {
    let rest = resource_name(ctx, ident, "task-definition")?;
    match rest.split_once(':') {
        Some((family, rev)) => {
            let rev: i32 = rev.parse().ok().filter(|r| *r > 0)?;
            rules::valid_name(family).then(|| Revision::Exact(family.to_string(), rev))
        }
        None if ident.starts_with("arn:") => None,
        None => rules::valid_name(rest).then(|| Revision::Latest(rest.to_string())),
    }
}

pub(crate) async fn find(
    ecs: &Ecs,
    ctx: &RequestContext,
    ident: &str,
) -> Result<Option<(TaskDefinitionRecord, u64)>, AwsError> {
    match parse_ident(ctx, ident) {
        None => Ok(None),
        Some(Revision::Exact(family, rev)) => {
            common::get(
                ecs,
                ctx,
                kinds::TASK_DEFINITION,
                &task_definition_key(&family, rev),
            )
            .await
        }
        Some(Revision::Latest(family)) => {
            let all = common::all::<TaskDefinitionRecord>(
                ecs,
                ctx,
                kinds::TASK_DEFINITION,
                &format!("{family},"),
            )
            .await?;
            let latest = all
                .into_iter()
                .rev()
                .find(|(_, r)| r.definition.status.as_deref() == Some("ACTIVE"));
            match latest {
                // Re-read for the version, which `all` does not carry.
                Some((key, _)) => common::get(ecs, ctx, kinds::TASK_DEFINITION, &key).await,
                None => Ok(None),
            }
        }
    }
}

/// The definitions of the revisions tasks run, each read once however many tasks name it (task
/// records name their revision rather than embed it). Revisions are immutable and their
/// records never removed, so what is read stays true but for status and deregistration dates.
#[derive(Default)]
pub(crate) struct Definitions {
    by_arn: HashMap<String, Option<Arc<wire::TaskDefinition>>>,
}

impl Definitions {
    /// The definition of revision `arn` (`None` for an ARN that names no revision).
    pub async fn get(
        &mut self,
        ecs: &Ecs,
        ctx: &RequestContext,
        arn: &str,
    ) -> Result<Option<Arc<wire::TaskDefinition>>, AwsError> {
        if let Some(found) = self.by_arn.get(arn) {
            return Ok(found.clone());
        }
        let found = match parse_ident(ctx, arn) {
            Some(Revision::Exact(family, rev)) => common::get::<TaskDefinitionRecord>(
                ecs,
                ctx,
                kinds::TASK_DEFINITION,
                &task_definition_key(&family, rev),
            )
            .await?
            .map(|(r, _)| Arc::new(r.definition)),
            _ => None,
        };
        self.by_arn.insert(arn.to_string(), found.clone());
        Ok(found)
    }
}

/// ECS's rules for a task definition beyond what the model's shapes enforce.
fn check(req: &wire::RegisterTaskDefinitionRequest) -> Result<(), AwsError> {
    let family = req.family.as_deref().unwrap_or_default();
    if !rules::valid_name(family) {
        return Err(client(
            "Family contains invalid characters. Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
        ));
    }
    let containers = req.container_definitions.as_deref().unwrap_or_default();
    if containers.is_empty() {
        return Err(client("Container list cannot be empty."));
    }
    if containers.len() > MAX_CONTAINERS {
        return Err(client(format!(
            "Too many containers. A task definition can have at most {MAX_CONTAINERS}."
        )));
    }
    let fargate = req
        .requires_compatibilities
        .iter()
        .flatten()
        .any(|c| c == "FARGATE");
    let network_mode =
        req.network_mode
            .as_deref()
            .unwrap_or(if fargate { "awsvpc" } else { "bridge" });
    let task_cpu = match req.cpu.as_deref() {
        Some(s) => Some(
            rules::parse_task_cpu(s)
                .ok_or_else(|| client(format!("Invalid 'cpu' setting for task: '{s}'.")))?,
        ),
        None => None,
    };
    let task_memory = match req.memory.as_deref() {
        Some(s) => Some(
            rules::parse_task_memory(s)
                .ok_or_else(|| client(format!("Invalid 'memory' setting for task: '{s}'.")))?,
        ),
        None => None,
    };
    if fargate {
        if req.network_mode.as_deref() != Some("awsvpc") {
            return Err(client("Fargate only supports network mode 'awsvpc'."));
        }
        let (Some(cpu), Some(memory)) = (task_cpu, task_memory) else {
            let missing = if task_cpu.is_none() { "cpu" } else { "memory" };
            return Err(client(format!(
                "Fargate requires that '{missing}' be defined at the task level."
            )));
        };
        if !rules::fargate_size_valid(cpu, memory) {
            return Err(client(format!(
                "No Fargate configuration exists for given values: {} CPU, {} memory. See the Amazon ECS documentation for the valid values.",
                req.cpu.as_deref().unwrap_or_default(),
                req.memory.as_deref().unwrap_or_default()
            )));
        }
    }
    let volumes: HashSet<&str> = req
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.name.as_deref())
        .collect();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.name.as_deref().unwrap_or_default())
        .collect();
    let mut seen = HashSet::new();
    let mut host_ports = HashSet::new();
    let (mut cpu_sum, mut memory_sum) = (0i64, 0i64);
    for c in containers {
        let name = c.name.as_deref().unwrap_or_default();
        if !rules::valid_name(name) {
            return Err(client(
                "Container name contains invalid characters. Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
            ));
        }
        if !seen.insert(name) {
            return Err(client(format!(
                "Duplicate container name '{name}'. Container names must be unique within a task definition."
            )));
        }
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err(client(format!(
                "Container.image should not be null or empty (container '{name}')."
            )));
        }
        let (memory, reservation) = (c.memory, c.memory_reservation);
        if memory.is_none() && reservation.is_none() && task_memory.is_none() {
            return Err(client(format!(
                "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
            )));
        }
        for m in [memory, reservation].into_iter().flatten() {
            if m < rules::MIN_CONTAINER_MEMORY_MIB {
                return Err(client(format!(
                    "Invalid 'memory' setting for container '{name}'. The minimum is {} MiB.",
                    rules::MIN_CONTAINER_MEMORY_MIB
                )));
            }
        }
        if let (Some(m), Some(r)) = (memory, reservation)
            && r > m
        {
            return Err(client(format!(
                "Invalid setting for container '{name}'. 'memoryReservation' must be less than or equal to 'memory'."
            )));
        }
        if let Some(cpu) = c.cpu
            && cpu < 0
        {
            return Err(client(format!(
                "Invalid 'cpu' setting for container '{name}'."
            )));
        }
        cpu_sum += i64::from(c.cpu.unwrap_or(0));
        memory_sum += i64::from(memory.or(reservation).unwrap_or(0));
        for p in c.port_mappings.iter().flatten() {
            let container_port = p.container_port;
            if let Some(cp) = container_port
                && !(1..=65535).contains(&cp)
            {
                return Err(client(format!(
                    "Invalid containerPort {cp} for container '{name}'. Ports must be between 1 and 65535."
                )));
            }
            if container_port.is_none() && p.container_port_range.is_none() {
                return Err(client(format!(
                    "Container '{name}' has a port mapping with neither containerPort nor containerPortRange."
                )));
            }
            if let Some(hp) = p.host_port {
                if !(0..=65535).contains(&hp) {
                    return Err(client(format!(
                        "Invalid hostPort {hp} for container '{name}'. Ports must be between 0 and 65535."
                    )));
                }
                if matches!(network_mode, "awsvpc" | "host")
                    && container_port.is_some_and(|cp| cp != hp)
                {
                    return Err(client(format!(
                        "When networkMode={network_mode}, the host ports must either be undefined or match the container port (container '{name}')."
                    )));
                }
                let protocol = p.protocol.as_deref().unwrap_or("tcp");
                if hp != 0 && !host_ports.insert((hp, protocol.to_string())) {
                    return Err(client(format!(
                        "The host port {hp}/{protocol} is used by more than one port mapping."
                    )));
                }
            }
        }
        if !matches!(network_mode, "bridge") && c.links.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(client(format!(
                "Links are not supported when networkMode={network_mode} (container '{name}')."
            )));
        }
        for m in c.mount_points.iter().flatten() {
            let source = m.source_volume.as_deref().unwrap_or_default();
            if !volumes.contains(source) {
                return Err(client(format!(
                    "Invalid 'mountPoint' for container '{name}': unknown volume '{source}'."
                )));
            }
        }
        for d in c.depends_on.iter().flatten() {
            let other = d.container_name.as_deref().unwrap_or_default();
            if !names.contains(&other) || other == name {
                return Err(client(format!(
                    "Container '{name}' depends on unknown container '{other}'."
                )));
            }
        }
        for v in c.volumes_from.iter().flatten() {
            let other = v.source_container.as_deref().unwrap_or_default();
            if !names.contains(&other) || other == name {
                return Err(client(format!(
                    "Container '{name}' has volumesFrom an unknown container '{other}'."
                )));
            }
        }
    }
    if !containers.iter().any(|c| c.essential.unwrap_or(true)) {
        return Err(client(
            "At least one essential container is required in a task definition.",
        ));
    }
    if let Some(cpu) = task_cpu
        && cpu_sum > i64::from(cpu)
    {
        return Err(client(
            "The sum of the container 'cpu' values must not exceed the task 'cpu'.",
        ));
    }
    if let Some(memory) = task_memory
        && memory_sum > i64::from(memory)
    {
        return Err(client(
            "The sum of the container 'memory' values must not exceed the task 'memory'.",
        ));
    }
    if let Some(e) = &req.ephemeral_storage
        && !(21..=200).contains(&e.size_in_gi_b.unwrap_or(0))
    {
        return Err(client(
            "The ephemeral storage size must be between 21 and 200 GiB.",
        ));
    }
    let mut volume_names = HashSet::new();
    for v in req.volumes.iter().flatten() {
        let n = v.name.as_deref().unwrap_or_default();
        if !volume_names.insert(n) {
            return Err(client(format!("Duplicate volume name '{n}'.")));
        }
    }
    Ok(())
}

/// The launch types a definition is compatible with, as ECS reports them.
fn compatibilities(req: &wire::RegisterTaskDefinitionRequest) -> Vec<String> {
    let mut out = vec!["EC2".to_string()];
    let cpu = req.cpu.as_deref().and_then(rules::parse_task_cpu);
    let memory = req.memory.as_deref().and_then(rules::parse_task_memory);
    let awsvpc = req.network_mode.as_deref() == Some("awsvpc");
    if awsvpc
        && cpu
            .zip(memory)
            .is_some_and(|(c, m)| rules::fargate_size_valid(c, m))
    {
        out.push("FARGATE".into());
    }
    for c in req.requires_compatibilities.iter().flatten() {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

pub async fn register_task_definition(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::RegisterTaskDefinitionRequest,
) -> Result<wire::RegisterTaskDefinitionResponse, AwsError> {
    check(&req)?;
    let tags = req.tags.clone().unwrap_or_default();
    common::check_tags(&tags)?;
    let family = req.family.clone().unwrap_or_default();
    // Every member the request shares with TaskDefinition carries over by name, so new
    // members of the model round-trip without code here.
    let mut body = serde_json::to_value(&req).map_err(AwsError::internal)?;
    if let Some(o) = body.as_object_mut() {
        o.remove("tags");
    }
    let mut definition: wire::TaskDefinition =
        serde_json::from_value(body).map_err(AwsError::internal)?;
    definition.status = Some("ACTIVE".into());
    definition.compatibilities = Some(compatibilities(&req));
    definition.requires_attributes = Some(vec![]);
    definition.registered_at = Some(berth_shapes::Timestamp::from_millis(ecs.now_ms()));
    definition.registered_by = Some(format!("arn:aws:iam::{}:root", ctx.account_id));
    definition
        .placement_constraints
        .get_or_insert_with(Vec::new);
    definition.volumes.get_or_insert_with(Vec::new);
    let network_mode = definition
        .network_mode
        .clone()
        .unwrap_or_else(|| "bridge".into());
    for c in definition.container_definitions.iter_mut().flatten() {
        fill_container_defaults(c, &network_mode);
    }
    let partition = ctx.partition();
    let record = common::transact(ecs, || async {
        let current = common::get::<FamilyRecord>(ecs, ctx, kinds::FAMILY, &family).await?;
        let (mut fam, expect) = match current {
            Some((f, v)) => (f, Expect::Version(v)),
            None => (
                FamilyRecord {
                    family: family.clone(),
                    ..Default::default()
                },
                Expect::Absent,
            ),
        };
        fam.last_revision += 1;
        fam.active_revisions += 1;
        let mut d = definition.clone();
        d.revision = Some(fam.last_revision);
        d.task_definition_arn = Some(arn(
            ctx,
            format!("task-definition/{family}:{}", fam.last_revision),
        ));
        let record = TaskDefinitionRecord {
            definition: d,
            tags: tags.clone(),
        };
        let ops = vec![
            Op::put(
                kinds::FAMILY,
                partition.clone(),
                family.clone(),
                to_value(&fam)?,
                expect,
            ),
            Op::put(
                kinds::TASK_DEFINITION,
                partition.clone(),
                task_definition_key(&family, fam.last_revision),
                to_value(&record)?,
                Expect::Absent,
            ),
        ];
        Ok((ops, record))
    })
    .await?;
    Ok(wire::RegisterTaskDefinitionResponse {
        task_definition: Some(record.definition),
        tags: Some(record.tags),
    })
}

/// The values ECS fills into a container definition it stores, so a describe shows them.
fn fill_container_defaults(c: &mut wire::ContainerDefinition, network_mode: &str) {
    c.cpu.get_or_insert(0);
    c.essential.get_or_insert(true);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    c.system_controls.get_or_insert_with(Vec::new);
    let ports = c.port_mappings.get_or_insert_with(Vec::new);
    for p in ports.iter_mut() {
        p.protocol.get_or_insert_with(|| "tcp".into());
        // With awsvpc and host networking the host port is the container port.
        if matches!(network_mode, "awsvpc" | "host")
            && let Some(cp) = p.container_port
        {
            p.host_port.get_or_insert(cp);
        }
    }
    if let Some(h) = c.health_check.as_mut() {
        h.interval.get_or_insert(30);
        h.timeout.get_or_insert(5);
        h.retries.get_or_insert(3);
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, AwsError> {
    serde_json::to_value(v).map_err(AwsError::internal)
}

pub async fn describe_task_definition(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeTaskDefinitionRequest,
) -> Result<wire::DescribeTaskDefinitionResponse, AwsError> {
    let ident = req.task_definition.unwrap_or_default();
    let (record, _) = find(ecs, ctx, &ident)
        .await?
        .ok_or_else(|| client("Unable to describe task definition."))?;
    let with_tags = req.include.iter().flatten().any(|i| i == "TAGS");
    Ok(wire::DescribeTaskDefinitionResponse {
        task_definition: Some(record.definition),
        tags: with_tags.then_some(record.tags),
    })
}

pub async fn list_task_definitions(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListTaskDefinitionsRequest,
) -> Result<wire::ListTaskDefinitionsResponse, AwsError> {
    let status = req.status.as_deref().unwrap_or("ACTIVE");
    // familyPrefix names one family exactly, as ECS documents it.
    let prefix = match req.family_prefix.as_deref() {
        Some(f) => format!("{f},"),
        None => String::new(),
    };
    let mut items: Vec<(String, String)> =
        common::all::<TaskDefinitionRecord>(ecs, ctx, kinds::TASK_DEFINITION, &prefix)
            .await?
            .into_iter()
            .filter(|(_, r)| r.definition.status.as_deref() == Some(status))
            .map(|(k, r)| (k, r.definition.task_definition_arn.unwrap_or_default()))
            .collect();
    let desc = req.sort.as_deref() == Some("DESC");
    let binding = common::binding(
        ctx,
        if desc {
            "ListTaskDefinitions.desc"
        } else {
            "ListTaskDefinitions"
        },
    );
    if desc {
        // Positions must still grow along the list, so descending lists page on an inverted key.
        items.reverse();
        items = items.into_iter().map(|(k, v)| (invert(&k), v)).collect();
    }
    let (arns, next) = common::page(
        ecs,
        &binding,
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListTaskDefinitionsResponse {
        task_definition_arns: Some(arns),
        next_token: next,
    })
}

/// A key that sorts in the opposite order of `k` (keys are ASCII).
fn invert(k: &str) -> String {
    k.bytes()
        .map(|b| char::from(0x7f - (b & 0x7f)))
        .chain(std::iter::once('\u{7f}'))
        .collect()
}

pub async fn list_task_definition_families(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListTaskDefinitionFamiliesRequest,
) -> Result<wire::ListTaskDefinitionFamiliesResponse, AwsError> {
    let status = req.status.as_deref().unwrap_or("ACTIVE");
    let prefix = req.family_prefix.clone().unwrap_or_default();
    let items: Vec<(String, String)> =
        common::all::<FamilyRecord>(ecs, ctx, kinds::FAMILY, &prefix)
            .await?
            .into_iter()
            .filter(|(_, f)| match status {
                "ACTIVE" => f.active_revisions > 0,
                "INACTIVE" => f.active_revisions == 0,
                _ => true,
            })
            .map(|(k, f)| (k, f.family))
            .collect();
    let binding = common::binding(ctx, &format!("ListTaskDefinitionFamilies.{status}"));
    let (families, next) = common::page(
        ecs,
        &binding,
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListTaskDefinitionFamiliesResponse {
        families: Some(families),
        next_token: next,
    })
}

/// Moves one revision to `to` (from ACTIVE or INACTIVE), keeping the family's count of active
/// revisions in the same transaction.
async fn transition(
    ecs: &Ecs,
    ctx: &RequestContext,
    family: &str,
    revision: i32,
    to: &str,
) -> Result<Option<TaskDefinitionRecord>, AwsError> {
    let partition = ctx.partition();
    let key = task_definition_key(family, revision);
    let now = ecs.now_ms();
    common::transact(ecs, || async {
        let Some((mut r, version)) =
            common::get::<TaskDefinitionRecord>(ecs, ctx, kinds::TASK_DEFINITION, &key).await?
        else {
            return Ok((vec![], None));
        };
        let from = r.definition.status.clone().unwrap_or_default();
        if from == to || from == "DELETE_IN_PROGRESS" {
            return Ok((vec![], Some(r)));
        }
        let Some((mut fam, fam_version)) =
            common::get::<FamilyRecord>(ecs, ctx, kinds::FAMILY, family).await?
        else {
            return Err(AwsError::internal(format!(
                "task definition {key} has no family record"
            )));
        };
        if from == "ACTIVE" {
            fam.active_revisions = fam.active_revisions.saturating_sub(1);
        }
        r.definition.status = Some(to.to_string());
        let stamp = Some(berth_shapes::Timestamp::from_millis(now));
        match to {
            "INACTIVE" => r.definition.deregistered_at = stamp,
            _ => r.definition.delete_requested_at = stamp,
        }
        let ops = vec![
            Op::put(
                kinds::TASK_DEFINITION,
                partition.clone(),
                key.clone(),
                to_value(&r)?,
                Expect::Version(version),
            ),
            Op::put(
                kinds::FAMILY,
                partition.clone(),
                family.to_string(),
                to_value(&fam)?,
                Expect::Version(fam_version),
            ),
        ];
        Ok((ops, Some(r)))
    })
    .await
}

pub async fn deregister_task_definition(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeregisterTaskDefinitionRequest,
) -> Result<wire::DeregisterTaskDefinitionResponse, AwsError> {
    let ident = req.task_definition.unwrap_or_default();
    let Some(Revision::Exact(family, revision)) = parse_ident(ctx, &ident) else {
        return Err(invalid(
            "A revision must be specified: use family:revision or the full task definition ARN.",
        ));
    };
    let r = transition(ecs, ctx, &family, revision, "INACTIVE")
        .await?
        .ok_or_else(|| client("The specified task definition does not exist."))?;
    Ok(wire::DeregisterTaskDefinitionResponse {
        task_definition: Some(r.definition),
    })
}

pub async fn delete_task_definitions(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeleteTaskDefinitionsRequest,
) -> Result<wire::DeleteTaskDefinitionsResponse, AwsError> {
    let idents = req.task_definitions.unwrap_or_default();
    if idents.is_empty() || idents.len() > 10 {
        return Err(invalid(
            "taskDefinitions must contain between 1 and 10 task definitions.",
        ));
    }
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for ident in idents {
        let full = if ident.starts_with("arn:") {
            ident.clone()
        } else {
            arn(ctx, format!("task-definition/{ident}"))
        };
        let Some(Revision::Exact(family, revision)) = parse_ident(ctx, &ident) else {
            failures.push(common::failure(
                full,
                "The task definition ARN or family:revision is not valid.",
            ));
            continue;
        };
        let key = task_definition_key(&family, revision);
        match common::get::<TaskDefinitionRecord>(ecs, ctx, kinds::TASK_DEFINITION, &key).await? {
            None => failures.push(common::failure(full, "The specified task definition does not exist.")),
            Some((r, _)) if r.definition.status.as_deref() == Some("ACTIVE") => failures.push(common::failure(
                full,
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
            )),
            Some(_) => {
                if let Some(r) = transition(ecs, ctx, &family, revision, "DELETE_IN_PROGRESS").await? {
                    deleted.push(r.definition);
                }
            }
        }
    }
    Ok(wire::DeleteTaskDefinitionsResponse {
        task_definitions: Some(deleted),
        failures: Some(failures),
    })
}
