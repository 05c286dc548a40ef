"""Bulk restore of the tables (in memory or a ``DiskStore``): read each changelog
partition in large fetches and apply only the newest record per key, before Faust's
own recovery reads the rest.

At ``Recovery._build_offsets`` (Faust knows each active changelog partition's
start offset and highwater), each ``RebuildingTable`` partition is read with a
plain aiokafka consumer (no group, nothing committed), reduced to the newest value
per key and stored, and Faust's start offset is moved past what was applied; Faust
then reads whatever is left. The same state as Faust's record-by-record reading,
since a changelog value is a key's whole state, never a delta. Why (Faust took
~10 minutes for a million messages): docs/faust-hardening.md#restore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables.recovery import Recovery
from faust.types import TP
from orjson import loads

from streams.engine.disk_store import DiskStore
from streams.engine.gc_tuning import no_collection
from streams.engine.tables import RebuildingTable

log = logging.getLogger(__name__)

FETCH_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_BYTES = 16 * 1024 * 1024


def newest_per_key(records: Iterable[Any]) -> dict[bytes, bytes | None]:
    """The value of each key's last record (records in offset order)."""
    return {r.key: r.value for r in records}


def apply_newest(store: Any, partition: int, newest: Mapping[bytes, bytes | None],
                 decode: bool = True) -> None:
    """Store ``newest`` values in a Faust memory store (``None``: delete), decoded or
    (``decode=False``) as their JSON bytes, remembering each key's partition as
    Faust's own restore does. (Each key comes once in ``newest``, so the order of
    the writes does not matter.) A ``DiskStore`` stores them as bytes itself."""
    if isinstance(store, DiskStore):
        store.apply_newest(partition, newest)
        return
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


class BulkRestore:
    """Reads changelog partitions for ``Recovery`` (installed on an app by ``install``).

    ``on_restored(records read per table, seconds)`` reports each bulk read (for
    metrics)."""

    def __init__(self, bootstrap: str, time_limit: float,
                 on_restored: Callable[[Mapping[str, int], float], None] | None = None,
                 client_options: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.client_options = dict(client_options or {})  # security (kafka_security.py)
        self.time_limit = time_limit
        self.on_restored = on_restored

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
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_bytes=FETCH_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES, **self.client_options)
        read: dict[str, int] = {}
        applied: dict[str, int] = {}
        with no_collection():
            await self._read(consumer, todo, start, highwaters, deadline, read, applied)
        seconds = time.monotonic() - began
        for name, n in read.items():
            log.info("bulk restore of table %s: %d changelog records, %d key writes, %.1f s",
                     name, n, applied[name], seconds)
        if self.on_restored is not None:
            self.on_restored(read, seconds)

    async def _read(self, consumer: AIOKafkaConsumer, todo: Mapping[TP, Any],
                    start: MutableMapping[TP, int], highwaters: Mapping[TP, int],
                    deadline: float, read: dict[str, int], applied: dict[str, int]) -> None:
        await consumer.start()
        try:
            by_kafka = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
            consumer.assign(list(by_kafka))
            for ktp, tp in by_kafka.items():
                consumer.seek(ktp, max(start.get(tp, -1), -1) + 1)
            remaining = set(by_kafka)
            while remaining and time.monotonic() < deadline:
                fetched = await consumer.getmany(*remaining, timeout_ms=500)
                for ktp, records in fetched.items():
                    tp = by_kafka[ktp]
                    if not records:
                        continue
                    table = todo[tp]
                    newest = newest_per_key(records)
                    apply_newest(table.data, tp.partition, newest,
                                 decode=not getattr(table, "lazy_restore", False))
                    start[tp] = records[-1].offset
                    read[table.name] = read.get(table.name, 0) + len(records)
                    applied[table.name] = applied.get(table.name, 0) + len(newest)
                for ktp in list(remaining):
                    tp = by_kafka[ktp]
                    if start.get(tp, -1) >= highwaters[tp] or \
                            await consumer.position(ktp) > highwaters[tp]:
                        remaining.discard(ktp)
            if remaining:
                log.warning("bulk restore stopped after %.0f s with %d partition(s) unread "
                            "to their end; Faust reads the rest", self.time_limit,
                            len(remaining))
        finally:
            await consumer.stop()


_original_build_offsets = Recovery._build_offsets
_INSTALLED = False


async def _build_offsets_then_bulk_restore(self: Any, consumer: Any, tps: set[TP],
                                           destination: Any, title: str) -> None:
    await _original_build_offsets(self, consumer, tps, destination, title)
    bulk: BulkRestore | None = getattr(self.app, "bulk_restore", None)
    if bulk is None or title != "active":
        return
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
