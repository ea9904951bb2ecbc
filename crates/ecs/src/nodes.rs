//! The control-plane side of berth's agent protocol (`berth-agent-api`): register, poll (long
//! poll + heartbeat) and state reports, plus the liveness sweep that stops the tasks of nodes
//! that stopped heartbeating.
//!
//! Agents belong to one partition (account and region): the server passes the context of its
//! configured default account and region.
//!
//! **Architecture Invariant:** node tokens are never stored, only their SHA-256; a task's
//! status only moves forward (`berth_model::task::advance`); a task's resources go back to its
//! instance in the same transaction that records it STOPPED, and only then.

use crate::Ecs;
use crate::common::{self, active_cluster};
use crate::container_instances::{self, Registration, put_instance};
use crate::records::{
    Capacity, ContainerInstanceRecord, InstanceIndexRecord, TaskRecord, kinds, on_instance_key,
    pair_key,
};
use crate::task_definitions::Definitions;
use crate::tasks::{mark_stopped, put_task};
use berth_agent_api as api;
use berth_aws::{AwsError, RequestContext};
use berth_model::task::{DesiredStatus, TaskStatus, advance};
use berth_shapes::ecs as wire;
use berth_store::{Expect, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// An agent endpoint's error: an HTTP status and the protocol's [`api::ErrorBody`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {}: {}", body.code, body.message)]
pub struct NodeError {
    pub status: u16,
    pub body: api::ErrorBody,
}

impl NodeError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        NodeError {
            status,
            body: api::ErrorBody {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        NodeError::new(401, "Unauthorized", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        NodeError::new(400, "BadRequest", message)
    }
}

/// ECS errors met on the way keep their code; a server fault stays a 500 whose message is
/// only a reference (the detail was logged where it happened).
impl From<AwsError> for NodeError {
    fn from(e: AwsError) -> Self {
        NodeError::new(e.status.as_u16(), &e.code, e.message)
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares secrets through their hashes, so the time taken says nothing about the secret.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn version_info(v: &api::VersionInfo) -> wire::VersionInfo {
    wire::VersionInfo {
        agent_version: Some(v.agent_version.clone()),
        agent_hash: v.agent_hash.clone(),
        docker_version: v.docker_version.clone(),
    }
}

/// Joins a node: with its node token as the same instance, otherwise (with the join token) as
/// a new one. The node token is returned here and only here.
pub async fn register(
    ecs: &Ecs,
    ctx: &RequestContext,
    join_token: &str,
    req: api::RegisterRequest,
) -> Result<api::RegisterResponse, NodeError> {
    if req.resources.cpu < 0 || req.resources.memory_mib < 0 {
        return Err(NodeError::bad_request("resources must not be negative"));
    }
    let (cluster, _) = active_cluster(ecs, ctx, Some(&req.cluster))
        .await
        .map_err(|_| {
            NodeError::new(
                404,
                "ClusterNotFound",
                format!("cluster '{}' does not exist", req.cluster),
            )
        })?;
    // Coming back as the same instance needs the token issued for it.
    let mut existing = None;
    if let (Some(id), Some(token)) = (&req.instance_id, &req.node_token) {
        let found = common::get::<ContainerInstanceRecord>(
            ecs,
            ctx,
            kinds::CONTAINER_INSTANCE,
            &pair_key(&cluster.name, id),
        )
        .await?;
        match found {
            Some((r, _)) if r.token_hash.as_deref() == Some(hash(token).as_str()) => {
                existing = Some((id.clone(), token.clone()));
            }
            _ => {}
        }
    }
    let token_hash;
    let token = match &existing {
        Some((_, token)) => {
            token_hash = None;
            token.clone()
        }
        None => {
            let given = req.join_token.as_deref().unwrap_or_default();
            if join_token.is_empty() || !same_secret(given, join_token) {
                return Err(NodeError::unauthorized(
                    "the join token (or the node token for this instance) is not valid",
                ));
            }
            let t = new_token();
            token_hash = Some(hash(&t));
            t
        }
    };
    let mut ports: Vec<u16> = req.resources.reserved_ports.clone();
    ports.sort_unstable();
    ports.dedup();
    let mut udp_ports: Vec<u16> = req.resources.reserved_udp_ports.clone();
    udp_ports.sort_unstable();
    udp_ports.dedup();
    let reg = Registration {
        existing: existing.map(|(id, _)| id),
        registered: Capacity {
            cpu: i64::from(req.resources.cpu),
            memory: i64::from(req.resources.memory_mib),
            ports,
            udp_ports,
        },
        attributes: req
            .attributes
            .iter()
            .map(|a| wire::Attribute {
                name: Some(a.name.clone()),
                value: a.value.clone(),
                target_type: None,
                target_id: None,
            })
            .collect(),
        version_info: version_info(&req.version),
        ec2_instance_id: Some(req.host_id.clone()).filter(|h| !h.is_empty()),
        token_hash,
        can_run_tasks: req.can_run_tasks,
        cannot_run_reason: req.cannot_run_reason.clone(),
        tags: vec![],
    };
    let r = container_instances::register(ecs, ctx, &cluster, reg).await?;
    Ok(api::RegisterResponse {
        instance_id: r.id,
        container_instance_arn: r.arn,
        node_token: token,
    })
}

/// The instance a bearer token speaks for, with its record version.
async fn authenticate(
    ecs: &Ecs,
    ctx: &RequestContext,
    instance_id: &str,
    bearer: Option<&str>,
) -> Result<(ContainerInstanceRecord, u64), NodeError> {
    let denied = || NodeError::unauthorized("the node token is not valid for this instance");
    let token = bearer.ok_or_else(denied)?;
    let (index, _) =
        common::get::<InstanceIndexRecord>(ecs, ctx, kinds::INSTANCE_INDEX, instance_id)
            .await?
            .ok_or_else(denied)?;
    let (r, v) = common::get::<ContainerInstanceRecord>(
        ecs,
        ctx,
        kinds::CONTAINER_INSTANCE,
        &pair_key(&index.cluster, instance_id),
    )
    .await?
    .ok_or_else(denied)?;
    match &r.token_hash {
        Some(h) if *h == hash(token) => Ok((r, v)),
        _ => Err(denied()),
    }
}

/// The node's desired state: every task on it not yet STOPPED (none for a deregistered node).
async fn desired(
    ecs: &Ecs,
    ctx: &RequestContext,
    instance: &ContainerInstanceRecord,
) -> Result<(Vec<api::AssignedTask>, bool), AwsError> {
    let draining = instance.status != "ACTIVE";
    if instance.status == "INACTIVE" {
        return Ok((vec![], draining));
    }
    let on_instance = on_instance_key(&instance.cluster, &instance.id, "");
    let task_keys: Vec<String> =
        common::all::<bool>(ecs, ctx, kinds::TASK_ON_INSTANCE, &on_instance)
            .await?
            .into_iter()
            .map(|(key, _)| pair_key(&instance.cluster, &key[on_instance.len()..]))
            .collect();
    // One read of every task, not one per task.
    let tasks: Vec<TaskRecord> = ecs
        .store()
        .get_many_as::<TaskRecord>(kinds::TASK, &ctx.partition(), &task_keys)
        .await
        .map_err(common::store_error)?
        .into_iter()
        // An entry outlives its task only between the two deletes of a sweep's commit (never):
        // a missing task is skipped rather than failing the node's poll.
        .flatten()
        .map(|r| r.value)
        .filter(|t| t.last_status != TaskStatus::Stopped.as_str())
        .collect();
    let mut definitions = Definitions::default();
    let mut out = Vec::new();
    for t in tasks {
        let mut reserved_ports = t.reserved.ports.clone();
        reserved_ports.extend(&t.reserved.udp_ports);
        // A DEACTIVATING task is draining from its load balancers: it keeps serving until the
        // service controller moves it on to STOPPING.
        let draining_targets = t.last_status == TaskStatus::Deactivating.as_str();
        let desired_status = if draining_targets {
            DesiredStatus::Running.as_str().to_string()
        } else {
            t.desired_status.clone()
        };
        out.push(api::AssignedTask {
            task_arn: t.arn.clone(),
            desired_status: desired_status.clone(),
            task_definition: serde_json::to_value(
                &*definitions
                    .get(ecs, ctx, &t.task_definition_arn)
                    .await?
                    .ok_or_else(|| missing_definition(&t))?,
            )
            .map_err(AwsError::internal)?,
            overrides: serde_json::to_value(&t.overrides).map_err(AwsError::internal)?,
            reserved_ports,
            stop_reason: t
                .stopped_reason
                .clone()
                .filter(|_| desired_status == DesiredStatus::Stopped.as_str()),
            group: Some(t.group.clone()),
            container_arns: t
                .containers
                .iter()
                .filter_map(|c| Some((c.name.clone()?, c.container_arn.clone()?)))
                .collect(),
        });
    }
    Ok((out, draining))
}

/// A task whose revision cannot be read: revisions are never removed, so the store is damaged.
fn missing_definition(t: &TaskRecord) -> AwsError {
    AwsError::internal(format!(
        "task {} names task definition {}, which is not stored",
        t.arn, t.task_definition_arn
    ))
}

/// An opaque revision of a node's desired state: equal answers have equal revisions, so a poll
/// with the revision of the current state waits for a change. Never 0 (which means "answer at
/// once").
fn fingerprint(tasks: &[api::AssignedTask], draining: bool) -> u64 {
    let mut h = Sha256::new();
    for t in tasks {
        h.update(t.task_arn.as_bytes());
        h.update([0]);
        h.update(t.desired_status.as_bytes());
        h.update([0]);
    }
    h.update([u8::from(draining)]);
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b).max(1)
}

/// Heartbeats are written at most this often, so polls do not churn the instance record (and
/// conflict with placements on it) more than needed.
const HEARTBEAT_WRITE_MS: i64 = 5_000;

/// Records that a node is alive (written at most every [`HEARTBEAT_WRITE_MS`]). The long poll
/// calls it first; a simulation calls it alone.
pub async fn heartbeat(
    ecs: &Ecs,
    ctx: &RequestContext,
    instance_id: &str,
    bearer: Option<&str>,
) -> Result<ContainerInstanceRecord, NodeError> {
    let (r, _) = authenticate(ecs, ctx, instance_id, bearer).await?;
    let now = ecs.now_ms();
    if now - r.last_heartbeat_ms < HEARTBEAT_WRITE_MS {
        return Ok(r);
    }
    let partition = ctx.partition();
    let key = pair_key(&r.cluster, &r.id);
    let r = common::transact(ecs, || async {
        let Some((mut r, v)) =
            common::get::<ContainerInstanceRecord>(ecs, ctx, kinds::CONTAINER_INSTANCE, &key)
                .await?
        else {
            return Err(
                AwsError::client("Unauthorized", "the instance no longer exists")
                    .with_status(http::StatusCode::UNAUTHORIZED),
            );
        };
        r.last_heartbeat_ms = now;
        Ok((vec![put_instance(&partition, &r, Expect::Version(v))?], r))
    })
    .await?;
    Ok(r)
}

/// The long poll: records the heartbeat, then answers with the node's whole desired state as
/// soon as it differs from `after_revision`, or after `wait` with the state unchanged.
pub async fn poll(
    ecs: &Ecs,
    ctx: &RequestContext,
    bearer: Option<&str>,
    req: api::PollRequest,
    wait: Duration,
) -> Result<api::PollResponse, NodeError> {
    // Subscribe before reading, so no change between the read and the wait is missed.
    let mut changes = ecs.store().subscribe();
    let mut instance = heartbeat(ecs, ctx, &req.instance_id, bearer).await?;
    let partition = ctx.partition();
    let task_prefix = format!("{}|", instance.cluster);
    let instance_key = pair_key(&instance.cluster, &instance.id);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (tasks, draining) = desired(ecs, ctx, &instance).await?;
        let revision = fingerprint(&tasks, draining);
        if revision != req.after_revision || tokio::time::Instant::now() >= deadline {
            return Ok(api::PollResponse {
                revision,
                tasks,
                draining,
            });
        }
        // Wait for a change that may concern this node: any task of its cluster, or its own
        // record (draining, deregistration).
        loop {
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => break,
                Ok(Ok(c)) => {
                    if c.partition == partition
                        && ((c.kind == kinds::TASK && c.key.starts_with(&task_prefix))
                            || (c.kind == kinds::CONTAINER_INSTANCE && c.key == instance_key))
                    {
                        break;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
            }
        }
        if let Some((r, _)) = common::get::<ContainerInstanceRecord>(
            ecs,
            ctx,
            kinds::CONTAINER_INSTANCE,
            &instance_key,
        )
        .await?
        {
            instance = r;
        }
    }
}

fn container_rank(s: &str) -> u8 {
    match s {
        "PENDING" => 0,
        "RUNNING" => 1,
        "STOPPED" => 2,
        _ => 0,
    }
}

/// Applies one observation to a task; returns whether it changed and whether it just stopped.
fn apply(t: &mut TaskRecord, s: &api::TaskState, now: i64) -> (bool, bool) {
    let v0 = t.version;
    let before = t.clone();
    let current = TaskStatus::parse(&t.last_status).unwrap_or(TaskStatus::Provisioning);
    let reported = TaskStatus::parse(&s.status);
    let next = reported.and_then(|r| advance(current, r));
    if t.pull_started_at_ms.is_none() {
        t.pull_started_at_ms = s.pull_started_at;
    }
    if t.pull_stopped_at_ms.is_none() {
        t.pull_stopped_at_ms = s.pull_stopped_at;
    }
    if let Some(h) = &s.health_status {
        t.health_status = h.clone();
    }
    for cs in &s.containers {
        let Some(c) = t
            .containers
            .iter_mut()
            .find(|c| c.name.as_deref() == Some(cs.name.as_str()))
        else {
            continue;
        };
        let cur = c.last_status.as_deref().unwrap_or("PENDING");
        if container_rank(&cs.status) > container_rank(cur) {
            c.last_status = Some(cs.status.clone());
        }
        if cs.runtime_id.is_some() {
            c.runtime_id = cs.runtime_id.clone();
        }
        if cs.exit_code.is_some() {
            c.exit_code = cs.exit_code;
        }
        if cs.reason.is_some() {
            c.reason = cs.reason.clone();
        }
        if cs.health_status.is_some() {
            c.health_status = cs.health_status.clone();
        }
        if cs.image_digest.is_some() {
            c.image_digest = cs.image_digest.clone();
        }
        if !cs.network_bindings.is_empty() {
            c.network_bindings = Some(
                cs.network_bindings
                    .iter()
                    .map(|b| wire::NetworkBinding {
                        bind_ip: Some(b.bind_ip.clone()),
                        container_port: Some(i32::from(b.container_port)),
                        host_port: Some(i32::from(b.host_port)),
                        protocol: Some(b.protocol.clone()),
                        container_port_range: None,
                        host_port_range: None,
                    })
                    .collect(),
            );
        }
    }
    let mut stopped_now = false;
    if let Some(next) = next {
        if next >= TaskStatus::Running {
            t.started_at_ms = t.started_at_ms.or(s.started_at).or(Some(now));
            t.connectivity_at_ms.get_or_insert(now);
        }
        if next >= TaskStatus::Deactivating {
            t.stopping_at_ms.get_or_insert(now);
        }
        if next == TaskStatus::Stopped {
            if t.execution_stopped_at_ms.is_none() {
                t.execution_stopped_at_ms = s.execution_stopped_at;
            }
            if let Some(code) = &s.stop_code
                && t.stop_code.is_none()
            {
                t.stop_code = Some(code.clone());
            }
            if let Some(reason) = &s.stopped_reason
                && t.stopped_reason.is_none()
            {
                t.stopped_reason = Some(reason.clone());
            }
            let code = if t.desired_status == DesiredStatus::Stopped.as_str() {
                "UserInitiated"
            } else {
                "EssentialContainerExited"
            };
            let reason = if code == "UserInitiated" {
                "Task stopped by user"
            } else {
                "Essential container in task exited"
            };
            mark_stopped(t, now, code, reason);
            stopped_now = true;
        } else {
            t.last_status = next.as_str().into();
        }
    }
    // ECS's version counts changes, however many fields one report touched.
    t.version = v0;
    let changed = before != *t;
    if changed {
        t.version = v0 + 1;
    }
    (changed, stopped_now)
}

/// Applies a state report, all of it in one transaction (one commit per report rather than per
/// task: a fleet's agents report tens of thousands of tasks at once when a deployment starts):
/// each task's observation moves it forward only; a task reaching STOPPED gives its resources
/// back to the instance in the same transaction. Reports for tasks that are not on this
/// instance are ignored.
pub async fn report(
    ecs: &Ecs,
    ctx: &RequestContext,
    bearer: Option<&str>,
    req: api::StateReport,
) -> Result<(), NodeError> {
    let (instance, _) = authenticate(ecs, ctx, &req.instance_id, bearer).await?;
    let partition = ctx.partition();
    let instance_key = pair_key(&instance.cluster, &instance.id);
    let observed: Vec<(String, &api::TaskState)> = req
        .tasks
        .iter()
        .filter_map(|s| {
            let id = task_id_of(&s.task_arn, &instance.cluster)?;
            Some((pair_key(&instance.cluster, id), s))
        })
        .collect();
    if observed.is_empty() {
        return Ok(());
    }
    common::transact(ecs, || async {
        let now = ecs.now_ms();
        // Each task read once, with the version read; a task reported twice in one report
        // takes both observations in order.
        let mut tasks: HashMap<&str, (TaskRecord, u64, bool)> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        let mut released: Vec<Capacity> = Vec::new();
        for (key, s) in &observed {
            if !tasks.contains_key(key.as_str()) {
                let Some((t, v)) = common::get::<TaskRecord>(ecs, ctx, kinds::TASK, key).await?
                else {
                    continue;
                };
                if t.container_instance_id != instance.id {
                    continue;
                }
                tasks.insert(key, (t, v, false));
                order.push(key);
            }
            let Some((t, _, dirty)) = tasks.get_mut(key.as_str()) else {
                continue;
            };
            let (changed, stopped) = apply(t, s, now);
            *dirty |= changed;
            if stopped {
                released.push(t.reserved.clone());
            }
        }
        let mut ops = Vec::new();
        for key in order {
            if let Some((t, v, true)) = tasks.get(key) {
                ops.push(put_task(&partition, t, Expect::Version(*v))?);
            }
        }
        if !released.is_empty()
            && let Some((mut r, rv)) = common::get::<ContainerInstanceRecord>(
                ecs,
                ctx,
                kinds::CONTAINER_INSTANCE,
                &instance_key,
            )
            .await?
        {
            for reserved in &released {
                crate::placement::release(&mut r.remaining, reserved, &r.registered);
                r.version += 1;
            }
            ops.push(put_instance(&partition, &r, Expect::Version(rv))?);
        }
        Ok((ops, ()))
    })
    .await?;
    Ok(())
}

/// What one container of a task needs resolved before the agent pulls its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerNeeds {
    pub name: String,
    pub image: String,
    /// `repositoryCredentials.credentialsParameter`: the secret holding registry credentials.
    pub credentials_parameter: Option<String>,
    /// `secrets`: environment variable name and `valueFrom`.
    pub secrets: Vec<(String, String)>,
}

/// The references a task placed on the calling node names (registry credentials and secrets),
/// for the server to resolve. Only a task on this node and not yet STOPPED is answered, and
/// only with what its own definition names, so a node cannot ask for secrets of other tasks.
pub async fn credential_needs(
    ecs: &Ecs,
    ctx: &RequestContext,
    bearer: Option<&str>,
    req: &api::CredentialsRequest,
) -> Result<Vec<ContainerNeeds>, NodeError> {
    let (instance, _) = authenticate(ecs, ctx, &req.instance_id, bearer).await?;
    let not_here = || {
        NodeError::new(
            404,
            "TaskNotFound",
            format!("task {} is not placed on this instance", req.task_arn),
        )
    };
    let id = task_id_of(&req.task_arn, &instance.cluster).ok_or_else(not_here)?;
    let (t, _) = common::get::<TaskRecord>(ecs, ctx, kinds::TASK, &pair_key(&instance.cluster, id))
        .await?
        .ok_or_else(not_here)?;
    if t.container_instance_id != instance.id || t.last_status == TaskStatus::Stopped.as_str() {
        return Err(not_here());
    }
    let definition = Definitions::default()
        .get(ecs, ctx, &t.task_definition_arn)
        .await?
        .ok_or_else(|| missing_definition(&t))?;
    Ok(definition
        .container_definitions
        .iter()
        .flatten()
        .map(|c| ContainerNeeds {
            name: c.name.clone().unwrap_or_default(),
            image: c.image.clone().unwrap_or_default(),
            credentials_parameter: c
                .repository_credentials
                .as_ref()
                .and_then(|r| r.credentials_parameter.clone()),
            secrets: c
                .secrets
                .iter()
                .flatten()
                .map(|s| {
                    (
                        s.name.clone().unwrap_or_default(),
                        s.value_from.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        })
        .collect())
}

/// The task id in a task ARN of `cluster` (`…:task/<cluster>/<id>`).
fn task_id_of<'a>(arn: &'a str, cluster: &str) -> Option<&'a str> {
    let (_, rest) = arn.split_once(":task/")?;
    let (c, id) = rest.split_once('/')?;
    (c == cluster && !id.is_empty() && !id.contains('|')).then_some(id)
}

/// How the liveness sweep decides, as data so tests can fix them.
#[derive(Debug, Clone, Copy)]
pub struct SweepPolicy {
    /// Tasks of an instance whose last heartbeat is older than this are stopped.
    pub grace_ms: i64,
    /// STOPPED tasks are kept describable this long after they stopped, then deleted.
    pub keep_stopped_ms: i64,
}

impl Default for SweepPolicy {
    fn default() -> Self {
        SweepPolicy {
            grace_ms: 5 * 60 * 1000,
            keep_stopped_ms: 60 * 60 * 1000,
        }
    }
}

/// What a sweep decided: tasks to stop (lost instance) and STOPPED tasks to forget.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepPlan {
    /// `(task key, instance key)`.
    pub stop: Vec<(String, String)>,
    /// `(task key, its [`kinds::TASK_ON_INSTANCE`] key)`.
    pub forget: Vec<(String, String)>,
}

/// What the sweep reads of a task record: decoding only these fields (the rest of each record
/// is skipped) keeps a sweep of a whole fleet's tasks cheap.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SweepTask {
    pub cluster: String,
    pub id: String,
    pub container_instance_id: String,
    pub last_status: String,
    pub stopped_at_ms: Option<i64>,
}

/// The pure part of the sweep: from the instances and tasks of a partition and the time, which
/// tasks to stop and which to forget.
pub fn plan_sweep(
    instances: &[ContainerInstanceRecord],
    tasks: &[SweepTask],
    now_ms: i64,
    policy: SweepPolicy,
) -> SweepPlan {
    let mut plan = SweepPlan::default();
    let by_key: HashMap<(&str, &str), &ContainerInstanceRecord> = instances
        .iter()
        .map(|i| ((i.cluster.as_str(), i.id.as_str()), i))
        .collect();
    for t in tasks {
        let key = pair_key(&t.cluster, &t.id);
        if t.last_status == TaskStatus::Stopped.as_str() {
            if t.stopped_at_ms
                .is_some_and(|s| now_ms - s > policy.keep_stopped_ms)
            {
                plan.forget.push((
                    key,
                    on_instance_key(&t.cluster, &t.container_instance_id, &t.id),
                ));
            }
            continue;
        }
        let lost = match by_key.get(&(t.cluster.as_str(), t.container_instance_id.as_str())) {
            Some(i) => now_ms - i.last_heartbeat_ms > policy.grace_ms,
            None => true,
        };
        if lost {
            plan.stop
                .push((key, pair_key(&t.cluster, &t.container_instance_id)));
        }
    }
    plan
}

/// Stops the tasks of instances that stopped heartbeating and forgets old STOPPED tasks, in
/// the partition of `ctx`. Returns how many tasks it stopped.
pub async fn sweep(
    ecs: &Ecs,
    ctx: &RequestContext,
    policy: SweepPolicy,
) -> Result<usize, AwsError> {
    let now = ecs.now_ms();
    let instances: Vec<ContainerInstanceRecord> =
        common::all(ecs, ctx, kinds::CONTAINER_INSTANCE, "")
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
    let tasks: Vec<SweepTask> = common::all(ecs, ctx, kinds::TASK, "")
        .await?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let plan = plan_sweep(&instances, &tasks, now, policy);
    let partition = ctx.partition();
    let mut stopped = 0;
    for (task_key, instance_key) in &plan.stop {
        let did = common::transact(ecs, || async {
            let Some((mut t, v)) =
                common::get::<TaskRecord>(ecs, ctx, kinds::TASK, task_key).await?
            else {
                return Ok((vec![], false));
            };
            let instance = common::get::<ContainerInstanceRecord>(
                ecs,
                ctx,
                kinds::CONTAINER_INSTANCE,
                instance_key,
            )
            .await?;
            // Re-check under the transaction: the agent may have come back meanwhile.
            if let Some((i, _)) = &instance
                && now - i.last_heartbeat_ms <= policy.grace_ms
            {
                return Ok((vec![], false));
            }
            let started =
                TaskStatus::parse(&t.last_status).is_some_and(|s| s >= TaskStatus::Running);
            let code = if started {
                "TerminationNotice"
            } else {
                "TaskFailedToStart"
            };
            let host = instance
                .as_ref()
                .map(|(i, _)| i.ec2_instance_id.clone())
                .unwrap_or_default();
            let reason = format!(
                "Task stopped because its container instance ({host}) stopped sending heartbeats."
            );
            if !mark_stopped(&mut t, now, code, &reason) {
                return Ok((vec![], false));
            }
            let mut ops = vec![put_task(&partition, &t, Expect::Version(v))?];
            if let Some((mut i, iv)) = instance {
                crate::placement::release(&mut i.remaining, &t.reserved, &i.registered);
                i.version += 1;
                ops.push(put_instance(&partition, &i, Expect::Version(iv))?);
            }
            Ok((ops, true))
        })
        .await?;
        if did {
            stopped += 1;
        }
    }
    for (key, index_key) in &plan.forget {
        ecs.store()
            .commit(vec![
                berth_store::Op::delete(kinds::TASK, partition.clone(), key.clone(), Expect::Any),
                berth_store::Op::delete(
                    kinds::TASK_ON_INSTANCE,
                    partition.clone(),
                    index_key.clone(),
                    Expect::Any,
                ),
            ])
            .await
            .map_err(common::store_error)?;
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_state_and_are_never_zero() {
        let t = |arn: &str, d: &str| api::AssignedTask {
            task_arn: arn.into(),
            desired_status: d.into(),
            task_definition: serde_json::Value::Null,
            overrides: serde_json::Value::Null,
            reserved_ports: vec![],
            stop_reason: None,
            group: None,
            container_arns: Default::default(),
        };
        let a = fingerprint(&[t("a", "RUNNING")], false);
        assert_ne!(a, 0);
        assert_eq!(a, fingerprint(&[t("a", "RUNNING")], false));
        assert_ne!(a, fingerprint(&[t("a", "STOPPED")], false));
        assert_ne!(a, fingerprint(&[t("a", "RUNNING")], true));
        assert_ne!(fingerprint(&[], false), 0);
    }

    #[test]
    fn the_sweep_stops_tasks_of_silent_instances_and_forgets_old_stopped_ones() {
        let instance = |id: &str, heartbeat: i64| -> ContainerInstanceRecord {
            serde_json::from_value(serde_json::json!({
                "cluster": "default", "id": id, "arn": format!("arn:{id}"),
                "ec2_instance_id": format!("h-{id}"), "status": "ACTIVE",
                "registered": {"cpu": 0, "memory": 0, "ports": [], "udp_ports": []},
                "remaining": {"cpu": 0, "memory": 0, "ports": [], "udp_ports": []},
                "attributes": [], "version_info": {}, "registered_at_ms": 0,
                "last_heartbeat_ms": heartbeat, "token_hash": null, "can_run_tasks": true,
                "cannot_run_reason": null, "tags": [], "version": 1
            }))
            .expect("an instance record")
        };
        let task = |id: &str, on: &str, status: &str, stopped: Option<i64>| SweepTask {
            cluster: "default".into(),
            id: id.into(),
            container_instance_id: on.into(),
            last_status: status.into(),
            stopped_at_ms: stopped,
        };
        let policy = SweepPolicy {
            grace_ms: 1_000,
            keep_stopped_ms: 5_000,
        };
        let plan = plan_sweep(
            &[instance("live", 9_500), instance("silent", 1_000)],
            &[
                task("a", "live", "RUNNING", None),
                task("b", "silent", "RUNNING", None),
                task("c", "gone", "PENDING", None),
                task("d", "live", "STOPPED", Some(1_000)),
                task("e", "live", "STOPPED", Some(8_000)),
            ],
            10_000,
            policy,
        );
        assert_eq!(
            plan.stop,
            [
                ("default|b".to_string(), "default|silent".to_string()),
                ("default|c".to_string(), "default|gone".to_string()),
            ]
        );
        assert_eq!(
            plan.forget,
            [("default|d".to_string(), "default|live|d".to_string())]
        );
    }

    #[test]
    fn task_ids_from_arns() {
        assert_eq!(
            task_id_of(
                "arn:aws:ecs:us-east-1:000000000000:task/default/abc",
                "default"
            ),
            Some("abc")
        );
        assert_eq!(
            task_id_of(
                "arn:aws:ecs:us-east-1:000000000000:task/other/abc",
                "default"
            ),
            None
        );
        assert_eq!(task_id_of("nonsense", "default"), None);
    }
}
