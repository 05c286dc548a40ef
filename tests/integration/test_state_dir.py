"""The state directory unusable, then fixed (issue 19 item 3f), on the real broker.

A worker processes half a campaign (its sinks write the embedded engine's files
under ``CA_DATA_DIR``) and stops. The state directory then breaks: it is moved away
and a regular file takes its path, which no process can write into, root included
(``chmod`` would not stop root, and CI runs as root). A worker started now exits at
once with one line and exit code 5, no traceback, and stays down (it is not a
loop). The rest of the campaign is published meanwhile. Then the directory is put
back, a new worker starts, and the results are exact: the summary equals the batch
recount, and the store (the same files) has every record once (``count() =
uniqExact(key)`` on FINAL, raw events = records published = distinct sources, FINAL
events = distinct event ids, SQL metrics = the recount). A full disk is the same
error (``OSError`` ENOSPC); ``tests/unit/cli/test_state_dir.py`` simulates it.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from streams.cli.admin import ensure_topics
from streams.cli.demo import generate_campaign
from tests import oracle
from tests.integration.conftest import Deployment, free_port
from tests.integration.test_clickhouse_sinks import sink_lag
from tests.integration.test_store_outage import COUNTS, assert_store_exact, picked, stop_merges
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_unwritable_state_dir_one_line_exit_5_then_exact_after_the_fix(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    from tests.integration.test_clickhouse_sinks import produce, records_of

    deployment = Deployment(kafka_bootstrap, tmp_path)
    settings = deployment.settings()
    state = settings.data_dir
    campaign = "state-camp"
    events = generate_campaign(campaign, messages=400, seed=23)
    raw, _ = records_of(events)
    half = len(raw) // 2

    def publish(part: slice) -> None:
        for kind, topic in settings.input_topics.items():
            asyncio.run(produce(settings, topic,
                                [(key, value) for k, key, value in raw[part] if k == kind]))

    def summary_of(upto: int) -> None:
        want = {"campaign_id": campaign, **picked(oracle.recount(events[:upto])[campaign])}
        deployment.wait_for_summary(campaign, want, keys=lambda s: {
            "campaign_id": s["campaign_id"], **{k: s[k] for k in COUNTS}})

    port = free_port()
    try:
        asyncio.run(ensure_topics(settings))
        stop_merges(settings)
        first = deployment.worker(port).start()
        first.wait_ready()
        publish(slice(0, half))
        summary_of(half)
        wait_until(lambda: asyncio.run(sink_lag(settings)) == 0, "the sinks to catch up", 120)
        first.stop(signal.SIGTERM)
        assert first.proc is not None and first.proc.returncode == 0, first.tail()

        # broken: the directory moved away, a regular file in its place
        saved = state.with_name("state.saved")
        state.rename(saved)
        state.write_text("not a directory")
        before = first.log.stat().st_size  # the same log file: the same port
        broken = deployment.worker(port).start()
        assert broken.proc is not None
        try:
            code = broken.proc.wait(90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not stop on an unusable state directory:\n"
                        f"{broken.tail()}")
        log = broken.log.read_bytes()[before:].decode(errors="replace")
        assert code == 5, log
        lines = [line for line in log.splitlines() if line.strip()]
        assert len(lines) == 1, log
        assert lines[0].startswith(f"error: the state directory {state}"), log
        assert "(not a directory)" in lines[0] or "(Not a directory)" in lines[0], log
        assert "Traceback" not in log
        publish(slice(half, None))  # waits in Kafka meanwhile

        # fixed: the same directory back; a new worker finishes the campaign exactly
        state.unlink()
        saved.rename(state)
        again = deployment.worker(port).start()
        again.wait_ready()
        summary_of(len(events))
        wait_until(lambda: asyncio.run(sink_lag(settings)) == 0, "the sinks to catch up", 120)
        assert_store_exact(settings, events, len(raw))
    finally:
        deployment.close()
        if state.is_file():
            state.unlink()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(state.with_name("state.saved"), ignore_errors=True)
