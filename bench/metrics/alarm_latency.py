"""Alarm decision latency through berth's HTTP endpoint: a 10-second high-resolution alarm
(1 of 1 periods) is flipped ROUNDS times by a datapoint on the other side of the threshold;
each time, the latency is the alarm's StateTransitionedTimestamp minus the end of the period
holding that datapoint (CloudWatch judges a period once it is over).

Usage: python3 alarm_latency.py ENDPOINT [ROUNDS]
"""
import sys
import time

import boto3

endpoint = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
period = 10
cw = boto3.client("cloudwatch", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="AKIDBENCH", aws_secret_access_key="bench")
cw.put_metric_alarm(AlarmName="latency", Namespace="Bench/Alarm", MetricName="Load",
                    Statistic="Maximum", Period=period, EvaluationPeriods=1, Threshold=50.0,
                    ComparisonOperator="GreaterThanThreshold", TreatMissingData="ignore")
latencies = []
for i in range(rounds):
    value, want = (80.0, "ALARM") if i % 2 == 0 else (10.0, "OK")
    sent = time.time()
    cw.put_metric_data(Namespace="Bench/Alarm", MetricData=[
        {"MetricName": "Load", "Value": value, "StorageResolution": 1}])
    period_end = (int(sent) // period + 1) * period
    deadline = time.time() + 3 * period
    while time.time() < deadline:
        alarm = cw.describe_alarms(AlarmNames=["latency"])["MetricAlarms"][0]
        if alarm["StateValue"] == want:
            changed = alarm["StateTransitionedTimestamp"].timestamp()
            latencies.append(changed - period_end)
            break
        time.sleep(0.05)
    else:
        print(f"round {i}: never reached {want}", file=sys.stderr)
    time.sleep(max(0.0, period_end - time.time()) + 0.2)
latencies.sort()
print("alarm latency after the period ends (s): "
      + ", ".join(f"{x:.3f}" for x in latencies)
      + f"; max {max(latencies):.3f}" if latencies else "no transitions observed")
