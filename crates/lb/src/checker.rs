//! The active health checker: probes every target of a used target group on its group's
//! schedule, moves it through `health::step`, and writes `elbv2.target-health` only when what
//! DescribeTargetHealth would show changes — under `Expect::Version` of that record, re-reading
//! on a conflict, never touching the API's guard. Counters stay in memory.

use crate::health::{self, Outcome, State, Thresholds, Tracker};
use crate::table::{Probe, Table};
use arc_swap::ArcSwap;
use berth_elbv2::records::{self, HealthRecord};
use berth_model::clock::Clock;
use berth_store::{AnyStore, Expect, Op, Store, StoreError, retry_on_conflict};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How often the checker looks for due probes: the finest schedule it keeps.
const TICK: Duration = Duration::from_millis(250);

type Prober = Client<HttpConnector, Empty<Bytes>>;

fn prober() -> Prober {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // A health check is a fresh connection each time, as ALB's: a pooled one would hide a
    // target that stopped accepting.
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// One probe: `GET path` on the health check port, within the timeout.
async fn probe(client: &Prober, p: &Probe) -> Outcome {
    let hc = &p.group.health_check;
    let Some(addr) = p.target.addr else {
        return Outcome::Failed;
    };
    let port = match hc.port.as_str() {
        "traffic-port" => addr.port(),
        n => n.parse().unwrap_or(addr.port()),
    };
    let path = if hc.path.starts_with('/') {
        hc.path.clone()
    } else {
        format!("/{}", hc.path)
    };
    let host = std::net::SocketAddr::new(addr.ip(), port);
    let Ok(req) = http::Request::get(format!("http://{host}{path}"))
        .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
        .body(Empty::new())
    else {
        return Outcome::Failed;
    };
    let timeout = Duration::from_secs(u64::try_from(hc.timeout_seconds.max(1)).unwrap_or(5));
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(_)) => Outcome::Failed,
        Ok(Ok(resp)) => {
            let code = resp.status().as_u16();
            if health::matcher_accepts(&hc.matcher, code) {
                Outcome::Ok
            } else {
                Outcome::Code(code)
            }
        }
    }
}

fn thresholds(p: &Probe) -> Thresholds {
    let hc = &p.group.health_check;
    Thresholds {
        healthy: u32::try_from(hc.healthy_threshold.max(1)).unwrap_or(1),
        unhealthy: u32::try_from(hc.unhealthy_threshold.max(1)).unwrap_or(1),
        interval_ms: i64::from(hc.interval_seconds.max(1)) * 1000,
    }
}

/// Writes a verdict onto the target's health record, if the record still exists and shows
/// something else. Returns whether it wrote.
async fn write(
    store: &AnyStore,
    p: &Probe,
    t: &Tracker,
    verdict: &health::Verdict,
    now_ms: i64,
) -> Result<bool, StoreError> {
    retry_on_conflict(store, || async {
        let Some(rec) = store
            .get(records::TARGET_HEALTH, &p.partition, &p.target.key)
            .await?
        else {
            // Deregistered meanwhile: nothing to report on.
            return Ok((vec![], false));
        };
        let mut h: HealthRecord = serde_json::from_value(rec.value)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", p.target.key)))?;
        if h.state == verdict.state
            && h.reason.as_deref() == verdict.reason
            && h.description == verdict.description
        {
            return Ok((vec![], false));
        }
        h.state = verdict.state.to_string();
        h.reason = verdict.reason.map(str::to_string);
        h.description = verdict.description.clone();
        h.successes = t.successes;
        h.failures = t.failures;
        h.updated_ms = now_ms;
        let value = serde_json::to_value(&h).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((
            vec![Op::put(
                records::TARGET_HEALTH,
                &p.partition,
                &p.target.key,
                value,
                Expect::Version(rec.version),
            )],
            true,
        ))
    })
    .await
}

/// Runs the checker forever over whatever table is current.
pub async fn run(store: AnyStore, table: Arc<ArcSwap<Table>>, clock: Clock) {
    let client = prober();
    let mut trackers: HashMap<String, Tracker> = HashMap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut probes: JoinSet<(Probe, Outcome)> = JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = clock();
                let current = table.load();
                let wanted: HashSet<&str> =
                    current.probes.iter().map(|p| p.target.key.as_str()).collect();
                trackers.retain(|k, _| wanted.contains(k.as_str()));
                for p in current.probes.iter().filter(|p| p.group.health_check.enabled) {
                    let t = trackers
                        .entry(p.target.key.clone())
                        .or_insert_with(|| Tracker::new(p.target.live.state(), now));
                    if t.next_due_ms <= now && in_flight.insert(p.target.key.clone()) {
                        let p = p.clone();
                        let client = client.clone();
                        probes.spawn(async move {
                            let outcome = probe(&client, &p).await;
                            (p, outcome)
                        });
                    }
                }
            }
            Some(done) = probes.join_next() => {
                let Ok((p, outcome)) = done else { continue };
                in_flight.remove(&p.target.key);
                let now = clock();
                let Some(t) = trackers.get_mut(&p.target.key) else { continue };
                *t = health::step(t, thresholds(&p), now, outcome);
                let verdict = health::verdict(t);
                let shown = (
                    verdict.state.to_string(),
                    verdict.reason.map(str::to_string),
                    verdict.description.clone(),
                );
                if p.target.live.stored.lock().as_ref() == Some(&shown) {
                    continue;
                }
                match write(&store, &p, t, &verdict, now).await {
                    Ok(_) => {
                        p.target.live.set_state(State::parse(verdict.state));
                        *p.target.live.stored.lock() = Some(shown);
                    }
                    Err(e) => tracing::warn!(target = %p.target.key, "health: cannot record: {e}"),
                }
            }
        }
    }
}
