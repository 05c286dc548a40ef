#!/usr/bin/env bash
# Local Kafka cluster without Docker: one KRaft controller and three brokers on 127.0.0.1,
# each its own JVM (`java ... kafka.Kafka <dir>/<node>/server.properties`), from the
# same Maven jars as the single broker (kafka.sh, whose helpers this script sources).
#
#   cluster.sh up [NODE...] | down [NODE...] | kill NODE | status | bootstrap | clean
#
# NODE is controller, broker1, broker2 or broker3. `up` is idempotent: it starts the
# nodes that are down (formatting a node whose storage is missing or was wiped with the
# cluster's one id, kept in <dir>/cluster.id), keeps the data of the others, returns
# once every broker answers and the metadata shows all three, and prints
#   CA_KAFKA_BOOTSTRAP=127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
# `down` stops nodes with SIGTERM (all: brokers first), `kill` SIGKILLs one.
#
# Topics: default.replication.factor=3, min.insync.replicas=2, the offsets and
# transaction logs replicated 3 ways. Failure detection: brokers heartbeat every 500 ms
# and are fenced after 3 s without one (Kafka's defaults are 2 s and 9 s); a busy
# 2-core machine may need them looser (CA_CLUSTER_HEARTBEAT_MS, CA_CLUSTER_SESSION_MS):
# a broker fenced for a late heartbeat drops out of every ISR until it catches up.
# Security as the single broker's: each broker also has a SASL_SSL listener (SCRAM-SHA-512,
# one certificate of a CA made in <dir>/secure, the users and ACLs of kafka.sh).
#
# Environment (all optional):
#   CA_CLUSTER_DIR           nodes' configs, data, logs, pids   (<repo>/.run/cluster)
#   CA_CLUSTER_PORT          the controller's port; brokers take the next three, their
#                            SASL_SSL listeners the three after (9192: 9193-9195, 9196-9198)
#   CA_CLUSTER_SECURE        on | off: the SASL_SSL listeners   (on)
#   CA_CLUSTER_HEAP          each JVM's heap                    (-Xmx384m -Xms64m)
#   CA_CLUSTER_HEARTBEAT_MS  broker.heartbeat.interval.ms       (500)
#   CA_CLUSTER_SESSION_MS    broker.session.timeout.ms          (3000)
#   CA_CLUSTER_WAIT_TIMEOUT  seconds `up` waits for the brokers (120)
#   CA_TOPIC_PREFIX, CA_APP_ID  the deployment whose ACLs `up` creates (as kafka.sh)
set -euo pipefail

CLUSTER_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=kafka.sh
source "$CLUSTER_HERE/kafka.sh"

CDIR="${CA_CLUSTER_DIR:-$REPO/.run/cluster}"
BASE="${CA_CLUSTER_PORT:-9192}"
HOST=127.0.0.1
HEAP="${CA_CLUSTER_HEAP:--Xmx384m -Xms64m}"
HEARTBEAT_MS="${CA_CLUSTER_HEARTBEAT_MS:-500}"
SESSION_MS="${CA_CLUSTER_SESSION_MS:-3000}"
WAIT_TIMEOUT="${CA_CLUSTER_WAIT_TIMEOUT:-120}"
SECURE_PORT="$([[ "${CA_CLUSTER_SECURE:-on}" == off ]] && echo off || echo on)"
SECRETS="$CDIR/secure"
LOGDIR="$CDIR/logs"  # the one-off tools' logs (format, security setup)
NODES=(controller broker1 broker2 broker3)
BROKERS=(broker1 broker2 broker3)

clog() { echo "cluster.sh: $*" >&2; }
cdie() { clog "$*"; exit 1; }

node_id() { case "$1" in controller) echo 0 ;; broker[123]) echo "${1#broker}" ;; *) return 1 ;; esac; }
node_port() { echo $((BASE + $(node_id "$1"))); }
secure_port_of() { echo $((BASE + 3 + $(node_id "$1"))); }
bootstrap_list() {
    local b out=()
    for b in "${BROKERS[@]}"; do out+=("$HOST:$(node_port "$b")"); done
    (IFS=,; echo "${out[*]}")
}
check_node() { node_id "$1" >/dev/null || cdie "no node '$1' (controller, broker1, broker2, broker3)"; }

node_pid() { pid_from "$CDIR/$1/kafka.pid" "kafka.Kafka $CDIR/$1/"; }

open_port() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

render_node() {
    local node="$1" id roles listeners advertised="" keystore_password=""
    id="$(node_id "$node")"
    if [[ "$node" == controller ]]; then
        roles=controller
        listeners="CONTROLLER://$HOST:$BASE"
    else
        roles=broker
        listeners="PLAINTEXT://$HOST:$(node_port "$node")"
        secure && listeners="$listeners,SASL_SSL://$HOST:$(secure_port_of "$node")"
        advertised="advertised.listeners=$listeners"
    fi
    secure && keystore_password="$(cat "$SECRETS/keystore.password")"
    mkdir -p "$CDIR/$node/data" "$CDIR/$node/logs"
    (
        umask 077  # it holds the keystore's password
        cat >"$CDIR/$node/server.properties" <<EOF
# Rendered by deploy/kafka/cluster.sh: node $node of the local cluster.
process.roles=$roles
node.id=$id
controller.quorum.voters=0@$HOST:$BASE
controller.listener.names=CONTROLLER
listeners=$listeners
$advertised
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
log.dirs=$CDIR/$node/data

# Failure detection (the controller fences a broker whose heartbeats stop).
broker.heartbeat.interval.ms=$HEARTBEAT_MS
broker.session.timeout.ms=$SESSION_MS

# Security as the single broker's (docs/security.md).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:admin
allow.everyone.if.no.acl.found=false
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$SECRETS/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$keystore_password

# Three replicas, two in sync for an acks=all write.
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
num.partitions=4
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# Four JVMs on a small machine.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.retention.hours=24
log.retention.bytes=1073741824
log.segment.bytes=67108864
EOF
    )
}

# A node whose storage is missing (new, or wiped while it was down: KRaft refuses to
# start on it, "No readable meta.properties files found") is formatted with the
# cluster's id; a wiped broker then re-registers and its replicas are copied back.
format_node() {
    local node="$1"
    [[ -f "$CDIR/$node/data/meta.properties" ]] && return 0
    clog "formatting $node's storage (cluster id $(cat "$CDIR/cluster.id"))"
    java_run -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.logs.dir="$CDIR/$node/logs" \
        kafka.tools.StorageTool format --cluster-id="$(cat "$CDIR/cluster.id")" \
        --config="$CDIR/$node/server.properties" >"$CDIR/$node/logs/format.log" 2>&1 ||
        { cat "$CDIR/$node/logs/format.log" >&2; cdie "formatting $node failed"; }
}

start_node() {
    local node="$1" pidfile="$CDIR/$1/kafka.pid" port
    node_pid "$node" >/dev/null && return 0
    rm -f "$pidfile"
    port="$(node_port "$node")"
    open_port "$port" && cdie "something else listens on $HOST:$port (not $node; see CA_CLUSTER_PORT)"
    render_node "$node"
    format_node "$node"
    # shellcheck disable=SC2086,SC2016
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
        java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-} \
        -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.logs.dir="$CDIR/$node/logs" \
        -cp "$LIBS/*" kafka.Kafka "$CDIR/$node/server.properties" \
        >"$CDIR/$node/logs/stdout.log" 2>&1 </dev/null &
    for _ in $(seq 50); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
    [[ -s "$pidfile" ]] || cdie "could not launch $node"
    clog "started $node (pid $(cat "$pidfile"), port $port, log $CDIR/$node/logs/server.log)"
}

# Every broker answers a metadata request listing all three brokers (a fenced or
# unregistered broker is left out of the metadata).
all_answer() {
    local ports=() b
    for b in "${BROKERS[@]}"; do open_port "$(node_port "$b")" || return 1; ports+=("$(node_port "$b")"); done
    [[ -x "$PYTHON" ]] || return 0
    "$PYTHON" - "$HOST" "${ports[@]}" <<'PY' >/dev/null 2>&1
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> None:
    host, ports = sys.argv[1], sys.argv[2:]
    for port in ports:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=5000)
        await admin.start()
        try:
            brokers = (await admin.describe_cluster())["brokers"]
        finally:
            await admin.close()
        assert len(brokers) == len(ports), brokers

asyncio.run(asyncio.wait_for(main(), 20))
PY
}

cluster_tail() {
    local node
    for node in "${NODES[@]}"; do
        node_pid "$node" >/dev/null && continue
        [[ -s "$CDIR/$node/logs/server.log" ]] || continue
        echo "---- $node is down; tail of its server.log" >&2
        tail -n 20 "$CDIR/$node/logs/server.log" >&2
    done
}

cmd_up() {
    local nodes=("$@") node t0 deadline pid
    ((${#nodes[@]})) || nodes=("${NODES[@]}")
    for node in "${nodes[@]}"; do check_node "$node"; done
    command -v java >/dev/null || cdie "java not found (Java 17+ needed)"
    cmd_jars
    mkdir -p "$CDIR" "$LOGDIR"
    [[ -s "$CDIR/cluster.id" ]] ||
        head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' >"$CDIR/cluster.id"
    make_secrets
    t0="$(now)"
    # the nodes to start get their configs and storage first, the formats side by side
    # (a JVM each, about 2 s)
    local formats=()
    for node in "${nodes[@]}"; do
        node_pid "$node" >/dev/null && continue
        render_node "$node"
        format_node "$node" &
        formats+=($!)
    done
    for pid in "${formats[@]}"; do wait "$pid" || cdie "formatting storage failed"; done
    for node in "${nodes[@]}"; do start_node "$node"; done
    deadline=$((SECONDS + WAIT_TIMEOUT))
    until all_answer; do
        for node in "${nodes[@]}"; do
            node_pid "$node" >/dev/null || { cluster_tail; cdie "$node exited while starting"; }
        done
        ((SECONDS < deadline)) || { cluster_tail; cdie "brokers not all answering after ${WAIT_TIMEOUT}s"; }
        sleep 0.5
    done
    # (nodes already running keep the listeners they started with)
    if secure && grep -q "SASL_SSL://" "$CDIR/broker1/server.properties"; then
        BOOTSTRAP="$HOST:$(node_port broker1)"
        security_setup
        clog "SASL_SSL listeners at $HOST:$(secure_port_of broker1)-$(secure_port_of broker3)" \
            "(SCRAM-SHA-512): CA certificate $SECRETS/ca.crt, passwords in $SECRETS/*.password"
    fi
    clog "cluster up in $(since "$t0") s"
    echo "CA_KAFKA_BOOTSTRAP=$(bootstrap_list)"
}

stop_node() {
    local node="$1" sig="$2" pid
    pid="$(node_pid "$node")" || { rm -f "$CDIR/$node/kafka.pid"; return 0; }
    terminate "$pid" "$sig" 60
    rm -f "$CDIR/$node/kafka.pid"
    clog "$node stopped ($sig)"
}

cmd_down() {
    local nodes=("$@") node
    # brokers before the controller: a broker without its controller waits 'shutdown'
    ((${#nodes[@]})) || nodes=(broker3 broker2 broker1 controller)
    for node in "${nodes[@]}"; do check_node "$node"; stop_node "$node" TERM; done
}

cmd_kill() {
    (($# == 1)) || cdie "usage: cluster.sh kill NODE"
    check_node "$1"
    stop_node "$1" KILL
}

cmd_status() {
    local node pid down=0
    for node in "${NODES[@]}"; do
        if pid="$(node_pid "$node")"; then
            echo "$node: running (pid $pid, port $(node_port "$node"))"
        else
            echo "$node: down (port $(node_port "$node"))"
            down=1
        fi
    done
    if ((down == 0)) && all_answer; then
        echo "all brokers answer: CA_KAFKA_BOOTSTRAP=$(bootstrap_list)"
        return 0
    fi
    return 3
}

cmd_bootstrap() { echo "CA_KAFKA_BOOTSTRAP=$(bootstrap_list)"; }

cmd_clean() {
    cmd_down
    case "$CDIR" in
    "" | / | "$HOME" | "$REPO") cdie "refusing to delete '$CDIR'" ;;
    esac
    rm -rf "$CDIR"
    clog "removed $CDIR"
}

case "${1:-}" in
up | down | kill | status | bootstrap | clean) command="$1"; shift; "cmd_$command" "$@" ;;
*)
    echo "usage: $0 {up [NODE...]|down [NODE...]|kill NODE|status|bootstrap|clean}" >&2
    exit 2
    ;;
esac
