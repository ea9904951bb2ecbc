# bench/lb/common.sh: what run.sh and ab.sh share, sourced by both: cleanup of everything they
# start, free ports, the nginx pair (a backend serving a 601-byte page and a reverse proxy to
# it with upstream keep-alive), and a `berth up` with a load balancer in front of that backend,
# made through the real aws CLI. The caller sets ROOT and WORK and declares PIDS=() first.

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -f "$WORK/backend.pid" ] && kill "$(cat "$WORK/backend.pid")" 2>/dev/null || true
    [ -f "$WORK/proxy.pid" ] && kill "$(cat "$WORK/proxy.pid")" 2>/dev/null || true
    sleep 0.2
    rm -rf "$WORK"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
AWS=$ROOT/target/pyenv/bin/aws
[ -x "$AWS" ] || AWS=aws
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true

nginx_conf() { # name, body of the http block
    cat <<CONF
worker_processes auto;
pid $WORK/$1.pid;
error_log $WORK/$1.error.log warn;
daemon on;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp;
    proxy_temp_path $WORK/nginx-tmp;
    fastcgi_temp_path $WORK/nginx-tmp;
    uwsgi_temp_path $WORK/nginx-tmp;
    scgi_temp_path $WORK/nginx-tmp;
    keepalive_requests 1000000;
    $2
}
CONF
}

# Starts the backend and the reverse proxy; sets BACKEND_PORT and PROXY_PORT.
start_nginx_pair() {
    BACKEND_PORT=$(free_port)
    PROXY_PORT=$(free_port)
    mkdir -p "$WORK/www" "$WORK/nginx-tmp"
    # nginx's workers run as an unprivileged user: they need to reach the page.
    chmod 755 "$WORK" "$WORK/www"
    # A small page, about the size of a typical API answer.
    python3 -c 'print("x" * 600)' >"$WORK/www/index.html"
    nginx_conf backend "server { listen 127.0.0.1:$BACKEND_PORT; root $WORK/www; }" >"$WORK/backend.conf"
    nginx_conf proxy "upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; }
    server { listen 127.0.0.1:$PROXY_PORT;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" >"$WORK/proxy.conf"
    "$NGINX" -c "$WORK/backend.conf" -p "$WORK" 2>/dev/null
    "$NGINX" -c "$WORK/proxy.conf" -p "$WORK" 2>/dev/null
}

# Starts `BIN up --auth open` (its files under $WORK named after TAG) with a load balancer, an
# `ip` target group holding the backend and an HTTP listener, and waits until the listener
# serves; sets BERTH_PID and LB_PORT.
start_berth_lb() { # BIN TAG
    local bin=$1 tag=$2 api elb_query
    api=$(free_port)
    LB_PORT=$(free_port)
    "$bin" up --listen "127.0.0.1:$api" --data-dir "$WORK/data-$tag" \
        --aws-config-dir "$WORK/aws-$tag" --auth open >"$WORK/berth-$tag.log" 2>&1 &
    BERTH_PID=$!
    PIDS+=("$BERTH_PID")
    for _ in $(seq 400); do
        grep -q "serving every API" "$WORK/berth-$tag.log" 2>/dev/null && break
        sleep 0.05
    done
    grep -q "serving every API" "$WORK/berth-$tag.log" || { cat "$WORK/berth-$tag.log" >&2; exit 1; }
    elb_query() { # query, elbv2 args...
        local q=$1
        shift
        "$AWS" --endpoint-url "http://127.0.0.1:$api" elbv2 "$@" --query "$q" --output text
    }
    local lb tg
    lb=$(elb_query 'LoadBalancers[0].LoadBalancerArn' create-load-balancer --name bench)
    tg=$(elb_query 'TargetGroups[0].TargetGroupArn' create-target-group --name backend \
        --protocol HTTP --port "$BACKEND_PORT" --target-type ip --health-check-path /index.html)
    elb_query '@' register-targets --target-group-arn "$tg" \
        --targets "Id=127.0.0.1,Port=$BACKEND_PORT" >/dev/null
    elb_query 'Listeners[0].ListenerArn' create-listener --load-balancer-arn "$lb" \
        --protocol HTTP --port "$LB_PORT" --default-actions "Type=forward,TargetGroupArn=$tg" >/dev/null
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$LB_PORT/index.html" >/dev/null && break
        sleep 0.05
    done
    curl -sf "http://127.0.0.1:$LB_PORT/index.html" >/dev/null || {
        echo "the listener does not serve" >&2
        curl -sv "http://127.0.0.1:$LB_PORT/index.html" >&2 || true
        cat "$WORK/berth-$tag.log" "$WORK"/*.error.log >&2
        exit 1
    }
}
