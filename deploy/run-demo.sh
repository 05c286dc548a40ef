#!/usr/bin/env bash
# The main job: a local broker, one worker, a messy demo A/B campaign, its summary
# as it updates. Ctrl-C stops every process this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
WEB_PORT="${CA_WEB_PORT:-6066}"
mkdir -p .run
started_broker=0
worker_pid=""

cleanup() {
    trap '' INT TERM HUP  # a second Ctrl-C must not cut the clean-up short
    trap - EXIT
    set +e  # clean up as much as possible, even if the terminal is gone
    echo
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
}
trap cleanup INT TERM HUP EXIT

if ! bash deploy/kafka/kafka.sh status >/dev/null 2>&1; then
    bash deploy/kafka/kafka.sh start
    started_broker=1
fi

echo "starting a worker (log: .run/worker.log)"
setsid "$BIN/campaign-analytics" worker --web-port "$WEB_PORT" >.run/worker.log 2>&1 &
worker_pid=$!

for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$WEB_PORT/metrics" >/dev/null 2>&1; then break; fi
    kill -0 "$worker_pid" 2>/dev/null || { tail -n 40 .run/worker.log; exit 1; }
    sleep 0.5
done
echo "worker up; Prometheus metrics at http://127.0.0.1:$WEB_PORT/metrics"
echo "press Ctrl-C to stop"
"$BIN/campaign-analytics" demo "$@"
