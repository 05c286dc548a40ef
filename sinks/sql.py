"""SQL shared by every ClickHouse store: identifiers, column types, read queries.

Identifiers (database and table names) cannot be bound as query parameters, so
they are checked against an allow-list pattern and then written into the SQL;
values are always bound as ``{name:Type}`` server-side parameters, which both
chdb and clickhouse-connect understand.

Timestamps are read back as ``toUnixTimestamp64Milli(...)``: epoch millis, the
project's one timestamp representation, independent of any session time zone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from projections.failures import FailureCategory
from projections.message_log import (
    CSV_EXPORT_COLUMNS,
    MESSAGE_LOG_COLUMNS,
    MESSAGE_STATUSES,
    MessageLogRow,
)
from sinks.plan import (
    EVENTS_TABLE,
    LINK_CLICKS_TABLE,
    MESSAGE_LOG_TABLE,
    REPLIES_TABLE,
    InsertPlan,
)

_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
# The message log's failure_category values (projections/failures.py).
FAILURE_CATEGORIES: frozenset[str] = frozenset(c.value for c in FailureCategory)

MAX_PAGE_SIZE = 10_000

# The column types of migrations/0001_message_log.sql and the columns later ones add
# (a unit test keeps them equal).
# The stores use them to type inserts without asking the server first.
MESSAGE_LOG_TYPES: dict[str, str] = {
    "message_id": "String",
    "campaign_id": "String",
    "variant": "LowCardinality(Nullable(String))",
    "contact_id": "String",
    "contact_name": "Nullable(String)",
    "phone": "String",
    "status": "LowCardinality(String)",
    "sent_at": "DateTime64(3, 'UTC')",
    "delivered_at": "Nullable(DateTime64(3, 'UTC'))",
    "failed_at": "Nullable(DateTime64(3, 'UTC'))",
    "error_code": "LowCardinality(Nullable(String))",
    "error_description": "Nullable(String)",
    "carrier": "LowCardinality(Nullable(String))",
    "segments": "UInt32",
    "click_count": "UInt32",
    "first_click_at": "Nullable(DateTime64(3, 'UTC'))",
    "last_click_at": "Nullable(DateTime64(3, 'UTC'))",
    "reply_count": "UInt32",
    "last_reply_at": "Nullable(DateTime64(3, 'UTC'))",
    "updated_at": "DateTime64(3, 'UTC')",
    "version": "UInt64",
    "retry_of": "Nullable(String)",  # 0006
    "human_click_count": "UInt32",  # 0007
    "country": "LowCardinality(String)",  # 0007
    "failure_category": "LowCardinality(Nullable(String))",  # 0007
}

_TIMESTAMP = "DateTime64(3, 'UTC')"

# The written columns of migrations 0002-0004 (``inserted_at`` is a DEFAULT).
REPLIES_TYPES: dict[str, str] = {
    "event_id": "String",
    "message_id": "String",
    "contact_id": "String",
    "phone": "String",
    "body": "String",
    "replied_at": _TIMESTAMP,
}
LINK_CLICKS_TYPES: dict[str, str] = {
    "event_id": "String",
    "message_id": "String",
    "link_id": "String",
    "clicked_at": _TIMESTAMP,
    "user_agent": "Nullable(String)",
}
EVENTS_TYPES: dict[str, str] = {
    "event_id": "String",
    "message_id": "String",
    "event_type": "LowCardinality(String)",
    "occurred_at": _TIMESTAMP,
    "payload": "String",
    "source_topic": "LowCardinality(String)",
    "source_partition": "UInt32",
    "source_offset": "UInt64",
}

# Column types of every table a plan may target.
TABLE_TYPES: dict[str, dict[str, str]] = {
    MESSAGE_LOG_TABLE: MESSAGE_LOG_TYPES,
    REPLIES_TABLE: REPLIES_TYPES,
    LINK_CLICKS_TABLE: LINK_CLICKS_TYPES,
    EVENTS_TABLE: EVENTS_TYPES,
}

TIMESTAMP_COLUMNS: frozenset[str] = frozenset(
    name for name, type_ in MESSAGE_LOG_TYPES.items() if "DateTime64" in type_
)


def insert_deduplication_token(plan: InsertPlan) -> str:
    """The token to send with ``plan``: its own, or a fresh one when it claims none
    (so the insert is never deduplicated; see ``sinks.plan``)."""
    if plan.dedup_token is not None:
        return plan.dedup_token
    return f"no-dedup-{uuid.uuid4().hex}"


def column_types(table: str, columns: Sequence[str]) -> list[str]:
    """The ClickHouse types of ``columns`` of ``table``; ValueError for an unknown one."""
    types = TABLE_TYPES.get(table)
    if types is None:
        raise ValueError(f"no known column types for table {table!r}")
    unknown = [c for c in columns if c not in types]
    if unknown:
        raise ValueError(f"unknown columns of {table}: {unknown}")
    return [types[c] for c in columns]


def validate_identifier(name: str) -> str:
    """``name`` if it is a plain identifier (letters, digits, ``_``); ValueError otherwise."""
    if not _IDENTIFIER_RE.fullmatch(name):
        raise ValueError(f"not an allowed ClickHouse identifier: {name!r}")
    return name


def qualified(database: str, table: str) -> str:
    return f"{validate_identifier(database)}.{validate_identifier(table)}"


def string_literal(value: str) -> str:
    """A ClickHouse string literal; for the few places that cannot take a parameter."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _select_list(columns: Sequence[str]) -> str:
    return ", ".join(
        f"toUnixTimestamp64Milli({name}) AS {name}_ms" if name in TIMESTAMP_COLUMNS else name
        for name in columns
    )


def message_log_page_query(
    database: str,
    campaign_id: str,
    status: str | None,
    limit: int,
    after_message_id: str | None,
    country: str | None = None,
    failure_category: str | None = None,
) -> tuple[str, dict[str, object]]:
    """SQL and parameters of one page of a campaign's message log (latest state),
    filtered by status, country (ISO 3166 alpha-2, ZZ) and failure category when given.

    WHERE applies after FINAL (``optimize_move_to_prewhere_if_final`` is off by
    default), so a filter sees each message's latest state only.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE_SIZE}, got {limit}")
    if status is not None and status not in MESSAGE_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if country is not None and not _COUNTRY_RE.fullmatch(country):
        raise ValueError(f"country must be an ISO 3166 alpha-2 code such as US, got {country!r}")
    if failure_category is not None and failure_category not in FAILURE_CATEGORIES:
        raise ValueError(f"unknown failure category {failure_category!r}")
    conditions = ["campaign_id = {campaign_id:String}"]
    params: dict[str, object] = {"campaign_id": campaign_id}
    for name, value in (("status", status), ("country", country),
                        ("failure_category", failure_category)):
        if value is not None:
            conditions.append(f"{name} = {{{name}:String}}")
            params[name] = value
    if after_message_id is not None:
        conditions.append("message_id > {after_message_id:String}")
        params["after_message_id"] = after_message_id
    sql = (
        f"SELECT {_select_list(MESSAGE_LOG_COLUMNS)}"  # noqa: S608  # identifiers validated
        f" FROM {qualified(database, MESSAGE_LOG_TABLE)} FINAL"
        f" WHERE {' AND '.join(conditions)}"
        f" ORDER BY message_id LIMIT {int(limit)}"
    )
    return sql, params


def message_log_count_query(
    database: str, campaign_id: str, final: bool
) -> tuple[str, dict[str, object]]:
    """Messages of a campaign (``final``), or rows as stored before versions collapse."""
    modifier = " FINAL" if final else ""
    sql = (
        f"SELECT count() FROM {qualified(database, MESSAGE_LOG_TABLE)}{modifier}"  # noqa: S608
        " WHERE campaign_id = {campaign_id:String}"
    )
    return sql, {"campaign_id": campaign_id}


# What the export reads: its columns, with the message's segments in place of its cost
# (computed by sinks/export.py from the segments, the country and the price table).
EXPORT_QUERY_COLUMNS: tuple[str, ...] = (*CSV_EXPORT_COLUMNS[:-1], "segments")


def export_query(database: str, campaign_id: str) -> tuple[str, dict[str, object]]:
    """``EXPORT_QUERY_COLUMNS`` (timestamps as epoch ms), latest state, by message id."""
    sql = (
        f"SELECT {_select_list(EXPORT_QUERY_COLUMNS)}"  # noqa: S608  # identifiers validated
        f" FROM {qualified(database, MESSAGE_LOG_TABLE)} FINAL"
        " WHERE campaign_id = {campaign_id:String}"
        " ORDER BY message_id"
    )
    return sql, {"campaign_id": campaign_id}


def message_log_row(values: Sequence[object]) -> MessageLogRow:
    """A row of ``message_log_page_query`` as the domain's dataclass."""
    return MessageLogRow(*values)  # type: ignore[arg-type]  # typed by the query's columns
