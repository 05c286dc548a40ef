"""The read queries of ``sinks.queries``, shared by both stores over one ``_select``."""

from __future__ import annotations

from typing import Any

from sinks import queries
from sinks.queries import CampaignSqlMetrics, ClickRow, ContactClicks, ReplyRow, RowCounts


class SqlReads:
    """Mixin: a store provides ``_database`` and ``_select`` (rows as tuples)."""

    _database: str

    def _select(self, sql: str, params: dict[str, object] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def replies(
        self, campaign_id: str, limit: int = 100, after: tuple[int, str] | None = None
    ) -> list[ReplyRow]:
        sql, params = queries.replies_query(self._database, campaign_id, limit, after)
        return [ReplyRow(*values) for values in self._select(sql, params)]

    def replies_page(
        self, campaign_id: str, limit: int = 100, before: tuple[int, str] | None = None
    ) -> list[ReplyRow]:
        sql, params = queries.replies_query(
            self._database, campaign_id, limit, before, newest_first=True
        )
        return [ReplyRow(*values) for values in self._select(sql, params)]

    def contact_clicks(
        self, campaign_id: str, limit: int = 100, after_contact_id: str | None = None
    ) -> list[ContactClicks]:
        sql, params = queries.contact_clicks_query(
            self._database, campaign_id, limit, after_contact_id
        )
        return [ContactClicks(*values) for values in self._select(sql, params)]

    def contact_click_events(
        self,
        campaign_id: str,
        contact_id: str,
        limit: int = 100,
        after: tuple[int, str] | None = None,
    ) -> list[ClickRow]:
        sql, params = queries.contact_click_events_query(
            self._database, campaign_id, contact_id, limit, after
        )
        return [ClickRow(*values) for values in self._select(sql, params)]

    def as_of(self, campaign_id: str | None = None) -> int | None:
        sql, params = queries.as_of_query(self._database, campaign_id)
        ((value,),) = self._select(sql, params)
        return None if value is None else int(value)

    def failed_message_events(self, campaign_id: str) -> list[tuple[str, str]]:
        sql, params = queries.failed_events_query(self._database, campaign_id)
        return [(str(m), str(p)) for m, p in self._select(sql, params)]

    def reply_bodies(self, campaign_id: str) -> list[tuple[str, str]]:
        sql, params = queries.reply_bodies_query(self._database, campaign_id)
        return [(str(c), str(b)) for c, b in self._select(sql, params)]

    def campaign_metrics(self, campaign_id: str) -> CampaignSqlMetrics | None:
        sql, params = queries.campaign_metrics_query(self._database, campaign_id)
        return queries.campaign_metrics(campaign_id, self._select(sql, params))

    def row_counts(self, table: str) -> RowCounts:
        (values,) = self._select(queries.row_counts_query(self._database, table))
        return queries.row_counts(values)

    def stored_rows(self) -> dict[str, int]:
        sql, params = queries.stored_rows_query(self._database)
        rows = {table: 0 for table in queries.SINK_TABLES}
        rows.update((str(table), int(n)) for table, n in self._select(sql, params))
        return rows
