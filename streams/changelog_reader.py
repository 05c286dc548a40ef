"""Changelog partitions read to their end, reduced to the newest value per key: the
reading half of the bulk restore (streams/restore.py), in this process or in a child.

``read_newest`` reads ranges of partitions with a plain aiokafka consumer (no group,
nothing committed) and yields, per fetch and partition, the newest value of each key
(``None``: deleted) and the last offset read. Most of a restore's time is aiokafka
turning fetched batches into records (~4 µs each), so a worker hands the reading of
some tables to a child process (``python -m streams.changelog_reader``, the ranges as
JSON on its stdin) and reads the others itself meanwhile, on the second core: the
child writes each fetch's result to its stdout as one frame (4-byte length, then a
pickle; parent and child are the same program) and ``read_in_child`` yields them in
the parent as ``read_newest`` would. The child stops at the deadline; whatever it
did not read Faust reads, as for the in-process reader. This module imports no
Faust, so the child starts in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import struct
import sys
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_BYTES = 16 * 1024 * 1024
FRAME = struct.Struct(">I")

# (partition, last offset read, records read, newest value per key of those records)
Fetched = tuple[TopicPartition, int, int, dict[bytes, bytes | None]]


def newest_per_key(records: Iterable[Any]) -> dict[bytes, bytes | None]:
    """The value of each key's last record (records in offset order)."""
    return {r.key: r.value for r in records}


async def read_newest(bootstrap: str, ranges: Mapping[TopicPartition, tuple[int, int]],
                      deadline: float) -> AsyncGenerator[Fetched, None]:
    """Read each partition from its range's first offset until its highwater (the last
    offset to read, inclusive) has been read, or until ``deadline`` (``time.monotonic``)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=FETCH_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
    await consumer.start()
    try:
        consumer.assign(list(ranges))
        for tp, (first, _) in ranges.items():
            consumer.seek(tp, first)
        remaining = set(ranges)
        while remaining and time.monotonic() < deadline:
            fetched = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in fetched.items():
                if records:
                    yield tp, records[-1].offset, len(records), newest_per_key(records)
            for tp in list(remaining):
                if await consumer.position(tp) > ranges[tp][1]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_in_child(bootstrap: str, ranges: Mapping[TopicPartition, tuple[int, int]],
                        deadline: float) -> AsyncGenerator[Fetched, None]:
    """``read_newest`` in a child process. A child that fails ends the iteration early
    (the caller's time limit path: Faust reads the rest); it is killed if the caller
    stops iterating."""
    spec = {"bootstrap": bootstrap, "seconds": max(deadline - time.monotonic(), 0.0),
            "ranges": [[tp.topic, tp.partition, first, last]
                       for tp, (first, last) in ranges.items()]}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.changelog_reader",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    if proc.stdin is None or proc.stdout is None:  # pragma: no cover  # PIPE asked for
        raise RuntimeError("the changelog reader's pipes did not open")
    try:
        proc.stdin.write(json.dumps(spec).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        while True:
            try:
                header = await proc.stdout.readexactly(FRAME.size)
                (size,) = FRAME.unpack(header)
                # our own child's frames (the same program), never outside data
                topic, partition, last, count, newest = pickle.loads(  # noqa: S301
                    await proc.stdout.readexactly(size))
            except asyncio.IncompleteReadError:
                break  # the child is done (or failed: its stderr says why)
            yield TopicPartition(topic, partition), last, count, newest
        await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _serve(spec: dict[str, Any], out: Any) -> None:
    ranges = {TopicPartition(topic, partition): (first, last)
              for topic, partition, first, last in spec["ranges"]}
    deadline = time.monotonic() + float(spec["seconds"])
    async for tp, last, count, newest in read_newest(spec["bootstrap"], ranges, deadline):
        frame = pickle.dumps((tp.topic, tp.partition, last, count, newest),
                             protocol=pickle.HIGHEST_PROTOCOL)
        out.write(FRAME.pack(len(frame)))
        out.write(frame)
        out.flush()  # a parent that is gone ends this child here (broken pipe)


def main() -> None:
    asyncio.run(_serve(json.loads(sys.stdin.buffer.read()), sys.stdout.buffer))


if __name__ == "__main__":
    main()
