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

2. **Commits crawling after a rebalance.** Faust keeps the acknowledged
   offsets of a partition in a list (and a set meant to keep it free of
   repeats) and commits up to the end of the list's first run of consecutive
   numbers. After SIGKILLs and rebalances the list was seen holding every
   offset twice (``3678, 3679, 3679, 3680, 3680, ...``): each run was then
   two numbers long, so each commit (every 2.8 s) advanced the partition by
   one or two offsets, and a restarted worker reprocessed almost everything
   (found by ``tests/integration/test_chaos.py``'s ten-SIGKILL run). The fix:
   before Faust picks the offset to commit, the list is made sorted, free of
   repeats and of offsets below the committed one.

3. **A commit that does not wait for the table writes it covers.** Before
   committing, Faust flushes its producer, starting with the buffer that
   holds table changelog records (``ProducerBuffer``). That flush gives up
   when no record leaves the buffer within 0.1 s, and the commit goes ahead:
   measured under load, it returned with 4,249, 4,526 and 8,439 changelog
   records still waiting. A SIGKILL then loses table writes whose input is
   already committed. (The same flush also returned while the last record
   taken from the buffer was still on its way to the client.) Our tables no
   longer write through that buffer (``RebuildingTable.send_pending``), and
   the flush now returns only when the buffer is empty and nothing taken
   from it is still being handed over; ``tests/unit/test_faust_fixes.py``
   shows both behaviours on Faust's own buffer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer

log = logging.getLogger(__name__)

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


_new_offset = faust_consumer.Consumer._new_offset


def _new_offset_without_repeats(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    if acked:
        committed = self._committed_offset[tp]
        unique = sorted({o for o in acked if committed is None or o >= committed})
        acked[:] = unique
        self._acked_index[tp] = set(unique)
    result: int | None = _new_offset(self, tp)
    return result


_send_pending = ProducerBuffer._send_pending
_original_flush = ProducerBuffer.flush  # Faust's (the tests' negative control)


async def _send_pending_counted(self: Any, fut: Any) -> None:
    self._handing_over = getattr(self, "_handing_over", 0) + 1
    try:
        await _send_pending(self, fut)
    finally:
        self._handing_over -= 1


async def _flush_everything(self: Any) -> None:
    """Return once every buffered record has been handed to the client."""
    started = time.monotonic()
    warned = started
    while self.size or getattr(self, "_handing_over", 0):
        if self.state != "running" and self.size:
            raise RuntimeError("Cannot flush: Producer not Running")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
        except TimeoutError:
            if time.monotonic() - warned > 10:
                warned = time.monotonic()
                log.warning("producer buffer: %d records still waiting after %.0f s",
                            self.size, warned - started)


def install() -> None:
    """Apply the fixes (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_class.seek_to_committed = _seek_to_committed
    consumer_class: Any = faust_consumer.Consumer
    consumer_class._new_offset = _new_offset_without_repeats
    buffer_class: Any = ProducerBuffer
    buffer_class._send_pending = _send_pending_counted
    buffer_class.flush = _flush_everything
    _INSTALLED = True
