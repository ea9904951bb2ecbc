//! Service actions: CreateService, UpdateService, DeleteService, DescribeServices, ListServices,
//! and the deployment views (ListServiceDeployments, DescribeServiceDeployments,
//! StopServiceDeployment, DescribeServiceRevisions).
//!
//! These only record what the user wants: a service record with its deployments. Tasks are
//! started and stopped by the controller (`service_controller`), which reads these records and
//! the tasks and acts; counts shown here are observed from the task records on every read.

use crate::Ecs;
use crate::common::{self, active_cluster, failure, invalid, resource_name};
use crate::records::{
    ClusterRecord, DeploymentRecord, MAX_SERVICE_EVENTS, ServiceEventRecord, ServiceRecord,
    TaskDefinitionRecord, TaskRecord, kinds, pair_key,
};
use berth_aws::{AwsError, RequestContext};
use berth_model::task::{DesiredStatus, TaskStatus};
use berth_shapes::{Timestamp, ecs as wire};
use berth_store::{Expect, Op};
use std::collections::HashMap;

pub(crate) fn service_not_found() -> AwsError {
    AwsError::client("ServiceNotFoundException", "Service not found.")
}

fn service_not_active() -> AwsError {
    AwsError::client("ServiceNotActiveException", "Service was not ACTIVE.")
}

fn unsupported(message: impl Into<String>) -> AwsError {
    AwsError::client("UnsupportedFeatureException", message)
}

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

pub(crate) fn put_service(
    partition: &str,
    s: &ServiceRecord,
    expect: Expect,
) -> Result<Op, AwsError> {
    Ok(Op::put(
        kinds::SERVICE,
        partition.to_string(),
        pair_key(&s.cluster, &s.name),
        serde_json::to_value(s).map_err(AwsError::internal)?,
        expect,
    ))
}

/// The group a service's tasks carry (`task:group` in the query language).
pub(crate) fn group(service: &str) -> String {
    format!("service:{service}")
}

/// ECS's service names: 1–255 letters, digits, hyphens and underscores.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The service name an identifier names in `cluster`: a name, a long ARN
/// (`service/<cluster>/<name>`) or an old-format ARN (`service/<name>`).
fn service_name<'a>(ctx: &RequestContext, cluster: &str, ident: &'a str) -> Option<&'a str> {
    let rest = resource_name(ctx, ident, "service")?;
    let name = match rest.split_once('/') {
        Some((c, n)) if c == cluster => n,
        Some(_) => return None,
        None => rest,
    };
    valid_name(name).then_some(name)
}

/// A new deployment id as ECS makes them: `ecs-svc/` and 19 digits.
fn new_deployment_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000;
    format!("ecs-svc/{n}")
}

/// Appends an event (newest first, at most [`MAX_SERVICE_EVENTS`]).
pub(crate) fn push_event(s: &mut ServiceRecord, now: i64, message: String) {
    s.events.insert(
        0,
        ServiceEventRecord {
            id: uuid::Uuid::new_v4().to_string(),
            created_at_ms: now,
            message,
        },
    );
    s.events.truncate(MAX_SERVICE_EVENTS);
}

/// The configuration a deployment runs under, ECS's defaults filled in.
fn deployment_configuration(
    given: Option<wire::DeploymentConfiguration>,
    previous: Option<&wire::DeploymentConfiguration>,
    daemon: bool,
) -> Result<wire::DeploymentConfiguration, AwsError> {
    let mut c = match (given, previous) {
        (Some(g), Some(p)) => wire::DeploymentConfiguration {
            deployment_circuit_breaker: g
                .deployment_circuit_breaker
                .or_else(|| p.deployment_circuit_breaker.clone()),
            maximum_percent: g.maximum_percent.or(p.maximum_percent),
            minimum_healthy_percent: g.minimum_healthy_percent.or(p.minimum_healthy_percent),
            alarms: g.alarms.or_else(|| p.alarms.clone()),
            ..g
        },
        (Some(g), None) => g,
        (None, Some(p)) => p.clone(),
        (None, None) => wire::DeploymentConfiguration::default(),
    };
    let (max, min) = if daemon { (100, 0) } else { (200, 100) };
    let max = *c.maximum_percent.get_or_insert(max);
    let min = *c.minimum_healthy_percent.get_or_insert(min);
    if !(0..=100).contains(&min) {
        return Err(invalid("minimumHealthyPercent must be between 0 and 100."));
    }
    if max < 0 {
        return Err(invalid("maximumPercent must be at least 0."));
    }
    if daemon && max != 100 {
        return Err(invalid(
            "The maximumPercent for a service using the DAEMON scheduling strategy must be 100.",
        ));
    }
    if max <= min && !(min == 0 && max == 0) && max < 100 {
        return Err(invalid(
            "maximumPercent must be greater than minimumHealthyPercent.",
        ));
    }
    let breaker = c
        .deployment_circuit_breaker
        .get_or_insert_with(Default::default);
    breaker.enable.get_or_insert(false);
    breaker.rollback.get_or_insert(false);
    if let Some(s) = c.strategy.as_deref()
        && s != "ROLLING"
    {
        return Err(unsupported(format!(
            "berth supports the ROLLING deployment strategy only, not {s}."
        )));
    }
    if c.lifecycle_hooks.as_ref().is_some_and(|h| !h.is_empty())
        || c.canary_configuration.is_some()
        || c.linear_configuration.is_some()
    {
        return Err(unsupported(
            "Deployment lifecycle hooks, canary and linear deployments are not supported by berth.",
        ));
    }
    if c.alarms.as_ref().is_some_and(|a| a.enable == Some(true)) {
        return Err(unsupported(
            "Deployment alarms need CloudWatch alarms, which berth does not serve yet.",
        ));
    }
    Ok(c)
}

/// Placement constraints and strategies as ECS accepts them for a service (the rules RunTask
/// uses, and DAEMON services take no strategy).
fn check_placement(
    constraints: &[wire::PlacementConstraint],
    strategies: &[wire::PlacementStrategy],
    daemon: bool,
) -> Result<(), AwsError> {
    if daemon && !strategies.is_empty() {
        return Err(invalid(
            "Placement strategies are not supported with the DAEMON scheduling strategy.",
        ));
    }
    crate::tasks::placement_rules(constraints, strategies).map(|_| ())
}

fn check_launch_type(
    launch_type: Option<&str>,
    strategy: Option<&[wire::CapacityProviderStrategyItem]>,
) -> Result<String, AwsError> {
    if strategy.is_some_and(|s| !s.is_empty()) {
        if launch_type.is_some() {
            return Err(invalid(
                "Specifying both a launchType and capacityProviderStrategy is not supported.",
            ));
        }
        return Err(unsupported(
            "berth does not support capacity provider strategies for services yet; use launchType EC2.",
        ));
    }
    match launch_type {
        None | Some("EC2") => Ok("EC2".into()),
        Some(other) => Err(unsupported(format!(
            "berth does not support the {other} launch type yet; use EC2."
        ))),
    }
}

/// The ACTIVE task definition an identifier names, EC2-compatible.
async fn task_definition(
    ecs: &Ecs,
    ctx: &RequestContext,
    ident: &str,
) -> Result<TaskDefinitionRecord, AwsError> {
    let (record, _) = crate::task_definitions::find(ecs, ctx, ident)
        .await?
        .ok_or_else(|| invalid("TaskDefinition not found."))?;
    if record.definition.status.as_deref() != Some("ACTIVE") {
        return Err(invalid("TaskDefinition is inactive."));
    }
    let compat = record
        .definition
        .requires_compatibilities
        .clone()
        .unwrap_or_default();
    if !compat.is_empty() && !compat.iter().any(|c| c == "EC2") {
        return Err(invalid("Task definition does not support launch_type EC2."));
    }
    Ok(record)
}

/// The images of a task definition's containers, as a service revision lists them.
pub(crate) fn container_images(definition: &wire::TaskDefinition) -> Vec<wire::ContainerImage> {
    definition
        .container_definitions
        .iter()
        .flatten()
        .map(|c| wire::ContainerImage {
            container_name: c.name.clone(),
            image: c.image.clone(),
            image_digest: None,
        })
        .collect()
}

/// Everything a deployment copies from its service when it is created.
fn new_deployment(
    ctx: &RequestContext,
    s: &ServiceRecord,
    container_images: Vec<wire::ContainerImage>,
    now: i64,
    source_revisions: Vec<String>,
) -> DeploymentRecord {
    let id = new_deployment_id();
    let digits = id.trim_start_matches("ecs-svc/").to_string();
    let reason = format!("ECS deployment {id} in progress.");
    let sd_id = uuid::Uuid::new_v4().simple().to_string();
    DeploymentRecord {
        service_deployment_arn: common::arn(
            ctx,
            format!("service-deployment/{}/{}/{sd_id}", s.cluster, s.name),
        ),
        service_revision_arn: common::arn(
            ctx,
            format!("service-revision/{}/{}/{digits}", s.cluster, s.name),
        ),
        id,
        status: "PRIMARY".into(),
        task_definition: s.task_definition.clone(),
        launch_type: s.launch_type.clone(),
        network_configuration: s.network_configuration.clone(),
        load_balancers: s.load_balancers.clone(),
        deployment_configuration: s.deployment_configuration.clone(),
        container_images,
        created_at_ms: now,
        updated_at_ms: now,
        finished_at_ms: None,
        stopped_at_ms: None,
        rollout_state: "IN_PROGRESS".into(),
        rollout_state_reason: reason,
        service_deployment_status: "IN_PROGRESS".into(),
        status_reason: None,
        source_revisions,
        rollback: None,
        failed_tasks: 0,
        consecutive_failures: 0,
        launch_not_before_ms: 0,
        counted_failures: Vec::new(),
        any_running: false,
        rolls_back: None,
    }
}

/// Starts a new deployment of the service's current settings: the PRIMARY one becomes ACTIVE
/// (it keeps its tasks until the new one replaces them).
pub(crate) fn begin_deployment(
    ctx: &RequestContext,
    s: &mut ServiceRecord,
    container_images: Vec<wire::ContainerImage>,
    now: i64,
) -> String {
    let mut sources = Vec::new();
    for d in s.deployments.iter_mut() {
        if d.status == "PRIMARY" {
            d.status = "ACTIVE".into();
            d.updated_at_ms = now;
        }
        if d.status == "ACTIVE" {
            sources.push(d.service_revision_arn.clone());
            if d.rollout_state == "IN_PROGRESS" {
                d.service_deployment_status = "STOPPED".into();
                d.status_reason = Some("Superseded by a newer deployment.".into());
                d.stopped_at_ms = Some(now);
            }
        }
    }
    let d = new_deployment(ctx, s, container_images, now, sources);
    let id = d.id.clone();
    s.deployments.insert(0, d);
    s.steady = false;
    id
}

/// The service's tasks, live and recently stopped, from the store.
pub(crate) async fn service_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    s: &ServiceRecord,
) -> Result<Vec<TaskRecord>, AwsError> {
    let g = group(&s.name);
    Ok(
        common::all::<TaskRecord>(ecs, ctx, kinds::TASK, &format!("{}|", s.cluster))
            .await?
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.group == g)
            .collect(),
    )
}

/// RUNNING and PENDING counts of tasks that are desired RUNNING, for one deployment or all.
pub(crate) fn counts(tasks: &[TaskRecord], deployment: Option<&str>) -> (i32, i32) {
    let (mut running, mut pending) = (0, 0);
    for t in tasks {
        if t.desired_status != DesiredStatus::Running.as_str() {
            continue;
        }
        if deployment.is_some_and(|d| t.started_by.as_deref() != Some(d)) {
            continue;
        }
        match TaskStatus::parse(&t.last_status) {
            Some(TaskStatus::Running) => running += 1,
            Some(st) if st.is_pending() => pending += 1,
            _ => {}
        }
    }
    (running, pending)
}

fn deployment_to_wire(
    d: &DeploymentRecord,
    service_desired: i32,
    tasks: &[TaskRecord],
) -> wire::Deployment {
    let (running, pending) = counts(tasks, Some(&d.id));
    wire::Deployment {
        id: Some(d.id.clone()),
        status: Some(d.status.clone()),
        task_definition: Some(d.task_definition.clone()),
        desired_count: Some(if d.status == "PRIMARY" {
            service_desired
        } else {
            0
        }),
        pending_count: Some(pending),
        running_count: Some(running),
        failed_tasks: Some(d.failed_tasks),
        created_at: ts(Some(d.created_at_ms)),
        updated_at: ts(Some(d.updated_at_ms)),
        capacity_provider_strategy: None,
        launch_type: Some(d.launch_type.clone()),
        platform_version: None,
        platform_family: None,
        network_configuration: d.network_configuration.clone(),
        rollout_state: Some(d.rollout_state.clone()),
        rollout_state_reason: Some(d.rollout_state_reason.clone()),
        service_connect_configuration: None,
        service_connect_resources: None,
        volume_configurations: None,
        fargate_ephemeral_storage: None,
        vpc_lattice_configurations: None,
    }
}

pub(crate) fn to_wire(s: &ServiceRecord, tasks: &[TaskRecord], tags: bool) -> wire::Service {
    let (running, pending) = counts(tasks, None);
    let current: Vec<&DeploymentRecord> = s
        .deployments
        .iter()
        .filter(|d| d.status != "INACTIVE")
        .collect();
    wire::Service {
        service_arn: Some(s.arn.clone()),
        service_name: Some(s.name.clone()),
        cluster_arn: Some(s.cluster_arn.clone()),
        load_balancers: Some(s.load_balancers.clone()),
        service_registries: Some(vec![]),
        status: Some(s.status.clone()),
        desired_count: Some(s.desired_count),
        running_count: Some(running),
        pending_count: Some(pending),
        launch_type: Some(s.launch_type.clone()),
        task_definition: Some(s.task_definition.clone()),
        deployment_configuration: Some(s.deployment_configuration.clone()),
        deployments: Some(
            current
                .iter()
                .map(|d| deployment_to_wire(d, s.desired_count, tasks))
                .collect(),
        ),
        role_arn: s.role_arn.clone(),
        events: Some(
            s.events
                .iter()
                .map(|e| wire::ServiceEvent {
                    id: Some(e.id.clone()),
                    created_at: ts(Some(e.created_at_ms)),
                    message: Some(e.message.clone()),
                })
                .collect(),
        ),
        created_at: ts(Some(s.created_at_ms)),
        current_service_deployment: current.first().map(|d| d.service_deployment_arn.clone()),
        placement_constraints: Some(s.placement_constraints.clone()),
        placement_strategy: Some(s.placement_strategy.clone()),
        network_configuration: s.network_configuration.clone(),
        health_check_grace_period_seconds: s.health_check_grace_period_seconds,
        scheduling_strategy: Some(s.scheduling_strategy.clone()),
        deployment_controller: Some(wire::DeploymentController {
            r#type: Some("ECS".into()),
        }),
        tags: tags.then(|| s.tags.clone()),
        created_by: s.created_by.clone(),
        enable_ecs_managed_tags: Some(s.enable_ecs_managed_tags),
        propagate_tags: Some(s.propagate_tags.clone()),
        enable_execute_command: Some(s.enable_execute_command),
        availability_zone_rebalancing: Some(s.availability_zone_rebalancing.clone()),
        ..wire::Service::default()
    }
}

/// Features berth does not model: refused plainly rather than stored and ignored.
fn refuse_unmodelled(
    service_registries: Option<&[wire::ServiceRegistry]>,
    service_connect: Option<&wire::ServiceConnectConfiguration>,
    volume_configurations: Option<&[wire::ServiceVolumeConfiguration]>,
    vpc_lattice: Option<&[wire::VpcLatticeConfiguration]>,
    controller: Option<&wire::DeploymentController>,
) -> Result<(), AwsError> {
    if service_registries.is_some_and(|r| !r.is_empty()) {
        return Err(unsupported(
            "Service discovery (Cloud Map service registries) is not supported by berth.",
        ));
    }
    if service_connect.is_some_and(|c| c.enabled == Some(true)) {
        return Err(unsupported("Service Connect is not supported by berth."));
    }
    if volume_configurations.is_some_and(|v| !v.is_empty()) {
        return Err(unsupported(
            "Volumes configured at launch (managed EBS) are not supported by berth.",
        ));
    }
    if vpc_lattice.is_some_and(|v| !v.is_empty()) {
        return Err(unsupported("VPC Lattice is not supported by berth."));
    }
    if let Some(c) = controller
        && c.r#type.as_deref().is_some_and(|t| t != "ECS")
    {
        return Err(unsupported(
            "berth supports the ECS deployment controller only.",
        ));
    }
    Ok(())
}

pub async fn create_service(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::CreateServiceRequest,
) -> Result<wire::CreateServiceResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let name = req.service_name.clone().unwrap_or_default();
    if !valid_name(&name) {
        return Err(invalid(
            "Service name must be 1-255 characters: letters, numbers, hyphens and underscores.",
        ));
    }
    refuse_unmodelled(
        req.service_registries.as_deref(),
        req.service_connect_configuration.as_ref(),
        req.volume_configurations.as_deref(),
        None,
        req.deployment_controller.as_ref(),
    )?;
    let launch_type = check_launch_type(
        req.launch_type.as_deref(),
        req.capacity_provider_strategy.as_deref(),
    )?;
    if req.platform_version.is_some() {
        return Err(invalid(
            "The platform version must be null when specifying an EC2 launch type.",
        ));
    }
    let daemon = match req.scheduling_strategy.as_deref() {
        None | Some("REPLICA") => false,
        Some("DAEMON") => true,
        Some(other) => return Err(invalid(format!("Invalid schedulingStrategy '{other}'."))),
    };
    let desired = match (daemon, req.desired_count) {
        (false, None) => {
            return Err(invalid(
                "desiredCount is required for services using the REPLICA scheduling strategy.",
            ));
        }
        (false, Some(n)) if n < 0 => return Err(invalid("desiredCount must be at least 0.")),
        (false, Some(n)) => n,
        (true, Some(_)) => {
            return Err(invalid(
                "desiredCount cannot be specified for services using the DAEMON scheduling strategy.",
            ));
        }
        (true, None) => 0,
    };
    let ident = req
        .task_definition
        .clone()
        .ok_or_else(|| invalid("taskDefinition is required for the ECS deployment controller."))?;
    let td = task_definition(ecs, ctx, &ident).await?;
    let constraints = req.placement_constraints.clone().unwrap_or_default();
    let strategies = req.placement_strategy.clone().unwrap_or_default();
    check_placement(&constraints, &strategies, daemon)?;
    let config = deployment_configuration(req.deployment_configuration.clone(), None, daemon)?;
    let tags = req.tags.clone().unwrap_or_default();
    common::check_tags(&tags)?;
    // The validator has checked the enum; ECS's default is NONE.
    let propagate = req.propagate_tags.clone().unwrap_or_else(|| "NONE".into());
    if req
        .health_check_grace_period_seconds
        .is_some_and(|g| !(0..=2_147_483_647).contains(&g))
    {
        return Err(invalid("healthCheckGracePeriodSeconds must be at least 0."));
    }
    check_load_balancers(req.load_balancers.as_deref(), &td.definition)?;
    check_target_groups(
        ecs,
        ctx,
        req.load_balancers.as_deref().unwrap_or_default(),
        &td.definition,
    )
    .await?;
    let now = ecs.now_ms();
    let mut s = ServiceRecord {
        cluster: cluster.name.clone(),
        name: name.clone(),
        arn: common::arn(ctx, format!("service/{}/{name}", cluster.name)),
        cluster_arn: cluster.arn.clone(),
        status: "ACTIVE".into(),
        desired_count: desired,
        launch_type,
        scheduling_strategy: if daemon { "DAEMON" } else { "REPLICA" }.into(),
        task_definition: td
            .definition
            .task_definition_arn
            .clone()
            .unwrap_or_default(),
        deployment_configuration: config,
        placement_constraints: constraints,
        placement_strategy: strategies,
        load_balancers: req.load_balancers.clone().unwrap_or_default(),
        network_configuration: req.network_configuration.clone(),
        health_check_grace_period_seconds: req.health_check_grace_period_seconds,
        role_arn: req.role.clone(),
        tags,
        propagate_tags: propagate,
        enable_ecs_managed_tags: req.enable_ecs_managed_tags.unwrap_or(false),
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
        client_token: req.client_token.clone(),
        created_at_ms: now,
        created_by: Some(format!("arn:aws:iam::{}:root", ctx.account_id)),
        deployments: Vec::new(),
        events: Vec::new(),
        steady: false,
        deleted_at_ms: None,
        // ECS's default for a new service.
        availability_zone_rebalancing: req
            .availability_zone_rebalancing
            .clone()
            .unwrap_or_else(|| "ENABLED".into()),
    };
    begin_deployment(ctx, &mut s, container_images(&td.definition), now);
    let partition = ctx.partition();
    let key = pair_key(&cluster.name, &name);
    let created = common::transact(ecs, || async {
        let existing = common::get::<ServiceRecord>(ecs, ctx, kinds::SERVICE, &key).await?;
        match existing {
            Some((e, _))
                if e.status != "INACTIVE"
                    && e.client_token.is_some()
                    && e.client_token == s.client_token =>
            {
                // A retried request with the same client token gets the service it created.
                Ok((vec![], e))
            }
            Some((e, _)) if e.status != "INACTIVE" => {
                Err(invalid("Creation of service was not idempotent."))
            }
            Some((_, v)) => Ok((
                vec![put_service(&partition, &s, Expect::Version(v))?],
                s.clone(),
            )),
            None => Ok((
                vec![put_service(&partition, &s, Expect::Absent)?],
                s.clone(),
            )),
        }
    })
    .await?;
    let tasks = service_tasks(ecs, ctx, &created).await?;
    Ok(wire::CreateServiceResponse {
        service: Some(to_wire(&created, &tasks, true)),
    })
}

/// The target groups of a service's load balancers, checked as ECS checks them: each exists,
/// some load balancer forwards to it, and its target type suits the task definition's network
/// mode (`ip` for awsvpc, `instance` for bridge and host).
async fn check_target_groups(
    ecs: &Ecs,
    ctx: &RequestContext,
    lbs: &[wire::LoadBalancer],
    def: &wire::TaskDefinition,
) -> Result<(), AwsError> {
    let arns: Vec<&str> = lbs
        .iter()
        .filter_map(|lb| lb.target_group_arn.as_deref())
        .collect();
    if arns.is_empty() {
        return Ok(());
    }
    let groups = berth_elbv2::group_views(ecs.store(), ctx, &arns, ecs.now_ms()).await?;
    let mode = def.network_mode.as_deref().unwrap_or("bridge");
    for arn in arns {
        let Some(group) = groups.get(arn) else {
            // ECS's answer when it cannot describe the target group it was given.
            return Err(invalid(
                "Unable to assume role and validate the specified targetGroupArn. Please verify that the ECS service role being passed has the proper permissions.",
            ));
        };
        if !group.in_use {
            return Err(invalid(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        let fits = match group.target_type.as_str() {
            "ip" => mode == "awsvpc",
            "instance" => matches!(mode, "bridge" | "host"),
            _ => false,
        };
        if !fits {
            return Err(invalid(format!(
                "The provided target group {arn} has target type {}, which is incompatible with the {mode} network mode specified in the task definition.",
                group.target_type
            )));
        }
    }
    Ok(())
}

/// A load balancer entry names a container and port of the task definition, and a target
/// group: berth's load balancer is an Application Load Balancer, so Classic Load Balancers
/// (`loadBalancerName`) are refused.
fn check_load_balancers(
    lbs: Option<&[wire::LoadBalancer]>,
    def: &wire::TaskDefinition,
) -> Result<(), AwsError> {
    for lb in lbs.unwrap_or_default() {
        let Some(name) = lb.container_name.as_deref() else {
            return Err(invalid("loadBalancers require a containerName."));
        };
        let Some(port) = lb.container_port else {
            return Err(invalid("loadBalancers require a containerPort."));
        };
        let container = def
            .container_definitions
            .iter()
            .flatten()
            .find(|c| c.name.as_deref() == Some(name))
            .ok_or_else(|| {
                invalid(format!(
                    "The container {name} does not exist in the task definition."
                ))
            })?;
        let mapped = container
            .port_mappings
            .iter()
            .flatten()
            .any(|p| p.container_port == Some(port));
        if !mapped {
            return Err(invalid(format!(
                "The container {name} did not have a container port {port} defined."
            )));
        }
        if lb.advanced_configuration.is_some() {
            return Err(unsupported(
                "Blue/green load balancer settings (advancedConfiguration) are not supported by berth.",
            ));
        }
        if lb.load_balancer_name.is_some() {
            return Err(unsupported(
                "Classic Load Balancers (loadBalancerName) are not supported by berth: use a targetGroupArn.",
            ));
        }
        if lb.target_group_arn.is_none() {
            return Err(invalid("loadBalancers require a targetGroupArn."));
        }
    }
    Ok(())
}

/// Services of `cluster` that are ACTIVE or still draining.
pub(crate) async fn active_services(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<i32, AwsError> {
    let all =
        common::all::<ServiceRecord>(ecs, ctx, kinds::SERVICE, &format!("{cluster}|")).await?;
    Ok(all.iter().filter(|(_, s)| s.status != "INACTIVE").count() as i32)
}

/// The service a request names in its cluster, any status.
pub(crate) async fn find(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &ClusterRecord,
    ident: &str,
) -> Result<Option<(ServiceRecord, u64)>, AwsError> {
    let Some(name) = service_name(ctx, &cluster.name, ident) else {
        return Ok(None);
    };
    common::get(ecs, ctx, kinds::SERVICE, &pair_key(&cluster.name, name)).await
}

pub async fn update_service(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::UpdateServiceRequest,
) -> Result<wire::UpdateServiceResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let ident = req.service.clone().unwrap_or_default();
    refuse_unmodelled(
        req.service_registries.as_deref(),
        req.service_connect_configuration.as_ref(),
        req.volume_configurations.as_deref(),
        req.vpc_lattice_configurations.as_deref(),
        req.deployment_controller.as_ref(),
    )?;
    if req.platform_version.is_some() {
        return Err(invalid(
            "The platform version must be null when specifying an EC2 launch type.",
        ));
    }
    if req
        .capacity_provider_strategy
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(unsupported(
            "berth does not support capacity provider strategies for services yet.",
        ));
    }
    // Resolve the task definition outside the transaction: it does not change with the service.
    let td = match req.task_definition.as_deref() {
        Some(i) => Some(task_definition(ecs, ctx, i).await?),
        None => None,
    };
    let partition = ctx.partition();
    let updated = common::transact(ecs, || async {
        let (mut s, v) = find(ecs, ctx, &cluster, &ident)
            .await?
            .ok_or_else(service_not_found)?;
        if s.status != "ACTIVE" {
            return Err(service_not_active());
        }
        let daemon = s.scheduling_strategy == "DAEMON";
        let now = ecs.now_ms();
        let mut redeploy = req.force_new_deployment == Some(true);
        if let Some(n) = req.desired_count {
            if daemon {
                return Err(invalid(
                    "The desired count cannot be changed for services using the DAEMON scheduling strategy.",
                ));
            }
            if n < 0 {
                return Err(invalid("desiredCount must be at least 0."));
            }
            if n != s.desired_count {
                s.desired_count = n;
                s.steady = false;
            }
        }
        if let Some(c) = req.deployment_configuration.clone() {
            s.deployment_configuration =
                deployment_configuration(Some(c), Some(&s.deployment_configuration), daemon)?;
        }
        if req.placement_constraints.is_some() || req.placement_strategy.is_some() {
            let c = req
                .placement_constraints
                .clone()
                .unwrap_or_else(|| s.placement_constraints.clone());
            let st = req
                .placement_strategy
                .clone()
                .unwrap_or_else(|| s.placement_strategy.clone());
            check_placement(&c, &st, daemon)?;
            s.placement_constraints = c;
            s.placement_strategy = st;
        }
        let definition = match &td {
            Some(td) => {
                let arn = td.definition.task_definition_arn.clone().unwrap_or_default();
                if arn != s.task_definition {
                    s.task_definition = arn;
                    redeploy = true;
                }
                td.definition.clone()
            }
            None => {
                task_definition(ecs, ctx, &s.task_definition)
                    .await
                    .map(|r| r.definition)
                    .unwrap_or_default()
            }
        };
        if let Some(lbs) = req.load_balancers.clone() {
            check_load_balancers(Some(&lbs), &definition)?;
            check_target_groups(ecs, ctx, &lbs, &definition).await?;
            if lbs != s.load_balancers {
                s.load_balancers = lbs;
                redeploy = true;
            }
        } else if td.is_some() {
            check_load_balancers(Some(&s.load_balancers), &definition)?;
            check_target_groups(ecs, ctx, &s.load_balancers, &definition).await?;
        }
        if let Some(n) = req.network_configuration.clone()
            && Some(&n) != s.network_configuration.as_ref()
        {
            s.network_configuration = Some(n);
            redeploy = true;
        }
        if let Some(g) = req.health_check_grace_period_seconds {
            if g < 0 {
                return Err(invalid("healthCheckGracePeriodSeconds must be at least 0."));
            }
            s.health_check_grace_period_seconds = Some(g);
        }
        if let Some(p) = req.propagate_tags.clone() {
            s.propagate_tags = p;
        }
        if let Some(e) = req.enable_ecs_managed_tags {
            s.enable_ecs_managed_tags = e;
        }
        if let Some(e) = req.enable_execute_command {
            s.enable_execute_command = e;
        }
        if let Some(a) = req.availability_zone_rebalancing.clone() {
            s.availability_zone_rebalancing = a;
        }
        if redeploy {
            begin_deployment(ctx, &mut s, container_images(&definition), now);
        }
        Ok((vec![put_service(&partition, &s, Expect::Version(v))?], s))
    })
    .await?;
    let tasks = service_tasks(ecs, ctx, &updated).await?;
    Ok(wire::UpdateServiceResponse {
        service: Some(to_wire(&updated, &tasks, false)),
    })
}

pub async fn delete_service(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeleteServiceRequest,
) -> Result<wire::DeleteServiceResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let ident = req.service.clone().unwrap_or_default();
    let force = req.force == Some(true);
    let partition = ctx.partition();
    let deleted = common::transact(ecs, || async {
        let (mut s, v) = find(ecs, ctx, &cluster, &ident)
            .await?
            .ok_or_else(service_not_found)?;
        match s.status.as_str() {
            "INACTIVE" => return Err(service_not_found()),
            "DRAINING" => return Ok((vec![], s)),
            _ => {}
        }
        if s.scheduling_strategy == "REPLICA" && s.desired_count > 0 && !force {
            return Err(invalid(
                "The service cannot be stopped while it is scaled above 0.",
            ));
        }
        let now = ecs.now_ms();
        s.status = "DRAINING".into();
        s.desired_count = 0;
        s.deleted_at_ms = Some(now);
        s.steady = false;
        Ok((vec![put_service(&partition, &s, Expect::Version(v))?], s))
    })
    .await?;
    let tasks = service_tasks(ecs, ctx, &deleted).await?;
    Ok(wire::DeleteServiceResponse {
        service: Some(to_wire(&deleted, &tasks, false)),
    })
}

pub async fn describe_services(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeServicesRequest,
) -> Result<wire::DescribeServicesResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let idents = req.services.unwrap_or_default();
    if idents.is_empty() || idents.len() > 10 {
        return Err(invalid("services must contain between 1 and 10 services."));
    }
    let tags = req.include.iter().flatten().any(|i| i == "TAGS");
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for ident in idents {
        match find(ecs, ctx, &cluster, &ident).await? {
            Some((s, _)) => found.push(s),
            None => {
                let arn = if ident.starts_with("arn:") {
                    ident
                } else {
                    common::arn(ctx, format!("service/{}/{ident}", cluster.name))
                };
                failures.push(failure(arn, "MISSING"));
            }
        }
    }
    // The cluster's tasks are read once for up to ten services, not once per service.
    let mut by_group: HashMap<String, Vec<TaskRecord>> = HashMap::new();
    if !found.is_empty() {
        for (_, t) in
            common::all::<TaskRecord>(ecs, ctx, kinds::TASK, &format!("{}|", cluster.name)).await?
        {
            by_group.entry(t.group.clone()).or_default().push(t);
        }
    }
    let services = found
        .iter()
        .map(|s| {
            let tasks = by_group.get(&group(&s.name)).map_or(&[][..], Vec::as_slice);
            to_wire(s, tasks, tags)
        })
        .collect();
    Ok(wire::DescribeServicesResponse {
        services: Some(services),
        failures: Some(failures),
    })
}

pub async fn list_services(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListServicesRequest,
) -> Result<wire::ListServicesResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let items: Vec<(String, String)> =
        common::all::<ServiceRecord>(ecs, ctx, kinds::SERVICE, &format!("{}|", cluster.name))
            .await?
            .into_iter()
            .filter(|(_, s)| s.status != "INACTIVE")
            .filter(|(_, s)| req.launch_type.as_ref().is_none_or(|l| &s.launch_type == l))
            .filter(|(_, s)| {
                req.scheduling_strategy
                    .as_ref()
                    .is_none_or(|l| &s.scheduling_strategy == l)
            })
            .filter(|_| {
                // berth manages no services on the customer's behalf.
                req.resource_management_type
                    .as_deref()
                    .is_none_or(|t| t == "CUSTOMER")
            })
            .map(|(k, s)| (k, s.arn))
            .collect();
    let binding = common::binding(ctx, &format!("ListServices.{}", cluster.name));
    let (arns, next) = common::page(
        ecs,
        &binding,
        items,
        req.max_results.or(Some(10)),
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListServicesResponse {
        service_arns: Some(arns),
        next_token: next,
    })
}

/// A deployment in the newer ServiceDeployment view.
fn service_deployment(
    s: &ServiceRecord,
    d: &DeploymentRecord,
    tasks: &[TaskRecord],
) -> wire::ServiceDeployment {
    let (running, pending) = counts(tasks, Some(&d.id));
    let breaker = d
        .deployment_configuration
        .deployment_circuit_breaker
        .as_ref()
        .is_some_and(|b| b.enable == Some(true));
    let threshold = berth_model::rollout::circuit_breaker_threshold(
        u32::try_from(s.desired_count).unwrap_or(0),
    );
    let sources = s
        .deployments
        .iter()
        .filter(|o| d.source_revisions.contains(&o.service_revision_arn))
        .map(|o| {
            let (r, p) = counts(tasks, Some(&o.id));
            wire::ServiceRevisionSummary {
                arn: Some(o.service_revision_arn.clone()),
                requested_task_count: Some(0),
                running_task_count: Some(r),
                pending_task_count: Some(p),
                ..wire::ServiceRevisionSummary::default()
            }
        })
        .collect();
    wire::ServiceDeployment {
        service_deployment_arn: Some(d.service_deployment_arn.clone()),
        service_arn: Some(s.arn.clone()),
        cluster_arn: Some(s.cluster_arn.clone()),
        created_at: ts(Some(d.created_at_ms)),
        started_at: ts(Some(d.created_at_ms)),
        finished_at: ts(d.finished_at_ms),
        stopped_at: ts(d.stopped_at_ms),
        updated_at: ts(Some(d.updated_at_ms)),
        source_service_revisions: Some(sources),
        target_service_revision: Some(wire::ServiceRevisionSummary {
            arn: Some(d.service_revision_arn.clone()),
            requested_task_count: Some(if d.status == "PRIMARY" {
                s.desired_count
            } else {
                0
            }),
            running_task_count: Some(running),
            pending_task_count: Some(pending),
            ..wire::ServiceRevisionSummary::default()
        }),
        status: Some(d.service_deployment_status.clone()),
        status_reason: d.status_reason.clone(),
        deployment_configuration: Some(d.deployment_configuration.clone()),
        rollback: d.rollback.clone(),
        deployment_circuit_breaker: Some(wire::ServiceDeploymentCircuitBreaker {
            status: Some(
                if !breaker {
                    "DISABLED"
                } else if d.rollout_state == "FAILED" {
                    "TRIGGERED"
                } else if d.rollout_state == "COMPLETED" {
                    "MONITORING_COMPLETE"
                } else {
                    "MONITORING"
                }
                .into(),
            ),
            failure_count: Some(d.failed_tasks),
            threshold: Some(i32::try_from(threshold).unwrap_or(i32::MAX)),
        }),
        ..wire::ServiceDeployment::default()
    }
}

/// `(cluster, service, last part)` of an ARN of `kind` (`service-deployment`, `service-revision`)
/// in the caller's account and region.
fn split_child_arn<'a>(
    ctx: &RequestContext,
    arn: &'a str,
    kind: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    if !arn.starts_with("arn:") {
        return None;
    }
    let rest = resource_name(ctx, arn, kind)?;
    let mut parts = rest.splitn(3, '/');
    let (c, s, id) = (parts.next()?, parts.next()?, parts.next()?);
    (!c.is_empty() && valid_name(s) && !id.is_empty() && !id.contains('/')).then_some((c, s, id))
}

pub async fn list_service_deployments(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListServiceDeploymentsRequest,
) -> Result<wire::ListServiceDeploymentsResponse, AwsError> {
    let (cluster, _) = active_cluster(ecs, ctx, req.cluster.as_deref()).await?;
    let ident = req.service.clone().unwrap_or_default();
    let (s, _) = find(ecs, ctx, &cluster, &ident)
        .await?
        .ok_or_else(service_not_found)?;
    let statuses = req.status.clone().unwrap_or_default();
    let after = req
        .created_at
        .as_ref()
        .and_then(|c| c.after.as_ref())
        .map(|t| t.to_millis());
    let before = req
        .created_at
        .as_ref()
        .and_then(|c| c.before.as_ref())
        .map(|t| t.to_millis());
    let items: Vec<(String, wire::ServiceDeploymentBrief)> = s
        .deployments
        .iter()
        .filter(|d| statuses.is_empty() || statuses.contains(&d.service_deployment_status))
        .filter(|d| after.is_none_or(|a| d.created_at_ms >= a))
        .filter(|d| before.is_none_or(|b| d.created_at_ms <= b))
        .map(|d| {
            // Newest first: keys sort by descending creation time.
            let key = format!("{:020}|{}", i64::MAX - d.created_at_ms, d.id);
            (
                key,
                wire::ServiceDeploymentBrief {
                    service_deployment_arn: Some(d.service_deployment_arn.clone()),
                    service_arn: Some(s.arn.clone()),
                    cluster_arn: Some(s.cluster_arn.clone()),
                    started_at: ts(Some(d.created_at_ms)),
                    created_at: ts(Some(d.created_at_ms)),
                    finished_at: ts(d.finished_at_ms),
                    target_service_revision_arn: Some(d.service_revision_arn.clone()),
                    status: Some(d.service_deployment_status.clone()),
                    status_reason: d.status_reason.clone(),
                },
            )
        })
        .collect();
    let mut items = items;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let binding = common::binding(
        ctx,
        &format!("ListServiceDeployments.{}.{}", s.cluster, s.name),
    );
    let (deployments, next) = common::page(
        ecs,
        &binding,
        items,
        req.max_results.or(Some(20)),
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListServiceDeploymentsResponse {
        service_deployments: Some(deployments),
        next_token: next,
    })
}

/// The service a child ARN (deployment or revision) belongs to, if it exists.
async fn service_of(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
    service: &str,
) -> Result<Option<(ServiceRecord, u64)>, AwsError> {
    common::get(ecs, ctx, kinds::SERVICE, &pair_key(cluster, service)).await
}

/// The deployments that ARNs of `kind` (`service-deployment` or `service-revision`) name, with
/// their services and the services' tasks; `MISSING` for the others. `field` picks the ARN a
/// deployment answers to.
async fn deployments_named(
    ecs: &Ecs,
    ctx: &RequestContext,
    arns: Vec<String>,
    kind: &str,
    field: fn(&DeploymentRecord) -> &str,
) -> Result<
    (
        Vec<(ServiceRecord, DeploymentRecord, Vec<TaskRecord>)>,
        Vec<wire::Failure>,
    ),
    AwsError,
> {
    if arns.is_empty() || arns.len() > 20 {
        return Err(invalid(format!(
            "Between 1 and 20 {kind} ARNs must be given."
        )));
    }
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arn in arns {
        let found = match split_child_arn(ctx, &arn, kind) {
            Some((c, s, _)) => service_of(ecs, ctx, c, s).await?,
            None => None,
        };
        let hit = found.and_then(|(s, _)| {
            let d = s.deployments.iter().find(|d| field(d) == arn)?.clone();
            Some((s, d))
        });
        match hit {
            Some((s, d)) => {
                let tasks = service_tasks(ecs, ctx, &s).await?;
                out.push((s, d, tasks));
            }
            None => failures.push(failure(arn, "MISSING")),
        }
    }
    Ok((out, failures))
}

pub async fn describe_service_deployments(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeServiceDeploymentsRequest,
) -> Result<wire::DescribeServiceDeploymentsResponse, AwsError> {
    let arns = req.service_deployment_arns.unwrap_or_default();
    let (found, failures) = deployments_named(ecs, ctx, arns, "service-deployment", |d| {
        &d.service_deployment_arn
    })
    .await?;
    Ok(wire::DescribeServiceDeploymentsResponse {
        service_deployments: Some(
            found
                .iter()
                .map(|(s, d, tasks)| service_deployment(s, d, tasks))
                .collect(),
        ),
        failures: Some(failures),
    })
}

pub async fn describe_service_revisions(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeServiceRevisionsRequest,
) -> Result<wire::DescribeServiceRevisionsResponse, AwsError> {
    let arns = req.service_revision_arns.unwrap_or_default();
    let (found, failures) = deployments_named(ecs, ctx, arns, "service-revision", |d| {
        &d.service_revision_arn
    })
    .await?;
    Ok(wire::DescribeServiceRevisionsResponse {
        service_revisions: Some(
            found
                .iter()
                .map(|(s, d, _)| wire::ServiceRevision {
                    service_revision_arn: Some(d.service_revision_arn.clone()),
                    service_arn: Some(s.arn.clone()),
                    cluster_arn: Some(s.cluster_arn.clone()),
                    task_definition: Some(d.task_definition.clone()),
                    launch_type: Some(d.launch_type.clone()),
                    load_balancers: Some(d.load_balancers.clone()),
                    service_registries: Some(vec![]),
                    network_configuration: d.network_configuration.clone(),
                    container_images: Some(d.container_images.clone()),
                    guard_duty_enabled: Some(false),
                    created_at: ts(Some(d.created_at_ms)),
                    ..wire::ServiceRevision::default()
                })
                .collect(),
        ),
        failures: Some(failures),
    })
}

pub async fn stop_service_deployment(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::StopServiceDeploymentRequest,
) -> Result<wire::StopServiceDeploymentResponse, AwsError> {
    let arn = req.service_deployment_arn.clone().unwrap_or_default();
    let not_found = || {
        AwsError::client(
            "ServiceDeploymentNotFoundException",
            "The service deployment does not exist.",
        )
    };
    let (c, svc, _) = split_child_arn(ctx, &arn, "service-deployment").ok_or_else(not_found)?;
    let rollback = match req.stop_type.as_deref() {
        None | Some("ROLLBACK") => true,
        Some("ABORT") => false,
        Some(other) => return Err(invalid(format!("Invalid stopType '{other}'."))),
    };
    let partition = ctx.partition();
    common::transact(ecs, || async {
        let (mut s, v) = service_of(ecs, ctx, c, svc).await?.ok_or_else(not_found)?;
        let now = ecs.now_ms();
        let Some(i) = s
            .deployments
            .iter()
            .position(|d| d.service_deployment_arn == arn)
        else {
            return Err(not_found());
        };
        if s.deployments[i].status != "PRIMARY" || s.deployments[i].rollout_state != "IN_PROGRESS" {
            return Err(AwsError::client(
                "ConflictException",
                "The service deployment is not in progress and cannot be stopped.",
            ));
        }
        if rollback {
            let target = crate::service_controller::rollback_target(&s).ok_or_else(|| {
                AwsError::client(
                    "ConflictException",
                    "There is no completed service deployment to roll back to.",
                )
            })?;
            crate::service_controller::roll_back(
                ctx,
                &mut s,
                i,
                &target,
                now,
                "Service deployment rolled back by user request.",
            );
        } else {
            let d = &mut s.deployments[i];
            d.service_deployment_status = "STOPPED".into();
            d.status_reason = Some("Service deployment stopped by user request.".into());
            d.rollout_state = "FAILED".into();
            d.rollout_state_reason = "Service deployment stopped by user request.".into();
            d.stopped_at_ms = Some(now);
            d.updated_at_ms = now;
        }
        Ok((vec![put_service(&partition, &s, Expect::Version(v))?], ()))
    })
    .await?;
    Ok(wire::StopServiceDeploymentResponse {
        service_deployment_arn: Some(arn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::common::tests::ctx;

    #[test]
    fn service_names_from_names_and_arns() {
        let c = ctx();
        assert_eq!(service_name(&c, "default", "web"), Some("web"));
        assert_eq!(
            service_name(
                &c,
                "default",
                "arn:aws:ecs:us-east-1:000000000000:service/default/web"
            ),
            Some("web")
        );
        assert_eq!(
            service_name(
                &c,
                "default",
                "arn:aws:ecs:us-east-1:000000000000:service/web"
            ),
            Some("web")
        );
        assert_eq!(
            service_name(
                &c,
                "default",
                "arn:aws:ecs:us-east-1:000000000000:service/other/web"
            ),
            None
        );
        assert_eq!(service_name(&c, "default", "a|b"), None);
        assert_eq!(service_name(&c, "default", ""), None);
    }

    #[test]
    fn deployment_ids_look_like_ecs() {
        let id = new_deployment_id();
        let digits = id.strip_prefix("ecs-svc/").unwrap_or_default();
        assert_eq!(digits.len(), 19, "{id}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn deployment_configuration_defaults_and_limits() {
        let c = deployment_configuration(None, None, false).unwrap_or_default();
        assert_eq!(c.maximum_percent, Some(200));
        assert_eq!(c.minimum_healthy_percent, Some(100));
        let d = deployment_configuration(None, None, true).unwrap_or_default();
        assert_eq!(
            (d.maximum_percent, d.minimum_healthy_percent),
            (Some(100), Some(0))
        );
        let bad = wire::DeploymentConfiguration {
            minimum_healthy_percent: Some(150),
            ..Default::default()
        };
        assert!(deployment_configuration(Some(bad), None, false).is_err());
    }

    #[test]
    fn child_arns_split() {
        let c = ctx();
        assert_eq!(
            split_child_arn(
                &c,
                "arn:aws:ecs:us-east-1:000000000000:service-deployment/default/web/abc",
                "service-deployment"
            ),
            Some(("default", "web", "abc"))
        );
        assert_eq!(split_child_arn(&c, "abc", "service-deployment"), None);
    }
}
