//! Benchmark of berth-scheduler: builds 10,000 simulated instances of varied sizes and
//! attributes, places tasks with binpack(memory) and a `memberOf` constraint on one core, and
//! prints placements per second and bin-packing efficiency (instances used vs a lower bound).
//!
//! Run: `cargo run --release -p berth-bench-scheduler [-- --instances N]`.

use berth_scheduler::{
    Constraint, Demand, Instance, Plan, Resource, Resources, Strategy, TaskRequest, place,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Instance types of the simulated fleet: (name, CPU units, MiB).
const TYPES: [(&str, i64, i64); 5] = [
    ("c5.large", 2048, 4096),
    ("m5.large", 2048, 8192),
    ("r5.large", 2048, 16384),
    ("m5.xlarge", 4096, 16384),
    ("m5.2xlarge", 8192, 32768),
];

/// Task shapes (CPU units, MiB) cycled through by the mixed runs.
const SHAPES: [(i64, i64); 4] = [(256, 512), (512, 1024), (128, 256), (1024, 2048)];

const MEMBER_OF: &str = "attribute:ecs.instance-type =~ m5.* and attribute:stack != test";

fn fleet(n: usize, uniform: bool, seed: u64) -> Vec<Instance> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let (ty, cpu, memory) = if uniform {
                TYPES[3]
            } else {
                TYPES[rng.gen_range(0..TYPES.len())]
            };
            let stack = if rng.gen_bool(0.2) { "test" } else { "prod" };
            let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
            let attributes = [
                ("ecs.instance-type", ty),
                ("ecs.availability-zone", zone),
                ("ecs.os-type", "linux"),
                ("stack", stack),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
            Instance {
                id: format!("{i:032x}"),
                ec2_instance_id: format!("i-{i:017x}"),
                attributes,
                registered_at_ms: 1_700_000_000_000 + i as i64,
                agent_connected: true,
                agent_version: "1.0.0".into(),
                can_run_tasks: true,
                running_tasks_count: 0,
                remaining: Resources {
                    cpu,
                    memory,
                    tcp_ports: vec![22, 2375, 2376, 51678, 51679],
                    udp_ports: vec![],
                    free_dynamic_ports: 28_232,
                },
                task_groups: Default::default(),
            }
        })
        .collect()
}

fn request(shape: (i64, i64), count: u32) -> Result<TaskRequest, String> {
    let member_of =
        Constraint::from_wire("memberOf", Some(MEMBER_OF)).map_err(|e| e.to_string())?;
    Ok(TaskRequest {
        demand: Demand {
            cpu: shape.0,
            memory: shape.1,
            dynamic_ports: 1,
            ..Demand::default()
        },
        group: "family:bench".into(),
        constraints: vec![member_of],
        strategies: vec![Strategy::Binpack(Resource::Memory)],
        count,
    })
}

/// Applies a plan to the fleet, as the caller's store transaction would.
fn apply(fleet: &mut [Instance], req: &TaskRequest, plan: &Plan) {
    for p in &plan.placements {
        let i = &mut fleet[p.instance];
        i.remaining.take(&req.demand);
        i.running_tasks_count += 1;
        *i.task_groups.entry(req.group.clone()).or_default() += 1;
    }
}

/// CPU time of this process (user + system) from `/proc/self/stat`, in clock ticks of 10 ms.
/// The box is shared and busy, so CPU time says more about the code than wall time does.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
    let get = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

struct Run {
    placed: u64,
    calls: u64,
    elapsed: Duration,
    cpu: Duration,
    used: usize,
    demand: (i64, i64),
}

/// Places batches of `batch` tasks, cycling the shapes, until `target_memory` MiB is placed or
/// a whole round of shapes fails. Only the `place` calls are timed.
fn run(fleet: &mut [Instance], batch: u32, target_memory: i64, mixed: bool) -> Result<Run, String> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut r = Run {
        placed: 0,
        calls: 0,
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
        used: 0,
        demand: (0, 0),
    };
    let mut used = vec![false; fleet.len()];
    let mut failed_in_a_row = 0;
    let mut k = 0usize;
    let ticks = cpu_ticks();
    while r.demand.1 < target_memory && failed_in_a_row < SHAPES.len() {
        let shape = if mixed {
            SHAPES[k % SHAPES.len()]
        } else {
            SHAPES[0]
        };
        k += 1;
        let left = (target_memory - r.demand.1) / shape.1;
        let count = u32::try_from(left.max(1)).unwrap_or(u32::MAX).min(batch);
        let req = request(shape, count)?;
        let start = Instant::now();
        let plan = place(fleet, &req, &mut rng).map_err(|e| e.to_string())?;
        r.elapsed += start.elapsed();
        r.calls += 1;
        if plan.placements.is_empty() {
            failed_in_a_row += 1;
            continue;
        }
        failed_in_a_row = 0;
        for p in &plan.placements {
            used[p.instance] = true;
        }
        r.placed += plan.placements.len() as u64;
        r.demand.0 += shape.0 * plan.placements.len() as i64;
        r.demand.1 += shape.1 * plan.placements.len() as i64;
        apply(fleet, &req, &plan);
    }
    r.used = used.iter().filter(|u| **u).count();
    // Bookkeeping outside `place` is in here too, so this rate is a floor.
    r.cpu = Duration::from_millis((cpu_ticks() - ticks) * 10);
    Ok(r)
}

/// The fewest eligible instances whose capacity could hold the demand (largest first): no
/// packing can use fewer.
fn lower_bound(fleet: &[Instance], demand: (i64, i64)) -> usize {
    let expr = berth_scheduler::parse(MEMBER_OF).ok();
    let eligible = |i: &&Instance| expr.as_ref().is_some_and(|e| e.matches(*i));
    let bound = |key: fn(&Instance) -> i64, need: i64| {
        let mut caps: Vec<i64> = fleet.iter().filter(eligible).map(key).collect();
        caps.sort_unstable_by(|a, b| b.cmp(a));
        let mut sum = 0;
        caps.iter()
            .position(|c| {
                sum += c;
                sum >= need
            })
            .map_or(caps.len(), |p| p + 1)
    };
    bound(|i| i.remaining.cpu, demand.0).max(bound(|i| i.remaining.memory, demand.1))
}

fn report(label: &str, fresh: &[Instance], r: &Run) {
    let rate = r.placed as f64 / r.elapsed.as_secs_f64().max(1e-9);
    let cpu_rate = r.placed as f64 / r.cpu.as_secs_f64().max(1e-2);
    let bound = lower_bound(fresh, r.demand);
    println!(
        "{label}: {} placements in {} calls, {:.1} ms wall in place(): {:.0} placements/s \
         (per CPU-second, whole loop: {:.0}); instances used {} vs lower bound {} (efficiency {:.1}%)",
        r.placed,
        r.calls,
        r.elapsed.as_secs_f64() * 1e3,
        rate,
        cpu_rate,
        r.used,
        bound,
        100.0 * bound as f64 / r.used.max(1) as f64,
    );
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let n = args
        .iter()
        .position(|a| a == "--instances")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000usize);
    let varied = fleet(n, false, 1);
    let eligible = {
        let e = berth_scheduler::parse(MEMBER_OF).map_err(|e| e.to_string())?;
        varied.iter().filter(|i| e.matches(*i)).count()
    };
    println!(
        "fleet: {n} instances ({eligible} match `{MEMBER_OF}`), strategy binpack(memory), one core"
    );

    // Asking for as much as the whole fleet holds: every task that fits is placed.
    let all: i64 = varied.iter().map(|i| i.remaining.memory).sum();
    let mut f = varied.clone();
    let r = run(&mut f, u32::MAX, all, false)?;
    report("fill, one batch, 256 CPU/512 MiB", &varied, &r);

    let mut f = varied.clone();
    let r = run(&mut f, 1000, all, true)?;
    report("fill, mixed shapes, batches of 1000", &varied, &r);

    let mut f = varied.clone();
    let r = run(&mut f, 10, 20_000 * 512, true)?;
    report(
        "mixed shapes, batches of 10 (RunTask's max count)",
        &varied,
        &r,
    );

    let half: i64 = varied
        .iter()
        .filter(|i| i.attributes.get("stack").cloned().flatten().as_deref() == Some("prod"))
        .map(|i| i.remaining.memory)
        .sum::<i64>()
        / 4;
    let mut f = varied.clone();
    let r = run(&mut f, 1000, half, true)?;
    report(
        "varied fleet, ~half the eligible memory, mixed",
        &varied,
        &r,
    );

    let uniform = fleet(n, true, 1);
    let half: i64 = uniform.iter().map(|i| i.remaining.memory).sum::<i64>() * 4 / 10;
    let mut f = uniform.clone();
    let r = run(&mut f, 1000, half, true)?;
    report(
        "uniform m5.xlarge fleet, ~40% of memory, mixed",
        &uniform,
        &r,
    );
    Ok(())
}
