"""The embedded engine's one owner (``streams.sink_runtime.runner._EngineOwner``): the sink
process holding ``<chdb dir>.sink.lock`` keeps the directory open for as long as
it runs, serves readers through the read-only SQL endpoint, lets everything go
when it stops, and is replaced by a waiting process when it does."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sinks import ClickHouseStore, open_reader
from sinks.chdb_store import ChdbStore
from sinks.errors import SinkError
from sinks.plan import plan_message_log_insert
from sinks.server_store import ReadOnlyStoreError
from streams.settings import Settings
from streams.sink_runtime.runner import _OWNER
from streams.telemetry import Telemetry
from tests.contract.test_store_contract import rows_for

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from sinks.errors import SinkError
from sinks.chdb_store import ChdbStore
try:
    ChdbStore(sys.argv[1], "campaign_analytics", lock_timeout=0.3).count_message_log("x")
    print("free")
except SinkError:
    print("held")
"""

# Owns the engine as a sink process would, until a line comes on stdin.
OWNER = """
import asyncio, sys
from streams.settings import load_settings
from streams.sink_runtime.runner import _OWNER
from streams.telemetry import Telemetry

async def main():
    async with _OWNER.hold(load_settings(), Telemetry()):
        print("owner", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(path: Path) -> str:
    """Whether another process can open the directory right now."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True,
                         text=True, env=os.environ | {"PYTHONPATH": str(REPO)}, check=True)
    return out.stdout.strip()


def _settings(tmp_path: Path, port: int) -> Settings:
    return Settings(clickhouse_url="", data_dir=tmp_path, chdb_path=tmp_path / "chdb",
                    sql_host="127.0.0.1", sql_port=port)


def _reader(settings: Settings) -> ClickHouseStore:
    return open_reader(settings.clickhouse_url, settings.clickhouse_database,
                       sql_host=settings.sql_host, sql_port=settings.sql_port)


def test_the_owner_keeps_the_engine_serves_readers_and_lets_go_when_it_stops(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path, free_port())
    reader = _reader(settings)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        async with _OWNER.hold(settings, Telemetry()) as store:
            await asyncio.to_thread(store.insert, plan_message_log_insert(rows_for("c", 7), None))
            await asyncio.sleep(2.0)  # idle: the old lease let the engine go after 1.5 s
            seen["while owned"] = await asyncio.to_thread(_probe, settings.chdb_path)
            seen["read"] = await asyncio.to_thread(reader.count_message_log, "c")
            async with _OWNER.hold(settings, Telemetry()) as again:  # a second sink
                seen["shared"] = again is store
        seen["after"] = await asyncio.to_thread(_probe, settings.chdb_path)

    with caplog.at_level(logging.INFO, logger="streams.sink_runtime.runner"):
        asyncio.run(scenario())
    assert seen == {"while owned": "held", "read": 7, "shared": True, "after": "free"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f":{settings.sql_port}" in r.getMessage() for r in caplog.records)
    # the endpoint went with the owner (the reader cannot connect) ...
    with pytest.raises(SinkError, match="SQL endpoint"):
        reader.count_message_log("c")
    reader.close()
    # ... and so did the engine: this process may open another directory
    other = ChdbStore(tmp_path / "other", "campaign_analytics")
    assert other.migrate()


def test_a_reader_changes_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    reader = _reader(settings)
    plan = plan_message_log_insert(rows_for("c", 1), None)
    with pytest.raises(ReadOnlyStoreError):
        reader.migrate()
    with pytest.raises(ReadOnlyStoreError):
        reader.insert(plan)
    reader.close()
    assert not settings.chdb_path.exists()  # nothing was opened or created


def test_a_taken_sql_port_is_logged_and_the_sinks_keep_their_store(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = _settings(tmp_path, taken.getsockname()[1])

        async def scenario() -> int:
            async with _OWNER.hold(settings, Telemetry()) as store:
                await asyncio.to_thread(
                    store.insert, plan_message_log_insert(rows_for("c", 3), None))
                return await asyncio.to_thread(store.count_message_log, "c")

        with caplog.at_level(logging.INFO, logger="streams.sink_runtime.runner"):
            assert asyncio.run(scenario()) == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"127.0.0.1:{settings.sql_port}" in errors[0] and "sinks go on" in errors[0]


def test_a_waiting_process_takes_over_when_the_owner_stops(tmp_path: Path) -> None:
    mine, theirs = _settings(tmp_path, free_port()), free_port()
    env = os.environ | {"PYTHONPATH": str(REPO), "CA_CLICKHOUSE_URL": "",
                        "CA_CHDB_PATH": str(mine.chdb_path), "CA_SQL_PORT": str(theirs)}
    reader = _reader(Settings(clickhouse_url="", sql_host="127.0.0.1", sql_port=theirs))

    async def scenario(child: subprocess.Popen[str]) -> list[str]:
        assert child.stdout is not None
        lines: list[str] = []
        async with _OWNER.hold(mine, Telemetry()) as store:
            await asyncio.to_thread(store.insert, plan_message_log_insert(rows_for("c", 4), None))
            ready, _, _ = await asyncio.to_thread(select.select, [child.stdout], [], [], 5.0)
            lines.append("owner while we own" if ready else "waiting")
        ready, _, _ = await asyncio.to_thread(select.select, [child.stdout], [], [], 30.0)
        lines.append(child.stdout.readline().strip() if ready else "never")
        return lines

    with subprocess.Popen([sys.executable, "-c", OWNER], cwd=REPO, env=env, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        try:
            assert asyncio.run(scenario(child)) == ["waiting", "owner"]
            assert reader.count_message_log("c") == 4  # served by the new owner
            assert _probe(mine.chdb_path) == "held"
        finally:
            reader.close()
            assert child.stdin is not None
            child.stdin.write("\n")
            child.stdin.close()
            child.wait(30)
    assert _probe(mine.chdb_path) == "free"
