"""Fixes for faust-streaming 0.15.3 bugs that lose or stall input, in one place.

Installed once by ``streams.app.create_app``; each fix says what it repairs
and which test shows it.

1. **Records thrown away on a partition without a committed offset.**
   When Faust's fetcher gets records while the flow is stopped (during a
   rebalance's recovery), it discards them and "seeks back to the committed
   offsets" (``Consumer.getmany`` -> ``perform_seek`` -> aiokafka's
   ``seek_to_committed``). aiokafka only seeks partitions whose committed
   offset is a positive number, so a partition that has no commit yet (or
   whose commit is 0) stays at the position *after* the discarded records,
   and those records are never processed. Seen with two workers started
   together: the one that joined first read its partitions in generation 1,
   got some of them back in generation 2 before any commit, and skipped them
   for good (``tests/integration/test_pipeline.py::
   test_two_workers_side_by_side_in_one_directory`` failed about one run in
   two). The fix: after seeking to the committed offsets, seek every input
   partition without a committed offset to where ``auto_offset_reset`` says
   (earliest here) and every one committed at 0 to 0. Changelog partitions
   are left alone: Faust's recovery positions them itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

_INSTALLED = False


async def _seek_to_committed(self: Any) -> Mapping[TopicPartition, int | None]:
    consumer = self._ensure_consumer()
    changelogs = self.app.tables.changelog_topics
    earliest = self.app.conf.consumer_auto_offset_reset == "earliest"

    async def seek() -> Mapping[TopicPartition, int | None]:
        committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
        for tp, offset in committed.items():
            if tp.topic in changelogs or (offset is not None and offset > 0):
                continue
            if offset == 0:
                consumer.seek(tp, 0)
            elif earliest:
                await consumer.seek_to_beginning(tp)
            else:
                await consumer.seek_to_end(tp)
        return committed

    result: Mapping[TopicPartition, int | None] = await self.call_thread(seek)
    return result


def install() -> None:
    """Apply the fixes (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_class.seek_to_committed = _seek_to_committed
    _INSTALLED = True
