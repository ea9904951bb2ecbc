#!/usr/bin/env bash
# bench/lb/run.sh: berth's load balancer data plane against nginx as a reverse proxy, side by
# side in one run. One nginx serves a small static file on loopback (the backend); a second
# nginx proxies to it with upstream keep-alive (the anchor); `berth up --auth open` gets a load
# balancer, an `ip` target group holding the same backend and a listener (through the real
# aws CLI). `wrk -t2 -c64 -d10s` runs against both; then berth's RSS is read with 10,000 idle
# client connections open on its listener. Prints one table with the ratios.
# The two are measured in alternating rounds (nginx, berth, nginx, berth, ...) and the table
# shows each round and the median, because the machine's other work moves absolute numbers a
# lot between runs; each side's CPU time per request (user and kernel, from /proc) is printed
# too, which moves much less than requests per second.
# Knobs (environment): DURATION (10s), CONNS (64), ROUNDS (3), IDLE (10000), SKIP_BUILD=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-10000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-lb.XXXXXX")
PIDS=()

. "$ROOT/bench/lb/common.sh"
trap cleanup EXIT

if ! command -v wrk >/dev/null || { ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; }; then
    apt-get install -y wrk nginx >&2
fi

if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -p berth >&2)
fi
BERTH=$TARGET_DIR/release/berth

# Room for 10,000 idle clients on both ends (as many descriptors as the hard limit allows).
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -gt 65536 ]; then HARD=65536; fi
ulimit -n "$HARD"

start_nginx_pair

start_berth_lb "$BERTH" main

# CPU time (user and kernel clock ticks) of processes, threads included.
cpu_ticks() { # pids...
    local p u=0 k=0 a b
    for p in "$@"; do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
        u=$((u + a)) k=$((k + b))
    done
    echo "$u $k"
}
# wrk's "Requests/sec", its 99th percentile latency in milliseconds, and the CPU the proxy
# (its pids) spent per request, user and kernel, in microseconds.
measure() { # url pids...
    local url=$1 out rps p99 n u0 k0 u1 k1
    shift
    read -r u0 k0 < <(cpu_ticks "$@")
    out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$url")
    read -r u1 k1 < <(cpu_ticks "$@")
    if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
        echo "$out" | grep "Non-2xx\|Socket errors" >&2
    fi
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}')
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$rps $p99 $(awk -v t="$(getconf CLK_TCK)" -v n="$n" -v u=$((u1 - u0)) -v k=$((k1 - k0)) 'BEGIN {printf "%.1f %.1f", u * 1e6 / t / n, k * 1e6 / t / n}')"
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$BERTH_PID/status"; }

echo "berth load balancer benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $("$NGINX" -v 2>&1 | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# nginx's workers (the master only supervises them).
PROXY_WORKERS=$(pgrep -P "$(cat "$WORK/proxy.pid")" | tr '\n' ' ')
# Warm both paths (pools, caches) before measuring.
wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$PROXY_PORT/index.html" >/dev/null
wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$LB_PORT/index.html" >/dev/null
: >"$WORK/rounds.txt"
for round in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086 # one pid per word
    read -r NGINX_RPS NGINX_P99 NGINX_US NGINX_KS < <(measure "http://127.0.0.1:$PROXY_PORT/index.html" $PROXY_WORKERS)
    read -r BERTH_RPS BERTH_P99 BERTH_US BERTH_KS < <(measure "http://127.0.0.1:$LB_PORT/index.html" "$BERTH_PID")
    echo "$round $NGINX_RPS $NGINX_P99 $NGINX_US $NGINX_KS $BERTH_RPS $BERTH_P99 $BERTH_US $BERTH_KS $(cut -d' ' -f1 /proc/loadavg)" >>"$WORK/rounds.txt"
done

RSS_BEFORE=$(rss_kib)
python3 - "$LB_PORT" "$IDLE" "$BERTH_PID" >"$WORK/idle.txt" <<'PY'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for _ in range(n):
    s = socket.socket()
    s.connect(("127.0.0.1", port))
    conns.append(s)
# Let berth accept every connection and set each one up.
time.sleep(3)
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
# Every connection is still open: none has been answered or closed.
for s in conns:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            raise SystemExit("a connection was closed while idle")
    except BlockingIOError:
        pass
print(len(conns), rss)
PY
read -r IDLE_OPEN RSS_IDLE <"$WORK/idle.txt"

python3 - "$WORK/rounds.txt" "$RSS_BEFORE" "$RSS_IDLE" "$IDLE_OPEN" "$CONNS" <<'PY'
import statistics, sys
path, before, idle, n, conns = sys.argv[1:]
rounds = [l.split() for l in open(path) if l.strip()]
mib = lambda k: int(k) / 1024
print(f"{'round':>5} {'load':>5} | {'nginx req/s':>11} {'p99 ms':>7} {'us/req u+k':>11} | {'berth req/s':>11} {'p99 ms':>7} {'us/req u+k':>11} | {'req/s ratio':>11} {'p99 ratio':>9}")
ratios, p99s = [], []
for r, nr, np, nu, nk, br, bp, bu, bk, load in rounds:
    nr, np, br, bp = float(nr), float(np), float(br), float(bp)
    ratios.append(br / nr)
    p99s.append(bp / np)
    print(f"{r:>5} {load:>5} | {nr:>11.0f} {np:>7.2f} {nu:>5}+{nk:<5} | {br:>11.0f} {bp:>7.2f} {bu:>5}+{bk:<5} | {br/nr:>10.2f}x {bp/np:>8.2f}x")
print(f"median req/s ratio (wrk -t2 -c{conns}): {statistics.median(ratios):.2f}x (goal >= 1.2x); median p99 ratio: {statistics.median(p99s):.2f}x (goal <= 1.0x)")
print(f"berth RSS idle: {mib(before):.1f} MiB; with {n} idle connections: {mib(idle):.1f} MiB (goal < 64 MiB)")
PY
