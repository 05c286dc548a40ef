"""ClickHouse sinks: insert plans, the store interface and its two backends.

``open_store(settings)`` is the writers' store (the sinks): a ClickHouse server
when ``settings.clickhouse_url`` is set, else embedded chdb in ``settings.chdb_path``.
``open_reader(settings)`` is every reader's (the CLI's ``export``, the API): the
server, or with chdb the read-only SQL endpoint of the one process that owns the
engine directory (``streams/sink_runtime/runner.py``); it never migrates or inserts.
Backends are imported only when chosen, so a server deployment never loads chdb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sinks.plan import InsertPlan, dedup_token, plan_message_log_insert
from sinks.retention import Retention
from sinks.store import ClickHouseStore

if TYPE_CHECKING:
    from streams.settings import Settings


def open_store(settings: Settings, *, hold_open: bool = False) -> ClickHouseStore:
    """The configured store for writing; nothing is connected until its first call.

    ``hold_open`` only matters for chdb: keep the engine directory open for the
    store's lifetime instead of per call (the sinks' owner does; see
    ``sinks.chdb_store``).
    """
    retention = Retention(settings.clickhouse_ttl_days, settings.clickhouse_events_ttl_days)
    if settings.clickhouse_url:
        from sinks.server_store import ClickHouseServerStore

        return ClickHouseServerStore(
            settings.clickhouse_url, settings.clickhouse_database, retention=retention
        )
    from sinks.chdb_store import ChdbStore

    return ChdbStore(
        settings.chdb_path, settings.clickhouse_database, hold_open=hold_open, retention=retention
    )


def open_reader(settings: Settings) -> ClickHouseStore:
    """A read-only store: ``migrate`` and ``insert`` raise ``ReadOnlyStoreError``.

    With ``CA_CLICKHOUSE_URL``, that server; with chdb, the SQL endpoint the engine's
    owner serves on ``CA_SQL_HOST:CA_SQL_PORT`` (a reader never opens the directory,
    so it never stops the sinks). Nothing is connected until its first call.
    """
    from sinks.server_store import ClickHouseServerStore

    if settings.clickhouse_url:
        return ClickHouseServerStore(
            settings.clickhouse_url, settings.clickhouse_database, read_only=True
        )
    host = f"[{settings.sql_host}]" if ":" in settings.sql_host else settings.sql_host  # IPv6
    url = f"http://{host}:{settings.sql_port}"
    where = f"{url} (the embedded engine's SQL endpoint, served by the process running the sinks)"
    return ClickHouseServerStore(url, settings.clickhouse_database, read_only=True, where=where)


__all__ = [
    "ClickHouseStore",
    "InsertPlan",
    "dedup_token",
    "open_reader",
    "open_store",
    "plan_message_log_insert",
]
