//! Task actions: RunTask, StartTask, StopTask, DescribeTasks, ListTasks.
//!
//! [`place_tasks`] is the one placement path (RunTask, StartTask, services): `berth-scheduler`
//! chooses over the cluster as `placement::to_instance` maps it, and a task is placed in the
//! same transaction that takes its resources from its instance (under the instance record's
//! version), so concurrent placements never oversubscribe an instance; stopping gives them back
//! in the transaction that records STOPPED. The agent on the instance learns of tasks by
//! polling (`nodes`), and reports what it observes.

use crate::Ecs;
use crate::common::{self, active_cluster, client, failure, invalid, resource_name};
use crate::container_instances::{self, instance_id, new_id, put_instance};
use crate::placement;
use crate::records::{
    ClusterRecord, ContainerInstanceRecord, TaskDefinitionRecord, TaskRecord, kinds,
    on_instance_key, pair_key,
};
use berth_aws::{AwsError, RequestContext};
use berth_model::task::{DesiredStatus, TaskStatus};
use berth_scheduler::{Constraint, PlacementError, Reason, Strategy, TaskRequest};
use berth_shapes::{Timestamp, ecs as wire};
use berth_store::{Expect, Op};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;

const MAX_COUNT: i32 = 10;

pub(crate) fn put_task(partition: &str, t: &TaskRecord, expect: Expect) -> Result<Op, AwsError> {
    Ok(Op::put(
        kinds::TASK,
        partition.to_string(),
        pair_key(&t.cluster, &t.id),
        serde_json::to_value(t).map_err(AwsError::internal)?,
        expect,
    ))
}

/// The entry naming a new task under its instance ([`kinds::TASK_ON_INSTANCE`]): commit it with
/// the task's first write.
pub(crate) fn index_task(partition: &str, t: &TaskRecord) -> Op {
    Op::put(
        kinds::TASK_ON_INSTANCE,
        partition.to_string(),
        on_instance_key(&t.cluster, &t.container_instance_id, &t.id),
        serde_json::Value::Bool(true),
        Expect::Any,
    )
}

/// Asks a task to stop: desired STOPPED, with a stop code and reason. Returns whether anything
/// changed (a task already asked, or stopped, is left alone). The agent stops it and reports
/// STOPPED, which gives its resources back. With `drain` (a RUNNING task behind a load
/// balancer) the task is DEACTIVATING first: the service controller deregisters its targets
/// and, once they drained, moves it to STOPPING; until then its agent still sees it desired
/// RUNNING (`nodes`), so it serves the requests in flight.
pub(crate) fn request_stop(
    t: &mut TaskRecord,
    now: i64,
    code: &str,
    reason: &str,
    drain: bool,
) -> bool {
    if t.desired_status == DesiredStatus::Stopped.as_str()
        || t.last_status == TaskStatus::Stopped.as_str()
    {
        return false;
    }
    if drain && t.last_status == TaskStatus::Running.as_str() {
        t.last_status = TaskStatus::Deactivating.as_str().into();
    }
    t.desired_status = DesiredStatus::Stopped.as_str().into();
    t.stopping_at_ms.get_or_insert(now);
    t.stop_code = Some(code.into());
    t.stopped_reason = Some(reason.into());
    t.version += 1;
    true
}

/// Records a task as STOPPED (once): timestamps, stop code and reason (keeping ones already
/// set, e.g. by StopTask), containers STOPPED. Returns whether anything changed; the caller
/// gives the task's resources back to its instance in the same transaction.
pub(crate) fn mark_stopped(t: &mut TaskRecord, now: i64, code: &str, reason: &str) -> bool {
    if t.last_status == TaskStatus::Stopped.as_str() {
        return false;
    }
    t.last_status = TaskStatus::Stopped.as_str().into();
    t.desired_status = DesiredStatus::Stopped.as_str().into();
    t.stopping_at_ms.get_or_insert(now);
    t.stopped_at_ms = Some(now);
    t.execution_stopped_at_ms.get_or_insert(now);
    if t.stop_code.is_none() {
        t.stop_code = Some(code.into());
    }
    if t.stopped_reason.is_none() {
        t.stopped_reason = Some(reason.into());
    }
    for c in &mut t.containers {
        c.last_status = Some("STOPPED".into());
    }
    t.version += 1;
    true
}

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

pub(crate) fn to_wire(t: &TaskRecord, tags: bool) -> wire::Task {
    wire::Task {
        attachments: Some(vec![]),
        attributes: Some(t.attributes.clone()),
        availability_zone: None,
        capacity_provider_name: None,
        cluster_arn: Some(t.cluster_arn.clone()),
        connectivity: t.connectivity_at_ms.map(|_| "CONNECTED".to_string()),
        connectivity_at: ts(t.connectivity_at_ms),
        container_instance_arn: Some(t.container_instance_arn.clone()),
        containers: Some(t.containers.clone()),
        cpu: Some(t.cpu.clone()),
        created_at: ts(Some(t.created_at_ms)),
        desired_status: Some(t.desired_status.clone()),
        enable_execute_command: Some(t.enable_execute_command),
        execution_stopped_at: ts(t.execution_stopped_at_ms),
        group: Some(t.group.clone()),
        health_status: Some(t.health_status.clone()),
        inference_accelerators: None,
        last_status: Some(t.last_status.clone()),
        launch_type: Some(t.launch_type.clone()),
        memory: Some(t.memory.clone()),
        overrides: Some(t.overrides.clone()),
        platform_version: None,
        platform_family: None,
        pull_started_at: ts(t.pull_started_at_ms),
        pull_stopped_at: ts(t.pull_stopped_at_ms),
        started_at: ts(t.started_at_ms),
        started_by: t.started_by.clone(),
        stop_code: t.stop_code.clone(),
        stopped_at: ts(t.stopped_at_ms),
        stopped_reason: t.stopped_reason.clone(),
        stopping_at: ts(t.stopping_at_ms),
        tags: tags.then(|| t.tags.clone()),
        task_arn: Some(t.arn.clone()),
        task_definition_arn: Some(t.task_definition_arn.clone()),
        version: Some(t.version),
        ephemeral_storage: None,
        fargate_ephemeral_storage: None,
    }
}

/// The task id an identifier names in `cluster`: an id, or a task ARN (long format with the
/// cluster, or the old format without).
fn task_id<'a>(ctx: &RequestContext, cluster: &str, ident: &'a str) -> Option<&'a str> {
    let rest = resource_name(ctx, ident, "task")?;
    let id = match rest.split_once('/') {
        Some((c, id)) if c == cluster => id,
        Some(_) => return None,
        None => rest,
    };
    (!id.is_empty() && !id.contains('/') && !id.contains('|')).then_some(id)
}

/// What RunTask, StartTask and a service's scheduler share once the request is checked: the
/// task to create and how to place it. Built by [`prepare`] (RunTask/StartTask) or
/// [`launch_for`] (a service).
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub definition: wire::TaskDefinition,
    pub definition_tags: Vec<wire::Tag>,
    /// With an entry per container, as ECS answers.
    pub overrides: wire::TaskOverride,
    /// `family:<name>` by default; `service:<name>` for a service's tasks.
    pub group: String,
    pub started_by: Option<String>,
    pub tags: Vec<wire::Tag>,
    pub constraints: Vec<Constraint>,
    /// Applied in order; empty places at random.
    pub strategies: Vec<Strategy>,
    pub enable_execute_command: bool,
    /// What each task holds on its instance (CPU, memory, static host ports).
    pub need: crate::records::Capacity,
    /// Host ports Docker picks for each task (bridge `hostPort` 0 or absent).
    pub dynamic_ports: u32,
}

/// ECS's `placementConstraints` and `placementStrategy` as the scheduler's, or
/// `InvalidParameterException` with the scheduler's message (a bad `memberOf` expression names
/// the column of the problem). Shared by RunTask and services.
pub(crate) fn placement_rules(
    constraints: &[wire::PlacementConstraint],
    strategies: &[wire::PlacementStrategy],
) -> Result<(Vec<Constraint>, Vec<Strategy>), AwsError> {
    if constraints.len() > 10 {
        return Err(invalid("At most 10 placement constraints are allowed."));
    }
    if strategies.len() > 5 {
        return Err(invalid("At most 5 placement strategies are allowed."));
    }
    let constraints = constraints
        .iter()
        .map(|c| {
            Constraint::from_wire(
                c.r#type.as_deref().unwrap_or_default(),
                c.expression.as_deref(),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    let strategies = strategies
        .iter()
        .map(|s| Strategy::from_wire(s.r#type.as_deref().unwrap_or_default(), s.field.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    Ok((constraints, strategies))
}

/// A launch of `definition` (an ACTIVE revision the caller has found), for a service or any
/// caller that already holds the definition: checks the overrides against its containers,
/// gives every container an override entry, and works out what each task holds. `tags` are
/// the task's (already merged with whatever the caller propagates).
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_for(
    definition: wire::TaskDefinition,
    definition_tags: Vec<wire::Tag>,
    overrides: Option<wire::TaskOverride>,
    group: String,
    started_by: Option<String>,
    tags: Vec<wire::Tag>,
    constraints: Vec<Constraint>,
    strategies: Vec<Strategy>,
    enable_execute_command: bool,
) -> Result<Launch, AwsError> {
    let mut overrides = overrides.unwrap_or_default();
    let names: Vec<String> = definition
        .container_definitions
        .iter()
        .flatten()
        .filter_map(|c| c.name.clone())
        .collect();
    for o in overrides.container_overrides.iter().flatten() {
        let name = o.name.as_deref().unwrap_or_default();
        if !names.iter().any(|n| n == name) {
            return Err(invalid(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
    }
    for (s, parse) in [
        (
            overrides.cpu.as_deref(),
            berth_model::ecs::parse_task_cpu as fn(&str) -> Option<u32>,
        ),
        (
            overrides.memory.as_deref(),
            berth_model::ecs::parse_task_memory,
        ),
    ] {
        if let Some(s) = s
            && parse(s).is_none()
        {
            return Err(invalid(format!("Invalid task override value '{s}'.")));
        }
    }
    // ECS answers with an override entry per container, named even when nothing is changed.
    let mut container_overrides = overrides.container_overrides.take().unwrap_or_default();
    for n in &names {
        if !container_overrides
            .iter()
            .any(|o| o.name.as_deref() == Some(n))
        {
            container_overrides.push(wire::ContainerOverride {
                name: Some(n.clone()),
                ..wire::ContainerOverride::default()
            });
        }
    }
    overrides.container_overrides = Some(container_overrides);
    overrides
        .inference_accelerator_overrides
        .get_or_insert_with(Vec::new);
    let need = placement::demand(&definition, &overrides);
    let dynamic_ports = placement::dynamic_ports(&definition);
    Ok(Launch {
        definition,
        definition_tags,
        overrides,
        group,
        started_by,
        tags,
        constraints,
        strategies,
        enable_execute_command,
        need,
        dynamic_ports,
    })
}

/// RunTask's and StartTask's request, checked: the task definition (ACTIVE, EC2-compatible),
/// overrides, placement rules, group, startedBy and tags (propagated from the definition when
/// asked).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn prepare(
    ecs: &Ecs,
    ctx: &RequestContext,
    task_definition: Option<&str>,
    overrides: Option<wire::TaskOverride>,
    group: Option<String>,
    started_by: Option<String>,
    tags: Option<Vec<wire::Tag>>,
    propagate_tags: Option<&str>,
    constraints: &[wire::PlacementConstraint],
    strategies: &[wire::PlacementStrategy],
    enable_execute_command: bool,
) -> Result<Launch, AwsError> {
    let ident = task_definition.unwrap_or_default();
    let (record, _): (TaskDefinitionRecord, u64) = crate::task_definitions::find(ecs, ctx, ident)
        .await?
        .ok_or_else(|| invalid("TaskDefinition not found."))?;
    let definition = record.definition;
    if definition.status.as_deref() != Some("ACTIVE") {
        return Err(client("TaskDefinition is inactive"));
    }
    let compat = definition
        .requires_compatibilities
        .clone()
        .unwrap_or_default();
    if !compat.is_empty() && !compat.iter().any(|c| c == "EC2") {
        return Err(client("Task definition does not support launch_type EC2."));
    }
    let (constraints, strategies) = placement_rules(constraints, strategies)?;
    let family = definition.family.clone().unwrap_or_default();
    let group = group.unwrap_or_else(|| format!("family:{family}"));
    if group.len() > 255 {
        return Err(invalid("group must be at most 255 characters."));
    }
    if started_by.as_deref().is_some_and(|s| s.len() > 128) {
        return Err(invalid("startedBy must be at most 128 characters."));
    }
    let mut tags = tags.unwrap_or_default();
    common::check_tags(&tags)?;
    let definition_tags = record.tags;
    match propagate_tags {
        Some("TASK_DEFINITION") => {
            let mut merged = definition_tags.clone();
            common::merge_tags(&mut merged, tags);
            tags = merged;
            common::check_tags(&tags)?;
        }
        Some("SERVICE") => {
            return Err(invalid(
                "propagateTags SERVICE is only valid for tasks started by a service.",
            ));
        }
        _ => {}
    }
    launch_for(
        definition,
        definition_tags,
        overrides,
        group,
        started_by,
        tags,
        constraints,
        strategies,
        enable_execute_command,
    )
}

fn new_task(
    ctx: &RequestContext,
    cluster: &ClusterRecord,
    instance: &ContainerInstanceRecord,
    launch: &Launch,
    now: i64,
) -> TaskRecord {
    let id = new_id();
    let arn = common::arn(ctx, format!("task/{}/{id}", cluster.name));
    let container_override = |name: &Option<String>| {
        launch
            .overrides
            .container_overrides
            .iter()
            .flatten()
            .find(|o| o.name == *name)
            .cloned()
            .unwrap_or_default()
    };
    let containers = launch
        .definition
        .container_definitions
        .iter()
        .flatten()
        .map(|c| {
            let o = container_override(&c.name);
            wire::Container {
                container_arn: Some(common::arn(
                    ctx,
                    format!("container/{}/{id}/{}", cluster.name, uuid::Uuid::new_v4()),
                )),
                task_arn: Some(arn.clone()),
                name: c.name.clone(),
                image: c.image.clone(),
                last_status: Some("PENDING".into()),
                network_bindings: Some(vec![]),
                network_interfaces: Some(vec![]),
                health_status: Some("UNKNOWN".into()),
                cpu: Some(o.cpu.or(c.cpu).unwrap_or(0).to_string()),
                memory: o.memory.or(c.memory).map(|m| m.to_string()),
                memory_reservation: o
                    .memory_reservation
                    .or(c.memory_reservation)
                    .map(|m| m.to_string()),
                ..wire::Container::default()
            }
        })
        .collect();
    let def = &launch.definition;
    let cpu = launch
        .overrides
        .cpu
        .clone()
        .or_else(|| def.cpu.clone())
        .unwrap_or_else(|| launch.need.cpu.to_string());
    let memory = launch
        .overrides
        .memory
        .clone()
        .or_else(|| def.memory.clone())
        .unwrap_or_else(|| launch.need.memory.to_string());
    let attributes = instance
        .attributes
        .iter()
        .filter(|a| a.name.as_deref() == Some("ecs.cpu-architecture"))
        .map(|a| wire::Attribute {
            name: a.name.clone(),
            value: a.value.clone(),
            target_type: None,
            target_id: None,
        })
        .collect();
    let _ = &launch.definition_tags;
    TaskRecord {
        cluster: cluster.name.clone(),
        id,
        arn,
        cluster_arn: cluster.arn.clone(),
        container_instance_id: instance.id.clone(),
        container_instance_arn: instance.arn.clone(),
        task_definition_arn: def.task_definition_arn.clone().unwrap_or_default(),
        health_checked: def
            .container_definitions
            .iter()
            .flatten()
            .any(|c| c.health_check.is_some()),
        dynamic_ports: launch.dynamic_ports,
        overrides: launch.overrides.clone(),
        last_status: TaskStatus::Provisioning.as_str().into(),
        desired_status: DesiredStatus::Running.as_str().into(),
        containers,
        group: launch.group.clone(),
        started_by: launch.started_by.clone(),
        launch_type: "EC2".into(),
        cpu,
        memory,
        reserved: launch.need.clone(),
        created_at_ms: now,
        pull_started_at_ms: None,
        pull_stopped_at_ms: None,
        started_at_ms: None,
        stopping_at_ms: None,
        stopped_at_ms: None,
        execution_stopped_at_ms: None,
        connectivity_at_ms: None,
        stop_code: None,
        stopped_reason: None,
        health_status: "UNKNOWN".into(),
        tags: launch.tags.clone(),
        attributes,
        enable_execute_command: launch.enable_execute_command,
        version: 1,
    }
}

/// `failures[]` as ECS lists them: one entry per instance and reason.
#[derive(Default)]
struct Failures(Vec<wire::Failure>);

impl Failures {
    fn add(&mut self, arn: &str, reason: &str) {
        if !self
            .0
            .iter()
            .any(|f| f.arn.as_deref() == Some(arn) && f.reason.as_deref() == Some(reason))
        {
            self.0.push(failure(arn.to_string(), reason));
        }
    }
}

/// Places `count` tasks of `launch` in `cluster` through `berth-scheduler` (or, when `targets`
/// names instance ids — StartTask — one task on each named instance, in order, `count`
/// ignored), writing the tasks and the instances' remaining resources in one transaction
/// under `Expect::Version` of every instance it takes from, so concurrent placements never
/// oversubscribe. Tasks that do not fit come back as `failures[]` with the container instance
/// ARN and ECS's reason (`RESOURCE:CPU`, `RESOURCE:MEMORY`, `RESOURCE:PORTS`, `AGENT`,
/// `ATTRIBUTE`; `MISSING`/`INACTIVE` for a named instance). No ACTIVE instance at all is
/// `InvalidParameterException` ("No Container Instances were found in your cluster.").
pub(crate) async fn place_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &ClusterRecord,
    launch: &Launch,
    count: usize,
    targets: Option<&[String]>,
) -> Result<(Vec<TaskRecord>, Vec<wire::Failure>), AwsError> {
    let partition = ctx.partition();
    let no_instances = || invalid("No Container Instances were found in your cluster.");
    common::transact(ecs, || async {
        let now = ecs.now_ms();
        let mut records: Vec<(ContainerInstanceRecord, u64)> =
            common::all_versioned::<ContainerInstanceRecord>(
                ecs,
                ctx,
                kinds::CONTAINER_INSTANCE,
                &format!("{}|", cluster.name),
            )
            .await?
            .into_iter()
            .filter(|(_, r, _)| {
                targets.is_some_and(|t| t.contains(&r.id))
                    || (targets.is_none() && r.status == "ACTIVE")
            })
            .map(|(_, r, v)| (r, v))
            .collect();
        if targets.is_none() && records.is_empty() {
            return Err(no_instances());
        }
        let live = container_instances::live_tasks(ecs, ctx, &cluster.name).await?;
        let mut live_on: HashMap<&str, Vec<&TaskRecord>> = HashMap::new();
        for t in &live {
            live_on
                .entry(t.container_instance_id.as_str())
                .or_default()
                .push(t);
        }
        let live_of = |id: &str| live_on.get(id).into_iter().flatten().copied();
        let custom = container_instances::cluster_attributes(ecs, ctx, &cluster.name).await?;
        let custom_of = |id: &str| custom.get(id).map_or(&[][..], Vec::as_slice);
        let mut request = TaskRequest {
            demand: placement::scheduler_demand(&launch.need, launch.dynamic_ports),
            group: launch.group.clone(),
            constraints: launch.constraints.clone(),
            strategies: launch.strategies.clone(),
            count: u32::try_from(count).unwrap_or(u32::MAX),
        };
        if request.strategies.is_empty() {
            // ECS places standalone tasks at random unless told otherwise.
            request.strategies.push(Strategy::Random);
        }
        let mut rng = StdRng::from_entropy();
        let mut failures = Failures::default();
        let mut touched = vec![false; records.len()];
        let mut tasks: Vec<TaskRecord> = Vec::new();
        match targets {
            None => {
                let view: Vec<berth_scheduler::Instance> = records
                    .iter()
                    .map(|(r, _)| {
                        placement::to_instance(
                            r,
                            custom_of(&r.id),
                            live_of(&r.id),
                            container_instances::connected(r, now),
                        )
                    })
                    .collect();
                let plan =
                    berth_scheduler::place(&view, &request, &mut rng).map_err(|e| match e {
                        PlacementError::NoInstances => no_instances(),
                        e => invalid(e.to_string()),
                    })?;
                for p in &plan.placements {
                    let (r, _) = &mut records[p.instance];
                    placement::take(&mut r.remaining, &launch.need);
                    r.version += 1;
                    touched[p.instance] = true;
                    tasks.push(new_task(ctx, cluster, r, launch, now));
                }
                if !plan.failures.is_empty() {
                    for (i, reason) in berth_scheduler::misfits(&view, &request, &plan) {
                        failures.add(&records[i].0.arn, reason.as_str());
                    }
                }
            }
            Some(ids) => {
                // StartTask: the named instance or nothing; no strategy to apply.
                let one = TaskRequest {
                    count: 1,
                    strategies: Vec::new(),
                    ..request.clone()
                };
                for id in ids {
                    let Some(i) = records.iter().position(|(r, _)| &r.id == id) else {
                        failures.add(
                            &container_instances::instance_arn(ctx, &cluster.name, id),
                            "MISSING",
                        );
                        continue;
                    };
                    let (r, _) = &mut records[i];
                    if r.status == "INACTIVE" {
                        failures.add(&r.arn, "INACTIVE");
                        continue;
                    }
                    // Tasks already there, and those this call placed (earlier ids may repeat).
                    let mut here: Vec<&TaskRecord> = live_of(&r.id).collect();
                    here.extend(&tasks);
                    let mut inst = placement::to_instance(
                        r,
                        custom_of(&r.id),
                        here,
                        container_instances::connected(r, now),
                    );
                    // Named explicitly, a DRAINING instance still takes the task.
                    inst.can_run_tasks = r.can_run_tasks;
                    let plan = berth_scheduler::place(&[inst], &one, &mut rng)
                        .map_err(|e| invalid(e.to_string()))?;
                    if plan.placements.is_empty() {
                        let reason = plan.failures.first().map_or(Reason::Agent, |f| f.reason);
                        failures.add(&r.arn, reason.as_str());
                        continue;
                    }
                    placement::take(&mut r.remaining, &launch.need);
                    r.version += 1;
                    touched[i] = true;
                    tasks.push(new_task(ctx, cluster, r, launch, now));
                }
            }
        }
        let mut ops = Vec::new();
        for (i, (r, v)) in records.iter().enumerate() {
            if touched[i] {
                ops.push(put_instance(&partition, r, Expect::Version(*v))?);
            }
        }
        for t in &tasks {
            ops.push(put_task(&partition, t, Expect::Absent)?);
            ops.push(index_task(&partition, t));
        }
        Ok((ops, (tasks, failures.0)))
    })
    .await
}

/// Only the EC2 launch type runs on berth's agents today.
fn check_launch_type(
    launch_type: Option<&str>,
    strategy: Option<&[wire::CapacityProviderStrategyItem]>,
) -> Result<(), AwsError> {
    let strategy = strategy.unwrap_or_default();
    if launch_type.is_some() && !strategy.is_empty() {
        return Err(invalid(
            "Specifying both a launchType and capacityProviderStrategy is not supported.",
        ));
    }
    if !strategy.is_empty() {
        return Err(AwsError::client(
            "UnsupportedFeatureException",
            "berth does not support capacity provider strategies for RunTask yet; use launchType EC2.",
        ));
    }
    match launch_type {
        None | Some("EC2") => Ok(()),
        Some(other) => Err(AwsError::client(
            "UnsupportedFeatureException",
            format!("berth does not support the {other} launch type yet; use EC2."),
        )),
    }
}

pub async fn run_task(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::RunTaskRequest,
) -> Result<wire::RunTaskResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    check_launch_type(
        req.launch_type.as_deref(),
        req.capacity_provider_strategy.as_deref(),
    )?;
    let count = req.count.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(invalid(format!("count must be between 1 and {MAX_COUNT}.")));
    }
    let launch = prepare(
        ecs,
        ctx,
        req.task_definition.as_deref(),
        req.overrides,
        req.group,
        req.started_by,
        req.tags,
        req.propagate_tags.as_deref(),
        req.placement_constraints.as_deref().unwrap_or_default(),
        req.placement_strategy.as_deref().unwrap_or_default(),
        req.enable_execute_command.unwrap_or(false),
    )
    .await?;
    let (tasks, failures) = place_tasks(ecs, ctx, &cluster, &launch, count as usize, None).await?;
    Ok(wire::RunTaskResponse {
        tasks: Some(tasks.iter().map(|t| to_wire(t, true)).collect()),
        failures: Some(failures),
    })
}

pub async fn start_task(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::StartTaskRequest,
) -> Result<wire::StartTaskResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let idents = req.container_instances.unwrap_or_default();
    if idents.is_empty() || idents.len() > 10 {
        return Err(invalid(
            "containerInstances must contain between 1 and 10 container instances.",
        ));
    }
    let mut ids = Vec::new();
    for ident in &idents {
        let id = instance_id(ctx, &cluster.name, ident)
            .ok_or_else(|| invalid(format!("Invalid container instance '{ident}'.")))?;
        ids.push(id.to_string());
    }
    let launch = prepare(
        ecs,
        ctx,
        req.task_definition.as_deref(),
        req.overrides,
        req.group,
        req.started_by,
        req.tags,
        req.propagate_tags.as_deref(),
        &[],
        &[],
        req.enable_execute_command.unwrap_or(false),
    )
    .await?;
    let (tasks, failures) = place_tasks(ecs, ctx, &cluster, &launch, ids.len(), Some(&ids)).await?;
    Ok(wire::StartTaskResponse {
        tasks: Some(tasks.iter().map(|t| to_wire(t, true)).collect()),
        failures: Some(failures),
    })
}

pub async fn stop_task(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::StopTaskRequest,
) -> Result<wire::StopTaskResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let ident = req.task.unwrap_or_default();
    let not_found = || invalid("The referenced task was not found.");
    let id = task_id(ctx, &cluster.name, &ident)
        .ok_or_else(not_found)?
        .to_string();
    if req.reason.as_deref().is_some_and(|r| r.len() > 255) {
        return Err(invalid("reason must be at most 255 characters."));
    }
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| "Task stopped by user".into());
    let partition = ctx.partition();
    let key = pair_key(&cluster.name, &id);
    let task = common::transact(ecs, || async {
        let (mut t, v) = common::get::<TaskRecord>(ecs, ctx, kinds::TASK, &key)
            .await?
            .ok_or_else(not_found)?;
        // ECS drains a service's task behind a load balancer before stopping it, whoever asks.
        let drain = crate::load_balancing::behind_load_balancer(ecs, ctx, &t).await?;
        if !request_stop(&mut t, ecs.now_ms(), "UserInitiated", &reason, drain) {
            return Ok((vec![], t));
        }
        Ok((vec![put_task(&partition, &t, Expect::Version(v))?], t))
    })
    .await?;
    Ok(wire::StopTaskResponse {
        task: Some(to_wire(&task, true)),
    })
}

pub async fn describe_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeTasksRequest,
) -> Result<wire::DescribeTasksResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let idents = req.tasks.unwrap_or_default();
    if idents.is_empty() || idents.len() > 100 {
        return Err(invalid("tasks must contain between 1 and 100 tasks."));
    }
    let tags = req.include.iter().flatten().any(|i| i == "TAGS");
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for ident in idents {
        let found = match task_id(ctx, &cluster.name, &ident) {
            Some(id) => {
                common::get::<TaskRecord>(ecs, ctx, kinds::TASK, &pair_key(&cluster.name, id))
                    .await?
            }
            None => None,
        };
        match found {
            Some((t, _)) => tasks.push(to_wire(&t, tags)),
            None => {
                let arn = if ident.starts_with("arn:") {
                    ident
                } else {
                    common::arn(ctx, format!("task/{}/{ident}", cluster.name))
                };
                failures.push(failure(arn, "MISSING"));
            }
        }
    }
    Ok(wire::DescribeTasksResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

pub async fn list_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListTasksRequest,
) -> Result<wire::ListTasksResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    // A service's tasks are its group; the service must exist (any status: a deleted
    // service's last tasks can still be listed while it drains).
    let service_group = match req.service_name.as_deref() {
        Some(ident) => Some(crate::services::group(
            &crate::services::find(ecs, ctx, &cluster, ident)
                .await?
                .ok_or_else(crate::services::service_not_found)?
                .0
                .name,
        )),
        None => None,
    };
    let instance = match req.container_instance.as_deref() {
        Some(ident) => Some(
            instance_id(ctx, &cluster.name, ident)
                .ok_or_else(|| invalid(format!("Invalid container instance '{ident}'.")))?
                .to_string(),
        ),
        None => None,
    };
    let desired = req.desired_status.as_deref().unwrap_or("RUNNING");
    let items: Vec<(String, String)> =
        common::all::<TaskRecord>(ecs, ctx, kinds::TASK, &format!("{}|", cluster.name))
            .await?
            .into_iter()
            .filter(|(_, t)| t.desired_status == desired)
            .filter(|(_, t)| {
                instance
                    .as_ref()
                    .is_none_or(|i| &t.container_instance_id == i)
            })
            .filter(|(_, t)| req.family.as_ref().is_none_or(|f| t.family() == f))
            .filter(|(_, t)| {
                req.started_by
                    .as_ref()
                    .is_none_or(|s| t.started_by.as_ref() == Some(s))
            })
            .filter(|(_, t)| req.launch_type.as_ref().is_none_or(|l| &t.launch_type == l))
            .filter(|(_, t)| service_group.as_ref().is_none_or(|g| &t.group == g))
            .map(|(k, t)| (k, t.arn))
            .collect();
    let binding = common::binding(ctx, &format!("ListTasks.{}", cluster.name));
    let (arns, next) = common::page(
        ecs,
        &binding,
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListTasksResponse {
        task_arns: Some(arns),
        next_token: next,
    })
}

/// Running and pending tasks per cluster, for DescribeClusters' counts.
pub(crate) async fn counts(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<HashMap<&'static str, i32>, AwsError> {
    let mut out = HashMap::new();
    for t in container_instances::live_tasks(ecs, ctx, cluster).await? {
        let k = match TaskStatus::parse(&t.last_status) {
            Some(s) if s.is_pending() => "pending",
            _ => "running",
        };
        *out.entry(k).or_insert(0) += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::common::tests::ctx;

    #[test]
    fn task_ids_from_ids_and_arns() {
        let c = ctx();
        assert_eq!(task_id(&c, "default", "abc"), Some("abc"));
        assert_eq!(
            task_id(
                &c,
                "default",
                "arn:aws:ecs:us-east-1:000000000000:task/default/abc"
            ),
            Some("abc")
        );
        assert_eq!(
            task_id(
                &c,
                "default",
                "arn:aws:ecs:us-east-1:000000000000:task/other/abc"
            ),
            None
        );
        assert_eq!(task_id(&c, "default", "a|b"), None);
        assert_eq!(task_id(&c, "default", ""), None);
    }
}
