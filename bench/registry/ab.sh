#!/usr/bin/env bash
# bench/registry/ab.sh: owns the A/B comparison of two berth builds on the registry benchmark's
# measurements, interleaved in one run so both see the same machine load (the machine is shared
# and noisy: a comparison across separate runs says little). Starts `A` and `B` (two berth
# binaries) and distribution on loopback with fresh temporary directories, then
# bench/registry/ab.py alternates A, B and distribution round by round: one 512 MiB upload each
# (POST + PUT, curl -T) and one manifest GET load each (wrk), printing every round with the load
# average and each server's CPU time per upload (user + system, from /proc: steadier than MB/s
# on a loaded machine), then the medians. Everything it starts is killed and removed on exit.
# Usage: bench/registry/ab.sh BERTH_A BERTH_B   (knobs: BASE_PORT (25800; uses +0..+2),
# BLOB_MIB (512), ROUNDS (5), CONNECTIONS (64), DURATION (5s), WRK_THREADS (1), SKIP_UPLOAD=1,
# SKIP_MANIFEST=1, LOADGEN=<berth-loadgen binary>: every upload also by its sendfile client)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
A_BIN=${1:?usage: ab.sh BERTH_A BERTH_B}
B_BIN=${2:?usage: ab.sh BERTH_A BERTH_B}
BASE_PORT=${BASE_PORT:-25800}
BLOB_MIB=${BLOB_MIB:-512}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-registry-ab.XXXXXX")
PIDS=()
. "$ROOT/bench/registry/common.sh"
trap cleanup EXIT

mkdir -p "$WORK/files"
head -c "$((BLOB_MIB * 1024 * 1024))" /dev/urandom >"$WORK/files/blob"
BLOB_DIGEST="sha256:$(sha256sum "$WORK/files/blob" | cut -d' ' -f1)"

start_berth "$A_BIN" a "$BASE_PORT"
A_PID=$LAST_PID
start_berth "$B_BIN" b "$((BASE_PORT + 2))"
B_PID=$LAST_PID

start_dist main "$((BASE_PORT + 1))"
DIST_PID=$LAST_PID

export A_URL="http://127.0.0.1:$BASE_PORT" B_URL="http://127.0.0.1:$((BASE_PORT + 2))"
export DIST_URL="http://127.0.0.1:$((BASE_PORT + 1))" WORK BLOB_DIGEST BLOB_MIB A_PID B_PID DIST_PID
export LOADGEN=${LOADGEN:-}
echo "registry A/B, $(date -u +%Y-%m-%dT%H:%MZ), A=$A_BIN B=$B_BIN, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 "$ROOT/bench/registry/ab.py"
