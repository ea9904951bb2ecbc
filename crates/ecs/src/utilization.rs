//! ECS's `AWS/ECS` `CPUUtilization` and `MemoryUtilization`, computed as ECS documents them
//! from the usage samples agents send (`berth_agent_api::MetricsReport`):
//!
//! - per service (`ClusterName`, `ServiceName`): 100 × the CPU units (MiB) the service's
//!   RUNNING tasks used / the CPU units (MiB) those tasks reserve — the task size, else the sum
//!   of the containers' `cpu` and `memoryReservation` (else `memory`), exactly what placement
//!   takes from the instance. It can exceed 100 %: a task may use CPU it did not reserve.
//!   Minimum and Maximum are the least and most utilized task, as ECS documents them.
//! - per cluster (`ClusterName`): 100 × what all RUNNING tasks of the cluster used / what the
//!   cluster's container instances registered. Minimum and Maximum are the least and most
//!   utilized instance.
//!
//! A task that reserves no CPU (container `cpu` 0 and no task size) gets Docker's minimum share
//! and may use the whole instance, so berth measures it against the CPU its instance
//! registered; likewise for memory, which ECS makes every EC2 task reserve anyway.
//!
//! Samples are aggregated per window (the agents' sampling interval, by the server's arrival
//! time, so agents' clocks do not matter): a task sampled twice in a window counts once, with
//! its mean; an instance counts with the capacity it registered. Each closed window gives one
//! datapoint per metric and dimension set, as a statistic set whose `SampleCount` is the number
//! of tasks (service) or instances (cluster) it covers and whose mean is the formula above.
//! Nothing is published for a cluster or service without a RUNNING task sampled in the window,
//! as ECS publishes nothing then.
//!
//! [`observe`] reads the store (the node's identity and the cluster's tasks); everything else
//! is pure.

use crate::nodes::{self, NodeError};
use crate::records::{ContainerInstanceRecord, TaskRecord, kinds, pair_key};
use crate::{Ecs, common};
use berth_agent_api as api;
use berth_aws::RequestContext;
use berth_model::task::TaskStatus;
use std::collections::BTreeMap;

pub const NAMESPACE: &str = "AWS/ECS";
pub const CPU_UTILIZATION: &str = "CPUUtilization";
pub const MEMORY_UTILIZATION: &str = "MemoryUtilization";
pub const UNIT: &str = "Percent";

/// Windows kept open at once; more means the closer stopped running, and the oldest go.
const MAX_OPEN_WINDOWS: usize = 16;
/// Instances one window holds per partition (far more than one server drives).
const MAX_NODES_PER_WINDOW: usize = 10_000;

/// One sampled task, with what it reserves and where it belongs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskShare {
    pub task_arn: String,
    /// The service's name, for tasks a service started (group `service:<name>`).
    pub service: Option<String>,
    pub reserved_cpu: f64,
    pub reserved_memory_mib: f64,
    pub cpu_units: f64,
    pub memory_mib: f64,
}

/// One agent's report, resolved against the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    pub cluster: String,
    pub instance_id: String,
    pub registered_cpu: f64,
    pub registered_memory_mib: f64,
    pub tasks: Vec<TaskShare>,
}

/// One datapoint for CloudWatch: a statistic set over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub metric_name: &'static str,
    /// `ClusterName`, then `ServiceName` for service metrics.
    pub dimensions: Vec<(String, String)>,
    /// The window's start, Unix milliseconds.
    pub timestamp_ms: i64,
    pub sample_count: f64,
    pub sum: f64,
    pub minimum: f64,
    pub maximum: f64,
    /// 60 (ECS's one-minute metrics) or 1 (high resolution, for tests).
    pub storage_resolution: u32,
}

impl Metric {
    /// The utilization the window's formula gives (`Average`).
    pub fn average(&self) -> f64 {
        self.sum / self.sample_count
    }
}

/// Authenticates a node's report (node token) and resolves it against the node's record and
/// its cluster's tasks. Counts as a heartbeat, as any call of a live agent would. `None` for a
/// deregistered instance: ECS counts only ACTIVE and DRAINING ones.
pub async fn observe(
    ecs: &Ecs,
    ctx: &RequestContext,
    bearer: Option<&str>,
    report: &api::MetricsReport,
) -> Result<Option<NodeSample>, NodeError> {
    if report.tasks.len() > api::MAX_METRICS_TASKS {
        return Err(NodeError::bad_request(format!(
            "a metrics report holds at most {} tasks",
            api::MAX_METRICS_TASKS
        )));
    }
    let instance = nodes::heartbeat(ecs, ctx, &report.instance_id, bearer).await?;
    if instance.status == "INACTIVE" {
        return Ok(None);
    }
    // Point reads of the reported tasks only: a report comes every few seconds from every
    // node, and a cluster's task list (STOPPED ones included, for an hour) can be long.
    let mut tasks = Vec::with_capacity(report.tasks.len());
    let mut seen = std::collections::BTreeSet::new();
    for u in &report.tasks {
        let Some(id) = task_id(&u.task_arn, &instance.cluster) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let key = pair_key(&instance.cluster, id);
        if let Some((t, _)) = common::get::<TaskRecord>(ecs, ctx, kinds::TASK, &key).await? {
            tasks.push(t);
        }
    }
    Ok(Some(resolve(&instance, &tasks, report)))
}

/// The task id in a task ARN of `cluster` (`…:task/<cluster>/<id>`).
fn task_id<'a>(arn: &'a str, cluster: &str) -> Option<&'a str> {
    let (_, rest) = arn.split_once(":task/")?;
    let (c, id) = rest.split_once('/')?;
    (c == cluster && !id.is_empty() && !id.contains('|')).then_some(id)
}

/// Keeps the reported tasks that are RUNNING on this instance (others are ignored: the report
/// may be late, or name a task the server does not know), with what each reserves.
pub fn resolve(
    instance: &ContainerInstanceRecord,
    tasks: &[TaskRecord],
    report: &api::MetricsReport,
) -> NodeSample {
    let (registered_cpu, registered_memory_mib) = (
        instance.registered.cpu as f64,
        instance.registered.memory as f64,
    );
    let by_arn: BTreeMap<&str, &TaskRecord> = tasks
        .iter()
        .filter(|t| t.container_instance_id == instance.id)
        .filter(|t| t.last_status == TaskStatus::Running.as_str())
        .map(|t| (t.arn.as_str(), t))
        .collect();
    let mut shares: BTreeMap<&str, TaskShare> = BTreeMap::new();
    for u in &report.tasks {
        let usable = |v: f64| v.is_finite() && v >= 0.0;
        if !usable(u.cpu_units) || !usable(u.memory_mib) {
            continue;
        }
        let Some(t) = by_arn.get(u.task_arn.as_str()) else {
            continue;
        };
        let (cpu, memory) = (t.reserved.cpu as f64, t.reserved.memory as f64);
        shares.insert(
            &u.task_arn,
            TaskShare {
                task_arn: u.task_arn.clone(),
                service: t.group.strip_prefix("service:").map(str::to_owned),
                // No reservation: the task may use the whole instance (see the module doc).
                reserved_cpu: if cpu > 0.0 { cpu } else { registered_cpu },
                reserved_memory_mib: if memory > 0.0 {
                    memory
                } else {
                    registered_memory_mib
                },
                cpu_units: u.cpu_units,
                memory_mib: u.memory_mib,
            },
        );
    }
    NodeSample {
        cluster: instance.cluster.clone(),
        instance_id: instance.id.clone(),
        registered_cpu,
        registered_memory_mib,
        tasks: shares.into_values().collect(),
    }
}

/// A task's samples within one window.
#[derive(Debug, Clone)]
struct TaskSum {
    share: TaskShare,
    cpu_units: f64,
    memory_mib: f64,
    samples: u32,
}

/// An instance's reports within one window.
#[derive(Debug, Clone, Default)]
struct NodeWindow {
    registered_cpu: f64,
    registered_memory_mib: f64,
    tasks: BTreeMap<String, TaskSum>,
}

/// Every report of one partition in one window: (cluster, instance id) → what it sent.
type Window = BTreeMap<(String, String), NodeWindow>;

/// Collects node samples into windows and turns each closed window into datapoints. Bounded:
/// at most [`MAX_OPEN_WINDOWS`] windows of at most [`MAX_NODES_PER_WINDOW`] instances, each
/// with at most `api::MAX_METRICS_TASKS` tasks.
#[derive(Debug)]
pub struct Aggregator {
    window_ms: i64,
    storage_resolution: u32,
    /// (partition, window start) → the window.
    windows: BTreeMap<(String, i64), Window>,
}

impl Aggregator {
    /// Windows of `window_ms` (at least 1 ms); datapoints stored at `storage_resolution`
    /// seconds (60, or 1 for high resolution).
    pub fn new(window_ms: i64, storage_resolution: u32) -> Aggregator {
        Aggregator {
            window_ms: window_ms.max(1),
            storage_resolution,
            windows: BTreeMap::new(),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Adds a node's sample, received at `now_ms`, to its window.
    pub fn add(&mut self, partition: &str, now_ms: i64, sample: NodeSample) {
        let start = now_ms.div_euclid(self.window_ms) * self.window_ms;
        let key = (partition.to_owned(), start);
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_OPEN_WINDOWS {
            self.windows.pop_first();
        }
        let window = self.windows.entry(key).or_default();
        let node_key = (sample.cluster, sample.instance_id);
        if !window.contains_key(&node_key) && window.len() >= MAX_NODES_PER_WINDOW {
            return;
        }
        let node = window.entry(node_key).or_default();
        node.registered_cpu = sample.registered_cpu;
        node.registered_memory_mib = sample.registered_memory_mib;
        for share in sample.tasks {
            let sum = node
                .tasks
                .entry(share.task_arn.clone())
                .or_insert_with(|| TaskSum {
                    share: share.clone(),
                    cpu_units: 0.0,
                    memory_mib: 0.0,
                    samples: 0,
                });
            sum.cpu_units += share.cpu_units;
            sum.memory_mib += share.memory_mib;
            sum.samples += 1;
        }
    }

    /// Removes the windows that ended by `now_ms`, with their datapoints by partition.
    pub fn close(&mut self, now_ms: i64) -> Vec<(String, Vec<Metric>)> {
        let ended: Vec<(String, i64)> = self
            .windows
            .keys()
            .filter(|(_, start)| start.saturating_add(self.window_ms) <= now_ms)
            .cloned()
            .collect();
        let mut out = Vec::new();
        for key in ended {
            if let Some(window) = self.windows.remove(&key) {
                let metrics = window_metrics(key.1, &window, self.storage_resolution);
                if !metrics.is_empty() {
                    out.push((key.0, metrics));
                }
            }
        }
        out
    }
}

/// What one task or instance used and reserved in a window.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_used: f64,
    cpu_reserved: f64,
    memory_used: f64,
    memory_reserved: f64,
}

/// One datapoint per metric from the parts it covers (tasks of a service, instances of a
/// cluster): the mean is 100 × Σ used / Σ reserved, the extremes are the parts' own ratios.
fn statistic(
    metric_name: &'static str,
    dimensions: &[(String, String)],
    timestamp_ms: i64,
    storage_resolution: u32,
    parts: &[(f64, f64)],
) -> Option<Metric> {
    let reserved: f64 = parts.iter().map(|(_, r)| r).sum();
    if parts.is_empty() || reserved <= 0.0 {
        return None;
    }
    let used: f64 = parts.iter().map(|(u, _)| u).sum();
    let ratios = parts
        .iter()
        .filter(|(_, r)| *r > 0.0)
        .map(|(u, r)| 100.0 * u / r);
    let minimum = ratios.clone().fold(f64::INFINITY, f64::min);
    let maximum = ratios.fold(f64::NEG_INFINITY, f64::max);
    // A weighted mean of the ratios lies between them; the clamp only absorbs rounding.
    let average = (100.0 * used / reserved).clamp(minimum, maximum);
    let count = parts.len() as f64;
    Some(Metric {
        metric_name,
        dimensions: dimensions.to_vec(),
        timestamp_ms,
        sample_count: count,
        sum: average * count,
        minimum,
        maximum,
        storage_resolution,
    })
}

fn both(
    out: &mut Vec<Metric>,
    dimensions: &[(String, String)],
    timestamp_ms: i64,
    storage_resolution: u32,
    parts: &[Usage],
) {
    let cpu: Vec<(f64, f64)> = parts.iter().map(|u| (u.cpu_used, u.cpu_reserved)).collect();
    let memory: Vec<(f64, f64)> = parts
        .iter()
        .map(|u| (u.memory_used, u.memory_reserved))
        .collect();
    out.extend(statistic(
        CPU_UTILIZATION,
        dimensions,
        timestamp_ms,
        storage_resolution,
        &cpu,
    ));
    out.extend(statistic(
        MEMORY_UTILIZATION,
        dimensions,
        timestamp_ms,
        storage_resolution,
        &memory,
    ));
}

/// The datapoints of one window: per cluster, then per service of it.
fn window_metrics(start_ms: i64, window: &Window, storage_resolution: u32) -> Vec<Metric> {
    #[derive(Default)]
    struct ClusterParts {
        instances: Vec<Usage>,
        services: BTreeMap<String, Vec<Usage>>,
        /// Whether any task of the cluster was sampled in the window.
        sampled: bool,
    }
    let mut clusters: BTreeMap<&str, ClusterParts> = BTreeMap::new();
    for ((cluster, _), node) in window {
        let parts = clusters.entry(cluster).or_default();
        let mut on_node = Usage {
            cpu_reserved: node.registered_cpu,
            memory_reserved: node.registered_memory_mib,
            ..Usage::default()
        };
        for t in node.tasks.values() {
            let n = f64::from(t.samples.max(1));
            let task = Usage {
                cpu_used: t.cpu_units / n,
                cpu_reserved: t.share.reserved_cpu,
                memory_used: t.memory_mib / n,
                memory_reserved: t.share.reserved_memory_mib,
            };
            on_node.cpu_used += task.cpu_used;
            on_node.memory_used += task.memory_used;
            if let Some(service) = &t.share.service {
                parts
                    .services
                    .entry(service.clone())
                    .or_default()
                    .push(task);
            }
        }
        // An instance counts even when it runs none of the tasks: its capacity is the
        // denominator.
        parts.instances.push(on_node);
        parts.sampled |= !node.tasks.is_empty();
    }
    let mut out = Vec::new();
    for (cluster, parts) in clusters.into_iter().filter(|(_, p)| p.sampled) {
        let cluster_dim = vec![("ClusterName".to_owned(), cluster.to_owned())];
        both(
            &mut out,
            &cluster_dim,
            start_ms,
            storage_resolution,
            &parts.instances,
        );
        for (service, tasks) in parts.services {
            let dims = vec![
                ("ClusterName".to_owned(), cluster.to_owned()),
                ("ServiceName".to_owned(), service),
            ];
            both(&mut out, &dims, start_ms, storage_resolution, &tasks);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(
        arn: &str,
        service: Option<&str>,
        reserved: (f64, f64),
        used: (f64, f64),
    ) -> TaskShare {
        TaskShare {
            task_arn: arn.into(),
            service: service.map(str::to_owned),
            reserved_cpu: reserved.0,
            reserved_memory_mib: reserved.1,
            cpu_units: used.0,
            memory_mib: used.1,
        }
    }

    fn node(cluster: &str, id: &str, registered: (f64, f64), tasks: Vec<TaskShare>) -> NodeSample {
        NodeSample {
            cluster: cluster.into(),
            instance_id: id.into(),
            registered_cpu: registered.0,
            registered_memory_mib: registered.1,
            tasks,
        }
    }

    /// (metric, ServiceName or "" for the cluster) → (average, minimum, maximum, count).
    fn table(metrics: &[Metric]) -> BTreeMap<(String, String), (f64, f64, f64, f64)> {
        metrics
            .iter()
            .map(|m| {
                let service = m
                    .dimensions
                    .iter()
                    .find(|(k, _)| k == "ServiceName")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (
                    (m.metric_name.to_owned(), service),
                    (m.average(), m.minimum, m.maximum, m.sample_count),
                )
            })
            .collect()
    }

    fn close_one(nodes: Vec<NodeSample>) -> Vec<Metric> {
        let mut a = Aggregator::new(5_000, 60);
        for n in nodes {
            a.add("000000000000/us-east-1", 12_345, n);
        }
        let mut closed = a.close(15_000);
        assert_eq!(closed.len(), 1, "{closed:?}");
        let (partition, metrics) = closed.remove(0);
        assert_eq!(partition, "000000000000/us-east-1");
        assert!(metrics.iter().all(|m| m.timestamp_ms == 10_000));
        assert!(metrics.iter().all(|m| m.storage_resolution == 60));
        metrics
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn service_and_cluster_utilization_follow_ecs_formulas() {
        type Want = &'static [(&'static str, &'static str, (f64, f64, f64, f64))];
        let cases: Vec<(&str, Vec<NodeSample>, Want)> = vec![
            (
                "one busy core over 512 reserved units is 200 %",
                vec![node(
                    "c",
                    "i1",
                    (2048.0, 4096.0),
                    vec![share("t1", Some("web"), (512.0, 1024.0), (1024.0, 512.0))],
                )],
                &[
                    ("CPUUtilization", "web", (200.0, 200.0, 200.0, 1.0)),
                    ("MemoryUtilization", "web", (50.0, 50.0, 50.0, 1.0)),
                    ("CPUUtilization", "", (50.0, 50.0, 50.0, 1.0)),
                    ("MemoryUtilization", "", (12.5, 12.5, 12.5, 1.0)),
                ],
            ),
            (
                "tasks of a service on two nodes: one mean, per-task extremes",
                vec![
                    node(
                        "c",
                        "i1",
                        (1024.0, 1000.0),
                        vec![share("t1", Some("web"), (256.0, 100.0), (256.0, 10.0))],
                    ),
                    node(
                        "c",
                        "i2",
                        (1024.0, 1000.0),
                        vec![
                            share("t2", Some("web"), (256.0, 100.0), (0.0, 30.0)),
                            share("t3", None, (512.0, 200.0), (512.0, 100.0)),
                        ],
                    ),
                ],
                &[
                    ("CPUUtilization", "web", (50.0, 0.0, 100.0, 2.0)),
                    ("MemoryUtilization", "web", (20.0, 10.0, 30.0, 2.0)),
                    // Cluster: 768 of 2048 units, 140 of 2000 MiB; per instance 25 % and 50 %.
                    ("CPUUtilization", "", (37.5, 25.0, 50.0, 2.0)),
                    ("MemoryUtilization", "", (7.0, 1.0, 13.0, 2.0)),
                ],
            ),
            (
                "different reservations weigh by what they reserve",
                vec![node(
                    "c",
                    "i1",
                    (4096.0, 4096.0),
                    vec![
                        share("t1", Some("web"), (1024.0, 512.0), (1024.0, 512.0)),
                        share("t2", Some("web"), (256.0, 512.0), (0.0, 0.0)),
                    ],
                )],
                &[
                    ("CPUUtilization", "web", (80.0, 0.0, 100.0, 2.0)),
                    ("MemoryUtilization", "web", (50.0, 0.0, 100.0, 2.0)),
                    ("CPUUtilization", "", (25.0, 25.0, 25.0, 1.0)),
                    ("MemoryUtilization", "", (12.5, 12.5, 12.5, 1.0)),
                ],
            ),
            (
                "an idle node counts in the cluster's capacity; a cluster without tasks has none",
                vec![
                    node(
                        "c",
                        "i1",
                        (1024.0, 1024.0),
                        vec![share("t1", None, (1024.0, 1024.0), (1024.0, 1024.0))],
                    ),
                    node("c", "i2", (1024.0, 1024.0), vec![]),
                    node("idle", "i3", (1024.0, 1024.0), vec![]),
                ],
                &[
                    ("CPUUtilization", "", (50.0, 0.0, 100.0, 2.0)),
                    ("MemoryUtilization", "", (50.0, 0.0, 100.0, 2.0)),
                ],
            ),
        ];
        for (name, nodes, want) in cases {
            let metrics = close_one(nodes);
            let got = table(&metrics);
            assert_eq!(got.len(), want.len(), "{name}: {got:?}");
            for (metric, service, (avg, min, max, count)) in want {
                let g = got
                    .get(&((*metric).to_owned(), (*service).to_owned()))
                    .unwrap_or_else(|| panic!("{name}: no {metric} {service:?} in {got:?}"));
                assert!(
                    close(g.0, *avg) && close(g.1, *min) && close(g.2, *max) && close(g.3, *count),
                    "{name}: {metric} {service:?}: got {g:?}, want {:?}",
                    (avg, min, max, count)
                );
            }
            for m in &metrics {
                assert_eq!(m.dimensions[0], ("ClusterName".to_owned(), "c".to_owned()));
            }
        }
    }

    #[test]
    fn a_task_sampled_twice_in_a_window_counts_once_with_its_mean() {
        let t = |used| share("t1", Some("web"), (512.0, 512.0), (used, 256.0));
        let metrics = close_one(vec![
            node("c", "i1", (1024.0, 1024.0), vec![t(512.0)]),
            node("c", "i1", (1024.0, 1024.0), vec![t(1536.0)]),
        ]);
        let got = table(&metrics);
        assert_eq!(
            got[&("CPUUtilization".to_owned(), "web".to_owned())],
            (200.0, 200.0, 200.0, 1.0)
        );
        assert_eq!(
            got[&("MemoryUtilization".to_owned(), "web".to_owned())],
            (50.0, 50.0, 50.0, 1.0)
        );
    }

    #[test]
    fn windows_close_once_ended_one_datapoint_each() {
        let mut a = Aggregator::new(1_000, 1);
        let sample = || {
            node(
                "c",
                "i1",
                (1024.0, 1024.0),
                vec![share("t1", Some("web"), (1024.0, 1024.0), (512.0, 512.0))],
            )
        };
        a.add("p", 1_100, sample());
        a.add("p", 1_900, sample());
        a.add("p", 2_100, sample());
        assert!(a.close(1_999).is_empty(), "the window is still open");
        let first = a.close(2_000);
        assert_eq!(first.len(), 1);
        let (_, metrics) = &first[0];
        // Cluster and service, CPU and memory: four datapoints for one window.
        assert_eq!(metrics.len(), 4, "{metrics:?}");
        assert!(
            metrics
                .iter()
                .all(|m| m.timestamp_ms == 1_000 && m.storage_resolution == 1)
        );
        assert!(
            a.close(2_000).is_empty(),
            "a closed window is never emitted again"
        );
        let second = a.close(10_000);
        assert_eq!(second.len(), 1);
        assert!(second[0].1.iter().all(|m| m.timestamp_ms == 2_000));
        assert!(a.close(20_000).is_empty());
        // Open windows are bounded even if nothing closes them.
        for i in 0..100 {
            a.add("p", i * 1_000, sample());
        }
        assert!(a.windows.len() <= MAX_OPEN_WINDOWS);
    }

    fn task_record(arn: &str, instance: &str, status: &str, group: &str, cpu: i64) -> TaskRecord {
        serde_json::from_value(serde_json::json!({
            "cluster": "c", "id": "x", "arn": arn, "cluster_arn": "arn:c",
            "container_instance_id": instance, "container_instance_arn": "arn:i",
            "task_definition_arn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
            "health_checked": false, "dynamic_ports": 0,
            "overrides": {}, "last_status": status,
            "desired_status": "RUNNING", "containers": [], "group": group,
            "started_by": null, "launch_type": "EC2", "cpu": "", "memory": "",
            "reserved": {"cpu": cpu, "memory": 0, "ports": [], "udp_ports": []},
            "created_at_ms": 0, "pull_started_at_ms": null, "pull_stopped_at_ms": null,
            "started_at_ms": null, "stopping_at_ms": null, "stopped_at_ms": null,
            "execution_stopped_at_ms": null, "connectivity_at_ms": null, "stop_code": null,
            "stopped_reason": null, "health_status": "UNKNOWN", "tags": [], "attributes": [],
            "enable_execute_command": false, "version": 1
        }))
        .expect("a task record")
    }

    #[test]
    fn task_ids_are_read_from_arns_of_the_instances_cluster_only() {
        let arn = "arn:aws:ecs:us-east-1:000000000000:task/c/0123abcd";
        assert_eq!(task_id(arn, "c"), Some("0123abcd"));
        assert_eq!(task_id(arn, "other"), None);
        assert_eq!(task_id("arn:aws:ecs:us-east-1:0:task/c/a|b", "c"), None);
        assert_eq!(task_id("arn:aws:ecs:us-east-1:0:task/c/", "c"), None);
        assert_eq!(task_id("not an arn", "c"), None);
    }

    #[test]
    fn resolve_keeps_running_tasks_of_the_instance_with_their_reservations() {
        let instance: ContainerInstanceRecord = serde_json::from_value(serde_json::json!({
            "cluster": "c", "id": "i1", "arn": "arn:i1", "ec2_instance_id": "h",
            "status": "ACTIVE",
            "registered": {"cpu": 2048, "memory": 3840, "ports": [], "udp_ports": []},
            "remaining": {"cpu": 0, "memory": 0, "ports": [], "udp_ports": []},
            "attributes": [], "version_info": {}, "registered_at_ms": 0,
            "last_heartbeat_ms": 0, "token_hash": null, "can_run_tasks": true,
            "cannot_run_reason": null, "tags": [], "version": 1
        }))
        .expect("an instance record");
        let tasks = vec![
            task_record("a", "i1", "RUNNING", "service:web", 512),
            task_record("b", "i1", "RUNNING", "family:web", 0),
            task_record("c", "i2", "RUNNING", "service:web", 512),
            task_record("d", "i1", "PENDING", "service:web", 512),
        ];
        let usage = |arn: &str, cpu: f64| api::TaskUsage {
            task_arn: arn.into(),
            cpu_units: cpu,
            memory_mib: 10.0,
        };
        let report = api::MetricsReport {
            instance_id: "i1".into(),
            tasks: vec![
                usage("a", 100.0),
                usage("b", 200.0),
                usage("c", 300.0),
                usage("d", 400.0),
                usage("unknown", 1.0),
                usage("a", f64::NAN),
                usage("b", -1.0),
            ],
        };
        let got = resolve(&instance, &tasks, &report);
        assert_eq!(
            (got.registered_cpu, got.registered_memory_mib),
            (2048.0, 3840.0)
        );
        assert_eq!(
            got.tasks,
            vec![
                share("a", Some("web"), (512.0, 3840.0), (100.0, 10.0)),
                // No reservation: measured against the instance.
                share("b", None, (2048.0, 3840.0), (200.0, 10.0)),
            ]
        );
    }
}
