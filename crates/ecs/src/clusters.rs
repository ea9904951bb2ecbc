//! Cluster actions: CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
//! UpdateClusterSettings, DeleteCluster, PutClusterCapacityProviders.

use crate::Ecs;
use crate::common::{
    self, active_cluster, arn, cluster_not_found, failure, invalid, resource_name,
};
use crate::records::{CapacityProviderRecord, ClusterRecord, kinds};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::ecs as wire;
use berth_store::{Expect, Op};

const BUILTIN_PROVIDERS: &[&str] = &["FARGATE", "FARGATE_SPOT"];

/// The wire form of a cluster. `include` says which optional parts ECS adds (DescribeClusters'
/// `include`); Create/Update/Delete answers include settings, configuration and tags.
fn to_wire(c: &ClusterRecord, include: &[String]) -> wire::Cluster {
    let has = |f: &str| include.iter().any(|i| i == f);
    wire::Cluster {
        cluster_arn: Some(c.arn.clone()),
        cluster_name: Some(c.name.clone()),
        status: Some(c.status.clone()),
        // DescribeClusters fills in the instance and task counts; services come later.
        registered_container_instances_count: Some(0),
        running_tasks_count: Some(0),
        pending_tasks_count: Some(0),
        active_services_count: Some(0),
        statistics: if has("STATISTICS") {
            Some(statistics())
        } else {
            Some(vec![])
        },
        tags: if has("TAGS") {
            Some(c.tags.clone())
        } else {
            Some(vec![])
        },
        settings: if has("SETTINGS") {
            Some(c.settings.clone())
        } else {
            None
        },
        configuration: if has("CONFIGURATIONS") {
            c.configuration.clone()
        } else {
            None
        },
        capacity_providers: Some(c.capacity_providers.clone()),
        default_capacity_provider_strategy: Some(c.default_capacity_provider_strategy.clone()),
        attachments: if has("ATTACHMENTS") {
            Some(vec![])
        } else {
            None
        },
        attachments_status: None,
        service_connect_defaults: c.service_connect_defaults.clone(),
    }
}

const FULL: &[&str] = &["SETTINGS", "CONFIGURATIONS", "TAGS"];

fn full() -> Vec<String> {
    FULL.iter().map(|s| s.to_string()).collect()
}

fn statistics() -> Vec<wire::KeyValuePair> {
    [
        "runningEC2TasksCount",
        "runningFargateTasksCount",
        "pendingEC2TasksCount",
        "pendingFargateTasksCount",
        "activeEC2ServiceCount",
        "activeFargateServiceCount",
        "drainingEC2ServiceCount",
        "drainingFargateServiceCount",
    ]
    .iter()
    .map(|n| wire::KeyValuePair {
        name: Some(n.to_string()),
        value: Some("0".into()),
    })
    .collect()
}

fn check_settings(settings: &[wire::ClusterSetting]) -> Result<(), AwsError> {
    for s in settings {
        let value = s.value.as_deref().unwrap_or_default();
        if !matches!(value, "enabled" | "disabled" | "enhanced") {
            return Err(invalid(format!(
                "The value '{value}' for setting containerInsights is not valid. Valid values are enabled, enhanced and disabled."
            )));
        }
    }
    Ok(())
}

/// Settings after applying `update` over `current` (by name).
fn merged_settings(
    mut current: Vec<wire::ClusterSetting>,
    update: Vec<wire::ClusterSetting>,
) -> Vec<wire::ClusterSetting> {
    for s in update {
        match current.iter_mut().find(|c| c.name == s.name) {
            Some(c) => c.value = s.value,
            None => current.push(s),
        }
    }
    current
}

/// Checks a capacity provider list and strategy as ECS does, against the providers that exist.
async fn check_providers(
    ecs: &Ecs,
    ctx: &RequestContext,
    providers: &[String],
    strategy: &[wire::CapacityProviderStrategyItem],
) -> Result<(), AwsError> {
    for p in providers {
        if BUILTIN_PROVIDERS.contains(&p.as_str()) {
            continue;
        }
        let name = resource_name(ctx, p, "capacity-provider").unwrap_or(p);
        if common::get::<CapacityProviderRecord>(ecs, ctx, kinds::CAPACITY_PROVIDER, name)
            .await?
            .is_none()
        {
            return Err(invalid(format!(
                "The specified capacity provider '{p}' does not exist."
            )));
        }
    }
    let mut bases = 0;
    for item in strategy {
        let name = item.capacity_provider.as_deref().unwrap_or_default();
        if !providers.iter().any(|p| p == name) {
            return Err(invalid(format!(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. Capacity provider: {name}"
            )));
        }
        if item.base.unwrap_or(0) > 0 {
            bases += 1;
        }
    }
    if bases > 1 {
        return Err(invalid(
            "You can specify a base for only one capacity provider in a capacity provider strategy.",
        ));
    }
    Ok(())
}

pub async fn create_cluster(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::CreateClusterRequest,
) -> Result<wire::CreateClusterResponse, AwsError> {
    let name = req
        .cluster_name
        .unwrap_or_else(|| common::DEFAULT_CLUSTER.to_string());
    if !berth_model::ecs::valid_name(&name) {
        return Err(invalid(
            "Cluster name must be between 1 and 255 characters and contain only letters (uppercase and lowercase), numbers, hyphens, and underscores.",
        ));
    }
    let tags = req.tags.unwrap_or_default();
    common::check_tags(&tags)?;
    let mut settings = req.settings.unwrap_or_default();
    check_settings(&settings)?;
    if !settings
        .iter()
        .any(|s| s.name.as_deref() == Some("containerInsights"))
    {
        let default = crate::account_settings::effective(ecs, ctx, "containerInsights").await?;
        settings.insert(
            0,
            wire::ClusterSetting {
                name: Some("containerInsights".into()),
                value: Some(default),
            },
        );
    }
    let providers = req.capacity_providers.unwrap_or_default();
    let strategy = req.default_capacity_provider_strategy.unwrap_or_default();
    check_providers(ecs, ctx, &providers, &strategy).await?;
    let record = ClusterRecord {
        arn: arn(ctx, format!("cluster/{name}")),
        name: name.clone(),
        status: "ACTIVE".into(),
        settings,
        configuration: req.configuration,
        service_connect_defaults: req.service_connect_defaults.map(|d| {
            wire::ClusterServiceConnectDefaults {
                namespace: d.namespace,
            }
        }),
        capacity_providers: providers,
        default_capacity_provider_strategy: strategy,
        tags,
        created_at_ms: ecs.now_ms(),
    };
    let partition = ctx.partition();
    // CreateCluster is idempotent on the name: an ACTIVE cluster is returned as it is, an
    // INACTIVE one is brought back.
    let cluster = common::transact(ecs, || async {
        let existing = common::get::<ClusterRecord>(ecs, ctx, kinds::CLUSTER, &name).await?;
        match existing {
            Some((c, _)) if c.status == "ACTIVE" => Ok((vec![], c)),
            other => {
                let expect = other.map_or(Expect::Absent, |(_, v)| Expect::Version(v));
                let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
                Ok((
                    vec![Op::put(
                        kinds::CLUSTER,
                        partition.clone(),
                        name.clone(),
                        value,
                        expect,
                    )],
                    record.clone(),
                ))
            }
        }
    })
    .await?;
    Ok(wire::CreateClusterResponse {
        cluster: Some(to_wire(&cluster, &full())),
    })
}

pub async fn describe_clusters(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeClustersRequest,
) -> Result<wire::DescribeClustersResponse, AwsError> {
    let include = req.include.unwrap_or_default();
    let idents = req
        .clusters
        .unwrap_or_else(|| vec![common::DEFAULT_CLUSTER.to_string()]);
    if idents.len() > 100 {
        return Err(invalid("The number of clusters must be at most 100."));
    }
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for ident in idents {
        let found = match resource_name(ctx, &ident, "cluster") {
            Some(name) => common::get::<ClusterRecord>(ecs, ctx, kinds::CLUSTER, name).await?,
            None => None,
        };
        match found {
            Some((c, _)) => {
                let mut w = to_wire(&c, &include);
                let counts = crate::tasks::counts(ecs, ctx, &c.name).await?;
                w.running_tasks_count = Some(counts.get("running").copied().unwrap_or(0));
                w.pending_tasks_count = Some(counts.get("pending").copied().unwrap_or(0));
                w.registered_container_instances_count =
                    Some(registered_instances(ecs, ctx, &c.name).await?);
                w.active_services_count =
                    Some(crate::services::active_services(ecs, ctx, &c.name).await?);
                clusters.push(w);
            }
            None => {
                let full_arn = if ident.starts_with("arn:") {
                    ident
                } else {
                    arn(ctx, format!("cluster/{ident}"))
                };
                failures.push(failure(full_arn, "MISSING"));
            }
        }
    }
    Ok(wire::DescribeClustersResponse {
        clusters: Some(clusters),
        failures: Some(failures),
    })
}

/// Container instances that are registered (ACTIVE or DRAINING) in `cluster`.
async fn registered_instances(
    ecs: &Ecs,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<i32, AwsError> {
    let all = common::all::<crate::records::ContainerInstanceRecord>(
        ecs,
        ctx,
        kinds::CONTAINER_INSTANCE,
        &format!("{cluster}|"),
    )
    .await?;
    Ok(all.iter().filter(|(_, r)| r.status != "INACTIVE").count() as i32)
}

pub async fn list_clusters(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListClustersRequest,
) -> Result<wire::ListClustersResponse, AwsError> {
    let items: Vec<(String, String)> = common::all::<ClusterRecord>(ecs, ctx, kinds::CLUSTER, "")
        .await?
        .into_iter()
        .filter(|(_, c)| c.status == "ACTIVE")
        .map(|(k, c)| (k, c.arn))
        .collect();
    let (arns, next) = common::page(
        ecs,
        &common::binding(ctx, "ListClusters"),
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
    )?;
    Ok(wire::ListClustersResponse {
        cluster_arns: Some(arns),
        next_token: next,
    })
}

/// Read-modify-write of an ACTIVE cluster, retried on conflicting writes.
async fn modify_cluster(
    ecs: &Ecs,
    ctx: &RequestContext,
    ident: &str,
    f: impl Fn(&mut ClusterRecord) -> Result<(), AwsError>,
) -> Result<ClusterRecord, AwsError> {
    let partition = ctx.partition();
    common::transact(ecs, || async {
        let (mut c, version) = active_cluster(ecs, ctx, Some(ident)).await?;
        f(&mut c)?;
        let value = serde_json::to_value(&c).map_err(AwsError::internal)?;
        Ok((
            vec![Op::put(
                kinds::CLUSTER,
                partition.clone(),
                c.name.clone(),
                value,
                Expect::Version(version),
            )],
            c,
        ))
    })
    .await
}

pub async fn update_cluster(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::UpdateClusterRequest,
) -> Result<wire::UpdateClusterResponse, AwsError> {
    let settings = req.settings.unwrap_or_default();
    check_settings(&settings)?;
    let ident = req.cluster.unwrap_or_default();
    let c = modify_cluster(ecs, ctx, &ident, |c| {
        c.settings = merged_settings(std::mem::take(&mut c.settings), settings.clone());
        if let Some(conf) = &req.configuration {
            c.configuration = Some(conf.clone());
        }
        if let Some(d) = &req.service_connect_defaults {
            c.service_connect_defaults = Some(wire::ClusterServiceConnectDefaults {
                namespace: d.namespace.clone(),
            });
        }
        Ok(())
    })
    .await?;
    Ok(wire::UpdateClusterResponse {
        cluster: Some(to_wire(&c, &full())),
    })
}

pub async fn update_cluster_settings(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::UpdateClusterSettingsRequest,
) -> Result<wire::UpdateClusterSettingsResponse, AwsError> {
    let settings = req.settings.unwrap_or_default();
    check_settings(&settings)?;
    let ident = req.cluster.unwrap_or_default();
    let c = modify_cluster(ecs, ctx, &ident, |c| {
        c.settings = merged_settings(std::mem::take(&mut c.settings), settings.clone());
        Ok(())
    })
    .await?;
    Ok(wire::UpdateClusterSettingsResponse {
        cluster: Some(to_wire(&c, &full())),
    })
}

pub async fn delete_cluster(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeleteClusterRequest,
) -> Result<wire::DeleteClusterResponse, AwsError> {
    let ident = req.cluster.unwrap_or_default();
    let name = resource_name(ctx, &ident, "cluster")
        .ok_or_else(cluster_not_found)?
        .to_string();
    // Deregistered (INACTIVE) instances stay describable for a while; they do not hold the
    // cluster.
    if registered_instances(ecs, ctx, &name).await? > 0 {
        return Err(AwsError::client(
            "ClusterContainsContainerInstancesException",
            "The Cluster cannot be deleted while Container Instances are active or draining.",
        ));
    }
    if crate::services::active_services(ecs, ctx, &name).await? > 0 {
        return Err(AwsError::client(
            "ClusterContainsServicesException",
            "The Cluster cannot be deleted while Services are active.",
        ));
    }
    let c = modify_cluster(ecs, ctx, &ident, |c| {
        c.status = "INACTIVE".into();
        Ok(())
    })
    .await?;
    Ok(wire::DeleteClusterResponse {
        cluster: Some(to_wire(&c, &full())),
    })
}

pub async fn put_cluster_capacity_providers(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::PutClusterCapacityProvidersRequest,
) -> Result<wire::PutClusterCapacityProvidersResponse, AwsError> {
    let providers = req.capacity_providers.unwrap_or_default();
    let strategy = req.default_capacity_provider_strategy.unwrap_or_default();
    check_providers(ecs, ctx, &providers, &strategy).await?;
    let ident = req.cluster.unwrap_or_default();
    let c = modify_cluster(ecs, ctx, &ident, |c| {
        c.capacity_providers = providers.clone();
        c.default_capacity_provider_strategy = strategy.clone();
        Ok(())
    })
    .await?;
    Ok(wire::PutClusterCapacityProvidersResponse {
        cluster: Some(to_wire(&c, &full())),
    })
}
