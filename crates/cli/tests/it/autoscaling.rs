//! Application Auto Scaling end to end through the real `aws application-autoscaling` CLI, on
//! `berth server` with 10-second target-tracking periods: a scalable target and a
//! target-tracking policy whose managed alarms CloudWatch holds; CPU datapoints above the
//! target put the high alarm in ALARM, and the policy raises the service's desiredCount; bad
//! input gets the model's errors and stores nothing.

use crate::harness::{Berth, Opts};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WEB: &str = "service/default/web";
const DIM: &str = "ecs:service:DesiredCount";

fn aws(berth: &Berth, args: &[&str]) -> Value {
    let out = berth.aws_profile(args);
    assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
    if out.stdout.trim().is_empty() {
        Value::Null
    } else {
        out.json()
    }
}

#[track_caller]
fn aws_fails(berth: &Berth, args: &[&str], code: &str) -> String {
    let out = berth.aws_profile(args);
    assert_ne!(out.code, 0, "{args:?} succeeded: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("({code})")),
        "{args:?}: expected {code}, got: {}",
        out.stderr
    );
    out.stderr
}

fn scaling(berth: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["application-autoscaling"];
    all.extend_from_slice(args);
    aws(berth, &all)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn desired(berth: &Berth) -> i64 {
    aws(
        berth,
        &[
            "ecs",
            "describe-services",
            "--cluster",
            "default",
            "--services",
            "web",
        ],
    )["services"][0]["desiredCount"]
        .as_i64()
        .expect("desiredCount")
}

/// `berth server` with a `default` cluster and a service `web` at two tasks (no agent runs
/// them: the desired count is what scaling changes).
fn start() -> Berth {
    let berth = Berth::start(
        Opts::default()
            .server_only()
            .arg("--target-tracking-period-secs")
            .arg("10"),
    );
    aws(
        &berth,
        &["ecs", "create-cluster", "--cluster-name", "default"],
    );
    let containers = json!([{"name": "app", "image": "busybox", "cpu": 128, "memory": 128}]);
    aws(
        &berth,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            "web",
            "--container-definitions",
            &containers.to_string(),
        ],
    );
    aws(
        &berth,
        &[
            "ecs",
            "create-service",
            "--cluster",
            "default",
            "--service-name",
            "web",
            "--task-definition",
            "web",
            "--desired-count",
            "2",
        ],
    );
    berth
}

fn register(berth: &Berth) -> Value {
    scaling(
        berth,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
            "--min-capacity",
            "1",
            "--max-capacity",
            "4",
        ],
    )
}

#[test]
fn the_aws_cli_scales_a_service_out_when_a_target_tracking_alarm_fires() {
    let berth = start();
    let arn = register(&berth)["ScalableTargetARN"]
        .as_str()
        .expect("ScalableTargetARN")
        .to_owned();
    assert!(arn.contains(":scalable-target/"), "{arn}");
    let targets = scaling(
        &berth,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    );
    assert_eq!(targets["ScalableTargets"][0]["ResourceId"], WEB);
    assert_eq!(targets["ScalableTargets"][0]["MaxCapacity"], 4);

    let config = json!({
        "TargetValue": 50.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 60
    });
    let put = scaling(
        &berth,
        &[
            "put-scaling-policy",
            "--policy-name",
            "cpu50",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
            "--policy-type",
            "TargetTrackingScaling",
            "--target-tracking-scaling-policy-configuration",
            &config.to_string(),
        ],
    );
    let alarms = put["Alarms"].as_array().expect("Alarms");
    assert_eq!(alarms.len(), 2, "{put}");
    let high = alarms
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap().to_owned())
        .find(|n| n.contains("-AlarmHigh-"))
        .expect("a high alarm");
    assert!(high.starts_with("TargetTracking-service/default/web-AlarmHigh-"));

    // CloudWatch holds the managed alarms, with the configured 10-second period.
    let described = aws(
        &berth,
        &["cloudwatch", "describe-alarms", "--alarm-names", &high],
    );
    let alarm = &described["MetricAlarms"][0];
    assert_eq!(alarm["MetricName"], "CPUUtilization");
    assert_eq!(alarm["Namespace"], "AWS/ECS");
    assert_eq!(alarm["Period"], 10);
    assert_eq!(alarm["EvaluationPeriods"], 3);
    assert_eq!(alarm["Threshold"], 50.0);
    assert_eq!(alarm["AlarmActions"][0], put["PolicyARN"]);

    // AWS/ is reserved to AWS in PutMetricData, so the load comes from a second policy on the
    // application's own metric. Its value, 90 against a target of 50 for the last periods,
    // puts its high alarm in ALARM; any policy saying out scales out: 2 × 90 / 50 = 3.6 → 4.
    let custom = json!({
        "TargetValue": 50.0,
        "CustomizedMetricSpecification": {
            "MetricName": "Load", "Namespace": "App/Web", "Statistic": "Average",
            "Dimensions": [{"Name": "ServiceName", "Value": "web"}]
        },
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 60
    });
    let put = scaling(
        &berth,
        &[
            "put-scaling-policy",
            "--policy-name",
            "load50",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
            "--policy-type",
            "TargetTrackingScaling",
            "--target-tracking-scaling-policy-configuration",
            &custom.to_string(),
        ],
    );
    let high = put["Alarms"]
        .as_array()
        .expect("Alarms")
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap().to_owned())
        .find(|n| n.contains("-AlarmHigh-"))
        .expect("a high alarm");
    let now = now_secs();
    let data: Vec<Value> = (0..6)
        .map(|i| {
            json!({
                "MetricName": "Load",
                "Dimensions": [{"Name": "ServiceName", "Value": "web"}],
                "Timestamp": now - 55 + i * 10,
                "Value": 90.0,
                "StorageResolution": 1
            })
        })
        .collect();
    aws(
        &berth,
        &[
            "cloudwatch",
            "put-metric-data",
            "--namespace",
            "App/Web",
            "--metric-data",
            &Value::Array(data).to_string(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let activities = loop {
        let acts = scaling(
            &berth,
            &[
                "describe-scaling-activities",
                "--service-namespace",
                "ecs",
                "--resource-id",
                WEB,
            ],
        );
        let done = acts["ScalingActivities"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["StatusCode"] == "Successful"));
        if done || Instant::now() > deadline {
            break acts;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let act = &activities["ScalingActivities"][0];
    assert_eq!(act["StatusCode"], "Successful", "{activities}");
    assert_eq!(act["Description"], "Setting desired count to 4.");
    assert_eq!(
        act["Cause"],
        format!("monitor alarm {high} in state ALARM triggered policy load50").as_str()
    );
    assert_eq!(desired(&berth), 4);

    // Deleting the policies deletes their alarms; deregistering removes the target.
    for name in ["cpu50", "load50"] {
        scaling(
            &berth,
            &[
                "delete-scaling-policy",
                "--policy-name",
                name,
                "--service-namespace",
                "ecs",
                "--resource-id",
                WEB,
                "--scalable-dimension",
                DIM,
            ],
        );
    }
    let left = aws(
        &berth,
        &[
            "cloudwatch",
            "describe-alarms",
            "--alarm-name-prefix",
            "TargetTracking-",
        ],
    );
    assert_eq!(left["MetricAlarms"], json!([]));
    scaling(
        &berth,
        &[
            "deregister-scalable-target",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
        ],
    );
    let targets = scaling(
        &berth,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    );
    assert_eq!(targets["ScalableTargets"], json!([]));
}

#[test]
fn the_aws_cli_gets_the_models_errors_for_bad_input() {
    let berth = start();
    let base = |ns: &str, rid: &str, dim: &str| -> Vec<String> {
        [
            "application-autoscaling",
            "register-scalable-target",
            "--service-namespace",
            ns,
            "--resource-id",
            rid,
            "--scalable-dimension",
            dim,
            "--min-capacity",
            "1",
            "--max-capacity",
            "2",
        ]
        .map(String::from)
        .to_vec()
    };
    let cases = [
        base("dynamodb", "table/t", "dynamodb:table:ReadCapacityUnits"),
        base("ecs", WEB, "ecs:service:Bogus"),
        base("ecs", "service/default/missing", DIM),
        base("ecs", "not-a-service", DIM),
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aws_fails(&berth, &args, "ValidationException");
    }
    let stderr = aws_fails(
        &berth,
        &[
            "application-autoscaling",
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
            "--min-capacity",
            "5",
            "--max-capacity",
            "2",
        ],
        "ValidationException",
    );
    assert!(stderr.contains("Minimum capacity cannot be greater than maximum capacity"));
    let targets = scaling(
        &berth,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    );
    assert_eq!(targets["ScalableTargets"], json!([]), "nothing stored");

    let policy = json!({"TargetValue": 50.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}});
    let put = |berth: &Berth, code: &str| {
        aws_fails(
            berth,
            &[
                "application-autoscaling",
                "put-scaling-policy",
                "--policy-name",
                "cpu",
                "--service-namespace",
                "ecs",
                "--resource-id",
                WEB,
                "--scalable-dimension",
                DIM,
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                &policy.to_string(),
            ],
            code,
        )
    };
    put(&berth, "ObjectNotFoundException");
    register(&berth);
    // A step policy without steps, and a schedule AWS would not parse.
    aws_fails(
        &berth,
        &[
            "application-autoscaling",
            "put-scaling-policy",
            "--policy-name",
            "steps",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
            "--policy-type",
            "StepScaling",
            "--step-scaling-policy-configuration",
            r#"{"AdjustmentType": "ChangeInCapacity", "StepAdjustments": []}"#,
        ],
        "ValidationException",
    );
    aws_fails(
        &berth,
        &[
            "application-autoscaling",
            "put-scheduled-action",
            "--scheduled-action-name",
            "nightly",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
            "--schedule",
            "cron(0 12 * * * *)",
        ],
        "ValidationException",
    );
    let policies = scaling(
        &berth,
        &["describe-scaling-policies", "--service-namespace", "ecs"],
    );
    assert_eq!(policies["ScalingPolicies"], json!([]));
    let actions = scaling(
        &berth,
        &["describe-scheduled-actions", "--service-namespace", "ecs"],
    );
    assert_eq!(actions["ScheduledActions"], json!([]));

    // A valid scheduled action round-trips.
    scaling(
        &berth,
        &[
            "put-scheduled-action",
            "--scheduled-action-name",
            "nightly",
            "--service-namespace",
            "ecs",
            "--resource-id",
            WEB,
            "--scalable-dimension",
            DIM,
            "--schedule",
            "cron(0 22 * * ? *)",
            "--timezone",
            "Europe/Paris",
            "--scalable-target-action",
            "MinCapacity=1,MaxCapacity=2",
        ],
    );
    let actions = scaling(
        &berth,
        &["describe-scheduled-actions", "--service-namespace", "ecs"],
    );
    assert_eq!(
        actions["ScheduledActions"][0]["Schedule"],
        "cron(0 22 * * ? *)"
    );
    assert_eq!(
        actions["ScheduledActions"][0]["ScalableTargetAction"],
        json!({"MinCapacity": 1, "MaxCapacity": 2})
    );
}
