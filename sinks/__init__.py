"""ClickHouse sinks: insert plans, the store interface and its two backends.

``open_store(url, database, chdb_path, retention=...)`` is the writers' store (the
sinks): the ClickHouse server at ``url``, or with an empty ``url`` embedded chdb in
``chdb_path``. ``open_reader(url, database, sql_host=..., sql_port=...)`` is every
reader's (the CLI's ``export``, the API): the server, or with chdb the read-only SQL
endpoint of the one process that owns the engine directory
(``streams/sink_runtime/runner.py``); it never migrates or inserts. The callers pass
their settings' values (``credentials``: user and password for a server or the
endpoint, ``sinks/credentials.py``): this package reads no settings of its own. Backends are
imported only when chosen, so a server deployment never loads chdb.
"""

from __future__ import annotations

from pathlib import Path

from sinks.credentials import Credentials
from sinks.plan import InsertPlan, dedup_token, plan_message_log_insert
from sinks.retention import Retention
from sinks.store import ClickHouseStore


def open_store(url: str, database: str, chdb_path: Path, *, retention: Retention,
               hold_open: bool = False, credentials: Credentials | None = None
               ) -> ClickHouseStore:
    """The store for writing; nothing is connected until its first call.

    ``url``: a ClickHouse server (``CA_CLICKHOUSE_URL``); empty: embedded chdb in
    ``chdb_path``. ``hold_open`` only matters for chdb: keep the engine directory open
    for the store's lifetime instead of per call (the sinks' owner does; see
    ``sinks.chdb_store``).
    """
    if url:
        from sinks.server_store import ClickHouseServerStore

        return ClickHouseServerStore(url, database, retention=retention,
                                     credentials=credentials)
    from sinks.chdb_store import ChdbStore

    return ChdbStore(chdb_path, database, hold_open=hold_open, retention=retention)


def open_reader(url: str, database: str, *, sql_host: str, sql_port: int,
                credentials: Credentials | None = None) -> ClickHouseStore:
    """A read-only store: ``migrate`` and ``insert`` raise ``ReadOnlyStoreError``.

    With a ``url``, that server; with chdb (empty ``url``), the SQL endpoint the
    engine's owner serves on ``sql_host:sql_port`` (a reader never opens the directory,
    so it never stops the sinks). Nothing is connected until its first call.
    """
    from sinks.server_store import ClickHouseServerStore

    if url:
        return ClickHouseServerStore(url, database, read_only=True, credentials=credentials)
    host = f"[{sql_host}]" if ":" in sql_host else sql_host  # IPv6
    endpoint = f"http://{host}:{sql_port}"
    where = (f"{endpoint} (the embedded engine's SQL endpoint, served by the process "
             "running the sinks)")
    return ClickHouseServerStore(endpoint, database, read_only=True, where=where,
                                 credentials=credentials)


__all__ = [
    "ClickHouseStore",
    "Credentials",
    "InsertPlan",
    "Retention",
    "dedup_token",
    "open_reader",
    "open_store",
    "plan_message_log_insert",
]
