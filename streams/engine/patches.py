"""Fixes for faust-streaming 0.15.3 bugs that lose or stall input, in one place.

Applied by ``streams.engine.harden`` (idempotent). What each fix repairs, the
incident that showed it and its test: docs/faust-hardening.md#patches.

1. The seek to the committed offsets also seeks partitions never committed (or
   committed at 0), and starts a read epoch (fix 4).
2. The acknowledged offsets are made sorted and free of repeats before a commit
   (in ``positions.next_commit``).
3. The producer buffer's flush returns only when every record left it.
4. No commit over records never processed: ``streams/engine/positions.py``.
5. At a revocation, the app's handler (and its commit) runs before Faust forgets
   the revoked partitions' offsets.
6. The consumer's fetch wait is the app's ``fetch_max_wait_ms``, not 1.5 s.
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
    """Fix 6: the app's ``fetch_max_wait_ms`` (set by ``streams.engine.harden``), not
    Faust's 1.5 s."""
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
