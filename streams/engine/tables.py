"""Tables whose values are whole JSON documents, written with their own partition and
rebuilt after every recovery (``on_restored``); their changelog records go out through
an ``Outbox``. Why each piece is there: docs/exactness.md (steps 2, 4 and 6)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import faust
import orjson
from faust.types import TP

from streams.engine.disk_store import DiskStore
from streams.engine.gc_tuning import no_collection
from streams.engine.outbox import Outbox

log = logging.getLogger(__name__)

Restored = Callable[[Iterable[Any]], None]
DISK_URL = "disk:rocksdb"  # DiskStore (not in Faust's registry; a URL with a path is truthy)


class RebuildingTable(faust.Table):
    """A table that calls ``on_restored(values of the active partitions)`` after
    every recovery (step 6). Values carry their partition as ``"p"``.

    The worker stores each value as the JSON bytes of its changelog record
    (``put``) and decodes it when read (``peek``). Bytes are not tracked by the
    garbage collector: as nested dicts, the values of a few hundred thousand
    messages made every collection walk millions of objects, and the longer
    pauses showed in every record's latency. With ``lazy_restore`` the bulk
    restore (``streams/engine/restore.py``) stores the restored values as bytes too;
    Faust's own restore stores dicts. ``on_restored`` gets either. With
    ``store="disk:rocksdb"`` the values are in RocksDB instead (``DiskStore``), as bytes."""

    on_restored: Restored | None = None
    lazy_restore = False
    _pending: list[tuple[int, str, bytes]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._pending = []

    def _new_store_by_url(self, url: Any) -> Any:
        if not str(url).startswith(DISK_URL):
            return super()._new_store_by_url(url)
        return DiskStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                         key_serializer=self.key_serializer,
                         value_serializer=self.value_serializer,
                         value_type=self.value_type, loop=self.loop, options=self.options)

    def raw(self, key: str) -> Any:
        """The stored value as stored (bytes, or a dict from Faust's restore), or ``None``."""
        return self.data.data.get(key)

    def peek(self, key: str) -> Any:
        """The stored value, decoded (``None`` if absent), without Faust's per-read
        sensors."""
        value = self.data.data.get(key)
        return orjson.loads(value) if value.__class__ is bytes else value

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Store ``value`` (the JSON of a dict with the partition as ``"p"``, for the
        views and the restore); its changelog record goes out with ``pending_to``.

        Faust's ``table[key] = value`` takes the partition from the *current*
        event, which in a batch is the last one taken, not the key's own; a
        changelog record in the wrong partition would be restored by the wrong
        worker. Storing is synchronous, so a batch's table and view updates cannot
        interleave with a recovery's rebuild (step 6)."""
        store: Any = self.data
        if store.__class__ is DiskStore:
            store.put(partition, key, value)
        else:
            store.data[key] = value
            store._key_partition[key] = partition
        self._pending.append((partition, key, value))

    def pending_to(self, outbox: Outbox) -> None:
        """Queue the changelog records of the values ``put`` since the last call.

        They go to the caller's outbox (streams/engine/outbox.py, sent as record batches
        straight to the producer client), in the JSON Faust reads back on recovery
        (orjson, which Faust's own JSON codec uses too when installed): Faust's own
        path (``send_changelog``: a pending-message object, its serializer
        registry, its producer buffer, one send per record) cost more than the
        write itself. Faust flushes the producer before every commit (step 5), so
        they are as durable as Faust's own changelog writes (the memory store keeps
        no changelog offsets, so nothing else is skipped)."""
        pending, self._pending = self._pending, []
        topic = self.changelog_topic.get_topic_name()
        for partition, key, value in pending:
            outbox.add(topic, partition, orjson.dumps(key, option=orjson.OPT_NON_STR_KEYS),
                       value)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.on_restored is None:
            return
        active = {tp.partition for tp in active_tps}
        store: Any = self.data
        if isinstance(store, DiskStore):
            values: Iterable[Any] = store.values_of(active)
        else:
            of_key = store._key_partition
            values = [v for k, v in store.data.items() if v is not None and (
                of_key.get(k) if v.__class__ is bytes else v.get("p")) in active]
            log.info("table %s restored: %d keys in partitions %s", self.name, len(values),
                     sorted(active))
        with no_collection():
            self.on_restored(values)
            for _ in values:  # a DiskStore deletes other partitions' keys at the end
                pass
        if isinstance(store, DiskStore):
            log.info("table %s restored in partitions %s (on disk)", self.name, sorted(active))


def rebuilding_table(app: faust.App, name: str, on_restored: Restored,
                     lazy_restore: bool = False,
                     topic_configs: Mapping[str, Any] | None = None,
                     on_disk: bool = False) -> RebuildingTable:
    """A JSON-valued table (string keys) with a restore hook, registered with ``app``
    (``topic_configs``: extra configs of its changelog topic, e.g. min.insync.replicas;
    ``on_disk``: values in RocksDB under the worker's directory, ``DiskStore``)."""
    table = RebuildingTable(app, name=name, default=None, key_type=str,
                            beacon=app.tables.beacon, extra_topic_configs=topic_configs,
                            store=DISK_URL if on_disk else None)
    table.on_restored = on_restored
    table.lazy_restore = lazy_restore
    app.tables.add(table)
    return table
