#!/usr/bin/env bash
# bench/services/run.sh: owns the service benchmark against Docker Swarm. It builds berth in
# release, imports a busybox image from the host's busybox-static, starts `berth server` and a
# separate `berth agent` on loopback, runs bench/services/driver.py (a service of N replicas to a
# steady state, then a rolling update of all N, on berth and on a one-node Docker Swarm on the
# same daemon) and prints one table. Swarm is initialised for the run and left afterwards if this
# script initialised it; everything else it starts (processes, services, containers, the image)
# is removed on exit.
# Knobs (environment): PORT (25690), REPLICAS (20), POLL_MS (50), SKIP_BUILD=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PORT=${PORT:-25690}
TOKEN=berth-bench-join-token
IMAGE=berth-bench/busybox-svc:1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-services.XXXXXX")
PIDS=()
SWARM_OURS=

cleanup() {
    local pid
    docker service rm berth-bench-swarm >/dev/null 2>&1 || true
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    local ids
    ids=$(docker ps -aq --filter label=com.amazonaws.ecs.task-definition-family=berth-bench-svc 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -n "${ids// /}" ] && docker rm -f $ids >/dev/null 2>&1 || true
    if [ -n "$SWARM_OURS" ]; then
        docker swarm leave --force >/dev/null 2>&1 || true
    fi
    docker rmi -f "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -p berth >&2)
fi
BERTH=$TARGET_DIR/release/berth

mkdir -p "$WORK/rootfs/bin"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$WORK/rootfs/bin/$a"; done
tar -C "$WORK/rootfs" -c . | docker import - "$IMAGE" >/dev/null

if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != "active" ]; then
    docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
    SWARM_OURS=1
fi

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
export BERTH_ENDPOINT="http://127.0.0.1:$PORT" BENCH_IMAGE=$IMAGE
python3 -c 'import boto3,os; boto3.client("ecs", endpoint_url=os.environ["BERTH_ENDPOINT"]).create_cluster(clusterName="default")'

"$BERTH" agent --server "$BERTH_ENDPOINT" --cluster default --token "$TOKEN" \
    --data-dir "$WORK/agent" --image-pull-behavior prefer-cached >"$WORK/agent.log" 2>&1 &
PIDS+=($!)

echo "berth service benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, dockerd $(docker version -f '{{.Server.Version}}'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 "$ROOT/bench/services/driver.py" || { tail -20 "$WORK/agent.log" "$WORK/server.log" >&2; exit 1; }
