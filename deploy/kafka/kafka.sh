#!/usr/bin/env bash
# Local single-node Kafka (KRaft broker+controller) without Docker.
#
#   kafka.sh jars | start | wait | stop | status | clean | acls
#
# The broker is the Maven artifact org.apache.kafka:kafka_2.13 listed in
# deploy/kafka/pom.xml (the single source of its version), run straight with
# `java -cp 'libs/*' kafka.Kafka server.properties`.
#
# Security (docs/security.md): besides the PLAINTEXT listener (local tools and tests,
# whose ANONYMOUS principal is a super user) the broker has a SASL_SSL listener with
# SCRAM-SHA-512 users admin, worker and downstream and KRaft's ACLs. When the data dir
# is new, `start` generates a CA, the broker's certificate and the users' passwords
# into $CA_KAFKA_DIR/secure (openssl; nothing downloaded, mode 600) and creates the
# users as it formats the storage; after every start it creates the worker's and
# downstream's ACLs for CA_TOPIC_PREFIX / CA_APP_ID (SecuritySetup.java, which also
# adds the users to a storage formatted before they existed). `acls` does that for
# another deployment (tests: their own prefix and app id).
#
# Environment (all optional):
#   CA_KAFKA_BOOTSTRAP        host:port the broker listens on   (127.0.0.1:9092; first entry used)
#   CA_KAFKA_CONTROLLER_PORT  KRaft controller port             (broker port + 1)
#   CA_KAFKA_SECURE_PORT      SASL_SSL listener port; off: none (broker port + 2)
#   CA_TOPIC_PREFIX, CA_APP_ID  the deployment `start`/`acls` grant ACLs for ('', campaign-analytics)
#   CA_KAFKA_DIR              data dir, logs, pid file          (<repo>/.run/kafka)
#   CA_KAFKA_WAIT_TIMEOUT     seconds `wait`/`start` wait for the broker (90)
#   CA_KAFKA_STOP_TIMEOUT     seconds before SIGKILL in `stop`  (30)
#   KAFKA_HEAP_OPTS           JVM heap                          (-Xmx1G -Xms256m)
#   KAFKA_JVM_OPTS            extra JVM options
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
POM="$HERE/pom.xml"
LIBS="$HERE/.cache/libs"
STAMP="$LIBS/.pom.sha256"

BOOTSTRAP="${CA_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
BOOTSTRAP="${BOOTSTRAP%%,*}"
HOST="${BOOTSTRAP%:*}"
PORT="${BOOTSTRAP##*:}"
CONTROLLER_PORT="${CA_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
KDIR="${CA_KAFKA_DIR:-$REPO/.run/kafka}"
PIDFILE="$KDIR/kafka.pid"
LOGDIR="$KDIR/logs"
CONF="$KDIR/server.properties"
WAIT_TIMEOUT="${CA_KAFKA_WAIT_TIMEOUT:-90}"
STOP_TIMEOUT="${CA_KAFKA_STOP_TIMEOUT:-30}"
PYTHON="$REPO/.venv/bin/python"
SECURE_PORT="${CA_KAFKA_SECURE_PORT:-$((PORT + 2))}"
SECRETS="$KDIR/secure"
USERS=(admin worker downstream)

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=../lib/process.sh
source "$HERE/../lib/process.sh"

java_run() { java -cp "$LIBS/*" "$@"; }

# --- jars --------------------------------------------------------------------
# Copies the pom's runtime classpath into .cache/libs. Skipped when the jars
# are there for this exact pom (sha256 stamp); Maven's offline mode is tried
# first so a warm ~/.m2 needs no network.
jars_current() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$1" ]] && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null
}

cmd_jars() {
    local sum
    sum="$(sha256sum "$POM" | cut -d' ' -f1)"
    jars_current "$sum" && return 0
    mkdir -p "$HERE/.cache"
    (   # one fetch at a time (make and a test fixture may both get here)
        flock 9
        jars_current "$sum" && exit 0
        command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
        rm -rf "$LIBS.tmp"
        log "fetching Kafka jars listed in $POM"
        local mvn_args=(-q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies
            -DincludeScope=runtime "-DoutputDirectory=$LIBS.tmp")
        mvn -o "${mvn_args[@]}" >/dev/null 2>&1 || mvn "${mvn_args[@]}"
        echo "$sum" >"$LIBS.tmp/.pom.sha256"
        rm -rf "$LIBS"
        mv "$LIBS.tmp" "$LIBS"
        log "jars in $LIBS: $(cd "$LIBS" && echo kafka_2.13-*.jar)"
    ) 9>"$HERE/.cache/jars.lock"
}

# --- process helpers ---------------------------------------------------------
# PID of our broker if it is running.
running_pid() { pid_from "$PIDFILE" kafka.Kafka; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# A real Kafka request (metadata via aiokafka's admin client) when the project
# venv is there; otherwise an open port has to do.
broker_answers() {
    port_open || return 1
    [[ -x "$PYTHON" ]] || return 0
    "$PYTHON" - "$BOOTSTRAP" <<'PY' >/dev/null 2>&1
import asyncio, sys
try:
    from aiokafka.admin import AIOKafkaAdminClient
except ImportError:
    sys.exit(0)

async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()

asyncio.run(asyncio.wait_for(main(), 10))
PY
}

log_tail() {
    local f
    for f in "$LOGDIR/stdout.log" "$LOGDIR/server.log"; do
        [[ -s "$f" ]] && { echo "---- tail of $f" >&2; tail -n 40 "$f" >&2; }
    done
    return 0
}

# --- subcommands -------------------------------------------------------------
cmd_wait() {
    local t0 deadline
    t0="$(now)"
    deadline=$((SECONDS + WAIT_TIMEOUT))
    [[ -f "$PIDFILE" ]] || log "no local broker started by kafka.sh; waiting up to ${WAIT_TIMEOUT}s for one at $BOOTSTRAP"
    while true; do
        # Our own broker must be alive (else another one on the port could answer).
        if [[ -f "$PIDFILE" ]] && ! running_pid >/dev/null; then
            log "broker process exited while waiting"
            log_tail
            exit 1
        fi
        broker_answers && break
        if ((SECONDS >= deadline)); then
            log "broker at $BOOTSTRAP not answering after ${WAIT_TIMEOUT}s"
            log_tail
            exit 1
        fi
        sleep 0.5
    done
    log "broker at $BOOTSTRAP answers (waited $(since "$t0") s)"
}

secure() { [[ "$SECURE_PORT" != off ]]; }

# The CA, the broker's key and certificate (a PKCS12 keystore) and one password per
# user plus the keystore's, each made once: a restart keeps them, `clean` drops them.
make_secrets() {
    secure || return 0
    mkdir -p "$SECRETS"
    chmod 700 "$SECRETS"
    (
        umask 077
        cd "$SECRETS"
        local name san
        for name in "${USERS[@]}" keystore; do
            [[ -s "$name.password" ]] || openssl rand -hex 16 >"$name.password"
        done
        if [[ ! -s ca.crt ]]; then
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
                -subj "/CN=campaign-analytics local Kafka CA" 2>/dev/null
            rm -f broker.p12
        fi
        if [[ ! -s broker.p12 ]]; then
            san="DNS:localhost,IP:127.0.0.1"
            if [[ "$HOST" =~ ^[0-9.]+$ ]]; then san="$san,IP:$HOST"; else san="$san,DNS:$HOST"; fi
            openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr \
                -subj "/CN=$HOST" 2>/dev/null
            openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -days 825 -out broker.crt -extfile <(echo "subjectAltName=$san") 2>/dev/null
            openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt \
                -name broker -passout file:keystore.password -out broker.p12
            rm -f broker.csr
        fi
    ) || die "could not generate the TLS material in $SECRETS"
}

render_config() {
    local listener="" keystore_password=""
    if secure; then
        listener=",SASL_SSL://$HOST:$SECURE_PORT"
        keystore_password="$(cat "$SECRETS/keystore.password")"
    fi
    (
        umask 077  # it holds the keystore's password
        sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PORT|g" \
            -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$KDIR/data|g" \
            -e "s|@SECURE_LISTENER@|$listener|g" -e "s|@SECRETS@|$SECRETS|g" \
            -e "s|@KEYSTORE_PASSWORD@|$keystore_password|g" \
            "$HERE/server.properties.in" >"$CONF"
    )
}

# SCRAM users missing from the storage, and the ACLs of one deployment (idempotent).
security_setup() {
    secure || return 0
    java_run -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.logs.dir="$LOGDIR" \
        "$HERE/SecuritySetup.java" "$BOOTSTRAP" "$SECRETS" "${CA_TOPIC_PREFIX:-}" \
        "${CA_APP_ID:-campaign-analytics}" 2>"$LOGDIR/security-setup.log" ||
        { cat "$LOGDIR/security-setup.log" >&2; die "creating the SCRAM users and ACLs failed"; }
    grep '^SecuritySetup:' "$LOGDIR/security-setup.log" >&2 || true
}

secure_summary() {
    secure || return 0
    log "SASL_SSL listener at $HOST:$SECURE_PORT (SCRAM-SHA-512): CA certificate" \
        "$SECRETS/ca.crt, passwords in $SECRETS/{admin,worker,downstream}.password"
}

format_storage() {
    [[ -f "$KDIR/data/meta.properties" ]] && return 0
    local cluster_id
    # A Kafka cluster id is 16 random bytes, base64url without padding.
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    local scram=() user
    if secure; then
        for user in "${USERS[@]}"; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$SECRETS/$user.password")]")
        done
    fi
    log "formatting KRaft storage in $KDIR/data (cluster id $cluster_id)"
    java_run -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.logs.dir="$LOGDIR" \
        kafka.tools.StorageTool format --cluster-id="$cluster_id" --config="$CONF" \
        "${scram[@]}" >"$LOGDIR/format.log" 2>&1 ||
        { cat "$LOGDIR/format.log" >&2; die "formatting storage failed"; }
}

cmd_start() {
    local pid t0
    if pid="$(running_pid)"; then
        if broker_answers; then
            log "already running (pid $pid) and answering at $BOOTSTRAP"
            secure_summary
            return 0
        fi
        log "already running (pid $pid) but not answering yet; waiting"
        cmd_wait
        return 0
    fi
    rm -f "$PIDFILE"
    port_open && die "something else listens on $HOST:$PORT (not our broker; see CA_KAFKA_BOOTSTRAP)"
    # A taken secure port (another broker's, say) would stop the broker from starting:
    # it starts without that listener instead, and says so.
    if secure && (exec 3<>"/dev/tcp/$HOST/$SECURE_PORT") 2>/dev/null; then
        log "port $SECURE_PORT is taken: no SASL_SSL listener this time (CA_KAFKA_SECURE_PORT)"
        SECURE_PORT=off
    fi
    command -v java >/dev/null || die "java not found (Java 17+ needed)"
    cmd_jars
    mkdir -p "$KDIR/data" "$LOGDIR"
    make_secrets
    render_config
    format_storage

    t0="$(now)"
    # setsid+nohup: the broker outlives this shell and make; bash writes its own
    # pid and then execs java, so the pid file holds the JVM's pid.
    # shellcheck disable=SC2086,SC2016
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms256m} \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-} \
        -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.logs.dir="$LOGDIR" \
        -cp "$LIBS/*" kafka.Kafka "$CONF" \
        >"$LOGDIR/stdout.log" 2>&1 </dev/null &
    for _ in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
    [[ -s "$PIDFILE" ]] || { log_tail; die "could not launch the broker"; }
    log "started broker pid $(cat "$PIDFILE"), log $LOGDIR/server.log"
    cmd_wait
    security_setup
    secure_summary
    echo "broker up in $(since "$t0") s"
}

cmd_acls() {
    running_pid >/dev/null || die "no broker of kafka.sh runs with data in $KDIR"
    secure || die "CA_KAFKA_SECURE_PORT is off: no SASL_SSL listener"
    security_setup
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    log "stopping broker pid $pid"
    terminate "$pid" TERM "$STOP_TIMEOUT"
    rm -f "$PIDFILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if broker_answers; then
            echo "running (pid $pid), answering at $BOOTSTRAP, data in $KDIR"
        else
            echo "running (pid $pid), NOT answering at $BOOTSTRAP, data in $KDIR"
        fi
        return 0
    fi
    echo "not running (data dir $KDIR)"
    return 3
}

cmd_clean() {
    cmd_stop
    case "$KDIR" in
    "" | / | "$HOME" | "$REPO") die "refusing to delete '$KDIR'" ;;
    esac
    rm -rf "$KDIR"
    log "removed $KDIR"
}

# cluster.sh sources this file for its helpers (jars, TLS material, users and ACLs).
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
jars | start | wait | stop | status | clean | acls) "cmd_$1" ;;
*)
    echo "usage: $0 {jars|start|wait|stop|status|clean|acls}" >&2
    exit 2
    ;;
esac
