"""Bulk consumption inside Faust: its consumer, group, commits and rebalancing,
without its per-event stream machinery.

Faust hands every record to a per-partition callback of its conductor, which
decodes it into an event, queues it on each subscribed channel, and lets a
stream take it through sensors, processors and acks: roughly 0.3-0.5 ms of
CPU per event per stage, most of the worker's time. An ``Inbox`` is installed
as that callback for its topics instead: it keeps the records as they come
(in order per partition, bounded, waiting while Faust's flow control is
stopped during a rebalance), and ``Inbox.batches`` yields them in lists to
one task that processes a whole list in plain Python, then acknowledges every
record of it. Faust then commits exactly as for its own streams: it flushes
the producer and commits the acknowledged offsets (streams/recovery.py,
step 5).

Records fetched before a rebalance (an older consumer generation) or for a
partition no longer assigned are dropped unacknowledged, as Faust's streams
do: Faust seeks back to the committed offset and delivers them again, or the
new owner does. A record delivered a second time in one generation (Faust's
consumer lets an offset equal to the last one through, and two fetches of one
range can both arrive around a seek) is skipped: acknowledged twice, it put
the offset twice into Faust's list of acknowledged offsets, whose commit then
advanced by one or two offsets per commit interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import faust
from faust.types import TP, Message

log = logging.getLogger(__name__)


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
        self._last: dict[TP, tuple[int, int]] = {}  # per partition: generation, offset
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def deliver(self, message: Message) -> None:
        """Faust's consumer callback for one record of this inbox's partitions."""
        app, consumer = self.app, cast(Any, self.app.consumer)
        while not app.flow_control.is_active():  # streams held back (recovery under way)
            if not consumer.flow_active:
                return  # a rebalance stopped the flow: Faust seeks back to the commit
            await asyncio.sleep(0.01)
        tp, generation = message.tp, message.generation_id
        last = self._last.get(tp)
        if last is not None and last[0] == (generation or 0) and message.offset <= last[1]:
            return  # a second copy (two fetches of one range around a seek): skip it
        self._last[tp] = (generation or 0, message.offset)
        if not message.tracked:
            message.tracked = True
            self.app.consumer.track_message(message)  # pending ack: Faust will not commit past it
        self._records.append(message)
        self._arrived.set()
        if len(self._records) >= 2 * self.max_batch:
            self._room.clear()
            await self._room.wait()

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
            generation = self.app.consumer_generation_id
            assigned = consumer.assignment()
            live = [m for m in batch if m.generation_id == generation and m.tp in assigned]
            if len(live) < len(batch):
                log.debug("dropped %d records fetched before a rebalance",
                          len(batch) - len(live))
            yield live
            if self.app.consumer_generation_id != generation:
                continue  # a rebalance came meanwhile: Faust delivers these again
            assigned = consumer.assignment()
            for message in live:
                if message.tp in assigned:
                    consumer.ack(message)

    def drop(self, revoked: set[TP]) -> None:
        """Forget records of revoked partitions (they are not acknowledged)."""
        self._records = [m for m in self._records if m.tp not in revoked]


def install(app: faust.App, inboxes: Iterable[Inbox]) -> None:
    """Subscribe the inboxes' topics and route their records to the inboxes."""
    routes = {name: inbox for inbox in inboxes for name in inbox.names}
    conductor: Any = app.topics
    build = conductor._build_handler

    def build_handler(tp: TP, channels: Any) -> Any:
        inbox = routes.get(tp.topic)
        return inbox.deliver if inbox is not None else build(tp, channels)

    conductor._build_handler = build_handler
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
