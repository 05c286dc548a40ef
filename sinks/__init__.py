"""ClickHouse sinks: insert plans, the store interface and its two backends.

``open_store(settings)`` picks the backend: a ClickHouse server when
``settings.clickhouse_url`` is set, else embedded chdb in ``settings.chdb_path``.
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
    """The configured store; nothing is connected until its first call.

    ``hold_open`` only matters for chdb: keep the engine directory open for the
    store's lifetime instead of per call (faster, but locks out other processes,
    such as the CLI's export; see ``sinks.chdb_store``).
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


__all__ = [
    "ClickHouseStore",
    "InsertPlan",
    "dedup_token",
    "open_store",
    "plan_message_log_insert",
]
