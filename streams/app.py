"""The Faust app: topics, tables and thin agents (decode -> project -> hand on -> count).

Pipeline (every arrow is a Kafka topic):

    sms.sent / sms.delivery / sms.reply / sms.click  (keys not trusted)
        -> ``ingest``: decode + validate; bad records -> dead-letter topic
    <app>-message-events  (keyed by message_id, by us)
        -> ``fold_messages``: per-message fold (table ``messages``)
    <app>-message-updates (keyed by campaign_id: version, log row, contribution)
        -> ``aggregate_campaigns``: newest contribution per message (table), and
           campaign / variant / contact / window counts derived from it
        -> ClickHouse ``message_log`` rows (``streams/sink_runner.py``, own group)
    campaign-metrics (compacted, keyed by campaign_id): snapshots, at most one per
        campaign per ``CA_EMIT_INTERVAL``

Why the numbers stay exact through crashes and redelivery: ``streams/recovery.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from projections.errors import InvalidEventError
from projections.events import EVENT_TYPES
from projections.message import MessageState
from projections.message_log import message_log_row
from projections.metrics import message_contribution, summarize
from streams import faust_fixes, serde
from streams.codec import decode_event
from streams.outputs import encode_campaign_metrics, encode_campaign_window, window_record_key
from streams.recovery import UNSAFE_ENV, fold, rebuilding_table, replay_protection_enabled
from streams.settings import Settings
from streams.sink_runner import ClickHouseSink
from streams.telemetry import Telemetry
from streams.views import CampaignViews

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                       "value_serializer": "raw"}


def held_events(state: MessageState) -> int:
    """Events waiting for their message's `sent` event (orphans, for now)."""
    return len(state.seen) if state.sent is None else 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def create_app(settings: Settings, telemetry: Telemetry | None = None) -> faust.App:
    faust_fixes.install()
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
    windows_topic = app.topic(settings.window_metrics_topic, **RAW)

    protected = replay_protection_enabled()
    if not protected:
        log.warning("%s is set: replay protection is OFF (tests only)", UNSAFE_ENV)
    views = CampaignViews(int(settings.window_retention_days * 86_400_000))

    def restored_messages(values: Iterable[Any]) -> None:
        telemetry.orphan_events.set(
            sum(len(v["seen"]) for v in values if v["sent"] is None))

    def restored_contributions(values: Iterable[Any]) -> None:
        views.rebuild(c for v in values
                      if (c := serde.contribution_from_dict(v["contribution"])) is not None)

    messages = rebuilding_table(app, "messages", restored_messages)
    contributions = rebuilding_table(app, "contributions", restored_contributions)

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
        """Step 1 of streams/recovery.py."""
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
        """Steps 2 and 3 of streams/recovery.py."""
        async for event in stream.events():
            try:
                decoded = decode_event(event.value)
                stored = messages.get(decoded.message_id)
                state = (serde.state_from_dict(stored) if stored
                         else MessageState(decoded.message_id))
                new = fold(state, decoded, protected)
                if new is state:
                    telemetry.duplicate_events.inc()
                else:
                    messages[decoded.message_id] = serde.state_to_dict(new) | {
                        "p": event.message.partition}
                    telemetry.orphan_events.inc(held_events(new) - held_events(state))
                row = message_log_row(new, updated_at=_now_ms())
                if row is not None:
                    contribution = message_contribution(new, settings.window_sizes_s)
                    await message_updates.send(
                        key=row.campaign_id.encode(),
                        value=serde.encode_message_update(new.version, row, contribution),
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
        """Step 4 of streams/recovery.py."""
        async for event in stream.events():
            try:
                version, row, contribution = serde.decode_message_update(event.value)
                previous = contributions.get(row.message_id)
                if previous is not None and previous["version"] >= version:
                    continue
                old = serde.contribution_from_dict(previous["contribution"]) if previous else None
                contributions[row.message_id] = {
                    "version": version,
                    "contribution": serde.contribution_to_dict(contribution),
                    "p": event.message.partition,
                }
                if old != contribution:
                    views.move(old, contribution)
            except Exception:
                telemetry.processing_errors.labels("aggregate_campaigns").inc()
                log.exception("aggregation failed at %s[%s]@%s", event.message.topic,
                              event.message.partition, event.message.offset)
                await dead_letter(event, "processing error in aggregate_campaigns")
            yield None

    @app.timer(interval=settings.emit_interval)
    async def publish_metrics() -> None:
        now = _now_ms()
        for campaign_id, counts in views.take_dirty():
            summary = summarize(campaign_id, counts)
            await metrics_topic.send(
                key=campaign_id.encode(), value=encode_campaign_metrics(summary, now)
            )
            telemetry.metric_snapshots.inc()
        for campaign_id, key, counts in views.take_dirty_windows(now):
            await windows_topic.send(
                key=window_record_key(campaign_id, key),
                value=encode_campaign_window(campaign_id, key, counts, now),
            )
        views.prune_windows(now)

    sink = ClickHouseSink(settings, telemetry)

    @app.task
    async def run_clickhouse_sink() -> None:
        while True:
            try:
                await sink.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # never take the worker down with it; restart it
                telemetry.processing_errors.labels("clickhouse_sink").inc()
                log.exception("ClickHouse sink stopped; restarting it in 5 s")
                await asyncio.sleep(5)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(telemetry.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.telemetry = telemetry  # type: ignore[attr-defined]  # for tests and the CLI
    return app
