//! The ELBv2 API (awsQuery) end to end: the real `aws elbv2` CLI and boto3 build load balancers,
//! target groups, listeners and rules against `berth up`; bad input gets ELBv2's errors and
//! changes nothing; the wire form (form in, XML out) is checked byte for byte where clients care.

use crate::harness::{Berth, Opts};
use serde_json::Value;

/// `aws elbv2 ARGS`, which must succeed; its JSON output (null for the actions that print
/// nothing).
#[track_caller]
fn elbv2(berth: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["elbv2"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    if out.code == 0 && out.stdout.trim().is_empty() {
        return Value::Null;
    }
    out.json()
}

#[track_caller]
pub(crate) fn elbv2_fails(berth: &Berth, args: &[&str], code: &str) -> String {
    let mut all = vec!["elbv2"];
    all.extend_from_slice(args);
    let out = berth.aws_explicit(&berth.keys, &all);
    assert_ne!(out.code, 0, "{args:?} succeeded: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("({code})")),
        "{args:?}: expected {code}, got: {}",
        out.stderr
    );
    out.stderr
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

#[test]
fn the_aws_cli_builds_a_load_balancer_with_listeners_rules_and_targets() {
    let berth = Berth::start(Opts::default());

    let lb = &elbv2(
        &berth,
        &[
            "create-load-balancer",
            "--name",
            "web",
            "--tags",
            "Key=team,Value=a",
        ],
    )["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]);
    let lb_id = lb_arn.rsplit('/').next().expect("id").to_string();
    assert!(
        lb_arn.starts_with("arn:aws:elasticloadbalancing:us-east-1:")
            && lb_arn.contains(":loadbalancer/app/web/")
            && lb_id.len() == 16
            && lb_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{lb_arn}"
    );
    assert_eq!(
        lb["DNSName"],
        format!("web-{lb_id}.us-east-1.elb.localhost")
    );
    assert_eq!(lb["Type"], "application");
    assert_eq!(lb["Scheme"], "internet-facing");
    assert_eq!(lb["State"]["Code"], "active");
    assert!(lb["CreatedTime"].as_str().expect("time").ends_with('Z'));

    // Target groups get AWS's health check defaults.
    let tg = &elbv2(
        &berth,
        &[
            "create-target-group",
            "--name",
            "blue",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
        ],
    )["TargetGroups"][0];
    let blue = s(&tg["TargetGroupArn"]);
    assert!(blue.contains(":targetgroup/blue/"), "{blue}");
    for (k, v) in [
        ("HealthCheckProtocol", Value::from("HTTP")),
        ("HealthCheckPort", "traffic-port".into()),
        ("HealthCheckEnabled", true.into()),
        ("HealthCheckPath", "/".into()),
        ("HealthCheckIntervalSeconds", 30.into()),
        ("HealthCheckTimeoutSeconds", 5.into()),
        ("HealthyThresholdCount", 5.into()),
        ("UnhealthyThresholdCount", 2.into()),
        ("TargetType", "instance".into()),
    ] {
        assert_eq!(tg[k], v, "{k}");
    }
    assert_eq!(tg["Matcher"]["HttpCode"], "200");
    let green = s(&elbv2(
        &berth,
        &[
            "create-target-group",
            "--name",
            "green",
            "--protocol",
            "HTTP",
            "--port",
            "8081",
            "--health-check-path",
            "/healthz",
            "--health-check-interval-seconds",
            "10",
            "--matcher",
            "HttpCode=200-299",
        ],
    )["TargetGroups"][0]["TargetGroupArn"]);

    // A weighted forward to both groups.
    let forward = format!(
        r#"[{{"Type":"forward","ForwardConfig":{{"TargetGroups":[{{"TargetGroupArn":"{blue}","Weight":3}},{{"TargetGroupArn":"{green}","Weight":1}}]}}}}]"#
    );
    let listener = &elbv2(
        &berth,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &forward,
        ],
    )["Listeners"][0];
    let listener_arn = s(&listener["ListenerArn"]);
    assert!(
        listener_arn.contains(&format!(":listener/app/web/{lb_id}/")),
        "{listener_arn}"
    );
    let tgs = &listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"];
    assert_eq!(tgs[0]["Weight"], 3);
    assert_eq!(tgs[1]["Weight"], 1);

    // A second listener with a fixed response, and one on the same port is refused.
    elbv2(
        &berth,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "8000",
            "--default-actions",
            r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"404","ContentType":"text/plain","MessageBody":"nothing here"}}]"#,
        ],
    );
    elbv2_fails(
        &berth,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"503"}}]"#,
        ],
        "DuplicateListener",
    );

    // Rules: path patterns, a redirect on a host header, the default rule last.
    let rule = &elbv2(
        &berth,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "10",
            "--conditions",
            "Field=path-pattern,Values=/api/*",
            "--actions",
            &format!("Type=forward,TargetGroupArn={green}"),
        ],
    )["Rules"][0];
    let api_rule = s(&rule["RuleArn"]);
    assert!(api_rule.contains(":listener-rule/app/web/"), "{api_rule}");
    assert_eq!(rule["Priority"], "10");
    assert_eq!(
        rule["Conditions"][0]["PathPatternConfig"]["Values"][0],
        "/api/*"
    );
    let redirect = elbv2(
        &berth,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "20",
            "--conditions",
            r#"[{"Field":"host-header","HostHeaderConfig":{"Values":["old.example.com"]}},{"Field":"http-request-method","HttpRequestMethodConfig":{"Values":["GET","HEAD"]}}]"#,
            "--actions",
            r#"[{"Type":"redirect","RedirectConfig":{"Protocol":"HTTPS","Host":"new.example.com","StatusCode":"HTTP_301"}}]"#,
        ],
    );
    let redirect_rule = s(&redirect["Rules"][0]["RuleArn"]);
    let config = &redirect["Rules"][0]["Actions"][0]["RedirectConfig"];
    assert_eq!(config["Port"], "#{port}");
    assert_eq!(config["Path"], "/#{path}");
    elbv2_fails(
        &berth,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "10",
            "--conditions",
            "Field=path-pattern,Values=/other/*",
            "--actions",
            &format!("Type=forward,TargetGroupArn={blue}"),
        ],
        "PriorityInUse",
    );
    elbv2(
        &berth,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "30",
            "--conditions",
            r#"[{"Field":"http-header","HttpHeaderConfig":{"HttpHeaderName":"X-Canary","Values":["1"]}},{"Field":"query-string","QueryStringConfig":{"Values":[{"Key":"v","Value":"2"}]}},{"Field":"source-ip","SourceIpConfig":{"Values":["10.0.0.0/8"]}}]"#,
            "--actions",
            &format!("Type=forward,TargetGroupArn={green}"),
        ],
    );
    let rules = elbv2(&berth, &["describe-rules", "--listener-arn", &listener_arn]);
    let priorities: Vec<&str> = rules["Rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["Priority"].as_str().expect("priority"))
        .collect();
    assert_eq!(priorities, ["10", "20", "30", "default"]);
    assert_eq!(rules["Rules"][3]["IsDefault"], true);
    let default_rule = s(&rules["Rules"][3]["RuleArn"]);
    elbv2_fails(
        &berth,
        &["delete-rule", "--rule-arn", &default_rule],
        "OperationNotPermitted",
    );

    // SetRulePriorities swaps two rules; a clash is refused.
    let swapped = elbv2(
        &berth,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={api_rule},Priority=20"),
            &format!("RuleArn={redirect_rule},Priority=10"),
        ],
    );
    assert_eq!(swapped["Rules"].as_array().expect("rules").len(), 2);
    elbv2_fails(
        &berth,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={api_rule},Priority=30"),
        ],
        "PriorityInUse",
    );
    let modified = elbv2(
        &berth,
        &[
            "modify-rule",
            "--rule-arn",
            &api_rule,
            "--conditions",
            "Field=path-pattern,Values=/v2/*",
        ],
    );
    assert_eq!(modified["Rules"][0]["Conditions"][0]["Values"][0], "/v2/*");
    assert_eq!(modified["Rules"][0]["Priority"], "20");

    // Target groups know their load balancer now, and a group in use is not deleted.
    let described = elbv2(
        &berth,
        &["describe-target-groups", "--load-balancer-arn", &lb_arn],
    );
    assert_eq!(described["TargetGroups"].as_array().expect("tgs").len(), 2);
    assert_eq!(described["TargetGroups"][0]["LoadBalancerArns"][0], lb_arn);
    elbv2_fails(
        &berth,
        &["delete-target-group", "--target-group-arn", &green],
        "ResourceInUse",
    );

    // Targets start `initial` with the registration reason; the health checker moves them on.
    elbv2(
        &berth,
        &[
            "register-targets",
            "--target-group-arn",
            &blue,
            "--targets",
            "Id=i-0123456789abcdef0",
            "Id=i-0fedcba9876543210,Port=9090",
        ],
    );
    let health = elbv2(
        &berth,
        &["describe-target-health", "--target-group-arn", &blue],
    );
    let descs = health["TargetHealthDescriptions"]
        .as_array()
        .expect("descriptions");
    assert_eq!(descs.len(), 2);
    // The health checker may have probed once already (these instances resolve nowhere, so
    // they stay `initial` until the unhealthy threshold).
    for d in descs {
        assert_eq!(d["TargetHealth"]["State"], "initial", "{d}");
        let reason = d["TargetHealth"]["Reason"].as_str().unwrap_or_default();
        assert!(
            ["Elb.RegistrationInProgress", "Elb.InitialHealthChecking"].contains(&reason),
            "{d}"
        );
    }
    assert_eq!(descs[0]["Target"]["Port"], 8080);
    assert_eq!(descs[1]["HealthCheckPort"], "9090");
    // Deregistered while in use: draining for the deregistration delay.
    elbv2(
        &berth,
        &[
            "deregister-targets",
            "--target-group-arn",
            &blue,
            "--targets",
            "Id=i-0fedcba9876543210,Port=9090",
        ],
    );
    let health = elbv2(
        &berth,
        &[
            "describe-target-health",
            "--target-group-arn",
            &blue,
            "--targets",
            "Id=i-0fedcba9876543210,Port=9090",
            "Id=i-unknown",
        ],
    );
    let descs = &health["TargetHealthDescriptions"];
    assert_eq!(descs[0]["TargetHealth"]["State"], "draining");
    assert_eq!(
        descs[0]["TargetHealth"]["Reason"],
        "Target.DeregistrationInProgress"
    );
    assert_eq!(descs[1]["TargetHealth"]["Reason"], "Target.NotRegistered");

    // Attributes: defaults, a change, and a refused value.
    let attrs = elbv2(
        &berth,
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            &blue,
        ],
    );
    let get = |v: &Value, key: &str| -> String {
        v["Attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .find(|a| a["Key"] == key)
            .map(|a| s(&a["Value"]))
            .unwrap_or_else(|| panic!("no {key}: {v}"))
    };
    assert_eq!(get(&attrs, "deregistration_delay.timeout_seconds"), "300");
    assert_eq!(get(&attrs, "load_balancing.algorithm.type"), "round_robin");
    assert_eq!(get(&attrs, "stickiness.enabled"), "false");
    let attrs = elbv2(
        &berth,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &blue,
            "--attributes",
            "Key=load_balancing.algorithm.type,Value=least_outstanding_requests",
            "Key=stickiness.enabled,Value=true",
            "Key=stickiness.lb_cookie.duration_seconds,Value=3600",
            "Key=deregistration_delay.timeout_seconds,Value=30",
        ],
    );
    assert_eq!(
        get(&attrs, "load_balancing.algorithm.type"),
        "least_outstanding_requests"
    );
    assert_eq!(get(&attrs, "stickiness.lb_cookie.duration_seconds"), "3600");
    elbv2_fails(
        &berth,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &blue,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=3601",
        ],
        "ValidationError",
    );
    let modified = elbv2(
        &berth,
        &[
            "modify-target-group",
            "--target-group-arn",
            &blue,
            "--health-check-path",
            "/ready",
            "--healthy-threshold-count",
            "3",
        ],
    );
    assert_eq!(modified["TargetGroups"][0]["HealthCheckPath"], "/ready");
    assert_eq!(modified["TargetGroups"][0]["HealthyThresholdCount"], 3);

    // Tags on every kind of resource.
    elbv2(
        &berth,
        &[
            "add-tags",
            "--resource-arns",
            &blue,
            &listener_arn,
            &api_rule,
            "--tags",
            "Key=env,Value=prod",
        ],
    );
    elbv2(
        &berth,
        &[
            "remove-tags",
            "--resource-arns",
            &lb_arn,
            "--tag-keys",
            "team",
        ],
    );
    let tags = elbv2(
        &berth,
        &[
            "describe-tags",
            "--resource-arns",
            &lb_arn,
            &blue,
            &api_rule,
        ],
    );
    let descs = &tags["TagDescriptions"];
    assert_eq!(descs[0]["Tags"].as_array().map(Vec::len), Some(0));
    assert_eq!(descs[1]["Tags"][0]["Key"], "env");
    assert_eq!(descs[2]["Tags"][0]["Value"], "prod");

    // ModifyListener: the default action changes, a port clash is refused.
    let modified = elbv2(
        &berth,
        &[
            "modify-listener",
            "--listener-arn",
            &listener_arn,
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={blue}"),
        ],
    );
    assert_eq!(
        modified["Listeners"][0]["DefaultActions"][0]["TargetGroupArn"],
        blue
    );
    elbv2_fails(
        &berth,
        &[
            "modify-listener",
            "--listener-arn",
            &listener_arn,
            "--port",
            "8000",
        ],
        "DuplicateListener",
    );

    // Deleting the load balancer takes its listeners and rules with it and frees the groups.
    elbv2(
        &berth,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    elbv2_fails(
        &berth,
        &["describe-listeners", "--listener-arns", &listener_arn],
        "ListenerNotFound",
    );
    elbv2(
        &berth,
        &["delete-target-group", "--target-group-arn", &green],
    );
    let left = elbv2(&berth, &["describe-target-groups"]);
    assert_eq!(left["TargetGroups"].as_array().expect("tgs").len(), 1);
    assert_eq!(
        left["TargetGroups"][0]["LoadBalancerArns"],
        serde_json::json!([])
    );
    let limits = elbv2(&berth, &["describe-account-limits"]);
    assert!(
        limits["Limits"]
            .as_array()
            .expect("limits")
            .iter()
            .any(|l| l["Name"] == "application-load-balancers"),
        "{limits}"
    );
}

/// boto3 with its own parameter validation off, so berth's is what answers.
const BAD_INPUT: &str = r#"
import boto3, json, os
from botocore.config import Config
c = boto3.client("elbv2", endpoint_url=os.environ["BERTH_ENDPOINT"],
                 config=Config(parameter_validation=False, retries={"max_attempts": 1}))
out = {}
def err(name, f, **kw):
    try:
        f(**kw)
        out[name] = "OK"
    except c.exceptions.ClientError as e:
        out[name] = [e.response["Error"]["Code"], e.response["Error"]["Message"],
                     e.response["ResponseMetadata"]["HTTPStatusCode"]]

lb = c.create_load_balancer(Name="web")["LoadBalancers"][0]["LoadBalancerArn"]
tg = c.create_target_group(Name="tg", Protocol="HTTP", Port=80)["TargetGroups"][0]["TargetGroupArn"]
ln = c.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                       DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])["Listeners"][0]["ListenerArn"]
c.create_rule(ListenerArn=ln, Priority=5, Conditions=[{"Field": "path-pattern", "Values": ["/a"]}],
              Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
before = [c.describe_load_balancers()["LoadBalancers"], c.describe_target_groups()["TargetGroups"],
          c.describe_listeners(LoadBalancerArn=lb)["Listeners"], c.describe_rules(ListenerArn=ln)["Rules"]]

err("missing_name", c.create_load_balancer)
err("bad_enum", c.create_load_balancer, Name="x", Scheme="public")
err("network", c.create_load_balancer, Name="x", Type="network")
err("bad_name", c.create_load_balancer, Name="-x")
err("bad_port", c.create_target_group, Name="t2", Protocol="HTTP", Port=70000)
err("port_not_int", c.create_target_group, Name="t2", Protocol="HTTP", Port="eighty")
err("tcp", c.create_target_group, Name="t2", Protocol="TCP", Port=80)
err("timeout_ge_interval", c.create_target_group, Name="t2", Protocol="HTTP", Port=80,
    HealthCheckIntervalSeconds=10, HealthCheckTimeoutSeconds=10)
err("bad_matcher", c.create_target_group, Name="t2", Protocol="HTTP", Port=80, Matcher={"HttpCode": "600"})
err("dup_listener", c.create_listener, LoadBalancerArn=lb, Protocol="HTTP", Port=80,
    DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])
err("no_lb", c.create_listener, LoadBalancerArn=lb + "0", Protocol="HTTP", Port=81,
    DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])
err("no_tg", c.create_listener, LoadBalancerArn=lb, Protocol="HTTP", Port=81,
    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg + "0"}])
err("auth_action", c.create_listener, LoadBalancerArn=lb, Protocol="HTTP", Port=81,
    DefaultActions=[{"Type": "authenticate-oidc", "AuthenticateOidcConfig": {"Issuer": "i",
        "AuthorizationEndpoint": "a", "TokenEndpoint": "t", "UserInfoEndpoint": "u", "ClientId": "c"}}])
err("priority_in_use", c.create_rule, ListenerArn=ln, Priority=5,
    Conditions=[{"Field": "path-pattern", "Values": ["/b"]}],
    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
err("priority_range", c.create_rule, ListenerArn=ln, Priority=0,
    Conditions=[{"Field": "path-pattern", "Values": ["/b"]}],
    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
err("bad_field", c.create_rule, ListenerArn=ln, Priority=6,
    Conditions=[{"Field": "cookie", "Values": ["x"]}],
    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
err("bad_cidr", c.create_rule, ListenerArn=ln, Priority=6,
    Conditions=[{"Field": "source-ip", "SourceIpConfig": {"Values": ["300.0.0.0/8"]}}],
    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
err("bad_status", c.create_rule, ListenerArn=ln, Priority=6,
    Conditions=[{"Field": "path-pattern", "Values": ["/c"]}],
    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "302"}}])
err("tg_in_use", c.delete_target_group, TargetGroupArn=tg)
err("bad_attribute", c.modify_target_group_attributes, TargetGroupArn=tg,
    Attributes=[{"Key": "stickiness.enabled", "Value": "true"},
                {"Key": "load_balancing.algorithm.type", "Value": "fastest"}])
err("unknown_attribute", c.modify_target_group_attributes, TargetGroupArn=tg,
    Attributes=[{"Key": "nope", "Value": "1"}])
err("both_listener_filters", c.describe_listeners, LoadBalancerArn=lb, ListenerArns=[ln])
err("no_rule", c.delete_rule, RuleArn=ln.replace(":listener/", ":listener-rule/") + "/0000000000000000")
err("dup_tag_keys", c.add_tags, ResourceArns=[lb], Tags=[{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}])
after = [c.describe_load_balancers()["LoadBalancers"], c.describe_target_groups()["TargetGroups"],
         c.describe_listeners(LoadBalancerArn=lb)["Listeners"], c.describe_rules(ListenerArn=ln)["Rules"]]
out["attributes"] = c.describe_target_group_attributes(TargetGroupArn=tg)["Attributes"]
out["unchanged"] = json.dumps(before, default=str) == json.dumps(after, default=str)
print(json.dumps(out))
"#;

#[test]
fn bad_input_gets_elbv2_errors_and_changes_nothing() {
    let berth = Berth::start(Opts::default());
    let out = berth.python(BAD_INPUT, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("json");
    let code = |k: &str| {
        v[k][0]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {}", v[k]))
            .to_string()
    };
    for (case, want) in [
        ("missing_name", "ValidationError"),
        ("bad_enum", "ValidationError"),
        ("network", "OperationNotPermitted"),
        ("bad_name", "ValidationError"),
        ("bad_port", "ValidationError"),
        ("port_not_int", "ValidationError"),
        ("tcp", "InvalidConfigurationRequest"),
        ("timeout_ge_interval", "ValidationError"),
        ("bad_matcher", "ValidationError"),
        ("dup_listener", "DuplicateListener"),
        ("no_lb", "LoadBalancerNotFound"),
        ("no_tg", "TargetGroupNotFound"),
        ("auth_action", "InvalidLoadBalancerAction"),
        ("priority_in_use", "PriorityInUse"),
        ("priority_range", "ValidationError"),
        ("bad_field", "ValidationError"),
        ("bad_cidr", "ValidationError"),
        ("bad_status", "ValidationError"),
        ("tg_in_use", "ResourceInUse"),
        ("bad_attribute", "ValidationError"),
        ("unknown_attribute", "ValidationError"),
        ("both_listener_filters", "ValidationError"),
        ("no_rule", "RuleNotFound"),
        ("dup_tag_keys", "DuplicateTagKeys"),
    ] {
        assert_eq!(code(case), want, "{case}: {}", v[case]);
        assert_eq!(v[case][2], 400, "{case}");
    }
    assert_eq!(
        v["missing_name"][1],
        "1 validation error detected: Value null at 'Name' failed to satisfy constraint: Member must not be null"
    );
    assert!(
        v["bad_enum"][1]
            .as_str()
            .expect("message")
            .contains("Member must satisfy enum value set: [internet-facing, internal]"),
        "{}",
        v["bad_enum"]
    );
    // A refused attribute change applies none of the request's changes.
    let attrs = v["attributes"].as_array().expect("attributes");
    assert!(
        attrs
            .iter()
            .any(|a| a["Key"] == "stickiness.enabled" && a["Value"] == "false"),
        "{attrs:?}"
    );
    assert_eq!(v["unchanged"], true, "state changed: {v}");
}

#[test]
fn boto3_pages_with_markers() {
    let berth = Berth::start(Opts::default());
    let script = r#"
import boto3, json, os
c = boto3.client("elbv2", endpoint_url=os.environ["BERTH_ENDPOINT"])
for i in range(7):
    c.create_target_group(Name=f"tg-{i}", Protocol="HTTP", Port=8000 + i)
first = c.describe_target_groups(PageSize=3)
pages = list(c.get_paginator("describe_target_groups").paginate(PaginationConfig={"PageSize": 3}))
names = [t["TargetGroupName"] for p in pages for t in p["TargetGroups"]]
print(json.dumps({"first": len(first["TargetGroups"]), "marker": "NextMarker" in first,
                  "pages": len(pages), "names": sorted(names)}))
"#;
    let out = berth.python(script, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(v["first"], 3);
    assert_eq!(v["marker"], true);
    assert_eq!(v["pages"], 3);
    let want: Vec<String> = (0..7).map(|i| format!("tg-{i}")).collect();
    assert_eq!(v["names"], serde_json::json!(want));
}

#[test]
fn the_wire_is_form_in_and_xml_out() {
    let berth = Berth::start(Opts::open());
    let form = [(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    let r = berth.post(
        "/",
        &form,
        b"Action=CreateLoadBalancer&Version=2015-12-01&Name=wire&Tags.member.1.Key=a&Tags.member.1.Value=b+c%2Fd",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/xml"));
    let text = r.text();
    let request_id = r
        .header("x-amzn-requestid")
        .expect("request id")
        .to_string();
    assert!(
        text.contains(
            "<CreateLoadBalancerResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><CreateLoadBalancerResult><LoadBalancers><member><LoadBalancerArn>arn:aws:elasticloadbalancing:"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "</CreateLoadBalancerResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></CreateLoadBalancerResponse>"
        )),
        "{text}"
    );
    let r = berth.post(
        "/",
        &form,
        b"Action=DescribeTags&Version=2015-12-01&ResourceArns.member.1=arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A000000000000%3Aloadbalancer%2Fapp%2Fnone%2F0000000000000000",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("text/xml"));
    let request_id = r
        .header("x-amzn-requestid")
        .expect("request id")
        .to_string();
    assert!(
        r.text().ends_with(&format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>LoadBalancerNotFound</Code><Message>One or more load balancers not found</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )),
        "{}",
        r.text()
    );
    // An action the model does not have, and one berth lists as unsupported.
    let r = berth.post("/", &form, b"Action=LaunchRockets&Version=2015-12-01");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("<Code>InvalidAction</Code>"),
        "{}",
        r.text()
    );
    let r = berth.post("/", &form, b"Action=DescribeSSLPolicies&Version=2015-12-01");
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("<Code>UnsupportedOperationException</Code>")
            && r.text().contains("DescribeSSLPolicies"),
        "{}",
        r.text()
    );
}
