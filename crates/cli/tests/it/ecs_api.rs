//! ECS API behaviour as the AWS SDK for Rust sees it: clusters, capacity providers, tags,
//! account settings, task definition listing and pagination, failures, region isolation.

use crate::harness::{Berth, Opts};
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types as t;

/// The error code of a call that must fail.
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    result: Result<T, SdkError<E, R>>,
) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("an error without a code: {e:?}"))
            .to_string(),
    }
}

fn tag(k: &str, v: &str) -> t::Tag {
    t::Tag::builder().key(k).value(v).build()
}

fn insights(value: &str) -> t::ClusterSetting {
    t::ClusterSetting::builder()
        .name(t::ClusterSettingName::ContainerInsights)
        .value(value)
        .build()
}

fn setting_value(c: &t::Cluster) -> Option<&str> {
    c.settings()
        .iter()
        .find(|s| s.name() == Some(&t::ClusterSettingName::ContainerInsights))
        .and_then(|s| s.value())
}

/// A small valid EC2 task definition of `family`; `n` goes into its environment.
async fn register(client: &Client, family: &str, n: usize) -> t::TaskDefinition {
    client
        .register_task_definition()
        .family(family)
        .container_definitions(
            t::ContainerDefinition::builder()
                .name("main")
                .image("busybox:1.36")
                .memory(64)
                .environment(
                    t::KeyValuePair::builder()
                        .name("N")
                        .value(n.to_string())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("register")
        .task_definition
        .expect("a task definition")
}

/// The clusters a test made: `berth up` also has its own `default`, left out here.
async fn cluster_arns(client: &Client) -> Vec<String> {
    client
        .list_clusters()
        .send()
        .await
        .expect("list clusters")
        .cluster_arns()
        .iter()
        .filter(|a| !a.ends_with(":cluster/default"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn clusters_create_describe_update_delete() {
    let berth = Berth::start(Opts::default());
    let ecs = berth.sdk();
    let account = &berth.keys.account_id;

    let created = ecs
        .create_cluster()
        .cluster_name("prod")
        .settings(insights("enhanced"))
        .tags(tag("env", "prod"))
        .send()
        .await
        .expect("create");
    let c = created.cluster().expect("a cluster");
    let arn = format!("arn:aws:ecs:us-east-1:{account}:cluster/prod");
    assert_eq!(c.cluster_arn(), Some(arn.as_str()));
    assert_eq!(c.status(), Some("ACTIVE"));
    assert_eq!(setting_value(c), Some("enhanced"));

    // Creating it again returns the same cluster, unchanged, and lists it once.
    let again = ecs
        .create_cluster()
        .cluster_name("prod")
        .settings(insights("disabled"))
        .send()
        .await
        .expect("create again");
    assert_eq!(
        again.cluster().and_then(|c| c.cluster_arn()),
        Some(arn.as_str())
    );
    assert_eq!(again.cluster().and_then(setting_value), Some("enhanced"));
    assert_eq!(cluster_arns(&ecs).await, vec![arn.clone()]);

    // include decides what DescribeClusters adds.
    let bare = ecs
        .describe_clusters()
        .clusters("prod")
        .send()
        .await
        .expect("describe");
    let c = &bare.clusters()[0];
    assert!(c.tags().is_empty(), "tags only with include TAGS: {c:?}");
    assert!(
        c.settings().is_empty(),
        "settings only with include SETTINGS: {c:?}"
    );
    let full = ecs
        .describe_clusters()
        .clusters(&arn)
        .include(t::ClusterField::Tags)
        .include(t::ClusterField::Settings)
        .include(t::ClusterField::Statistics)
        .send()
        .await
        .expect("describe with include");
    let c = &full.clusters()[0];
    assert_eq!(c.tags(), &[tag("env", "prod")]);
    assert_eq!(setting_value(c), Some("enhanced"));
    assert!(!c.statistics().is_empty());

    // Unknown names come back as failures, known ones still describe.
    let mixed = ecs
        .describe_clusters()
        .clusters("prod")
        .clusters("nope")
        .clusters(format!("arn:aws:ecs:us-east-1:{account}:cluster/gone"))
        .send()
        .await
        .expect("describe mixed");
    assert_eq!(mixed.clusters().len(), 1);
    let failures: Vec<(Option<&str>, Option<&str>)> = mixed
        .failures()
        .iter()
        .map(|f| (f.arn(), f.reason()))
        .collect();
    let nope = format!("arn:aws:ecs:us-east-1:{account}:cluster/nope");
    let gone = format!("arn:aws:ecs:us-east-1:{account}:cluster/gone");
    assert_eq!(
        failures,
        vec![
            (Some(nope.as_str()), Some("MISSING")),
            (Some(gone.as_str()), Some("MISSING"))
        ]
    );

    let updated = ecs
        .update_cluster_settings()
        .cluster("prod")
        .settings(insights("disabled"))
        .send()
        .await
        .expect("update settings");
    assert_eq!(updated.cluster().and_then(setting_value), Some("disabled"));
    let updated = ecs
        .update_cluster()
        .cluster("prod")
        .settings(insights("enabled"))
        .configuration(
            t::ClusterConfiguration::builder()
                .execute_command_configuration(
                    t::ExecuteCommandConfiguration::builder()
                        .logging(t::ExecuteCommandLogging::Default)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("update");
    assert_eq!(updated.cluster().and_then(setting_value), Some("enabled"));
    let described = ecs
        .describe_clusters()
        .clusters("prod")
        .include(t::ClusterField::Settings)
        .include(t::ClusterField::Configurations)
        .send()
        .await
        .expect("describe");
    let c = &described.clusters()[0];
    assert_eq!(setting_value(c), Some("enabled"));
    assert_eq!(
        c.configuration()
            .and_then(|c| c.execute_command_configuration())
            .and_then(|e| e.logging()),
        Some(&t::ExecuteCommandLogging::Default)
    );
    assert_eq!(
        code(
            ecs.update_cluster_settings()
                .cluster("nope")
                .settings(insights("enabled"))
                .send()
                .await
        ),
        "ClusterNotFoundException"
    );

    let deleted = ecs
        .delete_cluster()
        .cluster("prod")
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.cluster().and_then(|c| c.status()), Some("INACTIVE"));
    assert!(cluster_arns(&ecs).await.is_empty());
    let after = ecs
        .describe_clusters()
        .clusters("prod")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        after.clusters().first().and_then(|c| c.status()),
        Some("INACTIVE")
    );
    assert_eq!(
        code(ecs.delete_cluster().cluster("prod").send().await),
        "ClusterNotFoundException"
    );

    // Creating it once more brings it back.
    ecs.create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("re-create");
    assert_eq!(cluster_arns(&ecs).await, vec![arn]);
}

#[tokio::test(flavor = "multi_thread")]
async fn capacity_providers_lifecycle_and_cluster_association() {
    let berth = Berth::start(Opts::default());
    let ecs = berth.sdk();
    let account = &berth.keys.account_id;

    let all = ecs
        .describe_capacity_providers()
        .send()
        .await
        .expect("describe");
    let names: Vec<&str> = all
        .capacity_providers()
        .iter()
        .filter_map(|p| p.name())
        .collect();
    assert!(
        names.contains(&"FARGATE") && names.contains(&"FARGATE_SPOT"),
        "{names:?}"
    );

    let asg = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1e2f:autoScalingGroupName/workers";
    let created = ecs
        .create_capacity_provider()
        .name("workers")
        .auto_scaling_group_provider(
            t::AutoScalingGroupProvider::builder()
                .auto_scaling_group_arn(asg)
                .managed_scaling(
                    t::ManagedScaling::builder()
                        .status(t::ManagedScalingStatus::Enabled)
                        .target_capacity(90)
                        .build(),
                )
                .build()
                .expect("asg provider"),
        )
        .tags(tag("team", "infra"))
        .send()
        .await
        .expect("create provider");
    let p = created.capacity_provider().expect("a provider");
    let arn = format!("arn:aws:ecs:us-east-1:{account}:capacity-provider/workers");
    assert_eq!(p.capacity_provider_arn(), Some(arn.as_str()));
    assert_eq!(p.status(), Some(&t::CapacityProviderStatus::Active));
    assert_eq!(
        code(
            ecs.create_capacity_provider()
                .name("workers")
                .auto_scaling_group_provider(
                    t::AutoScalingGroupProvider::builder()
                        .auto_scaling_group_arn(asg)
                        .build()
                        .expect("asg provider"),
                )
                .send()
                .await
        ),
        "ClientException"
    );
    assert_eq!(
        code(
            ecs.create_capacity_provider()
                .name("fargate-mine")
                .auto_scaling_group_provider(
                    t::AutoScalingGroupProvider::builder()
                        .auto_scaling_group_arn(asg)
                        .build()
                        .expect("asg provider"),
                )
                .send()
                .await
        ),
        "InvalidParameterException"
    );

    let described = ecs
        .describe_capacity_providers()
        .capacity_providers("workers")
        .capacity_providers("FARGATE")
        .capacity_providers("missing")
        .include(t::CapacityProviderField::Tags)
        .send()
        .await
        .expect("describe some");
    let got: Vec<&str> = described
        .capacity_providers()
        .iter()
        .filter_map(|p| p.name())
        .collect();
    assert_eq!(got, vec!["workers", "FARGATE"]);
    assert_eq!(
        described.capacity_providers()[0].tags(),
        &[tag("team", "infra")]
    );
    assert_eq!(described.failures().len(), 1);
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));

    let updated = ecs
        .update_capacity_provider()
        .name("workers")
        .auto_scaling_group_provider(
            t::AutoScalingGroupProviderUpdate::builder()
                .managed_scaling(
                    t::ManagedScaling::builder()
                        .status(t::ManagedScalingStatus::Enabled)
                        .target_capacity(50)
                        .build(),
                )
                .managed_termination_protection(t::ManagedTerminationProtection::Disabled)
                .build(),
        )
        .send()
        .await
        .expect("update provider");
    let scaling = updated
        .capacity_provider()
        .and_then(|p| p.auto_scaling_group_provider())
        .and_then(|a| a.managed_scaling())
        .expect("managed scaling");
    assert_eq!(scaling.target_capacity(), Some(50));

    ecs.create_cluster()
        .cluster_name("c1")
        .send()
        .await
        .expect("cluster");
    let put = ecs
        .put_cluster_capacity_providers()
        .cluster("c1")
        .capacity_providers("FARGATE")
        .capacity_providers("workers")
        .default_capacity_provider_strategy(
            t::CapacityProviderStrategyItem::builder()
                .capacity_provider("workers")
                .weight(3)
                .base(1)
                .build()
                .expect("strategy item"),
        )
        .send()
        .await
        .expect("put cluster capacity providers");
    let c = put.cluster().expect("a cluster");
    assert_eq!(
        c.capacity_providers(),
        &["FARGATE".to_string(), "workers".to_string()]
    );
    assert_eq!(c.default_capacity_provider_strategy()[0].weight(), 3);
    // A strategy naming a provider the cluster does not have is refused.
    assert_eq!(
        code(
            ecs.put_cluster_capacity_providers()
                .cluster("c1")
                .capacity_providers("FARGATE")
                .default_capacity_provider_strategy(
                    t::CapacityProviderStrategyItem::builder()
                        .capacity_provider("workers")
                        .build()
                        .expect("strategy item"),
                )
                .send()
                .await
        ),
        "InvalidParameterException"
    );

    // In use by a cluster: cannot be deleted. Detached: deleted, then missing.
    assert_eq!(
        code(
            ecs.delete_capacity_provider()
                .capacity_provider("workers")
                .send()
                .await
        ),
        "ResourceInUseException"
    );
    ecs.put_cluster_capacity_providers()
        .cluster("c1")
        .set_capacity_providers(Some(vec![]))
        .set_default_capacity_provider_strategy(Some(vec![]))
        .send()
        .await
        .expect("detach");
    let deleted = ecs
        .delete_capacity_provider()
        .capacity_provider(&arn)
        .send()
        .await
        .expect("delete provider");
    assert_eq!(
        deleted.capacity_provider().and_then(|p| p.status()),
        Some(&t::CapacityProviderStatus::Inactive)
    );
    let after = ecs
        .describe_capacity_providers()
        .capacity_providers("workers")
        .send()
        .await
        .expect("describe");
    assert!(after.capacity_providers().is_empty());
    assert_eq!(after.failures().len(), 1);
    assert_eq!(
        code(
            ecs.delete_capacity_provider()
                .capacity_provider("FARGATE")
                .send()
                .await
        ),
        "InvalidParameterException"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_on_clusters_task_definitions_and_capacity_providers() {
    let berth = Berth::start(Opts::default());
    let ecs = berth.sdk();
    let cluster = ecs
        .create_cluster()
        .cluster_name("tagged")
        .tags(tag("a", "1"))
        .send()
        .await
        .expect("cluster")
        .cluster
        .and_then(|c| c.cluster_arn)
        .expect("cluster arn");
    let td = register(&ecs, "tagged", 0)
        .await
        .task_definition_arn
        .expect("task definition arn");
    let cp = ecs
        .create_capacity_provider()
        .name("tagged")
        .auto_scaling_group_provider(
            t::AutoScalingGroupProvider::builder()
                .auto_scaling_group_arn("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/tagged")
                .build()
                .expect("asg provider"),
        )
        .send()
        .await
        .expect("provider")
        .capacity_provider
        .and_then(|p| p.capacity_provider_arn)
        .expect("provider arn");

    for arn in [&cluster, &td, &cp] {
        ecs.tag_resource()
            .resource_arn(arn)
            .tags(tag("a", "2"))
            .tags(tag("b", "3"))
            .tags(tag("c", "4"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("tag {arn}: {e:?}"));
        ecs.untag_resource()
            .resource_arn(arn)
            .tag_keys("c")
            .tag_keys("not-there")
            .send()
            .await
            .unwrap_or_else(|e| panic!("untag {arn}: {e:?}"));
        let mut tags = ecs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list tags {arn}: {e:?}"))
            .tags
            .unwrap_or_default();
        tags.sort_by(|x, y| x.key().cmp(&y.key()));
        assert_eq!(tags, vec![tag("a", "2"), tag("b", "3")], "{arn}");
    }
    let described = ecs
        .describe_task_definition()
        .task_definition(&td)
        .include(t::TaskDefinitionField::Tags)
        .send()
        .await
        .expect("describe");
    assert_eq!(described.tags().len(), 2);

    assert_eq!(
        code(
            ecs.tag_resource()
                .resource_arn(&cluster)
                .tags(tag("aws:reserved", "x"))
                .send()
                .await
        ),
        "InvalidParameterException"
    );
    let missing = cluster.replace(":cluster/tagged", ":cluster/absent");
    assert_eq!(
        code(
            ecs.list_tags_for_resource()
                .resource_arn(&missing)
                .send()
                .await
        ),
        "ClusterNotFoundException"
    );
    // ListTagsForResource declares no ResourceNotFoundException (a ClientException instead);
    // TagResource does.
    let missing_td = td.replace(":1", ":9");
    assert_eq!(
        code(
            ecs.list_tags_for_resource()
                .resource_arn(&missing_td)
                .send()
                .await
        ),
        "ClientException"
    );
    assert_eq!(
        code(
            ecs.tag_resource()
                .resource_arn(&missing_td)
                .tags(tag("a", "1"))
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_settings_put_list_effective_default_delete() {
    let berth = Berth::start(Opts::default());
    let ecs = berth.sdk();
    let root = format!("arn:aws:iam::{}:root", berth.keys.account_id);
    let name = t::SettingName::ContainerInsights;

    let effective = |ecs: Client| async move {
        let out = ecs
            .list_account_settings()
            .name(t::SettingName::ContainerInsights)
            .effective_settings(true)
            .send()
            .await
            .expect("list effective");
        out.settings()
            .first()
            .and_then(|s| s.value())
            .map(str::to_string)
    };
    // AWS's shipped default, and nothing set explicitly.
    assert_eq!(effective(ecs.clone()).await.as_deref(), Some("disabled"));
    let explicit = ecs.list_account_settings().send().await.expect("list");
    assert!(explicit.settings().is_empty(), "{explicit:?}");

    // The account default applies to every principal, and to clusters created afterwards.
    ecs.put_account_setting_default()
        .name(name.clone())
        .value("enabled")
        .send()
        .await
        .expect("put default");
    assert_eq!(effective(ecs.clone()).await.as_deref(), Some("enabled"));
    let c = ecs
        .create_cluster()
        .cluster_name("insightful")
        .send()
        .await
        .expect("cluster");
    assert_eq!(c.cluster().and_then(setting_value), Some("enabled"));

    // The principal's own setting wins over the default.
    let put = ecs
        .put_account_setting()
        .name(name.clone())
        .value("enhanced")
        .send()
        .await
        .expect("put");
    assert_eq!(
        put.setting().and_then(|s| s.principal_arn()),
        Some(root.as_str())
    );
    assert_eq!(effective(ecs.clone()).await.as_deref(), Some("enhanced"));
    let listed = ecs
        .list_account_settings()
        .name(name.clone())
        .send()
        .await
        .expect("list");
    assert_eq!(listed.settings().len(), 1);
    assert_eq!(listed.settings()[0].value(), Some("enhanced"));

    let deleted = ecs
        .delete_account_setting()
        .name(name.clone())
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.setting().and_then(|s| s.value()), Some("enhanced"));
    assert_eq!(effective(ecs.clone()).await.as_deref(), Some("enabled"));
    assert_eq!(
        code(ecs.delete_account_setting().name(name.clone()).send().await),
        "InvalidParameterException"
    );
    assert_eq!(
        code(
            ecs.put_account_setting()
                .name(name)
                .value("sometimes")
                .send()
                .await
        ),
        "InvalidParameterException"
    );
}

/// Every page of ListTaskDefinitions, following nextToken.
async fn all_pages(
    ecs: &Client,
    family: &str,
    status: t::TaskDefinitionStatus,
    sort: t::SortOrder,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(status.clone())
            .sort(sort.clone())
            .max_results(2)
            .set_next_token(token.take())
            .send()
            .await
            .expect("list page");
        assert!(page.task_definition_arns().len() <= 2);
        out.extend(page.task_definition_arns().iter().cloned());
        pages += 1;
        assert!(pages <= 20, "pagination does not end");
        match page.next_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn task_definitions_list_paginate_deregister_delete() {
    let berth = Berth::start(Opts::default());
    let ecs = berth.sdk();
    let account = &berth.keys.account_id;
    let arn = |family: &str, rev: i32| {
        format!("arn:aws:ecs:us-east-1:{account}:task-definition/{family}:{rev}")
    };
    for n in 1..=7 {
        let td = register(&ecs, "paged", n).await;
        assert_eq!(td.revision(), n as i32);
    }
    // Other families, one of them sharing the prefix, stay out of a familyPrefix listing.
    register(&ecs, "paged-too", 1).await;
    register(&ecs, "other", 1).await;
    register(&ecs, "other", 2).await;

    let asc: Vec<String> = (1..=7).map(|r| arn("paged", r)).collect();
    let desc: Vec<String> = asc.iter().rev().cloned().collect();
    use t::{SortOrder, TaskDefinitionStatus as S};
    assert_eq!(
        all_pages(&ecs, "paged", S::Active, SortOrder::Asc).await,
        asc
    );
    assert_eq!(
        all_pages(&ecs, "paged", S::Active, SortOrder::Desc).await,
        desc
    );

    let everything = ecs.list_task_definitions().send().await.expect("list all");
    assert_eq!(everything.task_definition_arns().len(), 10);

    // Deregistered revisions move from the ACTIVE to the INACTIVE listing.
    let dereg = ecs
        .deregister_task_definition()
        .task_definition("paged:3")
        .send()
        .await
        .expect("deregister");
    assert_eq!(
        dereg.task_definition().and_then(|t| t.status()),
        Some(&S::Inactive)
    );
    let active = all_pages(&ecs, "paged", S::Active, SortOrder::Desc).await;
    assert_eq!(active.len(), 6);
    assert!(!active.contains(&arn("paged", 3)));
    assert_eq!(
        all_pages(&ecs, "paged", S::Inactive, SortOrder::Asc).await,
        vec![arn("paged", 3)]
    );
    // A deregistered revision still describes; the family alone names the latest ACTIVE one.
    let d = ecs
        .describe_task_definition()
        .task_definition("paged:3")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        d.task_definition().and_then(|t| t.status()),
        Some(&S::Inactive)
    );
    let d = ecs
        .describe_task_definition()
        .task_definition("paged")
        .send()
        .await
        .expect("describe");
    assert_eq!(d.task_definition().map(|t| t.revision()), Some(7));

    // Families: a family with no ACTIVE revision is INACTIVE.
    for rev in [1, 2] {
        ecs.deregister_task_definition()
            .task_definition(arn("other", rev))
            .send()
            .await
            .expect("deregister other");
    }
    let families = |status: Option<t::TaskDefinitionFamilyStatus>| {
        let ecs = ecs.clone();
        async move {
            ecs.list_task_definition_families()
                .set_status(status)
                .send()
                .await
                .expect("families")
                .families()
                .to_vec()
        }
    };
    use t::TaskDefinitionFamilyStatus as F;
    assert_eq!(families(None).await, vec!["paged", "paged-too"]);
    assert_eq!(families(Some(F::Active)).await, vec!["paged", "paged-too"]);
    assert_eq!(families(Some(F::Inactive)).await, vec!["other"]);
    assert_eq!(
        families(Some(F::All)).await,
        vec!["other", "paged", "paged-too"]
    );
    let prefixed = ecs
        .list_task_definition_families()
        .family_prefix("pag")
        .send()
        .await
        .expect("families by prefix");
    assert_eq!(
        prefixed.families(),
        &["paged".to_string(), "paged-too".to_string()]
    );

    // DeleteTaskDefinitions: an INACTIVE revision is deleted, an ACTIVE one is a failure.
    let deleted = ecs
        .delete_task_definitions()
        .task_definitions("paged:3")
        .task_definitions("paged:4")
        .task_definitions("paged:99")
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.task_definitions().len(), 1);
    assert_eq!(
        deleted.task_definitions()[0].status(),
        Some(&S::DeleteInProgress)
    );
    let failures: Vec<Option<&str>> = deleted.failures().iter().map(|f| f.arn()).collect();
    assert_eq!(
        failures,
        vec![
            Some(arn("paged", 4).as_str()),
            Some(arn("paged", 99).as_str())
        ]
    );
    assert!(
        deleted.failures()[0]
            .reason()
            .unwrap_or_default()
            .contains("ACTIVE"),
        "{:?}",
        deleted.failures()
    );
    assert_eq!(
        all_pages(&ecs, "paged", S::DeleteInProgress, SortOrder::Asc).await,
        vec![arn("paged", 3)]
    );
    assert!(
        all_pages(&ecs, "paged", S::Inactive, SortOrder::Asc)
            .await
            .is_empty()
    );
    // Revisions are never reused.
    assert_eq!(register(&ecs, "paged", 8).await.revision(), 8);

    assert_eq!(
        code(
            ecs.deregister_task_definition()
                .task_definition("paged")
                .send()
                .await
        ),
        "InvalidParameterException"
    );
    assert_eq!(
        code(
            ecs.describe_task_definition()
                .task_definition("never")
                .send()
                .await
        ),
        "ClientException"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn regions_are_isolated() {
    let berth = Berth::start(Opts::default());
    let east = berth.sdk();
    let west = berth.sdk_with("eu-west-1", &berth.keys);
    east.create_cluster()
        .cluster_name("east-only")
        .send()
        .await
        .expect("create");
    register(&east, "east-family", 1).await;

    assert!(cluster_arns(&west).await.is_empty());
    let d = west
        .describe_clusters()
        .clusters("east-only")
        .send()
        .await
        .expect("describe");
    assert!(d.clusters().is_empty());
    assert_eq!(
        d.failures()[0].arn(),
        Some(
            format!(
                "arn:aws:ecs:eu-west-1:{}:cluster/east-only",
                berth.keys.account_id
            )
            .as_str()
        )
    );
    let listed = west.list_task_definitions().send().await.expect("list");
    assert!(listed.task_definition_arns().is_empty());
    // The east ARN named in the west region is not found either.
    let east_arn = format!(
        "arn:aws:ecs:us-east-1:{}:cluster/east-only",
        berth.keys.account_id
    );
    let d = west
        .describe_clusters()
        .clusters(&east_arn)
        .send()
        .await
        .expect("describe");
    assert!(d.clusters().is_empty());

    assert_eq!(
        code(
            west.list_tags_for_resource()
                .resource_arn(&east_arn)
                .send()
                .await
        ),
        "ClusterNotFoundException"
    );

    // The same name in the west region is another cluster.
    let w = west
        .create_cluster()
        .cluster_name("east-only")
        .send()
        .await
        .expect("create");
    assert!(
        w.cluster()
            .and_then(|c| c.cluster_arn())
            .is_some_and(|a| a.starts_with("arn:aws:ecs:eu-west-1:")),
        "{w:?}"
    );
    assert_eq!(register(&west, "east-family", 1).await.revision(), 1);
    assert_eq!(cluster_arns(&east).await, vec![east_arn]);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_misused_next_tokens_are_refused() {
    let berth = Berth::start(Opts::default());
    let ecs = berth.sdk();
    for name in ["a", "b", "c"] {
        ecs.create_cluster()
            .cluster_name(name)
            .send()
            .await
            .expect("create");
        register(&ecs, name, 1).await;
    }
    let first = ecs
        .list_clusters()
        .max_results(1)
        .send()
        .await
        .expect("page 1");
    let token = first.next_token().expect("a next token").to_string();
    let second = ecs
        .list_clusters()
        .max_results(1)
        .next_token(&token)
        .send()
        .await
        .expect("page 2");
    assert_ne!(first.cluster_arns(), second.cluster_arns());

    assert_eq!(
        code(ecs.list_clusters().next_token("forged-token").send().await),
        "InvalidParameterException"
    );
    // A real token with its first character (part of the MAC) changed.
    let mut tampered = token.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii token");
    assert_eq!(
        code(ecs.list_clusters().next_token(tampered).send().await),
        "InvalidParameterException"
    );
    // A token of one list is no good for another, nor in another region.
    assert_eq!(
        code(ecs.list_task_definitions().next_token(&token).send().await),
        "InvalidParameterException"
    );
    let west = berth.sdk_with("eu-west-1", &berth.keys);
    assert_eq!(
        code(west.list_clusters().next_token(&token).send().await),
        "InvalidParameterException"
    );
    assert_eq!(
        code(ecs.list_clusters().max_results(0).send().await),
        "InvalidParameterException"
    );
}
