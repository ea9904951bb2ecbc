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

/// A listener's TLS-only members: what an HTTPS listener keeps comes back from Describe and
/// Modify; what no Application Load Balancer listener can carry is refused and writes nothing.
#[tokio::test]
async fn listener_tls_members_are_kept_on_https_and_refused_elsewhere() {
    let w = World::new();
    let (lb, _, http) = w.basic().await;
    let cert = json!([{"CertificateArn": "arn:aws:acm:us-east-1:000000000000:certificate/c"}]);
    let https = w
        .ok(
            "CreateListener",
            json!({"LoadBalancerArn": lb, "Protocol": "HTTPS", "Port": 443,
                   "Certificates": cert, "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                   "MutualAuthentication": {"Mode": "passthrough"},
                   "DefaultActions": [{"Type": "fixed-response",
                       "FixedResponseConfig": {"StatusCode": "200"}}]}),
        )
        .await["Listeners"][0]["ListenerArn"]
        .clone();
    let described = w
        .ok("DescribeListeners", json!({"ListenerArns": [https]}))
        .await;
    let l = &described["Listeners"][0];
    assert_eq!(l["MutualAuthentication"], json!({"Mode": "passthrough"}));
    assert_eq!(l["SslPolicy"], "ELBSecurityPolicy-TLS13-1-2-2021-06");
    w.ok(
        "ModifyListener",
        json!({"ListenerArn": https, "MutualAuthentication": {"Mode": "off"}}),
    )
    .await;
    let described = w
        .ok("DescribeListeners", json!({"ListenerArns": [https]}))
        .await;
    assert_eq!(
        described["Listeners"][0]["MutualAuthentication"],
        json!({"Mode": "off"})
    );

    let refused = [
        // An SSL policy, ALPN and mutual TLS on an HTTP listener.
        (
            "CreateListener",
            json!({"SslPolicy": "ELBSecurityPolicy-2016-08"}),
            "ValidationError",
        ),
        (
            "CreateListener",
            json!({"AlpnPolicy": ["HTTP2Preferred"]}),
            "ValidationError",
        ),
        (
            "CreateListener",
            json!({"MutualAuthentication": {"Mode": "off"}}),
            "ValidationError",
        ),
    ];
    for (op, extra, code) in refused {
        let mut body = json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 8081,
            "DefaultActions": [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let e = w.call(op, body).await.expect_err("refused");
        assert_eq!(e.code, code, "{extra}: {e}");
    }
    // ALPN on HTTPS too, and mutual TLS modes berth cannot serve or that carry what they
    // do not support.
    let https_refusals = [
        (json!({"AlpnPolicy": ["HTTP2Only"]}), "ValidationError"),
        (
            json!({"MutualAuthentication": {"Mode": "verify"}}),
            "ValidationError",
        ),
        (
            json!({"MutualAuthentication": {"Mode": "verify",
                "TrustStoreArn": "arn:aws:elasticloadbalancing:us-east-1:000000000000:truststore/t/1"}}),
            "TrustStoreNotFound",
        ),
        (
            json!({"MutualAuthentication": {"Mode": "passthrough", "IgnoreClientCertificateExpiry": false}}),
            "ValidationError",
        ),
        (
            json!({"MutualAuthentication": {"Mode": "strict"}}),
            "ValidationError",
        ),
    ];
    for (extra, code) in https_refusals {
        let mut body = json!({"ListenerArn": https});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let e = w.call("ModifyListener", body).await.expect_err("refused");
        assert_eq!(e.code, code, "{extra}: {e}");
    }
    let e = w
        .call(
            "ModifyListener",
            json!({"ListenerArn": http, "SslPolicy": "ELBSecurityPolicy-2016-08"}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "ValidationError");
    let listeners = w
        .ok("DescribeListeners", json!({"LoadBalancerArn": lb}))
        .await;
    assert_eq!(listeners["Listeners"].as_array().map(Vec::len), Some(2));
    let still = w
        .ok("DescribeListeners", json!({"ListenerArns": [https]}))
        .await;
    assert_eq!(
        still["Listeners"][0]["MutualAuthentication"],
        json!({"Mode": "off"})
    );
    // Turning the listener into HTTP drops what only HTTPS carries.
    let plain = w
        .ok(
            "ModifyListener",
            json!({"ListenerArn": https, "Protocol": "HTTP", "Port": 8443}),
        )
        .await;
    let l = &plain["Listeners"][0];
    assert!(l.get("MutualAuthentication").is_none(), "{l}");
    assert!(l.get("SslPolicy").is_none(), "{l}");
}

#[tokio::test]
async fn a_target_groups_control_port_comes_back() {
    let w = World::new();
    let tg = w
        .ok(
            "CreateTargetGroup",
            json!({"Name": "opt", "Protocol": "HTTP", "Port": 80, "TargetControlPort": 3000}),
        )
        .await;
    assert_eq!(tg["TargetGroups"][0]["TargetControlPort"], 3000);
    let described = w
        .ok("DescribeTargetGroups", json!({"Names": ["opt"]}))
        .await;
    assert_eq!(described["TargetGroups"][0]["TargetControlPort"], 3000);
    // The port is fixed at creation: the same name with another port is another group.
    let e = w
        .call(
            "CreateTargetGroup",
            json!({"Name": "opt", "Protocol": "HTTP", "Port": 80, "TargetControlPort": 3001}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "DuplicateTargetGroupName");
    let plain = w
        .ok(
            "CreateTargetGroup",
            json!({"Name": "plain", "Protocol": "HTTP", "Port": 80}),
        )
        .await;
    assert!(plain["TargetGroups"][0].get("TargetControlPort").is_none());
}

#[tokio::test]
async fn load_balancer_pools_are_kept_and_modified_and_nlb_settings_refused() {
    let w = World::new();
    let created = w
        .ok(
            "CreateLoadBalancer",
            json!({"Name": "pools", "CustomerOwnedIpv4Pool": "ipv4pool-coip-abc123",
                   "IpamPools": {"Ipv4IpamPoolId": "ipam-pool-0a1b"}}),
        )
        .await;
    let lb = created["LoadBalancers"][0]["LoadBalancerArn"].clone();
    let describe = || async {
        w.ok("DescribeLoadBalancers", json!({"LoadBalancerArns": [lb]}))
            .await["LoadBalancers"][0]
            .clone()
    };
    let d = describe().await;
    assert_eq!(d["CustomerOwnedIpv4Pool"], "ipv4pool-coip-abc123");
    assert_eq!(d["IpamPools"], json!({"Ipv4IpamPoolId": "ipam-pool-0a1b"}));

    let out = w
        .ok(
            "ModifyIpPools",
            json!({"LoadBalancerArn": lb, "IpamPools": {"Ipv4IpamPoolId": "ipam-pool-9z"}}),
        )
        .await;
    assert_eq!(out["IpamPools"], json!({"Ipv4IpamPoolId": "ipam-pool-9z"}));
    assert_eq!(
        describe().await["IpamPools"]["Ipv4IpamPoolId"],
        "ipam-pool-9z"
    );
    let e = w
        .call(
            "ModifyIpPools",
            json!({"LoadBalancerArn": lb, "IpamPools": {"Ipv4IpamPoolId": "ipam-pool-1"},
                   "RemoveIpamPools": ["ipv4"]}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "ValidationError");
    assert_eq!(
        describe().await["IpamPools"]["Ipv4IpamPoolId"],
        "ipam-pool-9z"
    );
    let out = w
        .ok(
            "ModifyIpPools",
            json!({"LoadBalancerArn": lb, "RemoveIpamPools": ["ipv4"]}),
        )
        .await;
    assert!(out.get("IpamPools").is_none(), "{out}");
    assert!(describe().await.get("IpamPools").is_none());
    let e = w
        .call(
            "ModifyIpPools",
            json!({"LoadBalancerArn": format!("{}x", lb.as_str().expect("arn")),
                   "RemoveIpamPools": ["ipv4"]}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "LoadBalancerNotFound");

    // Source NAT prefixes are a Network Load Balancer's: `on` is refused, `off` kept.
    let e = w
        .call(
            "CreateLoadBalancer",
            json!({"Name": "nat", "EnablePrefixForIpv6SourceNat": "on",
                   "IpAddressType": "dualstack"}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "ValidationError");
    let all = w.ok("DescribeLoadBalancers", json!({})).await;
    assert_eq!(all["LoadBalancers"].as_array().map(Vec::len), Some(1));
    let off = w
        .ok(
            "CreateLoadBalancer",
            json!({"Name": "nat", "EnablePrefixForIpv6SourceNat": "off"}),
        )
        .await;
    assert_eq!(
        off["LoadBalancers"][0]["EnablePrefixForIpv6SourceNat"],
        "off"
    );
    let d = w
        .ok("DescribeLoadBalancers", json!({"Names": ["nat"]}))
        .await;
    assert_eq!(d["LoadBalancers"][0]["EnablePrefixForIpv6SourceNat"], "off");
    assert!(
        describe()
            .await
            .get("EnablePrefixForIpv6SourceNat")
            .is_none()
    );
}

fn rewrite(kind: &str, regex: &str, replace: &str) -> Value {
    let config = if kind == "url-rewrite" {
        "UrlRewriteConfig"
    } else {
        "HostHeaderRewriteConfig"
    };
    json!({"Type": kind, config: {"Rewrites": [{"Regex": regex, "Replace": replace}]}})
}

#[tokio::test]
async fn rule_transforms_round_trip_and_are_checked() {
    let w = World::new();
    let (_, _, listener) = w.basic().await;
    let transforms = json!([
        rewrite("host-header-rewrite", "^www\\.(.+)$", "$1"),
        rewrite("url-rewrite", "^/api/(.*)$", "/$1"),
    ]);
    let rule = |priority: i32, transforms: Value| {
        json!({"ListenerArn": listener, "Priority": priority,
               "Conditions": [{"Field": "path-pattern", "Values": ["/api/*"]}],
               "Actions": [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}],
               "Transforms": transforms})
    };
    let created = w.ok("CreateRule", rule(1, transforms.clone())).await;
    let arn = created["Rules"][0]["RuleArn"].clone();
    assert_eq!(created["Rules"][0]["Transforms"], transforms);
    let described = w.ok("DescribeRules", json!({"RuleArns": [arn]})).await;
    assert_eq!(described["Rules"][0]["Transforms"], transforms);

    let only_url = json!([rewrite("url-rewrite", "^/v1/(.*)$", "/v2/$1")]);
    w.ok(
        "ModifyRule",
        json!({"RuleArn": arn, "Transforms": only_url}),
    )
    .await;
    let described = w.ok("DescribeRules", json!({"RuleArns": [arn]})).await;
    assert_eq!(described["Rules"][0]["Transforms"], only_url);
    let e = w
        .call(
            "ModifyRule",
            json!({"RuleArn": arn, "Transforms": only_url, "ResetTransforms": true}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "ValidationError");
    w.ok(
        "ModifyRule",
        json!({"RuleArn": arn, "ResetTransforms": true}),
    )
    .await;
    let described = w.ok("DescribeRules", json!({"RuleArns": [arn]})).await;
    assert!(described["Rules"][0].get("Transforms").is_none());

    let bad = [
        json!([
            rewrite("url-rewrite", "a", "b"),
            rewrite("url-rewrite", "c", "d")
        ]),
        json!([{"Type": "url-rewrite", "HostHeaderRewriteConfig": {"Rewrites": [{"Regex": "a", "Replace": "b"}]}}]),
        json!([{"Type": "url-rewrite", "UrlRewriteConfig": {"Rewrites": []}}]),
        json!([rewrite("url-rewrite", "(?=x)y", "z")]),
        json!([rewrite("url-rewrite", "(a)\\1", "z")]),
        json!([rewrite("host-header-rewrite", "\\p{L}+", "z")]),
        json!([rewrite("host-header-rewrite", "[\\p{L}]", "z")]),
        json!([rewrite("url-rewrite", "(unclosed", "z")]),
        json!([rewrite("url-rewrite", &"a".repeat(1025), "z")]),
    ];
    for (i, t) in bad.into_iter().enumerate() {
        let e = w
            .call("CreateRule", rule(10 + i as i32, t.clone()))
            .await
            .expect_err("refused");
        assert_eq!(e.code, "ValidationError", "{t}: {e}");
    }
    let rules = w
        .ok("DescribeRules", json!({"ListenerArn": listener}))
        .await;
    assert_eq!(rules["Rules"].as_array().map(Vec::len), Some(2));
    // The default rule takes none.
    let default = rules["Rules"][1]["RuleArn"].clone();
    let e = w
        .call(
            "ModifyRule",
            json!({"RuleArn": default, "Transforms": only_url}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "OperationNotPermitted");
}
