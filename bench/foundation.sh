#!/usr/bin/env bash
# bench/foundation.sh: owns the foundation benchmark. It runs berth and its two peers (moto_server,
# and fakecloud when FAKECLOUD_BIN or FAKECLOUD_CMD is set) one after another on loopback, measures
# start-to-first-answer, idle RSS, and signed ListClusters / DescribeTaskDefinition throughput and
# p99 at 32 connections, and prints one table with the ratios berth/fakecloud and berth/moto.
# Everything it starts is killed on exit. See bench/README.md.
#
# Knobs (environment): DURATION (10s), WARMUP (1s), CONNECTIONS (32), SIGN (each|per-second),
# LOADGEN_THREADS (1), BASE_PORT (25660), FAKECLOUD_BIN, FAKECLOUD_CMD (with {port}),
# MOTO_CMD (with {port}), SKIP_MOTO=1, SKIP_BUILD=1.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
CONNECTIONS=${CONNECTIONS:-32}
SIGN=${SIGN:-each}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
BASE_PORT=${BASE_PORT:-25660}
REGION=us-east-1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Not our child (the loadgen spawned it), so `wait` cannot reap it: poll until gone.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building berth and the load generator (release)…"
    (cd "$ROOT" && cargo build --release -p berth -p berth-loadgen)
fi
BERTH="$TARGET_DIR/release/berth"
LG="$TARGET_DIR/release/berth-loadgen"

# `key=value key=value …` line → value of one key.
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

declare -A START RSS RSS_SPLIT LC_RPS LC_P99 DTD_RPS DTD_P99 BADSIG NOTE
SERVERS=()

CLUSTER_BODY='{"clusterName":"bench"}'
TASKDEF_BODY='{"family":"bench","containerDefinitions":[{"name":"app","image":"busybox:latest","cpu":128,"memory":128,"essential":true,"command":["sleep","3600"],"portMappings":[{"containerPort":8080,"protocol":"tcp"}],"environment":[{"name":"MODE","value":"bench"}]}]}'
DESCRIBE_BODY='{"taskDefinition":"bench:1"}'

# bench_server NAME PORT CRED_ARGS... -- COMMAND...
# Starts the server, measures startup and RSS, seeds, loads, and stops it again.
bench_server() {
    local name=$1 port=$2
    shift 2
    local creds=()
    while [[ $1 != -- ]]; do creds+=("$1"); shift; done
    shift
    local addr="127.0.0.1:$port"
    SERVERS+=("$name")

    log "[$name] starting: $*"
    local out
    if ! out=$("$LG" startup --addr "$addr" "${creds[@]}" --log "$WORK/$name.log" -- "$@"); then
        log "[$name] did not start; log:"; tail -20 "$WORK/$name.log" >&2 || true
        NOTE[$name]="did not start"
        return 0
    fi
    local pid
    pid=$(field "$out" pid)
    PIDS+=("$pid")
    START[$name]=$(field "$out" startup_ms)
    RSS[$name]=$(awk -v k="$(field "$out" rss_kib)" 'BEGIN{printf "%.1f", k/1024}')
    # VmRSS is mostly clean pages of the executable, which the kernel maps in 64 KiB runs
    # around every page touched (fault-around) and can drop at any time; the anonymous part is
    # what the process allocated. Both are printed under the table.
    RSS_SPLIT[$name]=$(awk '/^RssAnon/{a=$2} /^RssFile/{f=$2} /^RssShmem/{s=$2}
        END{printf "%.1f MiB anonymous + %.1f MiB file-backed + %.1f MiB shared memory", a/1024, f/1024, s/1024}' \
        "/proc/$pid/status" 2>/dev/null || true)
    log "[$name] $out"

    # fakecloud: make an IAM user key so requests are really verified (its test/test root
    # bypasses --verify-sigv4). Falls back to test/test with a note.
    if [[ $name == fakecloud ]]; then
        local q=(--addr "$addr" --access-key test --secret-key test --service iam --target-prefix ""
                 --content-type application/x-www-form-urlencoded)
        local resp
        if "$LG" call "${q[@]}" --op CreateUser --body "Action=CreateUser&UserName=bench&Version=2010-05-08" >/dev/null 2>&1 \
            && resp=$("$LG" call "${q[@]}" --op CreateAccessKey --body "Action=CreateAccessKey&UserName=bench&Version=2010-05-08" 2>/dev/null); then
            local akid secret
            akid=$(sed -n 's:.*<AccessKeyId>\([^<]*\)</AccessKeyId>.*:\1:p' <<<"$resp")
            secret=$(sed -n 's:.*<SecretAccessKey>\([^<]*\)</SecretAccessKey>.*:\1:p' <<<"$resp")
            if [[ -n $akid && -n $secret ]]; then
                creds=(--access-key "$akid" --secret-key "$secret")
            else
                NOTE[$name]="IAM key not parsed; test/test root (verification bypassed)"
            fi
        else
            NOTE[$name]="IAM key not created; test/test root (verification bypassed)"
        fi
    fi

    # Does the server reject a bad signature? (The same key id, a wrong secret.)
    local akid=AKIDBENCHMARK0000000
    case ${creds[0]:-} in
        --access-key) akid=${creds[1]} ;;
        --identity) akid=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["root"]["access_key_id"])' "${creds[1]}") ;;
    esac
    local bad=(--access-key "$akid" --secret-key "wrong/secret/wrong/secret/wrong/secret/xx")
    if "$LG" call --addr "$addr" "${bad[@]}" --op ListClusters >/dev/null 2>&1; then
        BADSIG[$name]=accepted
    else
        BADSIG[$name]=rejected
    fi

    "$LG" call --addr "$addr" "${creds[@]}" --op CreateCluster --body "$CLUSTER_BODY" >/dev/null
    "$LG" call --addr "$addr" "${creds[@]}" --op RegisterTaskDefinition --body "$TASKDEF_BODY" >/dev/null
    "$LG" call --addr "$addr" "${creds[@]}" --op DescribeTaskDefinition --body "$DESCRIBE_BODY" >/dev/null

    local load=(--addr "$addr" "${creds[@]}" --connections "$CONNECTIONS" --duration "$DURATION"
                --warmup "$WARMUP" --sign "$SIGN" --threads "$LOADGEN_THREADS")
    log "[$name] load: ListClusters, $CONNECTIONS connections, $DURATION"
    out=$("$LG" load "${load[@]}" --op ListClusters --body '{}')
    log "[$name] $out"
    LC_RPS[$name]=$(field "$out" rps)
    LC_P99[$name]=$(field "$out" p99_ms)
    log "[$name] load: DescribeTaskDefinition, $CONNECTIONS connections, $DURATION"
    out=$("$LG" load "${load[@]}" --op DescribeTaskDefinition --body "$DESCRIBE_BODY")
    log "[$name] $out"
    DTD_RPS[$name]=$(field "$out" rps)
    DTD_P99[$name]=$(field "$out" p99_ms)

    # Stop it now so the next server has the machine to itself.
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

# --- berth ---------------------------------------------------------------------------------------
bench_server berth "$BASE_PORT" --identity "$WORK/berth-data/identity.json" -- \
    "$BERTH" up --listen "127.0.0.1:$BASE_PORT" --data-dir "$WORK/berth-data" --auth sigv4 \
    --aws-config-dir "$WORK/berth-aws"

# --- fakecloud -----------------------------------------------------------------------------------
FC_PORT=$((BASE_PORT + 1))
if [[ -z ${FAKECLOUD_CMD:-} && -n ${FAKECLOUD_BIN:-} ]]; then
    FAKECLOUD_CMD="$FAKECLOUD_BIN --addr 127.0.0.1:{port} --verify-sigv4 --log-level warn"
fi
if [[ -n ${FAKECLOUD_CMD:-} ]]; then
    read -r -a fc_cmd <<<"${FAKECLOUD_CMD//\{port\}/$FC_PORT}"
    bench_server fakecloud "$FC_PORT" --access-key test --secret-key test -- "${fc_cmd[@]}"
else
    log "[fakecloud] skipped: set FAKECLOUD_BIN (cargo install fakecloud --locked) or FAKECLOUD_CMD"
fi

# --- moto ----------------------------------------------------------------------------------------
MOTO_PORT=$((BASE_PORT + 2))
if [[ -z ${SKIP_MOTO:-} ]]; then
    MOTO_CMD=${MOTO_CMD:-python3 -m moto.server -H 127.0.0.1 -p {port}}
    read -r -a moto_cmd <<<"${MOTO_CMD//\{port\}/$MOTO_PORT}"
    bench_server moto "$MOTO_PORT" -- "${moto_cmd[@]}"
fi

# --- table ---------------------------------------------------------------------------------------
val() { # val ARRAY NAME
    local -n arr=$1
    if [[ " ${SERVERS[*]} " == *" $2 "* && -n ${arr[$2]:-} ]]; then printf '%s' "${arr[$2]}"; else printf -- '-'; fi
}
ratio() { # ratio A B → A/B or '-'
    awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="-"||b=="-"||b+0==0) print "-"; else { r=a/b; printf (r<0.1 ? "%.3fx" : "%.2fx"), r } }'
}

row() { # row LABEL ARRAY GOAL
    local b f m
    b=$(val "$2" berth); f=$(val "$2" fakecloud); m=$(val "$2" moto)
    printf '| %-30s | %10s | %10s | %10s | %15s | %10s | %-28s |\n' \
        "$1" "$b" "$f" "$m" "$(ratio "$b" "$f")" "$(ratio "$b" "$m")" "$3"
}

echo
echo "berth foundation benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc)-core $(uname -m), loopback"
echo "load: $CONNECTIONS keep-alive HTTP/1.1 connections, $DURATION measured after $WARMUP warm-up, loadgen on $LOADGEN_THREADS thread(s),"
echo "      SigV4: $( [[ $SIGN == each ]] && echo 'every request signed separately' || echo 'one signature per connection per second')"
echo
printf '| %-30s | %10s | %10s | %10s | %15s | %10s | %-28s |\n' \
    metric berth fakecloud moto berth/fakecloud berth/moto goal
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "$(printf -- '-%.0s' {1..12})" \
    "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..17})" \
    "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..30})"
row "start to first ListClusters ms" START "<500 ms, <=0.5x fakecloud"
row "idle RSS MiB" RSS "<60 MiB, <=0.5x fakecloud"
row "ListClusters req/s" LC_RPS ">=1.0x fakecloud, >=20x moto"
row "ListClusters p99 ms" LC_P99 "<=1.0x fakecloud"
row "DescribeTaskDefinition req/s" DTD_RPS ">=1.0x fakecloud, >=20x moto"
row "DescribeTaskDefinition p99 ms" DTD_P99 "<=1.0x fakecloud"
printf '| %-30s | %10s | %10s | %10s | %15s | %10s | %-28s |\n' "bad signature" \
    "$(val BADSIG berth)" "$(val BADSIG fakecloud)" "$(val BADSIG moto)" "" "" "rejected = SigV4 verified"
echo
# check LABEL VALUE OP LIMIT: one line saying whether berth met an absolute or relative goal.
check() {
    local verdict
    verdict=$(awk -v v="$2" -v op="$3" -v l="$4" 'BEGIN{
        if (v=="-"||l=="-") { print "n/a"; exit }
        gsub("x","",v); ok = (op=="<" ? v+0 < l+0 : v+0 >= l+0); print (ok ? "met" : "MISSED") }')
    printf '  %-52s %s\n' "$1" "$verdict"
}
b_start=$(val START berth); b_rss=$(val RSS berth)
echo "goals:"
check "berth start < 500 ms" "$b_start" "<" 500
check "berth idle RSS < 60 MiB" "$b_rss" "<" 60
check "berth start <= 0.5x fakecloud" "$(ratio "$b_start" "$(val START fakecloud)")" "<" 0.5000001
check "berth RSS <= 0.5x fakecloud" "$(ratio "$b_rss" "$(val RSS fakecloud)")" "<" 0.5000001
check "ListClusters rps >= 1.0x fakecloud" "$(ratio "$(val LC_RPS berth)" "$(val LC_RPS fakecloud)")" ">=" 1
check "ListClusters p99 <= 1.0x fakecloud" "$(ratio "$(val LC_P99 berth)" "$(val LC_P99 fakecloud)")" "<" 1.0000001
check "DescribeTaskDefinition rps >= 1.0x fakecloud" "$(ratio "$(val DTD_RPS berth)" "$(val DTD_RPS fakecloud)")" ">=" 1
check "DescribeTaskDefinition p99 <= 1.0x fakecloud" "$(ratio "$(val DTD_P99 berth)" "$(val DTD_P99 fakecloud)")" "<" 1.0000001
check "ListClusters rps >= 20x moto" "$(ratio "$(val LC_RPS berth)" "$(val LC_RPS moto)")" ">=" 20
check "DescribeTaskDefinition rps >= 20x moto" "$(ratio "$(val DTD_RPS berth)" "$(val DTD_RPS moto)")" ">=" 20
echo
for n in "${SERVERS[@]}"; do
    [[ -n ${RSS_SPLIT[$n]:-} ]] && echo "$n idle RSS: ${RSS_SPLIT[$n]}"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ " ${SERVERS[*]} " == *" fakecloud "* ]] || echo "fakecloud: not run (FAKECLOUD_BIN unset); its columns and ratios are '-'."
for n in "${!NOTE[@]}"; do echo "$n: ${NOTE[$n]}"; done
echo "moto accepts any signature; its numbers are for a server that does not verify."
