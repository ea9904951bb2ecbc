//! A service behind a load balancer, on a clock the tests move: `Ecs` and `Elbv2` on one
//! in-memory store, a fake agent, and the health checker played by the test, which writes
//! `elbv2.target-health` records as the data plane's checker does.

use super::{JOIN, T0, ctx, register_request};
use berth_agent_api as api;
use berth_aws::JsonService;
use berth_aws::query::QueryService;
use berth_ecs::Ecs;
use berth_ecs::nodes;
use berth_elbv2::Elbv2;
use berth_elbv2::records::{self, HealthRecord};
use berth_store::{AnyStore, Expect, Op, SqliteStore, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};
use std::time::Duration;

struct World {
    ecs: Ecs,
    elb: Elbv2,
    store: AnyStore,
    clock: Arc<AtomicI64>,
    node: api::RegisterResponse,
    /// The target group the service uses (instance targets, 30 s deregistration delay).
    tg: String,
    next_port: AtomicU16,
}

impl World {
    async fn new() -> World {
        let store: AnyStore = SqliteStore::open_in_memory()
            .expect("in-memory store")
            .into();
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let now: berth_ecs::Clock = Arc::new(move || c.load(Ordering::SeqCst));
        let ecs = Ecs::new(store.clone(), [7u8; 32], now.clone());
        let elb = Elbv2::new(store.clone(), [7u8; 32], now);
        let mut w = World {
            ecs,
            elb,
            store,
            clock,
            node: api::RegisterResponse {
                instance_id: String::new(),
                container_instance_arn: String::new(),
                node_token: String::new(),
            },
            tg: String::new(),
            next_port: AtomicU16::new(32768),
        };
        w.ecs_ok("CreateCluster", json!({})).await;
        w.node = nodes::register(&w.ecs, &ctx(), JOIN, register_request(4096, 8192))
            .await
            .expect("register");
        w.ecs_ok(
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{
                "name": "app", "image": "busybox", "cpu": 256, "memory": 512,
                "portMappings": [{"containerPort": 80, "hostPort": 0}]
            }]}),
        )
        .await;
        let lb = w
            .elb_ok("CreateLoadBalancer", json!({"Name": "front"}))
            .await["LoadBalancers"][0]["LoadBalancerArn"]
            .as_str()
            .expect("arn")
            .to_string();
        w.tg = w.target_group("web", "instance").await;
        w.elb_ok(
            "CreateListener",
            json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 80,
                   "DefaultActions": [{"Type": "forward", "TargetGroupArn": w.tg}]}),
        )
        .await;
        w.elb_ok(
            "ModifyTargetGroupAttributes",
            json!({"TargetGroupArn": w.tg, "Attributes": [
                {"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]}),
        )
        .await;
        w
    }

    async fn target_group(&self, name: &str, target_type: &str) -> String {
        self.elb_ok(
            "CreateTargetGroup",
            json!({"Name": name, "Protocol": "HTTP", "Port": 80, "TargetType": target_type}),
        )
        .await["TargetGroups"][0]["TargetGroupArn"]
            .as_str()
            .expect("arn")
            .to_string()
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    async fn ecs_call(&self, op: &str, input: Value) -> Result<Value, berth_aws::AwsError> {
        let bytes = self.ecs.call(ctx(), op, input).await?;
        Ok(serde_json::from_slice(&bytes).expect("answers are JSON"))
    }

    async fn ecs_ok(&self, op: &str, input: Value) -> Value {
        match self.ecs_call(op, input.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {input} failed: {e}"),
        }
    }

    async fn elb_ok(&self, op: &str, input: Value) -> Value {
        match self.elb.call(ctx(), op, input.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {input} failed: {e}"),
        }
    }

    async fn pass(&self) {
        berth_ecs::service_controller::reconcile(&self.ecs, &ctx())
            .await
            .expect("a controller pass");
    }

    /// What the node's agent is asked to do, by task ARN.
    async fn poll(&self) -> Vec<api::AssignedTask> {
        nodes::poll(
            &self.ecs,
            &ctx(),
            Some(&self.node.node_token),
            api::PollRequest {
                instance_id: self.node.instance_id.clone(),
                after_revision: 0,
            },
            Duration::from_millis(0),
        )
        .await
        .expect("poll")
        .tasks
    }

    /// The agent starts every task it is asked to run (each on a new host port) and stops every
    /// task it is asked to stop.
    async fn agent(&self) {
        let mut states = Vec::new();
        for t in self.poll().await {
            let task = self.task(&t.task_arn).await;
            let state = if t.desired_status == "STOPPED" {
                if task["lastStatus"] == "STOPPED" {
                    continue;
                }
                "STOPPED"
            } else if task["lastStatus"] == "PENDING" || task["lastStatus"] == "PROVISIONING" {
                "RUNNING"
            } else {
                continue;
            };
            let bindings = if state == "RUNNING" {
                vec![api::NetworkBinding {
                    bind_ip: "127.0.0.1".into(),
                    container_port: 80,
                    host_port: self.next_port.fetch_add(1, Ordering::SeqCst),
                    protocol: "tcp".into(),
                }]
            } else {
                vec![]
            };
            states.push(api::TaskState {
                task_arn: t.task_arn.clone(),
                status: state.into(),
                containers: vec![api::ContainerState {
                    name: "app".into(),
                    runtime_id: None,
                    status: state.into(),
                    exit_code: None,
                    reason: None,
                    network_bindings: bindings,
                    health_status: None,
                    image_digest: None,
                }],
                stop_code: None,
                stopped_reason: None,
                pull_started_at: None,
                pull_stopped_at: None,
                started_at: None,
                execution_stopped_at: None,
                health_status: None,
            });
        }
        nodes::report(
            &self.ecs,
            &ctx(),
            Some(&self.node.node_token),
            api::StateReport {
                instance_id: self.node.instance_id.clone(),
                tasks: states,
            },
        )
        .await
        .expect("report");
    }

    async fn task(&self, arn: &str) -> Value {
        self.ecs_ok("DescribeTasks", json!({"tasks": [arn]})).await["tasks"][0].clone()
    }

    async fn tasks(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for status in ["RUNNING", "STOPPED"] {
            let arns = self
                .ecs_ok(
                    "ListTasks",
                    json!({"serviceName": "web", "desiredStatus": status}),
                )
                .await["taskArns"]
                .clone();
            if arns.as_array().is_some_and(|a| !a.is_empty()) {
                let d = self.ecs_ok("DescribeTasks", json!({"tasks": arns})).await;
                out.extend(d["tasks"].as_array().cloned().unwrap_or_default());
            }
        }
        out
    }

    async fn service(&self) -> Value {
        self.ecs_ok("DescribeServices", json!({"services": ["web"]}))
            .await["services"][0]
            .clone()
    }

    /// `(id, port, state)` of every target of the service's group, sorted.
    async fn targets(&self) -> Vec<(String, i64, String)> {
        let d = self
            .elb_ok("DescribeTargetHealth", json!({"TargetGroupArn": self.tg}))
            .await;
        let mut out: Vec<(String, i64, String)> = d["TargetHealthDescriptions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["Target"]["Id"].as_str().unwrap_or_default().to_string(),
                    t["Target"]["Port"].as_i64().unwrap_or_default(),
                    t["TargetHealth"]["State"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The health checker's verdict on `id:port`, written as the data plane writes it.
    async fn judge(&self, id: &str, port: i64, state: &str, description: Option<&str>) {
        let key = records::target_key(&self.tg, id, port as i32);
        let health = HealthRecord {
            state: state.into(),
            reason: (state == "unhealthy").then(|| "Target.ResponseCodeMismatch".into()),
            description: description.map(Into::into),
            successes: 0,
            failures: 0,
            updated_ms: self.clock.load(Ordering::SeqCst),
        };
        self.store
            .commit(vec![Op::put(
                records::TARGET_HEALTH,
                ctx().partition(),
                key,
                serde_json::to_value(&health).expect("json"),
                Expect::Any,
            )])
            .await
            .expect("health written");
    }

    async fn judge_all(&self, state: &str) {
        for (id, port, s) in self.targets().await {
            if s != "draining" {
                self.judge(&id, port, state, None).await;
            }
        }
    }

    async fn events(&self) -> Vec<String> {
        self.service().await["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn create_service(&self, desired: i32, grace: i32) -> Value {
        self.ecs_ok(
            "CreateService",
            json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": desired,
                   "healthCheckGracePeriodSeconds": grace,
                   "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200},
                   "loadBalancers": [{"targetGroupArn": self.tg, "containerName": "app",
                                      "containerPort": 80}]}),
        )
        .await
    }
}

fn status_of(tasks: &[Value], id_suffix: &str) -> (String, String) {
    let t = tasks
        .iter()
        .find(|t| {
            t["taskArn"]
                .as_str()
                .is_some_and(|a| a.ends_with(id_suffix))
        })
        .expect("the task");
    (
        t["lastStatus"].as_str().unwrap_or_default().to_string(),
        t["desiredStatus"].as_str().unwrap_or_default().to_string(),
    )
}

fn id_of(t: &Value) -> String {
    t["taskArn"]
        .as_str()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn load_balancers_are_checked_as_ecs_checks_them() {
    let w = World::new().await;
    let create = |lb: Value, td: &'static str| {
        let w = &w;
        async move {
            w.ecs_call(
                "CreateService",
                json!({"serviceName": "bad", "taskDefinition": td, "desiredCount": 1,
                       "loadBalancers": [lb]}),
            )
            .await
            .expect_err("refused")
        }
    };
    let missing = w.tg.replace("/web/", "/gone/");
    let e = create(
        json!({"targetGroupArn": missing, "containerName": "app", "containerPort": 80}),
        "web",
    )
    .await;
    assert_eq!(e.code, "InvalidParameterException");
    assert!(
        e.message.contains("validate the specified targetGroupArn"),
        "{e}"
    );
    let lonely = w.target_group("lonely", "instance").await;
    let e = create(
        json!({"targetGroupArn": lonely, "containerName": "app", "containerPort": 80}),
        "web",
    )
    .await;
    assert_eq!(
        e.message,
        format!(
            "The target group with targetGroupArn {lonely} does not have an associated load balancer."
        )
    );
    // An `ip` group needs awsvpc; the web task definition is bridge.
    let ip = w.target_group("ips", "ip").await;
    w.elb_ok(
        "ModifyListener",
        json!({"ListenerArn": w.elb_ok("DescribeListeners", json!({"LoadBalancerArns": [
                    w.elb_ok("DescribeLoadBalancers", json!({})).await["LoadBalancers"][0]["LoadBalancerArn"].clone()
                ]})).await["Listeners"][0]["ListenerArn"].clone(),
               "DefaultActions": [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                   {"TargetGroupArn": w.tg, "Weight": 1}, {"TargetGroupArn": ip, "Weight": 1}]}}]}),
    )
    .await;
    let e = create(
        json!({"targetGroupArn": ip, "containerName": "app", "containerPort": 80}),
        "web",
    )
    .await;
    assert!(
        e.message
            .contains("has target type ip, which is incompatible with the bridge network mode"),
        "{e}"
    );
    let e = create(
        json!({"targetGroupArn": w.tg, "containerName": "app", "containerPort": 8080}),
        "web",
    )
    .await;
    assert!(e.message.contains("container port 8080"), "{e}");
    // Nothing was created.
    let listed = w.ecs_ok("ListServices", json!({})).await;
    assert_eq!(listed["serviceArns"], json!([]));
}

#[tokio::test]
async fn targets_gate_the_rollout_and_drain_before_tasks_stop() {
    let w = World::new().await;
    w.create_service(2, 0).await;
    w.pass().await;
    w.agent().await;
    w.pass().await;
    // Running tasks are registered: the instance's id and the bound host ports.
    assert_eq!(
        w.targets().await,
        vec![
            ("host-1".into(), 32768, "initial".into()),
            ("host-1".into(), 32769, "initial".into()),
        ]
    );
    let s = w.service().await;
    assert_eq!(s["deployments"][0]["rolloutState"], "IN_PROGRESS");
    assert!(
        w.events().await.iter().any(|e| e
            == &format!(
                "(service web) registered 2 targets in (target-group {})",
                w.tg
            )),
        "{:?}",
        w.events().await
    );
    // A second pass registers nothing again.
    w.pass().await;
    assert_eq!(w.targets().await.len(), 2);
    // The health checker finds them healthy: the deployment completes.
    w.judge_all("healthy").await;
    w.pass().await;
    let s = w.service().await;
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED", "{s}");
    let old: Vec<String> = w.tasks().await.iter().map(id_of).collect();

    // A new deployment: new tasks start, but the old ones stay while the new targets are not
    // healthy (minimumHealthyPercent 100).
    w.ecs_ok(
        "UpdateService",
        json!({"service": "web", "forceNewDeployment": true}),
    )
    .await;
    w.pass().await;
    w.agent().await;
    w.pass().await;
    w.pass().await;
    let tasks = w.tasks().await;
    assert_eq!(tasks.len(), 4);
    for id in &old {
        assert_eq!(status_of(&tasks, id), ("RUNNING".into(), "RUNNING".into()));
    }
    let targets = w.targets().await;
    assert_eq!(
        targets.iter().filter(|t| t.2 == "initial").count(),
        2,
        "{targets:?}"
    );
    // The new targets become healthy: the old tasks are deregistered and DEACTIVATING, and
    // their agent still runs them.
    w.judge_all("healthy").await;
    w.pass().await;
    let tasks = w.tasks().await;
    for id in &old {
        assert_eq!(
            status_of(&tasks, id),
            ("DEACTIVATING".into(), "STOPPED".into())
        );
    }
    let targets = w.targets().await;
    assert_eq!(
        targets.iter().filter(|t| t.2 == "draining").count(),
        2,
        "{targets:?}"
    );
    let events = w.events().await;
    assert!(
        events
            .iter()
            .any(|e| e == "(service web) has begun draining connections on 2 tasks."),
        "{events:?}"
    );
    let asked = w.poll().await;
    assert_eq!(asked.len(), 4);
    assert!(
        asked.iter().all(|t| t.desired_status == "RUNNING"),
        "{asked:?}"
    );
    // Within the deregistration delay (30 s) nothing stops.
    w.advance(20_000);
    w.pass().await;
    w.agent().await;
    let tasks = w.tasks().await;
    for id in &old {
        assert_eq!(status_of(&tasks, id).0, "DEACTIVATING");
    }
    // After it, the tasks move on and the agent is asked to stop them.
    w.advance(11_000);
    w.pass().await;
    let tasks = w.tasks().await;
    for id in &old {
        assert_eq!(status_of(&tasks, id), ("STOPPING".into(), "STOPPED".into()));
    }
    let stopping = w
        .poll()
        .await
        .iter()
        .filter(|t| t.desired_status == "STOPPED")
        .count();
    assert_eq!(stopping, 2);
    w.agent().await;
    w.pass().await;
    let s = w.service().await;
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED", "{s}");
    assert_eq!(
        w.targets()
            .await
            .iter()
            .filter(|t| t.2 == "healthy")
            .count(),
        2
    );

    // StopTask by a user drains too.
    let victim = w
        .tasks()
        .await
        .into_iter()
        .find(|t| t["lastStatus"] == "RUNNING")
        .expect("a running task");
    let stopped = w
        .ecs_ok("StopTask", json!({"task": victim["taskArn"]}))
        .await;
    assert_eq!(stopped["task"]["lastStatus"], "DEACTIVATING");
    w.pass().await;
    assert_eq!(
        w.targets()
            .await
            .iter()
            .filter(|t| t.2 == "draining")
            .count(),
        1
    );
}

#[tokio::test]
async fn an_unhealthy_target_is_replaced_after_the_grace_period() {
    let w = World::new().await;
    w.create_service(1, 30).await;
    w.pass().await;
    w.agent().await;
    w.pass().await;
    let first = id_of(&w.tasks().await[0]);
    w.judge(
        "host-1",
        32768,
        "unhealthy",
        Some("Health checks failed with these codes: [500]"),
    )
    .await;
    // Within the grace period: not healthy, not replaced.
    w.advance(10_000);
    w.pass().await;
    let tasks = w.tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(status_of(&tasks, &first).0, "RUNNING");
    assert_eq!(
        w.service().await["deployments"][0]["rolloutState"],
        "IN_PROGRESS"
    );
    // After it: stopped (draining first), replaced, counted as a failure.
    w.advance(21_000);
    w.pass().await;
    let tasks = w.tasks().await;
    let gone = tasks.iter().find(|t| id_of(t) == first).expect("the task");
    assert_eq!(gone["lastStatus"], "DEACTIVATING");
    assert_eq!(
        gone["stoppedReason"],
        format!("Task failed ELB health checks in (target-group {})", w.tg)
    );
    assert_eq!(tasks.len(), 2, "a replacement was started");
    let s = w.service().await;
    assert_eq!(s["deployments"][0]["failedTasks"], 1);
    let events = w.events().await;
    let unhealthy = format!(
        "(service web) (task {first}) (instance host-1) (port 32768) is unhealthy in (target-group {}) due to (reason Health checks failed with these codes: [500]).",
        w.tg
    );
    assert!(events.contains(&unhealthy), "{events:?}");
    assert!(
        events.contains(&format!(
            "(service web) has stopped 1 running tasks: (task {first})."
        )),
        "{events:?}"
    );
}

#[tokio::test]
async fn awsvpc_tasks_register_as_ip_targets_on_the_loopback() {
    let w = World::new().await;
    w.ecs_ok(
        "RegisterTaskDefinition",
        json!({"family": "vpc", "networkMode": "awsvpc", "containerDefinitions": [{
            "name": "app", "image": "busybox", "cpu": 256, "memory": 512,
            "portMappings": [{"containerPort": 8080}]
        }]}),
    )
    .await;
    let lb = w
        .elb_ok("CreateLoadBalancer", json!({"Name": "inner"}))
        .await["LoadBalancers"][0]["LoadBalancerArn"]
        .clone();
    let ip = w.target_group("ips", "ip").await;
    w.elb_ok(
        "CreateListener",
        json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 8080,
               "DefaultActions": [{"Type": "forward", "TargetGroupArn": ip}]}),
    )
    .await;
    // An instance group does not suit awsvpc.
    let e = w
        .ecs_call(
            "CreateService",
            json!({"serviceName": "web", "taskDefinition": "vpc", "desiredCount": 1,
                   "loadBalancers": [{"targetGroupArn": w.tg, "containerName": "app",
                                      "containerPort": 8080}]}),
        )
        .await
        .expect_err("refused");
    assert!(
        e.message.contains(
            "has target type instance, which is incompatible with the awsvpc network mode"
        ),
        "{e}"
    );
    w.ecs_ok(
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "vpc", "desiredCount": 1,
               "loadBalancers": [{"targetGroupArn": ip, "containerName": "app",
                                  "containerPort": 8080}]}),
    )
    .await;
    w.pass().await;
    w.agent().await;
    w.pass().await;
    let d = w
        .elb_ok("DescribeTargetHealth", json!({"TargetGroupArn": ip}))
        .await;
    let targets = d["TargetHealthDescriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(targets.len(), 1, "{d}");
    assert_eq!(targets[0]["Target"]["Id"], "127.0.0.1");
    assert_eq!(targets[0]["Target"]["Port"], 8080);
}
