"""Read queries over replies, link clicks and the message log, and what they return.

Replies and clicks carry only their ``message_id`` (domain.md section 1), so every
per-campaign read takes the campaign's message ids from ``message_log`` and reads
``replies`` / ``link_clicks`` by ``message_id IN (...)``: a primary index each side.

Everything reads the latest state: ``FINAL`` collapses replayed rows and older
message versions. Values are bound parameters; identifiers are allow-listed
(``sinks.sql``). Timestamps come back as epoch milliseconds.

SQL metrics (``campaign_metrics_query``) follow domain.md section 3 from the stored
rows alone, an independent check of the streaming metrics; each definition, and how
the opt-out match differs from the fold's: docs/sinks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from projections.message import OPT_OUT_KEYWORDS
from sinks.plan import EVENTS_TABLE, LINK_CLICKS_TABLE, MESSAGE_LOG_TABLE, REPLIES_TABLE
from sinks.sql import MAX_PAGE_SIZE, qualified, string_literal

# Every SQL text below is built from allow-listed identifiers and constants only;
# values are bound parameters (hence the S608 waivers).

# The key each table is deduplicated on (its ORDER BY, less the leading message_id).
_TABLE_KEYS: dict[str, str] = {
    MESSAGE_LOG_TABLE: "message_id",
    REPLIES_TABLE: "event_id",
    LINK_CLICKS_TABLE: "event_id",
    EVENTS_TABLE: "event_id",
}
SINK_TABLES = tuple(_TABLE_KEYS)

_ASCII_SPACE = "' \\t\\n\\r\\f\\v'"  # a ClickHouse literal: space and escaped controls
_OPT_OUTS = ", ".join(string_literal(k) for k in sorted(OPT_OUT_KEYWORDS))


@dataclass(frozen=True, slots=True)
class ReplyRow:
    event_id: str
    message_id: str
    contact_id: str
    contact_name: str | None
    phone: str
    variant: str | None
    body: str
    replied_at: int


@dataclass(frozen=True, slots=True)
class ClickRow:
    """One link click (deduplicated) of a contact."""

    event_id: str
    message_id: str
    link_id: str
    clicked_at: int
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class ContactClicks:
    """One contact's clicks on a campaign's links (over all their messages)."""

    contact_id: str
    contact_name: str | None
    phone: str
    clicks: int
    first_click_at: int
    last_click_at: int


@dataclass(frozen=True, slots=True)
class CampaignCounts:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    replies: int = 0
    unique_repliers: int = 0
    opt_outs: int = 0
    link_clicks: int = 0
    unique_link_clicks: int = 0


@dataclass(frozen=True, slots=True)
class CampaignSqlMetrics:
    campaign_id: str
    totals: CampaignCounts
    variants: dict[str, CampaignCounts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RowCounts:
    """Rows of a table as stored, after FINAL, and distinct keys (``message_id`` for
    the message log, ``event_id`` otherwise); for ``events`` also the distinct
    source records ``(source_topic, source_partition, source_offset)``."""

    stored: int
    final: int
    distinct_keys: int
    distinct_sources: int | None = None


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE_SIZE}, got {limit}")


def _campaign_ids(database: str) -> str:
    # Without FINAL: every version of a row has the same ids, and this reads less.
    return (
        f"SELECT message_id FROM {qualified(database, MESSAGE_LOG_TABLE)}"  # noqa: S608
        " WHERE campaign_id = {campaign_id:String}"
    )


def replies_query(
    database: str,
    campaign_id: str,
    limit: int,
    after: tuple[int, str] | None,
    *,
    newest_first: bool = False,
) -> tuple[str, dict[str, object]]:
    """A page of a campaign's replies by (replied_at, event_id), oldest first; with
    ``newest_first``, descending, and the keyset ``after`` is the bound rows come before."""
    _check_limit(limit)
    params: dict[str, object] = {"campaign_id": campaign_id}
    keyset = ""
    if after is not None:
        keyset = (
            f" AND (r.replied_at, r.event_id) {'<' if newest_first else '>'} "
            "(fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC'), {after_id:String})"
        )
        params |= {"after_ms": after[0], "after_id": after[1]}
    order = " DESC" if newest_first else ""
    log = qualified(database, MESSAGE_LOG_TABLE)
    sql = (
        "SELECT r.event_id, r.message_id, r.contact_id, l.contact_name, r.phone, l.variant,"  # noqa: S608
        " r.body, toUnixTimestamp64Milli(r.replied_at)"
        f" FROM {qualified(database, REPLIES_TABLE)} AS r FINAL"
        " INNER JOIN (SELECT message_id, contact_name, variant"
        f" FROM {log} FINAL WHERE campaign_id = {{campaign_id:String}}) AS l"
        " ON r.message_id = l.message_id"
        f" WHERE r.message_id IN ({_campaign_ids(database)}){keyset}"
        f" ORDER BY r.replied_at{order}, r.event_id{order} LIMIT {int(limit)}"
    )
    return sql, params


def contact_click_events_query(
    database: str, campaign_id: str, contact_id: str, limit: int, after: tuple[int, str] | None
) -> tuple[str, dict[str, object]]:
    """A page of one contact's clicks over all their messages of the campaign, by
    (clicked_at, event_id); keyset ``after``."""
    _check_limit(limit)
    params: dict[str, object] = {"campaign_id": campaign_id, "contact_id": contact_id}
    keyset = ""
    if after is not None:
        keyset = (
            " AND (clicked_at, event_id) > "
            "(fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC'), {after_id:String})"
        )
        params |= {"after_ms": after[0], "after_id": after[1]}
    # A message's contact never changes between its versions: no FINAL needed there.
    messages = (
        f"SELECT message_id FROM {qualified(database, MESSAGE_LOG_TABLE)}"  # noqa: S608
        " WHERE campaign_id = {campaign_id:String} AND contact_id = {contact_id:String}"
    )
    sql = (
        "SELECT event_id, message_id, link_id, toUnixTimestamp64Milli(clicked_at),"  # noqa: S608
        f" user_agent FROM {qualified(database, LINK_CLICKS_TABLE)} FINAL"
        f" WHERE message_id IN ({messages}){keyset}"
        f" ORDER BY clicked_at, event_id LIMIT {int(limit)}"
    )
    return sql, params


def as_of_query(database: str, campaign_id: str | None) -> tuple[str, dict[str, object]]:
    """The newest ``updated_at`` (epoch ms) in ``message_log``, of a campaign or of all;
    NULL when there is none. Without FINAL: every version the sinks wrote counts."""
    where, params = "", dict[str, object]()
    if campaign_id is not None:
        where, params = " WHERE campaign_id = {campaign_id:String}", {"campaign_id": campaign_id}
    sql = (
        "SELECT toUnixTimestamp64Milli(maxOrNull(updated_at))"  # noqa: S608
        f" FROM {qualified(database, MESSAGE_LOG_TABLE)}{where}"
    )
    return sql, params


def contact_clicks_query(
    database: str, campaign_id: str, limit: int, after_contact_id: str | None
) -> tuple[str, dict[str, object]]:
    """A page of per-contact clicks (count, first, last) by ``contact_id``; keyset."""
    _check_limit(limit)
    params: dict[str, object] = {"campaign_id": campaign_id}
    keyset = ""
    if after_contact_id is not None:
        keyset = " WHERE contact_id > {after_contact_id:String}"
        params["after_contact_id"] = after_contact_id
    log = qualified(database, MESSAGE_LOG_TABLE)
    sql = (
        "SELECT contact_id, any(l.contact_name), any(l.phone), count(),"  # noqa: S608
        " toUnixTimestamp64Milli(min(k.clicked_at)), toUnixTimestamp64Milli(max(k.clicked_at))"
        f" FROM {qualified(database, LINK_CLICKS_TABLE)} AS k FINAL"
        " INNER JOIN (SELECT message_id, contact_id, contact_name, phone"
        f" FROM {log} FINAL WHERE campaign_id = {{campaign_id:String}}) AS l"
        " ON k.message_id = l.message_id"
        f" WHERE k.message_id IN ({_campaign_ids(database)})"
        f" GROUP BY l.contact_id AS contact_id"
        f" ORDER BY contact_id"
    )
    # The keyset applies to the grouped contacts.
    sql = f"SELECT * FROM ({sql}){keyset} ORDER BY contact_id LIMIT {int(limit)}"  # noqa: S608
    return sql, params


def failed_events_query(database: str, campaign_id: str) -> tuple[str, dict[str, object]]:
    """``payload`` of the ``sent`` and ``delivery`` events of the campaign's messages the
    log shows failed (rejected, undelivered, failed), by ``message_id``: the retry
    selection folds them (``sinks.retry_reads``) for each message's failure cause."""
    log = qualified(database, MESSAGE_LOG_TABLE)
    sql = (
        f"SELECT message_id, payload FROM {qualified(database, EVENTS_TABLE)} FINAL"  # noqa: S608
        f" WHERE message_id IN (SELECT message_id FROM {log} FINAL"
        " WHERE campaign_id = {campaign_id:String}"
        " AND status IN ('rejected', 'undelivered', 'failed'))"
        " AND event_type IN ('sent', 'delivery')"
        " ORDER BY message_id, event_id"
    )
    return sql, {"campaign_id": campaign_id}


def reply_bodies_query(database: str, campaign_id: str) -> tuple[str, dict[str, object]]:
    """``contact_id, body`` of every reply to a message of the campaign (deduplicated);
    the opt-out match is the fold's (``projections.message.is_opt_out``), in Python."""
    sql = (
        f"SELECT contact_id, body FROM {qualified(database, REPLIES_TABLE)} FINAL"  # noqa: S608
        f" WHERE message_id IN ({_campaign_ids(database)})"
    )
    return sql, {"campaign_id": campaign_id}


def campaign_metrics_query(database: str, campaign_id: str) -> tuple[str, dict[str, object]]:
    """Metrics of a campaign: one row for the whole campaign (``is_total`` = 1) and
    one per variant, columns ``variant, is_total``, then ``sent, delivered, failed, pending,
    replies, unique_repliers, opt_outs, link_clicks, unique_link_clicks``."""
    log = qualified(database, MESSAGE_LOG_TABLE)
    ids = _campaign_ids(database)
    opt_out = f"lowerUTF8(trimBoth(body, {_ASCII_SPACE})) IN ({_OPT_OUTS})"
    sql = (
        "SELECT l.variant AS variant, grouping(l.variant) = 1 AS is_total,"  # noqa: S608
        " countIf(l.status != 'rejected') AS sent,"
        " countIf(l.status = 'delivered') AS delivered,"
        " countIf(l.status IN ('rejected', 'undelivered', 'failed')) AS failed,"
        " countIf(l.status IN ('sent', 'queued')) AS pending,"
        " sum(r.replies) AS replies,"
        " uniqExactIf(l.contact_id, r.replies > 0) AS unique_repliers,"
        " sum(r.opt_outs) AS opt_outs,"
        " sum(k.clicks) AS link_clicks,"
        " uniqExactIf(l.contact_id, k.clicks > 0) AS unique_link_clicks"
        " FROM (SELECT message_id, variant, contact_id, status"
        f" FROM {log} FINAL WHERE campaign_id = {{campaign_id:String}}) AS l"
        " LEFT JOIN (SELECT message_id, count() AS replies,"
        f" countIf({opt_out}) AS opt_outs"
        f" FROM {qualified(database, REPLIES_TABLE)} FINAL"
        f" WHERE message_id IN ({ids}) GROUP BY message_id) AS r"
        " ON l.message_id = r.message_id"
        " LEFT JOIN (SELECT message_id, count() AS clicks"
        f" FROM {qualified(database, LINK_CLICKS_TABLE)} FINAL"
        f" WHERE message_id IN ({ids}) GROUP BY message_id) AS k"
        " ON l.message_id = k.message_id"
        " GROUP BY GROUPING SETS ((), (l.variant))"
        " SETTINGS join_use_nulls = 0, force_grouping_standard_compatibility = 1"
    )
    return sql, {"campaign_id": campaign_id}


def campaign_metrics(
    campaign_id: str, rows: Sequence[Sequence[object]]
) -> CampaignSqlMetrics | None:
    """The rows of ``campaign_metrics_query``; None for a campaign without messages."""
    totals: CampaignCounts | None = None
    variants: dict[str, CampaignCounts] = {}
    for variant, is_total, *values in rows:
        counts = CampaignCounts(*(int(v) for v in values))  # type: ignore[call-overload]
        if is_total:
            totals = counts
        elif variant is not None:  # messages without a variant count in the totals only
            variants[str(variant)] = counts
    if totals is None or totals.sent + totals.failed == 0:  # every message is one of them
        return None
    return CampaignSqlMetrics(campaign_id, totals, dict(sorted(variants.items())))


def row_counts_query(database: str, table: str) -> str:
    """``stored, final, distinct_keys[, distinct_sources]`` of a whole table."""
    key = _TABLE_KEYS.get(table)
    if key is None:
        raise ValueError(f"no row counts for table {table!r}")
    name = qualified(database, table)
    sources = (
        f", (SELECT uniqExact(source_topic, source_partition, source_offset) FROM {name})"  # noqa: S608
        if table == EVENTS_TABLE
        else ""
    )
    return (
        f"SELECT (SELECT count() FROM {name}), (SELECT count() FROM {name} FINAL),"  # noqa: S608
        f" (SELECT uniqExact({key}) FROM {name}){sources}"
    )


def stored_rows_query(database: str) -> tuple[str, dict[str, object]]:
    """``table, rows`` of each sink table as stored (the active parts in ``system.parts``:
    metadata only, no table read; replaced versions count until a merge drops them)."""
    tables = ", ".join(string_literal(t) for t in SINK_TABLES)
    sql = (
        "SELECT table, sum(rows) FROM system.parts"  # noqa: S608
        f" WHERE database = {{database:String}} AND active AND table IN ({tables})"
        " GROUP BY table ORDER BY table"
    )
    return sql, {"database": database}


def row_counts(values: Sequence[object]) -> RowCounts:
    return RowCounts(*(int(v) for v in values))  # type: ignore[call-overload]
