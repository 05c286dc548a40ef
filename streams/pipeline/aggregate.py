"""Step 4 (pipeline/__init__.py): the newest hand-off per message wins; campaign, variant,
contact and window counts are views of the ``contributions`` table, moved by new - old."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from projections.metrics import Change, ContributionFields
from streams.codecs import state as codec
from streams.pipeline.fold import Record
from streams.pipeline.views import CampaignViews

log = logging.getLogger(__name__)


class ContributionTable(Protocol):
    def peek(self, key: str) -> Any: ...

    def put(self, partition: int, key: str, value: bytes) -> None: ...


@dataclass(slots=True)
class AggregateEffects:
    dead_letters: list[tuple[Record, str]] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)  # seconds from hand-off to here
    applied: int = 0  # messages whose newer version was written
    errors: int = 0


class AggregateStage:
    """Applies batches of ``message-updates`` records to the ``contributions`` table and
    the views; a version not newer than the table's is skipped (a replay)."""

    def __init__(self, table: ContributionTable, views: CampaignViews) -> None:
        self.table = table
        self.views = views

    def handle(self, records: Iterable[Record], now_s: float) -> AggregateEffects:
        out = AggregateEffects()
        newest: dict[str, tuple[int, Any, ContributionFields | None, int]] = {}
        fields_of = codec.contribution_fields_of
        for record in records:
            out.ages.append(max(now_s - record.timestamp, 0.0))
            try:
                message_id, version, contribution = codec.decode_update_head(
                    record.value or b"")
                fields = None if contribution is None else fields_of(contribution)
            except Exception:
                out.errors += 1
                log.exception("undecodable update at %s[%s]@%s", record.topic,
                              record.partition, record.offset)
                out.dead_letters.append((record, "processing error in aggregate_campaigns"))
                continue
            seen = newest.get(message_id)
            if seen is None or seen[0] < version:
                newest[message_id] = (version, contribution, fields, record.partition)
        # Step 4: per message, only a version newer than the table's moves anything
        changes: list[Change] = []
        for key, (version, contribution, fields, partition) in newest.items():
            previous = self.table.peek(key)
            if previous is not None and previous["version"] >= version:
                continue
            old = previous["contribution"] if previous else None
            self.table.put(partition, key, codec.dumps(
                {"version": version, "contribution": contribution, "p": partition}))
            out.applied += 1
            if old != contribution:
                changes.append((None if old is None else fields_of(old), fields))
        self.views.move_all(changes)
        return out
