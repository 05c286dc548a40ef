"""``CA_TABLE_STORE=rocksdb``: a ``RebuildingTable`` over ``DiskStore`` stores, restores and
rebuilds as the memory store does (the restore against a real broker, the crash and
exactness tests: tests/integration, run with either store)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP

from streams.codecs.state import dumps
from streams.engine.disk_store import DiskStore
from streams.engine.restore import apply_newest
from streams.engine.tables import RebuildingTable, rebuilding_table


def _table(datadir: Path, on_disk: bool, seen: list[list[Any]]) -> RebuildingTable:
    app = faust.App("disk-store-test", broker="kafka://127.0.0.1:1", store="memory://",
                    datadir=str(datadir))

    def restored(values: Iterable[Any]) -> None:
        seen.append(list(values))

    return rebuilding_table(app, "messages", restored, lazy_restore=True, on_disk=on_disk)


def _value(partition: int, v: int) -> bytes:
    return dumps({"p": partition, "v": v})


def test_put_restore_and_rebuild_as_the_memory_store(tmp_path: Path) -> None:
    seen: list[list[Any]] = []
    table = _table(tmp_path, True, seen)
    store: Any = table.data
    assert isinstance(store, DiskStore) and store.path.is_relative_to(tmp_path)
    table.put(0, "m1", _value(0, 1))
    table.put(1, "m2", _value(1, 1))
    assert table.raw("m1") == _value(0, 1) and table.peek("m2") == {"p": 1, "v": 1}
    assert table.raw("nothing") is None and table.peek("nothing") is None
    assert store._key_partition == {}  # nothing per key in memory
    # the bulk restore's newest values (changelog keys are JSON), a null deletes
    apply_newest(store, 2, {dumps("m3"): _value(2, 3), dumps("m1"): None})
    # Faust's own record-by-record restore
    event = SimpleNamespace(key="m4", message=SimpleNamespace(value=_value(0, 4), partition=0))
    store.apply_changelog_batch([event], to_key=lambda k: k,  # type: ignore[list-item]
                                to_value=lambda v: v)
    assert table.raw("m1") is None and table.peek("m3") == {"p": 2, "v": 3}
    topic = "disk-store-test-messages-changelog"
    asyncio.run(table.on_recovery_completed({TP(topic, 0), TP(topic, 2)}, set()))
    assert sorted(seen[0]) == sorted([_value(2, 3), _value(0, 4)])
    assert table.raw("m2") is None  # partition 1 is no longer this worker's
    assert sorted(store.rocks) == ["m3", "m4"]
    asyncio.run(store.on_stop())


def test_a_restarted_worker_never_trusts_the_files(tmp_path: Path) -> None:
    """A value is stored before its changelog record is flushed: after a crash the
    files may hold what the changelog never got, so a new store starts empty."""
    first = _table(tmp_path, True, [])
    first.put(0, "m1", _value(0, 1))
    store: Any = first.data
    asyncio.run(store.on_stop())
    assert any(store.path.iterdir())  # the files are there ...
    again = _table(tmp_path, True, [])
    assert again.raw("m1") is None  # ... and not read
    store = again.data
    asyncio.run(store.on_stop())


def test_the_memory_store_is_still_the_other_choice(tmp_path: Path) -> None:
    """The negative control: without ``on_disk`` the values stay in the dict."""
    table = _table(tmp_path, False, [])
    table.put(0, "m1", _value(0, 1))
    store: Any = table.data
    assert not isinstance(store, DiskStore)
    assert store.data == {"m1": _value(0, 1)} and store._key_partition == {"m1": 0}
