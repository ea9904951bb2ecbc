#!/usr/bin/env bash
# PutMetricData through berth's HTTP endpoint: starts a release `berth server` (--auth open, a
# fresh data directory, a loopback port), drives it with bench/metrics/http_ingest.py (boto3),
# measures alarm decision latency with bench/metrics/alarm_latency.py and the whole scaling
# decision (datapoint -> UpdateService) with decision_latency.py, prints the rate, the
# latencies and berth's RSS, and stops the server it started.
# Usage: bench/metrics/http.sh [THREADS] [DURATION_SECS]   (PORT=25680, SKIP_BUILD=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT="${PORT:-25680}"
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release -p berth
PYTHON="${PYTHON:-target/pyenv/bin/python3}"
WORK="$(mktemp -d)"
target/release/berth server --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --auth open \
  >"$WORK/berth.log" 2>&1 &
BERTH_PID=$!
trap 'kill "$BERTH_PID" 2>/dev/null || true; wait "$BERTH_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/_berth/health" >/dev/null && break
  kill -0 "$BERTH_PID" 2>/dev/null || { cat "$WORK/berth.log"; exit 1; }
  sleep 0.1
done
"$PYTHON" bench/metrics/http_ingest.py "http://127.0.0.1:$PORT" "${1:-4}" "${2:-10}"
"$PYTHON" bench/metrics/alarm_latency.py "http://127.0.0.1:$PORT" "${ROUNDS:-6}"
"$PYTHON" bench/metrics/decision_latency.py "http://127.0.0.1:$PORT" "${ROUNDS:-5}"
echo "berth RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$BERTH_PID/status")"
