#!/usr/bin/env bash
# bench/tasks/run.sh: owns the task benchmark. It builds berth in release, imports a busybox
# image from the host's busybox-static, starts `berth server` and a separate `berth agent` on
# loopback with fresh data directories, runs bench/tasks/driver.py (RunTask -> RUNNING latency vs
# docker create+start; 50 tasks vs 50 `docker run -d` -P 8; agent VmRSS with 50 tasks) and
# prints one table. Everything it starts (processes, containers, the image) is removed on exit.
# The image is pushed to berth's own registry (SigV4, so the agent pulls with the server's
# registry login) and both sides run it by that name; docker finds it locally.
# Knobs (environment): PORT (25680), N_LATENCY (20), POLL_MS (20), SKIP_BUILD=1, BERTH_BIN,
# PULL_BEHAVIOR (default: ECS's, the agent asks the registry before each task starts;
# prefer-cached: like `docker create`, use the local image without asking).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PORT=${PORT:-25680}
PULL_BEHAVIOR=${PULL_BEHAVIOR:-default}
TOKEN=berth-bench-join-token
IMAGE=berth-bench/busybox:1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-tasks.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    local ids
    ids=$(docker ps -aq --filter label=berth-bench=1 2>/dev/null || true)
    ids="$ids $(docker ps -aq --filter label=com.amazonaws.ecs.task-definition-family=berth-bench-sleep 2>/dev/null || true)"
    # shellcheck disable=SC2086
    [ -n "${ids// /}" ] && docker rm -f $ids >/dev/null 2>&1 || true
    docker rmi -f "$IMAGE" "${PUSHED:-$IMAGE}" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -p berth >&2)
fi
BERTH=${BERTH_BIN:-$TARGET_DIR/release/berth}

# The image: the host's busybox-static, nothing pulled.
mkdir -p "$WORK/rootfs/bin"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$WORK/rootfs/bin/$a"; done
tar -C "$WORK/rootfs" -c . | docker import - "$IMAGE" >/dev/null

"$BERTH" server --listen "127.0.0.1:$PORT" --data-dir "$WORK/server" \
    --aws-config-dir "$WORK/aws" --auth sigv4 --join-token "$TOKEN" \
    >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do
    grep -q "serving every API" "$WORK/server.log" 2>/dev/null && break
    sleep 0.05
done
grep -q "serving every API" "$WORK/server.log" || { cat "$WORK/server.log" >&2; exit 1; }

read -r KEY SECRET < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["root"]; print(r["access_key_id"], r["secret_access_key"])' "$WORK/server/identity.json")
export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export BERTH_ENDPOINT="http://127.0.0.1:$PORT"
python3 -c 'import boto3,os; boto3.client("ecs", endpoint_url=os.environ["BERTH_ENDPOINT"]).create_cluster(clusterName="default")'

# Into berth's registry, with a docker login of its own (the user's docker config is untouched).
PUSHED=127.0.0.1:$PORT/$IMAGE
export DOCKER_CONFIG=$WORK/docker
python3 -c 'import boto3,os; boto3.client("ecr", endpoint_url=os.environ["BERTH_ENDPOINT"]).create_repository(repositoryName="berth-bench/busybox")'
python3 -c 'import base64,boto3,os; t=boto3.client("ecr", endpoint_url=os.environ["BERTH_ENDPOINT"]).get_authorization_token()["authorizationData"][0]["authorizationToken"]; print(base64.b64decode(t).decode().split(":",1)[1])' \
    | docker login --username AWS --password-stdin "127.0.0.1:$PORT" >/dev/null
docker tag "$IMAGE" "$PUSHED"
docker push "$PUSHED" >/dev/null
unset DOCKER_CONFIG
export BENCH_IMAGE=$PUSHED

"$BERTH" agent --server "$BERTH_ENDPOINT" --cluster default --token "$TOKEN" \
    --data-dir "$WORK/agent" --image-pull-behavior "$PULL_BEHAVIOR" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
export AGENT_PID

echo "berth task benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, dockerd $(docker version -f '{{.Server.Version}}'), pull behavior $PULL_BEHAVIOR, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 "$ROOT/bench/tasks/driver.py" || { tail -20 "$WORK/agent.log" "$WORK/server.log" >&2; exit 1; }
