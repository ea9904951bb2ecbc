//! Wires the load balancer's data plane (`berth-lb`) into the server: its options from the
//! configuration, and where `instance` targets live — for now, loopback for any EC2-style
//! instance id of an ECS container instance in the target's partition (`berth up` runs tasks on
//! this machine). Agents on other hosts will report their address here.

use crate::Config;
use berth_store::{AnyStore, Store};
use parking_lot::RwLock;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Container instances' EC2-style ids per partition, refreshed in the background because the
/// data plane resolves addresses synchronously while it builds its routing table.
#[derive(Default)]
struct EcsInstances {
    known: RwLock<HashSet<(String, String)>>,
}

impl berth_lb::InstanceAddresses for EcsInstances {
    fn address(&self, partition: &str, instance_id: &str) -> Option<IpAddr> {
        self.known
            .read()
            .contains(&(partition.to_string(), instance_id.to_string()))
            .then_some(IpAddr::from([127, 0, 0, 1]))
    }
}

impl EcsInstances {
    async fn refresh(&self, store: &AnyStore, partition: &str) {
        match store
            .list_as::<berth_ecs::ContainerInstanceRecord>(
                berth_ecs::kinds::CONTAINER_INSTANCE,
                partition,
                "",
                None,
                usize::MAX,
            )
            .await
        {
            Ok(records) => {
                let ids = records
                    .into_iter()
                    .filter(|r| r.value.status != "INACTIVE")
                    .map(|r| (partition.to_string(), r.value.ec2_instance_id))
                    .collect();
                *self.known.write() = ids;
            }
            Err(e) => tracing::warn!("load balancer: cannot read container instances: {e}"),
        }
    }
}

/// Runs the data plane until the returned task is aborted (which closes its sockets).
pub fn spawn(
    store: AnyStore,
    config: &Config,
) -> (berth_lb::DataPlane, tokio::task::JoinHandle<()>) {
    let partition = format!("{}/{}", config.account_id, config.region);
    let instances = Arc::new(EcsInstances::default());
    let options = berth_lb::Options {
        bind: config.lb_bind,
        idle_timeout: Duration::from_secs(config.lb_idle_timeout_secs),
        partitions: vec![partition.clone()],
        ..berth_lb::Options::default()
    };
    let plane = berth_lb::DataPlane::new(
        store.clone(),
        options,
        instances.clone(),
        berth_model::clock::system_clock(),
    );
    let running = plane.clone();
    let task = tokio::spawn(async move {
        let refresher = async {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                instances.refresh(&store, &partition).await;
            }
        };
        tokio::join!(running.run(), refresher);
    });
    (plane, task)
}

/// CloudWatch's load balancer namespace.
const NAMESPACE: &str = "AWS/ApplicationELB";

/// Publishes the data plane's request metrics to CloudWatch every `every`, as ALB publishes
/// them: only while requests flow, per load balancer (`LoadBalancer`) and per target group
/// (`TargetGroup`, `LoadBalancer`), plus `RequestCountPerTarget` (a group's requests over its
/// healthy targets, at least one) per `TargetGroup` alone too, which is what target tracking's
/// `ALBRequestCountPerTarget` watches.
pub async fn publish_metrics(
    plane: berth_lb::DataPlane,
    cloudwatch: berth_cloudwatch::Cloudwatch,
    every: Duration,
    storage_resolution: u32,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let taken = plane.take_metrics();
        if taken.is_empty() {
            continue;
        }
        let healthy = plane.healthy_targets();
        let now = berth_model::clock::system_clock()();
        let mut by_partition: std::collections::HashMap<String, Vec<_>> = Default::default();
        for m in &taken {
            let points = datapoints(m, &healthy, now, storage_resolution);
            by_partition
                .entry(m.partition.clone())
                .or_default()
                .extend(points);
        }
        for (partition, points) in by_partition {
            if let Err(e) = cloudwatch.ingest(&partition, points) {
                tracing::warn!("AWS/ApplicationELB metrics were not stored: {e}");
            }
        }
    }
}

/// The CloudWatch datapoints of one metric's change.
fn datapoints(
    m: &berth_lb::LbMetric,
    healthy: &std::collections::HashMap<(String, String), usize>,
    now_ms: i64,
    storage_resolution: u32,
) -> Vec<berth_cloudwatch::Datapoint> {
    use berth_cloudwatch::{Datapoint, Values};
    let point =
        |name: &str, dimensions: Vec<(String, String)>, values: Values, unit: &str| Datapoint {
            namespace: NAMESPACE.into(),
            metric_name: name.into(),
            dimensions,
            timestamp_ms: now_ms,
            values,
            unit: Some(unit.into()),
            storage_resolution,
        };
    let lb = ("LoadBalancer".to_string(), m.load_balancer.clone());
    let (values, unit) = if m.name == "TargetResponseTime" {
        // The data plane keeps a sum and a count, not each sample: Average is exact, Minimum and
        // Maximum are the window's average.
        let average = m.sum / m.samples.max(1) as f64;
        let set = Values::Set {
            sample_count: m.samples as f64,
            sum: m.sum,
            minimum: average,
            maximum: average,
        };
        (set, "Seconds")
    } else {
        (Values::One(m.sum), "Count")
    };
    let Some(group) = &m.target_group else {
        return vec![point(m.name, vec![lb], values, unit)];
    };
    let tg = ("TargetGroup".to_string(), group.clone());
    let mut out = vec![point(m.name, vec![tg.clone(), lb.clone()], values, unit)];
    if m.name == "RequestCount" {
        let targets = healthy
            .get(&(m.partition.clone(), group.clone()))
            .copied()
            .unwrap_or(0)
            .max(1);
        let per_target = m.sum / targets as f64;
        for dims in [vec![tg.clone()], vec![tg, lb]] {
            out.push(point(
                "RequestCountPerTarget",
                dims,
                Values::One(per_target),
                "Count",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(
        name: &'static str,
        group: Option<&str>,
        sum: f64,
        samples: u64,
    ) -> berth_lb::LbMetric {
        berth_lb::LbMetric {
            partition: "000000000000/us-east-1".into(),
            load_balancer: "app/web/1".into(),
            target_group: group.map(Into::into),
            name,
            sum,
            samples,
        }
    }

    #[test]
    fn request_count_per_target_divides_by_the_healthy_targets() {
        let healthy = [(
            (
                "000000000000/us-east-1".to_string(),
                "targetgroup/blue/2".to_string(),
            ),
            4,
        )]
        .into_iter()
        .collect();
        let points = datapoints(
            &metric("RequestCount", Some("targetgroup/blue/2"), 100.0, 100),
            &healthy,
            1_000,
            60,
        );
        let per_target: Vec<_> = points
            .iter()
            .filter(|p| p.metric_name == "RequestCountPerTarget")
            .map(|p| (p.dimensions.len(), p.values.clone()))
            .collect();
        assert_eq!(
            per_target,
            [
                (1, berth_cloudwatch::Values::One(25.0)),
                (2, berth_cloudwatch::Values::One(25.0))
            ]
        );
        assert_eq!(points[0].metric_name, "RequestCount");
        assert_eq!(points[0].values, berth_cloudwatch::Values::One(100.0));
        // No healthy target: ALB still counts the requests against one.
        let none = datapoints(
            &metric("RequestCount", Some("targetgroup/blue/2"), 7.0, 7),
            &Default::default(),
            1_000,
            60,
        );
        assert!(none.iter().any(|p| p.metric_name == "RequestCountPerTarget"
            && p.values == berth_cloudwatch::Values::One(7.0)));
    }

    #[test]
    fn response_time_keeps_the_average_and_load_balancer_metrics_have_one_dimension() {
        let points = datapoints(
            &metric("TargetResponseTime", Some("targetgroup/blue/2"), 3.0, 4),
            &Default::default(),
            1_000,
            1,
        );
        assert_eq!(points.len(), 1);
        assert_eq!(
            points[0].values,
            berth_cloudwatch::Values::Set {
                sample_count: 4.0,
                sum: 3.0,
                minimum: 0.75,
                maximum: 0.75
            }
        );
        assert_eq!(points[0].unit.as_deref(), Some("Seconds"));
        let lb = datapoints(
            &metric("HTTPCode_ELB_502_Count", None, 2.0, 2),
            &Default::default(),
            1,
            60,
        );
        assert_eq!(
            lb[0].dimensions,
            [("LoadBalancer".to_string(), "app/web/1".to_string())]
        );
    }
}
