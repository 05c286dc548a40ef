#!/usr/bin/env bash
# The main job: a local broker, one worker, a messy demo A/B campaign, its summary
# as it updates. Ctrl-C stops every process this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
WEB_PORT="${CA_WEB_PORT:-6066}"
API_HOST="${CA_API_HOST:-127.0.0.1}"
API_PORT="${CA_API_PORT:-8080}"
mkdir -p .run
started_broker=0
started_registry=0
worker_pid=""
api_pid=""
sender_pid=""

cleanup() {
    trap '' INT TERM HUP  # a second Ctrl-C must not cut the clean-up short
    trap - EXIT
    set +e  # clean up as much as possible, even if the terminal is gone
    echo
    if [[ -n "$sender_pid" ]] && kill -0 "$sender_pid" 2>/dev/null; then
        echo "stopping the demo sender (pid $sender_pid)"
        kill -TERM "$sender_pid" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$sender_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$sender_pid" 2>/dev/null || true
    fi
    if [[ -n "$api_pid" ]] && kill -0 "$api_pid" 2>/dev/null; then
        echo "stopping the API (pid $api_pid)"
        kill -TERM "$api_pid" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$api_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$api_pid" 2>/dev/null || true
    fi
    if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
        echo "stopping the worker (pid $worker_pid)"
        kill -TERM -- "-$worker_pid" 2>/dev/null || kill -TERM "$worker_pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$worker_pid" 2>/dev/null || true
    fi
    if [[ "$started_broker" == 1 ]]; then
        echo "stopping the Kafka broker"
        bash deploy/kafka/kafka.sh stop || true
    fi
    if [[ "$started_registry" == 1 ]]; then
        echo "stopping the schema registry"
        bash deploy/registry/registry.sh stop || true
    fi
}
trap cleanup INT TERM HUP EXIT

if [[ "${CLUSTER:-0}" == 1 ]]; then
    # `make run CLUSTER=1`: the local 3-broker cluster (started if need be, left running:
    # make cluster-down stops it); topics get 3 replicas, min.insync.replicas 2
    export CA_KAFKA_BOOTSTRAP
    CA_KAFKA_BOOTSTRAP="$(bash deploy/kafka/cluster.sh up)"
    CA_KAFKA_BOOTSTRAP="${CA_KAFKA_BOOTSTRAP#CA_KAFKA_BOOTSTRAP=}"
    echo "on the local cluster: CA_KAFKA_BOOTSTRAP=$CA_KAFKA_BOOTSTRAP"
    export CA_DATA_DIR="${CA_DATA_DIR:-.state/cluster}"  # not the single broker's state
elif ! bash deploy/kafka/kafka.sh status >/dev/null 2>&1; then
    bash deploy/kafka/kafka.sh start
    started_broker=1
fi

# The metric and command topics in the Confluent wire format, their schemas in a local
# registry (deploy/registry/registry.sh), unless CA_SCHEMA_REGISTRY_URL names one.
if [[ -z "${CA_SCHEMA_REGISTRY_URL:-}" ]]; then
    if ! bash deploy/registry/registry.sh status >/dev/null 2>&1; then
        bash deploy/registry/registry.sh start >/dev/null
        started_registry=1
    fi
    export CA_SCHEMA_REGISTRY_URL
    CA_SCHEMA_REGISTRY_URL="$(bash deploy/registry/registry.sh url)"
    CA_SCHEMA_REGISTRY_URL="${CA_SCHEMA_REGISTRY_URL#CA_SCHEMA_REGISTRY_URL=}"
fi
echo "schema registry: CA_SCHEMA_REGISTRY_URL=$CA_SCHEMA_REGISTRY_URL"

# Issue 22's numbers in the demo: prices (deploy/demo/prices.csv) for the cost figures,
# and a receipt timeout short enough that the demo's lost receipts (messages sent 3 h
# ago that never got a final one) show as unknown, while those sent in the last
# minute stay pending. Either can be set from outside.
export CA_PRICES_FILE="${CA_PRICES_FILE-deploy/demo/prices.csv}"
export CA_RECEIPT_TIMEOUT="${CA_RECEIPT_TIMEOUT:-1h}"
echo "prices: CA_PRICES_FILE=${CA_PRICES_FILE:-(none)}; CA_RECEIPT_TIMEOUT=$CA_RECEIPT_TIMEOUT"

echo "starting a worker (log: .run/worker.log)"
setsid "$BIN/campaign-analytics" worker --web-port "$WEB_PORT" >.run/worker.log 2>&1 &
worker_pid=$!

for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$WEB_PORT/metrics" >/dev/null 2>&1; then break; fi
    kill -0 "$worker_pid" 2>/dev/null || { tail -n 40 .run/worker.log; exit 1; }
    sleep 0.5
done
echo "worker up; Prometheus metrics at http://127.0.0.1:$WEB_PORT/metrics"

echo "starting the API (log: .run/api.log)"
"$BIN/campaign-analytics" api --port "$API_PORT" >.run/api.log 2>&1 &
api_pid=$!
for _ in $(seq 1 60); do
    if curl -fsS "http://$API_HOST:$API_PORT/healthz" >/dev/null 2>&1; then break; fi
    kill -0 "$api_pid" 2>/dev/null || { tail -n 20 .run/api.log; exit 1; }
    sleep 0.5
done
# DEMO ONLY: a stand-in for the sending service, which a real deployment has instead:
# it sends the retries requested from the page or the API (streams/cli/demo_sender.py)
echo "starting the demo's stand-in sender (log: .run/demo-sender.log)"
"$BIN/campaign-analytics" demo-sender >.run/demo-sender.log 2>&1 &
sender_pid=$!
echo "Campaign page: http://$API_HOST:$API_PORT/campaigns/demo-campaign" \
     "(all campaigns: http://$API_HOST:$API_PORT/)"
echo "API at http://$API_HOST:$API_PORT/api/v1/campaigns (OpenAPI: /api/v1/openapi.json;"
echo "  SQL on the embedded engine: campaign-analytics sql \"SELECT ...\" or" \
     "http://${CA_SQL_HOST:-127.0.0.1}:${CA_SQL_PORT:-8124}/)"
echo "Retry the failed messages and send the A/B winner from the page, or with curl:"
echo "  curl -X POST -H 'Content-Type: application/json' -d '{\"dry_run\": true}'" \
     "http://$API_HOST:$API_PORT/api/v1/campaigns/demo-campaign/retries"
echo "press Ctrl-C to stop"
# the demo's events arrive in waves over CA_DEMO_SPREAD seconds, so the page moves
"$BIN/campaign-analytics" demo --spread "${CA_DEMO_SPREAD:-120}" "$@"
