#!/usr/bin/env bash
# bench/lb/ab.sh: owns the interleaved comparison of berth builds' load balancers with each other
# and with nginx. The machine is shared and its load moves absolute numbers by ±30 % between
# minutes, so builds are only compared within one run: one backend nginx (a 601-byte page), one
# nginx reverse proxy to it (as in run.sh) and one `berth up` per binary given, each with a load
# balancer, an `ip` target group holding the backend and a listener; then rounds of
# `wrk -t2 -c64` against nginx and each berth in turn. Every round prints req/s, p99, the
# proxy's CPU per request (user+kernel µs, /proc) and its context switches per request
# (voluntary+involuntary, all threads), with the load average. Everything it starts is killed
# and removed on exit.
# Usage: bench/lb/ab.sh BERTH_BIN...   Knobs: ROUNDS (3), DURATION (5s), CONNS (64),
# HOLD=1 (set up, print the ports and pids, and wait for Ctrl-C: for profiling by hand).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BERTH_BIN..." >&2; exit 2; }
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-lb-ab.XXXXXX")
PIDS=()

. "$ROOT/bench/lb/common.sh"
trap cleanup EXIT

start_nginx_pair

# One berth per binary, each with its own load balancer in front of the same backend.
NAMES=(nginx)
URLS=("http://127.0.0.1:$PROXY_PORT/index.html")
PROC_PIDS=("$(pgrep -P "$(cat "$WORK/proxy.pid")" | tr '\n' ' ')")
i=0
for bin in "$@"; do
    i=$((i + 1))
    cp "$bin" "$WORK/berth-$i"
    start_berth_lb "$WORK/berth-$i" "$i"
    NAMES+=("$(basename "$bin")")
    URLS+=("http://127.0.0.1:$LB_PORT/index.html")
    PROC_PIDS+=("$BERTH_PID")
done

if [ -n "${HOLD:-}" ]; then
    for k in "${!NAMES[@]}"; do echo "${NAMES[$k]}: ${URLS[$k]} pids ${PROC_PIDS[$k]}"; done
    echo "holding; Ctrl-C to stop" >&2
    while true; do sleep 3600; done
fi

# User ticks, kernel ticks, context switches of processes (all threads).
counters() { # pids...
    local p u=0 k=0 a b cs=0
    for p in "$@"; do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
        u=$((u + a)) k=$((k + b))
        cs=$((cs + $(cat /proc/"$p"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}')))
    done
    echo "$u $k $cs"
}
measure() { # url pids...
    local url=$1 out rps p99 n u0 k0 c0 u1 k1 c1
    shift
    read -r u0 k0 c0 < <(counters "$@")
    out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$url")
    read -r u1 k1 c1 < <(counters "$@")
    echo "$out" | grep "Non-2xx\|Socket errors" >&2 || true
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}')
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    awk -v t="$(getconf CLK_TCK)" -v n="$n" -v u=$((u1 - u0)) -v k=$((k1 - k0)) -v c=$((c1 - c0)) \
        -v rps="$rps" -v p99="$p99" \
        'BEGIN {printf "%9.0f %8.2f %5.1f+%-5.1f %5.2f", rps, p99, u * 1e6 / t / n, k * 1e6 / t / n, c / n}'
}

echo "lb A/B, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t2 -c$CONNS -d$DURATION, load $(cut -d' ' -f1-3 /proc/loadavg)"
for k in "${!URLS[@]}"; do wrk -t2 -c"$CONNS" -d2s "${URLS[$k]}" >/dev/null; done
printf '%5s %5s %-14s %9s %8s %11s %5s\n' round load proxy "req/s" "p99 ms" "us/req u+k" "cs/req"
for round in $(seq "$ROUNDS"); do
    for k in "${!URLS[@]}"; do
        # shellcheck disable=SC2086 # one pid per word
        line=$(measure "${URLS[$k]}" ${PROC_PIDS[$k]})
        printf '%5s %5s %-14s %s\n' "$round" "$(cut -d' ' -f1 /proc/loadavg)" "${NAMES[$k]}" "$line"
    done
done
