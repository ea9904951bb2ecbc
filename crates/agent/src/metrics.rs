//! Samples the resource usage of the node's tasks every few seconds and ships it to the control
//! plane (`POST /_berth/agent/v1/metrics`), which publishes ECS's `CPUUtilization` and
//! `MemoryUtilization` from it — the ECS agent's telemetry session, over berth's protocol.
//!
//! Each tick lists this node's running containers (by the `berth.container-instance` label,
//! so adopted containers count too), takes one stats sample of each, and sums them per task:
//! CPU in ECS units (1024 per busy core) from the change of the container's CPU time since the
//! previous tick, memory in MiB. A container seen for the first time (or whose CPU counter
//! went back: it restarted) gives no CPU rate until the next tick; a task none of whose
//! containers has a rate yet is left out of that report.
//!
//! Bounded: the only state is the previous sample of each running container, replaced every
//! tick; one report is in flight at a time and is dropped, not queued, if the server is away
//! (a missing sample is a gap in a metric, which CloudWatch already tolerates).

use crate::client::Client;
use crate::{state, translate};
use berth_agent_api::{self as api, labels};
use berth_runtime::{ContainerId, ContainerStatus, Runtime, StatsSample};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// ECS CPU units per core.
const UNITS_PER_CORE: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Stats calls made at once. dockerd answers every waiting stats request from one collection
/// per second, so a call takes up to a second however idle the daemon is: asked one after
/// another, 20 containers took 20 s on dockerd 20.10; asked at once, 1.3 s. The bound only
/// keeps a node with very many containers from opening as many connections.
const CONCURRENT_STATS: usize = 256;

/// A container's previous sample and when the agent took it.
#[derive(Debug, Clone, Copy)]
struct Previous {
    sample: StatsSample,
    at: Instant,
}

/// One container's sample this tick, with the task it belongs to.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    pub task_arn: String,
    pub id: ContainerId,
    pub sample: StatsSample,
    pub at: Instant,
}

/// Remembers each running container's previous sample, to turn CPU counters into rates.
#[derive(Debug, Default)]
pub struct Sampler {
    previous: HashMap<ContainerId, Previous>,
}

impl Sampler {
    /// Takes one sample of every running task container of `instance_id` on `runtime`.
    pub async fn sample(&mut self, runtime: &Runtime, instance_id: &str) -> Vec<api::TaskUsage> {
        let found = match runtime.list(&[(labels::INSTANCE, instance_id)]).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("metrics: cannot list the node's containers: {e}");
                return Vec::new();
            }
        };
        let running: Vec<(String, ContainerId)> = found
            .into_iter()
            .filter(|c| c.status == ContainerStatus::Running)
            // The awsvpc namespace holder is berth's, not the task's: ECS does not count it.
            .filter(|c| {
                c.labels.get(labels::CONTAINER_NAME).map(String::as_str)
                    != Some(translate::HOLDER_CONTAINER_NAME)
            })
            .filter_map(|c| Some((c.labels.get(labels::TASK_ARN)?.clone(), c.id)))
            .collect();
        let samples: Vec<ContainerSample> = futures_util::stream::iter(running)
            .map(|(task_arn, id)| async move {
                let sample = runtime.stats(&id).await;
                let at = Instant::now();
                match sample {
                    Ok(sample) => Some(ContainerSample {
                        task_arn,
                        id,
                        sample,
                        at,
                    }),
                    Err(e) => {
                        // It may just have stopped; the next tick will not list it.
                        tracing::debug!(container = %id, "metrics: no stats: {e}");
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENT_STATS)
            .filter_map(|s| async move { s })
            .collect()
            .await;
        self.usage(samples)
    }

    /// Per-task usage from this tick's samples, remembering them for the next tick (and
    /// forgetting containers no longer running).
    pub fn usage(&mut self, samples: Vec<ContainerSample>) -> Vec<api::TaskUsage> {
        #[derive(Default)]
        struct Sum {
            cpu_units: f64,
            rated: bool,
            memory_bytes: f64,
        }
        let mut tasks: BTreeMap<String, Sum> = BTreeMap::new();
        let mut next = HashMap::with_capacity(samples.len());
        for s in samples {
            let sum = tasks.entry(s.task_arn).or_default();
            sum.memory_bytes += s.sample.memory_usage_bytes as f64;
            if let Some(prev) = self.previous.get(&s.id)
                && let Some(units) = cpu_units(
                    &prev.sample,
                    &s.sample,
                    s.at.saturating_duration_since(prev.at),
                )
            {
                sum.cpu_units += units;
                sum.rated = true;
            }
            next.insert(
                s.id,
                Previous {
                    sample: s.sample,
                    at: s.at,
                },
            );
        }
        self.previous = next;
        tasks
            .into_iter()
            .filter(|(_, s)| s.rated)
            .map(|(task_arn, s)| api::TaskUsage {
                task_arn,
                cpu_units: s.cpu_units,
                memory_mib: s.memory_bytes / MIB,
            })
            .collect()
    }
}

/// The CPU a container used between two samples, in ECS units: its CPU time over the time
/// that passed, × 1024. The time that passed is read from the engine's own host CPU counter
/// (`system_cpu_usage` / `online_cpus`, what `docker stats` divides by), which is taken with
/// the container's counter and so ignores the latency of the stats calls; `wall` (the agent's
/// clock) stands in when the engine gives no host counter. `None` when the counter went back
/// (the container restarted) or no time passed.
pub fn cpu_units(prev: &StatsSample, cur: &StatsSample, wall: Duration) -> Option<f64> {
    let used_ns = cur.cpu_total_ns.checked_sub(prev.cpu_total_ns)?;
    let system_ns = cur.system_cpu_ns.saturating_sub(prev.system_cpu_ns);
    let elapsed_ns = if system_ns > 0 && cur.online_cpus > 0 {
        system_ns as f64 / f64::from(cur.online_cpus)
    } else {
        wall.as_nanos() as f64
    };
    if elapsed_ns <= 0.0 {
        return None;
    }
    Some(used_ns as f64 / elapsed_ns * UNITS_PER_CORE)
}

/// Samples every `every` and ships each sample once; a failed delivery is dropped.
pub(crate) async fn metrics_loop(
    runtime: Runtime,
    client: Client,
    identity: watch::Receiver<Option<state::Identity>>,
    every: Duration,
) {
    let mut sampler = Sampler::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let id = identity.borrow().clone();
        let Some(id) = id else {
            // Registering again: the containers' instance label may be about to change.
            continue;
        };
        let tasks = sampler.sample(&runtime, &id.instance_id).await;
        let report = api::MetricsReport {
            instance_id: id.instance_id.clone(),
            tasks,
        };
        // Never longer than a tick, so reports cannot pile up behind a slow server.
        match tokio::time::timeout(every, client.ship_metrics(&id.node_token, &report)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("metrics: a sample was not delivered: {e}"),
            Err(_) => tracing::debug!("metrics: a sample was not delivered in time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(cpu_s: f64, system_s: f64, cpus: u32, memory_mib: u64) -> StatsSample {
        StatsSample {
            cpu_total_ns: (cpu_s * 1e9) as u64,
            system_cpu_ns: (system_s * 1e9) as u64,
            online_cpus: cpus,
            memory_usage_bytes: memory_mib * 1024 * 1024,
            ..Default::default()
        }
    }

    #[test]
    fn cpu_units_are_cpu_time_over_elapsed_time_times_1024() {
        let wall = Duration::from_secs(5);
        // 4 CPUs, 5 s passed (20 s of host CPU time): one core busy is 1024 units.
        let cases = [
            (stats(0.0, 0.0, 4, 0), stats(5.0, 20.0, 4, 0), Some(1024.0)),
            (stats(0.0, 0.0, 4, 0), stats(10.0, 20.0, 4, 0), Some(2048.0)),
            (stats(1.0, 0.0, 4, 0), stats(1.5, 20.0, 4, 0), Some(102.4)),
            (stats(3.0, 0.0, 4, 0), stats(3.0, 20.0, 4, 0), Some(0.0)),
            // Restarted: the counter went back.
            (stats(3.0, 0.0, 4, 0), stats(1.0, 20.0, 4, 0), None),
            // No host counter: the agent's clock (5 s).
            (stats(0.0, 0.0, 0, 0), stats(2.5, 0.0, 0, 0), Some(512.0)),
        ];
        for (i, (prev, cur, want)) in cases.iter().enumerate() {
            let got = cpu_units(prev, cur, wall);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "case {i}: {g} != {w}"),
                _ => assert_eq!(got, *want, "case {i}"),
            }
        }
        assert_eq!(
            cpu_units(
                &stats(0.0, 0.0, 0, 0),
                &stats(1.0, 0.0, 0, 0),
                Duration::ZERO
            ),
            None
        );
    }

    #[test]
    fn usage_sums_a_tasks_containers_once_each_has_a_previous_sample() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let sample = |task: &str, id: &str, s: StatsSample, at: Instant| ContainerSample {
            task_arn: task.into(),
            id: ContainerId::from(id),
            sample: s,
            at,
        };
        let mut sampler = Sampler::default();
        let first = sampler.usage(vec![
            sample("a", "a1", stats(0.0, 0.0, 2, 100), t0),
            sample("a", "a2", stats(0.0, 0.0, 2, 28), t0),
            sample("b", "b1", stats(0.0, 0.0, 2, 10), t0),
        ]);
        assert!(first.is_empty(), "no rates on the first tick: {first:?}");

        let second = sampler.usage(vec![
            sample("a", "a1", stats(5.0, 10.0, 2, 100), t1),
            sample("a", "a2", stats(2.5, 10.0, 2, 28), t1),
            // b1 restarted as b2: no rate yet, so task b is left out.
            sample("b", "b2", stats(1.0, 10.0, 2, 10), t1),
        ]);
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(second[0].task_arn, "a");
        assert!((second[0].cpu_units - 1536.0).abs() < 1e-6, "{second:?}");
        assert!((second[0].memory_mib - 128.0).abs() < 1e-9, "{second:?}");
        // Containers no longer running are forgotten.
        assert!(!sampler.previous.contains_key(&ContainerId::from("b1")));
        assert_eq!(sampler.previous.len(), 3);
    }
}
