#!/usr/bin/env python3
# bench/tasks/driver.py: owns the measurements of the task benchmark (bench/tasks/run.sh starts
# berth and cleans up): RunTask -> RUNNING latency against `docker create` + `docker start`,
# 50 tasks as 5 RunTask calls of 10 against 50 `docker run -d` 8 in parallel, and the agent's
# VmRSS with 50 running tasks. Prints one Markdown table. Timing uses time.perf_counter().
import json
import os
import statistics
import subprocess
import sys
import time

import boto3
from botocore.config import Config

ENDPOINT = os.environ["BERTH_ENDPOINT"]
IMAGE = os.environ["BENCH_IMAGE"]
AGENT_PID = int(os.environ["AGENT_PID"])
N_LATENCY = int(os.environ.get("N_LATENCY", "20"))
POLL = float(os.environ.get("POLL_MS", "20")) / 1000.0
DOCKER_LABEL = "berth-bench=1"
MEMORY = 16

ecs = boto3.client(
    "ecs",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    config=Config(retries={"max_attempts": 1}, tcp_keepalive=True),
)


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def wait_instance():
    deadline = time.time() + 60
    while time.time() < deadline:
        arns = ecs.list_container_instances(cluster="default")["containerInstanceArns"]
        if arns:
            ci = ecs.describe_container_instances(cluster="default", containerInstances=arns)
            if ci["containerInstances"][0]["agentConnected"]:
                return
        time.sleep(0.2)
    sys.exit("no connected container instance")


def wait_running(arns, timeout=300):
    """Polls DescribeTasks every POLL until every task is RUNNING; returns the elapsed time of
    the first answer showing all RUNNING, measured by the caller."""
    deadline = time.time() + timeout
    while True:
        pending = []
        for i in range(0, len(arns), 100):
            for t in ecs.describe_tasks(cluster="default", tasks=arns[i : i + 100])["tasks"]:
                if t["lastStatus"] == "STOPPED":
                    sys.exit(f"task stopped: {json.dumps(t, default=str)}")
                if t["lastStatus"] != "RUNNING":
                    pending.append(t["taskArn"])
        if not pending:
            return
        if time.time() > deadline:
            sys.exit(f"{len(pending)} tasks never RUNNING")
        time.sleep(POLL)


def stop_tasks(arns):
    for a in arns:
        ecs.stop_task(cluster="default", task=a, reason="bench")


def wait_stopped(arns, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ts = []
        for i in range(0, len(arns), 100):
            ts += ecs.describe_tasks(cluster="default", tasks=arns[i : i + 100])["tasks"]
        if all(t["lastStatus"] == "STOPPED" for t in ts):
            return
        time.sleep(0.2)
    sys.exit("tasks never STOPPED")


def docker_clean():
    ids = docker("ps", "-aq", "--filter", f"label={DOCKER_LABEL}").split()
    if ids:
        docker("rm", "-f", *ids)


def main():
    wait_instance()
    td = ecs.register_task_definition(
        family="berth-bench-sleep",
        networkMode="bridge",
        containerDefinitions=[
            {
                "name": "app",
                "image": IMAGE,
                "memory": MEMORY,
                "essential": True,
                "entryPoint": ["/bin/sleep"],
                "command": ["600"],
                "stopTimeout": 1,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]

    # Warm-up: one task and one container, not measured (first-use costs on both sides).
    warm = ecs.run_task(cluster="default", taskDefinition=td)["tasks"][0]["taskArn"]
    wait_running([warm])
    stop_tasks([warm])
    docker("run", "-d", "--label", DOCKER_LABEL, "--memory", f"{MEMORY}m", IMAGE, "/bin/sleep", "600")
    docker_clean()
    wait_stopped([warm])

    # (a) latency, one at a time.
    berth_lat, arns = [], []
    for _ in range(N_LATENCY):
        t0 = time.perf_counter()
        r = ecs.run_task(cluster="default", taskDefinition=td)
        if r["failures"]:
            sys.exit(f"RunTask failed: {r['failures']}")
        arn = r["tasks"][0]["taskArn"]
        wait_running([arn])
        berth_lat.append(time.perf_counter() - t0)
        arns.append(arn)
    docker_lat = []
    for _ in range(N_LATENCY):
        t0 = time.perf_counter()
        cid = docker("create", "--label", DOCKER_LABEL, "--memory", f"{MEMORY}m", IMAGE, "/bin/sleep", "600").strip()
        docker("start", cid)
        while docker("inspect", "-f", "{{.State.Running}}", cid).strip() != "true":
            time.sleep(POLL)
        docker_lat.append(time.perf_counter() - t0)
    stop_tasks(arns)
    docker_clean()
    wait_stopped(arns)

    # (b) 50 at once: 5 RunTask calls of 10, until all RUNNING.
    t0 = time.perf_counter()
    arns = []
    for _ in range(5):
        r = ecs.run_task(cluster="default", taskDefinition=td, count=10)
        if r["failures"]:
            sys.exit(f"RunTask failed: {r['failures']}")
        arns += [t["taskArn"] for t in r["tasks"]]
    wait_running(arns)
    berth_50 = time.perf_counter() - t0

    # (c) the agent's resident memory with those 50 tasks running.
    time.sleep(2)
    mem = {}
    with open(f"/proc/{AGENT_PID}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                mem[key] = int(rest.split()[0])
    rss_kib = mem.get("VmRSS", 0)
    running = len(docker("ps", "-q", "--filter", "label=com.amazonaws.ecs.task-definition-family=berth-bench-sleep").split())

    t0 = time.perf_counter()
    subprocess.run(
        f"seq 50 | xargs -P 8 -I{{}} docker run -d --label {DOCKER_LABEL} --memory {MEMORY}m {IMAGE} /bin/sleep 600 >/dev/null",
        shell=True,
        check=True,
    )
    docker_50 = time.perf_counter() - t0
    docker_clean()
    stop_tasks(arns)
    wait_stopped(arns)

    ms = lambda s: f"{s * 1000:.0f} ms"
    bp50, bp95 = pct(berth_lat, 50), pct(berth_lat, 95)
    dp50, dp95 = pct(docker_lat, 50), pct(docker_lat, 95)
    print(f"| measure | berth | docker CLI | berth/docker | goal |")
    print(f"|---|---|---|---|---|")
    print(f"| RunTask -> RUNNING p50 (n={N_LATENCY}) | {ms(bp50)} | {ms(dp50)} | {bp50 / dp50:.2f}x | <= 1.1x |")
    print(f"| RunTask -> RUNNING p95 (n={N_LATENCY}) | {ms(bp95)} | {ms(dp95)} | {bp95 / dp95:.2f}x | <= 1.1x |")
    print(f"| 50 tasks: 5 RunTask x 10 vs 50 `docker run -d` (xargs -P 8) | {ms(berth_50)} | {ms(docker_50)} | {berth_50 / docker_50:.2f}x | <= 1.0x |")
    print(f"| agent VmRSS with {running} running tasks | {rss_kib / 1024:.1f} MiB | | | < 20 MiB |")
    # What the RSS is made of: the agent's own memory, or pages of the (shared) executable.
    print(f"| (agent RssAnon / RssFile) | {mem.get('RssAnon', 0) / 1024:.1f} / {mem.get('RssFile', 0) / 1024:.1f} MiB | | | info |")
    print()
    print(f"berth latency mean {ms(statistics.mean(berth_lat))}, min {ms(min(berth_lat))}, max {ms(max(berth_lat))}; "
          f"docker mean {ms(statistics.mean(docker_lat))}, min {ms(min(docker_lat))}, max {ms(max(docker_lat))}; "
          f"poll interval {POLL * 1000:.0f} ms bounds berth's resolution")


if __name__ == "__main__":
    main()
