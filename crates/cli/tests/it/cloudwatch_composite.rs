//! Composite alarms end to end through the real `aws cloudwatch` CLI: a rule over two metric
//! alarms, one driven by metric data and one by SetAlarmState, takes the composite to ALARM and
//! back to OK; the CLI's `composite-alarm-exists` waiter; DescribeAlarms' type, children and
//! parents filters; bad rules refused without changing anything.

use crate::cloudwatch::{
    alarm_state, cloudwatch, cloudwatch_fails, drive_until, history_summaries,
};
use crate::harness::{Berth, Opts};
use serde_json::Value;

fn composite(berth: &Berth, name: &str) -> Value {
    let out = cloudwatch(
        berth,
        &[
            "describe-alarms",
            "--alarm-names",
            name,
            "--alarm-types",
            "CompositeAlarm",
        ],
    );
    out["CompositeAlarms"][0].clone()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn metric_alarm(berth: &Berth, name: &str, metric: &str) {
    cloudwatch(
        berth,
        &[
            "put-metric-alarm",
            "--alarm-name",
            name,
            "--namespace",
            "Berth/Alarm",
            "--metric-name",
            metric,
            "--statistic",
            "Maximum",
            "--period",
            "10",
            "--evaluation-periods",
            "1",
            "--threshold",
            "50",
            "--comparison-operator",
            "GreaterThanThreshold",
            "--treat-missing-data",
            "ignore",
        ],
    );
}

#[test]
fn a_composite_alarm_follows_its_children() {
    let berth = Berth::start(Opts::default());
    // `load-high` is moved by data (drive_until writes Berth/Alarm Load); `deploying` by hand.
    metric_alarm(&berth, "load-high", "Load");
    metric_alarm(&berth, "deploying", "Deploys");
    let rule = "ALARM(load-high) AND NOT ALARM(\"deploying\")";
    cloudwatch(
        &berth,
        &[
            "put-composite-alarm",
            "--alarm-name",
            "page-me",
            "--alarm-rule",
            rule,
            "--alarm-description",
            "load without a deployment",
            "--tags",
            "Key=team,Value=ops",
        ],
    );
    cloudwatch(
        &berth,
        &[
            "wait",
            "composite-alarm-exists",
            "--alarm-names",
            "page-me",
            "--alarm-types",
            "CompositeAlarm",
        ],
    );
    let c = composite(&berth, "page-me");
    assert_eq!(c["AlarmRule"], rule);
    assert_eq!(c["AlarmDescription"], "load without a deployment");
    // Judged when put: no child is in ALARM.
    assert_eq!(c["StateValue"], "OK", "{c}");

    drive_until(&berth, "80", "load-high", "ALARM");
    let c = composite(&berth, "page-me");
    assert_eq!(c["StateValue"], "ALARM", "{c}");
    let reason = c["StateReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(":alarm:load-high transitioned to ALARM at "),
        "{reason}"
    );
    let data: Value =
        serde_json::from_str(c["StateReasonData"].as_str().unwrap_or_default()).expect("JSON");
    assert!(
        data["triggeringAlarms"][0]["arn"]
            .as_str()
            .unwrap_or_default()
            .ends_with(":alarm:load-high"),
        "{data}"
    );

    // A deployment starts: NOT ALARM(deploying) no longer holds.
    cloudwatch(
        &berth,
        &[
            "set-alarm-state",
            "--alarm-name",
            "deploying",
            "--state-value",
            "ALARM",
            "--state-reason",
            "deployment started",
        ],
    );
    assert_eq!(alarm_state(&berth, "load-high"), "ALARM");
    assert_eq!(composite(&berth, "page-me")["StateValue"], "OK");

    let history = cloudwatch(
        &berth,
        &[
            "describe-alarm-history",
            "--alarm-name",
            "page-me",
            "--alarm-types",
            "CompositeAlarm",
            "--history-item-type",
            "StateUpdate",
            "--scan-by",
            "TimestampAscending",
        ],
    );
    let summaries = history_summaries(&history);
    assert_eq!(
        summaries,
        vec![
            "Alarm updated from INSUFFICIENT_DATA to OK",
            "Alarm updated from OK to ALARM",
            "Alarm updated from ALARM to OK"
        ]
    );

    // Filters: metric alarms only by default; children and parents both ways.
    let plain = cloudwatch(&berth, &["describe-alarms"]);
    assert_eq!(
        names(&plain["MetricAlarms"]),
        vec!["deploying", "load-high"]
    );
    assert!(names(&plain["CompositeAlarms"]).is_empty());
    let children = cloudwatch(
        &berth,
        &["describe-alarms", "--children-of-alarm-name", "page-me"],
    );
    assert_eq!(
        names(&children["MetricAlarms"]),
        vec!["deploying", "load-high"]
    );
    let parents = cloudwatch(
        &berth,
        &["describe-alarms", "--parents-of-alarm-name", "deploying"],
    );
    assert_eq!(names(&parents["CompositeAlarms"]), vec!["page-me"]);
    let arn = c["AlarmArn"].as_str().unwrap_or_default().to_string();
    let tags = cloudwatch(&berth, &["list-tags-for-resource", "--resource-arn", &arn]);
    assert_eq!(tags["Tags"][0]["Key"], "team");

    // Bad rules are refused and change nothing: a syntax error, an alarm that does not exist,
    // and a cycle through a second composite.
    cloudwatch(
        &berth,
        &[
            "put-composite-alarm",
            "--alarm-name",
            "outer",
            "--alarm-rule",
            "ALARM(page-me) OR FALSE",
        ],
    );
    let before = cloudwatch(
        &berth,
        &[
            "describe-alarms",
            "--alarm-types",
            "CompositeAlarm",
            "MetricAlarm",
        ],
    );
    for bad in [
        "ALARM(load-high) AND",
        "ALARM(load-high) XOR ALARM(deploying)",
        "ALARM(no-such-alarm)",
        "ALARM(outer)",
    ] {
        cloudwatch_fails(
            &berth,
            &[
                "put-composite-alarm",
                "--alarm-name",
                "page-me",
                "--alarm-rule",
                bad,
            ],
            "ValidationError",
        );
    }
    let after = cloudwatch(
        &berth,
        &[
            "describe-alarms",
            "--alarm-types",
            "CompositeAlarm",
            "MetricAlarm",
        ],
    );
    assert_eq!(after, before);
    assert_eq!(composite(&berth, "page-me")["AlarmRule"], rule);
    // A child a composite still names cannot be deleted; the parent first, then it can.
    cloudwatch_fails(
        &berth,
        &["delete-alarms", "--alarm-names", "page-me"],
        "ValidationError",
    );
    cloudwatch(&berth, &["delete-alarms", "--alarm-names", "outer"]);
    cloudwatch(&berth, &["delete-alarms", "--alarm-names", "page-me"]);
    let gone = cloudwatch(
        &berth,
        &["describe-alarms", "--alarm-types", "CompositeAlarm"],
    );
    assert!(names(&gone["CompositeAlarms"]).is_empty());
}
