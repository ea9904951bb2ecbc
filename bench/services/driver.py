#!/usr/bin/env python3
# bench/services/driver.py: owns the measurements of the service benchmark (bench/services/run.sh
# starts berth and Swarm and cleans up). For each side, in one run: a service of REPLICAS tasks
# from creation to a steady state, then a rolling update of every task to a new revision, until
# the service is steady again on it. Both sides run the same image and command with an init
# process (so SIGTERM stops the sleep at once) and their default rolling-update settings:
# ECS 200 % / 100 %, Swarm parallelism 1, delay 0, stop-first. Prints one Markdown table.
import os
import subprocess
import sys
import time

import boto3
from botocore.config import Config

ENDPOINT = os.environ["BERTH_ENDPOINT"]
IMAGE = os.environ["BENCH_IMAGE"]
REPLICAS = int(os.environ.get("REPLICAS", "20"))
POLL = float(os.environ.get("POLL_MS", "50")) / 1000.0
TIMEOUT = 600

ecs = boto3.client(
    "ecs",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    config=Config(retries={"max_attempts": 1}, tcp_keepalive=True),
)


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


def register(version):
    td = ecs.register_task_definition(
        family="berth-bench-svc",
        containerDefinitions=[
            {
                "name": "app",
                "image": IMAGE,
                "memory": 16,
                "command": ["sleep", "3600"],
                "environment": [{"name": "VERSION", "value": version}],
                "linuxParameters": {"initProcessEnabled": True},
            }
        ],
    )
    return td["taskDefinition"]["taskDefinitionArn"]


def berth_steady(td):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        s = ecs.describe_services(cluster="default", services=["bench"])["services"][0]
        d = s["deployments"]
        if (
            len(d) == 1
            and d[0]["rolloutState"] == "COMPLETED"
            and s["taskDefinition"] == td
            and s["runningCount"] == REPLICAS
        ):
            return
        time.sleep(POLL)
    sys.exit("berth service never steady")


def berth():
    wait_instance()
    v1 = register("1")
    t0 = time.perf_counter()
    ecs.create_service(cluster="default", serviceName="bench", taskDefinition=v1, desiredCount=REPLICAS)
    berth_steady(v1)
    start = time.perf_counter() - t0
    v2 = register("2")
    t0 = time.perf_counter()
    ecs.update_service(cluster="default", service="bench", taskDefinition=v2)
    berth_steady(v2)
    update = time.perf_counter() - t0
    ecs.delete_service(cluster="default", service="bench", force=True)
    return start, update


def swarm_converged(version):
    """Every task of the service on `version` running, none other left running."""
    out = docker(
        "service", "ps", "berth-bench-swarm", "--filter", "desired-state=running",
        "--format", "{{.CurrentState}}|{{.Image}}",
    )
    states = [l for l in out.splitlines() if l]
    running = [l for l in states if l.startswith("Running")]
    spec = docker("service", "inspect", "-f", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", "berth-bench-swarm")
    ok_spec = f"VERSION={version}" in spec
    update = docker("service", "inspect", "-f", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", "berth-bench-swarm").strip()
    return ok_spec and len(running) == REPLICAS and len(states) == REPLICAS and update in ("", "completed")


def swarm():
    t0 = time.perf_counter()
    docker(
        "service", "create", "--detach", "--name", "berth-bench-swarm", "--replicas", str(REPLICAS),
        "--init", "--limit-memory", "16m", "--env", "VERSION=1", IMAGE, "sleep", "3600",
    )
    deadline = time.time() + TIMEOUT
    while not swarm_converged("1"):
        if time.time() > deadline:
            sys.exit("swarm service never converged")
        time.sleep(POLL)
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    docker("service", "update", "--detach", "--env-add", "VERSION=2", "berth-bench-swarm")
    deadline = time.time() + TIMEOUT
    while not swarm_converged("2"):
        if time.time() > deadline:
            sys.exit("swarm update never converged")
        time.sleep(POLL)
    update = time.perf_counter() - t0
    docker("service", "rm", "berth-bench-swarm")
    return start, update


def main():
    b_start, b_update = berth()
    # Let berth's containers go before Swarm starts, so the two never share the machine.
    deadline = time.time() + 120
    while docker("ps", "-q", "--filter", "label=com.amazonaws.ecs.task-definition-family=berth-bench-svc").strip():
        if time.time() > deadline:
            break
        time.sleep(0.2)
    s_start, s_update = swarm()
    print(f"| measure ({REPLICAS} replicas) | berth | Docker Swarm | berth/Swarm | goal |")
    print("|---|---|---|---|---|")
    print(f"| create → steady state | {b_start*1000:.0f} ms | {s_start*1000:.0f} ms | {b_start/s_start:.2f}× | ≤ 0.5× |")
    print(f"| rolling update of every task → steady | {b_update*1000:.0f} ms | {s_update*1000:.0f} ms | {b_update/s_update:.2f}× | ≤ 0.33× |")


if __name__ == "__main__":
    main()
