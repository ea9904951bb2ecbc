//! Capacity providers: CreateCapacityProvider, DescribeCapacityProviders,
//! UpdateCapacityProvider, DeleteCapacityProvider. `FARGATE` and `FARGATE_SPOT` always exist.
//! The node provider that acts on them comes with a later issue; here they are kept and echoed.

use crate::Ecs;
use crate::common::{self, arn, client, invalid, resource_name};
use crate::records::{CapacityProviderRecord, ClusterRecord, kinds};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::ecs as wire;
use berth_store::{Expect, Op};

const BUILTIN: &[&str] = &["FARGATE", "FARGATE_SPOT"];

fn builtin(ctx: &RequestContext, name: &str) -> wire::CapacityProvider {
    wire::CapacityProvider {
        capacity_provider_arn: Some(arn(ctx, format!("capacity-provider/{name}"))),
        name: Some(name.into()),
        status: Some("ACTIVE".into()),
        tags: Some(vec![]),
        r#type: Some(name.into()),
        ..Default::default()
    }
}

/// ECS fills these when a managed-scaling block is omitted or partial.
fn with_defaults(mut asg: wire::AutoScalingGroupProvider) -> wire::AutoScalingGroupProvider {
    let m = asg.managed_scaling.get_or_insert_with(Default::default);
    m.status.get_or_insert_with(|| "DISABLED".into());
    m.target_capacity.get_or_insert(100);
    m.minimum_scaling_step_size.get_or_insert(1);
    m.maximum_scaling_step_size.get_or_insert(10000);
    m.instance_warmup_period.get_or_insert(300);
    asg.managed_termination_protection
        .get_or_insert_with(|| "DISABLED".into());
    asg.managed_draining.get_or_insert_with(|| "ENABLED".into());
    asg
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, AwsError> {
    serde_json::to_value(v).map_err(AwsError::internal)
}

pub async fn create_capacity_provider(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::CreateCapacityProviderRequest,
) -> Result<wire::CreateCapacityProviderResponse, AwsError> {
    let name = req.name.clone().unwrap_or_default();
    if !berth_model::ecs::valid_name(&name) {
        return Err(invalid(
            "Capacity provider name must be between 1 and 255 characters and contain only letters, numbers, hyphens and underscores.",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(invalid(
            "The capacity provider name cannot start with 'aws', 'ecs', or 'fargate'.",
        ));
    }
    let tags = req.tags.clone().unwrap_or_default();
    common::check_tags(&tags)?;
    let provider = match (
        req.auto_scaling_group_provider,
        req.managed_instances_provider,
    ) {
        (Some(asg), None) => {
            if asg
                .auto_scaling_group_arn
                .as_deref()
                .is_none_or(str::is_empty)
            {
                return Err(invalid(
                    "autoScalingGroupProvider.autoScalingGroupArn is required.",
                ));
            }
            // The cluster to associate it with is optional here (required only for managed
            // instances); named, it must exist and is kept, so Describe returns it and its
            // `cluster` filter finds the provider.
            let cluster = match &req.cluster {
                Some(ident) => Some(common::active_cluster(ecs, ctx, Some(ident)).await?.0.name),
                None => None,
            };
            wire::CapacityProvider {
                auto_scaling_group_provider: Some(with_defaults(asg)),
                cluster,
                r#type: Some("EC2_AUTOSCALING".into()),
                ..Default::default()
            }
        }
        (None, Some(managed)) => {
            let cluster_ident = req.cluster.clone().ok_or_else(|| {
                invalid("cluster is required for a managed instances capacity provider.")
            })?;
            let (cluster, _) = common::active_cluster(ecs, ctx, Some(&cluster_ident)).await?;
            let managed: wire::ManagedInstancesProvider =
                serde_json::from_value(to_value(&managed)?).map_err(AwsError::internal)?;
            wire::CapacityProvider {
                managed_instances_provider: Some(managed),
                cluster: Some(cluster.name),
                r#type: Some("MANAGED_INSTANCES".into()),
                ..Default::default()
            }
        }
        _ => {
            return Err(invalid(
                "Specify exactly one of autoScalingGroupProvider or managedInstancesProvider.",
            ));
        }
    };
    let provider = wire::CapacityProvider {
        capacity_provider_arn: Some(arn(ctx, format!("capacity-provider/{name}"))),
        name: Some(name.clone()),
        status: Some("ACTIVE".into()),
        tags: Some(tags),
        ..provider
    };
    let record = CapacityProviderRecord {
        provider: provider.clone(),
    };
    let value = to_value(&record)?;
    let partition = ctx.partition();
    common::transact(ecs, || async {
        if common::get::<CapacityProviderRecord>(ecs, ctx, kinds::CAPACITY_PROVIDER, &name)
            .await?
            .is_some()
        {
            return Err(client(format!(
                "The specified capacity provider {name} already exists."
            )));
        }
        Ok((
            vec![Op::put(
                kinds::CAPACITY_PROVIDER,
                partition.clone(),
                name.clone(),
                value.clone(),
                Expect::Absent,
            )],
            (),
        ))
    })
    .await?;
    Ok(wire::CreateCapacityProviderResponse {
        capacity_provider: Some(provider),
    })
}

pub async fn describe_capacity_providers(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DescribeCapacityProvidersRequest,
) -> Result<wire::DescribeCapacityProvidersResponse, AwsError> {
    let with_tags = req.include.iter().flatten().any(|i| i == "TAGS");
    let shown = |mut p: wire::CapacityProvider| {
        if !with_tags {
            p.tags = None;
        }
        p
    };
    let mut failures = Vec::new();
    // Providers keep their cluster's name; the filter may name it by ARN.
    let cluster = req
        .cluster
        .as_deref()
        .map(|c| resource_name(ctx, c, "cluster").unwrap_or(c));
    let items: Vec<(String, wire::CapacityProvider)> = match req.capacity_providers {
        Some(idents) => {
            let mut out = Vec::new();
            for (i, ident) in idents.iter().enumerate() {
                let name = resource_name(ctx, ident, "capacity-provider").unwrap_or(ident);
                let found = if BUILTIN.contains(&name) {
                    Some(builtin(ctx, name))
                } else {
                    common::get::<CapacityProviderRecord>(ecs, ctx, kinds::CAPACITY_PROVIDER, name)
                        .await?
                        .map(|(r, _)| r.provider)
                };
                match found {
                    Some(p) => out.push((format!("{i:05}"), shown(p))),
                    None => failures.push(common::failure(
                        if ident.starts_with("arn:") {
                            ident.clone()
                        } else {
                            arn(ctx, format!("capacity-provider/{ident}"))
                        },
                        "MISSING",
                    )),
                }
            }
            out
        }
        None => {
            // Built-ins sort before user providers: their keys start with a space.
            let mut out: Vec<(String, wire::CapacityProvider)> = BUILTIN
                .iter()
                .map(|b| (format!(" {b}"), shown(builtin(ctx, b))))
                .collect();
            for (k, r) in
                common::all::<CapacityProviderRecord>(ecs, ctx, kinds::CAPACITY_PROVIDER, "")
                    .await?
            {
                if cluster.is_none() || r.provider.cluster.as_deref() == cluster {
                    out.push((k, shown(r.provider)));
                }
            }
            out
        }
    };
    let (providers, next) = common::page(
        ecs,
        &common::binding(ctx, "DescribeCapacityProviders"),
        items,
        req.max_results,
        req.next_token.as_deref(),
        10,
    )?;
    Ok(wire::DescribeCapacityProvidersResponse {
        capacity_providers: Some(providers),
        failures: Some(failures),
        next_token: next,
    })
}

pub async fn update_capacity_provider(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::UpdateCapacityProviderRequest,
) -> Result<wire::UpdateCapacityProviderResponse, AwsError> {
    let ident = req.name.clone().unwrap_or_default();
    let name = resource_name(ctx, &ident, "capacity-provider")
        .unwrap_or(&ident)
        .to_string();
    if BUILTIN.contains(&name.as_str()) {
        return Err(invalid(format!(
            "The capacity provider {name} cannot be updated."
        )));
    }
    let partition = ctx.partition();
    let provider = common::transact(ecs, || async {
        let (mut r, v) =
            common::get::<CapacityProviderRecord>(ecs, ctx, kinds::CAPACITY_PROVIDER, &name)
                .await?
                .ok_or_else(|| {
                    invalid(format!(
                        "The specified capacity provider {name} does not exist."
                    ))
                })?;
        if let Some(update) = &req.auto_scaling_group_provider {
            let asg = r
                .provider
                .auto_scaling_group_provider
                .as_mut()
                .ok_or_else(|| invalid("This capacity provider has no Auto Scaling group."))?;
            if let Some(m) = &update.managed_scaling {
                asg.managed_scaling = Some(m.clone());
            }
            if let Some(t) = &update.managed_termination_protection {
                asg.managed_termination_protection = Some(t.clone());
            }
            if let Some(d) = &update.managed_draining {
                asg.managed_draining = Some(d.clone());
            }
            let filled = with_defaults(asg.clone());
            *asg = filled;
        }
        if let Some(update) = &req.managed_instances_provider {
            let merged: wire::ManagedInstancesProvider =
                serde_json::from_value(to_value(update)?).map_err(AwsError::internal)?;
            r.provider.managed_instances_provider = Some(merged);
        }
        r.provider.update_status = Some("UPDATE_COMPLETE".into());
        Ok((
            vec![Op::put(
                kinds::CAPACITY_PROVIDER,
                partition.clone(),
                name.clone(),
                to_value(&r)?,
                Expect::Version(v),
            )],
            r.provider,
        ))
    })
    .await?;
    Ok(wire::UpdateCapacityProviderResponse {
        capacity_provider: Some(provider),
    })
}

pub async fn delete_capacity_provider(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeleteCapacityProviderRequest,
) -> Result<wire::DeleteCapacityProviderResponse, AwsError> {
    let ident = req.capacity_provider.clone().unwrap_or_default();
    let name = resource_name(ctx, &ident, "capacity-provider")
        .unwrap_or(&ident)
        .to_string();
    if BUILTIN.contains(&name.as_str()) {
        return Err(invalid(format!(
            "The capacity provider {name} cannot be deleted."
        )));
    }
    for (_, c) in common::all::<ClusterRecord>(ecs, ctx, kinds::CLUSTER, "").await? {
        if c.status == "ACTIVE"
            && c.capacity_providers
                .iter()
                .any(|p| resource_name(ctx, p, "capacity-provider") == Some(name.as_str()))
        {
            return Err(AwsError::client(
                "ResourceInUseException",
                format!(
                    "The capacity provider cannot be deleted because it is associated with cluster: {}. Remove the capacity provider from the cluster and try again.",
                    c.name
                ),
            ));
        }
    }
    let partition = ctx.partition();
    let mut provider = common::transact(ecs, || async {
        let (r, v) =
            common::get::<CapacityProviderRecord>(ecs, ctx, kinds::CAPACITY_PROVIDER, &name)
                .await?
                .ok_or_else(|| {
                    invalid(format!(
                        "The specified capacity provider {name} does not exist."
                    ))
                })?;
        Ok((
            vec![Op::delete(
                kinds::CAPACITY_PROVIDER,
                partition.clone(),
                name.clone(),
                Expect::Version(v),
            )],
            r.provider,
        ))
    })
    .await?;
    provider.status = Some("INACTIVE".into());
    provider.update_status = Some("DELETE_COMPLETE".into());
    Ok(wire::DeleteCapacityProviderResponse {
        capacity_provider: Some(provider),
    })
}
