#!/usr/bin/env bash
# Local schema registry (Apicurio Registry, Confluent-compatible API) without Docker.
#
#   registry.sh fetch | start | wait | stop | status | clean | url
#
# The registry is the Maven artifact io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all
# (Maven Central), unpacked once into deploy/registry/.cache and run with
# `java -jar apicurio-registry-app-$VERSION-runner.jar`. Its storage is Apicurio's SQL
# storage on an H2 *file* database in $CA_SCHEMA_REGISTRY_DIR/data, so subjects and
# schema ids survive a restart (tests/integration/test_schema_registry.py restarts one).
# Clients use the Confluent-compatible API, http://127.0.0.1:PORT/apis/ccompat/v7: what
# CA_SCHEMA_REGISTRY_URL takes.
#
# Environment (all optional):
#   CA_SCHEMA_REGISTRY_PORT   port on 127.0.0.1                   (8081; 8080 is the API's)
#   CA_SCHEMA_REGISTRY_DIR    data dir, log, pid file             (<repo>/.run/registry)
#   CA_REGISTRY_WAIT_TIMEOUT  seconds `start`/`wait` wait for it  (180)
#   REGISTRY_HEAP_OPTS        JVM heap                            (-Xmx256m -Xms64m)
set -euo pipefail

VERSION=3.0.9
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="$HERE/.cache"
APP="$CACHE/apicurio-registry-$VERSION"
JAR="$APP/apicurio-registry-app-$VERSION-runner.jar"
PORT="${CA_SCHEMA_REGISTRY_PORT:-8081}"
RDIR="${CA_SCHEMA_REGISTRY_DIR:-$REPO/.run/registry}"
PIDFILE="$RDIR/registry.pid"
LOG="$RDIR/registry.log"
WAIT_TIMEOUT="${CA_REGISTRY_WAIT_TIMEOUT:-180}"
URL="http://127.0.0.1:$PORT/apis/ccompat/v7"

log() { echo "registry.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=../lib/process.sh
source "$HERE/../lib/process.sh"

# --- fetch -------------------------------------------------------------------
# mvn dependency:copy of the tar.gz (offline first: a warm ~/.m2 needs no network),
# unpacked under a lock (make and a test fixture may both get here).
cmd_fetch() {
    [[ -f "$JAR" ]] && return 0
    mkdir -p "$CACHE"
    (
        flock 9
        [[ -f "$JAR" ]] && exit 0
        command -v mvn >/dev/null || die "mvn not found (needed once to fetch the registry)"
        rm -rf "$CACHE/download" "$APP.tmp"
        log "fetching io.apicurio:apicurio-registry-app:$VERSION (tar.gz, about 110 MB)"
        local args=(-q -B -Dstyle.color=never dependency:copy
            "-Dartifact=io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all"
            "-DoutputDirectory=$CACHE/download")
        (cd "$CACHE" && { mvn -o "${args[@]}" >/dev/null 2>&1 || mvn "${args[@]}"; }) ||
            die "mvn could not fetch the registry"
        mkdir -p "$APP.tmp"
        tar xzf "$CACHE/download/apicurio-registry-app-$VERSION-all.tar.gz" -C "$APP.tmp"
        rm -rf "$CACHE/download" "$APP"
        mv "$APP.tmp" "$APP"
        log "registry in $APP"
    ) 9>"$CACHE/fetch.lock"
}

# --- process helpers ---------------------------------------------------------
running_pid() { pid_from "$PIDFILE" apicurio-registry-app; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

answers() { curl -fsS -m 5 "$URL/subjects" >/dev/null 2>&1; }

cmd_wait() {
    local t0 deadline
    t0="$(now)"
    deadline=$((SECONDS + WAIT_TIMEOUT))
    while ! answers; do
        if [[ -f "$PIDFILE" ]] && ! running_pid >/dev/null; then
            log "registry process exited while starting"
            [[ -f "$LOG" ]] && tail -n 30 "$LOG" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "registry at $URL not answering after ${WAIT_TIMEOUT}s"
            [[ -f "$LOG" ]] && tail -n 30 "$LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
    log "registry answers at $URL (waited $(since "$t0") s)"
}

cmd_start() {
    local pid t0
    if pid="$(running_pid)"; then
        log "already running (pid $pid)"
        cmd_wait
        cmd_url
        return 0
    fi
    rm -f "$PIDFILE"
    port_open && die "something else listens on 127.0.0.1:$PORT (see CA_SCHEMA_REGISTRY_PORT)"
    command -v java >/dev/null || die "java not found (Java 17+ needed)"
    cmd_fetch
    mkdir -p "$RDIR/data"
    t0="$(now)"
    # SQL storage on an H2 file database (Apicurio 3.0's default is H2 in memory); a
    # small connection pool (its default keeps 20 connections); no access log.
    # shellcheck disable=SC2086,SC2016
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        java ${REGISTRY_HEAP_OPTS:--Xmx256m -Xms64m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" \
        -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
        "-Dapicurio.datasource.url=jdbc:h2:file:$RDIR/data/registry" \
        -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2 \
        -Dapicurio.datasource.jdbc.max-size=10 \
        -Dquarkus.http.access-log.enabled=false \
        -jar "$JAR" >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
    [[ -s "$PIDFILE" ]] || die "could not launch the registry"
    log "started registry pid $(cat "$PIDFILE"), log $LOG"
    cmd_wait
    echo "schema registry up in $(since "$t0") s"
    cmd_url
}

cmd_url() { echo "CA_SCHEMA_REGISTRY_URL=$URL"; }

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    log "stopping registry pid $pid"
    terminate "$pid" TERM 30
    rm -f "$PIDFILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if answers; then
            echo "running (pid $pid), answering at $URL, data in $RDIR"
        else
            echo "running (pid $pid), NOT answering at $URL, data in $RDIR"
        fi
        return 0
    fi
    echo "not running (data dir $RDIR)"
    return 3
}

cmd_clean() {
    cmd_stop
    case "$RDIR" in
    "" | / | "$HOME" | "$REPO") die "refusing to delete '$RDIR'" ;;
    esac
    rm -rf "$RDIR"
    log "removed $RDIR"
}

case "${1:-}" in
fetch | start | wait | stop | status | clean | url) "cmd_$1" ;;
*)
    echo "usage: $0 {fetch|start|wait|stop|status|clean|url}" >&2
    exit 2
    ;;
esac
