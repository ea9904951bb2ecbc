//! Seeded histories of a fleet with every kind of service and a stream of trouble — nodes
//! dying and joining, containers crashing, forced deployments, scaling, a bad revision the
//! circuit breaker must roll back — with the invariants checked at every step, then calm until
//! everything converges.

use berth_sim::{Options, Sim};
use rand::Rng;
use serde_json::json;

async fn history(seed: u64, nodes: usize, steps: usize) {
    let mut sim = Sim::new(seed, nodes, Options::default()).await;
    for (family, cpu, memory) in [
        ("web", 256, 256),
        ("api", 128, 128),
        ("solo", 64, 64),
        ("agent", 16, 16),
        ("bad", 64, 64),
    ] {
        sim.call(
            "RegisterTaskDefinition",
            json!({"family": family, "containerDefinitions": [{
                "name": "app", "image": "busybox", "cpu": cpu, "memory": memory,
                "portMappings": [{"containerPort": 80}]
            }]}),
        )
        .await
        .expect("register");
    }
    sim.crash_family("bad");
    let create = [
        json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": nodes / 3,
               "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
                   "deploymentCircuitBreaker": {"enable": true, "rollback": true}}}),
        json!({"serviceName": "api", "taskDefinition": "api", "desiredCount": nodes / 4,
               "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone == a"}],
               "placementStrategy": [{"type": "binpack", "field": "memory"}],
               "deploymentConfiguration": {"maximumPercent": 150, "minimumHealthyPercent": 50}}),
        json!({"serviceName": "solo", "taskDefinition": "solo", "desiredCount": nodes / 10,
               "placementConstraints": [{"type": "distinctInstance"}],
               "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 0}}),
        json!({"serviceName": "agent", "taskDefinition": "agent", "schedulingStrategy": "DAEMON"}),
    ];
    for body in create {
        sim.call("CreateService", body)
            .await
            .expect("CreateService");
    }
    sim.watch_member_of("api", "a");
    sim.watch_distinct("solo");
    sim.options.crash_rate = 0.002;
    let names = ["web", "api", "solo"];
    for step in 0..steps {
        let roll: f64 = sim.rng.gen_range(0.0..1.0);
        let change = if roll < 0.03 {
            sim.kill_random_node(nodes / 2);
            None
        } else if roll < 0.05 {
            sim.join().await;
            None
        } else if roll < 0.09 {
            let name = names[sim.rng.gen_range(0..names.len())];
            Some(json!({"service": name, "forceNewDeployment": true}))
        } else if roll < 0.11 {
            let name = names[sim.rng.gen_range(0..names.len())];
            let n = sim.rng.gen_range(0..=(nodes / 3));
            Some(json!({"service": name, "desiredCount": n}))
        } else if roll < 0.12 {
            Some(json!({"service": "web", "taskDefinition": "bad"}))
        } else {
            None
        };
        if let Some(body) = change {
            sim.call("UpdateService", body)
                .await
                .expect("UpdateService");
        }
        if let Err(violation) = sim.step().await {
            panic!("seed {seed}, step {step}: {violation}");
        }
    }
    // Calm: no more deaths, crashes or changes. (A bad revision whose deployment completed —
    // e.g. while scaled to 0 — crash-loops as it would on ECS: the operator puts the good one
    // back.)
    sim.options.crash_rate = 0.0;
    let services = sim.services().await;
    if services
        .iter()
        .any(|s| s.name == "web" && s.task_definition.contains("task-definition/bad:"))
    {
        sim.call(
            "UpdateService",
            json!({"service": "web", "taskDefinition": "web"}),
        )
        .await
        .expect("UpdateService");
    }
    // Long enough for every dead node to be found dead first.
    for _ in 0..=(sim.options.grace_ms / sim.options.step_ms) {
        sim.step()
            .await
            .unwrap_or_else(|v| panic!("seed {seed}, calm: {v}"));
    }
    let mut calm = 0;
    while !sim.steady().await {
        sim.step()
            .await
            .unwrap_or_else(|v| panic!("seed {seed}, calm: {v}"));
        calm += 1;
        assert!(
            calm < 300,
            "seed {seed}: no convergence after {calm} calm steps"
        );
    }
    let services = sim.services().await;
    let web = services.iter().find(|s| s.name == "web").expect("web");
    assert!(
        web.task_definition.ends_with("task-definition/web:1"),
        "seed {seed}: web ended on {}",
        web.task_definition
    );
    let daemon = services.iter().find(|s| s.name == "agent").expect("agent");
    assert_eq!(
        daemon.desired_count,
        sim.alive_nodes() as i32,
        "seed {seed}: a daemon task per live node"
    );
}

#[tokio::test]
async fn services_hold_their_invariants_through_failures_and_deployments() {
    for seed in [1u64, 2, 3] {
        history(seed, 60, 120).await;
    }
}

#[tokio::test]
async fn a_fleet_of_three_hundred_nodes_converges() {
    history(42, 300, 60).await;
}

async fn settle(sim: &mut Sim, seed: u64, what: &str) {
    sim.run_until_steady(200)
        .await
        .unwrap_or_else(|v| panic!("seed {seed}, {what}: {v}"));
}

/// A service behind a target group: it reaches steady state only once its targets are healthy,
/// rolls to a new revision and drains what it replaces (no agent is asked to stop a task whose
/// target is still held: checked every step), and a revision whose targets fail their health
/// checks is replaced task by task until the circuit breaker rolls it back. Nodes die and
/// containers crash meanwhile.
async fn behind_a_load_balancer(seed: u64) {
    let mut sim = Sim::new(seed, 20, Options::default()).await;
    for family in ["web", "sick"] {
        sim.call(
            "RegisterTaskDefinition",
            json!({"family": family, "containerDefinitions": [{
                "name": "app", "image": "busybox", "cpu": 128, "memory": 128,
                "portMappings": [{"containerPort": 80, "hostPort": 0}]
            }]}),
        )
        .await
        .expect("register");
    }
    sim.fail_health_checks("sick");
    let tg = sim.target_group("web", 20).await.expect("a target group");
    sim.call(
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": 6,
               "healthCheckGracePeriodSeconds": 10,
               "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 50,
                   "deploymentCircuitBreaker": {"enable": true, "rollback": true}},
               "loadBalancers": [{"targetGroupArn": tg, "containerName": "app",
                                  "containerPort": 80}]}),
    )
    .await
    .expect("CreateService");
    settle(&mut sim, seed, "first rollout").await;
    let healthy = |v: &serde_json::Value| {
        v["TargetHealthDescriptions"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter(|t| t["TargetHealth"]["State"] == "healthy")
                    .count()
            })
            .unwrap_or(0)
    };
    let describe = json!({"TargetGroupArn": tg});
    let targets = sim
        .elb_call("DescribeTargetHealth", describe.clone())
        .await
        .expect("DescribeTargetHealth");
    assert_eq!(healthy(&targets), 6, "seed {seed}: {targets}");

    sim.options.crash_rate = 0.01;
    sim.call(
        "UpdateService",
        json!({"service": "web", "forceNewDeployment": true}),
    )
    .await
    .expect("UpdateService");
    for step in 0..40 {
        if step == 10 {
            sim.kill_random_node(15);
        }
        sim.step()
            .await
            .unwrap_or_else(|v| panic!("seed {seed}, rolling, step {step}: {v}"));
    }
    sim.options.crash_rate = 0.0;
    settle(&mut sim, seed, "second rollout").await;

    // A revision the load balancer finds unhealthy: its tasks are replaced after the grace
    // period, counted as failures, and the circuit breaker rolls back to web.
    sim.call(
        "UpdateService",
        json!({"service": "web", "taskDefinition": "sick"}),
    )
    .await
    .expect("UpdateService");
    settle(&mut sim, seed, "rollback").await;
    let services = sim.services().await;
    let web = services.iter().find(|s| s.name == "web").expect("web");
    assert!(
        web.task_definition.contains("task-definition/web:"),
        "seed {seed}: web ended on {}",
        web.task_definition
    );
    let failed = web
        .deployments
        .iter()
        .find(|d| d.task_definition.contains("task-definition/sick:"))
        .expect("the sick deployment");
    assert_eq!(failed.rollout_state, "FAILED", "seed {seed}");
    let targets = sim
        .elb_call("DescribeTargetHealth", describe)
        .await
        .expect("DescribeTargetHealth");
    assert_eq!(healthy(&targets), 6, "seed {seed}: {targets}");
}

#[tokio::test]
async fn services_behind_a_load_balancer_gate_drain_and_roll_back() {
    for seed in [7u64, 8] {
        behind_a_load_balancer(seed).await;
    }
}
