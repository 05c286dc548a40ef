"""Fix 4 for faust-streaming 0.15.3: no commit past a record that was not processed.

1. Every seek of a partition starts a new read epoch (``ReadPositions``), and
   every fetched record is stamped, in the consumer thread, with its partition's
   epoch (no ``await`` between a seek and its epoch).
2. The inbox takes a record only if it carries the current epoch and follows the
   one before it (``streams/engine/inbox.py``); Faust's own last-offset filter is
   off for the inbox's topics (``ReadOffsets``).
3. The commit never passes a missing offset (``next_commit``): the acknowledged
   run must start at the committed offset, or where the partition was sought to;
   offsets proven absent count as done, and a missing head makes the partition be
   read again from there (``hole``).
What went wrong before: docs/faust-hardening.md#positions. Tests:
``tests/unit/engine/test_positions.py`` and ``tests/integration/test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage

log = logging.getLogger(__name__)

REPAIR_EVERY = 10.0  # seconds between two re-reads of one partition for a commit hole


class StampedMessage(ConsumerMessage):
    """A consumed record with the read epoch of its partition when it was fetched."""

    __slots__ = ("fetch_epoch",)
    fetch_epoch: int | None


class ReadPositions:
    """Per partition: its read epoch, where its latest seek put it, and where the
    latest seek to the committed offsets put it (the commit's base before the
    first commit)."""

    def __init__(self) -> None:
        self.epoch: dict[TP, int] = {}
        self.at: dict[TP, int] = {}
        self.start: dict[TP, int] = {}
        self.repaired: dict[TP, float] = {}
        self.on_reread: Callable[[str], None] = lambda reason: None  # set by the app

    def sought(self, tp: TP, position: int) -> None:
        """Record a seek; call in the consumer thread, right after the seek itself."""
        self.epoch[tp] = self.epoch.get(tp, 0) + 1
        self.at[tp] = position

    def stamp(self, records: Mapping[Any, list[Any]]) -> None:
        """Stamp fetched records with their partition's epoch (consumer thread)."""
        epoch = self.epoch
        for tp, batch in records.items():
            current = epoch.get(tp, 0)
            for record in batch:
                record.fetch_epoch = current

    def expected(self, tp: TP, last: tuple[int, int] | None, epoch: int) -> int | None:
        """The offset the next record of ``tp`` in ``epoch`` must have, given the
        last one taken (epoch, offset); ``None`` if unknown."""
        if last is not None and last[0] == epoch:
            return last[1] + 1
        return self.at.get(tp)

    def due_for_repair(self, tp: TP, now: float) -> bool:
        if now - self.repaired.get(tp, float("-inf")) < REPAIR_EVERY:
            return False
        self.repaired[tp] = now
        return True


class ReadOffsets(defaultdict[TP, 'int | None']):
    """Faust's per-partition "last offset delivered", which its fetch loop uses to
    drop records below it (and to guess gaps): always unknown for the topics an
    inbox reads, which keeps their records in order and exactly itself."""

    def __init__(self, owned: Iterable[str], existing: dict[TP, int | None]) -> None:
        super().__init__(lambda: None, existing)
        self.owned = frozenset(owned)

    def __getitem__(self, tp: TP) -> int | None:
        if tp.topic in self.owned:
            return None
        value: int | None = super().__getitem__(tp)
        return value


def positions_of(consumer: Any) -> ReadPositions:
    """The read positions of a Faust consumer (made on first use)."""
    positions: ReadPositions | None = consumer.__dict__.get("_read_positions")
    if positions is None:
        positions = consumer.__dict__["_read_positions"] = ReadPositions()
    return positions


def add_absent(consumer: Any, tp: TP, first: int, end: int) -> None:
    """Offsets ``first``..``end - 1`` of ``tp`` are not in the log: the commit
    counts them as done."""
    if end <= first or tp not in consumer.assignment():
        return
    gaps = consumer._gap[tp]
    gaps.addi(first, end)
    gaps.merge_overlaps()
    level = logging.DEBUG if end - first == 1 else logging.WARNING
    log.log(level, "%s[%d]: offsets %d..%d are not in the log (compaction, transaction "
            "markers or retention); the commit passes over them", tp.topic, tp.partition,
            first, end - 1)


async def reread(consumer: Any, tp: TP, offset: int) -> None:
    """Seek ``tp`` back to ``offset`` (a new read epoch), in the consumer thread;
    offsets below the log's start are gone (retention) and count as absent."""
    thread = consumer._thread
    positions = positions_of(consumer)

    async def seek() -> int | None:
        client = thread._ensure_consumer()
        if tp not in client.assignment():
            return None
        beginning: int = (await client.beginning_offsets([tp]))[tp]
        target = max(offset, beginning)
        client.seek(tp, target)  # no await between the seek and its epoch
        positions.sought(tp, target)
        return beginning

    beginning = await thread.call_thread(seek)
    if beginning is not None and beginning > offset:
        add_absent(consumer, tp, offset, beginning)


def hole(consumer: Any, tp: TP, base: int, first: int) -> None:
    """The commit of ``tp`` waits at ``base``: the lowest processed offset is
    ``first``. Read the partition again from ``base`` (rate-limited)."""
    positions = positions_of(consumer)
    if not positions.due_for_repair(tp, time.monotonic()):
        return
    positions.on_reread("hole")
    log.warning("%s[%d]: offsets %d..%d were never processed; the commit waits there "
                "and the partition is read again from %d", tp.topic, tp.partition, base,
                first - 1, base)
    task = asyncio.ensure_future(reread(consumer, tp, base))
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("re-reading a partition failed (tried again at the next commit): %r",
                    task.exception())


def next_commit(acked: list[int], base: int | None, absent: list[tuple[int, int]]
                ) -> tuple[list[int], int | None, int | None]:
    """Pure part of the commit decision for one partition.

    ``acked``: processed offsets (any order, repeats allowed); ``base``: the
    committed offset, or where the partition's reading started (``None`` if
    unknown); ``absent``: ``[first, end)`` ranges not in the log. Returns the
    offsets still to keep, the offset to commit (``None``: nothing new), and the
    lowest processed offset if the head ``base`` itself is missing (else None).
    """
    done = set(acked)
    for first, end in absent:
        done.update(range(first, end))
    kept = sorted(o for o in done if base is None or o >= base)
    if not kept:
        return [], None, None
    head = kept[0] if base is None else base
    if kept[0] != head:
        return kept, None, kept[0]
    n = 1
    while n < len(kept) and kept[n] == head + n:
        n += 1
    return kept[n:], head + n, None


def new_offset(self: Any, tp: TP) -> int | None:
    """Faust's ``Consumer._new_offset``, strict: see the module's docstring."""
    acked = self._acked[tp]
    if not acked:
        return None
    committed = self._committed_offset[tp]
    base = committed if committed is not None else positions_of(self).start.get(tp)
    gaps = self._gap[tp]
    spans = sorted(gaps.overlap(0, max(acked) + 1)) if gaps else []
    absent = [(span.begin, span.end) for span in spans]
    if spans:
        gaps.chop(0, max(end for _, end in absent))
    kept, offset, missing_from = next_commit(acked, base, absent)
    acked[:] = kept
    self._acked_index[tp] = set(kept)
    if missing_from is not None and base is not None:
        hole(self, tp, base, missing_from)
    return offset
