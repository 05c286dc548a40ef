"""``DiskStore``: a ``RebuildingTable``'s values in RocksDB (rocksdict) under the worker's
directory instead of a dict (``CA_TABLE_STORE=rocksdb``), so the worker's memory does
not grow with its messages.

It keeps the memory store's semantics, not Faust's RocksDB store's: it starts empty (a
worker wipes its table files when it opens them) and is filled from the changelog by the
same restore (streams/engine/restore.py), with no persisted offset. A value is stored
before its changelog record is flushed and its input committed (docs/exactness.md, step
5), so after a crash the files can hold a state the changelog never got; a restore that
trusted them would take an event replayed after the crash for a duplicate. Faust's own
``rocksdb://`` store keeps such files and a persisted offset, and picks a message's
partition from the current event (ours are batches): not used. Why a store of our own
and how it was measured: docs/performance.md (load).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import rocksdict
from faust.stores.memory import Store as MemoryStore
from faust.types import TP, EventT

# RocksDB's memory, per table: memtables up to WRITE_BUFFERS x WRITE_BUFFER_BYTES, and
# a block cache of CACHE_BYTES (index and filter blocks in it too, so they are bounded).
WRITE_BUFFER_BYTES = 8 * 1024 * 1024
WRITE_BUFFERS = 2
CACHE_BYTES = 16 * 1024 * 1024
BLOOM_BITS = 10
# A stored value is its partition (2 bytes, big-endian) and then the JSON bytes of the
# changelog record: a recovery sorts values by partition without decoding them.
PARTITION_BYTES = 2


def _options() -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(WRITE_BUFFERS)
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(rocksdict.Cache(CACHE_BYTES))
    table.set_cache_index_and_filter_blocks(True)
    table.set_bloom_filter(BLOOM_BITS, False)
    options.set_block_based_table_factory(table)
    return options


class RocksValues(MutableMapping[str, bytes]):
    """``str`` keys to JSON bytes (a dict from Faust's restore is encoded), over one
    RocksDB in raw mode; the partition prefix stays inside."""

    def __init__(self, db: rocksdict.Rdict) -> None:
        self.db: Any = db  # raw mode: bytes in and out (the stubs type the other mode)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.db.get(key.encode())
        return default if value is None else value[PARTITION_BYTES:]

    def __getitem__(self, key: str) -> bytes:
        value = self.db.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value[PARTITION_BYTES:]

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.db.put(key.encode(), partition.to_bytes(PARTITION_BYTES, "big") + value)

    def __setitem__(self, key: str, value: bytes) -> None:
        raise TypeError("a RocksValues value needs its partition: use put()")

    def __delitem__(self, key: str) -> None:
        if self.db.get(key.encode()) is None:
            raise KeyError(key)
        self.db.delete(key.encode())

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in self.db.keys())  # noqa: SIM118 (an Rdict)

    def __len__(self) -> int:
        return sum(1 for _ in self.db.keys())  # noqa: SIM118


class DiskStore(MemoryStore):
    """The memory store's interface and semantics over ``RocksValues``; the table's
    files are ``<tabledir>/<table>.rocksdb`` (under ``CA_DATA_DIR/worker-<port>``)."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.path = Path(app.conf.tabledir) / f"{self.table_name}.rocksdb"
        shutil.rmtree(self.path, ignore_errors=True)  # never trusted: see the module doc
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = rocksdict.Rdict(str(self.path), options=_options())
        writes: Any = rocksdict.WriteOptions()  # disable_wal is an attribute (stubs: a method)
        writes.disable_wal = True  # the files are wiped at every start: nothing to replay
        db.set_write_options(writes)
        self.rocks = RocksValues(db)
        self.data = self.rocks

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.rocks.put(partition, key, value)

    def apply_newest(self, partition: int, newest: Mapping[bytes, bytes | None]) -> None:
        """Store a bulk restore's newest value per changelog key (``None``: delete)."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        prefix = partition.to_bytes(PARTITION_BYTES, "big")
        for raw_key, value in newest.items():
            key = orjson.loads(raw_key).encode()
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, prefix + value)
        self.rocks.db.write(batch)

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        """Faust's record-by-record restore: the records' own bytes, as ``put`` stores."""
        writes = rocksdict.WriteBatch(raw_mode=True)
        for event in batch:
            message = event.message
            key = str(to_key(event.key)).encode()
            if message.value is None:
                writes.delete(key)
            else:
                writes.put(key, message.partition.to_bytes(PARTITION_BYTES, "big")
                           + message.value)
        self.rocks.db.write(writes)

    def values_of(self, partitions: set[int]) -> Iterator[bytes]:
        """The values of ``partitions``, one at a time (a recovery's million values are
        never all in memory at once); once read to the end, the other partitions'
        keys are deleted (the memory store drops them when a recovery completes)."""
        gone: list[bytes] = []
        for key, value in self.rocks.db.items():
            if int.from_bytes(value[:PARTITION_BYTES], "big") in partitions:
                yield value[PARTITION_BYTES:]
            else:
                gone.append(key)
        for key in gone:
            self.rocks.db.delete(key)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Nothing here: ``RebuildingTable`` reads ``values_of`` the active partitions."""

    async def on_stop(self) -> None:
        self.rocks.db.close()
