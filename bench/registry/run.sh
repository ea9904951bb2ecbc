#!/usr/bin/env bash
# bench/registry/run.sh: owns the registry benchmark. It installs its peers if missing (Debian's
# docker-registry, nginx and wrk), builds berth and berth-loadgen (whose `upload` mode is the
# second upload client, sending the body with sendfile) in release, makes the test blobs locally (random
# bytes, nothing pulled), starts on loopback, each with a fresh temporary directory:
#   - `berth server --auth open` (anonymous push/pull; the repository is made with CreateRepository),
#   - the CNCF distribution registry (`docker-registry serve`, filesystem storage, its default
#     in-memory blob descriptor cache),
#   - nginx serving the same blob file with sendfile (the download anchor),
# then runs bench/registry/driver.py, which measures and prints one table with ratios.
# Everything it starts is killed and every file it made is removed on exit.
# Knobs (environment): BASE_PORT (25700; uses +0..+2), BLOB_MIB (512), BIG_MIB (2048),
# RUNS (3: upload/download repetitions, best kept), CONNECTIONS (64), DURATION (10s),
# WRK_THREADS (1), SKIP_BUILD=1, SKIP_RSS=1, SKIP_INSTALL=1, LOADGEN (berth-loadgen binary;
# uploads by curl only when it is missing). Shared with ab.sh: common.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BASE_PORT=${BASE_PORT:-25700}
BLOB_MIB=${BLOB_MIB:-512}
BIG_MIB=${BIG_MIB:-2048}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-registry.XXXXXX")
PIDS=()
. "$ROOT/bench/registry/common.sh"
trap cleanup EXIT

# ---- peers -------------------------------------------------------------------------------------
need=()
command -v /usr/bin/docker-registry >/dev/null 2>&1 || need+=(docker-registry)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ "${#need[@]}" -gt 0 ]; then
    if [ -n "${SKIP_INSTALL:-}" ]; then
        echo "missing: ${need[*]} (SKIP_INSTALL set): install them with apt-get install ${need[*]}" >&2
        exit 1
    fi
    echo "installing ${need[*]} with apt-get ..." >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null; }; then
        echo "could not install ${need[*]}: run 'apt-get install ${need[*]}' as root (Debian), then run this again" >&2
        exit 1
    fi
fi
# The packages may start system services where an init system runs them; this benchmark uses
# its own instances on its own ports and leaves those alone.

if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -p berth -p berth-loadgen >&2)
fi
BERTH=$TARGET_DIR/release/berth
# The second upload client (sendfile); uploads are made by curl alone when it is not built.
LOADGEN=${LOADGEN:-$TARGET_DIR/release/berth-loadgen}
[ -x "$LOADGEN" ] || LOADGEN=""

BERTH_PORT=$BASE_PORT
DIST_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))

# ---- blobs -------------------------------------------------------------------------------------
mkdir -p "$WORK/files"
echo "making a ${BLOB_MIB} MiB random blob ..." >&2
head -c "$((BLOB_MIB * 1024 * 1024))" /dev/urandom >"$WORK/files/blob"
BLOB_DIGEST="sha256:$(sha256sum "$WORK/files/blob" | cut -d' ' -f1)"
if [ -z "${SKIP_RSS:-}" ]; then
    echo "making a ${BIG_MIB} MiB random blob ..." >&2
    head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom >"$WORK/big"
    BIG_DIGEST="sha256:$(sha256sum "$WORK/big" | cut -d' ' -f1)"
else
    BIG_DIGEST=""
fi

# ---- nginx: one process (master_process off) as the current user, sendfile on ------------------
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/files;
    }
}
EOF
/usr/sbin/nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/out.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/blob" nginx "$WORK/nginx/error.log"

start_berth "$BERTH" main "$BERTH_PORT"
BERTH_PID=$LAST_PID
start_dist main "$DIST_PORT"
DIST_PID=$LAST_PID

export BERTH_URL="http://127.0.0.1:$BERTH_PORT" DIST_URL="http://127.0.0.1:$DIST_PORT"
export NGINX_URL="http://127.0.0.1:$NGINX_PORT" WORK BLOB_DIGEST BIG_DIGEST BLOB_MIB BIG_MIB
export BERTH_PID DIST_PID LOADGEN

echo "berth registry benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -m), loopback, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 "$ROOT/bench/registry/driver.py" phase1 || { tail -20 "$WORK"/*.log >&2; exit 1; }

# Peak RSS: fresh processes, so the high-water mark is this upload's and nothing earlier's.
if [ -z "${SKIP_RSS:-}" ]; then
    kill "$BERTH_PID" "$DIST_PID"
    wait "$BERTH_PID" "$DIST_PID" 2>/dev/null || true
    rm -rf "$WORK/berth-main" "$WORK/dist-main"
    start_berth "$BERTH" rss "$BERTH_PORT"
    BERTH_PID=$LAST_PID
    start_dist rss "$DIST_PORT"
    DIST_PID=$LAST_PID
    export BERTH_PID DIST_PID
    python3 "$ROOT/bench/registry/driver.py" rss || { tail -20 "$WORK"/*.log >&2; exit 1; }
fi
python3 "$ROOT/bench/registry/driver.py" report
