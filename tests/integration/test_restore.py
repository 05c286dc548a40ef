"""The bulk restore (streams/engine/restore.py) against a changelog topic on the real broker.

The worker-level proof (state restored after SIGKILLs stays exact, and came through
the bulk read) is in test_chaos.py; here the reader itself: newest value per key,
deletions, where it leaves Faust's start offset, and a tail it could not read."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from streams.codecs.state import dumps
from streams.engine.restore import BulkRestore
from tests.integration.conftest import new_topic

pytestmark = pytest.mark.integration

# (partition, key, value): value None is a deletion (tombstone)
RECORDS: list[tuple[int, str, Any]] = [
    (0, "m1", {"v": 1}), (0, "m2", {"v": 1}), (1, "m3", {"v": 1}),
    (0, "m1", {"v": 2}), (1, "m3", {"v": 2}), (0, "m2", None),
    (1, "m4", {"v": 1}), (0, "m1", {"v": 3}), (1, "m3", {"v": 3}),
]


def _table(name: str) -> Any:
    return SimpleNamespace(name=name, data=SimpleNamespace(data={}, _key_partition={}))


def _replay(records: list[tuple[int, str, Any]]) -> dict[str, Any]:
    """What applying every record one by one (Faust's own restore) leaves."""
    state: dict[str, Any] = {}
    for _, key, value in records:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


async def _changelog(bootstrap: str) -> tuple[str, dict[TP, int]]:
    """A 2-partition topic holding RECORDS; returns it and each partition's last offset."""
    topic = await new_topic(bootstrap, f"restore-{uuid.uuid4().hex[:8]}-changelog")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    last: dict[TP, int] = {}
    try:
        for partition, key, value in RECORDS:
            meta = await producer.send_and_wait(
                topic, None if value is None else dumps(value), dumps(key), partition)
            last[TP(topic, partition)] = meta.offset
    finally:
        await producer.stop()
    return topic, last


def _restore(bootstrap: str, tables: dict[TP, Any], start: dict[TP, int],
             highwaters: dict[TP, int], time_limit: float = 30.0) -> list[Any]:
    reports: list[Any] = []
    bulk = BulkRestore(bootstrap, time_limit, lambda read, s: reports.append(dict(read)))
    asyncio.run(bulk.load(tables, start, highwaters))
    return reports


def _restore_all(bootstrap: str, start_of: dict[int, int]) -> tuple[Any, dict[TP, int],
                                                                     dict[TP, int]]:
    topic, last = asyncio.run(_changelog(bootstrap))
    table = _table("messages")
    tps = {TP(topic, p): table for p in (0, 1)}
    start = {TP(topic, p): start_of.get(p, -1) for p in (0, 1)}
    _restore(bootstrap, tps, start, last)
    return table, start, last


def test_bulk_restore_leaves_what_applying_every_record_leaves(kafka_bootstrap: str):
    table, start, last = _restore_all(kafka_bootstrap, {})
    assert table.data.data == _replay(RECORDS) == {"m1": {"v": 3}, "m3": {"v": 3},
                                                  "m4": {"v": 1}}
    assert table.data._key_partition == {"m1": 0, "m3": 1, "m4": 1}
    assert start == last, "Faust's start offsets must move to the last record applied"


def test_negative_control_a_restore_from_the_wrong_offset_is_caught(kafka_bootstrap: str):
    """The check above sees a skipped record: with partition 1 read only from its
    last record (offsets 0-2 taken as applied, m4's only write among them), the
    restored state is not the replay's."""
    table, _, _ = _restore_all(kafka_bootstrap, {1: 2})
    assert table.data.data != _replay(RECORDS)
    assert "m4" not in table.data.data and table.data.data["m3"] == {"v": 3}


def test_an_unreadable_tail_is_left_to_faust(kafka_bootstrap: str):
    """A highwater past what the reader gets (a record it never sees) ends the bulk
    read at its time limit, with the start offset at the last record it applied, so
    Faust's own restore reads on from there."""
    topic, last = asyncio.run(_changelog(kafka_bootstrap))
    table = _table("messages")
    tps = {TP(topic, p): table for p in (0, 1)}
    start = {tp: -1 for tp in tps}
    beyond = {tp: offset + 5 for tp, offset in last.items()}
    reports = _restore(kafka_bootstrap, tps, start, beyond, time_limit=2.0)
    assert start == last
    assert table.data.data == _replay(RECORDS)
    assert reports == [{"messages": len(RECORDS)}]


def test_nothing_to_read_opens_no_consumer(kafka_bootstrap: str):
    table = _table("messages")
    tp = TP("no-such-changelog", 0)
    start = {tp: 7}
    assert _restore(kafka_bootstrap, {tp: table}, start, {tp: 7}) == []
    assert start == {tp: 7} and table.data.data == {}


def test_a_table_on_disk_restores_as_the_memory_one(kafka_bootstrap: str,
                                                    tmp_path: Path) -> None:
    """CA_TABLE_STORE=rocksdb: the bulk read into a ``DiskStore`` leaves the replay's
    values, and the recovery's rebuild sees them with their partitions."""
    import faust

    from streams.engine.tables import rebuilding_table

    topic, last = asyncio.run(_changelog(kafka_bootstrap))
    app = faust.App("restore-disk", broker=f"kafka://{kafka_bootstrap}", datadir=str(tmp_path))
    rebuilt: list[list[Any]] = []
    table = rebuilding_table(app, "messages", lambda values: rebuilt.append(list(values)),
                             lazy_restore=True, on_disk=True)
    tps: dict[TP, Any] = {TP(topic, p): table for p in (0, 1)}
    start = {tp: -1 for tp in tps}
    _restore(kafka_bootstrap, tps, start, last)
    assert start == last
    assert {key: table.peek(key) for key in ("m1", "m2", "m3", "m4")} == \
        {"m1": {"v": 3}, "m2": None, "m3": {"v": 3}, "m4": {"v": 1}} == \
        {key: _replay(RECORDS).get(key) for key in ("m1", "m2", "m3", "m4")}
    asyncio.run(table.on_recovery_completed({TP(topic, 1)}, set()))  # partition 1 only
    assert sorted(rebuilt[0]) == sorted([dumps({"v": 3}), dumps({"v": 1})])  # m3, m4
    assert table.peek("m1") is None  # partition 0 is another worker's now
    store: Any = table.data
    asyncio.run(store.on_stop())
