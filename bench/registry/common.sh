# bench/registry/common.sh: what run.sh and ab.sh share, sourced by both: cleanup of everything
# they start, waiting for a server to answer, and starting berth and distribution on loopback
# with fresh directories under WORK. The caller sets WORK and declares PIDS=() first; each start
# function sets LAST_PID.

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}

wait_http() { # url name log
    for _ in $(seq 400); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "$2 did not answer on $1:" >&2
    cat "$3" >&2
    exit 1
}

# `berth server --auth open` (anonymous push and pull, as distribution runs here).
start_berth() { # binary tag port
    "$1" server --listen "127.0.0.1:$3" --data-dir "$WORK/berth-$2" \
        --aws-config-dir "$WORK/berth-$2-aws" --auth open >"$WORK/berth-$2.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_http "http://127.0.0.1:$3/v2/" "berth $2" "$WORK/berth-$2.log"
}

# distribution with filesystem storage, its default in-memory blob descriptor cache, logging at
# `error` with the access log off.
start_dist() { # tag port
    mkdir -p "$WORK/dist-$1"
    cat >"$WORK/dist-$1.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $WORK/dist-$1
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$2
EOF
    /usr/bin/docker-registry serve "$WORK/dist-$1.yml" >"$WORK/dist-$1.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_http "http://127.0.0.1:$2/v2/" distribution "$WORK/dist-$1.log"
}
