//! Container instance actions: RegisterContainerInstance, DeregisterContainerInstance,
//! DescribeContainerInstances, ListContainerInstances, UpdateContainerInstancesState — and
//! [`register`], the one path by which an instance joins, shared by the ECS API and berth's
//! agent protocol (`nodes`).

use crate::Ecs;
use crate::common::{self, active_cluster, failure, invalid, resource_name};
use crate::records::{
    Capacity, ClusterRecord, ContainerInstanceRecord, InstanceIndexRecord, TaskRecord, kinds,
    pair_key,
};
use berth_aws::{AwsError, RequestContext};
use berth_model::task::TaskStatus;
use berth_shapes::{Timestamp, ecs as wire};
use berth_store::{Expect, Op};
use std::collections::HashMap;

/// What an instance reports when it joins (or joins again).
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    /// An instance id of this cluster to register again as (keeping id and ARN).
    pub existing: Option<String>,
    pub registered: Capacity,
    pub attributes: Vec<wire::Attribute>,
    pub version_info: wire::VersionInfo,
    pub ec2_instance_id: Option<String>,
    /// The hash of a newly issued node token (kept as is on re-registration when `None`).
    pub token_hash: Option<String>,
    pub can_run_tasks: bool,
    pub cannot_run_reason: Option<String>,
    pub tags: Vec<wire::Tag>,
}

/// A new id: 32 lowercase hex digits, as ECS makes container instance and task ids.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) fn instance_arn(ctx: &RequestContext, cluster: &str, id: &str) -> String {
    common::arn(ctx, format!("container-instance/{cluster}/{id}"))
}

/// Every task of `cluster` not yet STOPPED.
pub(crate) async fn live_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<Vec<TaskRecord>, AwsError> {
    Ok(
        common::all::<TaskRecord>(ecs, ctx, kinds::TASK, &format!("{cluster}|"))
            .await?
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.last_status != TaskStatus::Stopped.as_str())
            .collect(),
    )
}

/// Registers an instance in `cluster`, or registers `reg.existing` again: resources,
/// attributes and versions are refreshed, status goes back to ACTIVE, and what remains is
/// recomputed from the tasks still on it (in the same transaction, under the record's version).
pub(crate) async fn register(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &ClusterRecord,
    reg: Registration,
) -> Result<ContainerInstanceRecord, AwsError> {
    let partition = ctx.partition();
    let now = ecs.now_ms();
    common::transact(ecs, || async {
        let existing = match &reg.existing {
            Some(id) => {
                common::get::<ContainerInstanceRecord>(
                    ecs,
                    ctx,
                    kinds::CONTAINER_INSTANCE,
                    &pair_key(&cluster.name, id),
                )
                .await?
            }
            None => None,
        };
        let mut ops = Vec::new();
        let record = match existing {
            Some((mut r, version)) => {
                let mut remaining = reg.registered.clone();
                for t in live_tasks(ecs, ctx, &cluster.name).await? {
                    if t.container_instance_id == r.id {
                        crate::placement::take(&mut remaining, &t.reserved);
                    }
                }
                r.registered = reg.registered.clone();
                r.remaining = remaining;
                r.attributes = reg.attributes.clone();
                r.version_info = reg.version_info.clone();
                if let Some(e) = &reg.ec2_instance_id {
                    r.ec2_instance_id = e.clone();
                }
                if reg.token_hash.is_some() {
                    r.token_hash = reg.token_hash.clone();
                }
                r.can_run_tasks = reg.can_run_tasks;
                r.cannot_run_reason = reg.cannot_run_reason.clone();
                if !reg.tags.is_empty() {
                    common::merge_tags(&mut r.tags, reg.tags.clone());
                }
                r.status = "ACTIVE".into();
                r.last_heartbeat_ms = now;
                r.version += 1;
                ops.push(put_instance(&partition, &r, Expect::Version(version))?);
                r
            }
            None => {
                let id = new_id();
                let r = ContainerInstanceRecord {
                    cluster: cluster.name.clone(),
                    arn: instance_arn(ctx, &cluster.name, &id),
                    ec2_instance_id: reg
                        .ec2_instance_id
                        .clone()
                        .unwrap_or_else(|| format!("i-{}", &id[..17])),
                    id: id.clone(),
                    status: "ACTIVE".into(),
                    registered: reg.registered.clone(),
                    remaining: reg.registered.clone(),
                    attributes: reg.attributes.clone(),
                    version_info: reg.version_info.clone(),
                    registered_at_ms: now,
                    last_heartbeat_ms: now,
                    token_hash: reg.token_hash.clone(),
                    can_run_tasks: reg.can_run_tasks,
                    cannot_run_reason: reg.cannot_run_reason.clone(),
                    tags: reg.tags.clone(),
                    version: 1,
                };
                ops.push(put_instance(&partition, &r, Expect::Absent)?);
                let index = InstanceIndexRecord {
                    cluster: cluster.name.clone(),
                };
                ops.push(Op::put(
                    kinds::INSTANCE_INDEX,
                    partition.clone(),
                    id,
                    serde_json::to_value(&index).map_err(AwsError::internal)?,
                    Expect::Absent,
                ));
                r
            }
        };
        Ok((ops, record))
    })
    .await
}

pub(crate) fn put_instance(
    partition: &str,
    r: &ContainerInstanceRecord,
    expect: Expect,
) -> Result<Op, AwsError> {
    Ok(Op::put(
        kinds::CONTAINER_INSTANCE,
        partition.to_string(),
        pair_key(&r.cluster, &r.id),
        serde_json::to_value(r).map_err(AwsError::internal)?,
        expect,
    ))
}

/// Whether the agent polled recently enough to count as connected.
pub(crate) fn connected(r: &ContainerInstanceRecord, now_ms: i64) -> bool {
    now_ms.saturating_sub(r.last_heartbeat_ms)
        <= (berth_agent_api::DISCONNECTED_AFTER_SECS as i64) * 1000
}

fn resource_int(name: &str, v: i64) -> wire::Resource {
    wire::Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        double_value: Some(0.0),
        long_value: Some(0),
        integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
        string_set_value: None,
    }
}

fn resource_set(name: &str, ports: &[u16]) -> wire::Resource {
    wire::Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        double_value: Some(0.0),
        long_value: Some(0),
        integer_value: Some(0),
        string_set_value: Some(ports.iter().map(|p| p.to_string()).collect()),
    }
}

/// ECS's `Resource` list for a capacity: CPU, MEMORY, PORTS, PORTS_UDP.
pub(crate) fn resources(c: &Capacity) -> Vec<wire::Resource> {
    vec![
        resource_int("CPU", c.cpu),
        resource_int("MEMORY", c.memory),
        resource_set("PORTS", &c.ports),
        resource_set("PORTS_UDP", &c.udp_ports),
    ]
}

/// The capacity an ECS `totalResources` list describes.
fn capacity(total: &[wire::Resource]) -> Result<Capacity, AwsError> {
    let mut c = Capacity::default();
    for r in total {
        let int = || i64::from(r.integer_value.unwrap_or(0).max(0));
        let ports = || -> Result<Vec<u16>, AwsError> {
            let mut out = Vec::new();
            for p in r.string_set_value.iter().flatten() {
                out.push(
                    p.parse::<u16>()
                        .map_err(|_| invalid(format!("Invalid port '{p}' in {:?}.", r.name)))?,
                );
            }
            out.sort_unstable();
            out.dedup();
            Ok(out)
        };
        match r.name.as_deref() {
            Some("CPU") => c.cpu = int(),
            Some("MEMORY") => c.memory = int(),
            Some("PORTS") => c.ports = ports()?,
            Some("PORTS_UDP") => c.udp_ports = ports()?,
            _ => {}
        }
    }
    Ok(c)
}

/// Extra parts DescribeContainerInstances may `include`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Include {
    pub tags: bool,
    pub health: bool,
}

pub(crate) fn to_wire(
    r: &ContainerInstanceRecord,
    tasks: &[TaskRecord],
    custom: &[wire::Attribute],
    now_ms: i64,
    include: Include,
) -> wire::ContainerInstance {
    let mine = tasks.iter().filter(|t| t.container_instance_id == r.id);
    let (mut running, mut pending) = (0, 0);
    for t in mine {
        match TaskStatus::parse(&t.last_status) {
            Some(s) if s.is_pending() => pending += 1,
            Some(s) if !s.is_stopped() => running += 1,
            _ => {}
        }
    }
    let mut attributes = r.attributes.clone();
    attributes.extend(custom.iter().map(|a| wire::Attribute {
        name: a.name.clone(),
        value: a.value.clone(),
        target_type: None,
        target_id: None,
    }));
    let health_state = if r.can_run_tasks { "OK" } else { "IMPAIRED" };
    wire::ContainerInstance {
        container_instance_arn: Some(r.arn.clone()),
        ec2_instance_id: Some(r.ec2_instance_id.clone()),
        capacity_provider_name: None,
        version: Some(r.version),
        version_info: Some(r.version_info.clone()),
        remaining_resources: Some(resources(&r.remaining)),
        registered_resources: Some(resources(&r.registered)),
        status: Some(r.status.clone()),
        status_reason: r.cannot_run_reason.clone().filter(|_| !r.can_run_tasks),
        agent_connected: Some(connected(r, now_ms)),
        running_tasks_count: Some(running),
        pending_tasks_count: Some(pending),
        agent_update_status: None,
        attributes: Some(attributes),
        registered_at: Some(Timestamp::from_millis(r.registered_at_ms)),
        attachments: Some(vec![]),
        tags: include.tags.then(|| r.tags.clone()),
        health_status: include.health.then(|| wire::ContainerInstanceHealthStatus {
            overall_status: Some(health_state.into()),
            details: Some(vec![wire::InstanceHealthCheckResult {
                r#type: Some("CONTAINER_RUNTIME".into()),
                status: Some(health_state.into()),
                status_reason: r.cannot_run_reason.clone().filter(|_| !r.can_run_tasks),
                last_updated: Some(Timestamp::from_millis(r.last_heartbeat_ms)),
                last_status_change: Some(Timestamp::from_millis(r.registered_at_ms)),
            }]),
        }),
    }
}

/// The instance id an identifier names in `cluster`: an id, or a container-instance ARN (long
/// format with the cluster, or the old format without). `None` when it cannot name one there.
pub(crate) fn instance_id<'a>(
    ctx: &RequestContext,
    cluster: &str,
    ident: &'a str,
) -> Option<&'a str> {
    let rest = resource_name(ctx, ident, "container-instance")?;
    match rest.split_once('/') {
        Some((c, id)) if c == cluster && !id.is_empty() => Some(id),
        Some(_) => None,
        None if !rest.is_empty() => Some(rest),
        None => None,
    }
}

async fn custom_attributes(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
    id: &str,
) -> Result<Vec<wire::Attribute>, AwsError> {
    Ok(common::all::<crate::records::AttributeRecord>(
        ecs,
        ctx,
        kinds::ATTRIBUTE,
        &format!("{cluster}|{id}|"),
    )
    .await?
    .into_iter()
    .map(|(_, a)| a.attribute)
    .collect())
}

/// Every custom (PutAttributes) attribute of `cluster`'s container instances, by instance id.
pub(crate) async fn cluster_attributes(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<HashMap<String, Vec<wire::Attribute>>, AwsError> {
    let mut out: HashMap<String, Vec<wire::Attribute>> = HashMap::new();
    for (key, a) in common::all::<crate::records::AttributeRecord>(
        ecs,
        ctx,
        kinds::ATTRIBUTE,
        &format!("{cluster}|"),
    )
    .await?
    {
        // key: `cluster|targetId|name`
        if let Some(target) = key.split('|').nth(1) {
            out.entry(target.to_string()).or_default().push(a.attribute);
        }
    }
    Ok(out)
}

pub async fn register_container_instance(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::RegisterContainerInstanceRequest,
) -> Result<wire::RegisterContainerInstanceResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let tags = req.tags.unwrap_or_default();
    common::check_tags(&tags)?;
    let registered = capacity(req.total_resources.as_deref().unwrap_or_default())?;
    let existing = match req.container_instance_arn.as_deref() {
        Some(ident) => Some(
            instance_id(ctx, &cluster.name, ident)
                .ok_or_else(|| invalid(format!("Invalid container instance '{ident}'.")))?
                .to_string(),
        ),
        None => None,
    };
    // The identity document is EC2's JSON; its `instanceId` becomes `ec2InstanceId`.
    let ec2_instance_id = req
        .instance_identity_document
        .as_deref()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v["instanceId"].as_str().map(str::to_string));
    let reg = Registration {
        existing,
        registered,
        attributes: req.attributes.unwrap_or_default(),
        version_info: req.version_info.unwrap_or_default(),
        ec2_instance_id,
        token_hash: None,
        can_run_tasks: true,
        cannot_run_reason: None,
        tags,
    };
    let r = register(ecs, ctx, &cluster, reg).await?;
    let custom = custom_attributes(ecs, ctx, &cluster.name, &r.id).await?;
    let tasks = live_tasks(ecs, ctx, &cluster.name).await?;
    Ok(wire::RegisterContainerInstanceResponse {
        container_instance: Some(to_wire(
            &r,
            &tasks,
            &custom,
            ecs.now_ms(),
            Include {
                tags: true,
                health: false,
            },
        )),
    })
}

pub async fn deregister_container_instance(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeregisterContainerInstanceRequest,
) -> Result<wire::DeregisterContainerInstanceResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let ident = req.container_instance.unwrap_or_default();
    let not_found = || invalid(format!("Container instance '{ident}' not found."));
    let id = instance_id(ctx, &cluster.name, &ident)
        .ok_or_else(not_found)?
        .to_string();
    let force = req.force.unwrap_or(false);
    let partition = ctx.partition();
    let now = ecs.now_ms();
    let (record, tasks) = common::transact(ecs, || async {
        let key = pair_key(&cluster.name, &id);
        let (mut r, version) =
            common::get::<ContainerInstanceRecord>(ecs, ctx, kinds::CONTAINER_INSTANCE, &key)
                .await?
                .filter(|(r, _)| r.status != "INACTIVE")
                .ok_or_else(not_found)?;
        let mut ops = Vec::new();
        let mut tasks = Vec::new();
        for (key, t) in
            common::all::<TaskRecord>(ecs, ctx, kinds::TASK, &format!("{}|", cluster.name)).await?
        {
            if t.container_instance_id != id || t.last_status == TaskStatus::Stopped.as_str() {
                continue;
            }
            if !force {
                return Err(invalid("Found running tasks on the instance."));
            }
            // Forced: the tasks are orphaned, as ECS leaves them; berth records them as
            // stopped so their resources and counts do not linger, and the agent, which
            // receives no tasks for an INACTIVE instance, stops their containers.
            let Some((mut t, v)) = common::get::<TaskRecord>(ecs, ctx, kinds::TASK, &key).await?
            else {
                continue;
            };
            crate::tasks::mark_stopped(
                &mut t,
                now,
                "TerminationNotice",
                "Container instance deregistration forced by user",
            );
            ops.push(crate::tasks::put_task(&partition, &t, Expect::Version(v))?);
            tasks.push(t);
        }
        r.status = "INACTIVE".into();
        r.remaining = r.registered.clone();
        r.version += 1;
        ops.push(put_instance(&partition, &r, Expect::Version(version))?);
        Ok((ops, (r, tasks)))
    })
    .await?;
    let _ = tasks;
    let custom = custom_attributes(ecs, ctx, &cluster.name, &record.id).await?;
    Ok(wire::DeregisterContainerInstanceResponse {
        container_instance: Some(to_wire(
            &record,
            &[],
            &custom,
            ecs.now_ms(),
            Include {
                tags: true,
                health: false,
            },
        )),
    })
}

pub async fn describe_container_instances(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeContainerInstancesRequest,
) -> Result<wire::DescribeContainerInstancesResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let idents = req.container_instances.unwrap_or_default();
    if idents.is_empty() || idents.len() > 100 {
        return Err(invalid(
            "containerInstances must contain between 1 and 100 container instances.",
        ));
    }
    let include_list = req.include.unwrap_or_default();
    let include = Include {
        tags: include_list.iter().any(|i| i == "TAGS"),
        health: include_list
            .iter()
            .any(|i| i == "CONTAINER_INSTANCE_HEALTH"),
    };
    let tasks = live_tasks(ecs, ctx, &cluster.name).await?;
    let now = ecs.now_ms();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for ident in idents {
        let found = match instance_id(ctx, &cluster.name, &ident) {
            Some(id) => {
                common::get::<ContainerInstanceRecord>(
                    ecs,
                    ctx,
                    kinds::CONTAINER_INSTANCE,
                    &pair_key(&cluster.name, id),
                )
                .await?
            }
            None => None,
        };
        match found {
            Some((r, _)) => {
                let custom = custom_attributes(ecs, ctx, &cluster.name, &r.id).await?;
                out.push(to_wire(&r, &tasks, &custom, now, include));
            }
            None => {
                let arn = if ident.starts_with("arn:") {
                    ident
                } else {
                    instance_arn(ctx, &cluster.name, &ident)
                };
                failures.push(failure(arn, "MISSING"));
            }
        }
    }
    Ok(wire::DescribeContainerInstancesResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}

pub async fn list_container_instances(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListContainerInstancesRequest,
) -> Result<wire::ListContainerInstancesResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    // The cluster query language, evaluated on the same view of an instance as placement's.
    let filter = match req.filter.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            Some(berth_scheduler::parse(f).map_err(|e| invalid(e.to_string()))?)
        }
        _ => None,
    };
    let (tasks, custom) = match filter {
        Some(_) => (
            live_tasks(ecs, ctx, &cluster.name).await?,
            cluster_attributes(ecs, ctx, &cluster.name).await?,
        ),
        None => Default::default(),
    };
    let now = ecs.now_ms();
    let status = req.status;
    let items: Vec<(String, String)> = common::all::<ContainerInstanceRecord>(
        ecs,
        ctx,
        kinds::CONTAINER_INSTANCE,
        &format!("{}|", cluster.name),
    )
    .await?
    .into_iter()
    .filter(|(_, r)| match status.as_deref() {
        Some(s) => r.status == s,
        // Without a status ECS lists the instances that are registered: ACTIVE and DRAINING.
        None => r.status != "INACTIVE",
    })
    .filter(|(_, r)| {
        filter.as_ref().is_none_or(|e| {
            let custom = custom.get(&r.id).map_or(&[][..], Vec::as_slice);
            e.matches(&crate::placement::to_instance(
                r,
                custom,
                &tasks,
                connected(r, now),
            ))
        })
    })
    .map(|(k, r)| (k, r.arn))
    .collect();
    let binding = common::binding(ctx, &format!("ListContainerInstances.{}", cluster.name));
    let (arns, next) = common::page(
        ecs,
        &binding,
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListContainerInstancesResponse {
        container_instance_arns: Some(arns),
        next_token: next,
    })
}

pub async fn update_container_instances_state(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::UpdateContainerInstancesStateRequest,
) -> Result<wire::UpdateContainerInstancesStateResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let status = req.status.unwrap_or_default();
    if status != "ACTIVE" && status != "DRAINING" {
        return Err(invalid(
            "Container instances status can only be updated to ACTIVE or DRAINING.",
        ));
    }
    let idents = req.container_instances.unwrap_or_default();
    if idents.is_empty() || idents.len() > 10 {
        return Err(invalid(
            "containerInstances must contain between 1 and 10 container instances.",
        ));
    }
    let partition = ctx.partition();
    let mut updated = Vec::new();
    let mut failures = Vec::new();
    for ident in idents {
        let Some(id) = instance_id(ctx, &cluster.name, &ident).map(str::to_string) else {
            failures.push(failure(ident.clone(), "MISSING"));
            continue;
        };
        let key = pair_key(&cluster.name, &id);
        let result = common::transact(ecs, || async {
            let Some((mut r, version)) =
                common::get::<ContainerInstanceRecord>(ecs, ctx, kinds::CONTAINER_INSTANCE, &key)
                    .await?
            else {
                return Ok((vec![], Err("MISSING")));
            };
            if r.status == "INACTIVE" {
                return Ok((vec![], Err("INACTIVE")));
            }
            if r.status == status {
                return Ok((vec![], Ok(r)));
            }
            r.status = status.clone();
            r.version += 1;
            Ok((
                vec![put_instance(&partition, &r, Expect::Version(version))?],
                Ok(r),
            ))
        })
        .await?;
        match result {
            Ok(r) => updated.push(r),
            Err(reason) => failures.push(failure(instance_arn(ctx, &cluster.name, &id), reason)),
        }
    }
    let tasks = live_tasks(ecs, ctx, &cluster.name).await?;
    let now = ecs.now_ms();
    let mut out = Vec::new();
    for r in &updated {
        let custom = custom_attributes(ecs, ctx, &cluster.name, &r.id).await?;
        out.push(to_wire(r, &tasks, &custom, now, Include::default()));
    }
    Ok(wire::UpdateContainerInstancesStateResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}
