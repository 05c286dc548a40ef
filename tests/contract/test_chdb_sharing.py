"""How ChdbStore shares its directory between processes (chdb 4.4), pinned by tests.

One process at a time holds an engine directory; a per-call store opens it only
for the length of a call, so two such processes take turns; a call that finds it
held waits (bounded) and then raises SinkError with retry_after. (While the sinks
run, their process owns the directory and nothing else opens it: readers go
through its SQL endpoint, tests/contract/test_engine_owner.py.)
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sinks.chdb_store import ChdbStore
from sinks.errors import SinkError
from sinks.migrations import load_migrations
from sinks.plan import dedup_token, plan_message_log_insert
from tests.contract.test_store_contract import rows_for

REPO = Path(__file__).resolve().parents[2]
DATABASE = "campaign_analytics"

HOLDER = """
import sys
from sinks.chdb_store import ChdbStore
store = ChdbStore(sys.argv[1], "campaign_analytics", hold_open=True)
store.migrate()
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""

WRITER = """
import sys
from sinks.chdb_store import ChdbStore
from sinks.plan import dedup_token, plan_message_log_insert
from tests.contract.test_store_contract import make_row
store = ChdbStore(sys.argv[1], "campaign_analytics", lock_timeout=30)
print("ready", flush=True)
for batch in range(int(sys.argv[2])):
    rows = [make_row("shared", batch * 100 + i) for i in range(100)]
    store.insert(plan_message_log_insert(rows, dedup_token("t", 0, batch * 100, batch * 100 + 99)))
print("done", flush=True)
"""


@contextmanager
def child(code: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A Python child running ``code``, started once it printed ``ready``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "child did not start within 30 s"
            assert proc.stdout.readline().strip() == "ready"
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()


@pytest.fixture
def chdb_dir(tmp_path: Path) -> Path:
    path = tmp_path / "chdb"
    store = ChdbStore(path, DATABASE)
    store.migrate()
    return path


def test_another_process_holding_the_directory_locks_us_out(chdb_dir: Path) -> None:
    with child(HOLDER, str(chdb_dir)) as holder:
        store = ChdbStore(chdb_dir, DATABASE, lock_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SinkError) as caught:
            store.count_message_log("any")
        assert time.monotonic() - started < 5
        assert caught.value.retry_after == 1.0
        assert f"in use by process {holder.pid}" in str(caught.value)
        release(holder)


def test_a_waiting_call_gets_in_when_the_holder_lets_go(chdb_dir: Path) -> None:
    with child(HOLDER, str(chdb_dir)) as holder:
        timer = threading.Timer(0.5, release, args=(holder,))
        timer.start()
        try:
            started = time.monotonic()
            assert ChdbStore(chdb_dir, DATABASE, lock_timeout=20).count_message_log("x") == 0
            assert time.monotonic() - started >= 0.4
        finally:
            timer.cancel()


def test_a_killed_holder_leaves_no_lock_behind(chdb_dir: Path) -> None:
    with child(HOLDER, str(chdb_dir)) as holder:
        holder.kill()
        holder.wait(timeout=30)
    assert (chdb_dir / "status").exists()  # stale: names a dead process
    assert ChdbStore(chdb_dir, DATABASE, lock_timeout=0).count_message_log("x") == 0


def test_per_call_stores_in_two_processes_take_turns(chdb_dir: Path) -> None:
    """One process inserting while another reads and exports: both get through."""
    reader = ChdbStore(chdb_dir, DATABASE, lock_timeout=30)
    reads = 0
    with child(WRITER, str(chdb_dir), "8") as writer:
        while writer.poll() is None:
            assert reader.count_message_log("shared") % 100 == 0
            reads += 1
        assert writer.returncode == 0
    assert reads > 0
    assert reader.count_message_log("shared") == 800
    assert len(list(reader.iter_export_rows("shared"))) == 800


def test_in_one_process_stores_share_a_path_but_not_two_paths(
    chdb_dir: Path, tmp_path: Path
) -> None:
    held = ChdbStore(chdb_dir, DATABASE, hold_open=True)
    try:
        campaign = "in-process"
        held.insert(plan_message_log_insert(rows_for(campaign, 3), dedup_token("t", 0, 0, 2)))
        assert ChdbStore(chdb_dir, DATABASE).count_message_log(campaign) == 3
        with pytest.raises(SinkError, match="already initialized") as caught:
            ChdbStore(tmp_path / "other", DATABASE).count_message_log(campaign)
        assert caught.value.retry_after is None
    finally:
        held.close()
    assert ChdbStore(tmp_path / "other", DATABASE).migrate() == [
        m.version for m in load_migrations()]
