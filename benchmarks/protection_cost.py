"""What the replay protection costs: events/s with it on and off, in one run.

    .venv/bin/python -m benchmarks.protection_cost [--messages N] [--rounds R]

Needs the broker (``make kafka-up``). For each round and each mode it publishes
the same messy campaign (no duplicate events, so both modes have the same work)
under a fresh app id, starts one worker, and times from the worker's start until
the consumer group has committed every input and internal record. It prints
events/s per mode (median of the rounds) and the ratio. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from streams.cli.admin import group_lag
from streams.cli.demo import generate_campaign
from streams.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def run_once(events_file: Path, protected: bool, workdir: Path) -> float:
    tag = uuid.uuid4().hex[:8]
    env = os.environ | {
        "CA_APP_ID": f"bench-{tag}", "CA_TOPIC_PREFIX": f"b{tag}.",
        "CA_DATA_DIR": str(workdir / tag), "CA_LOG_LEVEL": "warning",
        "PYTHONPATH": str(REPO),
    }
    if not protected:
        env["CA_UNSAFE_DISABLE_REPLAY_PROTECTION"] = "1"
    cli = [sys.executable, "-m", "streams.cli"]
    subprocess.run([*cli, "publish", str(events_file)], env=env, check=True,
                   capture_output=True)
    os.environ.update({k: env[k] for k in ("CA_APP_ID", "CA_TOPIC_PREFIX")})
    settings = load_settings()
    start = time.monotonic()
    log = (workdir / f"{tag}.log").open("wb")
    worker = subprocess.Popen([*cli, "worker", "--web-port", str(_free_port())], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(5)
        while asyncio.run(group_lag(settings)) > 0:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited ({worker.returncode}); see {log.name}")
            time.sleep(1)
        return time.monotonic() - start
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = generate_campaign("bench", args.messages, seed=5, duplicate_rate=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for protected in (True, False):
                times[protected].append(run_once(path, protected, Path(tmp)))
    print(f"{len(events)} events, {args.rounds} rounds, one worker (times include start-up)")
    for protected in (True, False):
        t = statistics.median(times[protected])
        print(f"  protection {'on ' if protected else 'off'}: median {t:6.1f} s "
              f"= {len(events) / t:7.0f} events/s   (runs: "
              + ", ".join(f"{x:.1f}" for x in times[protected]) + ")")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"  cost of the protection: {100 * (ratio - 1):+.1f}% time")


if __name__ == "__main__":
    main()
