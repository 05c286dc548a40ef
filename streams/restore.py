"""Bulk restore of the memory tables: read each changelog partition in large fetches
and apply only the newest record per key, before Faust's own recovery reads what is left.

Faust restores a memory table one changelog record at a time (an ``asyncio.wait_for``
per record, a debug message formatted per record, its buffers): for a million
messages of state that took ~10 minutes (docs/performance.md, run G). Here, at the
point where Faust has the highwater of every active changelog partition and its start
offset (``Recovery._build_offsets``), each partition of a ``RebuildingTable`` is read
from that start to its highwater with a plain aiokafka consumer (no group, nothing
committed; streams/changelog_reader.py), the lazily restored tables' partitions by a
child process on another core while the worker reads the others. A fetch's records
are reduced to the newest value per key, decoded once (or kept as bytes) and stored,
and Faust's start offset for the partition is moved to the last offset applied.
Faust then seeks there, finds nothing (or only what arrived since) left to read, and
its recovery completes as before: ``on_recovery_completed`` rebuilds the views from
the restored table (streams/recovery.py, step 6).

Why this restores the same state as Faust's own reading: a changelog value is the
key's whole state (never a delta), so applying the newest record of each key in
offset order leaves each key as the last record left it, and a deletion (``null``) as
absent, exactly as applying every record would. The start offset is moved only past
records already applied, so whatever the bulk read did not reach (a time limit, a
rebalance cancelling it) Faust reads itself, from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, MutableMapping
from typing import Any

from aiokafka import TopicPartition
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.changelog_reader import Fetched, newest_per_key, read_in_child, read_newest
from streams.serde import loads

__all__ = ["BulkRestore", "apply_newest", "install", "newest_per_key", "no_collection"]

log = logging.getLogger(__name__)

def apply_newest(store: Any, partition: int, newest: Mapping[bytes, bytes | None],
                 decode: bool = True) -> None:
    """Store ``newest`` values in a Faust memory store (``None``: delete), decoded or
    (``decode=False``) as their JSON bytes, remembering each key's partition as
    Faust's own restore does. (Each key comes once in ``newest``, so the order of
    the writes does not matter.)"""
    data: MutableMapping[Any, Any] = store.data
    key_partition: MutableMapping[Any, int] = store._key_partition
    values = ({loads(k): loads(v) for k, v in newest.items() if v is not None} if decode
              else {loads(k): v for k, v in newest.items() if v is not None})
    data.update(values)
    key_partition.update(dict.fromkeys(values, partition))
    if len(values) < len(newest):
        for raw_key in [k for k, v in newest.items() if v is None]:
            key = loads(raw_key)
            data.pop(key, None)
            key_partition.pop(key, None)


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """No cyclic garbage collection inside; afterwards everything that exists moves to
    the permanent generation.

    A restore builds a million table values (and a rebuild as many view entries);
    the collector would walk them again and again while they are built (half the
    time of a restore) and at every full collection afterwards. Table values and
    views are plain data, never cycles, and reference counting still frees them."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        gc.freeze()


class BulkRestore:
    """Reads changelog partitions for ``Recovery`` (installed on an app by ``install``).

    ``on_restored(records read per table, seconds)`` reports each bulk read (for
    metrics). With ``reader_process``, the partitions of tables restored lazily (kept
    as their changelog bytes: the ``messages`` table) are read by a child process
    while this one reads the others (streams/changelog_reader.py)."""

    def __init__(self, bootstrap: str, time_limit: float,
                 on_restored: Callable[[Mapping[str, int], float], None] | None = None,
                 reader_process: bool = True) -> None:
        self.bootstrap = bootstrap
        self.time_limit = time_limit
        self.on_restored = on_restored
        self.reader_process = reader_process

    async def load(self, tables: Mapping[TP, Any], start: MutableMapping[TP, int],
                   highwaters: Mapping[TP, int]) -> None:
        """Read every partition in ``tables`` (changelog TP -> table) from ``start[tp] + 1``
        up to its highwater (the last offset), applying as it goes and moving
        ``start[tp]`` to the last offset applied."""
        todo = {tp: table for tp, table in tables.items()
                if highwaters.get(tp, -1) > start.get(tp, -1)}
        if not todo:
            return
        began = time.monotonic()
        deadline = began + self.time_limit
        read: dict[str, int] = {}
        applied: dict[str, int] = {}
        in_child = {tp: table for tp, table in todo.items()
                    if self.reader_process and getattr(table, "lazy_restore", False)}
        here = {tp: table for tp, table in todo.items() if tp not in in_child}
        with no_collection():
            # a failure (or a rebalance cancelling the restore) stops both readers
            async with asyncio.TaskGroup() as readers:
                for reader, part in ((read_in_child, in_child), (read_newest, here)):
                    if part:
                        readers.create_task(self._read(reader, part, start, highwaters,
                                                       deadline, read, applied))
        seconds = time.monotonic() - began
        for name, n in read.items():
            log.info("bulk restore of table %s: %d changelog records, %d key writes, %.1f s",
                     name, n, applied[name], seconds)
        if self.on_restored is not None:
            self.on_restored(read, seconds)

    async def _read(self, reader: Callable[..., AsyncGenerator[Fetched, None]],
                    todo: Mapping[TP, Any],
                    start: MutableMapping[TP, int], highwaters: Mapping[TP, int],
                    deadline: float, read: dict[str, int], applied: dict[str, int]) -> None:
        by_kafka = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
        ranges = {ktp: (max(start.get(tp, -1), -1) + 1, highwaters[tp])
                  for ktp, tp in by_kafka.items()}
        done: set[TP] = set()
        # closed at once when cancelled: stops its consumer, or kills its child
        async with contextlib.aclosing(reader(self.bootstrap, ranges, deadline)) as fetches:
            async for ktp, last, count, newest in fetches:
                tp = by_kafka[ktp]
                table = todo[tp]
                apply_newest(table.data, tp.partition, newest,
                             decode=not getattr(table, "lazy_restore", False))
                start[tp] = last
                read[table.name] = read.get(table.name, 0) + count
                applied[table.name] = applied.get(table.name, 0) + len(newest)
                if last >= highwaters[tp]:
                    done.add(tp)
        if len(done) < len(todo):
            log.warning("bulk restore stopped after %.0f s with %d partition(s) unread "
                        "to their end; Faust reads the rest",
                        time.monotonic() - (deadline - self.time_limit), len(todo) - len(done))


_original_build_offsets = Recovery._build_offsets
_INSTALLED = False


async def _build_offsets_then_bulk_restore(self: Any, consumer: Any, tps: set[TP],
                                           destination: Any, title: str) -> None:
    await _original_build_offsets(self, consumer, tps, destination, title)
    bulk: BulkRestore | None = getattr(self.app, "bulk_restore", None)
    if bulk is None or title != "active":
        return
    from streams.recovery import RebuildingTable

    tables = {tp: self.tp_to_table[tp] for tp in tps
              if isinstance(self.tp_to_table.get(tp), RebuildingTable)}
    await bulk.load(tables, destination, self.active_highwaters)


def install(app: Any, bulk: BulkRestore) -> None:
    """Bulk-restore ``app``'s ``RebuildingTable`` partitions when it recovers."""
    global _INSTALLED
    if not _INSTALLED:
        Recovery._build_offsets = _build_offsets_then_bulk_restore  # type: ignore[method-assign]
        _INSTALLED = True
    app.bulk_restore = bulk
