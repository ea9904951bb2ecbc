//! Placing a batch of identical tasks: filters (agent, constraints, CPU, memory, ports), then
//! strategies in order, one task at a time, each placement reserving what it takes.
//!
//! Two facts keep a batch fast: the request is the same for every task of the batch, and an
//! instance's state changes only when a task is placed on it. So an instance that fails a filter
//! fails it for the rest of the batch and is dropped for good, and when the first strategy is
//! `binpack` the candidates are walked in order of remaining resource from a `BTreeSet` instead
//! of scanned.

use crate::model::{
    Constraint, Demand, Failure, Instance, Placement, PlacementError, Plan, Reason, Resource,
    Resources, SpreadField, Strategy, TaskRequest,
};
use crate::query::Facts;
use rand::Rng;
use std::collections::{BTreeSet, HashMap};

/// Batches up to this size use a scan per task rather than building an index.
const SMALL_BATCH: u32 = 32;

/// Places `request.count` tasks on `instances`. Indices in the plan refer to `instances`.
/// Every task that cannot be placed gets a failure with ECS's reason: the first filter that
/// eliminated the last candidates. `rng` is used only by the `random` strategy.
pub fn place<R: Rng + ?Sized>(
    instances: &[Instance],
    request: &TaskRequest,
    rng: &mut R,
) -> Result<Plan, PlacementError> {
    if instances.is_empty() {
        return Err(PlacementError::NoInstances);
    }
    let mut batch = Batch::new(instances, request);
    let mut plan = Plan::default();
    for task in 0..request.count {
        match batch.choose(rng) {
            Ok(i) => {
                batch.take(i);
                plan.placements.push(Placement { task, instance: i });
            }
            Err(reason) => {
                // Nothing changed, so every later task of the batch fails the same way.
                plan.failures
                    .extend((task..request.count).map(|task| Failure { task, reason }));
                break;
            }
        }
    }
    Ok(plan)
}

/// Why each instance cannot take one more task of `request` once `plan`'s placements are made,
/// as `(index, reason)` in index order: the first filter each one fails, for ECS's per-instance
/// `failures[]` (a failed task's reason is the greatest of these). Instances that could still
/// take a task are left out, so after a plan with failures every instance is listed.
pub fn misfits(instances: &[Instance], request: &TaskRequest, plan: &Plan) -> Vec<(usize, Reason)> {
    let mut batch = Batch::new(instances, request);
    for p in &plan.placements {
        if p.instance < instances.len() {
            batch.take(p.instance);
        }
    }
    (0..instances.len())
        .filter_map(|i| batch.check(i).map(|r| (i, r)))
        .collect()
}

/// Why `instance` cannot take `demand` on resources alone (CPU, then memory, then ports).
pub fn misfit(remaining: &Resources, demand: &Demand) -> Option<Reason> {
    if demand.cpu > remaining.cpu {
        return Some(Reason::Cpu);
    }
    if demand.memory > remaining.memory {
        return Some(Reason::Memory);
    }
    let dup = has_dup;
    let clash = |taken: &[u16], wanted: &[u16]| wanted.iter().any(|p| taken.contains(p));
    if demand.dynamic_ports > remaining.free_dynamic_ports
        || clash(&remaining.tcp_ports, &demand.tcp_ports)
        || clash(&remaining.udp_ports, &demand.udp_ports)
        || dup(&demand.tcp_ports)
        || dup(&demand.udp_ports)
    {
        return Some(Reason::Ports);
    }
    None
}

/// What changes on an instance as the batch is placed. Resources are kept as numbers plus the
/// ports this batch took, so starting a batch allocates nothing per instance.
struct Live {
    cpu: i64,
    memory: i64,
    free_dynamic_ports: u32,
    tcp_taken: Vec<u16>,
    udp_taken: Vec<u16>,
    running: u64,
    /// Tasks of the request's group on the instance, those placed by this batch included.
    group_here: u64,
    /// The static constraints' answer, once known.
    static_ok: Option<bool>,
}

struct Batch<'a> {
    instances: &'a [Instance],
    request: &'a TaskRequest,
    live: Vec<Live>,
    /// Instances still worth looking at, in index order (the scan path).
    alive: Vec<usize>,
    /// `(remaining resource, index)` when the first strategy is binpack (the index path).
    index: Option<(Resource, BTreeSet<(i64, usize)>)>,
    /// Per spread attribute: tasks of the group per attribute value (`None`: attribute unset).
    spread_counts: HashMap<String, HashMap<Option<String>, u64>>,
    distinct: bool,
    any_dynamic: bool,
}

/// An instance as the query language sees it mid-batch.
struct View<'a> {
    instance: &'a Instance,
    live: &'a Live,
    group: &'a str,
}

impl Facts for View<'_> {
    fn agent_connected(&self) -> bool {
        self.instance.agent_connected
    }
    fn agent_version(&self) -> &str {
        &self.instance.agent_version
    }
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.instance.attributes.get(name).map(|v| v.as_deref())
    }
    fn ec2_instance_id(&self) -> &str {
        &self.instance.ec2_instance_id
    }
    fn registered_at_ms(&self) -> i64 {
        self.instance.registered_at_ms
    }
    fn running_tasks_count(&self) -> u64 {
        self.live.running
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        (self.live.group_here > 0 && pred(self.group))
            || self
                .instance
                .task_groups
                .iter()
                .any(|(g, n)| *n > 0 && g != self.group && pred(g))
    }
}

impl<'a> Batch<'a> {
    fn new(instances: &'a [Instance], request: &'a TaskRequest) -> Self {
        let group = request.group.as_str();
        let live: Vec<Live> = instances
            .iter()
            .map(|i| Live {
                cpu: i.remaining.cpu,
                memory: i.remaining.memory,
                free_dynamic_ports: i.remaining.free_dynamic_ports,
                tcp_taken: Vec::new(),
                udp_taken: Vec::new(),
                running: u64::from(i.running_tasks_count),
                group_here: u64::from(i.task_groups.get(group).copied().unwrap_or(0)),
                static_ok: None,
            })
            .collect();
        let mut spread_counts = HashMap::new();
        for s in &request.strategies {
            if let Strategy::Spread(SpreadField::Attribute(name)) = s {
                let counts: &mut HashMap<Option<String>, u64> =
                    spread_counts.entry(name.clone()).or_default();
                for (inst, l) in instances.iter().zip(&live) {
                    let value = inst.attributes.get(name).cloned().flatten();
                    *counts.entry(value).or_default() += l.group_here;
                }
            }
        }
        // Instances that cannot take the task now never can during this batch: leave them out
        // of the candidates from the start (cheap checks only; `reason` looks at everyone).
        let demand_dup = has_dup(&request.demand.tcp_ports) || has_dup(&request.demand.udp_ports);
        let candidates = (0..instances.len()).filter(|&i| {
            !demand_dup && usable(&instances[i]) && fits(&instances[i], &live[i], &request.demand)
        });
        let (index, alive) = match request.strategies.first() {
            // A small batch is cheaper to scan than to index (see `scan_least`).
            Some(Strategy::Binpack(r)) if request.count > SMALL_BATCH => {
                let mut keyed: Vec<(i64, usize)> =
                    candidates.map(|i| (live[i].get(*r), i)).collect();
                // Sorted input lets the set bulk-build in linear time.
                keyed.sort_unstable();
                (Some((*r, keyed.into_iter().collect())), Vec::new())
            }
            _ => (None, candidates.collect()),
        };
        let (mut distinct, mut any_dynamic) = (false, false);
        for c in &request.constraints {
            match c {
                Constraint::DistinctInstance => distinct = true,
                Constraint::MemberOf(e) => any_dynamic |= e.is_dynamic(),
            }
        }
        Batch {
            instances,
            request,
            live,
            alive,
            index,
            spread_counts,
            distinct,
            any_dynamic,
        }
    }

    /// The first filter instance `i` fails, in ECS's order (for the failure reason).
    fn check(&mut self, i: usize) -> Option<Reason> {
        let inst = &self.instances[i];
        if !usable(inst) {
            return Some(Reason::Agent);
        }
        if self.distinct && self.live[i].group_here > 0 {
            return Some(Reason::Attribute);
        }
        if !self.constraints_hold(i) {
            return Some(Reason::Attribute);
        }
        let l = &self.live[i];
        let mut remaining = inst.remaining.clone();
        remaining.cpu = l.cpu;
        remaining.memory = l.memory;
        remaining.free_dynamic_ports = l.free_dynamic_ports;
        remaining.tcp_ports.extend(&l.tcp_taken);
        remaining.udp_ports.extend(&l.udp_taken);
        misfit(&remaining, &self.request.demand)
    }

    /// Whether instance `i` can take the task: the same filters as [`Self::check`], cheapest
    /// first, since on the hot path only the yes/no matters.
    fn feasible(&mut self, i: usize) -> bool {
        fits(&self.instances[i], &self.live[i], &self.request.demand)
            && !(self.distinct && self.live[i].group_here > 0)
            && self.constraints_hold(i)
    }

    fn constraints_hold(&mut self, i: usize) -> bool {
        let cached = self.live[i].static_ok;
        let view = View {
            instance: &self.instances[i],
            live: &self.live[i],
            group: &self.request.group,
        };
        let mut static_ok = true;
        let mut dynamic_ok = true;
        for c in &self.request.constraints {
            if let Constraint::MemberOf(e) = c {
                if e.is_dynamic() {
                    dynamic_ok = dynamic_ok && e.matches(&view);
                } else if cached.is_none() {
                    static_ok = static_ok && e.matches(&view);
                }
            }
        }
        let static_ok = cached.unwrap_or(static_ok);
        self.live[i].static_ok = Some(static_ok);
        static_ok && (!self.any_dynamic || dynamic_ok)
    }

    fn choose<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Result<usize, Reason> {
        let feasible = match self.index.take() {
            Some((r, mut set)) => {
                let found = self.walk_index(r, &mut set);
                self.index = Some((r, set));
                found
            }
            None => match self.request.strategies.first() {
                Some(Strategy::Binpack(r)) => self.scan_least(*r),
                _ => self.scan_all(),
            },
        };
        if feasible.is_empty() {
            return Err(self.reason());
        }
        Ok(self.rank(feasible, rng))
    }

    /// Every feasible candidate, dropping the rest for the batch.
    fn scan_all(&mut self) -> Vec<usize> {
        let mut alive = std::mem::take(&mut self.alive);
        let mut feasible = Vec::new();
        alive.retain(|&i| {
            let ok = self.feasible(i);
            if ok {
                feasible.push(i);
            }
            ok
        });
        self.alive = alive;
        feasible
    }

    /// The feasible candidates tied at the least remaining `r`, in one pass. Constraints are
    /// evaluated only for candidates that fit and are not worse than the best so far, so a
    /// pass costs a few integer comparisons per instance plus a handful of evaluations.
    fn scan_least(&mut self, r: Resource) -> Vec<usize> {
        let mut alive = std::mem::take(&mut self.alive);
        let mut best: Vec<usize> = Vec::new();
        let mut least = i64::MAX;
        alive.retain(|&i| {
            if !fits(&self.instances[i], &self.live[i], &self.request.demand) {
                return false;
            }
            let v = self.live[i].get(r);
            if v > least {
                return true;
            }
            if !self.feasible(i) {
                return false;
            }
            if v < least {
                least = v;
                best.clear();
            }
            best.push(i);
            true
        });
        self.alive = alive;
        best
    }

    /// Walks the binpack index upwards from the smallest value that could fit, dropping
    /// instances that fail a filter; returns the feasible instances tied at the least value.
    fn walk_index(&mut self, r: Resource, set: &mut BTreeSet<(i64, usize)>) -> Vec<usize> {
        let need = self.request.demand.get(r);
        let only_binpack = self.request.strategies.len() == 1;
        let mut feasible = Vec::new();
        let mut dead = Vec::new();
        let mut least = None;
        for &(v, i) in set.range((need, 0)..) {
            if least.is_some_and(|m| m != v) {
                break;
            }
            if !self.feasible(i) {
                dead.push((v, i));
                continue;
            }
            least = Some(v);
            feasible.push(i);
            // Ties go to the lowest index, which the set yields first: no need to look further.
            if only_binpack {
                break;
            }
        }
        for d in dead {
            set.remove(&d);
        }
        feasible
    }

    /// Applies the strategies in order to the feasible set (in index order); what is still tied
    /// at the end goes to the lowest index.
    fn rank<R: Rng + ?Sized>(&self, mut set: Vec<usize>, rng: &mut R) -> usize {
        set.sort_unstable();
        for s in &self.request.strategies {
            if set.len() <= 1 {
                break;
            }
            match s {
                Strategy::Binpack(r) => keep_least(&mut set, |i| self.live[i].get(*r)),
                Strategy::Spread(SpreadField::InstanceId) => {
                    keep_least(&mut set, |i| self.live[i].group_here as i64)
                }
                Strategy::Spread(SpreadField::Attribute(name)) => {
                    let counts = self.spread_counts.get(name);
                    keep_least(&mut set, |i| {
                        let v = self.instances[i].attributes.get(name).cloned().flatten();
                        counts
                            .and_then(|c| c.get(&v))
                            .map_or(0, |n| i64::try_from(*n).unwrap_or(i64::MAX))
                    })
                }
                Strategy::Random => {
                    let pick = set[rng.gen_range(0..set.len())];
                    set = vec![pick];
                }
            }
        }
        set[0]
    }

    /// ECS's reason for a task that fits nowhere: filters run in order over the whole fleet and
    /// the reason is the one that removed the last candidates, i.e. the latest filter any
    /// instance reached. Instances dropped earlier are unchanged since, so checking now is exact.
    fn reason(&mut self) -> Reason {
        (0..self.instances.len())
            .filter_map(|i| self.check(i))
            .max()
            .unwrap_or(Reason::Attribute)
    }

    fn take(&mut self, i: usize) {
        let demand = &self.request.demand;
        let old = self.index.as_ref().map(|(r, _)| self.live[i].get(*r));
        let l = &mut self.live[i];
        // Saturating: a negative demand from a careless caller must not overflow.
        l.cpu = l.cpu.saturating_sub(demand.cpu);
        l.memory = l.memory.saturating_sub(demand.memory);
        l.free_dynamic_ports = l.free_dynamic_ports.saturating_sub(demand.dynamic_ports);
        l.tcp_taken.extend(&demand.tcp_ports);
        l.udp_taken.extend(&demand.udp_ports);
        l.running += 1;
        l.group_here += 1;
        let new = self.index.as_ref().map(|(r, _)| l.get(*r));
        if let (Some((_, set)), Some(old), Some(new)) = (self.index.as_mut(), old, new) {
            set.remove(&(old, i));
            set.insert((new, i));
        }
        for (name, counts) in &mut self.spread_counts {
            let v = self.instances[i].attributes.get(name).cloned().flatten();
            *counts.entry(v).or_default() += 1;
        }
    }
}

/// Keeps the members of `set` with the least `key`, in their order.
fn keep_least(set: &mut Vec<usize>, key: impl Fn(usize) -> i64) {
    let Some(min) = set.iter().map(|&i| key(i)).min() else {
        return;
    };
    set.retain(|&i| key(i) == min);
}

impl Live {
    fn get(&self, r: Resource) -> i64 {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
        }
    }
}

/// Connected, and ACTIVE with a working runtime.
fn usable(i: &Instance) -> bool {
    i.agent_connected && i.can_run_tasks
}

/// The agent and resource filters on numbers and port lists, without building a `Resources`.
fn fits(i: &Instance, l: &Live, d: &Demand) -> bool {
    let free = |taken: &[u16], extra: &[u16], wanted: &[u16]| {
        wanted
            .iter()
            .all(|p| !taken.contains(p) && !extra.contains(p))
    };
    usable(i)
        && d.cpu <= l.cpu
        && d.memory <= l.memory
        && d.dynamic_ports <= l.free_dynamic_ports
        && free(&i.remaining.tcp_ports, &l.tcp_taken, &d.tcp_ports)
        && free(&i.remaining.udp_ports, &l.udp_taken, &d.udp_ports)
}

fn has_dup(v: &[u16]) -> bool {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.windows(2).any(|w| w[0] == w[1])
}
