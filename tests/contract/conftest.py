"""Backends of the store contract suite (style.md #9: one suite, every implementation).

- ``chdb``: ``ChdbStore`` opening the directory per call (the default), a fresh
  directory per test.
- ``chdb-held``: ``ChdbStore(hold_open=True)``, one connection per store.
- ``chdb-endpoint``: the production pair with chdb: writes through a held
  ``ChdbStore`` (the sinks' owner), reads through the store ``open_reader`` makes,
  on the owner's read-only ``SqlEndpoint`` (served from a thread of its own).
- ``server-code-on-chdb``: ``ClickHouseServerStore`` through clickhouse-connect's
  embedded ``chdb://`` backend. It runs the server store's own code (parameter
  binding, insert settings, row streaming) without a server; not its HTTP path.
- ``server``: ``ClickHouseServerStore`` on the server in ``CA_TEST_CLICKHOUSE_URL``,
  a fresh database per session (dropped at the end); skipped without it.

Every test uses its own campaign ids, so tests sharing a server database do not meet.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sinks.chdb_store import ChdbStore
from sinks.plan import InsertPlan
from sinks.server_store import ClickHouseServerStore
from sinks.sql_endpoint import SqlEndpoint
from sinks.store import ClickHouseStore

SERVER_URL_ENV = "CA_TEST_CLICKHOUSE_URL"
BACKENDS = ("chdb", "chdb-held", "chdb-endpoint", "server-code-on-chdb", "server")

StoreFactory = Callable[..., ClickHouseStore]


@pytest.fixture(scope="session")
def server_database() -> Iterator[str]:
    """A fresh database on the test server for this session, dropped afterwards."""
    url = os.environ.get(SERVER_URL_ENV, "")
    if not url:
        pytest.skip(f"{SERVER_URL_ENV} is not set: no ClickHouse server to run the contract on")
    database = f"ca_test_{uuid.uuid4().hex[:12]}"
    yield database
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=url)
    try:
        client.command(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StoreFactory]:
    """Builds un-migrated stores of the backend under test; closes them all at the end."""
    made: list[ClickHouseStore] = []
    server_db = request.getfixturevalue("server_database") if backend == "server" else ""

    def factory(database: str | None = None) -> ClickHouseStore:
        store: ClickHouseStore
        if backend == "chdb":
            store = ChdbStore(tmp_path / "chdb", database or "campaign_analytics")
        elif backend == "chdb-held":
            store = ChdbStore(tmp_path / "chdb", database or "campaign_analytics", hold_open=True)
        elif backend == "chdb-endpoint":
            store = OwnerAndReader(tmp_path / "chdb", database or "campaign_analytics")
        elif backend == "server-code-on-chdb":
            url = f"chdb://{tmp_path / 'chdb'}"
            store = ClickHouseServerStore(url, database or "campaign_analytics")
        else:
            url = os.environ[SERVER_URL_ENV]
            store = ClickHouseServerStore(url, database or server_db)
        made.append(store)
        return store

    yield factory
    for store in reversed(made):
        store.close()


@pytest.fixture
def store(make_store: StoreFactory, backend: str) -> ClickHouseStore:
    """A migrated store of the backend under test."""
    store = make_store()
    store.migrate()
    if backend == "server":
        _stop_merges(store)
    return store


def _stop_merges(store: ClickHouseStore) -> None:
    """Keep a server from merging parts during a test: a merge collapses the
    duplicate rows the raw (un-FINAL) counts look for, and could make the
    deduplication tests pass without deduplication. (chdb showed no merge within
    seconds of an insert; its negative control would fail if one happened.)"""
    import clickhouse_connect

    database = store._database  # type: ignore[attr-defined]  # test scaffolding
    client = clickhouse_connect.get_client(dsn=os.environ[SERVER_URL_ENV])
    try:
        for table in ("message_log", "replies", "link_clicks", "events"):
            client.command(f"SYSTEM STOP MERGES {database}.{table}")
    finally:
        client.close()


class ServedEndpoint:
    """A ``SqlEndpoint`` on ``path`` serving from its own thread and event loop, as it
    serves beside the sinks; ``port`` is the one it bound."""

    def __init__(self, path: Path, database: str, port: int = 0) -> None:
        self.endpoint = SqlEndpoint(path, database)
        self.loop = asyncio.new_event_loop()
        self.port = self.loop.run_until_complete(self.endpoint.start("127.0.0.1", port))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.endpoint.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class OwnerAndReader(ClickHouseServerStore):
    """The reader ``open_reader`` builds with chdb (read-only, on the owner's endpoint),
    with ``migrate`` and ``insert`` going to the owner's held store instead."""

    def __init__(self, path: Path, database: str) -> None:
        self.owner = ChdbStore(path, database, hold_open=True)
        self.served: ServedEndpoint | None = ServedEndpoint(path, database)
        super().__init__(f"http://127.0.0.1:{self.served.port}", database, read_only=True)

    def migrate(self) -> list[int]:
        return self.owner.migrate()

    def insert(self, plan: InsertPlan) -> int:
        return self.owner.insert(plan)

    def close(self) -> None:
        super().close()
        served, self.served = self.served, None
        if served is not None:
            served.stop()
        self.owner.close()
