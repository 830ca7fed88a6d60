#!/usr/bin/env bash
# N `assay serve` replicas, a Redis and an Nginx in front, on one machine, without containers.
#
#   deploy/local.sh up [N]          start (N replicas, default 3); prints the endpoints
#   deploy/local.sh down            stop everything (SIGTERM, then SIGKILL after 30 s)
#   deploy/local.sh status          what runs, on which ports
#   deploy/local.sh start WHAT      (re)start one stopped part: a replica number, redis, nginx
#   deploy/local.sh stop WHAT       stop one part the same way (a replica drains first)
#
# Run it from the project directory (the one with assay.toml), or set ASSAY_PROJECT. Every
# replica serves the project's lake ([lake] or ASSAY_LAKE: a local path all replicas share,
# S3 or Azure), caches in the one Redis, and signs tokens and handles with one JWT secret.
#
# Settings (environment):
#   ASSAY_BIN          the assay binary (default: `assay` on PATH, else target/release/assay,
#                      else target/debug/assay of this repository)
#   ASSAY_PROJECT      the project directory (default: the current directory)
#   ASSAY_DEPLOY_DIR   state: pids, logs, generated nginx.conf (default: .assay-local in the
#                      project directory)
#   HTTP_PORT, FLIGHT_PORT       Nginx's REST and Flight SQL ports (default: free ports)
#   HTTPS_PORT, FLIGHT_TLS_PORT  with ASSAY_TLS_CERT and ASSAY_TLS_KEY (PEM files): Nginx
#                      also terminates TLS on these ports (default: free ports)
#   REDIS_PORT         Redis's port (default: a free port)
#   ASSAY_JWT_SECRET   the shared secret (32+ bytes); default: made once, kept in the state
#                      directory (mode 600)
#   ASSAY_ADMIN_USER, ASSAY_ADMIN_PASSWORD   passed to the replicas (the bootstrap admin)
#   NGINX              the nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#
# Needs nginx (Debian package `nginx-light`, which scripts/setup.sh installs), redis-server
# and python3 (for free ports). Everything listens on 127.0.0.1 only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
project="$(cd "${ASSAY_PROJECT:-$PWD}" && pwd)"
state="${ASSAY_DEPLOY_DIR:-$project/.assay-local}"

die() { printf 'local.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

find_bin() {
    if [ -n "${ASSAY_BIN:-}" ]; then echo "$ASSAY_BIN"; return; fi
    if command -v assay >/dev/null 2>&1; then command -v assay; return; fi
    for b in "$repo/target/release/assay" "$repo/target/debug/assay"; do
        if [ -x "$b" ]; then echo "$b"; return; fi
    done
    die "no assay binary: build one (cargo build --release) or set ASSAY_BIN"
}

find_nginx() {
    if [ -n "${NGINX:-}" ]; then echo "$NGINX"; return; fi
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } \
        || die "nginx not found: apt-get install nginx-light (scripts/setup.sh does)"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The HTTP status of GET http://127.0.0.1:$1$2, or 000 when nothing answers.
http_status() {
    local reply
    reply="$( { exec 3<>"/dev/tcp/127.0.0.1/$1" \
        && printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3 \
        && head -n1 <&3; } 2>/dev/null || true)"
    local code="${reply#HTTP/1.1 }"
    code="${code:0:3}"
    [[ "$code" =~ ^[0-9]{3}$ ]] && echo "$code" || echo 000
}

# Whether the process of a pid file runs (a zombie, killed but not reaped yet, does not).
alive() {
    [ -f "$1" ] || return 1
    local pid state
    pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$pid/stat" 2>/dev/null || true)"
    [ "$state" != Z ]
}

# Waits until `$2` is true (a command), up to $1 seconds.
wait_for() {
    local until=$((SECONDS + $1)); shift
    while ! "$@"; do
        [ "$SECONDS" -ge "$until" ] && return 1
        sleep 0.2
    done
}

load_env() {
    [ -f "$state/local.env" ] || die "not up (no $state/local.env): run \`deploy/local.sh up\`"
    # shellcheck disable=SC1091
    . "$state/local.env"
}

start_redis() {
    alive "$state/redis.pid" && return 0
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --daemonize no --dir "$state" >"$state/redis.log" 2>&1 &
    echo $! >"$state/redis.pid"
    wait_for 10 redis_up || die "redis did not start: see $state/redis.log"
}

redis_up() { redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_replica() {
    local i="$1" pidf="$state/replica-$1.pid"
    alive "$pidf" && return 0
    local http_var="REPLICA_${i}_HTTP" flight_var="REPLICA_${i}_FLIGHT"
    (
        cd "$project"
        export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
        export ASSAY_JWT_SECRET
        ASSAY_JWT_SECRET="$(cat "$state/jwt-secret")"
        exec "$ASSAY_BIN" serve \
            --http-addr "127.0.0.1:${!http_var}" \
            --flight-addr "127.0.0.1:${!flight_var}" \
            --access-log "$state/replica-$i.access.json"
    ) >>"$state/replica-$i.log" 2>&1 &
    echo $! >"$pidf"
    wait_for 60 ready "${!http_var}" \
        || die "replica $i not ready on 127.0.0.1:${!http_var}: see $state/replica-$i.log"
}

ready() { [ "$(http_status "$1" /ready)" = 200 ]; }

write_nginx_conf() {
    local conf="$state/nginx"
    mkdir -p "$conf/assay" "$conf/tmp"
    cp "$here/nginx/rest-proxy.conf" "$here/nginx/flight-proxy.conf" "$conf/assay/"
    echo "access_log $conf/access.json assay_json;" >"$conf/assay/access-log.conf"
    sed -e "s/listen 8080;/listen 127.0.0.1:$HTTP_PORT;/" \
        -e "s/listen 50051 http2;/listen 127.0.0.1:$FLIGHT_PORT http2;/" \
        "$here/nginx/assay.conf" >"$conf/assay/assay.conf"
    {
        echo "# Written by deploy/local.sh: the replicas on this machine."
        echo "upstream assay_http {"
        for i in $(seq 1 "$REPLICAS"); do
            local v="REPLICA_${i}_HTTP"
            echo "    server 127.0.0.1:${!v} max_fails=1 fail_timeout=3s;"
        done
        echo "    keepalive 32;"
        echo "}"
        echo "upstream assay_flight {"
        for i in $(seq 1 "$REPLICAS"); do
            local v="REPLICA_${i}_FLIGHT"
            echo "    server 127.0.0.1:${!v} max_fails=1 fail_timeout=3s;"
        done
        echo "    # No keep-alive: see deploy/nginx/upstreams.conf."
        echo "}"
    } >"$conf/assay/upstreams.conf"
    local tls=""
    if [ -n "${TLS_CERT:-}" ]; then
        mkdir -p "$conf/assay/tls"
        cp "$TLS_CERT" "$conf/assay/tls/cert.pem"
        cp "$TLS_KEY" "$conf/assay/tls/key.pem"
        chmod 600 "$conf/assay/tls/key.pem"
        sed -e "s/listen 8443 ssl;/listen 127.0.0.1:$HTTPS_PORT ssl;/" \
            -e "s/listen 50052 ssl http2;/listen 127.0.0.1:$FLIGHT_TLS_PORT ssl http2;/" \
            "$here/nginx/assay-tls.conf" >"$conf/assay/assay-tls.conf"
        tls="    include assay/assay-tls.conf;"
    fi
    cat >"$conf/nginx.conf" <<CONF
# Written by deploy/local.sh.
worker_processes 1;
daemon off;
pid $conf/nginx.pid;
error_log $conf/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $conf/tmp/body;
    proxy_temp_path $conf/tmp/proxy;
    fastcgi_temp_path $conf/tmp/fastcgi;
    uwsgi_temp_path $conf/tmp/uwsgi;
    scgi_temp_path $conf/tmp/scgi;
    include assay/assay.conf;
$tls
}
CONF
    local checked
    checked="$("$NGINX_BIN" -t -q -e "$conf/error.log" -p "$conf" -c "$conf/nginx.conf" 2>&1)" \
        || die "nginx rejected $conf/nginx.conf: $checked"
}

start_nginx() {
    alive "$state/nginx/nginx.pid" && return 0
    "$NGINX_BIN" -e "$state/nginx/error.log" -p "$state/nginx" -c "$state/nginx/nginx.conf" \
        >>"$state/nginx/nginx.log" 2>&1 &
    wait_for 10 ready "$HTTP_PORT" || die "nginx not answering on $HTTP_PORT: see $state/nginx/error.log"
}

# Stops a process by pid file: SIGTERM (a replica drains), SIGKILL after 30 s.
stop_pidfile() {
    local pidf="$1"
    alive "$pidf" || { rm -f "$pidf"; return 0; }
    local pid; pid="$(cat "$pidf")"
    kill -TERM "$pid" 2>/dev/null || true
    local until=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$until" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidf"
}

up() {
    local n="${1:-3}"
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "up N: N must be a positive number, got \`$n\`"
    [ -f "$project/assay.toml" ] || die "no assay.toml in $project (set ASSAY_PROJECT)"
    if [ -f "$state/local.env" ]; then
        die "already up in $state (run \`deploy/local.sh down\` first)"
    fi
    command -v redis-server >/dev/null || die "redis-server not found (scripts/setup.sh installs it)"
    if [ -n "${ASSAY_TLS_CERT:-}" ] || [ -n "${ASSAY_TLS_KEY:-}" ]; then
        [ -r "${ASSAY_TLS_CERT:-}" ] && [ -r "${ASSAY_TLS_KEY:-}" ] \
            || die "ASSAY_TLS_CERT and ASSAY_TLS_KEY must both name readable PEM files"
    fi
    mkdir -p "$state"
    if [ -n "${ASSAY_JWT_SECRET:-}" ]; then
        [ "${#ASSAY_JWT_SECRET}" -ge 32 ] || die "ASSAY_JWT_SECRET must hold at least 32 bytes"
        (umask 077; printf '%s' "$ASSAY_JWT_SECRET" >"$state/jwt-secret")
    elif [ ! -s "$state/jwt-secret" ]; then
        (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")' >"$state/jwt-secret")
    fi
    {
        echo "ASSAY_BIN='$(find_bin)'"
        echo "NGINX_BIN='$(find_nginx)'"
        echo "REPLICAS=$n"
        echo "HTTP_PORT=${HTTP_PORT:-$(free_port)}"
        echo "FLIGHT_PORT=${FLIGHT_PORT:-$(free_port)}"
        echo "REDIS_PORT=${REDIS_PORT:-$(free_port)}"
        if [ -n "${ASSAY_TLS_CERT:-}" ]; then
            echo "TLS_CERT='$(realpath "$ASSAY_TLS_CERT")'"
            echo "TLS_KEY='$(realpath "$ASSAY_TLS_KEY")'"
            echo "HTTPS_PORT=${HTTPS_PORT:-$(free_port)}"
            echo "FLIGHT_TLS_PORT=${FLIGHT_TLS_PORT:-$(free_port)}"
        fi
        for i in $(seq 1 "$n"); do
            echo "REPLICA_${i}_HTTP=$(free_port)"
            echo "REPLICA_${i}_FLIGHT=$(free_port)"
        done
    } >"$state/local.env"
    load_env
    # Whatever started is stopped again if a later part fails.
    trap 'printf "local.sh: start failed; stopping what started\n" >&2; down >/dev/null 2>&1 || true' EXIT
    start_redis
    for i in $(seq 1 "$REPLICAS"); do start_replica "$i"; done
    write_nginx_conf
    start_nginx
    trap - EXIT
    status
}

down() {
    [ -d "$state" ] || { say "nothing to stop in $state"; return 0; }
    stop_pidfile "$state/nginx/nginx.pid"
    # Replicas drain in parallel.
    local stopping=()
    for pidf in "$state"/replica-*.pid; do
        [ -e "$pidf" ] || continue
        stop_pidfile "$pidf" &
        stopping+=($!)
    done
    [ "${#stopping[@]}" -eq 0 ] || wait "${stopping[@]}"
    stop_pidfile "$state/redis.pid"
    rm -f "$state/local.env"
    say "stopped (logs kept in $state)"
}

status() {
    load_env
    local state_of
    state_of() { alive "$1" && echo "running (pid $(cat "$1"))" || echo "stopped"; }
    say "REST        http://127.0.0.1:$HTTP_PORT   (nginx: $(state_of "$state/nginx/nginx.pid"))"
    say "Flight SQL  grpc://127.0.0.1:$FLIGHT_PORT"
    if [ -n "${TLS_CERT:-}" ]; then
        say "REST (TLS)  https://127.0.0.1:$HTTPS_PORT"
        say "Flight TLS  grpc+tls://127.0.0.1:$FLIGHT_TLS_PORT"
    fi
    say "Redis       redis://127.0.0.1:$REDIS_PORT/   ($(state_of "$state/redis.pid"))"
    for i in $(seq 1 "$REPLICAS"); do
        local h="REPLICA_${i}_HTTP" f="REPLICA_${i}_FLIGHT"
        say "replica $i   http://127.0.0.1:${!h} grpc://127.0.0.1:${!f}   ($(state_of "$state/replica-$i.pid"))"
    done
    say "state, logs: $state (ports in local.env)"
}

part() {
    load_env
    case "$2" in
        redis) if [ "$1" = start ]; then start_redis; else stop_pidfile "$state/redis.pid"; fi ;;
        nginx) if [ "$1" = start ]; then start_nginx; else stop_pidfile "$state/nginx/nginx.pid"; fi ;;
        *)
            [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] && [ "$2" -le "$REPLICAS" ] \
                || die "$1: expected redis, nginx or a replica number 1-$REPLICAS, got \`$2\`"
            if [ "$1" = start ]; then start_replica "$2"; else stop_pidfile "$state/replica-$2.pid"; fi
            ;;
    esac
}

case "${1:-}" in
    up) up "${2:-3}" ;;
    down) down ;;
    status) status ;;
    start | stop) [ -n "${2:-}" ] || die "$1 WHAT: a replica number, redis or nginx"; part "$1" "$2" ;;
    *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
