//! A service's tasks behind its load balancers (`loadBalancers`: target group, container name
//! and port): which targets each task should have, registering and deregistering them through
//! `berth-elbv2`, what their health says to the rollout, and draining before a task stops.
//!
//! - A task of a deployment with load balancers is registered once it is RUNNING (and desired
//!   RUNNING): for target type `instance`, its container instance's `ec2InstanceId` and the host
//!   port bound to `containerName:containerPort`; for `ip` (awsvpc), an address and the
//!   container port. berth's nodes publish awsvpc ports on their bind address (loopback unless
//!   configured otherwise) with the host port equal to the container port, so an `ip` target is
//!   the binding's address, or `127.0.0.1` when the binding names none or all of them, and the
//!   container port.
//! - A task counts as healthy for the rollout only when every one of its targets is `healthy`.
//! - A task the scheduler (or a user) stops is first DEACTIVATING: its targets are deregistered,
//!   and its agent still sees it desired RUNNING (`nodes`) until every target has drained (gone
//!   from its group: the group's deregistration delay has passed since it was deregistered);
//!   then it moves on to STOPPING and the agent stops it.
//!
//! Nothing is remembered: each pass compares the targets the tasks should have with what the
//! target groups hold, so a pass after a crash registers nothing twice and forgets nothing.

use crate::Ecs;
use crate::common;
use crate::records::{ContainerInstanceRecord, ServiceRecord, TaskRecord, kinds, pair_key};
use crate::task_definitions::Definitions;
use berth_aws::{AwsError, RequestContext};
use berth_elbv2::GroupView;
use berth_model::task::{DesiredStatus, TaskStatus, advance};
use berth_shapes::ecs as wire;
use berth_shapes::elbv2 as elb;
use berth_store::Expect;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Where a task stands with its load balancers, as the rollout needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum LbHealth {
    /// Not behind a load balancer: its containers' health alone decides.
    #[default]
    NotBehind,
    /// Every target is healthy.
    Healthy,
    /// Some target is not registered yet or not judged yet (`initial`, `unused`).
    Waiting,
    /// The load balancer found a target unhealthy.
    Unhealthy(UnhealthyTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnhealthyTarget {
    pub target_group_arn: String,
    /// The instance id for an `instance` target, `None` for an `ip` one.
    pub instance: Option<String>,
    pub port: i32,
    /// The health checker's description (e.g. "Health checks failed with these codes: [500]"),
    /// or its reason code.
    pub reason: String,
}

/// One target a task should have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Target {
    pub target_group_arn: String,
    pub id: String,
    pub port: i32,
}

/// What the load balancers of a service say and need, for one pass.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LbPlan {
    /// Per target group, targets to register.
    pub register: BTreeMap<String, BTreeSet<(String, i32)>>,
    /// Per target group, targets to deregister.
    pub deregister: BTreeMap<String, BTreeSet<(String, i32)>>,
    /// DEACTIVATING tasks whose targets have drained: they may stop now.
    pub drained: Vec<String>,
    /// Tasks whose targets this pass deregisters for the first time (draining begins).
    pub draining: Vec<String>,
    /// Per task id (only tasks of deployments with load balancers).
    pub health: HashMap<String, LbHealth>,
}

/// The load balancers a task is registered with: those of the deployment that started it.
pub(crate) fn load_balancers_of<'a>(
    s: &'a ServiceRecord,
    t: &TaskRecord,
) -> &'a [wire::LoadBalancer] {
    s.deployments
        .iter()
        .find(|d| t.started_by.as_deref() == Some(d.id.as_str()))
        .map_or(&s.load_balancers[..], |d| &d.load_balancers[..])
}

/// The target of task `t` in the group of `lb`, or `None` while it cannot be named (the group is
/// gone, or the host port is not reported yet).
pub(crate) fn target_of(
    t: &TaskRecord,
    definition: Option<&wire::TaskDefinition>,
    lb: &wire::LoadBalancer,
    ec2_instance_id: Option<&str>,
    groups: &BTreeMap<String, GroupView>,
) -> Option<Target> {
    let arn = lb.target_group_arn.as_deref()?;
    let group = groups.get(arn)?;
    let name = lb.container_name.as_deref()?;
    let port = lb.container_port?;
    let binding = t
        .containers
        .iter()
        .filter(|c| c.name.as_deref() == Some(name))
        .flat_map(|c| c.network_bindings.iter().flatten())
        .find(|b| {
            b.container_port == Some(port) && b.protocol.as_deref().is_none_or(|p| p == "tcp")
        });
    // Host networking publishes nothing: the host port is the container port, as the task
    // definition says.
    let mapped = definition
        .and_then(|d| d.container_definitions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.name.as_deref() == Some(name))
        .flat_map(|c| c.port_mappings.iter().flatten())
        .find(|m| m.container_port == Some(port))
        .and_then(|m| m.host_port)
        .filter(|p| *p > 0);
    let (id, port) = if group.target_type == "ip" {
        let address = binding
            .and_then(|b| b.bind_ip.as_deref())
            .filter(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .is_ok_and(|a| !a.is_unspecified())
            })
            .unwrap_or("127.0.0.1");
        (address.to_string(), port)
    } else {
        let host_port = binding.and_then(|b| b.host_port).or(mapped)?;
        (ec2_instance_id?.to_string(), host_port)
    };
    Some(Target {
        target_group_arn: arn.to_string(),
        id,
        port,
    })
}

fn live_and_wanted(t: &TaskRecord) -> bool {
    t.last_status == TaskStatus::Running.as_str()
        && t.desired_status == DesiredStatus::Running.as_str()
}

/// The pure half of a pass: from the service, its tasks, the instances' EC2 ids and the target
/// groups as they are now (and the definitions of the tasks' revisions, by ARN), what to
/// register, deregister, and which tasks may stop.
pub(crate) fn plan(
    s: &ServiceRecord,
    tasks: &[TaskRecord],
    instances: &HashMap<String, String>,
    definitions: &HashMap<String, Arc<wire::TaskDefinition>>,
    groups: &BTreeMap<String, GroupView>,
    now: i64,
) -> LbPlan {
    let mut out = LbPlan::default();
    let targets_of = |t: &TaskRecord| -> Vec<Option<Target>> {
        let ec2 = instances.get(&t.container_instance_id).map(String::as_str);
        let definition = definitions.get(&t.task_definition_arn).map(|d| &**d);
        load_balancers_of(s, t)
            .iter()
            .map(|lb| target_of(t, definition, lb, ec2, groups))
            .collect()
    };
    // Targets some live task wants: never deregistered, even if an older task (whose host port
    // Docker handed out again) names the same one.
    let mut wanted: BTreeSet<Target> = BTreeSet::new();
    for t in tasks.iter().filter(|t| live_and_wanted(t)) {
        for target in targets_of(t) {
            wanted.extend(target);
        }
    }
    for t in tasks {
        let targets = targets_of(t);
        if targets.is_empty() {
            continue;
        }
        if live_and_wanted(t) {
            let mut health = LbHealth::Healthy;
            for target in &targets {
                let Some(target) = target else {
                    health = worse(health, LbHealth::Waiting);
                    continue;
                };
                let group = &groups[&target.target_group_arn];
                let h = group.health(&target.id, target.port);
                let state = h.and_then(|h| h.state.as_deref()).unwrap_or_default();
                if h.is_none() || state == "draining" {
                    out.register
                        .entry(target.target_group_arn.clone())
                        .or_default()
                        .insert((target.id.clone(), target.port));
                }
                health = worse(
                    health,
                    match state {
                        // Health checks disabled: nothing will ever judge it.
                        "healthy" | "unavailable" => LbHealth::Healthy,
                        "unhealthy" => LbHealth::Unhealthy(UnhealthyTarget {
                            target_group_arn: target.target_group_arn.clone(),
                            instance: (group.target_type != "ip").then(|| target.id.clone()),
                            port: target.port,
                            reason: h
                                .and_then(|h| h.description.clone().or(h.reason.clone()))
                                .unwrap_or_else(|| "Health checks failed".into()),
                        }),
                        _ => LbHealth::Waiting,
                    },
                );
            }
            out.health.insert(t.id.clone(), health);
            continue;
        }
        out.health.insert(t.id.clone(), LbHealth::Waiting);
        // Stopping, stopped, or not running yet: its targets go. A target has drained once its
        // group no longer holds it (the group's delay after its deregistration); one that stays
        // registered (a live task names it too) holds the task back for the delay at most.
        let mut drained = true;
        let mut began = false;
        for target in targets.iter().flatten() {
            let group = &groups[&target.target_group_arn];
            let Some(h) = group.health(&target.id, target.port) else {
                continue;
            };
            let draining = h.state.as_deref() == Some("draining");
            let waited = t
                .stopping_at_ms
                .is_some_and(|at| now >= at.saturating_add(group.deregistration_delay_ms));
            if draining || !waited {
                drained = false;
            }
            if !draining && !wanted.contains(target) {
                began = true;
                out.deregister
                    .entry(target.target_group_arn.clone())
                    .or_default()
                    .insert((target.id.clone(), target.port));
            }
        }
        if began {
            out.draining.push(t.id.clone());
        }
        if t.last_status == TaskStatus::Deactivating.as_str() && drained {
            out.drained.push(t.id.clone());
        }
    }
    out
}

/// The worse of two standings: unhealthy, then waiting, then healthy.
fn worse(a: LbHealth, b: LbHealth) -> LbHealth {
    let rank = |h: &LbHealth| match h {
        LbHealth::NotBehind | LbHealth::Healthy => 0,
        LbHealth::Waiting => 1,
        LbHealth::Unhealthy(_) => 2,
    };
    if rank(&b) > rank(&a) { b } else { a }
}

/// What a pass learned and did about load balancers.
#[derive(Debug, Default)]
pub(crate) struct Synced {
    pub health: HashMap<String, LbHealth>,
    /// ECS's events for what was registered, deregistered and drained.
    pub events: Vec<String>,
    /// Container instance id → EC2 instance id, as read for this sync (empty without load
    /// balancers), for [`sync_again`].
    pub instances: HashMap<String, String>,
}

impl Synced {
    /// Whether task `id` is behind a load balancer (and so drains before it stops).
    pub fn behind(&self, id: &str) -> bool {
        self.health.contains_key(id)
    }

    pub fn health_of(&self, id: &str) -> LbHealth {
        self.health.get(id).cloned().unwrap_or_default()
    }
}

/// One pass for service `s`: reads its target groups and instances, registers and deregisters
/// targets, lets drained DEACTIVATING tasks stop, and reports the tasks' standing.
pub(crate) async fn sync(
    ecs: &Ecs,
    ctx: &RequestContext,
    s: &ServiceRecord,
    tasks: &[TaskRecord],
) -> Result<Synced, AwsError> {
    sync_with(ecs, ctx, s, tasks, None).await
}

/// [`sync`] again within one pass (after the pass stopped tasks behind a load balancer), with
/// the instances' EC2 ids the first one read: they do not change, and reading them means a scan
/// of the cluster's instances. The target groups are read afresh, as the first sync changed
/// them.
pub(crate) async fn sync_again(
    ecs: &Ecs,
    ctx: &RequestContext,
    s: &ServiceRecord,
    tasks: &[TaskRecord],
    first: &Synced,
) -> Result<Synced, AwsError> {
    sync_with(ecs, ctx, s, tasks, Some(&first.instances)).await
}

async fn sync_with(
    ecs: &Ecs,
    ctx: &RequestContext,
    s: &ServiceRecord,
    tasks: &[TaskRecord],
    known_instances: Option<&HashMap<String, String>>,
) -> Result<Synced, AwsError> {
    let mut arns: Vec<&str> = s
        .load_balancers
        .iter()
        .chain(s.deployments.iter().flat_map(|d| d.load_balancers.iter()))
        .filter_map(|lb| lb.target_group_arn.as_deref())
        .collect();
    arns.sort_unstable();
    arns.dedup();
    if arns.is_empty() {
        return Ok(Synced::default());
    }
    let now = ecs.now_ms();
    let groups = berth_elbv2::group_views(ecs.store(), ctx, &arns, now).await?;
    let instances: HashMap<String, String> = match known_instances {
        Some(known) => known.clone(),
        None => common::all::<ContainerInstanceRecord>(
            ecs,
            ctx,
            kinds::CONTAINER_INSTANCE,
            &format!("{}|", s.cluster),
        )
        .await?
        .into_iter()
        .map(|(_, i)| (i.id, i.ec2_instance_id))
        .collect(),
    };
    // Host networking names its host ports in the definition: read each revision once.
    let mut definitions = HashMap::new();
    let mut resolved = Definitions::default();
    for t in tasks {
        if !definitions.contains_key(&t.task_definition_arn)
            && let Some(d) = resolved.get(ecs, ctx, &t.task_definition_arn).await?
        {
            definitions.insert(t.task_definition_arn.clone(), d);
        }
    }
    let plan = plan(s, tasks, &instances, &definitions, &groups, now);
    let mut events = Vec::new();
    let describe = |targets: &BTreeSet<(String, i32)>| -> Vec<elb::TargetDescription> {
        targets
            .iter()
            .map(|(id, port)| elb::TargetDescription {
                id: Some(id.clone()),
                port: Some(*port),
                ..Default::default()
            })
            .collect()
    };
    for (arn, targets) in &plan.deregister {
        match berth_elbv2::deregister(ecs.store(), ctx, arn, &describe(targets), now).await {
            Ok(()) => events.push(format!(
                "(service {}) deregistered {} targets in (target-group {arn})",
                s.name,
                targets.len()
            )),
            Err(e) => {
                tracing::warn!(service = %s.arn, target_group = %arn, code = %e.code, "deregistering targets failed: {}", e.message)
            }
        }
    }
    if !plan.draining.is_empty() {
        events.push(format!(
            "(service {}) has begun draining connections on {} tasks.",
            s.name,
            plan.draining.len()
        ));
    }
    for (arn, targets) in &plan.register {
        match berth_elbv2::register(ecs.store(), ctx, arn, &describe(targets), now).await {
            Ok(()) => events.push(format!(
                "(service {}) registered {} targets in (target-group {arn})",
                s.name,
                targets.len()
            )),
            Err(e) => {
                tracing::warn!(service = %s.arn, target_group = %arn, code = %e.code, "registering targets failed: {}", e.message)
            }
        }
    }
    for id in &plan.drained {
        finish_draining(ecs, ctx, &s.cluster, id).await?;
    }
    Ok(Synced {
        health: plan.health,
        events,
        instances,
    })
}

/// A DEACTIVATING task whose targets have drained moves on to STOPPING, which its agent sees
/// as desired STOPPED.
async fn finish_draining(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
    id: &str,
) -> Result<(), AwsError> {
    let partition = ctx.partition();
    let key = pair_key(cluster, id);
    common::transact(ecs, || async {
        let Some((mut t, v)) = common::get::<TaskRecord>(ecs, ctx, kinds::TASK, &key).await? else {
            return Ok((vec![], ()));
        };
        let current = TaskStatus::parse(&t.last_status).unwrap_or(TaskStatus::Provisioning);
        if current != TaskStatus::Deactivating {
            return Ok((vec![], ()));
        }
        let Some(next) = advance(current, TaskStatus::Stopping) else {
            return Ok((vec![], ()));
        };
        t.last_status = next.as_str().into();
        t.version += 1;
        Ok((
            vec![crate::tasks::put_task(&partition, &t, Expect::Version(v))?],
            (),
        ))
    })
    .await
}

/// Whether task `t` is behind a load balancer, so that stopping it drains first: a task of a
/// service whose deployment (the one that started it) names load balancers.
pub(crate) async fn behind_load_balancer(
    ecs: &Ecs,
    ctx: &RequestContext,
    t: &TaskRecord,
) -> Result<bool, AwsError> {
    let Some(name) = t.group.strip_prefix("service:") else {
        return Ok(false);
    };
    let Some((s, _)) =
        common::get::<ServiceRecord>(ecs, ctx, kinds::SERVICE, &pair_key(&t.cluster, name)).await?
    else {
        return Ok(false);
    };
    Ok(!load_balancers_of(&s, t).is_empty())
}

/// ECS's event for a task replaced because a target failed its health checks.
pub(crate) fn unhealthy_event(service: &str, task: &str, u: &UnhealthyTarget) -> String {
    let instance = u
        .instance
        .as_deref()
        .map(|i| format!(" (instance {i})"))
        .unwrap_or_default();
    format!(
        "(service {service}) (task {task}){instance} (port {}) is unhealthy in (target-group {}) due to (reason {}).",
        u.port, u.target_group_arn, u.reason
    )
}

/// The stopped reason ECS gives a task replaced for failing its load balancer's checks.
pub(crate) fn unhealthy_reason(u: &UnhealthyTarget) -> String {
    format!(
        "Task failed ELB health checks in (target-group {})",
        u.target_group_arn
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TG: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef";

    fn service(lbs: bool) -> ServiceRecord {
        let mut s: ServiceRecord = serde_json::from_value(serde_json::json!({
            "cluster": "default", "name": "web", "arn": "arn:svc", "cluster_arn": "c",
            "status": "ACTIVE", "desired_count": 1, "launch_type": "EC2",
            "scheduling_strategy": "REPLICA", "task_definition": "td:1",
            "deployment_configuration": {}, "placement_constraints": [], "placement_strategy": [],
            "load_balancers": [], "network_configuration": null,
            "health_check_grace_period_seconds": null, "role_arn": null, "tags": [],
            "propagate_tags": "NONE", "enable_ecs_managed_tags": false,
            "enable_execute_command": false, "client_token": null, "created_at_ms": 0,
            "created_by": null, "deployments": [], "events": [], "steady": false,
            "deleted_at_ms": null
        }))
        .expect("a service record");
        if lbs {
            s.load_balancers = vec![wire::LoadBalancer {
                target_group_arn: Some(TG.into()),
                container_name: Some("app".into()),
                container_port: Some(80),
                ..Default::default()
            }];
        }
        s
    }

    /// A task of the service on instance `i1`, with `app:80` bound to `host_port`.
    fn task(id: &str, last: &str, desired: &str, host_port: Option<i32>) -> TaskRecord {
        let bindings = host_port.map(|p| {
            serde_json::json!([{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": p,
                                "protocol": "tcp"}])
        });
        serde_json::from_value(serde_json::json!({
            "cluster": "default", "id": id, "arn": format!("arn:task/{id}"),
            "cluster_arn": "c", "container_instance_id": "i1", "container_instance_arn": "ia",
            "task_definition_arn": TD, "health_checked": false, "dynamic_ports": 1,
            "overrides": {}, "last_status": last, "desired_status": desired,
            "containers": [{"name": "app", "networkBindings": bindings}],
            "group": "service:web", "started_by": "ecs-svc/1",
            "launch_type": "EC2", "cpu": "0", "memory": "0",
            "reserved": {"cpu": 0, "memory": 0, "ports": [], "udp_ports": []},
            "created_at_ms": 0, "pull_started_at_ms": null, "pull_stopped_at_ms": null,
            "started_at_ms": 0, "stopping_at_ms": if desired == "STOPPED" { Some(1_000) } else { None },
            "stopped_at_ms": null, "execution_stopped_at_ms": null, "connectivity_at_ms": null,
            "stop_code": null, "stopped_reason": null, "health_status": "UNKNOWN",
            "tags": [], "attributes": [], "enable_execute_command": false, "version": 1
        }))
        .expect("a task record")
    }

    fn group(target_type: &str, targets: &[(&str, i32, &str)]) -> BTreeMap<String, GroupView> {
        let view = GroupView {
            target_type: target_type.into(),
            deregistration_delay_ms: 30_000,
            in_use: true,
            targets: targets
                .iter()
                .map(|(id, port, state)| {
                    (
                        (id.to_string(), *port),
                        elb::TargetHealth {
                            state: Some(state.to_string()),
                            reason: None,
                            description: None,
                        },
                    )
                })
                .collect(),
        };
        BTreeMap::from([(TG.to_string(), view)])
    }

    const TD: &str = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1";

    fn definitions() -> HashMap<String, Arc<wire::TaskDefinition>> {
        let d = serde_json::from_value(serde_json::json!({"containerDefinitions": [{"name": "app",
            "portMappings": [{"containerPort": 80, "hostPort": 0}]}]}))
        .expect("a task definition");
        HashMap::from([(TD.to_string(), Arc::new(d))])
    }

    fn instances() -> HashMap<String, String> {
        HashMap::from([("i1".to_string(), "i-0abc".to_string())])
    }

    fn set(targets: &[(&str, i32)]) -> BTreeMap<String, BTreeSet<(String, i32)>> {
        if targets.is_empty() {
            return BTreeMap::new();
        }
        BTreeMap::from([(
            TG.to_string(),
            targets.iter().map(|(i, p)| (i.to_string(), *p)).collect(),
        )])
    }

    #[test]
    fn a_running_task_is_registered_by_instance_and_host_port() {
        let tasks = [task("a", "RUNNING", "RUNNING", Some(32768))];
        let p = plan(
            &service(true),
            &tasks,
            &instances(),
            &definitions(),
            &group("instance", &[]),
            0,
        );
        assert_eq!(p.register, set(&[("i-0abc", 32768)]));
        assert_eq!(p.health["a"], LbHealth::Waiting);
        // Registered and healthy: nothing to do, and the task counts as healthy.
        let g = group("instance", &[("i-0abc", 32768, "healthy")]);
        let p = plan(&service(true), &tasks, &instances(), &definitions(), &g, 0);
        assert!(p.register.is_empty() && p.deregister.is_empty());
        assert_eq!(p.health["a"], LbHealth::Healthy);
    }

    #[test]
    fn nothing_happens_without_load_balancers_or_before_the_port_is_known() {
        let tasks = [task("a", "RUNNING", "RUNNING", Some(32768))];
        let p = plan(
            &service(false),
            &tasks,
            &instances(),
            &definitions(),
            &group("instance", &[]),
            0,
        );
        assert_eq!(p, LbPlan::default());
        let pending = [task("a", "RUNNING", "RUNNING", None)];
        let p = plan(
            &service(true),
            &pending,
            &instances(),
            &definitions(),
            &group("instance", &[]),
            0,
        );
        assert!(p.register.is_empty());
        assert_eq!(p.health["a"], LbHealth::Waiting);
    }

    #[test]
    fn ip_targets_are_the_loopback_and_the_container_port() {
        let tasks = [task("a", "RUNNING", "RUNNING", Some(80))];
        let p = plan(
            &service(true),
            &tasks,
            &instances(),
            &definitions(),
            &group("ip", &[]),
            0,
        );
        assert_eq!(p.register, set(&[("127.0.0.1", 80)]));
    }

    #[test]
    fn a_deactivating_task_is_deregistered_then_drained_after_the_delay() {
        let tasks = [task("a", "DEACTIVATING", "STOPPED", Some(32768))];
        let registered = group("instance", &[("i-0abc", 32768, "healthy")]);
        let p = plan(
            &service(true),
            &tasks,
            &instances(),
            &definitions(),
            &registered,
            2_000,
        );
        assert_eq!(p.deregister, set(&[("i-0abc", 32768)]));
        assert_eq!(p.draining, ["a"]);
        assert!(p.drained.is_empty());
        // Draining (the group holds it until its delay has passed since deregistration): wait.
        let draining = group("instance", &[("i-0abc", 32768, "draining")]);
        let p = plan(
            &service(true),
            &tasks,
            &instances(),
            &definitions(),
            &draining,
            40_000,
        );
        assert!(p.deregister.is_empty() && p.drained.is_empty());
        // Gone from the group: the task may stop.
        let p = plan(
            &service(true),
            &tasks,
            &instances(),
            &definitions(),
            &group("instance", &[]),
            2_000,
        );
        assert_eq!(p.drained, ["a"]);
    }

    #[test]
    fn a_host_port_handed_out_again_stays_registered_for_the_new_task() {
        // The stopped task held 32768 before; the running one holds it now.
        let tasks = [
            task("old", "STOPPED", "STOPPED", Some(32768)),
            task("new", "RUNNING", "RUNNING", Some(32768)),
        ];
        let g = group("instance", &[("i-0abc", 32768, "healthy")]);
        let p = plan(&service(true), &tasks, &instances(), &definitions(), &g, 0);
        assert!(p.deregister.is_empty(), "{p:?}");
        assert_eq!(p.health["new"], LbHealth::Healthy);
        // A DEACTIVATING task naming a target a live task keeps waits the delay, no more.
        let tasks = [
            task("old", "DEACTIVATING", "STOPPED", Some(32768)),
            task("new", "RUNNING", "RUNNING", Some(32768)),
        ];
        let p = plan(
            &service(true),
            &tasks,
            &instances(),
            &definitions(),
            &g,
            30_999,
        );
        assert!(p.deregister.is_empty() && p.drained.is_empty(), "{p:?}");
        let p = plan(
            &service(true),
            &tasks,
            &instances(),
            &definitions(),
            &g,
            31_000,
        );
        assert_eq!(p.drained, ["old"]);
    }

    #[test]
    fn the_worst_target_decides() {
        let mut s = service(true);
        let second =
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/b/0123456789abcdef";
        s.load_balancers.push(wire::LoadBalancer {
            target_group_arn: Some(second.into()),
            ..s.load_balancers[0].clone()
        });
        let mut groups = group("instance", &[("i-0abc", 32768, "healthy")]);
        let mut other = groups[TG].clone();
        other.targets.values_mut().for_each(|h| {
            h.state = Some("unhealthy".into());
            h.description = Some("Request timed out".into());
        });
        groups.insert(second.to_string(), other);
        let tasks = [task("a", "RUNNING", "RUNNING", Some(32768))];
        let p = plan(&s, &tasks, &instances(), &definitions(), &groups, 0);
        let LbHealth::Unhealthy(u) = &p.health["a"] else {
            panic!("{p:?}");
        };
        assert_eq!(u.target_group_arn, second);
        assert_eq!(
            unhealthy_event("web", "a", u),
            format!(
                "(service web) (task a) (instance i-0abc) (port 32768) is unhealthy in (target-group {second}) due to (reason Request timed out)."
            )
        );
    }
}
