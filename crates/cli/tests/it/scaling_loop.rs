//! The whole scaling loop on real Docker, configured with the `aws` CLI only: `berth up`'s agent
//! samples a service's containers, the server publishes `AWS/ECS` `CPUUtilization`, the
//! target-tracking policy's managed high alarm goes to ALARM, Application Auto Scaling raises
//! the service's desiredCount and more tasks run; once the load is gone, the low alarm goes to
//! ALARM and the service scales back in after the cooldown.
//!
//! Periods are CloudWatch's high-resolution 10 s (`--target-tracking-period-secs 10`) and the
//! agent samples every second, so the loop that takes minutes with AWS's fixed 60 s periods
//! takes well under three here: about 30 s to scale out (3 periods), 150 s to scale in (15).

use crate::harness::{Berth, Opts};
use crate::tasks::{FamilyCleanup, docker, import_busybox};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Scale-out needs 3 breaching periods of 10 s after the first samples; scale-in 15 periods.
const SCALE_OUT_WAIT: Duration = Duration::from_secs(180);
const SCALE_IN_WAIT: Duration = Duration::from_secs(360);

fn aws(berth: &Berth, args: &[&str]) -> Value {
    let out = berth.aws_profile(args);
    assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
    if out.stdout.trim().is_empty() {
        Value::Null
    } else {
        out.json()
    }
}

fn service(berth: &Berth) -> Value {
    aws(
        berth,
        &[
            "ecs",
            "describe-services",
            "--cluster",
            "default",
            "--services",
            "burner",
        ],
    )["services"][0]
        .clone()
}

/// Containers of the family Docker runs now.
fn containers(family: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.amazonaws.ecs.task-definition-family={family}"),
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// The state of the policy's managed alarm whose name contains `which` (`AlarmHigh`/`AlarmLow`).
fn alarm_state(berth: &Berth, which: &str) -> String {
    let alarms = aws(
        berth,
        &[
            "cloudwatch",
            "describe-alarms",
            "--alarm-name-prefix",
            "TargetTracking-service/default/burner-",
        ],
    );
    alarms["MetricAlarms"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["AlarmName"].as_str().is_some_and(|n| n.contains(which)))
        .and_then(|a| a["StateValue"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

fn activities(berth: &Berth) -> Vec<Value> {
    aws(
        berth,
        &[
            "application-autoscaling",
            "describe-scaling-activities",
            "--service-namespace",
            "ecs",
            "--resource-id",
            "service/default/burner",
        ],
    )["ScalingActivities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Polls until `done` returns a value, failing with what was last seen.
fn wait_for<T>(
    berth: &Berth,
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match done() {
            Ok(v) => return v,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "never saw {what}; last seen: {seen}\nberth stderr (tail):\n{}",
                tail(&berth.stderr(), 40)
            ),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn cpu_load_scales_a_service_out_through_an_alarm_and_back_in_when_it_stops() {
    let family = format!("scaling-loop-{}", std::process::id());
    let image = import_busybox(&family);
    let _cleanup = FamilyCleanup {
        family: family.clone(),
        image: image.clone(),
    };
    let berth = Berth::start(
        Opts::default()
            .arg("--metrics-interval-secs")
            .arg("1")
            .arg("--metrics-high-resolution")
            .arg("--target-tracking-period-secs")
            .arg("10"),
    );

    // The container idles until /burn exists, then spins: the test applies and removes the
    // load from outside, so tasks started by the scale-out stay idle.
    let defs = json!([{
        "name": "app",
        "image": image,
        "essential": true,
        "command": ["sh", "-c",
            "while :; do if [ -f /burn ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 1; fi; done"],
        "linuxParameters": {"initProcessEnabled": true},
        "stopTimeout": 2
    }])
    .to_string();
    aws(
        &berth,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            &family,
            "--cpu",
            "256",
            "--memory",
            "64",
            "--container-definitions",
            &defs,
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
            "burner",
            "--task-definition",
            &family,
            "--desired-count",
            "1",
        ],
    );
    aws(
        &berth,
        &[
            "application-autoscaling",
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            "service/default/burner",
            "--min-capacity",
            "1",
            "--max-capacity",
            "3",
        ],
    );
    let policy = json!({
        "TargetValue": 50.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
        "ScaleOutCooldown": 10,
        "ScaleInCooldown": 10
    })
    .to_string();
    let put = aws(
        &berth,
        &[
            "application-autoscaling",
            "put-scaling-policy",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            "service/default/burner",
            "--policy-name",
            "cpu50",
            "--policy-type",
            "TargetTrackingScaling",
            "--target-tracking-scaling-policy-configuration",
            &policy,
        ],
    );
    assert_eq!(
        put["Alarms"].as_array().map(Vec::len),
        Some(2),
        "a target-tracking policy makes a high and a low alarm: {put}"
    );

    let first = wait_for(&berth, "the first task running", SCALE_OUT_WAIT, || {
        let s = service(&berth);
        let running = containers(&family);
        if s["runningCount"] == 1 && running.len() == 1 {
            Ok(running[0].clone())
        } else {
            Err(format!("{s}"))
        }
    });

    // Load: the one task spins a core, far above 50 % of its 256 units.
    docker(&["exec", &first, "sh", "-c", ": > /burn"]);
    wait_for(
        &berth,
        "the high alarm in ALARM",
        SCALE_OUT_WAIT,
        || match alarm_state(&berth, "AlarmHigh") {
            s if s == "ALARM" => Ok(()),
            s => Err(s),
        },
    );
    let out = wait_for(&berth, "a successful scale-out", SCALE_OUT_WAIT, || {
        let acts = activities(&berth);
        acts.iter()
            .find(|a| {
                a["StatusCode"] == "Successful"
                    && a["Description"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("Setting desired count to"))
            })
            .cloned()
            .ok_or_else(|| format!("{acts:?}"))
    });
    assert!(
        out["Cause"]
            .as_str()
            .is_some_and(|c| c.contains("AlarmHigh") && c.contains("in state ALARM")),
        "the activity names the alarm that caused it: {out}"
    );
    wait_for(&berth, "more than one task running", SCALE_OUT_WAIT, || {
        let s = service(&berth);
        let desired = s["desiredCount"].as_i64().unwrap_or(0);
        if desired > 1 && desired <= 3 && s["runningCount"] == desired {
            Ok(())
        } else {
            Err(format!("{s}"))
        }
    });
    assert!(containers(&family).len() > 1, "Docker runs the new tasks");

    // Load gone: every container idles, the low alarm's 15 periods pass, then the service
    // scales in to its minimum.
    for c in containers(&family) {
        docker(&["exec", &c, "sh", "-c", "busybox rm -f /burn"]);
    }
    wait_for(
        &berth,
        "the scale-in back to one task",
        SCALE_IN_WAIT,
        || {
            let s = service(&berth);
            if s["desiredCount"] == 1 && s["runningCount"] == 1 {
                Ok(())
            } else {
                Err(format!(
                    "desired {} running {}, low alarm {}",
                    s["desiredCount"],
                    s["runningCount"],
                    alarm_state(&berth, "AlarmLow")
                ))
            }
        },
    );
    let acts = activities(&berth);
    assert!(
        acts.iter().any(|a| a["StatusCode"] == "Successful"
            && a["Cause"]
                .as_str()
                .is_some_and(|c| c.contains("AlarmLow") && c.contains("in state ALARM"))),
        "the scale-in was the low alarm's doing: {acts:?}"
    );
}
