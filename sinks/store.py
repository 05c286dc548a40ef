"""The ClickHouse store interface, the same for the embedded engine and a server.

Implementations: ``sinks.chdb_store.ChdbStore`` (embedded chdb, a local
directory) and ``sinks.server_store.ClickHouseServerStore`` (clickhouse-connect).
``tests/contract/test_store_contract.py`` runs one suite against both.

Every method raises ``SinkError`` for an engine failure (``retry_after`` set
when trying again later makes sense) and ``ValueError`` for a bad argument.

Writers (the sinks) get theirs from ``sinks.open_store``; readers (the CLI's
``export``, the API) from ``sinks.open_reader``, whose store refuses ``migrate``
and ``insert`` with ``sinks.server_store.ReadOnlyStoreError``: a reader's settings (its TTLs, say)
never change the tables.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Protocol, runtime_checkable

from projections.message_log import MessageLogRow
from sinks.plan import InsertPlan
from sinks.queries import CampaignSqlMetrics, ClickRow, ContactClicks, ReplyRow, RowCounts


@runtime_checkable
class ClickHouseStore(Protocol):
    def migrate(self) -> list[int]:
        """Apply pending schema migrations (idempotent); returns the versions applied now."""
        ...

    def insert(self, plan: InsertPlan) -> int:
        """Write the plan's rows in one insert; returns the rows sent.

        A plan whose ``dedup_token`` was already inserted (within the table's
        deduplication window) is dropped by the engine, whatever its rows.
        Without a token the insert is never deduplicated: a repeat is written again.
        """
        ...

    def message_log(
        self,
        campaign_id: str,
        status: str | None = None,
        limit: int = 100,
        after_message_id: str | None = None,
        country: str | None = None,
        failure_category: str | None = None,
    ) -> list[MessageLogRow]:
        """One page of a campaign's messages, latest state, by ``message_id``; only
        those of ``status``, ``country``, ``failure_category`` when given.

        Keyset pagination: pass the last ``message_id`` of a page as
        ``after_message_id`` to get the next one.
        """
        ...

    def count_message_log(self, campaign_id: str, final: bool = True) -> int:
        """Messages of a campaign; ``final=False`` counts rows as stored (before
        replacing merges collapse versions and replays), for diagnostics and tests."""
        ...

    def iter_export_rows(self, campaign_id: str) -> Generator[tuple[object, ...], None, None]:
        """The CSV export's rows (``sinks.sql.EXPORT_QUERY_COLUMNS``: the export's columns
        with ``segments`` last in place of ``cost``; timestamps in epoch ms), latest
        state, by ``message_id``, streamed in bounded memory.

        A generator: it runs when iterated; exhaust it or ``close()`` it to free
        the connection it holds.
        """
        ...

    def replies(
        self, campaign_id: str, limit: int = 100, after: tuple[int, str] | None = None
    ) -> list[ReplyRow]:
        """One page of a campaign's replies (deduplicated), by ``(replied_at, event_id)``;
        pass the last reply's ``(replied_at, event_id)`` as ``after`` for the next page."""
        ...

    def replies_page(
        self, campaign_id: str, limit: int = 100, before: tuple[int, str] | None = None
    ) -> list[ReplyRow]:
        """``replies`` newest first, by ``(replied_at, event_id)`` descending; pass the
        last reply's ``(replied_at, event_id)`` as ``before`` for the next page."""
        ...

    def contact_clicks(
        self, campaign_id: str, limit: int = 100, after_contact_id: str | None = None
    ) -> list[ContactClicks]:
        """One page of per-contact link clicks of a campaign (count, first and last
        click over all the contact's messages), by ``contact_id``; keyset pagination."""
        ...

    def contact_click_events(
        self,
        campaign_id: str,
        contact_id: str,
        limit: int = 100,
        after: tuple[int, str] | None = None,
    ) -> list[ClickRow]:
        """One page of a contact's link clicks (deduplicated) over all their messages of
        the campaign, oldest first by ``(clicked_at, event_id)``; pass the last click's
        ``(clicked_at, event_id)`` as ``after`` for the next page."""
        ...

    def as_of(self, campaign_id: str | None = None) -> int | None:
        """The newest ``updated_at`` (epoch ms) the sinks wrote to ``message_log``, for
        the campaign or for the whole table; None when there is nothing."""
        ...

    def failed_message_events(self, campaign_id: str) -> list[tuple[str, str]]:
        """``(message_id, payload)`` of the ``sent`` and ``delivery`` events (JSON, as the
        events table keeps them) of the campaign's messages the log shows failed."""
        ...

    def reply_bodies(self, campaign_id: str) -> list[tuple[str, str]]:
        """``(contact_id, body)`` of every reply to a message of the campaign."""
        ...

    def campaign_metrics(self, campaign_id: str) -> CampaignSqlMetrics | None:
        """domain.md section 3 counts recomputed in SQL from ``message_log``, ``replies``
        and ``link_clicks``, for the campaign and per variant; None without messages."""
        ...

    def row_counts(self, table: str) -> RowCounts:
        """Stored, FINAL and distinct-key row counts of a whole table (diagnostics,
        the sink's exactly-once checks)."""
        ...

    def stored_rows(self) -> dict[str, int]:
        """Rows stored in each sink table, from the parts' metadata (cheap; replaced
        versions count until merged away), 0 for an empty table."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...
