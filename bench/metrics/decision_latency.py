"""Scaling decision latency through berth's HTTP endpoint, the whole path: a datapoint crosses
an alarm's threshold → the alarm goes to ALARM when its period is judged → its action runs a
step-scaling policy → Application Auto Scaling calls UpdateService. Each round the latency is
the moment DescribeServices first shows the new desiredCount (polled every POLL seconds, so the
figure is an upper bound by up to POLL) minus the end of the period holding the datapoint: what
the issue's "< 1 s beyond the alarm's own evaluation period" measures. Between rounds a low
datapoint returns the alarm to OK, so every round starts from a fresh transition.

The service runs on a cluster with no container instances: its tasks are never placed, which
does not matter here, since the decision ends at UpdateService.

Usage: python3 decision_latency.py ENDPOINT [ROUNDS]
"""
import sys
import time

import boto3

endpoint = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
period = 10
poll = 0.02
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="AKIDBENCH", aws_secret_access_key="bench")
ecs = boto3.client("ecs", **kw)
aas = boto3.client("application-autoscaling", **kw)
cw = boto3.client("cloudwatch", **kw)

cluster, service = "bench-decision", "web"
ecs.create_cluster(clusterName=cluster)
ecs.register_task_definition(family="bench-decision", containerDefinitions=[
    {"name": "app", "image": "bench/none:1", "memory": 16}])
ecs.create_service(cluster=cluster, serviceName=service, taskDefinition="bench-decision",
                   desiredCount=1)
resource = f"service/{cluster}/{service}"
aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=resource,
                             ScalableDimension="ecs:service:DesiredCount",
                             MinCapacity=1, MaxCapacity=1000)
policy = aas.put_scaling_policy(
    PolicyName="step-out", ServiceNamespace="ecs", ResourceId=resource,
    ScalableDimension="ecs:service:DesiredCount", PolicyType="StepScaling",
    StepScalingPolicyConfiguration={
        "AdjustmentType": "ChangeInCapacity", "Cooldown": 0,
        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]})
cw.put_metric_alarm(AlarmName="decision", Namespace="Bench/Decision", MetricName="Load",
                    Statistic="Maximum", Period=period, EvaluationPeriods=1, Threshold=50.0,
                    ComparisonOperator="GreaterThanThreshold", TreatMissingData="ignore",
                    AlarmActions=[policy["PolicyARN"]])


def desired():
    return ecs.describe_services(cluster=cluster, services=[service])["services"][0]["desiredCount"]


def state():
    return cw.describe_alarms(AlarmNames=["decision"])["MetricAlarms"][0]["StateValue"]


def put(value):
    sent = time.time()
    cw.put_metric_data(Namespace="Bench/Decision", MetricData=[
        {"MetricName": "Load", "Value": value, "StorageResolution": 1}])
    return (int(sent) // period + 1) * period


latencies = []
for i in range(rounds):
    before = desired()
    period_end = put(80.0)
    deadline = time.time() + 3 * period
    while time.time() < deadline:
        if desired() > before:
            latencies.append(time.time() - period_end)
            break
        time.sleep(poll)
    else:
        print(f"round {i}: desiredCount never rose from {before}", file=sys.stderr)
    # Back to OK before the next round (a low datapoint in the next period).
    time.sleep(max(0.0, period_end - time.time()) + 0.2)
    put(10.0)
    deadline = time.time() + 3 * period
    while time.time() < deadline and state() != "OK":
        time.sleep(0.1)
    time.sleep(max(0.0, (int(time.time()) // period + 1) * period - time.time()) + 0.2)
latencies.sort()
if latencies:
    print("datapoint -> UpdateService, after the period ends (s, upper bound by "
          f"{poll:.2f} s polling): " + ", ".join(f"{x:.3f}" for x in latencies)
          + f"; max {max(latencies):.3f}")
else:
    print("no scaling observed")
