"""The bulk restore (streams/restore.py) against a changelog topic on the real broker.

The worker-level proof (state restored after SIGKILLs stays exact, and came through
the bulk read) is in test_chaos.py; here the reader itself: newest value per key,
deletions, where it leaves Faust's start offset, and a tail it could not read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from streams.restore import BulkRestore
from streams.serde import dumps, loads

pytestmark = pytest.mark.integration

# (partition, key, value): value None is a deletion (tombstone)
RECORDS: list[tuple[int, str, Any]] = [
    (0, "m1", {"v": 1}), (0, "m2", {"v": 1}), (1, "m3", {"v": 1}),
    (0, "m1", {"v": 2}), (1, "m3", {"v": 2}), (0, "m2", None),
    (1, "m4", {"v": 1}), (0, "m1", {"v": 3}), (1, "m3", {"v": 3}),
]


@pytest.fixture(params=[False, True], ids=["in-process", "child-process"])
def lazy(request: pytest.FixtureRequest) -> bool:
    """A table restored lazily (values kept as changelog bytes) is read by a child
    process (streams/changelog_reader.py); any other in the worker's own."""
    return bool(request.param)


def _table(name: str, lazy: bool = False) -> Any:
    return SimpleNamespace(name=name, lazy_restore=lazy,
                           data=SimpleNamespace(data={}, _key_partition={}))


def _values(table: Any) -> dict[str, Any]:
    return {k: loads(v) if isinstance(v, bytes) else v for k, v in table.data.data.items()}


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
    topic = f"restore-{uuid.uuid4().hex[:8]}-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
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


def _restore_all(bootstrap: str, start_of: dict[int, int], lazy: bool
                 ) -> tuple[Any, dict[TP, int], dict[TP, int]]:
    topic, last = asyncio.run(_changelog(bootstrap))
    table = _table("messages", lazy)
    tps = {TP(topic, p): table for p in (0, 1)}
    start = {TP(topic, p): start_of.get(p, -1) for p in (0, 1)}
    _restore(bootstrap, tps, start, last)
    return table, start, last


def test_bulk_restore_leaves_what_applying_every_record_leaves(kafka_bootstrap: str,
                                                              lazy: bool):
    table, start, last = _restore_all(kafka_bootstrap, {}, lazy)
    assert all(isinstance(v, bytes) is lazy for v in table.data.data.values())
    assert _values(table) == _replay(RECORDS) == {"m1": {"v": 3}, "m3": {"v": 3},
                                                  "m4": {"v": 1}}
    assert table.data._key_partition == {"m1": 0, "m3": 1, "m4": 1}
    assert start == last, "Faust's start offsets must move to the last record applied"


def test_negative_control_a_restore_from_the_wrong_offset_is_caught(kafka_bootstrap: str,
                                                                    lazy: bool):
    """The check above sees a skipped record: with partition 1 read only from its
    last record (offsets 0-2 taken as applied, m4's only write among them), the
    restored state is not the replay's."""
    table, _, _ = _restore_all(kafka_bootstrap, {1: 2}, lazy)
    assert _values(table) != _replay(RECORDS)
    assert "m4" not in table.data.data and _values(table)["m3"] == {"v": 3}


def test_an_unreadable_tail_is_left_to_faust(kafka_bootstrap: str, lazy: bool):
    """A highwater past what the reader gets (a record it never sees) ends the bulk
    read at its time limit, with the start offset at the last record it applied, so
    Faust's own restore reads on from there."""
    topic, last = asyncio.run(_changelog(kafka_bootstrap))
    table = _table("messages", lazy)
    tps = {TP(topic, p): table for p in (0, 1)}
    start = {tp: -1 for tp in tps}
    beyond = {tp: offset + 5 for tp, offset in last.items()}
    reports = _restore(kafka_bootstrap, tps, start, beyond, time_limit=2.0)
    assert start == last
    assert _values(table) == _replay(RECORDS)
    assert reports == [{"messages": len(RECORDS)}]


def test_nothing_to_read_opens_no_consumer(kafka_bootstrap: str):
    table = _table("messages")
    tp = TP("no-such-changelog", 0)
    start = {tp: 7}
    assert _restore(kafka_bootstrap, {tp: table}, start, {tp: 7}) == []
    assert start == {tp: 7} and table.data.data == {}


def _reader_processes() -> list[int]:
    """This process's live children running streams.changelog_reader (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                cmdline = cmd.read()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == os.getpid() and \
                b"streams.changelog_reader" in cmdline:
            found.append(int(entry))
    return found


def test_a_cancelled_restore_stops_its_reader_process(kafka_bootstrap: str):
    """A rebalance cancels the restore: the child reading the lazy table goes with it."""
    topic, last = asyncio.run(_changelog(kafka_bootstrap))
    table = _table("messages", lazy=True)
    tps = {TP(topic, p): table for p in (0, 1)}
    start = {tp: -1 for tp in tps}
    beyond = {tp: offset + 5 for tp, offset in last.items()}  # never reached: it waits

    async def cancelled() -> tuple[list[int], list[int]]:
        task = asyncio.create_task(BulkRestore(kafka_bootstrap, 60).load(tps, start, beyond))
        async with asyncio.timeout(30):
            while start != last:
                await asyncio.sleep(0.05)
        during = _reader_processes()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return during, _reader_processes()

    during, after = asyncio.run(cancelled())
    assert len(during) == 1, "the reader process should be there while it reads"
    assert after == []
