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
   two). The fix: the seek to the committed offsets sends every input
   partition without a committed offset to where ``auto_offset_reset`` says
   (earliest here) and every one committed at 0 to 0, and records each
   position as the start of a new read epoch (fix 4). Changelog partitions
   are left alone: Faust's recovery positions them itself.

2. **Commits crawling after a rebalance.** Faust keeps the acknowledged
   offsets of a partition in a list (and a set meant to keep it free of
   repeats) and commits up to the end of the list's first run of consecutive
   numbers. After SIGKILLs and rebalances the list was seen holding every
   offset twice (``3678, 3679, 3679, 3680, 3680, ...``): each run was then
   two numbers long, so each commit (every 2.8 s) advanced the partition by
   one or two offsets, and a restarted worker reprocessed almost everything
   (found by ``tests/integration/test_chaos.py``'s ten-SIGKILL run). The fix
   (part of fix 4's ``positions.next_commit``): the list is made sorted, free
   of repeats and of offsets below the committed one before the offset to
   commit is picked.

3. **A commit that does not wait for the table writes it covers.** Before
   committing, Faust flushes its producer, starting with the buffer that
   holds table changelog records (``ProducerBuffer``). That flush gives up
   when no record leaves the buffer within 0.1 s, and the commit goes ahead:
   measured under load, it returned with 4,249, 4,526 and 8,439 changelog
   records still waiting. A SIGKILL then loses table writes whose input is
   already committed. (The same flush also returned while the last record
   taken from the buffer was still on its way to the client.) Our tables no
   longer write through that buffer (``RebuildingTable.pending_to``), and
   the flush now returns only when the buffer is empty and nothing taken
   from it is still being handed over; ``tests/unit/test_faust_fixes.py``
   shows both behaviours on Faust's own buffer.

4. **Commits over records that were never processed**, and the fetch-loop
   filter that lost them: ``streams/engine/positions.py`` (read epochs, records
   stamped in the consumer thread, a strict choice of the offset to commit,
   and a re-read of any partition whose commit finds its head missing).

5. **The commit at a revocation made without the offsets it covers.** Faust
   forgets a revoked partition's acknowledged and committed offsets first, and
   only then lets the app stop the flow, wait for the records in processing
   and commit. That commit saw the acknowledgements made after the forgetting
   only, and no committed offset: Faust committed from the lowest of them,
   over whatever came before (strict, fix 4 holds such a commit instead, and
   the next owner re-did the work). Now the app's handler runs first and the
   offsets are forgotten after it, as Kafka's rebalance listener contract
   intends ("commit in onPartitionsRevoked").

6. **A stage waiting up to 1.5 s for records already in the log.** Faust
   creates its consumer with ``fetch_max_wait_ms=1500`` (hard-coded). aiokafka
   fetches the partitions whose fetched records are all taken and leaves out
   those still holding some; the broker holds such a fetch until data comes or
   the wait is over, and no other fetch goes to that broker meanwhile. So
   while one stage works through its records, a fetch for the partitions that
   are idle (the inputs, when the backlog is read) is held for 1.5 s, and the
   partitions the stage has just emptied wait behind it: measured, the
   campaign stage took ~5,000 hand-offs, then waited 1.0-1.4 s for the next,
   again and again (80k events: 2,957 events/s; with a 100 ms wait 5,062).
   The worker's consumer now waits at most ``CA_FETCH_MAX_WAIT_MS`` (100 ms);
   an idle worker sends a few more empty fetches per second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, cast

from aiokafka import TopicPartition
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.utils.tracing import traced_from_parent_span
from mode import Service

from streams.engine import positions
from streams.engine.positions import StampedMessage, positions_of

log = logging.getLogger(__name__)

_INSTALLED = False


async def _seek_to_committed(self: Any) -> Mapping[TopicPartition, int | None]:
    consumer = self._ensure_consumer()
    changelogs = self.app.tables.changelog_topics
    earliest = self.app.conf.consumer_auto_offset_reset == "earliest"
    positions = positions_of(self.consumer)

    async def seek() -> Mapping[TopicPartition, int | None]:
        assigned = consumer.assignment()
        # one OffsetFetch request for all partitions (``consumer.committed`` sends one
        # per partition: 33 round trips on a worker here, at every rebalance)
        stored = await consumer._coordinator.fetch_committed_offsets(list(assigned))
        committed: dict[TopicPartition, int | None] = {
            tp: (None if tp not in stored or stored[tp].offset == -1 else stored[tp].offset)
            for tp in assigned}
        unset = [tp for tp, offset in committed.items()
                 if offset is None and tp.topic not in changelogs]
        edges: Mapping[TopicPartition, int] = {}
        if unset:
            edges = await (consumer.beginning_offsets(unset) if earliest
                           else consumer.end_offsets(unset))
        # No await from here on: each seek and its read epoch are one step for
        # the fetcher, which runs in this same loop (streams/engine/positions.py).
        for tp, offset in committed.items():
            if tp.topic in changelogs:  # Faust's recovery positions these itself
                if offset:
                    consumer.seek(tp, offset)
                continue
            position = offset if offset is not None else edges[tp]
            consumer.seek(tp, position)
            positions.sought(tp, position)
            positions.start[tp] = position
        return committed

    result: Mapping[TopicPartition, int | None] = await self.call_thread(seek)
    return result


_fetch_records = faust_aiokafka.AIOKafkaConsumerThread._fetch_records


async def _fetch_records_stamped(self: Any, *args: Any, **kwargs: Any) -> Any:
    records = await _fetch_records(self, *args, **kwargs)
    positions_of(self.consumer).stamp(records)
    return records


def _thread_seek(self: Any, partition: Any, offset: int) -> None:
    self._ensure_consumer().seek(partition, offset)
    positions_of(self.consumer).sought(partition, offset)


def _to_message(self: Any, tp: Any, record: Any) -> StampedMessage:
    timestamp = record.timestamp
    message = StampedMessage(
        record.topic, record.partition, record.offset,
        timestamp / 1000.0 if timestamp is not None else cast(float, None),
        record.timestamp_type,
        record.headers, record.key, record.value, record.checksum,
        record.serialized_key_size, record.serialized_value_size, tp,
        generation_id=self.app.consumer_generation_id)
    message.fetch_epoch = getattr(record, "fetch_epoch", None)
    return message


_send_pending = ProducerBuffer._send_pending
_original_flush = ProducerBuffer.flush  # Faust's (the tests' negative control)
_original_new_offset = faust_consumer.Consumer._new_offset  # likewise
_faust_on_partitions_revoked = faust_consumer.Consumer.on_partitions_revoked  # likewise


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


@Service.transitions_to(faust_consumer.CONSUMER_PARTITIONS_REVOKED)
async def _on_partitions_revoked(self: Any, revoked: set[Any]) -> None:
    """Faust's ``Consumer.on_partitions_revoked``, with its two halves swapped: the
    app's handler (stop the flow, wait until every record taken is processed,
    commit) runs *before* the revoked partitions' offsets are forgotten, so that
    commit sees the acknowledgements and the committed offsets it needs (fix 5)."""
    span = self.app._start_span_from_rebalancing("on_partitions_revoked")
    trace = traced_from_parent_span(span)
    with span:
        if self._active_partitions is not None:
            self._active_partitions.difference_update(revoked)
        self._paused_partitions.difference_update(revoked)
        await trace(self._on_partitions_revoked, partitions=revoked)(revoked)
        for tp in revoked:
            self._gap.pop(tp, None)
            self._acked.pop(tp, None)
            self._acked_index.pop(tp, None)
            self._read_offset.pop(tp, None)
            self._committed_offset.pop(tp, None)


FAUST_FETCH_MAX_WAIT_MS = 1500  # what Faust 0.15.3 gives its consumer
_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer_waiting_less(self: Any, transport: Any) -> Any:
    """Fix 6: the app's ``fetch_max_wait_ms`` (set by ``create_app``), not Faust's 1.5 s."""
    consumer = _create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms",
                                          FAUST_FETCH_MAX_WAIT_MS)
    return consumer


def install() -> None:
    """Apply the fixes (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_class.seek_to_committed = _seek_to_committed
    thread_class._fetch_records = _fetch_records_stamped
    thread_class.seek = _thread_seek
    thread_class._create_worker_consumer = _create_worker_consumer_waiting_less
    driver_class: Any = faust_aiokafka.Consumer
    driver_class._to_message = _to_message
    consumer_class: Any = faust_consumer.Consumer
    consumer_class._new_offset = positions.new_offset
    consumer_class.on_partitions_revoked = _on_partitions_revoked
    buffer_class: Any = ProducerBuffer
    buffer_class._send_pending = _send_pending_counted
    buffer_class.flush = _flush_everything
    _INSTALLED = True
