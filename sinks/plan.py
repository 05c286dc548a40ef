"""Insert plans: what one ClickHouse insert writes, decided without a server.

A plan names the table, the columns, the rows (plain tuples in column order)
and the deduplication token. Building it is a pure function, so the shape of
every insert is unit-tested; the stores only execute plans.

The token makes a replayed insert a no-op (reliability.md, "Idempotent sink"): the
sink derives it from the source offsets a batch covers, so a batch rebuilt after a
crash carries the same token and the engine drops it. ``None`` means "no idempotence
claimed": the stores send a fresh random token, so every insert is written.

Every planned row is stored as one row (``optimize_on_insert = 0``): repeats collapse
only on merge or under ``FINAL``. Why a random token rather than none, and what the
one-row rule lets the tests prove: docs/sinks.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import orjson

from projections.events import EVENT_TYPES, INPUT_FIELDS, Event, LinkClicked, ReplyReceived
from projections.message_log import MESSAGE_LOG_COLUMNS, MessageLogRow

MESSAGE_LOG_TABLE = "message_log"
REPLIES_TABLE = "replies"
LINK_CLICKS_TABLE = "link_clicks"
EVENTS_TABLE = "events"

# Columns the sink writes (``inserted_at`` is the engine's DEFAULT).
REPLY_COLUMNS: tuple[str, ...] = (
    "event_id", "message_id", "contact_id", "phone", "body", "replied_at"
)
LINK_CLICK_COLUMNS: tuple[str, ...] = (
    "event_id", "message_id", "link_id", "clicked_at", "user_agent"
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "message_id", "event_type", "occurred_at", "payload",
    "source_topic", "source_partition", "source_offset",
)

# Kafka topic names use [A-Za-z0-9._-]; ':' '|' '/' '=' '+' leave room for
# composite tokens (several partitions joined). No quote, backslash or space, so
# a token is safe inside a SQL string literal even before escaping.
_TOKEN_RE = re.compile(r"[A-Za-z0-9._:|/=+\-]{1,8192}")

_row_values = attrgetter(*MESSAGE_LOG_COLUMNS)


@dataclass(frozen=True, slots=True)
class InsertPlan:
    """One insert: ``rows`` are tuples in ``columns`` order (timestamps in epoch ms).

    ``sources``, when known, gives for each row the input record it came from as
    ``(topic, partition, offset)``: a row the store refuses is dead-lettered as that
    record. Not part of the insert (and not compared)."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]
    dedup_token: str | None
    sources: tuple[tuple[str, int, int], ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.dedup_token is not None and not _TOKEN_RE.fullmatch(self.dedup_token):
            raise ValueError(f"invalid dedup token {self.dedup_token[:80]!r}")


def dedup_token(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    """``topic-partition-first-last``: the same batch of offsets always gets the same token.

    Unambiguous although topics may contain ``-``: the three numeric fields are
    read from the right.
    """
    if not topic:
        raise ValueError("topic must not be empty")
    if partition < 0 or first_offset < 0:
        raise ValueError("partition and offsets must be >= 0")
    if last_offset < first_offset:
        raise ValueError(f"last_offset {last_offset} < first_offset {first_offset}")
    token = f"{topic}-{partition}-{first_offset}-{last_offset}"
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(f"topic {topic!r} gives an invalid dedup token")
    return token


def plan_message_log_insert(
    rows: Sequence[MessageLogRow], token: str | None,
    sources: Sequence[tuple[str, int, int]] | None = None,
) -> InsertPlan:
    """The insert of ``rows`` into the message log, in ``MESSAGE_LOG_COLUMNS`` order
    (``sources``: each row's input record, see ``InsertPlan``)."""
    return InsertPlan(
        table=MESSAGE_LOG_TABLE,
        columns=MESSAGE_LOG_COLUMNS,
        rows=[_row_values(row) for row in rows],
        dedup_token=token,
        sources=tuple(sources) if sources is not None else None,
    )


@dataclass(frozen=True, slots=True)
class SourcedEvent:
    """An input event and the input record that carried it."""

    topic: str
    partition: int
    offset: int
    event: Event


def event_payload(event: Event) -> str:
    """The event as one JSON object: its input fields (enums by value) and its ``type``;
    a verdict judged at decoding (a click's ``automated_agent``) is not input."""
    # Events are flat: a shallow copy is enough (``asdict`` deep-copies every field).
    fields = {name: getattr(event, name) for name in INPUT_FIELDS[type(event)]}
    fields["type"] = EVENT_TYPES[type(event)]
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()


def plan_event_inserts(events: Sequence[SourcedEvent], token: str | None) -> list[InsertPlan]:
    """The inserts of one batch of input records: every record into
    ``events`` (duplicates too: one row per record), its replies into ``replies``
    and its clicks into ``link_clicks``. Tables without rows get no plan.

    One token for the three: each table keeps its own deduplication log.
    """
    raw: list[tuple[object, ...]] = [
        (s.event.event_id, s.event.message_id, EVENT_TYPES[type(s.event)],
         s.event.occurred_at, event_payload(s.event), s.topic, s.partition, s.offset)
        for s in events
    ]
    replies: list[tuple[object, ...]] = [
        (e.event_id, e.message_id, e.contact_id, e.phone, e.body, e.occurred_at)
        for s in events if isinstance(e := s.event, ReplyReceived)
    ]
    clicks: list[tuple[object, ...]] = [
        (e.event_id, e.message_id, e.link_id, e.occurred_at, e.user_agent)
        for s in events if isinstance(e := s.event, LinkClicked)
    ]
    plans = [
        InsertPlan(EVENTS_TABLE, EVENT_COLUMNS, raw, token,
                   tuple((s.topic, s.partition, s.offset) for s in events)),
        InsertPlan(REPLIES_TABLE, REPLY_COLUMNS, replies, token,
                   tuple((s.topic, s.partition, s.offset) for s in events
                         if isinstance(s.event, ReplyReceived))),
        InsertPlan(LINK_CLICKS_TABLE, LINK_CLICK_COLUMNS, clicks, token,
                   tuple((s.topic, s.partition, s.offset) for s in events
                         if isinstance(s.event, LinkClicked))),
    ]
    return [plan for plan in plans if plan.rows]
