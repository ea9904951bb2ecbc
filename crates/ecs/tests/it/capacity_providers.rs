//! CreateCapacityProvider's `cluster`: kept and returned, for a managed instances provider
//! (which requires it) and for an Auto Scaling group provider (for which it is optional); a
//! cluster that does not exist is refused; DescribeCapacityProviders' `cluster` filter finds
//! providers by it, the cluster named or by ARN.

use super::World;
use serde_json::{Value, json};

const ASG: &str =
    "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:1:autoScalingGroupName/web";

fn names(described: &Value) -> Vec<String> {
    described["capacityProviders"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn a_managed_instances_provider_keeps_its_cluster() {
    let w = World::new().await;
    let created = w
        .ok(
            "CreateCapacityProvider",
            json!({"name": "mi", "cluster": "default", "managedInstancesProvider": {
                "infrastructureRoleArn": "arn:aws:iam::000000000000:role/infra"}}),
        )
        .await;
    assert_eq!(created["capacityProvider"]["cluster"], "default");
    let described = w
        .ok(
            "DescribeCapacityProviders",
            json!({"capacityProviders": ["mi"]}),
        )
        .await;
    assert_eq!(described["capacityProviders"][0]["cluster"], "default");
    assert_eq!(
        described["capacityProviders"][0]["type"],
        "MANAGED_INSTANCES"
    );
}

#[tokio::test]
async fn an_auto_scaling_group_provider_keeps_a_cluster_it_is_given() {
    let w = World::new().await;
    w.ok("CreateCluster", json!({"clusterName": "other"})).await;
    let arn = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
    let created = w
        .ok(
            "CreateCapacityProvider",
            json!({"name": "asg", "cluster": arn,
                   "autoScalingGroupProvider": {"autoScalingGroupArn": ASG}}),
        )
        .await;
    assert_eq!(created["capacityProvider"]["cluster"], "default");
    let described = w
        .ok(
            "DescribeCapacityProviders",
            json!({"capacityProviders": ["asg"]}),
        )
        .await;
    assert_eq!(described["capacityProviders"][0]["cluster"], "default");
    // Without a cluster a provider has none.
    let created = w
        .ok(
            "CreateCapacityProvider",
            json!({"name": "free", "autoScalingGroupProvider": {"autoScalingGroupArn": ASG}}),
        )
        .await;
    assert!(created["capacityProvider"].get("cluster").is_none());
    // The filter finds it under its cluster, named or by ARN, and not under another.
    for filter in ["default", arn] {
        let listed = w
            .ok("DescribeCapacityProviders", json!({"cluster": filter}))
            .await;
        let names = names(&listed);
        assert!(names.contains(&"asg".to_string()), "{filter}: {names:?}");
        assert!(!names.contains(&"free".to_string()), "{filter}: {names:?}");
    }
    let other = w
        .ok("DescribeCapacityProviders", json!({"cluster": "other"}))
        .await;
    assert!(!names(&other).contains(&"asg".to_string()));
}

#[tokio::test]
async fn a_cluster_that_does_not_exist_is_refused_and_nothing_written() {
    let w = World::new().await;
    let code = w
        .err(
            "CreateCapacityProvider",
            json!({"name": "asg", "cluster": "nowhere",
                   "autoScalingGroupProvider": {"autoScalingGroupArn": ASG}}),
        )
        .await;
    assert_eq!(code, "ClusterNotFoundException");
    let described = w
        .ok(
            "DescribeCapacityProviders",
            json!({"capacityProviders": ["asg"]}),
        )
        .await;
    assert_eq!(described["capacityProviders"], json!([]));
    assert_eq!(described["failures"][0]["reason"], "MISSING");
}
