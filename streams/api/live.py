"""The API's live aggregates: the newest snapshot of every campaign and window, read
from the compacted metric topics (from the beginning at start, then followed).

Whichever worker holds a campaign publishes its snapshots to one partition of
``campaign-metrics`` (the key is the campaign id), so a snapshot's offset grows
with every new snapshot of that campaign, in every API process alike: it is the
server-sent events' ``id``. A client that reconnects with ``Last-Event-ID`` below
the current offset has missed something and gets the current state (a snapshot is
a whole state, so the newest one is all it missed).

``LiveState`` is plain code (records in, snapshots and subscriptions out) that unit
tests drive without a broker; ``MetricsFollower`` feeds it from Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from projections.errors import InvalidEventError
from streams.api.timefmt import iso
from streams.codecs.output_avro import decode_campaign_metrics, decode_campaign_window
from streams.kafka_security import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 60.0  # how often the follower drops windows past retention


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One campaign's newest metrics: ``body`` is the API's summary (``summary --json``
    keys plus ``as_of``); ``event`` the same as one server-sent event, encoded once
    for every subscriber."""

    campaign_id: str
    offset: int
    body: dict[str, Any]
    event: bytes


def _snapshot(offset: int, summary: dict[str, Any]) -> Snapshot:
    emitted_at = int(summary.pop("emitted_at"))
    body = {**summary, "as_of": iso(emitted_at)}
    data = orjson.dumps(body)
    event = b"id: %d\nevent: summary\ndata: %s\n\n" % (offset, data)
    return Snapshot(summary["campaign_id"], offset, body, event)


class Subscription:
    """One live client of a campaign. It holds at most the newest snapshot it has not
    sent yet: a newer one replaces it, so a slow client costs one snapshot of
    memory, never a queue (the stream closes a client whose socket stays full)."""

    def __init__(self) -> None:
        self.pending: Snapshot | None = None
        self.ready = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        """Wake the stream to end it (the service is stopping)."""
        self.closed = True
        self.ready.set()

    def offer(self, snapshot: Snapshot) -> None:
        self.pending = snapshot
        self.ready.set()

    def take(self) -> Snapshot | None:
        snapshot, self.pending = self.pending, None
        self.ready.clear()
        return snapshot


@dataclass
class LiveState:
    """The newest snapshot per campaign and the newest counts per window.

    A window ends when the worker prunes it past ``CA_WINDOW_RETENTION_DAYS`` and
    publishes a tombstone for its key: the window is removed, and a record of it read
    at a lower offset (read again) does not bring it back. With ``window_retention_ms``
    set, a window past retention is never kept or shown, tombstone or not."""

    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    # campaign -> (window_seconds, window_start) -> the decoded window record
    windows: dict[str, dict[tuple[int, int], dict[str, Any]]] = field(default_factory=dict)
    subscribers: dict[str, set[Subscription]] = field(default_factory=dict)
    rejected: int = 0
    window_retention_ms: int | None = None
    # (campaign, window_seconds, window_start) -> offset of its tombstone; kept only
    # while the window is within retention here (older records are refused anyway)
    ended: dict[tuple[str, int, int], int] = field(default_factory=dict)

    def apply_metrics(self, offset: int, value: bytes | None) -> None:
        if value is None:  # a tombstone: nothing publishes one today; keep the last state
            return
        try:
            summary = decode_campaign_metrics(value)
        except (InvalidEventError, ValueError, KeyError) as exc:
            self.rejected += 1
            log.warning("skipping an undecodable metrics record at offset %d: %s", offset, exc)
            return
        current = self.snapshots.get(summary["campaign_id"])
        if current is not None and current.offset >= offset:
            return  # read again after a reconnect
        snapshot = _snapshot(offset, summary)
        self.snapshots[snapshot.campaign_id] = snapshot
        for subscription in self.subscribers.get(snapshot.campaign_id, ()):
            subscription.offer(snapshot)

    def apply_window(self, key: bytes | None, value: bytes | None, offset: int = -1,
                     now_ms: int | None = None) -> None:
        """One record of the windows topic at ``offset`` (``-1``: unknown); a value
        ``None`` is a tombstone."""
        if value is None:
            self._drop_window(key, offset, now_ms)
            return
        try:
            record = decode_campaign_window(value)
        except (InvalidEventError, ValueError, KeyError) as exc:
            self.rejected += 1
            log.warning("skipping an undecodable window record: %s", exc)
            return
        campaign_id, where = record["campaign_id"], (int(record["window_seconds"]),
                                                      _epoch_ms(record["window_start"]))
        if where[1] < self._horizon(now_ms):
            self.windows.get(campaign_id, {}).pop(where, None)
            return
        if self.ended:
            tombstone = self.ended.get((campaign_id, *where))
            if tombstone is not None:
                if offset <= tombstone:
                    return  # older than the window's tombstone: read again
                del self.ended[(campaign_id, *where)]
        self.windows.setdefault(campaign_id, {})[where] = record

    def _drop_window(self, key: bytes | None, offset: int, now_ms: int | None) -> None:
        try:
            campaign_id, size, start = (key or b"").decode().rsplit("|", 2)
            where = (int(size), int(start))
        except ValueError:
            self.rejected += 1
            return
        self.windows.get(campaign_id, {}).pop(where, None)
        if offset >= 0 and where[1] >= self._horizon(now_ms):
            self.ended[(campaign_id, *where)] = offset

    def _horizon(self, now_ms: int | None) -> int:
        """Windows starting before this are past retention (none without one)."""
        if self.window_retention_ms is None:
            return -(1 << 62)
        return (_wall_ms() if now_ms is None else now_ms) - self.window_retention_ms

    def windows_of(self, campaign_id: str, now_ms: int | None = None
                   ) -> dict[tuple[int, int], dict[str, Any]]:
        """A campaign's windows within retention (a tombstone may not have come yet)."""
        windows = self.windows.get(campaign_id, {})
        horizon = self._horizon(now_ms)
        return {where: w for where, w in windows.items() if where[1] >= horizon}

    def prune_windows(self, now_ms: int | None = None) -> int:
        """Forget windows (and tombstone offsets) past retention; how many windows."""
        horizon = self._horizon(now_ms)
        dropped = 0
        for windows in self.windows.values():
            old = [where for where in windows if where[1] < horizon]
            for where in old:
                del windows[where]
            dropped += len(old)
        for ended in [k for k in self.ended if k[2] < horizon]:
            del self.ended[ended]
        return dropped

    def subscribe(self, campaign_id: str) -> Subscription:
        subscription = Subscription()
        self.subscribers.setdefault(campaign_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, campaign_id: str, subscription: Subscription) -> None:
        subscribers = self.subscribers.get(campaign_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self.subscribers[campaign_id]

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self.subscribers.values())


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _epoch_ms(value: Any) -> int:
    """fastavro gives timestamp-millis as an aware datetime."""
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


class MetricsFollower:
    """Reads both metric topics into a ``LiveState`` from the beginning, then follows
    them. ``ready`` is set once every partition has been read up to the end it had
    when the follower started. A broker that cannot be reached, or topics that do
    not exist yet (no worker has run), are retried for ever; ``problem`` says why
    the follower is not ready."""

    def __init__(self, settings: Settings, state: LiveState, retry: float = 2.0) -> None:
        self._settings = settings
        self.state = state
        self.ready = asyncio.Event()
        self.problem: str | None = "the metric topics have not been read yet"
        self._retry = retry
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, per partition
        self._pruned = time.monotonic()  # when windows past retention were last dropped

    async def run(self) -> None:
        topics = [self._settings.campaign_metrics_topic, self._settings.window_metrics_topic]
        while True:
            try:
                await self._follow(topics)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError) as exc:
                self.problem = f"Kafka at {self._settings.kafka_bootstrap}: {exc}"
                log.warning("metric topics: %s; retrying in %.0f s", self.problem, self._retry)
            await asyncio.sleep(self._retry)

    async def _follow(self, topics: list[str]) -> None:
        partitions = await _topic_partitions(self._settings, topics)
        missing = sorted(set(topics) - {tp.topic for tp in partitions})
        if missing:
            self.problem = f"topic(s) {', '.join(missing)} do not exist yet (is a worker running?)"
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
            **client_options(self._settings),
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await self._seek(consumer, partitions)
            if not self.ready.is_set():
                await self._catch_up(consumer, partitions)
                self.ready.set()
                self.problem = None
                log.info("metric topics read: %d campaign(s)", len(self.state.snapshots))
            while True:
                self._apply(await consumer.getmany(timeout_ms=1000))
                now = time.monotonic()
                if now - self._pruned >= PRUNE_INTERVAL_S:
                    self.state.prune_windows()
                    self._pruned = now
        finally:
            await consumer.stop()

    async def _seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        """From the beginning the first time; after a reconnect, from what was read."""
        for tp in partitions:
            if tp in self._positions:
                consumer.seek(tp, self._positions[tp])
            else:
                await consumer.seek_to_beginning(tp)

    async def _catch_up(self, consumer: AIOKafkaConsumer,
                        partitions: list[TopicPartition]) -> None:
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            self._apply(await consumer.getmany(timeout_ms=500))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)

    def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        metrics_topic = self._settings.campaign_metrics_topic
        for tp, records in batch.items():
            if tp.topic == metrics_topic:
                for record in records:
                    self.state.apply_metrics(record.offset, record.value)
            else:
                for record in records:
                    self.state.apply_window(record.key, record.value, record.offset)
            if records:
                self._positions[tp] = records[-1].offset + 1


async def _topic_partitions(settings: Settings, topics: Iterable[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=10_000, **client_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(TopicPartition(d["topic"], p["partition"])
                  for d in described if d["error_code"] == 0 for p in d["partitions"])
