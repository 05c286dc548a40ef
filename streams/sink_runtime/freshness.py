"""How far a ClickHouse sink's rows trail Kafka, in records and in seconds, from what
the sink holds in memory every ``LAG_EVERY`` s (never per record, no request):

- records, per partition: the consumer's highwater minus the next offset the sink
  has to write (its last commit, or the committed offset it was assigned at);
- seconds, per sink: now minus the broker timestamp of the oldest record not written
  yet (the first of the batch being inserted, else of the partition's buffer; for a
  lagging partition with none fetched, the last record written stands in: it
  overstates, never hides, the delay). 0 when no partition lags.

For ``message_log`` the records are the worker's ``message-updates``, produced as it
aggregates them into its metrics: how far the message log trails the metrics. For
the events sink: how far ``events``, ``replies``, ``link_clicks`` trail the input
(alert and definitions: docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

LAG_EVERY = 5.0  # seconds between two updates of the lag gauges
ROWS_EVERY = 30.0  # seconds between two reads of the tables' row counts


class SinkLag(Generic[K]):
    """The write positions of one sink's partitions."""

    def __init__(self) -> None:
        self._next: dict[K, int] = {}  # the next offset to write
        self._last_written_ms: dict[K, int] = {}  # broker time of the last record written

    def assigned(self, committed: Mapping[K, int]) -> None:
        self._next.update(committed)  # the group's committed offsets: where it goes on

    def revoked(self, keys: Iterable[K]) -> None:
        for key in keys:
            self._next.pop(key, None)
            self._last_written_ms.pop(key, None)

    def wrote(self, key: K, next_offset: int, last_timestamp_ms: int) -> None:
        self._next[key] = next_offset
        self._last_written_ms[key] = last_timestamp_ms

    def measure(self, highwater: Callable[[K], int | None], oldest_unwritten_ms: Mapping[K, int],
                now_ms: int) -> tuple[dict[K, int], float]:
        """(records behind per partition that has a highwater, seconds behind).

        ``oldest_unwritten_ms``: the broker timestamp of the first record fetched but
        not written yet, for the partitions that have one."""
        records: dict[K, int] = {}
        seconds = 0.0
        for key, written in self._next.items():
            try:
                end = highwater(key)
            except Exception:  # noqa: S112 - not fetched yet, or revoked meanwhile
                continue
            if end is None:
                continue
            behind = records[key] = max(0, end - written)
            if not behind:
                continue
            since = oldest_unwritten_ms.get(key, self._last_written_ms.get(key))
            if since is not None:
                seconds = max(seconds, (now_ms - since) / 1000)
        return records, max(0.0, seconds)
