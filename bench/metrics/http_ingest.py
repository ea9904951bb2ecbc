"""PutMetricData through berth's HTTP endpoint with boto3, as users call it: THREADS clients
each sending batches of 1,000 datums (botocore gzips them) for DURATION seconds.

Usage: python3 http_ingest.py ENDPOINT [THREADS] [DURATION]
"""
import sys
import threading
import time

import boto3

endpoint = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 4
duration = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
batch = 1000


def client():
    return boto3.client(
        "cloudwatch",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCH",
        aws_secret_access_key="bench",
    )


sent = [0] * threads
failed = [0] * threads


def run(i):
    cw = client()
    data = [
        {"MetricName": "Requests", "Value": float(k % 97),
         "Dimensions": [{"Name": "Route", "Value": f"t{i}-r{k % 500}"}]}
        for k in range(batch)
    ]
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            cw.put_metric_data(Namespace="Bench", MetricData=data)
            sent[i] += batch
        except Exception as e:  # noqa: BLE001 - counted and reported
            failed[i] += 1
            if failed[i] == 1:
                print(f"thread {i}: {e}", file=sys.stderr)


workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
start = time.monotonic()
for w in workers:
    w.start()
for w in workers:
    w.join()
elapsed = time.monotonic() - start
total = sum(sent)
print(f"http: {total} datapoints in {elapsed:.1f} s = {total / elapsed:.0f} datapoints/s "
      f"({threads} boto3 clients, batches of {batch}, {sum(failed)} failed calls)")
