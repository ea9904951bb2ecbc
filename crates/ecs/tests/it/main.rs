//! Component tests of the ECS task and container instance APIs with a fake agent: `Ecs` on an
//! in-memory store, driven through `JsonService::call` with JSON as clients send it, and the
//! agent protocol functions (`berth_ecs::nodes`) called as the agent's HTTP routes call them.

use berth_agent_api as api;
use berth_aws::{JsonService, RequestContext};
use berth_ecs::Ecs;
use berth_ecs::nodes::{self, NodeError, SweepPolicy};
use berth_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

mod capacity_providers;
mod lb;

const JOIN: &str = "join-secret";
const T0: i64 = 1_700_000_000_000;

struct World {
    ecs: Ecs,
    clock: Arc<AtomicI64>,
}

fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

impl World {
    async fn new() -> World {
        World::on(
            SqliteStore::open_in_memory()
                .expect("in-memory store")
                .into(),
        )
        .await
    }

    async fn on(store: berth_store::AnyStore) -> World {
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let ecs = Ecs::new(store, [7u8; 32], Arc::new(move || c.load(Ordering::SeqCst)));
        let w = World { ecs, clock };
        w.ok("CreateCluster", json!({})).await;
        w.ok(
            "RegisterTaskDefinition",
            json!({"family": "web", "tags": [{"key": "team", "value": "a"}], "containerDefinitions": [{
                "name": "app", "image": "busybox", "cpu": 256, "memory": 512,
                "portMappings": [{"containerPort": 80, "hostPort": 0}]
            }]}),
        )
        .await;
        w
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    async fn call(&self, op: &str, input: Value) -> Result<Value, berth_aws::AwsError> {
        let bytes = self.ecs.call(ctx(), op, input).await?;
        Ok(serde_json::from_slice(&bytes).expect("answers are JSON"))
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        match self.call(op, input.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {input} failed: {e}"),
        }
    }

    async fn err(&self, op: &str, input: Value) -> String {
        match self.call(op, input.clone()).await {
            Ok(v) => panic!("{op} {input} succeeded: {v}"),
            Err(e) => e.code.to_string(),
        }
    }

    /// A fake agent joins with `cpu` units and `memory` MiB.
    async fn join(&self, cpu: i32, memory: i32) -> api::RegisterResponse {
        nodes::register(&self.ecs, &ctx(), JOIN, register_request(cpu, memory))
            .await
            .expect("register")
    }

    async fn poll(&self, node: &api::RegisterResponse, after: u64) -> api::PollResponse {
        nodes::poll(
            &self.ecs,
            &ctx(),
            Some(&node.node_token),
            api::PollRequest {
                instance_id: node.instance_id.clone(),
                after_revision: after,
            },
            Duration::from_millis(0),
        )
        .await
        .expect("poll")
    }

    async fn report(&self, node: &api::RegisterResponse, state: api::TaskState) {
        nodes::report(
            &self.ecs,
            &ctx(),
            Some(&node.node_token),
            api::StateReport {
                instance_id: node.instance_id.clone(),
                tasks: vec![state],
            },
        )
        .await
        .expect("report")
    }

    async fn instance(&self, node: &api::RegisterResponse) -> Value {
        let d = self
            .ok(
                "DescribeContainerInstances",
                json!({"containerInstances": [node.instance_id], "include": ["TAGS", "CONTAINER_INSTANCE_HEALTH"]}),
            )
            .await;
        d["containerInstances"][0].clone()
    }

    async fn task(&self, arn: &str) -> Value {
        let d = self
            .ok(
                "DescribeTasks",
                json!({"tasks": [arn], "include": ["TAGS"]}),
            )
            .await;
        d["tasks"][0].clone()
    }
}

fn register_request(cpu: i32, memory: i32) -> api::RegisterRequest {
    api::RegisterRequest {
        cluster: "default".into(),
        join_token: Some(JOIN.into()),
        instance_id: None,
        node_token: None,
        resources: api::Resources {
            cpu,
            memory_mib: memory,
            reserved_ports: vec![22],
            reserved_udp_ports: vec![],
        },
        attributes: vec![api::Attribute {
            name: "ecs.os-type".into(),
            value: Some("linux".into()),
        }],
        version: api::VersionInfo {
            agent_version: "0.1.0".into(),
            agent_hash: None,
            docker_version: Some("20.10".into()),
        },
        can_run_tasks: true,
        cannot_run_reason: None,
        host_id: "host-1".into(),
    }
}

fn resource(instance: &Value, which: &str, name: &str) -> Value {
    instance[which]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .map(|r| {
            if r["type"] == "STRINGSET" {
                r["stringSetValue"].clone()
            } else {
                r["integerValue"].clone()
            }
        })
        .unwrap_or(Value::Null)
}

fn state(arn: &str, status: &str) -> api::TaskState {
    api::TaskState {
        task_arn: arn.into(),
        status: status.into(),
        containers: vec![],
        stop_code: None,
        stopped_reason: None,
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        execution_stopped_at: None,
        health_status: None,
    }
}

#[tokio::test]
async fn a_task_runs_and_stops_through_the_agent() {
    let w = World::new().await;
    let node = w.join(2048, 4096).await;
    let inst = w.instance(&node).await;
    assert_eq!(inst["status"], "ACTIVE");
    assert_eq!(inst["agentConnected"], true);
    assert_eq!(inst["ec2InstanceId"], "host-1");
    assert_eq!(resource(&inst, "registeredResources", "MEMORY"), 4096);
    assert_eq!(inst["healthStatus"]["overallStatus"], "OK");

    let run = w
        .ok(
            "RunTask",
            json!({"taskDefinition": "web", "startedBy": "me", "propagateTags": "TASK_DEFINITION",
                   "overrides": {"containerOverrides": [{"name": "app", "environment": [{"name": "A", "value": "1"}]}]}}),
        )
        .await;
    assert_eq!(run["failures"], json!([]));
    let task = &run["tasks"][0];
    let arn = task["taskArn"].as_str().expect("task ARN").to_string();
    let id = arn.rsplit('/').next().unwrap_or_default().to_string();
    assert!(arn.starts_with("arn:aws:ecs:us-east-1:000000000000:task/default/"));
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(task["lastStatus"], "PROVISIONING");
    assert_eq!(task["desiredStatus"], "RUNNING");
    assert_eq!(task["group"], "family:web");
    assert_eq!(task["launchType"], "EC2");
    assert_eq!(task["tags"], json!([{"key": "team", "value": "a"}]));
    assert_eq!(
        task["containerInstanceArn"],
        json!(node.container_instance_arn)
    );
    assert!(
        task["containers"][0]["containerArn"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!(
                "arn:aws:ecs:us-east-1:000000000000:container/default/{id}/"
            )))
    );

    let inst = w.instance(&node).await;
    assert_eq!(resource(&inst, "remainingResources", "MEMORY"), 4096 - 512);
    assert_eq!(resource(&inst, "remainingResources", "CPU"), 2048 - 256);
    assert_eq!(inst["pendingTasksCount"], 1);

    let poll = w.poll(&node, 0).await;
    assert_eq!(poll.tasks.len(), 1);
    assert_eq!(poll.tasks[0].task_arn, arn);
    assert_eq!(poll.tasks[0].desired_status, "RUNNING");
    assert_eq!(poll.tasks[0].task_definition["family"], "web");
    assert_eq!(
        poll.tasks[0].overrides["containerOverrides"][0]["environment"][0]["name"],
        "A"
    );

    let mut running = state(&arn, "RUNNING");
    running.containers.push(api::ContainerState {
        name: "app".into(),
        runtime_id: Some("c0ffee".into()),
        status: "RUNNING".into(),
        exit_code: None,
        reason: None,
        network_bindings: vec![api::NetworkBinding {
            bind_ip: "127.0.0.1".into(),
            container_port: 80,
            host_port: 32768,
            protocol: "tcp".into(),
        }],
        health_status: None,
        image_digest: None,
    });
    w.advance(1000);
    w.report(&node, running).await;
    let t = w.task(&arn).await;
    assert_eq!(t["lastStatus"], "RUNNING");
    assert_eq!(t["containers"][0]["runtimeId"], "c0ffee");
    assert_eq!(t["containers"][0]["lastStatus"], "RUNNING");
    assert_eq!(t["containers"][0]["networkBindings"][0]["hostPort"], 32768);
    assert!(t["startedAt"].is_number());
    assert_eq!(t["version"], 2);
    assert_eq!(w.instance(&node).await["runningTasksCount"], 1);

    let listed = w.ok("ListTasks", json!({"startedBy": "me"})).await;
    assert_eq!(listed["taskArns"], json!([arn]));

    let stop = w
        .ok("StopTask", json!({"task": arn, "reason": "done"}))
        .await;
    assert_eq!(stop["task"]["desiredStatus"], "STOPPED");
    assert!(stop["task"]["stoppingAt"].is_number());
    let poll = w.poll(&node, 0).await;
    assert_eq!(poll.tasks[0].desired_status, "STOPPED");
    assert_eq!(poll.tasks[0].stop_reason.as_deref(), Some("done"));

    let mut stopped = state(&arn, "STOPPED");
    stopped.containers.push(api::ContainerState {
        name: "app".into(),
        runtime_id: Some("c0ffee".into()),
        status: "STOPPED".into(),
        exit_code: Some(143),
        reason: None,
        network_bindings: vec![],
        health_status: None,
        image_digest: None,
    });
    w.report(&node, stopped.clone()).await;
    let t = w.task(&arn).await;
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "done");
    assert_eq!(t["containers"][0]["exitCode"], 143);
    assert!(t["stoppedAt"].is_number());
    let inst = w.instance(&node).await;
    assert_eq!(resource(&inst, "remainingResources", "MEMORY"), 4096);
    assert_eq!(resource(&inst, "remainingResources", "CPU"), 2048);
    assert_eq!(inst["runningTasksCount"], 0);

    // A repeated STOPPED report releases nothing twice.
    w.report(&node, stopped).await;
    assert_eq!(
        resource(&w.instance(&node).await, "remainingResources", "MEMORY"),
        4096
    );
    assert!(w.poll(&node, 0).await.tasks.is_empty());
    let listed = w.ok("ListTasks", json!({"desiredStatus": "STOPPED"})).await;
    assert_eq!(listed["taskArns"], json!([arn]));
    assert_eq!(w.ok("ListTasks", json!({})).await["taskArns"], json!([]));
}

#[tokio::test]
async fn an_essential_exit_gets_its_stop_code() {
    let w = World::new().await;
    let node = w.join(1024, 1024).await;
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    w.report(&node, state(&arn, "RUNNING")).await;
    w.report(&node, state(&arn, "STOPPED")).await;
    let t = w.task(&arn).await;
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["stoppedReason"], "Essential container in task exited");
}

#[tokio::test]
async fn a_task_that_does_not_fit_fails_and_writes_nothing() {
    let w = World::new().await;
    let node = w.join(4096, 256).await;
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    assert_eq!(run["tasks"], json!([]));
    assert_eq!(
        run["failures"],
        json!([{"arn": node.container_instance_arn, "reason": "RESOURCE:MEMORY"}])
    );
    assert_eq!(w.ok("ListTasks", json!({})).await["taskArns"], json!([]));
    assert_eq!(
        resource(&w.instance(&node).await, "remainingResources", "MEMORY"),
        256
    );
    let cpu = w
        .ok(
            "RunTask",
            json!({"taskDefinition": "web", "overrides": {"cpu": "8192", "memory": "128"}}),
        )
        .await;
    assert_eq!(cpu["failures"][0]["reason"], "RESOURCE:CPU");
}

#[tokio::test]
async fn static_host_ports_are_accounted() {
    let w = World::new().await;
    w.ok(
        "RegisterTaskDefinition",
        json!({"family": "port", "containerDefinitions": [{
            "name": "app", "image": "busybox", "memory": 64,
            "portMappings": [{"containerPort": 80, "hostPort": 8080}]
        }]}),
    )
    .await;
    let node = w.join(4096, 4096).await;
    let first = w.ok("RunTask", json!({"taskDefinition": "port"})).await;
    assert_eq!(first["tasks"].as_array().map(Vec::len), Some(1));
    let inst = w.instance(&node).await;
    assert_eq!(
        resource(&inst, "remainingResources", "PORTS"),
        json!(["22", "8080"])
    );
    let second = w.ok("RunTask", json!({"taskDefinition": "port"})).await;
    assert_eq!(second["failures"][0]["reason"], "RESOURCE:PORTS");
    let poll = w.poll(&node, 0).await;
    assert_eq!(poll.tasks[0].reserved_ports, vec![8080]);
}

#[tokio::test]
async fn no_instances_and_fargate_are_refused() {
    let w = World::new().await;
    assert_eq!(
        w.err("RunTask", json!({"taskDefinition": "web"})).await,
        "InvalidParameterException"
    );
    w.join(1024, 1024).await;
    assert_eq!(
        w.err(
            "RunTask",
            json!({"taskDefinition": "web", "launchType": "FARGATE"})
        )
        .await,
        "UnsupportedFeatureException"
    );
    assert_eq!(
        w.err("RunTask", json!({"taskDefinition": "nope"})).await,
        "InvalidParameterException"
    );
    assert_eq!(
        w.err("RunTask", json!({"taskDefinition": "web", "count": 11}))
            .await,
        "InvalidParameterException"
    );
}

// Several worker threads, so the RunTasks really interleave between their reads and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_run_tasks_never_oversubscribe() {
    let w = Arc::new(World::new().await);
    // 10 tasks of 512 MiB fit exactly.
    let node = w.join(100_000, 5120).await;
    let mut handles = Vec::new();
    for _ in 0..20 {
        let w = w.clone();
        handles.push(tokio::spawn(async move {
            w.ok("RunTask", json!({"taskDefinition": "web"})).await
        }));
    }
    let mut placed = 0;
    let mut refused = 0;
    for h in handles {
        let r = h.await.expect("join");
        placed += r["tasks"].as_array().map(Vec::len).unwrap_or(0);
        refused += r["failures"].as_array().map(Vec::len).unwrap_or(0);
    }
    assert_eq!(placed, 10);
    assert_eq!(refused, 10);
    let inst = w.instance(&node).await;
    assert_eq!(resource(&inst, "remainingResources", "MEMORY"), 0);
    assert_eq!(inst["pendingTasksCount"], 10);
}

#[tokio::test]
async fn reports_only_move_forward() {
    let w = World::new().await;
    let node = w.join(1024, 1024).await;
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    w.report(&node, state(&arn, "RUNNING")).await;
    let before = w.task(&arn).await;
    w.report(&node, state(&arn, "PENDING")).await;
    w.report(&node, state(&arn, "RUNNING")).await;
    w.report(&node, state(&arn, "NONSENSE")).await;
    let after = w.task(&arn).await;
    assert_eq!(after["lastStatus"], "RUNNING");
    assert_eq!(after["version"], before["version"]);
}

#[tokio::test]
async fn one_report_applies_each_observation_in_order_and_gives_back_what_stopped() {
    let w = World::new().await;
    let node = w.join(1024, 1024).await;
    let run = w
        .ok("RunTask", json!({"taskDefinition": "web", "count": 2}))
        .await;
    let arns: Vec<String> = run["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
        .collect();
    assert_eq!(arns.len(), 2, "{run}");
    nodes::report(
        &w.ecs,
        &ctx(),
        Some(&node.node_token),
        api::StateReport {
            instance_id: node.instance_id.clone(),
            tasks: vec![
                state(&arns[0], "RUNNING"),
                state(&arns[1], "RUNNING"),
                state(&arns[1], "STOPPED"),
            ],
        },
    )
    .await
    .expect("report");
    let (first, second) = (w.task(&arns[0]).await, w.task(&arns[1]).await);
    assert_eq!(first["lastStatus"], "RUNNING");
    assert_eq!(second["lastStatus"], "STOPPED");
    // Both observations of the second task counted: created, RUNNING, STOPPED.
    assert_eq!(second["version"], 3);
    assert!(second["startedAt"].is_number(), "{second}");
    assert_eq!(
        first["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    );
    let inst = w.instance(&node).await;
    assert_eq!(resource(&inst, "remainingResources", "CPU"), 1024 - 256);
    assert_eq!(resource(&inst, "remainingResources", "MEMORY"), 1024 - 512);
    let listed = w
        .ok(
            "ListTasks",
            json!({"family": "web", "desiredStatus": "STOPPED"}),
        )
        .await;
    assert_eq!(listed["taskArns"], json!([arns[1]]));
}

#[tokio::test]
async fn reregistration_keeps_the_instance_and_tokens_are_checked() {
    let w = World::new().await;
    let node = w.join(1024, 1024).await;
    let mut again = register_request(2048, 2048);
    again.join_token = None;
    again.instance_id = Some(node.instance_id.clone());
    again.node_token = Some(node.node_token.clone());
    let back = nodes::register(&w.ecs, &ctx(), JOIN, again.clone())
        .await
        .expect("re-register");
    assert_eq!(back.instance_id, node.instance_id);
    assert_eq!(back.node_token, node.node_token);
    let inst = w.instance(&node).await;
    assert_eq!(resource(&inst, "registeredResources", "MEMORY"), 2048);
    assert_eq!(inst["version"], 2);

    let mut forged = again;
    forged.node_token = Some("wrong".into());
    let e = nodes::register(&w.ecs, &ctx(), JOIN, forged)
        .await
        .expect_err("a wrong node token without a join token is refused");
    assert_eq!(e.status, 401);
    let mut bad_join = register_request(1, 1);
    bad_join.join_token = Some("guess".into());
    assert_eq!(
        nodes::register(&w.ecs, &ctx(), JOIN, bad_join)
            .await
            .map_err(|e| e.status),
        Err(401)
    );

    let poll = nodes::poll(
        &w.ecs,
        &ctx(),
        Some("not-the-token"),
        api::PollRequest {
            instance_id: node.instance_id.clone(),
            after_revision: 0,
        },
        Duration::ZERO,
    )
    .await;
    assert!(matches!(poll, Err(NodeError { status: 401, .. })));
    let report = nodes::report(
        &w.ecs,
        &ctx(),
        None,
        api::StateReport {
            instance_id: node.instance_id.clone(),
            tasks: vec![],
        },
    )
    .await;
    assert!(matches!(report, Err(NodeError { status: 401, .. })));
    let unknown = nodes::poll(
        &w.ecs,
        &ctx(),
        Some(&node.node_token),
        api::PollRequest {
            instance_id: "0".repeat(32),
            after_revision: 0,
        },
        Duration::ZERO,
    )
    .await;
    assert!(matches!(unknown, Err(NodeError { status: 401, .. })));
}

#[tokio::test]
async fn a_poll_waits_for_a_change_of_its_node() {
    let w = Arc::new(World::new().await);
    let node = w.join(1024, 1024).await;
    let first = w.poll(&node, 0).await;
    assert!(first.tasks.is_empty());
    let waiter = {
        let w = w.clone();
        let node = node.clone();
        tokio::spawn(async move {
            nodes::poll(
                &w.ecs,
                &ctx(),
                Some(&node.node_token),
                api::PollRequest {
                    instance_id: node.instance_id.clone(),
                    after_revision: first.revision,
                },
                Duration::from_secs(20),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "an unchanged node's poll is held");
    w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the poll answers once a task is placed")
        .expect("join")
        .expect("poll");
    assert_eq!(answer.tasks.len(), 1);
    assert_ne!(answer.revision, first.revision);
}

#[tokio::test]
async fn the_liveness_sweep_stops_tasks_of_silent_nodes() {
    let store: berth_store::AnyStore = SqliteStore::open_in_memory().expect("store").into();
    let w = World::on(store.clone()).await;
    let node = w.join(1024, 1024).await;
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    w.report(&node, state(&arn, "RUNNING")).await;
    let policy = SweepPolicy {
        grace_ms: 300_000,
        keep_stopped_ms: 3_600_000,
    };
    w.advance(120_000);
    assert_eq!(w.instance(&node).await["agentConnected"], false);
    assert_eq!(nodes::sweep(&w.ecs, &ctx(), policy).await.ok(), Some(0));
    assert_eq!(w.task(&arn).await["lastStatus"], "RUNNING");
    w.advance(200_000);
    assert_eq!(nodes::sweep(&w.ecs, &ctx(), policy).await.ok(), Some(1));
    let t = w.task(&arn).await;
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["stopCode"], "TerminationNotice");
    assert_eq!(
        resource(&w.instance(&node).await, "remainingResources", "MEMORY"),
        1024
    );
    // Sweeping again changes nothing; an hour later the STOPPED task is forgotten.
    assert_eq!(nodes::sweep(&w.ecs, &ctx(), policy).await.ok(), Some(0));
    w.advance(3_700_000);
    nodes::sweep(&w.ecs, &ctx(), policy).await.expect("sweep");
    let d = w.ok("DescribeTasks", json!({"tasks": [arn]})).await;
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    // ... and so is its entry under the instance.
    use berth_store::Store;
    let index = store
        .list("ecs.task-on-instance", &ctx().partition(), "", None, 10)
        .await
        .expect("list");
    assert!(index.is_empty(), "{index:?}");
}

#[tokio::test]
async fn instances_drain_deregister_and_list() {
    let w = World::new().await;
    let a = w.join(1024, 1024).await;
    let b = w.join(1024, 1024).await;
    let listed = w.ok("ListContainerInstances", json!({})).await;
    assert_eq!(
        listed["containerInstanceArns"].as_array().map(Vec::len),
        Some(2)
    );
    let page = w
        .ok("ListContainerInstances", json!({"maxResults": 1}))
        .await;
    assert!(page["nextToken"].is_string());
    let d = w
        .ok(
            "UpdateContainerInstancesState",
            json!({"containerInstances": [a.instance_id, "nope"], "status": "DRAINING"}),
        )
        .await;
    assert_eq!(d["containerInstances"][0]["status"], "DRAINING");
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    // Placement skips the draining instance.
    let run = w
        .ok("RunTask", json!({"taskDefinition": "web", "count": 2}))
        .await;
    assert_eq!(run["tasks"].as_array().map(Vec::len), Some(2));
    for t in run["tasks"].as_array().into_iter().flatten() {
        assert_eq!(t["containerInstanceArn"], json!(b.container_instance_arn));
    }
    assert!(w.poll(&a, 0).await.draining);
    let listed = w
        .ok("ListContainerInstances", json!({"status": "DRAINING"}))
        .await;
    assert_eq!(
        listed["containerInstanceArns"],
        json!([a.container_instance_arn])
    );
    assert_eq!(
        w.err(
            "DeregisterContainerInstance",
            json!({"containerInstance": b.instance_id})
        )
        .await,
        "InvalidParameterException"
    );
    let gone = w
        .ok(
            "DeregisterContainerInstance",
            json!({"containerInstance": b.container_instance_arn, "force": true}),
        )
        .await;
    assert_eq!(gone["containerInstance"]["status"], "INACTIVE");
    assert!(w.poll(&b, 0).await.tasks.is_empty());
    assert_eq!(w.ok("ListTasks", json!({})).await["taskArns"], json!([]));
    let d = w
        .ok(
            "DescribeContainerInstances",
            json!({"containerInstances": [b.instance_id, "missing"]}),
        )
        .await;
    assert_eq!(d["containerInstances"][0]["status"], "INACTIVE");
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    let c = w.ok("DescribeClusters", json!({})).await;
    assert_eq!(c["clusters"][0]["registeredContainerInstancesCount"], 1);
}

#[tokio::test]
async fn start_task_and_distinct_instance() {
    let w = World::new().await;
    let a = w.join(4096, 4096).await;
    let _b = w.join(4096, 4096).await;
    let run = w
        .ok(
            "RunTask",
            json!({"taskDefinition": "web", "count": 3, "placementConstraints": [{"type": "distinctInstance"}]}),
        )
        .await;
    assert_eq!(run["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(run["failures"][0]["reason"], "ATTRIBUTE");
    let started = w
        .ok(
            "StartTask",
            json!({"taskDefinition": "web", "containerInstances": [a.instance_id, "0123456789abcdef0123456789abcdef"]}),
        )
        .await;
    assert_eq!(
        started["tasks"][0]["containerInstanceArn"],
        json!(a.container_instance_arn)
    );
    assert_eq!(started["failures"][0]["reason"], "MISSING");
    let on_a = w
        .ok(
            "ListTasks",
            json!({"containerInstance": a.container_instance_arn}),
        )
        .await;
    assert_eq!(on_a["taskArns"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn the_ecs_api_registers_instances_too() {
    let w = World::new().await;
    let r = w
        .ok(
            "RegisterContainerInstance",
            json!({"totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}
            ], "instanceIdentityDocument": "{\"instanceId\": \"i-0123456789abcdef0\"}",
            "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    let ci = &r["containerInstance"];
    assert_eq!(ci["ec2InstanceId"], "i-0123456789abcdef0");
    assert_eq!(resource(ci, "remainingResources", "MEMORY"), 2048);
    assert_eq!(ci["tags"][0]["key"], "k");
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    assert_eq!(run["tasks"].as_array().map(Vec::len), Some(1));
}

/// `(arn, reason)` of each failure of a RunTask/StartTask answer, sorted.
fn failures(answer: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = answer["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["arn"].as_str().unwrap_or_default().to_string(),
                f["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn placement_reasons_are_per_instance_and_start_task_uses_the_scheduler() {
    let w = World::new().await;
    let silent = w.join(4096, 4096).await;
    // Past the disconnect threshold: the first agent no longer counts as connected.
    w.advance(61_000);
    let small = w.join(4096, 256).await;
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    assert_eq!(run["tasks"], json!([]));
    let mut want = vec![
        (silent.container_instance_arn.clone(), "AGENT".to_string()),
        (
            small.container_instance_arn.clone(),
            "RESOURCE:MEMORY".to_string(),
        ),
    ];
    want.sort();
    assert_eq!(failures(&run), want);
    let started = w
        .ok(
            "StartTask",
            json!({"taskDefinition": "web", "containerInstances": [small.instance_id]}),
        )
        .await;
    assert_eq!(
        failures(&started),
        vec![(
            small.container_instance_arn.clone(),
            "RESOURCE:MEMORY".to_string()
        )]
    );

    // A DRAINING instance takes no RunTask, but StartTask may name it.
    let big = w.join(4096, 4096).await;
    w.ok(
        "UpdateContainerInstancesState",
        json!({"containerInstances": [big.instance_id], "status": "DRAINING"}),
    )
    .await;
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    assert_eq!(failures(&run), want);
    let started = w
        .ok(
            "StartTask",
            json!({"taskDefinition": "web", "containerInstances": [big.instance_id, big.instance_id]}),
        )
        .await;
    assert_eq!(started["tasks"].as_array().map(Vec::len), Some(2));
    w.ok(
        "UpdateContainerInstancesState",
        json!({"containerInstances": [big.instance_id], "status": "ACTIVE"}),
    )
    .await;

    // The query language sees the tasks placed so far: big has two of family:web.
    let run = w
        .ok(
            "RunTask",
            json!({"taskDefinition": "web", "placementConstraints": [
                {"type": "memberOf", "expression": "not(task:group == family:web)"}]}),
        )
        .await;
    assert_eq!(run["tasks"], json!([]));
    assert!(
        failures(&run).contains(&(big.container_instance_arn.clone(), "ATTRIBUTE".to_string())),
        "{run}"
    );
    // runningTasksCount counts pending tasks, and the tasks of the batch as it places them.
    let fresh = w.join(4096, 4096).await;
    let run = w
        .ok(
            "RunTask",
            json!({"taskDefinition": "web", "count": 2, "placementConstraints": [
                {"type": "memberOf", "expression": "runningTasksCount == 0 and agentConnected == true"}]}),
        )
        .await;
    assert_eq!(
        run["tasks"][0]["containerInstanceArn"],
        json!(fresh.container_instance_arn),
        "{run}"
    );
    assert_eq!(run["tasks"].as_array().map(Vec::len), Some(1), "{run}");
    assert!(
        failures(&run).contains(&(
            fresh.container_instance_arn.clone(),
            "ATTRIBUTE".to_string()
        )),
        "{run}"
    );
    assert_eq!(
        w.err(
            "RunTask",
            json!({"taskDefinition": "web", "placementConstraints": [
                {"type": "memberOf", "expression": "attribute:x =="}]}),
        )
        .await,
        "InvalidParameterException"
    );
}

/// A service's tasks carry its group and deployment, the service's tags (propagateTags
/// SERVICE) or the task definition's (TASK_DEFINITION), and ECS's managed tags.
#[tokio::test]
async fn service_tasks_carry_propagated_and_managed_tags() {
    let w = World::new().await;
    w.join(4096, 8192).await;
    w.ok(
        "CreateService",
        json!({"serviceName": "tagged", "taskDefinition": "web", "desiredCount": 2,
               "propagateTags": "SERVICE", "enableECSManagedTags": true,
               "tags": [{"key": "env", "value": "prod"}]}),
    )
    .await;
    let tags_of_new_tasks = |deployment: String| {
        let w = &w;
        async move {
            berth_ecs::service_controller::reconcile(&w.ecs, &ctx())
                .await
                .expect("a controller pass");
            let arns =
                w.ok("ListTasks", json!({"serviceName": "tagged"})).await["taskArns"].clone();
            let tasks = w
                .ok("DescribeTasks", json!({"tasks": arns, "include": ["TAGS"]}))
                .await["tasks"]
                .clone();
            tasks
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["startedBy"] == deployment.as_str())
                .map(|t| {
                    assert_eq!(t["group"], "service:tagged", "{t}");
                    let mut tags: Vec<(String, String)> = t["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|g| {
                            (
                                g["key"].as_str().unwrap_or_default().to_string(),
                                g["value"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect();
                    tags.sort();
                    tags
                })
                .collect::<Vec<_>>()
        }
    };
    let first = w
        .ok("DescribeServices", json!({"services": ["tagged"]}))
        .await["services"][0]["deployments"][0]["id"]
        .as_str()
        .expect("a deployment id")
        .to_string();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let tags = tags_of_new_tasks(first).await;
    assert_eq!(tags.len(), 2, "two tasks of the first deployment");
    for t in &tags {
        assert_eq!(
            t,
            &vec![
                pair("aws:ecs:clusterName", "default"),
                pair("aws:ecs:serviceName", "tagged"),
                pair("env", "prod"),
            ]
        );
    }
    // Propagating the task definition's tags takes a new deployment, as on ECS.
    let updated = w
        .ok(
            "UpdateService",
            json!({"service": "tagged", "propagateTags": "TASK_DEFINITION",
                   "enableECSManagedTags": false, "forceNewDeployment": true}),
        )
        .await;
    let second = updated["service"]["deployments"][0]["id"]
        .as_str()
        .expect("a new deployment")
        .to_string();
    let tags = tags_of_new_tasks(second).await;
    assert_eq!(
        tags.len(),
        2,
        "two tasks of the new deployment (maximumPercent 200)"
    );
    for t in &tags {
        assert_eq!(t, &vec![pair("team", "a")]);
    }
}

#[tokio::test]
async fn task_records_that_embed_their_definition_are_upgraded_and_keep_running() {
    use berth_store::{Expect, Op, Store};
    let store: berth_store::AnyStore = SqliteStore::open_in_memory().expect("store").into();
    let w = World::on(store.clone()).await;
    let node = w.join(2048, 4096).await;
    let run = w.ok("RunTask", json!({"taskDefinition": "web"})).await;
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .expect("arn")
        .to_string();
    let key = format!("default|{}", arn.rsplit('/').next().unwrap_or_default());
    let partition = "000000000000/us-east-1";

    // Put the record back the way an earlier berth wrote it: the definition inside, and no
    // entry under its instance.
    let definition = w
        .ok("DescribeTaskDefinition", json!({"taskDefinition": "web:1"}))
        .await["taskDefinition"]
        .clone();
    let stored = store
        .get("ecs.task", partition, &key)
        .await
        .expect("get")
        .expect("task record");
    let mut old = stored.value.clone();
    let fields = old.as_object_mut().expect("object");
    for k in ["task_definition_arn", "health_checked", "dynamic_ports"] {
        fields.remove(k);
    }
    fields.insert("definition".into(), definition);
    let index_key = format!(
        "default|{}|{}",
        old["container_instance_id"].as_str().expect("instance"),
        old["id"].as_str().expect("id")
    );
    store
        .commit(vec![
            Op::put(
                "ecs.task",
                partition,
                &key,
                old,
                Expect::Version(stored.version),
            ),
            Op::delete(
                "ecs.task-on-instance",
                partition,
                &index_key,
                Expect::Version(1),
            ),
        ])
        .await
        .expect("write the old layout");
    assert!(w.poll(&node, 0).await.tasks.is_empty());

    // One record rewritten, one task indexed.
    assert_eq!(
        berth_ecs::upgrade::upgrade_records(&w.ecs)
            .await
            .expect("upgrade"),
        2
    );
    let upgraded = store
        .get("ecs.task", partition, &key)
        .await
        .expect("get")
        .expect("task");
    assert_eq!(upgraded.value["dynamic_ports"], 1, "{}", upgraded.value);
    assert!(upgraded.value.get("definition").is_none());
    // The node is still told to run it, and DescribeTasks names its revision.
    let poll = w.poll(&node, 0).await;
    assert_eq!(poll.tasks.len(), 1);
    assert_eq!(poll.tasks[0].task_definition["family"], "web");
    assert_eq!(
        w.task(&arn).await["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    );
    // Nothing left to do the second time.
    assert_eq!(
        berth_ecs::upgrade::upgrade_records(&w.ecs)
            .await
            .expect("upgrade"),
        0
    );
}
