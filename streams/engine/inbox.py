"""Bulk consumption inside Faust: its consumer, group, commits and rebalancing,
without its per-event stream machinery (most of the worker's CPU).

The consumer hands the records of an ``Inbox``'s topics to that inbox: it keeps
them in order per partition (bounded; waiting while Faust's flow is stopped),
and ``Inbox.batches`` yields them in lists to one task, then acknowledges the
whole list; Faust commits the acknowledged offsets as for its own streams.
Records of an older consumer generation or of a partition no longer assigned
are dropped unacknowledged (Faust delivers them again), and within a generation
every record must follow the one before it in its partition's read epoch
(``streams/engine/positions.py``), so no record is passed over unprocessed.
Why, with the costs measured: docs/faust-hardening.md#inbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from time import monotonic
from typing import Any, cast

import faust
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.engine import positions

log = logging.getLogger(__name__)

TAKE, SKIP = -1, -2  # Inbox._verdict's answers besides an offset to read again from


class Inbox:
    """Records of some topics, for one bulk-processing task."""

    def __init__(self, app: faust.App, topics: Iterable[faust.TopicT], max_batch: int,
                 within: float) -> None:
        self.app = app
        self.topics = list(topics)
        self.names = {name for topic in self.topics for name in topic.topics}
        self.max_batch = max_batch
        self.within = within
        self._records: list[Message] = []
        self._last: dict[TP, tuple[int, int]] = {}  # per partition: read epoch, offset
        self._revocations = 0  # rebalances seen (each revokes partitions)
        self._suspect: dict[TP, tuple[int, int]] = {}  # a seek to [0] began at [1]
        self.positions = positions.positions_of(app.consumer)
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def deliver(self, message: Message) -> None:
        """Faust's consumer callback for one record of this inbox's partitions."""
        app, consumer = self.app, cast(Any, self.app.consumer)
        while not app.flow_control.is_active():  # streams held back (recovery under way)
            if not consumer.flow_active:  # a rebalance: Faust seeks back to the commit
                self._not_taken(message)
                return
            await asyncio.sleep(0.01)
        verdict = self._verdict(message)
        if verdict != TAKE:
            await self._refuse(message, verdict)
            return
        if not message.tracked:
            # Pending ack: a revocation waits for it (Faust's ``track_message``
            # without its per-record sensor calls; our own counters count events).
            message.tracked = True
            consumer._unacked_messages.add(message)
        self._records.append(message)
        self._arrived.set()
        if len(self._records) >= 2 * self.max_batch:
            self._room.clear()
            await self._room.wait()

    def _not_taken(self, message: Message) -> None:
        """``message`` was not taken: a later record of its read epoch must not be
        mistaken for the epoch's first (which may prove offsets absent), so it is
        seen as a jump and the partition is read again."""
        epoch = getattr(message, "fetch_epoch", None)
        tp = message.tp
        last = self._last.get(tp)
        if epoch is None or epoch != self.positions.epoch.get(tp, 0) or (
                last is not None and last[0] == epoch):
            return
        start = self.positions.at.get(tp)
        if start is not None:
            self._last[tp] = (epoch, start - 1)

    def _verdict(self, message: Message) -> int:
        """``TAKE`` if ``message`` is the next record of its partition (see the
        module's docstring), ``SKIP`` if not, or the offset to read the partition
        again from. Records absent from the log before it are recorded as such.
        Synchronous: it runs for every record."""
        epoch = getattr(message, "fetch_epoch", None)
        if epoch is None:  # not stamped (streams/engine/patches.py not installed)
            return TAKE
        tp, offset = message.tp, message.offset
        if epoch != self.positions.epoch.get(tp, 0):
            return SKIP  # fetched before the partition's latest seek, which reads it again
        last = self._last.get(tp)
        expected = self.positions.expected(tp, last, epoch)
        if expected is None or offset == expected:
            self._last[tp] = (epoch, offset)
            return TAKE
        if offset < expected:
            return SKIP  # a repeat
        if last is not None and last[0] == epoch:
            self.positions.on_reread("jump")
            log.info("%s[%d]: records %d..%d went missing between fetch and delivery; "
                     "reading them again", tp.topic, tp.partition, expected, offset - 1)
        elif self._suspect.pop(tp, None) == (expected, offset):
            # Two seeks to ``expected`` both began at ``offset``: the log has nothing between.
            positions.add_absent(self.app.consumer, tp, expected, offset)
            self._last[tp] = (epoch, offset)
            return TAKE
        else:
            self._suspect[tp] = (expected, offset)
        return expected

    async def _refuse(self, message: Message, verdict: int) -> None:
        """A record not taken (``_verdict``): read its partition again if asked."""
        if verdict != SKIP:
            await positions.reread(self.app.consumer, message.tp, verdict)

    async def batches(self) -> AsyncIterator[list[Message]]:
        """Lists of live records; each list is acknowledged after the caller's loop
        body has run for it, never before, and never if that body raised."""
        consumer = self.app.consumer
        while True:
            await self._arrived.wait()
            if len(self._records) < self.max_batch:
                await asyncio.sleep(self.within)  # let a batch fill up
            batch = self._records[:self.max_batch]
            del self._records[:self.max_batch]
            if not self._records:
                self._arrived.clear()
            if len(self._records) < self.max_batch:
                self._room.set()
            generation, revocations = self.app.consumer_generation_id, self._revocations
            assigned = consumer.assignment()
            live = [m for m in batch if m.generation_id == generation and m.tp in assigned]
            if len(live) < len(batch):
                log.debug("dropped %d records fetched before a rebalance",
                          len(batch) - len(live))
            self._mark_inbound(live)
            yield live
            if (self.app.consumer_generation_id != generation
                    or self._revocations != revocations):
                # A rebalance came meanwhile: Faust delivers these again. (The
                # generation changes only at the new assignment; acknowledged
                # between the revocation and it, they would land in the new
                # assignment's bookkeeping, ahead of the offset it starts from.)
                continue
            assigned = consumer.assignment()
            acknowledge(consumer, [m for m in live if m.tp in assigned])

    def _mark_inbound(self, batch: list[Message]) -> None:
        """Tell Faust's monitor that a stream took records of these partitions: its
        stall check reads it, and logs "Stream has not started processing" ERRORs for
        partitions no Faust stream reads."""
        monitor = cast(Any, self.app)._monitor
        if monitor is not None and batch:
            now = monotonic()
            monitor.stream_inbound_time.update(dict.fromkeys({m.tp for m in batch}, now))

    def drop(self, revoked: set[TP]) -> None:
        """Forget records of revoked partitions (they are not acknowledged)."""
        self._revocations += 1
        self._records = [m for m in self._records if m.tp not in revoked]


def acknowledge(consumer: Any, messages: list[Message]) -> None:
    """Faust's ``Consumer.ack`` for a whole batch: the same bookkeeping under the
    same lock, taken once, and one wake-up for whoever waits for acks."""
    acked, index, unacked = consumer._acked, consumer._acked_index, consumer._unacked_messages
    committed = consumer._committed_offset
    new = 0
    with ack_lock:
        for message in messages:
            if message.acked:
                continue
            message.acked = True
            unacked.discard(message)
            tp, offset = message.tp, message.offset
            start = committed[tp]
            seen = index[tp]
            if (start is None or offset >= start) and offset not in seen:
                seen.add(offset)
                acked[tp].append(offset)
                new += 1
        consumer._n_acked += new
    notify(consumer._waiting_for_ack)


def install(app: faust.App, inboxes: Iterable[Inbox]) -> None:
    """Subscribe the inboxes' topics and route their records to the inboxes."""
    routes = {name: inbox for inbox in inboxes for name in inbox.names}
    conductor: Any = app.topics
    build = conductor._build_handler

    def build_handler(tp: TP, channels: Any) -> Any:
        inbox = routes.get(tp.topic)
        return inbox.deliver if inbox is not None else build(tp, channels)

    conductor._build_handler = build_handler
    consumer: Any = app.consumer
    consumer._read_offset = positions.ReadOffsets(routes, consumer._read_offset)
    conductor_callback = consumer.callback

    async def callback(message: Message) -> None:
        """Records of inbox topics straight to their inbox (the conductor takes a
        lock per record to look up the same handler)."""
        inbox = routes.get(message.topic)
        if inbox is not None:
            await inbox.deliver(message)
        else:
            await conductor_callback(message)

    consumer.callback = callback
    for inbox in set(routes.values()):
        for topic in inbox.topics:
            conductor.add(topic)

    async def _drop_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        for inbox in set(routes.values()):
            inbox.drop(revoked)

    app.on_partitions_revoked.connect(_drop_revoked)  # type: ignore[arg-type]
    _deliver_without_tasks(app)


def _deliver_without_tasks(app: faust.App) -> None:
    """Faust's consumer loop races each record's delivery against "flow
    stopped" with ``wait_first``: two new asyncio tasks per record, more than
    the rest of the delivery. Every callback of this app gives up by itself when
    the flow stops (``Inbox.deliver`` checks; changelog records go straight into
    tables), so while the flow is active the delivery is simply awaited. The
    consumer loop is the only user of ``wait_first``."""
    consumer: Any = app.consumer
    race = consumer.wait_first

    async def wait_first(*coros: Any, timeout: float | None = None) -> Any:
        if len(coros) == 2 and timeout is None and consumer.flow_active:
            delivery, flow_stopped = coros
            flow_stopped.close()
            return await delivery
        return await race(*coros, timeout=timeout)

    consumer.wait_first = wait_first
