//! Component tests of the ELBv2 API: `Elbv2` on an in-memory store, driven through
//! `QueryService::call` with the JSON form of requests (as `berth_aws::query::decode` makes
//! it), on a clock the tests move.

use berth_aws::query::QueryService;
use berth_aws::{AwsError, RequestContext};
use berth_elbv2::Elbv2;
use berth_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const T0: i64 = 1_700_000_000_000;

fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

struct World {
    elb: Elbv2,
    clock: Arc<AtomicI64>,
}

impl World {
    fn new() -> World {
        let store = SqliteStore::open_in_memory().expect("in-memory store");
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let elb = Elbv2::new(
            store.into(),
            [7u8; 32],
            Arc::new(move || c.load(Ordering::SeqCst)),
        );
        World { elb, clock }
    }

    async fn call(&self, op: &str, input: Value) -> Result<Value, AwsError> {
        self.elb.call(ctx(), op, input).await
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        self.call(op, input)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    /// A load balancer, a target group and an HTTP listener on port 80 forwarding to it.
    async fn basic(&self) -> (String, String, String) {
        let lb = self.ok("CreateLoadBalancer", json!({"Name": "web"})).await["LoadBalancers"][0]
            ["LoadBalancerArn"]
            .as_str()
            .expect("arn")
            .to_string();
        let tg = self
            .ok(
                "CreateTargetGroup",
                json!({"Name": "tg", "Protocol": "HTTP", "Port": 80}),
            )
            .await["TargetGroups"][0]["TargetGroupArn"]
            .as_str()
            .expect("arn")
            .to_string();
        let listener = self
            .ok(
                "CreateListener",
                json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 80,
                       "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}),
            )
            .await["Listeners"][0]["ListenerArn"]
            .as_str()
            .expect("arn")
            .to_string();
        (lb, tg, listener)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_listeners_on_one_port_leave_exactly_one() {
    let w = Arc::new(World::new());
    let (lb, _, _) = w.basic().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let w = w.clone();
        let lb = lb.clone();
        tasks.push(tokio::spawn(async move {
            w.call(
                "CreateListener",
                json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 8080,
                       "DefaultActions": [{"Type": "fixed-response",
                           "FixedResponseConfig": {"StatusCode": format!("2{i:02}")}}]}),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, "DuplicateListener", "{e}"),
        }
    }
    assert_eq!(ok, 1);
    let listeners = w
        .ok("DescribeListeners", json!({"LoadBalancerArn": lb}))
        .await;
    assert_eq!(listeners["Listeners"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rules_never_share_a_priority() {
    let w = Arc::new(World::new());
    let (_, _, listener) = w.basic().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let w = w.clone();
        let listener = listener.clone();
        tasks.push(tokio::spawn(async move {
            w.call(
                "CreateRule",
                json!({"ListenerArn": listener, "Priority": 1 + i % 2,
                       "Conditions": [{"Field": "path-pattern", "Values": [format!("/{i}")]}],
                       "Actions": [{"Type": "fixed-response",
                           "FixedResponseConfig": {"StatusCode": "200"}}]}),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, "PriorityInUse", "{e}"),
        }
    }
    assert_eq!(ok, 2);
}

#[tokio::test]
async fn a_deregistered_target_drains_for_the_delay_then_is_gone() {
    let w = World::new();
    let (_, tg, _) = w.basic().await;
    w.ok(
        "ModifyTargetGroupAttributes",
        json!({"TargetGroupArn": tg, "Attributes": [
            {"Key": "deregistration_delay.timeout_seconds", "Value": "10"}]}),
    )
    .await;
    let target = json!([{"Id": "10.0.0.1", "Port": 8080}]);
    w.ok(
        "RegisterTargets",
        json!({"TargetGroupArn": tg, "Targets": target}),
    )
    .await;
    let state = |v: &Value| v["TargetHealthDescriptions"][0]["TargetHealth"]["State"].clone();
    let health = w
        .ok("DescribeTargetHealth", json!({"TargetGroupArn": tg}))
        .await;
    assert_eq!(state(&health), "initial");
    w.ok(
        "DeregisterTargets",
        json!({"TargetGroupArn": tg, "Targets": target}),
    )
    .await;
    let health = w
        .ok("DescribeTargetHealth", json!({"TargetGroupArn": tg}))
        .await;
    assert_eq!(state(&health), "draining");
    w.clock.fetch_add(10_000, Ordering::SeqCst);
    let health = w
        .ok("DescribeTargetHealth", json!({"TargetGroupArn": tg}))
        .await;
    assert_eq!(health["TargetHealthDescriptions"], json!([]));
}

#[tokio::test]
async fn targets_of_a_group_no_load_balancer_uses_are_unused() {
    let w = World::new();
    let tg = w
        .ok(
            "CreateTargetGroup",
            json!({"Name": "alone", "Protocol": "HTTP", "Port": 80}),
        )
        .await["TargetGroups"][0]["TargetGroupArn"]
        .clone();
    w.ok(
        "RegisterTargets",
        json!({"TargetGroupArn": tg, "Targets": [{"Id": "i-1"}]}),
    )
    .await;
    let health = w
        .ok("DescribeTargetHealth", json!({"TargetGroupArn": tg}))
        .await;
    let h = &health["TargetHealthDescriptions"][0]["TargetHealth"];
    assert_eq!(h["State"], "unused");
    assert_eq!(h["Reason"], "Target.NotInUse");
    // An ip target group checks addresses.
    let ip = w
        .ok(
            "CreateTargetGroup",
            json!({"Name": "ips", "Protocol": "HTTP", "Port": 80, "TargetType": "ip"}),
        )
        .await["TargetGroups"][0]["TargetGroupArn"]
        .clone();
    let e = w
        .call(
            "RegisterTargets",
            json!({"TargetGroupArn": ip, "Targets": [{"Id": "not-an-ip"}]}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "InvalidTarget");
}

#[tokio::test]
async fn a_target_group_serves_one_load_balancer() {
    let w = World::new();
    let (_, tg, _) = w.basic().await;
    let other = w.ok("CreateLoadBalancer", json!({"Name": "other"})).await["LoadBalancers"][0]
        ["LoadBalancerArn"]
        .clone();
    let e = w
        .call(
            "CreateListener",
            json!({"LoadBalancerArn": other, "Protocol": "HTTP", "Port": 80,
                   "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "TargetGroupAssociationLimit");
}
