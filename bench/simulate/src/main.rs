//! Converges one REPLICA service of TASKS tasks (default 100,000) across NODES simulated nodes
//! (default 1,000) and prints how long the real control plane took, in wall time, to get every
//! task RUNNING and the service steady. Each task holds 10 CPU units and 16 MiB; each node offers
//! 1,024 units and 2,048 MiB, so the fleet is about 98 % full by CPU. Invariant checks are off
//! (they scan the store several times a step); the `berth-sim` tests run them.
//! Usage: `berth-bench-simulate [TASKS [NODES [file]]]`.

use berth_sim::{Options, Sim};
use serde_json::json;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    // `file` keeps the store in a SQLite file (WAL) as the server does; by default it is in
    // memory, as in the simulation tests, so the number is the controller's and placement's.
    let on_file = args.next().as_deref() == Some("file");
    let dir = std::env::temp_dir().join(format!("berth-bench-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let options = Options {
        checks: false,
        store_path: on_file.then(|| dir.join("berth.db")),
        ..Options::default()
    };
    let t0 = Instant::now();
    let mut sim = Sim::new(1, nodes, options).await;
    sim.call(
        "RegisterTaskDefinition",
        json!({"family": "bench", "containerDefinitions": [{
            "name": "app", "image": "busybox", "cpu": 10, "memory": 16
        }]}),
    )
    .await
    .expect("RegisterTaskDefinition");
    let joined = t0.elapsed();
    let t1 = Instant::now();
    sim.call(
        "CreateService",
        json!({"serviceName": "bench", "taskDefinition": "bench", "desiredCount": tasks}),
    )
    .await
    .expect("CreateService");
    let steps = sim.run_until_steady(500).await.expect("convergence");
    let converged = t1.elapsed();
    let (passes, step_ms) = (sim.passes, sim.options.step_ms);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    println!("| measure | value | goal |");
    println!("|---|---|---|");
    println!(
        "| nodes joined (register) | {nodes} in {:.2} s | |",
        joined.as_secs_f64()
    );
    println!(
        "| {tasks} tasks converged (create → steady), store {} | {:.1} s | < 60 s |",
        if on_file { "in a file" } else { "in memory" },
        converged.as_secs_f64()
    );
    println!(
        "| steps (virtual {} s each) / controller passes | {steps} / {} | |",
        step_ms / 1000,
        passes
    );
    println!(
        "| tasks per second | {:.0} | |",
        tasks as f64 / converged.as_secs_f64()
    );
}
