"""The sinks' shared store (``streams.sink_runner._StoreLease``) on the embedded
engine: kept open across rounds, and let go when rows stop coming and when the
last sink stops, so the CLI's ``export`` (another process) gets the directory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from streams.settings import load_settings
from streams.sink_runner import _StoreLease

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from projections.errors import SinkError
from sinks.chdb_store import ChdbStore
try:
    ChdbStore(sys.argv[1], "campaign_analytics", lock_timeout=0.3).count_message_log("x")
    print("free")
except SinkError:
    print("held")
"""


def _probe(path: Path) -> str:
    """Whether another process can open the directory right now."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True,
                         text=True, env=os.environ | {"PYTHONPATH": str(REPO)}, check=True)
    return out.stdout.strip()


def test_open_across_rounds_then_let_go_when_idle_and_when_the_sinks_stop(
        tmp_path: Path) -> None:
    settings = replace(load_settings(), data_dir=tmp_path, chdb_path=tmp_path / "chdb",
                       clickhouse_url="", sink_hold_seconds=30.0)
    lease = _StoreLease()
    seen: list[str] = []

    async def round_(idle: float) -> None:
        lease._IDLE_S = idle  # read when the round lets the store go
        async with lease.lease(settings) as store:
            await asyncio.to_thread(store.count_message_log, "x")

    async def scenario() -> None:
        async with lease.session():
            async with lease.lease(settings) as store:
                await asyncio.to_thread(store.migrate)
            await round_(idle=600)
            seen.append(await asyncio.to_thread(_probe, settings.chdb_path))  # between rounds
            await round_(idle=0.2)
            for _ in range(100):  # no timing bet: wait for the idle close itself
                if lease._store is None:
                    break
                await asyncio.sleep(0.1)
            seen.append(await asyncio.to_thread(_probe, settings.chdb_path))  # idle
            await round_(idle=600)
        seen.append(await asyncio.to_thread(_probe, settings.chdb_path))  # sinks stopped

    asyncio.run(scenario())
    assert seen == ["held", "free", "free"]
    # and this process may open another directory: the engine was let go
    other = replace(settings, chdb_path=tmp_path / "other")
    from sinks import open_store

    store = open_store(other)
    try:
        assert store.migrate()
    finally:
        store.close()
