//! The routing table: an immutable snapshot of every partition's ELBv2 records, compiled for the
//! request path (listeners by port, rules in priority order with compiled conditions, target
//! groups with their targets). A new table replaces the old one atomically; what must outlive a
//! table — per-target outstanding counts, health, round-robin turns and metric counters — lives
//! in [`Lives`] and [`crate::metrics::Registry`] and is shared by reference.

use crate::InstanceAddresses;
use crate::balance::Algorithm;
use crate::health::State;
use crate::matching::{self, Condition};
use crate::metrics::{Counters, Registry};
use berth_elbv2::records::{
    self, HealthCheck, HealthRecord, ListenerRecord, RuleRecord, TargetGroupRecord, TargetRecord,
};
use berth_shapes::elbv2 as wire;
use berth_store::{AnyStore, Store, StoreError};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// ALB's default `idle_timeout.timeout_seconds`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A load balancer as the data plane reads it: the two fields of `LoadBalancerRecord` it needs.
/// `attributes` holds only what ModifyLoadBalancerAttributes set, so an unset idle timeout
/// falls back to the server's `--lb-idle-timeout-secs`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredBalancer {
    arn: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Balancer {
    /// The `LoadBalancer` metric dimension, `app/<name>/<id>`.
    pub dimension: String,
    /// How long a target may take to answer before the client gets 504.
    pub idle_timeout: Duration,
    /// `routing.http.xff_header_processing.mode`.
    pub xff: XffMode,
    /// `routing.http.xff_client_port.enabled`: `X-Forwarded-For` names the client's port too.
    pub xff_client_port: bool,
    /// `routing.http2.enabled`: clients may speak HTTP/2 (else HTTP/1.1 only).
    pub http2: bool,
    /// `routing.http.preserve_host_header.enabled`: targets get the client's `Host` unchanged
    /// (else with the listener's port, as ALB does by default).
    pub preserve_host: bool,
    pub metrics: Arc<Counters>,
}

/// What the load balancer does with a request's `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XffMode {
    /// Adds the client's address to the header, or sets it (ALB's default).
    Append,
    /// Passes the header on as the client sent it (or not at all).
    Preserve,
    /// Drops it.
    Remove,
}

impl StoredBalancer {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Debug)]
pub struct Listener {
    pub arn: String,
    pub partition: String,
    pub port: u16,
    pub protocol: String,
    /// `X-Forwarded-Proto`: the protocol in lower case, made once rather than per request.
    pub forwarded_proto: http::HeaderValue,
    pub balancer: Arc<Balancer>,
    /// In priority order.
    pub rules: Vec<Rule>,
    pub default_action: Action,
}

#[derive(Debug)]
pub struct Rule {
    pub priority: i32,
    pub conditions: Vec<Condition>,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    Forward(Vec<Forward>),
    Fixed {
        status: u16,
        content_type: Option<String>,
        body: Bytes,
    },
    Redirect(wire::RedirectActionConfig),
    /// No action berth can carry out (authentication): answered 503, as ALB does when it
    /// cannot route.
    Unroutable,
}

/// One target group of a forward action, its weight and the group's counters under this
/// load balancer.
#[derive(Debug)]
pub struct Forward {
    pub group: Arc<Group>,
    pub weight: u32,
    pub metrics: Arc<Counters>,
}

#[derive(Debug)]
pub struct Group {
    /// The `TargetGroup` metric dimension, `targetgroup/<name>/<id>`.
    pub dimension: String,
    pub algorithm: Algorithm,
    pub health_check: HealthCheck,
    pub turn: Arc<AtomicUsize>,
    /// Every registered target, draining ones included (they finish what they have).
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// `<target group ARN>|<id>|<port>`, the key of its records.
    pub key: String,
    pub port: u16,
    /// `None` for an instance id no resolver knows: health checks fail, requests get 502.
    pub addr: Option<SocketAddr>,
    /// Deregistered: no new requests.
    pub draining: bool,
    /// When a draining target's remaining requests are cut (Unix ms).
    pub drain_deadline_ms: Option<i64>,
    pub live: Arc<Live>,
}

/// A health record's (state, reason, description): what DescribeTargetHealth shows.
pub type Shown = (String, Option<String>, Option<String>);

/// What is known of a target beyond one table: kept while the target stays registered.
#[derive(Debug)]
pub struct Live {
    pub outstanding: AtomicUsize,
    /// [`State`] as a byte, so the request path reads it without a lock.
    state: AtomicU8,
    /// The health record's (state, reason, description) as last read or written, so the checker
    /// writes only on a change.
    pub stored: Mutex<Option<Shown>>,
    /// Set once the drain deadline passed: in-flight requests to the target stop.
    pub drained: tokio::sync::watch::Sender<bool>,
}

impl Live {
    fn new() -> Live {
        Live {
            outstanding: AtomicUsize::new(0),
            state: AtomicU8::new(0),
            stored: Mutex::new(None),
            drained: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            1 => State::Healthy,
            2 => State::Unhealthy,
            _ => State::Initial,
        }
    }

    pub fn set_state(&self, s: State) {
        let b = match s {
            State::Initial => 0,
            State::Healthy => 1,
            State::Unhealthy => 2,
        };
        self.state.store(b, Ordering::Relaxed);
    }
}

/// Per-target and per-group state that outlives tables.
#[derive(Debug, Default)]
pub struct Lives {
    targets: Mutex<HashMap<String, Arc<Live>>>,
    turns: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// A target the health checker probes.
#[derive(Debug, Clone)]
pub struct Probe {
    pub partition: String,
    pub group: Arc<Group>,
    pub target: Target,
}

#[derive(Debug, Default)]
pub struct Table {
    /// The listener serving each port. Two load balancers may both ask for a port: the first
    /// by (partition, ARN) gets it, the other is reported in `conflicts`.
    pub ports: HashMap<u16, Arc<Listener>>,
    /// Listeners that lost their port to another, with the winner's ARN.
    pub conflicts: Vec<(String, u16, String)>,
    /// Registered targets of groups some listener or rule forwards to, not draining.
    pub probes: Vec<Probe>,
    /// Every target (draining ones too), for the drain deadlines.
    pub targets: Vec<Target>,
}

/// Everything the table is built from, for one partition.
#[derive(Debug, Default)]
pub struct PartitionRecords {
    pub partition: String,
    balancers: Vec<StoredBalancer>,
    groups: Vec<TargetGroupRecord>,
    listeners: Vec<ListenerRecord>,
    rules: Vec<RuleRecord>,
    targets: Vec<TargetRecord>,
    health: HashMap<String, HealthRecord>,
}

/// Reads one partition's ELBv2 records (a few scans; the API's guard makes each list of one
/// kind consistent, and a rebuild follows any later change).
pub async fn load(store: &AnyStore, partition: &str) -> Result<PartitionRecords, StoreError> {
    let all = usize::MAX;
    let balancers = store
        .list_as::<StoredBalancer>(records::LOAD_BALANCER, partition, "", None, all)
        .await?;
    let groups = store
        .list_as::<TargetGroupRecord>(records::TARGET_GROUP, partition, "", None, all)
        .await?;
    let listeners = store
        .list_as::<ListenerRecord>(records::LISTENER, partition, "", None, all)
        .await?;
    let rules = store
        .list_as::<RuleRecord>(records::RULE, partition, "", None, all)
        .await?;
    let targets = store
        .list_as::<TargetRecord>(records::TARGET, partition, "", None, all)
        .await?;
    let health = store
        .list_as::<HealthRecord>(records::TARGET_HEALTH, partition, "", None, all)
        .await?;
    Ok(PartitionRecords {
        partition: partition.to_string(),
        balancers: balancers.into_iter().map(|r| r.value).collect(),
        groups: groups.into_iter().map(|r| r.value).collect(),
        listeners: listeners.into_iter().map(|r| r.value).collect(),
        rules: rules.into_iter().map(|r| r.value).collect(),
        targets: targets.into_iter().map(|r| r.value).collect(),
        health: health.into_iter().map(|r| (r.key, r.value)).collect(),
    })
}

/// The part of an ARN after its resource type's `/`: `app/<name>/<id>` for a load balancer,
/// `targetgroup/<name>/<id>` for a target group (CloudWatch's dimensions).
fn dimension(arn: &str) -> String {
    match arn.split_once(":loadbalancer/") {
        Some((_, rest)) => rest.to_string(),
        None => arn.rsplit(':').next().unwrap_or(arn).to_string(),
    }
}

fn fixed(cfg: &wire::FixedResponseActionConfig) -> Action {
    Action::Fixed {
        status: cfg
            .status_code
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200),
        content_type: cfg.content_type.clone(),
        body: Bytes::from(cfg.message_body.clone().unwrap_or_default()),
    }
}

/// Builds the table from every partition's records at `now_ms`; `idle_timeout` is for load
/// balancers that set none.
pub fn build(
    partitions: &[PartitionRecords],
    now_ms: i64,
    idle_timeout: Duration,
    lives: &Lives,
    metrics: &Registry,
    instances: &dyn InstanceAddresses,
) -> Table {
    let mut table = Table::default();
    let mut live_keys: Vec<String> = Vec::new();
    let mut live_scopes: Vec<(String, Option<String>)> = Vec::new();
    let mut listeners: Vec<Arc<Listener>> = Vec::new();
    for p in partitions {
        let mut groups: HashMap<&str, Arc<Group>> = HashMap::new();
        for g in &p.groups {
            let delay_ms = g
                .attributes
                .get("deregistration_delay.timeout_seconds")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(300)
                * 1000;
            let mut targets = Vec::new();
            for t in p.targets.iter().filter(|t| t.target_group_arn == g.arn) {
                let deadline = t.deregistered_ms.map(|at| at + delay_ms);
                if deadline.is_some_and(|d| d <= now_ms) {
                    continue;
                }
                let Ok(port) = u16::try_from(t.port) else {
                    continue;
                };
                let key = records::target_key(&g.arn, &t.id, t.port);
                let ip = if g.target_type == "ip" {
                    t.id.parse::<IpAddr>().ok()
                } else {
                    instances.address(&p.partition, &t.id)
                };
                let live = lives
                    .targets
                    .lock()
                    .entry(key.clone())
                    .or_insert_with(|| Arc::new(Live::new()))
                    .clone();
                if let Some(h) = p.health.get(&key) {
                    live.set_state(State::parse(&h.state));
                    *live.stored.lock() =
                        Some((h.state.clone(), h.reason.clone(), h.description.clone()));
                }
                live_keys.push(key.clone());
                targets.push(Target {
                    key,
                    port,
                    addr: ip.map(|ip| SocketAddr::new(ip, port)),
                    draining: t.deregistered_ms.is_some(),
                    drain_deadline_ms: deadline,
                    live,
                });
            }
            let turn = lives.turns.lock().entry(g.arn.clone()).or_default().clone();
            table.targets.extend(targets.iter().cloned());
            groups.insert(
                g.arn.as_str(),
                Arc::new(Group {
                    dimension: dimension(&g.arn),
                    algorithm: Algorithm::from_attribute(
                        g.attributes
                            .get("load_balancing.algorithm.type")
                            .map(String::as_str),
                    ),
                    health_check: g.health_check.clone(),
                    turn,
                    targets,
                }),
            );
        }
        let mut used: Vec<Arc<Group>> = Vec::new();
        for b in &p.balancers {
            let dim = dimension(&b.arn);
            live_scopes.push((dim.clone(), None));
            let own_timeout = b
                .attributes
                .get("idle_timeout.timeout_seconds")
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            // The API checked these values; anything else reads as ALB's default.
            let xff = match b.attribute("routing.http.xff_header_processing.mode") {
                Some("preserve") => XffMode::Preserve,
                Some("remove") => XffMode::Remove,
                _ => XffMode::Append,
            };
            let balancer = Arc::new(Balancer {
                dimension: dim.clone(),
                idle_timeout: own_timeout.unwrap_or(idle_timeout),
                xff,
                xff_client_port: b.attribute("routing.http.xff_client_port.enabled")
                    == Some("true"),
                http2: b.attribute("routing.http2.enabled") != Some("false"),
                preserve_host: b.attribute("routing.http.preserve_host_header.enabled")
                    == Some("true"),
                metrics: metrics.counters(&p.partition, &dim, None),
            });
            let mut action_of = |actions: &[wire::Action]| -> Action {
                compile_action(actions, &groups, |g| {
                    if !used.iter().any(|u| Arc::ptr_eq(u, g)) {
                        used.push(g.clone());
                    }
                    live_scopes.push((dim.clone(), Some(g.dimension.clone())));
                    metrics.counters(&p.partition, &dim, Some(&g.dimension))
                })
            };
            for l in p.listeners.iter().filter(|l| l.load_balancer_arn == b.arn) {
                let Ok(port) = u16::try_from(l.port) else {
                    continue;
                };
                let mut rules: Vec<Rule> = p
                    .rules
                    .iter()
                    .filter(|r| r.listener_arn == l.arn)
                    .map(|r| Rule {
                        priority: r.priority,
                        conditions: matching::compile(&r.conditions),
                        action: action_of(&r.actions),
                    })
                    .collect();
                rules.sort_by_key(|r| r.priority);
                listeners.push(Arc::new(Listener {
                    arn: l.arn.clone(),
                    partition: p.partition.clone(),
                    port,
                    protocol: l.protocol.clone(),
                    forwarded_proto: http::HeaderValue::from_str(&l.protocol.to_ascii_lowercase())
                        .unwrap_or(http::HeaderValue::from_static("http")),
                    balancer: balancer.clone(),
                    rules,
                    default_action: action_of(&l.default_actions),
                }));
            }
        }
        for g in used {
            for t in g.targets.iter().filter(|t| !t.draining) {
                table.probes.push(Probe {
                    partition: p.partition.clone(),
                    group: g.clone(),
                    target: t.clone(),
                });
            }
        }
    }
    listeners.sort_by(|a, b| (&a.partition, &a.arn).cmp(&(&b.partition, &b.arn)));
    for l in listeners {
        match table.ports.get(&l.port) {
            Some(winner) => table
                .conflicts
                .push((l.arn.clone(), l.port, winner.arn.clone())),
            None => {
                table.ports.insert(l.port, l);
            }
        }
    }
    let live_keys: std::collections::HashSet<String> = live_keys.into_iter().collect();
    lives.targets.lock().retain(|k, _| live_keys.contains(k));
    metrics.retain(|lb, tg| {
        live_scopes
            .iter()
            .any(|(l, t)| l == lb && t.as_deref() == tg)
    });
    table
}

/// The action a request gets from a rule's (or listener's) actions: the terminal one, since
/// berth serves one terminal action per rule and no authentication actions.
fn compile_action(
    actions: &[wire::Action],
    groups: &HashMap<&str, Arc<Group>>,
    mut forward_metrics: impl FnMut(&Arc<Group>) -> Arc<Counters>,
) -> Action {
    let mut sorted: Vec<&wire::Action> = actions.iter().collect();
    sorted.sort_by_key(|a| a.order.unwrap_or(i32::MAX));
    for a in sorted {
        match a.r#type.as_deref() {
            Some("forward") => {
                let mut tuples: Vec<(String, u32)> = a
                    .forward_config
                    .as_ref()
                    .and_then(|f| f.target_groups.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        let w = u32::try_from(t.weight.unwrap_or(1)).unwrap_or(0);
                        t.target_group_arn.clone().map(|arn| (arn, w))
                    })
                    .collect();
                if tuples.is_empty()
                    && let Some(arn) = &a.target_group_arn
                {
                    tuples.push((arn.clone(), 1));
                }
                let forwards = tuples
                    .into_iter()
                    .filter_map(|(arn, weight)| {
                        let group = groups.get(arn.as_str())?.clone();
                        let metrics = forward_metrics(&group);
                        Some(Forward {
                            group,
                            weight,
                            metrics,
                        })
                    })
                    .collect();
                return Action::Forward(forwards);
            }
            Some("fixed-response") => {
                if let Some(cfg) = &a.fixed_response_config {
                    return fixed(cfg);
                }
            }
            Some("redirect") => {
                if let Some(cfg) = &a.redirect_config {
                    return Action::Redirect(cfg.clone());
                }
            }
            _ => {}
        }
    }
    Action::Unroutable
}

impl Listener {
    /// The action of the first rule (by priority) whose conditions all match, else the default.
    pub fn route(&self, req: &matching::RequestView<'_>) -> &Action {
        self.rules
            .iter()
            .find(|r| matching::all_match(&r.conditions, req))
            .map(|r| &r.action)
            .unwrap_or(&self.default_action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoInstances;
    impl InstanceAddresses for NoInstances {
        fn address(&self, _: &str, id: &str) -> Option<IpAddr> {
            (id == "i-known").then(|| IpAddr::from([127, 0, 0, 9]))
        }
    }

    fn group(arn: &str, target_type: &str) -> TargetGroupRecord {
        TargetGroupRecord {
            arn: arn.into(),
            name: "g".into(),
            protocol: "HTTP".into(),
            protocol_version: "HTTP1".into(),
            port: 80,
            vpc_id: "vpc".into(),
            target_type: target_type.into(),
            ip_address_type: "ipv4".into(),
            target_control_port: None,
            health_check: HealthCheck {
                enabled: true,
                protocol: "HTTP".into(),
                port: "traffic-port".into(),
                path: "/".into(),
                interval_seconds: 30,
                timeout_seconds: 5,
                healthy_threshold: 5,
                unhealthy_threshold: 2,
                matcher: "200".into(),
            },
            attributes: [(
                "deregistration_delay.timeout_seconds".to_string(),
                "10".to_string(),
            )]
            .into(),
            tags: Default::default(),
        }
    }

    fn target(tg: &str, id: &str, port: i32, deregistered_ms: Option<i64>) -> TargetRecord {
        TargetRecord {
            target_group_arn: tg.into(),
            id: id.into(),
            port,
            availability_zone: None,
            registered_ms: 0,
            deregistered_ms,
        }
    }

    fn forward(tg: &str) -> wire::Action {
        wire::Action {
            r#type: Some("forward".into()),
            target_group_arn: Some(tg.into()),
            ..Default::default()
        }
    }

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/abc";
    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/def";
    const TG2: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/idle/fed";

    fn records() -> PartitionRecords {
        let listener = ListenerRecord {
            arn: format!("{LB}/l1"),
            load_balancer_arn: LB.into(),
            port: 8080,
            protocol: "HTTP".into(),
            certificates: vec![],
            ssl_policy: None,
            mutual_authentication: None,
            default_actions: vec![forward(TG)],
            default_rule_arn: "r0".into(),
            tags: Default::default(),
            default_rule_tags: Default::default(),
        };
        let rule = |priority: i32, path: &str, body: &str| RuleRecord {
            arn: format!("r{priority}"),
            listener_arn: listener.arn.clone(),
            priority,
            conditions: vec![wire::RuleCondition {
                field: Some("path-pattern".into()),
                values: Some(vec![path.into()]),
                ..Default::default()
            }],
            actions: vec![wire::Action {
                r#type: Some("fixed-response".into()),
                fixed_response_config: Some(wire::FixedResponseActionConfig {
                    message_body: Some(body.into()),
                    status_code: Some("418".into()),
                    content_type: None,
                }),
                ..Default::default()
            }],
            transforms: vec![],
            tags: Default::default(),
        };
        PartitionRecords {
            partition: "1/us-east-1".into(),
            balancers: vec![StoredBalancer {
                arn: LB.into(),
                attributes: Default::default(),
            }],
            groups: vec![group(TG, "ip"), group(TG2, "instance")],
            listeners: vec![listener.clone()],
            // Stored out of priority order on purpose.
            rules: vec![rule(20, "/a*", "second"), rule(10, "/ab*", "first")],
            targets: vec![
                target(TG, "127.0.0.1", 9001, None),
                target(TG, "127.0.0.1", 9002, Some(1_000)),
                target(TG, "127.0.0.1", 9003, Some(0)),
                target(TG2, "i-known", 80, None),
            ],
            health: Default::default(),
        }
    }

    #[test]
    fn rules_route_by_priority_and_only_used_groups_are_probed() {
        let lives = Lives::default();
        let metrics = Registry::default();
        let table = build(
            &[records()],
            10_500,
            DEFAULT_IDLE_TIMEOUT,
            &lives,
            &metrics,
            &NoInstances,
        );
        let l = table.ports.get(&8080).expect("listener on 8080");
        let headers = http::HeaderMap::new();
        let view = |path| matching::RequestView {
            method: "GET",
            host: None,
            path,
            query: None,
            headers: &headers,
            source: IpAddr::from([127, 0, 0, 1]),
        };
        let body_of = |a: &Action| match a {
            Action::Fixed { body, .. } => String::from_utf8_lossy(body).into_owned(),
            Action::Forward(f) => format!("forward {}", f[0].group.dimension),
            _ => "other".into(),
        };
        assert_eq!(body_of(l.route(&view("/abc"))), "first");
        assert_eq!(body_of(l.route(&view("/axe"))), "second");
        assert_eq!(
            body_of(l.route(&view("/zzz"))),
            "forward targetgroup/blue/def"
        );
        assert_eq!(l.balancer.dimension, "app/web/abc");
        // 9003's drain ended (0 + 10 s < now); 9002 still drains and is not probed; TG2 is used
        // by nothing.
        let probed: Vec<u16> = table.probes.iter().map(|p| p.target.port).collect();
        assert_eq!(probed, [9001]);
        let all: Vec<(u16, bool)> = table.targets.iter().map(|t| (t.port, t.draining)).collect();
        assert_eq!(all, [(9001, false), (9002, true), (80, false)]);
        assert_eq!(
            table.targets[2].addr,
            Some(SocketAddr::from(([127, 0, 0, 9], 80)))
        );
    }

    #[test]
    fn live_state_survives_a_rebuild() {
        let lives = Lives::default();
        let metrics = Registry::default();
        let first = build(
            &[records()],
            0,
            DEFAULT_IDLE_TIMEOUT,
            &lives,
            &metrics,
            &NoInstances,
        );
        first.probes[0]
            .target
            .live
            .outstanding
            .store(3, Ordering::Relaxed);
        let second = build(
            &[records()],
            0,
            DEFAULT_IDLE_TIMEOUT,
            &lives,
            &metrics,
            &NoInstances,
        );
        assert_eq!(
            second.probes[0]
                .target
                .live
                .outstanding
                .load(Ordering::Relaxed),
            3
        );
    }

    #[test]
    fn a_port_two_balancers_want_goes_to_one_and_the_other_is_reported() {
        let mut other = records();
        other.partition = "2/us-east-1".into();
        for l in &mut other.listeners {
            l.arn = format!("{}-other", l.arn);
        }
        let table = build(
            &[records(), other],
            0,
            DEFAULT_IDLE_TIMEOUT,
            &Lives::default(),
            &Registry::default(),
            &NoInstances,
        );
        assert_eq!(table.ports.len(), 1);
        assert_eq!(table.conflicts.len(), 1);
        assert_eq!(table.conflicts[0].1, 8080);
    }
}
