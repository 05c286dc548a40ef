"""Table TTLs from the settings, applied at start-up after the migrations.

The TTL is not in the migration files: a migration is applied once and never
edited, while retention is a setting (``CA_CLICKHOUSE_TTL_DAYS`` for the message
log, replies and link clicks, default 0 = kept forever; ``CA_CLICKHOUSE_EVENTS_TTL_DAYS``
for the raw audit events, default 90). Every start-up reads each table's current
TTL from ``system.tables`` and alters only the tables whose TTL differs, so this
is idempotent and a changed setting takes effect on the next start.

``materialize_ttl_after_modify = 0``: changing the TTL does not rewrite existing
parts at once; they expire on their next merge (the tables are partitioned by
month with ``ttl_only_drop_parts``, so whole expired months are dropped cheaply).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sinks.errors import StoreConfigurationError
from sinks.migrations import MigrationTarget
from sinks.plan import EVENTS_TABLE, LINK_CLICKS_TABLE, MESSAGE_LOG_TABLE, REPLIES_TABLE
from sinks.sql import qualified, string_literal, validate_identifier

# The event-time column each table expires by.
TTL_COLUMNS: dict[str, str] = {
    MESSAGE_LOG_TABLE: "sent_at",
    REPLIES_TABLE: "replied_at",
    LINK_CLICKS_TABLE: "clicked_at",
    EVENTS_TABLE: "occurred_at",
}

_TTL_DAYS_RE = re.compile(r"\sTTL\s.*?toIntervalDay\((\d+)\)")


@dataclass(frozen=True, slots=True)
class Retention:
    """Days rows are kept after their event time; 0 keeps them forever."""

    days: int = 0
    events_days: int = 90

    def __post_init__(self) -> None:
        if self.days < 0 or self.events_days < 0:
            raise StoreConfigurationError("retention days must be >= 0 (0 = keep forever)")

    def days_for(self, table: str) -> int:
        return self.events_days if table == EVENTS_TABLE else self.days


def current_ttl_days(engine_full: str) -> int | None:
    """The TTL in days of a table's ``engine_full``; None without a TTL.

    A TTL this module did not write (not whole days) reads as 0 days, so it is replaced.
    """
    if " TTL " not in engine_full:
        return None
    match = _TTL_DAYS_RE.search(engine_full)
    return int(match.group(1)) if match else 0


def retention_statements(
    database: str, engines: Mapping[str, str], retention: Retention
) -> list[str]:
    """The ALTERs that bring ``engines`` (table name -> ``engine_full``) to ``retention``."""
    statements: list[str] = []
    for table, column in TTL_COLUMNS.items():
        if table not in engines:
            continue
        want = retention.days_for(table)
        have = current_ttl_days(engines[table])
        name = qualified(database, table)
        if want == 0 and have is not None:
            statements.append(f"ALTER TABLE {name} REMOVE TTL")
        elif want > 0 and have != want:
            statements.append(
                f"ALTER TABLE {name} MODIFY TTL toDateTime({column}) + INTERVAL {int(want)} DAY"
                " SETTINGS materialize_ttl_after_modify = 0"
            )
    return statements


def apply_retention(target: MigrationTarget, database: str, retention: Retention) -> list[str]:
    """Alter the tables whose TTL differs from ``retention``; returns the statements run."""
    literal = string_literal(validate_identifier(database))
    engines = {
        str(name): str(engine)
        for name, engine in target.select_rows(
            f"SELECT name, engine_full FROM system.tables WHERE database = {literal}"  # noqa: S608
        )
    }
    statements = retention_statements(database, engines, retention)
    for statement in statements:
        target.execute(statement)
    return statements
