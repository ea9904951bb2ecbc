//! The service controller: level-triggered reconciliation of every service with its tasks.
//!
//! Each pass reads a service record and the service's task records, and
//! 0. puts the tasks behind the service's load balancers (`load_balancing`): registers running
//!    ones, deregisters stopping ones, lets drained DEACTIVATING ones stop, and learns what the
//!    targets' health says about each task;
//! 1. *observes*: counts failed tasks once each, trips the circuit breaker (and rolls back),
//!    completes deployments, retires old ones, notes a steady state, finishes a deletion;
//! 2. *decides* with the pure rollout arithmetic (`berth_model::rollout::step`, or one task per
//!    instance for DAEMON services): which tasks to stop, how many to start;
//! 3. *acts*: asks tasks to stop, places new ones (one transaction each with the instances they
//!    take), and records ECS's events.
//!
//! Nothing is remembered between passes except what is in the store, so a pass after a crash,
//! a restart or a lost race sees the tasks that exist and starts no duplicates: tasks are
//! counted, not remembered as "to be started".

use crate::Ecs;
use crate::common::{self, failure};
use crate::load_balancing::{self, LbHealth};
use crate::records::{
    AttributeRecord, ClusterRecord, ContainerInstanceRecord, DeploymentRecord,
    MAX_FINISHED_DEPLOYMENTS, MAX_SERVICE_EVENTS, ServiceRecord, TaskDefinitionRecord, TaskRecord,
    kinds, pair_key,
};
use crate::services::{self, push_event, put_service};
use crate::tasks::Launch;
use berth_aws::{AwsError, RequestContext};
use berth_model::rollout::{self, Phase, StopWhy, TaskView};
use berth_model::task::{DesiredStatus, TaskStatus};
use berth_shapes::ecs as wire;
use berth_store::Expect;
use std::collections::HashMap;

/// Stop codes of tasks that did not fail: someone asked them to stop, or their instance went.
const NOT_FAILURES: [&str; 3] = [
    "UserInitiated",
    "ServiceSchedulerInitiated",
    "TerminationNotice",
];
const HEALTH_FAILURE: &str = "Task failed container health checks";

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub started: usize,
    pub stopped: usize,
}

/// Reconciles every service of the partition of `ctx`.
pub async fn reconcile(ecs: &Ecs, ctx: &RequestContext) -> Result<Pass, AwsError> {
    let mut total = Pass::default();
    let services = common::all::<ServiceRecord>(ecs, ctx, kinds::SERVICE, "").await?;
    if services.iter().all(|(_, s)| s.status == "INACTIVE") {
        return Ok(total);
    }
    // One read of the partition's tasks per pass, not one per service: each service only looks
    // at its own group, and placement reads what it needs afresh in its own transaction.
    let mut by_service: HashMap<(String, String), Vec<TaskRecord>> = HashMap::new();
    for (_, t) in common::all::<TaskRecord>(ecs, ctx, kinds::TASK, "").await? {
        by_service
            .entry((t.cluster.clone(), t.group.clone()))
            .or_default()
            .push(t);
    }
    for (_, s) in services {
        if s.status == "INACTIVE" {
            continue;
        }
        let tasks = by_service
            .remove(&(s.cluster.clone(), services::group(&s.name)))
            .unwrap_or_default();
        match reconcile_service(ecs, ctx, &s.cluster, &s.name, &tasks).await {
            Ok(p) => {
                total.started += p.started;
                total.stopped += p.stopped;
            }
            Err(e) => {
                tracing::warn!(service = %s.arn, code = %e.code, "service reconcile failed: {}", e.message)
            }
        }
    }
    Ok(total)
}

fn ended(t: &TaskRecord) -> bool {
    t.last_status == TaskStatus::Stopped.as_str()
}

fn running(t: &TaskRecord) -> bool {
    t.last_status == TaskStatus::Running.as_str()
}

/// The rollout arithmetic's view of a live task. Behind a load balancer, a task is healthy only
/// once every target is healthy, and unhealthy (to be replaced) once a target failed its checks
/// after the grace period, as a failed container health check.
fn view(t: &TaskRecord, primary: &str, grace_ms: i64, now: i64, lb: &LbHealth) -> TaskView {
    let status = TaskStatus::parse(&t.last_status).unwrap_or(TaskStatus::Provisioning);
    let phase =
        if t.desired_status == DesiredStatus::Stopped.as_str() || status > TaskStatus::Running {
            Phase::Stopping
        } else if status == TaskStatus::Running {
            Phase::Running
        } else {
            Phase::Pending
        };
    let checked = t.health_checked;
    let lb_healthy = matches!(lb, LbHealth::NotBehind | LbHealth::Healthy);
    let healthy =
        phase == Phase::Running && (!checked || t.health_status == "HEALTHY") && lb_healthy;
    let past_grace = t
        .started_at_ms
        .is_some_and(|s| now.saturating_sub(s) >= grace_ms);
    let failing = checked && t.health_status == "UNHEALTHY" || matches!(lb, LbHealth::Unhealthy(_));
    TaskView {
        id: t.id.clone(),
        primary: t.started_by.as_deref() == Some(primary),
        phase,
        healthy,
        unhealthy: phase == Phase::Running && failing && past_grace,
    }
}

fn lb_of(lb: &HashMap<String, LbHealth>, id: &str) -> LbHealth {
    lb.get(id).cloned().unwrap_or_default()
}

/// Tasks named by one "has started"/"has stopped" event. ECS's scheduler launches tasks in
/// batches and names each batch in its own event; one event naming every task of a large
/// start (100,000 in the simulation) made a multi-megabyte service record, rewritten on every
/// later change.
const TASKS_PER_EVENT: usize = 10;

/// The events for the tasks `ids` a pass started or stopped: one per [`TASKS_PER_EVENT`] tasks,
/// and no more than the service keeps.
fn task_events(service: &str, verb: &str, noun: &str, ids: &[String]) -> Vec<String> {
    let chunks = ids.chunks(TASKS_PER_EVENT);
    let skip = chunks.len().saturating_sub(MAX_SERVICE_EVENTS);
    chunks
        .skip(skip)
        .map(|batch| {
            let names = batch
                .iter()
                .map(|id| format!("(task {id})"))
                .collect::<Vec<_>>()
                .join(" ");
            format!(
                "(service {service}) {verb} {} {noun}: {names}.",
                batch.len()
            )
        })
        .collect()
}

/// The most recent COMPLETED deployment other than the primary: what a rollback returns to.
pub(crate) fn rollback_target(s: &ServiceRecord) -> Option<DeploymentRecord> {
    s.deployments
        .iter()
        .skip(1)
        .find(|d| d.rollout_state == "COMPLETED")
        .cloned()
}

/// Fails deployment `failed` (an index into `s.deployments`) and starts a new deployment of
/// `target`'s revision that rolls it back.
pub(crate) fn roll_back(
    ctx: &RequestContext,
    s: &mut ServiceRecord,
    failed: usize,
    target: &DeploymentRecord,
    now: i64,
    reason: &str,
) {
    let failed_id = s.deployments[failed].id.clone();
    {
        let d = &mut s.deployments[failed];
        d.rollout_state = "FAILED".into();
        d.updated_at_ms = now;
        d.service_deployment_status = "ROLLBACK_IN_PROGRESS".into();
        d.status_reason = Some(reason.to_string());
        d.rollback = Some(wire::Rollback {
            reason: Some(reason.to_string()),
            started_at: Some(berth_shapes::Timestamp::from_millis(now)),
            service_revision_arn: Some(target.service_revision_arn.clone()),
        });
    }
    s.task_definition = target.task_definition.clone();
    s.load_balancers = target.load_balancers.clone();
    s.network_configuration = target.network_configuration.clone();
    services::begin_deployment(ctx, s, target.container_images.clone(), now);
    let new = &mut s.deployments[0];
    new.rolls_back = Some(failed_id.clone());
    new.rollout_state_reason = format!(
        "ECS deployment circuit breaker: rolling back to deploymentId {}.",
        target.id
    );
    // begin_deployment marked the failed one ACTIVE; its ServiceDeployment view keeps saying
    // that it is being rolled back.
    if let Some(d) = s.deployments.iter_mut().find(|d| d.id == failed_id) {
        d.service_deployment_status = "ROLLBACK_IN_PROGRESS".into();
        d.stopped_at_ms = None;
        d.status_reason = Some(reason.to_string());
    }
    let name = s.name.clone();
    push_event(
        s,
        now,
        format!("(service {name}) rolling back to deployment {}.", target.id),
    );
}

/// Step 1: what the tasks say about the service's deployments. Pure; returns whether the
/// record changed.
pub(crate) fn observe(
    ctx: &RequestContext,
    s: &mut ServiceRecord,
    tasks: &[TaskRecord],
    lb: &HashMap<String, LbHealth>,
    now: i64,
) -> bool {
    let before = s.clone();
    let name = s.name.clone();
    // Failures and first RUNNING, per deployment.
    for d in s.deployments.iter_mut() {
        let mine = tasks
            .iter()
            .filter(|t| t.started_by.as_deref() == Some(d.id.as_str()));
        for t in mine {
            if running(t) || t.started_at_ms.is_some() && !ended(t) {
                if !d.any_running {
                    d.any_running = true;
                    d.updated_at_ms = now;
                }
                if d.consecutive_failures > 0 && running(t) {
                    d.consecutive_failures = 0;
                    d.launch_not_before_ms = 0;
                }
            }
            let failed = ended(t)
                && !t
                    .stop_code
                    .as_deref()
                    .is_some_and(|c| NOT_FAILURES.contains(&c));
            if failed && !d.counted_failures.contains(&t.id) {
                d.counted_failures.push(t.id.clone());
                if d.counted_failures.len() > 400 {
                    d.counted_failures.remove(0);
                }
                d.failed_tasks += 1;
                d.consecutive_failures += 1;
                d.launch_not_before_ms = now + rollout::launch_backoff_ms(d.consecutive_failures);
                d.updated_at_ms = now;
            }
        }
    }
    if let Some(p) = s.deployments.first()
        && p.consecutive_failures == 3
        && !s
            .events
            .first()
            .is_some_and(|e| e.message.contains("unable to consistently"))
    {
        push_event(
            s,
            now,
            format!(
                "(service {name}) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section."
            ),
        );
    }
    // The circuit breaker watches the primary deployment while it rolls out.
    let desired = u32::try_from(s.desired_count).unwrap_or(0);
    let breaker = s.deployments.first().and_then(|p| {
        let b = p
            .deployment_configuration
            .deployment_circuit_breaker
            .as_ref()?;
        (b.enable == Some(true)).then_some(b.rollback == Some(true))
    });
    if let Some(rollback) = breaker
        && s.status == "ACTIVE"
        && s.deployments[0].rollout_state == "IN_PROGRESS"
        && s.deployments[0].failed_tasks >= rollout::circuit_breaker_threshold(desired) as i32
    {
        let id = s.deployments[0].id.clone();
        let reason = "ECS deployment circuit breaker: tasks failed to start.";
        push_event(
            s,
            now,
            format!("(service {name}) (deployment {id}) deployment failed: tasks failed to start."),
        );
        match rollback_target(s).filter(|_| rollback) {
            Some(target) => roll_back(ctx, s, 0, &target, now, reason),
            None => {
                let d = &mut s.deployments[0];
                d.rollout_state = "FAILED".into();
                d.rollout_state_reason = reason.into();
                d.service_deployment_status = if rollback {
                    "ROLLBACK_FAILED"
                } else {
                    "STOPPED"
                }
                .into();
                d.status_reason = Some(reason.into());
                d.stopped_at_ms = Some(now);
                d.updated_at_ms = now;
            }
        }
    }
    // Older deployments with no task left are done.
    let live_of = |id: &str| {
        tasks
            .iter()
            .any(|t| !ended(t) && t.started_by.as_deref() == Some(id))
    };
    for d in s.deployments.iter_mut().skip(1) {
        if d.status == "ACTIVE" && !live_of(&d.id) {
            d.status = "INACTIVE".into();
            d.updated_at_ms = now;
            if d.service_deployment_status == "IN_PROGRESS" {
                d.service_deployment_status = "STOPPED".into();
                d.stopped_at_ms = Some(now);
            }
        }
    }
    // The primary completes when it alone runs the desired count, all healthy.
    let views: Vec<TaskView> = {
        let primary = s.deployments[0].id.clone();
        let grace = i64::from(s.health_check_grace_period_seconds.unwrap_or(0)) * 1000;
        tasks
            .iter()
            .filter(|t| !ended(t))
            .map(|t| view(t, &primary, grace, now, &lb_of(lb, &t.id)))
            .collect()
    };
    let others_live = s.deployments.iter().skip(1).any(|d| d.status == "ACTIVE");
    let primary_healthy = views.iter().filter(|v| v.primary && v.healthy).count() as u32;
    let all_settled = views.iter().all(|v| v.primary && v.healthy);
    let settled =
        !others_live && primary_healthy == desired && all_settled && views.len() as u32 == desired;
    if settled && s.status == "ACTIVE" && s.deployments[0].rollout_state == "IN_PROGRESS" {
        let rolled_back = s.deployments[0].rolls_back.clone();
        let d = &mut s.deployments[0];
        d.rollout_state = "COMPLETED".into();
        d.rollout_state_reason = format!("ECS deployment {} completed.", d.id);
        d.service_deployment_status = "SUCCESSFUL".into();
        d.finished_at_ms = Some(now);
        d.updated_at_ms = now;
        let id = d.id.clone();
        if let Some(failed) = rolled_back
            && let Some(f) = s.deployments.iter_mut().find(|d| d.id == failed)
        {
            f.service_deployment_status = "ROLLBACK_SUCCESSFUL".into();
            f.finished_at_ms = Some(now);
        }
        push_event(
            s,
            now,
            format!("(service {name}) (deployment {id}) deployment completed."),
        );
    }
    if settled && s.status == "ACTIVE" && !s.steady {
        s.steady = true;
        push_event(
            s,
            now,
            format!("(service {name}) has reached a steady state."),
        );
    } else if !settled && s.steady {
        s.steady = false;
    }
    // A deleted service is INACTIVE once its last task stopped.
    if s.status == "DRAINING" && views.is_empty() {
        s.status = "INACTIVE".into();
        for d in s.deployments.iter_mut() {
            if d.status != "INACTIVE" {
                d.status = "INACTIVE".into();
                d.updated_at_ms = now;
            }
        }
    }
    // Keep the finished history bounded.
    let mut finished = 0;
    s.deployments.retain(|d| {
        if d.status != "INACTIVE" {
            return true;
        }
        finished += 1;
        finished <= MAX_FINISHED_DEPLOYMENTS
    });
    before != *s
}

async fn launch_of(
    ecs: &Ecs,
    ctx: &RequestContext,
    s: &ServiceRecord,
    d: &DeploymentRecord,
) -> Result<Option<Launch>, AwsError> {
    // A service keeps running its revision even after the revision is deregistered.
    let Some((td, _)): Option<(TaskDefinitionRecord, u64)> =
        crate::task_definitions::find(ecs, ctx, &d.task_definition).await?
    else {
        return Ok(None);
    };
    let mut tags = match s.propagate_tags.as_str() {
        "SERVICE" => s.tags.clone(),
        "TASK_DEFINITION" => td.tags.clone(),
        _ => Vec::new(),
    };
    if s.enable_ecs_managed_tags {
        for (k, v) in [
            ("aws:ecs:clusterName", &s.cluster),
            ("aws:ecs:serviceName", &s.name),
        ] {
            tags.push(wire::Tag {
                key: Some(k.into()),
                value: Some(v.clone()),
            });
        }
    }
    let (constraints, mut strategies) =
        crate::tasks::placement_rules(&s.placement_constraints, &s.placement_strategy)?;
    if strategies.is_empty() {
        // ECS spreads a service's tasks across availability zones when it names no strategy;
        // then across instances, so replicas do not share a node while others are free.
        strategies = vec![
            berth_scheduler::Strategy::Spread(berth_scheduler::SpreadField::Attribute(
                "ecs.availability-zone".into(),
            )),
            berth_scheduler::Strategy::Spread(berth_scheduler::SpreadField::InstanceId),
        ];
    }
    crate::tasks::launch_for(
        td.definition,
        td.tags,
        None,
        services::group(&s.name),
        Some(d.id.clone()),
        tags,
        constraints,
        strategies,
        s.enable_execute_command,
    )
    .map(Some)
}

/// Asks a task to stop (desired STOPPED) with the scheduler's stop code; the agent stops it
/// and reports STOPPED, which gives its resources back. Returns the task as written, or `None`
/// when it was already asked or gone.
async fn stop_task(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
    id: &str,
    reason: &str,
    drain: bool,
) -> Result<Option<TaskRecord>, AwsError> {
    let partition = ctx.partition();
    let key = pair_key(cluster, id);
    common::transact(ecs, || async {
        let Some((mut t, v)) = common::get::<TaskRecord>(ecs, ctx, kinds::TASK, &key).await? else {
            return Ok((vec![], None));
        };
        if !crate::tasks::request_stop(
            &mut t,
            ecs.now_ms(),
            "ServiceSchedulerInitiated",
            reason,
            drain,
        ) {
            return Ok((vec![], None));
        }
        Ok((
            vec![crate::tasks::put_task(&partition, &t, Expect::Version(v))?],
            Some(t),
        ))
    })
    .await
}

/// ECS's event for a task it could not place, from placement's failures.
fn placement_event(service: &str, failures: &[wire::Failure]) -> String {
    let head = format!(
        "(service {service}) was unable to place a task because no container instance met all of its requirements."
    );
    let Some(f) = failures.first() else {
        return format!(
            "{head} Reason: No Container Instances were found in your cluster. For more information, see the Troubleshooting section."
        );
    };
    let instance = f
        .arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default();
    let why = match f.reason.as_deref().unwrap_or_default() {
        "RESOURCE:MEMORY" => "has insufficient memory available".to_string(),
        "RESOURCE:CPU" => "has insufficient CPU units available".to_string(),
        "RESOURCE:PORTS" => "is already using a port required by your task".to_string(),
        "ATTRIBUTE" => "is missing an attribute required by your task".to_string(),
        other => format!("encountered error \"{other}\""),
    };
    format!(
        "{head} The closest matching (container-instance {instance}) {why}. For more information, see the Troubleshooting section."
    )
}

/// One service: observe, decide, act.
/// One service, given its tasks (live and recently stopped).
async fn reconcile_service(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster_name: &str,
    name: &str,
    tasks: &[TaskRecord],
) -> Result<Pass, AwsError> {
    let partition = ctx.partition();
    let key = pair_key(cluster_name, name);
    // 0. Load balancers: register running tasks, deregister stopping ones, let drained ones go;
    // what their targets' health says feeds the rollout.
    let Some((current, _)) = common::get::<ServiceRecord>(ecs, ctx, kinds::SERVICE, &key).await?
    else {
        return Err(services::service_not_found());
    };
    let lb = load_balancing::sync(ecs, ctx, &current, tasks).await?;
    // 1. Observe, under the record's version (a concurrent UpdateService makes this retry).
    let s = common::transact(ecs, || async {
        let Some((mut s, v)) = common::get::<ServiceRecord>(ecs, ctx, kinds::SERVICE, &key).await?
        else {
            return Err(services::service_not_found());
        };
        if observe(ctx, &mut s, tasks, &lb.health, ecs.now_ms()) {
            Ok((vec![put_service(&partition, &s, Expect::Version(v))?], s))
        } else {
            Ok((vec![], s))
        }
    })
    .await?;
    if s.status == "INACTIVE" || s.deployments.is_empty() {
        return Ok(Pass::default());
    }
    let Some((cluster, _)) =
        common::get::<ClusterRecord>(ecs, ctx, kinds::CLUSTER, &s.cluster).await?
    else {
        return Ok(Pass::default());
    };
    let now = ecs.now_ms();
    let primary = s.deployments[0].clone();
    let grace = i64::from(s.health_check_grace_period_seconds.unwrap_or(0)) * 1000;
    let live: Vec<&TaskRecord> = tasks.iter().filter(|t| !ended(t)).collect();
    // 2. Decide.
    let mut stops: Vec<(String, &'static str)> = Vec::new();
    let mut start = 0u32;
    let mut targets: Option<Vec<String>> = None;
    if s.scheduling_strategy == "DAEMON" {
        let instances: Vec<ContainerInstanceRecord> = common::all::<ContainerInstanceRecord>(
            ecs,
            ctx,
            kinds::CONTAINER_INSTANCE,
            &format!("{}|", s.cluster),
        )
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
        let attributes: Vec<AttributeRecord> =
            common::all::<AttributeRecord>(ecs, ctx, kinds::ATTRIBUTE, &format!("{}|", s.cluster))
                .await?
                .into_iter()
                .map(|(_, a)| a)
                .collect();
        let mut plan = daemon_plan(&s, &instances, &attributes, &live, now, |t| {
            view(t, &primary.id, grace, now, &lb.health_of(&t.id))
        });
        if s.status != "ACTIVE" {
            // Deleted: every task goes, nothing new is placed.
            plan.place_on.clear();
            plan.stop = live
                .iter()
                .filter(|t| t.desired_status == DesiredStatus::Running.as_str())
                .map(|t| (t.id.clone(), ""))
                .collect();
            plan.desired = 0;
        }
        stops = plan.stop;
        if !plan.place_on.is_empty() {
            start = plan.place_on.len() as u32;
            targets = Some(plan.place_on);
        }
        if plan.desired != s.desired_count {
            set_desired(ecs, ctx, &key, plan.desired).await?;
        }
    } else {
        let limits = rollout::Limits {
            desired: u32::try_from(s.desired_count).unwrap_or(0),
            minimum_healthy_percent: u32::try_from(
                s.deployment_configuration
                    .minimum_healthy_percent
                    .unwrap_or(100),
            )
            .unwrap_or(100),
            maximum_percent: u32::try_from(
                s.deployment_configuration.maximum_percent.unwrap_or(200),
            )
            .unwrap_or(200),
        };
        let views: Vec<TaskView> = live
            .iter()
            .map(|t| view(t, &primary.id, grace, now, &lb.health_of(&t.id)))
            .collect();
        let step = rollout::step(limits, &views);
        start = step.start;
        for (id, why) in step.stop {
            stops.push((
                id,
                match why {
                    StopWhy::Unhealthy => HEALTH_FAILURE,
                    StopWhy::Replaced | StopWhy::ScaleIn => "",
                },
            ));
        }
    }
    // A failed deployment launches nothing more; a throttled one waits.
    if primary.rollout_state == "FAILED"
        || now < primary.launch_not_before_ms
        || s.status != "ACTIVE"
    {
        start = 0;
        targets = None;
    }
    // 3. Act.
    let mut events = lb.events.clone();
    let mut stopped_ids = Vec::new();
    let mut stopped_now: HashMap<String, TaskRecord> = HashMap::new();
    let mut health_failures = Vec::new();
    let scaling = format!("Scaling activity initiated by (deployment {})", primary.id);
    for (id, reason) in &stops {
        // A task replaced for its health: the load balancer's verdict is the one ECS names.
        let lb_failure = match lb.health_of(id) {
            LbHealth::Unhealthy(u) if *reason == HEALTH_FAILURE => Some(u),
            _ => None,
        };
        let reason = match &lb_failure {
            Some(u) => load_balancing::unhealthy_reason(u),
            None if reason.is_empty() => scaling.clone(),
            None => reason.to_string(),
        };
        if let Some(t) = stop_task(ecs, ctx, &s.cluster, id, &reason, lb.behind(id)).await? {
            stopped_now.insert(id.clone(), t);
            stopped_ids.push(id.clone());
            if let Some(u) = &lb_failure {
                events.push(load_balancing::unhealthy_event(&s.name, id, u));
            }
            if lb_failure.is_some() || reason == HEALTH_FAILURE {
                health_failures.push(id.clone());
            }
        }
    }
    if !stopped_ids.is_empty() {
        events.extend(task_events(
            &s.name,
            "has stopped",
            "running tasks",
            &stopped_ids,
        ));
    }
    if stopped_ids.iter().any(|id| lb.behind(id)) {
        // Begin draining now rather than a pass later: the stopped tasks are DEACTIVATING. The
        // pass's read of the tasks, with those as this pass wrote them, is enough: a change
        // made meanwhile by someone else is the next pass's business.
        let fresh: Vec<TaskRecord> = tasks
            .iter()
            .map(|t| stopped_now.get(&t.id).unwrap_or(t).clone())
            .collect();
        events.extend(
            load_balancing::sync_again(ecs, ctx, &s, &fresh, &lb)
                .await?
                .events,
        );
    }
    let mut started_ids = Vec::new();
    if start > 0
        && let Some(launch) = launch_of(ecs, ctx, &s, &primary).await?
    {
        let (placed, failures) = crate::tasks::place_tasks(
            ecs,
            ctx,
            &cluster,
            &launch,
            start as usize,
            targets.as_deref(),
        )
        .await
        .or_else(|e| {
            if e.code == "InvalidParameterException" {
                // No instances at all: placement's answer, not a fault of the controller.
                Ok((Vec::new(), vec![failure(String::new(), "")]))
            } else {
                Err(e)
            }
        })?;
        started_ids = placed.iter().map(|t| t.id.clone()).collect();
        // DAEMON: an instance that cannot take the task is skipped quietly, as ECS does.
        if placed.len() < start as usize && targets.is_none() {
            let real: Vec<wire::Failure> = failures
                .into_iter()
                .filter(|f| f.arn.as_deref().is_some_and(|a| !a.is_empty()))
                .collect();
            events.push(placement_event(&s.name, &real));
        }
    }
    if !started_ids.is_empty() {
        events.extend(task_events(&s.name, "has started", "tasks", &started_ids));
    }
    if !events.is_empty() || !health_failures.is_empty() {
        common::transact(ecs, || async {
            let Some((mut s, v)) =
                common::get::<ServiceRecord>(ecs, ctx, kinds::SERVICE, &key).await?
            else {
                return Ok((vec![], ()));
            };
            let now = ecs.now_ms();
            let mut changed = false;
            for e in &events {
                // The same complaint again (e.g. still no room) is not news.
                if s.events.first().is_some_and(|f| &f.message == e) {
                    continue;
                }
                push_event(&mut s, now, e.clone());
                changed = true;
            }
            if let Some(d) = s.deployments.iter_mut().find(|d| d.id == primary.id) {
                for id in &health_failures {
                    if !d.counted_failures.contains(id) {
                        d.counted_failures.push(id.clone());
                        d.failed_tasks += 1;
                        changed = true;
                    }
                }
            }
            if (!started_ids.is_empty() || !stopped_ids.is_empty()) && s.steady {
                s.steady = false;
                changed = true;
            }
            if !changed {
                // Writing an unchanged record would wake this controller again, for nothing.
                return Ok((vec![], ()));
            }
            Ok((vec![put_service(&partition, &s, Expect::Version(v))?], ()))
        })
        .await?;
    }
    Ok(Pass {
        started: started_ids.len(),
        stopped: stopped_ids.len(),
    })
}

async fn set_desired(
    ecs: &Ecs,
    ctx: &RequestContext,
    key: &str,
    desired: i32,
) -> Result<(), AwsError> {
    let partition = ctx.partition();
    common::transact(ecs, || async {
        let Some((mut s, v)) = common::get::<ServiceRecord>(ecs, ctx, kinds::SERVICE, key).await?
        else {
            return Ok((vec![], ()));
        };
        if s.desired_count == desired {
            return Ok((vec![], ()));
        }
        s.desired_count = desired;
        s.steady = false;
        Ok((vec![put_service(&partition, &s, Expect::Version(v))?], ()))
    })
    .await
}

/// What a DAEMON service should do now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DaemonPlan {
    /// One task per eligible instance: this many.
    pub desired: i32,
    /// Instances (ids) that need a task of the primary deployment.
    pub place_on: Vec<String>,
    pub stop: Vec<(String, &'static str)>,
}

/// DAEMON scheduling: one task of the primary deployment on every ACTIVE instance whose agent
/// is connected, that can run tasks and meets the service's constraints. An old task on an instance is stopped first
/// (maximumPercent is 100: never two on one instance), then the new one is placed. Tasks on
/// instances that are draining or gone are stopped.
/// `view_of` is the rollout's view of a task (primary or not, healthy, unhealthy).
pub(crate) fn daemon_plan(
    s: &ServiceRecord,
    instances: &[ContainerInstanceRecord],
    attributes: &[AttributeRecord],
    live: &[&TaskRecord],
    now: i64,
    view_of: impl Fn(&TaskRecord) -> TaskView,
) -> DaemonPlan {
    let mut plan = DaemonPlan::default();
    let eligible: Vec<&ContainerInstanceRecord> = instances
        .iter()
        .filter(|i| {
            i.status == "ACTIVE" && i.can_run_tasks && crate::container_instances::connected(i, now)
        })
        .filter(|i| eligible_for(i, attributes, live, &s.placement_constraints))
        .collect();
    plan.desired = eligible.len() as i32;
    for i in &eligible {
        let on: Vec<&&TaskRecord> = live
            .iter()
            .filter(|t| t.container_instance_id == i.id)
            .collect();
        let views: Vec<(TaskView, &&TaskRecord)> = on.iter().map(|t| (view_of(t), *t)).collect();
        let active: Vec<&(TaskView, &&TaskRecord)> = views
            .iter()
            .filter(|(v, _)| v.phase != Phase::Stopping)
            .collect();
        let mut primary_on: Vec<&(TaskView, &&TaskRecord)> =
            active.iter().copied().filter(|(v, _)| v.primary).collect();
        for (v, _) in &active {
            if v.unhealthy {
                plan.stop.push((v.id.clone(), HEALTH_FAILURE));
            } else if !v.primary {
                plan.stop.push((v.id.clone(), ""));
            }
        }
        primary_on.retain(|(v, _)| !v.unhealthy);
        for (v, _) in primary_on.iter().skip(1) {
            plan.stop.push((v.id.clone(), ""));
        }
        let busy = views.iter().any(|(v, _)| v.phase == Phase::Stopping)
            || active.iter().any(|(v, _)| !v.primary || v.unhealthy);
        if primary_on.is_empty() && !busy {
            plan.place_on.push(i.id.clone());
        }
    }
    for t in live {
        let on_eligible = eligible.iter().any(|i| i.id == t.container_instance_id);
        if !on_eligible && t.desired_status == DesiredStatus::Running.as_str() {
            plan.stop.push((t.id.clone(), ""));
        }
    }
    plan
}

/// Whether a DAEMON service wants a task on instance `i`: its `memberOf` constraints hold there
/// (resources are placement's business: an instance that is full still counts as desired).
fn eligible_for(
    i: &ContainerInstanceRecord,
    attributes: &[AttributeRecord],
    live: &[&TaskRecord],
    constraints: &[wire::PlacementConstraint],
) -> bool {
    let custom: Vec<wire::Attribute> = attributes
        .iter()
        .filter(|a| {
            a.attribute
                .target_id
                .as_deref()
                .is_some_and(|t| t == i.arn || t == i.id)
        })
        .map(|a| a.attribute.clone())
        .collect();
    let view = crate::placement::to_instance(i, &custom, live.iter().copied(), true);
    constraints.iter().all(|c| {
        match berth_scheduler::Constraint::from_wire(
            c.r#type.as_deref().unwrap_or_default(),
            c.expression.as_deref(),
        ) {
            Ok(berth_scheduler::Constraint::MemberOf(e)) => e.matches(&view),
            Ok(berth_scheduler::Constraint::DistinctInstance) => true,
            Err(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::common::tests::ctx;

    #[test]
    fn a_large_start_is_named_in_batches_and_only_the_newest_are_kept() {
        let ids: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
        let events = task_events("web", "has started", "tasks", &ids);
        assert_eq!(
            events,
            [
                "(service web) has started 10 tasks: (task t0) (task t1) (task t2) (task t3) \
                 (task t4) (task t5) (task t6) (task t7) (task t8) (task t9).",
                "(service web) has started 10 tasks: (task t10) (task t11) (task t12) (task t13) \
                 (task t14) (task t15) (task t16) (task t17) (task t18) (task t19).",
                "(service web) has started 5 tasks: (task t20) (task t21) (task t22) (task t23) \
                 (task t24).",
            ]
        );
        let many: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
        let events = task_events("web", "has stopped", "running tasks", &many);
        assert_eq!(events.len(), MAX_SERVICE_EVENTS);
        assert!(events.last().unwrap().ends_with("(task t99999)."));
        assert!(events.iter().all(|e| e.len() < 200));
    }

    fn service(desired: i32, breaker: Option<bool>) -> ServiceRecord {
        let mut s = ServiceRecord {
            cluster: "default".into(),
            name: "web".into(),
            arn: "arn:aws:ecs:us-east-1:000000000000:service/default/web".into(),
            cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
            status: "ACTIVE".into(),
            desired_count: desired,
            launch_type: "EC2".into(),
            scheduling_strategy: "REPLICA".into(),
            task_definition: "td:1".into(),
            deployment_configuration: wire::DeploymentConfiguration {
                deployment_circuit_breaker: breaker.map(|rollback| {
                    wire::DeploymentCircuitBreaker {
                        enable: Some(true),
                        rollback: Some(rollback),
                    }
                }),
                maximum_percent: Some(200),
                minimum_healthy_percent: Some(100),
                ..Default::default()
            },
            placement_constraints: vec![],
            placement_strategy: vec![],
            load_balancers: vec![],
            network_configuration: None,
            health_check_grace_period_seconds: None,
            role_arn: None,
            tags: vec![],
            propagate_tags: "NONE".into(),
            enable_ecs_managed_tags: false,
            enable_execute_command: false,
            client_token: None,
            created_at_ms: 0,
            created_by: None,
            deployments: vec![],
            events: vec![],
            steady: false,
            deleted_at_ms: None,
            availability_zone_rebalancing: "ENABLED".into(),
        };
        services::begin_deployment(&ctx(), &mut s, vec![], 0);
        s
    }

    fn task(id: &str, deployment: &str, status: &str, stop_code: Option<&str>) -> TaskRecord {
        let mut t: TaskRecord = serde_json::from_value(serde_json::json!({
            "cluster": "default", "id": id, "arn": format!("arn:task/{id}"),
            "cluster_arn": "c", "container_instance_id": "i", "container_instance_arn": "ia",
            "task_definition_arn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
            "health_checked": false, "dynamic_ports": 0,
            "overrides": {}, "last_status": status,
            "desired_status": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
            "containers": [], "group": "service:web", "started_by": deployment,
            "launch_type": "EC2", "cpu": "0", "memory": "0",
            "reserved": {"cpu": 0, "memory": 0, "ports": [], "udp_ports": []},
            "created_at_ms": 0, "pull_started_at_ms": null, "pull_stopped_at_ms": null,
            "started_at_ms": null, "stopping_at_ms": null, "stopped_at_ms": null,
            "execution_stopped_at_ms": null, "connectivity_at_ms": null,
            "stop_code": stop_code, "stopped_reason": null, "health_status": "UNKNOWN",
            "tags": [], "attributes": [], "enable_execute_command": false, "version": 1
        }))
        .expect("a task record");
        if status == "RUNNING" {
            t.started_at_ms = Some(0);
        }
        t
    }

    #[test]
    fn a_deployment_completes_once_and_reports_a_steady_state() {
        let mut s = service(2, None);
        let d = s.deployments[0].id.clone();
        let tasks = [
            task("a", &d, "RUNNING", None),
            task("b", &d, "RUNNING", None),
        ];
        assert!(observe(&ctx(), &mut s, &tasks, &HashMap::new(), 10));
        assert_eq!(s.deployments[0].rollout_state, "COMPLETED");
        assert_eq!(s.deployments[0].service_deployment_status, "SUCCESSFUL");
        let messages: Vec<&str> = s.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "(service web) has reached a steady state.",
                format!("(service web) (deployment {d}) deployment completed.").as_str(),
            ]
        );
        // Nothing new: no change, no event.
        assert!(!observe(&ctx(), &mut s, &tasks, &HashMap::new(), 20));
        // One task pending: not steady any more, not completed again.
        let pending = [
            task("a", &d, "RUNNING", None),
            task("c", &d, "PENDING", None),
        ];
        assert!(observe(&ctx(), &mut s, &pending, &HashMap::new(), 30));
        assert!(!s.steady);
        assert_eq!(s.events.len(), 2);
    }

    #[test]
    fn failures_are_counted_once_and_trip_the_breaker_into_a_rollback() {
        let mut s = service(2, Some(true));
        let good = s.deployments[0].id.clone();
        let ok = [
            task("a", &good, "RUNNING", None),
            task("b", &good, "RUNNING", None),
        ];
        observe(&ctx(), &mut s, &ok, &HashMap::new(), 1);
        assert_eq!(s.deployments[0].rollout_state, "COMPLETED");
        s.task_definition = "td:2".into();
        services::begin_deployment(&ctx(), &mut s, vec![], 2);
        let bad = s.deployments[0].id.clone();
        let mut tasks = ok.to_vec();
        // A task stopped by the scheduler or the user is no failure.
        tasks.push(task("u", &bad, "STOPPED", Some("UserInitiated")));
        tasks.push(task(
            "f1",
            &bad,
            "STOPPED",
            Some("EssentialContainerExited"),
        ));
        tasks.push(task("f2", &bad, "STOPPED", Some("TaskFailedToStart")));
        observe(&ctx(), &mut s, &tasks, &HashMap::new(), 3);
        observe(&ctx(), &mut s, &tasks, &HashMap::new(), 4);
        assert_eq!(s.deployments[0].failed_tasks, 2, "counted once each");
        assert_eq!(s.deployments[0].rollout_state, "IN_PROGRESS");
        // The threshold for 2 desired tasks is 3.
        tasks.push(task(
            "f3",
            &bad,
            "STOPPED",
            Some("EssentialContainerExited"),
        ));
        observe(&ctx(), &mut s, &tasks, &HashMap::new(), 5);
        let failed = s
            .deployments
            .iter()
            .find(|d| d.id == bad)
            .expect("failed deployment");
        assert_eq!(failed.rollout_state, "FAILED");
        assert_eq!(failed.service_deployment_status, "ROLLBACK_IN_PROGRESS");
        assert_eq!(s.deployments[0].status, "PRIMARY");
        assert_eq!(s.deployments[0].rolls_back.as_deref(), Some(bad.as_str()));
        assert_eq!(s.task_definition, "td:1");
        assert!(
            s.events.iter().any(|e| e
                .message
                .ends_with("deployment failed: tasks failed to start.")),
            "{:?}",
            s.events
        );
        // Once the rollback deployment runs the desired count alone, the rollback succeeded.
        let back = s.deployments[0].id.clone();
        let after = [
            task("x", &back, "RUNNING", None),
            task("y", &back, "RUNNING", None),
        ];
        observe(&ctx(), &mut s, &after, &HashMap::new(), 6);
        assert_eq!(s.deployments[0].rollout_state, "COMPLETED");
        let failed = s
            .deployments
            .iter()
            .find(|d| d.id == bad)
            .expect("failed deployment");
        assert_eq!(failed.service_deployment_status, "ROLLBACK_SUCCESSFUL");
        assert_eq!(failed.status, "INACTIVE");
    }

    #[test]
    fn without_rollback_a_failed_deployment_stays_primary() {
        let mut s = service(1, Some(false));
        let d = s.deployments[0].id.clone();
        let tasks: Vec<TaskRecord> = (0..3)
            .map(|i| {
                task(
                    &format!("f{i}"),
                    &d,
                    "STOPPED",
                    Some("EssentialContainerExited"),
                )
            })
            .collect();
        observe(&ctx(), &mut s, &tasks, &HashMap::new(), 1);
        assert_eq!(s.deployments[0].status, "PRIMARY");
        assert_eq!(s.deployments[0].rollout_state, "FAILED");
        assert!(
            s.deployments[0].launch_not_before_ms > 1,
            "throttled after 3 failures"
        );
    }

    #[test]
    fn a_draining_service_becomes_inactive_when_its_last_task_stopped() {
        let mut s = service(0, None);
        s.status = "DRAINING".into();
        let d = s.deployments[0].id.clone();
        // A task still runs: the service keeps draining.
        observe(
            &ctx(),
            &mut s,
            &[task("a", &d, "RUNNING", None)],
            &HashMap::new(),
            1,
        );
        assert_eq!(s.status, "DRAINING");
        observe(
            &ctx(),
            &mut s,
            &[task("a", &d, "STOPPED", Some("ServiceSchedulerInitiated"))],
            &HashMap::new(),
            2,
        );
        assert_eq!(s.status, "INACTIVE");
    }

    #[test]
    fn placement_events_name_the_closest_instance() {
        let m = placement_event(
            "web",
            &[failure(
                "arn:aws:ecs:us-east-1:0:container-instance/default/abc",
                "RESOURCE:MEMORY",
            )],
        );
        assert_eq!(
            m,
            "(service web) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance abc) has insufficient memory available. For more information, see the Troubleshooting section."
        );
    }
}
