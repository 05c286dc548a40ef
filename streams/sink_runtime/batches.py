"""Per-partition batches of the ClickHouse sinks, and the batch intent kept with the offset.

Pure (no Kafka, no engine), so the batching rules are unit-tested on their own:

- a partition's records are buffered until ``max_rows`` are there or the oldest
  has waited ``max_seconds``; a batch is at most ``max_rows`` records;
- a partition whose committed offset carries an intent (``intent_metadata(first,
  last)``, committed before the insert) first rebuilds exactly the batch it names,
  whatever size or age it has, so a replay carries the same deduplication token;
- a revoked partition's buffer is dropped (its new owner reads it again);
- memory is bounded: fewer than ``(partitions + 1) * max_rows`` records are held.

The commit protocol the intent serves, and why it writes each record once: docs/sinks.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

_INTENT_RE = re.compile(r"ca-sink-batch:(\d+)-(\d+)")


def intent_metadata(first: int, last: int) -> str:
    if not 0 <= first <= last:
        raise ValueError(f"bad batch offsets {first}..{last}")
    return f"ca-sink-batch:{first}-{last}"


def parse_intent(metadata: str | None) -> tuple[int, int] | None:
    """``(first, last)`` of an intent written by ``intent_metadata``; None otherwise."""
    match = _INTENT_RE.fullmatch(metadata or "")
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    return (first, last) if first <= last else None


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=HasOffset)
K = TypeVar("K", bound=Hashable)


@dataclass
class _Buffer(Generic[R]):
    started: float
    records: list[R] = field(default_factory=list)
    replay_until: int | None = None


class PartitionBatches(Generic[K, R]):
    """Buffers records per partition key ``K`` and hands out the batches that are due."""

    def __init__(
        self, max_rows: int, max_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_rows < 1 or max_seconds <= 0:
            raise ValueError("max_rows must be >= 1 and max_seconds > 0")
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        self._clock = clock
        self._buffers: dict[K, _Buffer[R]] = {}

    def _buffer(self, key: K) -> _Buffer[R]:
        if key not in self._buffers:
            self._buffers[key] = _Buffer(self._clock())
        return self._buffers[key]

    def replay(self, key: K, last_offset: int) -> None:
        """The next batch of ``key`` ends at ``last_offset`` exactly (an intent found)."""
        self._buffer(key).replay_until = last_offset

    def add(self, key: K, records: Sequence[R]) -> None:
        if records:
            buffer = self._buffer(key)
            if not buffer.records:
                buffer.started = self._clock()
            buffer.records.extend(records)

    def drop(self, keys: Iterable[K]) -> None:
        for key in keys:
            self._buffers.pop(key, None)

    def clear(self) -> None:
        self._buffers.clear()

    def buffered(self) -> int:
        return sum(len(b.records) for b in self._buffers.values())

    def heads(self) -> dict[K, R]:
        """The first (oldest) buffered record of each partition that has one."""
        return {key: b.records[0] for key, b in self._buffers.items() if b.records}

    def seconds_to_next(self) -> float:
        """How long until the oldest buffered record is due (``max_seconds`` if none)."""
        now = self._clock()
        waits = [b.started + self._max_seconds - now for b in self._buffers.values() if b.records]
        return max(0.0, min(waits, default=self._max_seconds))

    def due(self) -> dict[K, list[R]]:
        """Take out the batches that are due: at most one per partition."""
        now = self._clock()
        out: dict[K, list[R]] = {}
        for key, buffer in self._buffers.items():
            if not buffer.records:
                continue
            if buffer.replay_until is not None:
                size = sum(1 for r in buffer.records if r.offset <= buffer.replay_until)
                if buffer.records[-1].offset < buffer.replay_until:
                    continue  # the rebuilt batch is not complete yet
                buffer.replay_until = None
            elif len(buffer.records) >= self._max_rows or now - buffer.started >= self._max_seconds:
                size = self._max_rows
            else:
                continue
            if size == 0:
                continue
            out[key] = buffer.records[:size]
            del buffer.records[:size]  # what is left is as old: due at the next call
        return out
