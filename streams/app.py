"""The Faust app: topics, tables and thin agents (decode -> project -> hand on -> count).

Pipeline (every arrow is a Kafka topic):

    sms.sent / sms.delivery / sms.reply / sms.click  (keys not trusted)
        -> ``ingest``: decode + validate; bad records -> dead-letter topic
    <app>-message-events  (keyed by message_id, by us)
        -> ``fold_messages``: per-message fold (table ``messages``)
    <app>-message-updates (keyed by campaign_id: version, log row, contribution)
        -> ``aggregate_campaigns``: campaign / variant / contact counts (tables)
        -> ``sink_message_log``: ClickHouse ``message_log`` rows
    campaign-metrics (compacted, keyed by campaign_id): snapshots, at most one per
        campaign per ``CA_EMIT_INTERVAL``

Each stage is idempotent on its input: a redelivered event is a duplicate
``event_id`` for the fold, and a redelivered message update carries a version no
newer than the one the campaign stage already applied for that message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from projections.errors import InvalidEventError, SinkError
from projections.events import EVENT_TYPES
from projections.message import MessageState, apply_event
from projections.message_log import MessageLogRow, message_log_row
from projections.metrics import apply_contribution_change, message_contribution, summarize
from sinks import open_store
from sinks.plan import dedup_token, plan_message_log_insert
from sinks.store import ClickHouseStore
from streams import serde
from streams.codec import decode_event
from streams.outputs import encode_campaign_metrics
from streams.settings import Settings
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                       "value_serializer": "raw"}


class DirtyCampaigns:
    """Campaigns whose counts changed since their last published snapshot."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def mark(self, campaign_id: str) -> None:
        self._ids.add(campaign_id)

    def take(self) -> list[str]:
        ids, self._ids = sorted(self._ids), set()
        return ids


def held_events(state: MessageState) -> int:
    """Events waiting for their message's `sent` event (orphans, for now)."""
    return len(state.seen) if state.sent is None else 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def create_app(settings: Settings, telemetry: Telemetry | None = None) -> faust.App:
    telemetry = telemetry or Telemetry()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=str(settings.data_dir / f"worker-{settings.web_port}"),
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Faust's 60 s default keeps a SIGKILLed worker's partitions idle for a minute.
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 5),
        key_serializer="raw",
        value_serializer="raw",
    )
    kind_of_topic = {name: kind for kind, name in settings.input_topics.items()}
    inputs = app.topic(*settings.input_topics.values(), **RAW)
    dead_letters = app.topic(settings.dead_letter_topic, **RAW)
    message_events = app.topic(settings.message_events_topic, internal=True, **RAW)
    message_updates = app.topic(settings.message_updates_topic, internal=True, **RAW)
    metrics_topic = app.topic(settings.campaign_metrics_topic, **RAW)

    json_table: dict[str, Any] = {"key_type": str}  # keys and values as JSON
    messages = app.Table("messages", default=None, **json_table)
    contributions = app.Table("contributions", default=None, **json_table)
    contacts = app.Table("contacts", default=None, **json_table)
    campaigns = app.Table("campaigns", default=None, **json_table)
    dirty = DirtyCampaigns()

    async def dead_letter(event: EventT, reason: str) -> None:
        topic = event.message.topic
        telemetry.rejected_records.labels(topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", topic, event.message.partition,
                    event.message.offset, reason)
        await dead_letters.send(
            key=event.key,
            value=event.value,
            headers={
                "reason": reason.encode(),
                "source-topic": topic.encode(),
                "source-partition": str(event.message.partition).encode(),
                "source-offset": str(event.message.offset).encode(),
            },
        )

    @app.agent(inputs)
    async def ingest(stream: faust.StreamT) -> AsyncIterator[None]:
        async for event in stream.events():
            topic = event.message.topic
            expected = kind_of_topic.get(topic, "?")
            try:
                decoded = decode_event(event.value)
                kind = EVENT_TYPES[type(decoded)]
                telemetry.events_consumed.labels(topic, kind).inc()
                if kind != expected:
                    raise InvalidEventError(f"a {kind} record on the {expected} topic")
            except InvalidEventError as exc:
                telemetry.events_consumed.labels(topic, "invalid").inc()
                await dead_letter(event, exc.reason)
                continue
            telemetry.processing_seconds.observe(max(time.time() - event.message.timestamp, 0))
            await message_events.send(key=decoded.message_id.encode(), value=event.value)
            yield None

    @app.agent(message_events)
    async def fold_messages(stream: faust.StreamT) -> AsyncIterator[None]:
        async for event in stream.events():
            try:
                decoded = decode_event(event.value)
                stored = messages.get(decoded.message_id)
                state = (serde.state_from_dict(stored) if stored
                         else MessageState(decoded.message_id))
                new = apply_event(state, decoded)
                if new is state:
                    telemetry.duplicate_events.inc()
                else:
                    messages[decoded.message_id] = serde.state_to_dict(new)
                    telemetry.orphan_events.inc(held_events(new) - held_events(state))
                row = message_log_row(new, updated_at=_now_ms())
                if row is not None:
                    # Sent even for a duplicate: if a crash lost the previous hand-off,
                    # this one repairs it; the campaign stage skips versions it has.
                    await message_updates.send(
                        key=row.campaign_id.encode(),
                        value=serde.encode_message_update(
                            new.version, row, message_contribution(new)
                        ),
                    )
            except InvalidEventError as exc:  # cannot happen after ingest; never crash
                await dead_letter(event, exc.reason)
            except Exception:
                telemetry.processing_errors.labels("fold_messages").inc()
                log.exception("fold failed at %s[%s]@%s", event.message.topic,
                              event.message.partition, event.message.offset)
                await dead_letter(event, "processing error in fold_messages")
            yield None

    @app.agent(message_updates)
    async def aggregate_campaigns(stream: faust.StreamT) -> AsyncIterator[None]:
        async for event in stream.events():
            try:
                version, row, contribution = serde.decode_message_update(event.value)
                previous = contributions.get(row.message_id)
                if previous is not None and previous["version"] >= version:
                    continue
                old = serde.contribution_from_dict(previous["contribution"]) if previous else None
                if old != contribution:
                    contact_key = f"{row.campaign_id}\x1f{row.contact_id}"
                    counts, activity = apply_contribution_change(
                        serde.counts_from_dict(campaigns.get(row.campaign_id)),
                        serde.activity_from_dict(contacts.get(contact_key)),
                        old,
                        contribution,
                    )
                    campaigns[row.campaign_id] = serde.counts_to_dict(counts)
                    contacts[contact_key] = serde.activity_to_dict(activity)
                    dirty.mark(row.campaign_id)
                contributions[row.message_id] = {
                    "version": version,
                    "contribution": serde.contribution_to_dict(contribution),
                }
            except Exception:
                telemetry.processing_errors.labels("aggregate_campaigns").inc()
                log.exception("aggregation failed at %s[%s]@%s", event.message.topic,
                              event.message.partition, event.message.offset)
                await dead_letter(event, "processing error in aggregate_campaigns")
            yield None

    @app.timer(interval=settings.emit_interval)
    async def publish_metrics() -> None:
        for campaign_id in dirty.take():
            stored = campaigns.get(campaign_id)
            if stored is None:  # partition moved to another worker meanwhile
                continue
            summary = summarize(campaign_id, serde.counts_from_dict(stored))
            await metrics_topic.send(
                key=campaign_id.encode(), value=encode_campaign_metrics(summary, _now_ms())
            )
            telemetry.metric_snapshots.inc()

    sink = MessageLogSink(settings, telemetry)

    @app.agent(message_updates)
    async def sink_message_log(stream: faust.StreamT) -> AsyncIterator[None]:
        async for events in stream.take_events(  # type: ignore[attr-defined]  # not in StreamT
            settings.sink_batch_rows, within=settings.sink_batch_seconds
        ):
            await sink.write(events)
            yield None

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(telemetry.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.telemetry = telemetry  # type: ignore[attr-defined]  # for tests and the CLI
    return app


class MessageLogSink:
    """Writes message-log rows in batches; returns only when ClickHouse has them.

    Faust acks a batch's events (so their offsets become committable) only after
    ``write`` returns, so an insert that fails is retried, never skipped.
    """

    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self._settings = settings
        self._telemetry = telemetry
        self._store: ClickHouseStore | None = None

    async def _open(self) -> ClickHouseStore:
        if self._store is None:
            store = await asyncio.to_thread(open_store, self._settings)
            await asyncio.to_thread(store.migrate)
            self._store = store
        return self._store

    async def write(self, events: list[EventT]) -> None:
        latest: dict[str, tuple[int, MessageLogRow]] = {}
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        for event in events:
            version, row, _ = serde.decode_message_update(event.value)
            if row.message_id not in latest or latest[row.message_id][0] < version:
                latest[row.message_id] = (version, row)
            tp = (event.message.topic, event.message.partition)
            lo, hi = ranges.get(tp, (event.message.offset, event.message.offset))
            ranges[tp] = (min(lo, event.message.offset), max(hi, event.message.offset))
        token = "|".join(dedup_token(t, p, lo, hi) for (t, p), (lo, hi) in sorted(ranges.items()))
        plan = plan_message_log_insert([row for _, row in latest.values()], token)
        delay = 0.5
        while True:
            try:
                store = await self._open()
                with self._telemetry.sink_batch_seconds.time():
                    await asyncio.to_thread(store.insert, plan)
                self._telemetry.sink_rows.labels("message_log").inc(len(plan.rows))
                return
            except SinkError as exc:
                self._telemetry.sink_errors.inc()
                wait = exc.retry_after or delay
                log.warning("ClickHouse insert failed (%s); retrying in %.1fs", exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)
