//! Component tests of Application Auto Scaling: `Autoscaling` and a real `berth_ecs::Ecs` on one
//! in-memory store, driven through `JsonService::call` with JSON as clients send it, a fake
//! CloudWatch that records the alarms it is asked for, alarm transitions handed in as CloudWatch
//! hands them, and a clock the tests move. The ECS service has no agents: its desiredCount is
//! what DescribeServices shows, tasks or not.

use berth_autoscaling::{Alarms, Autoscaling, Options, alarms::BoxFuture};
use berth_aws::{AwsError, JsonService, RequestContext};
use berth_cloudwatch::AlarmTransition;
use berth_ecs::Ecs;
use berth_shapes::cloudwatch::PutMetricAlarmInput;
use berth_store::SqliteStore;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const T0: i64 = 1_800_000_000_000;
const PARTITION: &str = "000000000000/us-east-1";
const WEB: &str = "service/default/web";

fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

/// CloudWatch as far as this crate sees it: the alarms that exist, by name.
#[derive(Default)]
struct FakeAlarms {
    alarms: Mutex<BTreeMap<String, PutMetricAlarmInput>>,
}

impl Alarms for FakeAlarms {
    fn put(
        &self,
        _: RequestContext,
        alarm: PutMetricAlarmInput,
    ) -> BoxFuture<'_, Result<(), AwsError>> {
        self.alarms
            .lock()
            .insert(alarm.alarm_name.clone().unwrap_or_default(), alarm);
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, _: RequestContext, names: Vec<String>) -> BoxFuture<'_, Result<(), AwsError>> {
        let mut alarms = self.alarms.lock();
        for n in names {
            alarms.remove(&n);
        }
        Box::pin(async { Ok(()) })
    }
}

struct World {
    scaling: Autoscaling,
    ecs: Ecs,
    alarms: Arc<FakeAlarms>,
    clock: Arc<AtomicI64>,
}

impl World {
    /// A `default` cluster with a service `web` at `desired` tasks.
    async fn new(desired: i32) -> World {
        let store: berth_store::AnyStore = SqliteStore::open_in_memory().expect("store").into();
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let clock_fn: berth_ecs::Clock = Arc::new(move || c.load(Ordering::SeqCst));
        let ecs = Ecs::new(store.clone(), [7u8; 32], clock_fn.clone());
        let alarms = Arc::new(FakeAlarms::default());
        let scaling = Autoscaling::new(
            store,
            [8u8; 32],
            clock_fn,
            ecs.clone(),
            alarms.clone(),
            Options::default(),
        );
        let w = World {
            scaling,
            ecs,
            alarms,
            clock,
        };
        w.ecs_ok("CreateCluster", json!({})).await;
        w.ecs_ok(
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{
                "name": "app", "image": "busybox", "cpu": 128, "memory": 128
            }]}),
        )
        .await;
        w.ecs_ok(
            "CreateService",
            json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": desired}),
        )
        .await;
        w
    }

    fn advance_secs(&self, secs: i64) {
        self.clock.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    async fn ecs_ok(&self, op: &str, input: Value) -> Value {
        let bytes = self
            .ecs
            .call(ctx(), op, input.clone())
            .await
            .unwrap_or_else(|e| panic!("{op} {input}: {e}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn call(&self, op: &str, input: Value) -> Result<Value, AwsError> {
        let bytes = self.scaling.call(ctx(), op, input).await?;
        Ok(serde_json::from_slice(&bytes).expect("answers are JSON"))
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        match self.call(op, input.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {input} failed: {e}"),
        }
    }

    async fn err(&self, op: &str, input: Value) -> (String, String) {
        match self.call(op, input.clone()).await {
            Ok(v) => panic!("{op} {input} succeeded: {v}"),
            Err(e) => (e.code.to_string(), e.message),
        }
    }

    async fn desired(&self) -> i64 {
        let d = self
            .ecs_ok("DescribeServices", json!({"services": ["web"]}))
            .await;
        d["services"][0]["desiredCount"].as_i64().unwrap()
    }

    async fn register(&self, min: i32, max: i32) -> Value {
        self.ok(
            "RegisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": WEB,
                   "ScalableDimension": "ecs:service:DesiredCount",
                   "MinCapacity": min, "MaxCapacity": max}),
        )
        .await
    }

    async fn put_cpu_policy(&self, name: &str, target: f64, extra: Value) -> Value {
        let mut config = json!({
            "TargetValue": target,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "ScaleOutCooldown": 60, "ScaleInCooldown": 120
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        self.ok(
            "PutScalingPolicy",
            json!({"PolicyName": name, "ServiceNamespace": "ecs", "ResourceId": WEB,
                   "ScalableDimension": "ecs:service:DesiredCount",
                   "PolicyType": "TargetTrackingScaling",
                   "TargetTrackingScalingPolicyConfiguration": config}),
        )
        .await
    }

    /// CloudWatch reports that `alarm` went to `state` with `value` against `threshold`.
    async fn transition(
        &self,
        alarm: &str,
        actions: Vec<String>,
        state: &str,
        value: f64,
        threshold: f64,
    ) {
        self.scaling
            .on_transition(AlarmTransition {
                partition: PARTITION.into(),
                alarm_name: alarm.into(),
                alarm_arn: format!("arn:aws:cloudwatch:us-east-1:000000000000:alarm:{alarm}"),
                old_state: "OK".into(),
                new_state: state.into(),
                reason: "test".into(),
                actions,
                timestamp_ms: self.clock.load(Ordering::SeqCst),
                value: Some(value),
                threshold: Some(threshold),
            })
            .await
            .expect("transition handled");
    }

    async fn activities(&self) -> Vec<Value> {
        let v = self
            .ok(
                "DescribeScalingActivities",
                json!({"ServiceNamespace": "ecs", "ResourceId": WEB}),
            )
            .await;
        v["ScalingActivities"].as_array().unwrap().clone()
    }

    async fn count(&self, op: &str, list: &str) -> usize {
        self.ok(op, json!({"ServiceNamespace": "ecs"})).await[list]
            .as_array()
            .unwrap()
            .len()
    }
}

fn names(policy: &Value) -> (String, String) {
    let alarms = policy["Alarms"].as_array().unwrap();
    let name = |i: usize| alarms[i]["AlarmName"].as_str().unwrap().to_owned();
    (name(0), name(1))
}

#[tokio::test]
async fn scalable_targets_register_update_describe_deregister() {
    let w = World::new(2).await;
    let arn = w.register(1, 4).await["ScalableTargetARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = arn
        .strip_prefix("arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/")
        .expect("AWS's ARN form");
    assert_eq!(id.len(), 36);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));

    // Re-registering updates what is given and keeps the rest (and the ARN).
    let again = w
        .ok(
            "RegisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": WEB,
                   "ScalableDimension": "ecs:service:DesiredCount", "MaxCapacity": 6,
                   "SuspendedState": {"DynamicScalingInSuspended": true}}),
        )
        .await;
    assert_eq!(again["ScalableTargetARN"], arn.as_str());
    let d = w
        .ok(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "ResourceIds": [WEB]}),
        )
        .await;
    let t = &d["ScalableTargets"][0];
    assert_eq!(t["MinCapacity"], 1);
    assert_eq!(t["MaxCapacity"], 6);
    assert_eq!(
        t["RoleARN"],
        "arn:aws:iam::000000000000:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"
    );
    assert_eq!(t["SuspendedState"]["DynamicScalingInSuspended"], true);
    assert_eq!(t["SuspendedState"]["DynamicScalingOutSuspended"], false);
    assert!(t["CreationTime"].as_f64().unwrap() > 0.0);
    // Another namespace has nothing in berth.
    let other = w
        .ok(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "dynamodb"}),
        )
        .await;
    assert_eq!(other["ScalableTargets"], json!([]));

    w.ok(
        "DeregisterScalableTarget",
        json!({"ServiceNamespace": "ecs", "ResourceId": WEB,
               "ScalableDimension": "ecs:service:DesiredCount"}),
    )
    .await;
    assert_eq!(
        w.count("DescribeScalableTargets", "ScalableTargets").await,
        0
    );
    let (code, _) = w
        .err(
            "DeregisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": WEB,
                   "ScalableDimension": "ecs:service:DesiredCount"}),
        )
        .await;
    assert_eq!(code, "ObjectNotFoundException");
}

#[tokio::test]
async fn bad_input_gets_the_models_errors_and_stores_nothing() {
    let w = World::new(2).await;
    let register = |ns: &str, rid: &str, dim: &str, min: Option<i32>, max: Option<i32>| {
        let mut v = json!({"ServiceNamespace": ns, "ResourceId": rid, "ScalableDimension": dim});
        if let Some(m) = min {
            v["MinCapacity"] = json!(m);
        }
        if let Some(m) = max {
            v["MaxCapacity"] = json!(m);
        }
        v
    };
    let dim = "ecs:service:DesiredCount";
    let cases = [
        (
            register(
                "dynamodb",
                "table/t",
                "dynamodb:table:ReadCapacityUnits",
                Some(1),
                Some(2),
            ),
            "berth supports only the ecs",
        ),
        (
            register("ecs", WEB, "ecs:service:Other", Some(1), Some(2)),
            "Unsupported service namespace",
        ),
        (
            register("ecs", "cluster/default", dim, Some(1), Some(2)),
            "Unsupported resource ID",
        ),
        (
            register("ecs", "service/default/nope", dim, Some(1), Some(2)),
            "ECS service doesn't exist: service/default/nope",
        ),
        (
            register("ecs", WEB, dim, Some(1), None),
            "MinCapacity and MaxCapacity are required",
        ),
        (
            register("ecs", WEB, dim, Some(5), Some(2)),
            "Minimum capacity cannot be greater than maximum capacity",
        ),
    ];
    for (input, wording) in cases {
        let (code, message) = w.err("RegisterScalableTarget", input.clone()).await;
        assert_eq!(code, "ValidationException", "{input}");
        assert!(message.contains(wording), "{input}: {message}");
    }
    assert_eq!(
        w.count("DescribeScalableTargets", "ScalableTargets").await,
        0
    );

    // A policy or scheduled action for a target never registered.
    let (code, message) = w
        .err(
            "PutScalingPolicy",
            json!({"PolicyName": "p", "ServiceNamespace": "ecs", "ResourceId": WEB,
                   "ScalableDimension": dim, "PolicyType": "TargetTrackingScaling",
                   "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0,
                     "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}}}),
        )
        .await;
    assert_eq!(code, "ObjectNotFoundException");
    assert_eq!(
        message,
        "No scalable target registered for service namespace: ecs, resource ID: service/default/web, scalable dimension: ecs:service:DesiredCount"
    );
    w.register(1, 4).await;
    let policy = |body: Value| {
        let mut v = json!({"PolicyName": "p", "ServiceNamespace": "ecs", "ResourceId": WEB,
                           "ScalableDimension": dim});
        for (k, x) in body.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let bad_policies = [
        json!({"PolicyType": "TargetTrackingScaling"}),
        json!({"PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0}}),
        json!({"PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "DynamoDBReadCapacityUtilization"}}}),
        json!({"PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget", "ResourceLabel": "nonsense"}}}),
        json!({"PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": -1.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}}}),
        json!({"PolicyType": "PredictiveScaling"}),
        json!({"PolicyType": "StepScaling"}),
        json!({"PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity", "StepAdjustments": []}}),
        json!({"PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 10.0, "ScalingAdjustment": 1},
                                {"MetricIntervalLowerBound": 5.0, "ScalingAdjustment": 2}]}}),
        json!({"PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity",
            "MinAdjustmentMagnitude": 2, "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]}}),
    ];
    for body in bad_policies {
        let (code, _) = w.err("PutScalingPolicy", policy(body.clone())).await;
        assert_eq!(code, "ValidationException", "{body}");
    }
    assert_eq!(
        w.count("DescribeScalingPolicies", "ScalingPolicies").await,
        0
    );
    assert!(
        w.alarms.alarms.lock().is_empty(),
        "no alarm made for a refused policy"
    );

    let scheduled = |schedule: &str, extra: Value| {
        let mut v = json!({"ScheduledActionName": "s", "ServiceNamespace": "ecs", "ResourceId": WEB,
                           "ScalableDimension": dim, "Schedule": schedule});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    for input in [
        scheduled("every day", json!({})),
        scheduled("cron(0 12 * * * *)", json!({})),
        scheduled("rate(0 minutes)", json!({})),
        scheduled("rate(5 minutes)", json!({"Timezone": "Mars/Olympus"})),
        scheduled(
            "rate(5 minutes)",
            json!({"ScalableTargetAction": {"MinCapacity": 5, "MaxCapacity": 2}}),
        ),
        scheduled(
            "rate(5 minutes)",
            json!({"StartTime": 2000.0, "EndTime": 1000.0}),
        ),
    ] {
        let (code, _) = w.err("PutScheduledAction", input.clone()).await;
        assert_eq!(code, "ValidationException", "{input}");
    }
    assert_eq!(
        w.count("DescribeScheduledActions", "ScheduledActions")
            .await,
        0
    );

    let (code, _) = w
        .err(
            "DeleteScalingPolicy",
            json!({"PolicyName": "none", "ServiceNamespace": "ecs", "ResourceId": WEB, "ScalableDimension": dim}),
        )
        .await;
    assert_eq!(code, "ObjectNotFoundException");
    let (code, _) = w
        .err(
            "DeleteScheduledAction",
            json!({"ScheduledActionName": "none", "ServiceNamespace": "ecs", "ResourceId": WEB, "ScalableDimension": dim}),
        )
        .await;
    assert_eq!(code, "ObjectNotFoundException");
}

#[tokio::test]
async fn target_tracking_makes_its_alarms_and_scales_out_within_max() {
    let w = World::new(2).await;
    w.register(1, 5).await;
    let put = w.put_cpu_policy("cpu50", 50.0, json!({})).await;
    let arn = put["PolicyARN"].as_str().unwrap().to_owned();
    assert!(
        arn.starts_with("arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:")
            && arn.ends_with(":resource/ecs/service/default/web:policyName/cpu50"),
        "{arn}"
    );
    let (high, low) = names(&put);
    assert!(
        high.starts_with("TargetTracking-service/default/web-AlarmHigh-"),
        "{high}"
    );
    assert!(
        low.starts_with("TargetTracking-service/default/web-AlarmLow-"),
        "{low}"
    );

    {
        let alarms = w.alarms.alarms.lock();
        let h = &alarms[&high];
        assert_eq!(h.namespace.as_deref(), Some("AWS/ECS"));
        assert_eq!(h.metric_name.as_deref(), Some("CPUUtilization"));
        assert_eq!(h.statistic.as_deref(), Some("Average"));
        assert_eq!(h.period, Some(60));
        assert_eq!(h.evaluation_periods, Some(3));
        assert_eq!(h.threshold, Some(50.0));
        assert_eq!(
            h.comparison_operator.as_deref(),
            Some("GreaterThanThreshold")
        );
        assert_eq!(h.alarm_actions.as_deref(), Some(&[arn.clone()][..]));
        let dims: Vec<(String, String)> = h
            .dimensions
            .iter()
            .flatten()
            .map(|d| (d.name.clone().unwrap(), d.value.clone().unwrap()))
            .collect();
        assert_eq!(
            dims,
            [
                ("ClusterName".to_owned(), "default".to_owned()),
                ("ServiceName".to_owned(), "web".to_owned())
            ]
        );
        let l = &alarms[&low];
        assert_eq!(l.evaluation_periods, Some(15));
        assert_eq!(l.threshold, Some(45.0));
        assert_eq!(l.comparison_operator.as_deref(), Some("LessThanThreshold"));
    }
    let described = w
        .ok(
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "ResourceId": WEB}),
        )
        .await;
    let p = &described["ScalingPolicies"][0];
    assert_eq!(p["PolicyARN"], arn.as_str());
    assert_eq!(p["Alarms"], put["Alarms"]);
    assert_eq!(
        p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"],
        "ECSServiceAverageCPUUtilization"
    );

    // The high alarm fires at 90 % CPU: 2 × 90 / 50 = 3.6 → 4 tasks.
    w.transition(&high, vec![arn.clone()], "ALARM", 90.0, 50.0)
        .await;
    assert_eq!(w.desired().await, 4);
    let acts = w.activities().await;
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0]["Description"], "Setting desired count to 4.");
    assert_eq!(
        acts[0]["Cause"],
        format!("monitor alarm {high} in state ALARM triggered policy cpu50").as_str()
    );
    assert_eq!(acts[0]["StatusCode"], "Successful");
    assert_eq!(
        acts[0]["StatusMessage"],
        "Successfully set desired count to 4. Change successfully fulfilled by ecs."
    );

    // During the cooldown the same load adds nothing (computed from the 2 it began with)...
    w.advance_secs(30);
    w.scaling.tick().await;
    w.transition(&high, vec![arn.clone()], "ALARM", 90.0, 50.0)
        .await;
    assert_eq!(w.desired().await, 4);
    // ...a larger one does, within max.
    w.transition(&high, vec![arn.clone()], "ALARM", 300.0, 50.0)
        .await;
    assert_eq!(w.desired().await, 5);
    assert_eq!(w.activities().await.len(), 2);

    // At max, a further breach is a not-scaled activity, shown only when asked for.
    w.transition(&high, vec![arn.clone()], "ALARM", 300.0, 50.0)
        .await;
    assert_eq!(w.desired().await, 5);
    assert_eq!(w.activities().await.len(), 2);
    let all = w
        .ok(
            "DescribeScalingActivities",
            json!({"ServiceNamespace": "ecs", "ResourceId": WEB, "IncludeNotScaledActivities": true}),
        )
        .await;
    let newest = &all["ScalingActivities"][0];
    assert_eq!(newest["StatusCode"], "Failed");
    assert_eq!(
        newest["NotScaledReasons"],
        json!([{"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 5, "MinCapacity": 1, "CurrentCapacity": 5}])
    );

    // Deleting the policy deletes its alarms; transitions of the old ARN drive nothing.
    w.ok(
        "DeleteScalingPolicy",
        json!({"PolicyName": "cpu50", "ServiceNamespace": "ecs", "ResourceId": WEB,
               "ScalableDimension": "ecs:service:DesiredCount"}),
    )
    .await;
    assert!(w.alarms.alarms.lock().is_empty());
    w.advance_secs(600);
    w.transition(&high, vec![arn], "ALARM", 300.0, 50.0).await;
    assert_eq!(w.activities().await.len(), 2);
}

#[tokio::test]
async fn an_alarm_fired_again_while_in_alarm_scales_on_its_newest_value() {
    let w = World::new(2).await;
    w.register(1, 10).await;
    let put = w.put_cpu_policy("cpu50", 50.0, json!({})).await;
    let arn = put["PolicyARN"].as_str().unwrap().to_owned();
    let (high, _) = names(&put);
    w.transition(&high, vec![arn.clone()], "ALARM", 90.0, 50.0)
        .await;
    assert_eq!(w.desired().await, 4);
    // CloudWatch fires the alarm again a period later, still in ALARM, with the newest value;
    // past the 60 s scale-out cooldown, that value decides: ceil(4 × 110 / 50) = 9.
    w.advance_secs(61);
    w.transition(&high, vec![arn.clone()], "ALARM", 110.0, 50.0)
        .await;
    assert_eq!(w.desired().await, 9);
    // Nothing runs from the tick: the service stays where the alarm left it.
    w.transition(&high, vec![], "OK", 40.0, 50.0).await;
    w.advance_secs(61);
    w.scaling.tick().await;
    assert_eq!(w.desired().await, 9);
}

#[tokio::test]
async fn no_scale_in_during_a_deployment() {
    // A service created with tasks and no agent to run them stays in its first deployment.
    let w = World::new(6).await;
    w.register(1, 10).await;
    let put = w.put_cpu_policy("cpu50", 50.0, json!({})).await;
    let arn = put["PolicyARN"].as_str().unwrap().to_owned();
    let (_, low) = names(&put);
    let d = w
        .ecs_ok("DescribeServices", json!({"services": ["web"]}))
        .await;
    assert_eq!(
        d["services"][0]["deployments"][0]["rolloutState"],
        "IN_PROGRESS"
    );
    w.transition(&low, vec![arn.clone()], "ALARM", 10.0, 45.0)
        .await;
    assert_eq!(
        w.desired().await,
        6,
        "no scale-in while a deployment is in progress"
    );
    assert!(w.activities().await.is_empty());
}

#[tokio::test]
async fn scale_in_after_the_deployment_and_cooldowns() {
    // A service at zero completes its deployment at once; then it is scaled to 6 by hand.
    let w = World::new(0).await;
    berth_ecs::service_controller::reconcile(&w.ecs, &ctx())
        .await
        .unwrap();
    w.ecs_ok(
        "UpdateService",
        json!({"service": "web", "desiredCount": 6}),
    )
    .await;
    let d = w
        .ecs_ok("DescribeServices", json!({"services": ["web"]}))
        .await;
    assert_eq!(
        d["services"][0]["deployments"][0]["rolloutState"],
        "COMPLETED"
    );
    w.register(1, 10).await;
    let put = w.put_cpu_policy("cpu50", 50.0, json!({})).await;
    let arn = put["PolicyARN"].as_str().unwrap().to_owned();
    let (high, low) = names(&put);

    // A scale-out starts a 60 s scale-out cooldown during which scale-in waits.
    w.transition(&high, vec![arn.clone()], "ALARM", 60.0, 50.0)
        .await;
    assert_eq!(w.desired().await, 8);
    w.transition(&high, vec![arn.clone()], "OK", 40.0, 50.0)
        .await;
    w.advance_secs(30);
    w.transition(&low, vec![arn.clone()], "ALARM", 20.0, 45.0)
        .await;
    assert_eq!(w.desired().await, 8, "blocked by the scale-out cooldown");
    // After it, 8 × 20 / 50 = 3.2 → 4 (rounded up: scale-in keeps the partial task).
    w.advance_secs(31);
    w.transition(&low, vec![arn.clone()], "ALARM", 20.0, 45.0)
        .await;
    assert_eq!(w.desired().await, 4);
    // Then a 120 s scale-in cooldown, through which the low alarm, still in ALARM, is fired
    // again each period (as CloudWatch does).
    w.advance_secs(61);
    w.transition(&low, vec![arn.clone()], "ALARM", 20.0, 45.0)
        .await;
    assert_eq!(w.desired().await, 4, "blocked by the scale-in cooldown");
    w.advance_secs(60);
    w.transition(&low, vec![arn.clone()], "ALARM", 20.0, 45.0)
        .await;
    assert_eq!(w.desired().await, 2);
    // DisableScaleIn: no low alarm, and no scale-in.
    let put = w
        .put_cpu_policy("cpu50", 50.0, json!({"DisableScaleIn": true}))
        .await;
    assert_eq!(put["Alarms"].as_array().unwrap().len(), 1);
    assert!(
        !w.alarms.alarms.lock().contains_key(&low),
        "the low alarm is deleted"
    );
}

#[tokio::test]
async fn step_scaling_follows_the_users_alarm() {
    let w = World::new(4).await;
    w.register(1, 20).await;
    let put = w
        .ok(
            "PutScalingPolicy",
            json!({"PolicyName": "steps", "ServiceNamespace": "ecs", "ResourceId": WEB,
                   "ScalableDimension": "ecs:service:DesiredCount", "PolicyType": "StepScaling",
                   "StepScalingPolicyConfiguration": {
                     "AdjustmentType": "PercentChangeInCapacity", "Cooldown": 60,
                     "MinAdjustmentMagnitude": 2, "MetricAggregationType": "Average",
                     "StepAdjustments": [
                       {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 20.0, "ScalingAdjustment": 10},
                       {"MetricIntervalLowerBound": 20.0, "ScalingAdjustment": 100}]}}),
        )
        .await;
    let arn = put["PolicyARN"].as_str().unwrap().to_owned();
    assert!(
        put.get("Alarms").is_none(),
        "a step policy makes no alarms: {put}"
    );
    assert!(w.alarms.alarms.lock().is_empty());
    // 10 % of 4 is 0.4 → 1, raised to the minimum magnitude 2.
    w.transition("my-high-cpu", vec![arn.clone()], "ALARM", 75.0, 70.0)
        .await;
    assert_eq!(w.desired().await, 6);
    let acts = w.activities().await;
    assert_eq!(
        acts[0]["Cause"],
        "monitor alarm my-high-cpu in state ALARM triggered policy steps"
    );
    // After the cooldown, breach 30 is the +100 % step: 6 → 12.
    w.advance_secs(61);
    w.transition("my-high-cpu", vec![arn], "ALARM", 100.0, 70.0)
        .await;
    assert_eq!(w.desired().await, 12);
}

#[tokio::test]
async fn scheduled_actions_set_min_and_max_when_due() {
    let w = World::new(2).await;
    w.register(1, 10).await;
    w.ok(
        "PutScheduledAction",
        json!({"ScheduledActionName": "morning", "ServiceNamespace": "ecs", "ResourceId": WEB,
               "ScalableDimension": "ecs:service:DesiredCount", "Schedule": "rate(5 minutes)",
               "Timezone": "Europe/Paris",
               "ScalableTargetAction": {"MinCapacity": 5, "MaxCapacity": 8}}),
    )
    .await;
    let d = w
        .ok(
            "DescribeScheduledActions",
            json!({"ServiceNamespace": "ecs", "ResourceId": WEB}),
        )
        .await;
    let a = &d["ScheduledActions"][0];
    assert_eq!(a["Schedule"], "rate(5 minutes)");
    assert_eq!(a["Timezone"], "Europe/Paris");
    assert_eq!(
        a["ScalableTargetAction"],
        json!({"MinCapacity": 5, "MaxCapacity": 8})
    );
    assert!(
        a["ScheduledActionARN"]
            .as_str()
            .unwrap()
            .ends_with(":resource/ecs/service/default/web:scheduledActionName/morning")
    );
    // Not due yet.
    w.advance_secs(120);
    w.scaling.tick().await;
    assert_eq!(w.desired().await, 2);
    w.advance_secs(181);
    w.scaling.tick().await;
    assert_eq!(w.desired().await, 5);
    let t = w
        .ok(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs"}),
        )
        .await;
    assert_eq!(t["ScalableTargets"][0]["MinCapacity"], 5);
    assert_eq!(t["ScalableTargets"][0]["MaxCapacity"], 8);
    let acts = w.activities().await;
    assert_eq!(acts.len(), 2);
    let descriptions: Vec<&str> = acts
        .iter()
        .map(|a| a["Description"].as_str().unwrap())
        .collect();
    assert!(descriptions.contains(&"Setting min capacity to 5 and max capacity to 8"));
    assert!(descriptions.contains(&"Setting desired count to 5."));
    assert!(
        acts.iter()
            .all(|a| a["Cause"] == "scheduled action name morning was triggered")
    );
    // A tick in the same period does nothing more.
    w.scaling.tick().await;
    assert_eq!(w.activities().await.len(), 2);
    // Suspended scheduled scaling skips its fire times.
    w.ok(
        "RegisterScalableTarget",
        json!({"ServiceNamespace": "ecs", "ResourceId": WEB, "ScalableDimension": "ecs:service:DesiredCount",
               "MinCapacity": 1, "SuspendedState": {"ScheduledScalingSuspended": true}}),
    )
    .await;
    w.advance_secs(301);
    w.scaling.tick().await;
    let t = w
        .ok(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs"}),
        )
        .await;
    assert_eq!(t["ScalableTargets"][0]["MinCapacity"], 1);
    w.ok(
        "DeleteScheduledAction",
        json!({"ScheduledActionName": "morning", "ServiceNamespace": "ecs", "ResourceId": WEB,
               "ScalableDimension": "ecs:service:DesiredCount"}),
    )
    .await;
    assert_eq!(
        w.count("DescribeScheduledActions", "ScheduledActions")
            .await,
        0
    );
}

#[tokio::test]
async fn tags_on_scalable_targets() {
    let w = World::new(1).await;
    let arn = w.register(1, 3).await["ScalableTargetARN"]
        .as_str()
        .unwrap()
        .to_owned();
    w.ok(
        "TagResource",
        json!({"ResourceARN": arn, "Tags": {"team": "a", "env": "dev"}}),
    )
    .await;
    w.ok(
        "UntagResource",
        json!({"ResourceARN": arn, "TagKeys": ["env"]}),
    )
    .await;
    let tags = w
        .ok("ListTagsForResource", json!({"ResourceARN": arn}))
        .await;
    assert_eq!(tags["Tags"], json!({"team": "a"}));
    let (code, _) = w
        .err(
            "TagResource",
            json!({"ResourceARN": arn, "Tags": {"aws:reserved": "x"}}),
        )
        .await;
    assert_eq!(code, "ValidationException");
    let (code, _) = w
        .err(
            "ListTagsForResource",
            json!({"ResourceARN": "arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/none"}),
        )
        .await;
    assert_eq!(code, "ResourceNotFoundException");
}

#[tokio::test]
async fn deregistering_a_target_removes_its_policies_alarms_and_actions() {
    let w = World::new(2).await;
    w.register(1, 5).await;
    w.put_cpu_policy("cpu50", 50.0, json!({})).await;
    w.ok(
        "PutScheduledAction",
        json!({"ScheduledActionName": "s", "ServiceNamespace": "ecs", "ResourceId": WEB,
               "ScalableDimension": "ecs:service:DesiredCount", "Schedule": "cron(0 12 * * ? *)"}),
    )
    .await;
    assert_eq!(w.alarms.alarms.lock().len(), 2);
    w.ok(
        "DeregisterScalableTarget",
        json!({"ServiceNamespace": "ecs", "ResourceId": WEB,
               "ScalableDimension": "ecs:service:DesiredCount"}),
    )
    .await;
    assert!(w.alarms.alarms.lock().is_empty());
    assert_eq!(
        w.count("DescribeScalingPolicies", "ScalingPolicies").await,
        0
    );
    assert_eq!(
        w.count("DescribeScheduledActions", "ScheduledActions")
            .await,
        0
    );
}

#[tokio::test]
async fn every_operation_of_the_model_is_served_or_listed_with_a_reason() {
    let model: Value = serde_json::from_str(berth_shapes::models::AUTOSCALING).unwrap();
    let all: std::collections::BTreeSet<&str> = model["operations"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let listed: std::collections::BTreeSet<&str> = berth_autoscaling::UNSUPPORTED
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l.split_once(':').expect("`Name: reason`");
            assert!(!reason.trim().is_empty(), "{name} needs a reason");
            name.trim()
        })
        .collect();
    let served: std::collections::BTreeSet<&str> = berth_autoscaling::implemented_operations()
        .iter()
        .copied()
        .collect();
    assert!(served.is_disjoint(&listed), "both served and listed");
    let covered: std::collections::BTreeSet<&str> = served.union(&listed).copied().collect();
    assert_eq!(covered, all);
    // What is listed answers as unsupported, whatever its input.
    let w = World::new(1).await;
    let (code, _) = w
        .err(
            "GetPredictiveScalingForecast",
            json!({"ServiceNamespace": "ecs"}),
        )
        .await;
    assert_eq!(code, "UnsupportedOperationException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_scale_a_target_once() {
    let w = World::new(2).await;
    w.register(1, 10).await;
    let put = w.put_cpu_policy("cpu50", 50.0, json!({})).await;
    let arn = put["PolicyARN"].as_str().unwrap().to_owned();
    let (high, _) = names(&put);
    let mut handles = Vec::new();
    for _ in 0..8 {
        let scaling = w.scaling.clone();
        let t = AlarmTransition {
            partition: PARTITION.into(),
            alarm_name: high.clone(),
            alarm_arn: String::new(),
            old_state: "OK".into(),
            new_state: "ALARM".into(),
            reason: "test".into(),
            actions: vec![arn.clone()],
            timestamp_ms: T0,
            value: Some(90.0),
            threshold: Some(50.0),
        };
        handles.push(tokio::spawn(async move { scaling.on_transition(t).await }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    // 2 → 4 once: the others see the scale-out cooldown computed from 2.
    assert_eq!(w.desired().await, 4);
    assert_eq!(w.activities().await.len(), 1);
}

#[tokio::test]
async fn alarms_watch_the_metric_each_policy_names() {
    let w = World::new(2).await;
    w.register(1, 5).await;
    let alb = w
        .put_cpu_policy(
            "alb",
            1000.0,
            json!({"PredefinedMetricSpecification": {
                "PredefinedMetricType": "ALBRequestCountPerTarget",
                "ResourceLabel": "app/web-lb/50dc6c495c0c9188/targetgroup/web-tg/943f017f100becff"}}),
        )
        .await;
    let (high, low) = names(&alb);
    {
        let alarms = w.alarms.alarms.lock();
        let h = &alarms[&high];
        assert_eq!(h.namespace.as_deref(), Some("AWS/ApplicationELB"));
        assert_eq!(h.metric_name.as_deref(), Some("RequestCountPerTarget"));
        assert_eq!(h.statistic.as_deref(), Some("Sum"));
        let dims = h.dimensions.clone().unwrap();
        assert_eq!(dims.len(), 1);
        assert_eq!(dims[0].name.as_deref(), Some("TargetGroup"));
        assert_eq!(
            dims[0].value.as_deref(),
            Some("targetgroup/web-tg/943f017f100becff")
        );
        assert_eq!(alarms[&low].threshold, Some(900.0));
    }
    let custom = w
        .put_cpu_policy(
            "math",
            10.0,
            json!({"PredefinedMetricSpecification": null, "CustomizedMetricSpecification": {"Metrics": [
                {"Id": "m1", "ReturnData": false, "MetricStat": {"Stat": "Sum",
                  "Metric": {"Namespace": "App", "MetricName": "Queue"}}},
                {"Id": "e1", "Expression": "m1 / 2", "ReturnData": true}]}}),
        )
        .await;
    let (high, _) = names(&custom);
    let alarms = w.alarms.alarms.lock();
    let queries = alarms[&high].metrics.clone().expect("metric math");
    assert_eq!(queries.len(), 2);
    let stat = queries[0].metric_stat.as_ref().expect("the metric's stat");
    assert_eq!(stat.period, Some(60), "the alarm's period is filled in");
    assert_eq!(queries[1].expression.as_deref(), Some("m1 / 2"));
    assert!(alarms[&high].metric_name.is_none());
}

#[tokio::test]
async fn registering_a_range_moves_the_desired_count_into_it() {
    let w = World::new(2).await;
    w.register(1, 10).await;
    assert_eq!(w.desired().await, 2, "inside the range: left alone");
    assert!(w.activities().await.is_empty());
    w.register(3, 10).await;
    assert_eq!(w.desired().await, 3, "below the new minimum: raised to it");
    w.register(1, 2).await;
    assert_eq!(w.desired().await, 2, "above the new maximum: lowered to it");
    let descriptions: Vec<String> = w
        .activities()
        .await
        .iter()
        .map(|a| a["Description"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        descriptions,
        ["Setting desired count to 2.", "Setting desired count to 3."]
    );
}
