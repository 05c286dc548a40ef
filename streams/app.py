"""The Faust app: topics, tables and thin agents (decode -> project -> hand on -> count).

Pipeline (every arrow is a Kafka topic):

    sms.sent / sms.delivery / sms.reply / sms.click  (keys not trusted)
        -> ``fold_messages``: decode + validate (bad records -> dead-letter topic);
           a record in its message's own partition is folded right there, any
           other is forwarded to
    <app>-message-events  (keyed by message_id, by us)
        -> ``fold_messages`` too: per-message fold (table ``messages``)
    <app>-message-updates (keyed by campaign_id: version, log row, contribution)
        -> ``aggregate_campaigns``: newest contribution per message (table), and
           campaign / variant / contact / window counts derived from it
        -> ClickHouse ``message_log`` rows (``streams/sink_runtime/runner.py``, own group;
           the input topics -> ``events``, ``replies``, ``link_clicks`` likewise)
    campaign-metrics (compacted, keyed by campaign_id): snapshots, at most one per
        campaign per ``CA_EMIT_INTERVAL``

Why the numbers stay exact through crashes and redelivery: ``streams/engine/tables.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.types import Message
from prometheus_client import CONTENT_TYPE_LATEST

from projections.errors import InvalidEventError
from projections.events import EVENT_TYPES, Event
from projections.message import MessageState
from projections.message_log import message_log_row
from projections.metrics import Change, ContributionFields, message_contribution, summarize
from streams.codecs import state as serde
from streams.codecs.dead_letters import dead_letter as dead_letter_record
from streams.codecs.input_avro import decode_event
from streams.codecs.output_avro import (
    encode_campaign_metrics,
    encode_campaign_window,
    window_record_key,
)
from streams.codecs.routing import message_partition
from streams.engine import commit_watchdog as watchdog
from streams.engine import delivery_guard as delivery
from streams.engine import gc_tuning, restore
from streams.engine import inbox as bulk
from streams.engine import patches as faust_fixes
from streams.engine.outbox import Outbox
from streams.engine.positions import positions_of
from streams.engine.tables import UNSAFE_ENV, fold, rebuilding_table, replay_protection_enabled
from streams.pipeline.views import CampaignViews
from streams.settings import Settings
from streams.sink_runtime.process import SinkProcess, merge_expositions
from streams.sink_runtime.runner import DECODED, run_sinks
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

EMIT_CHECKS_PER_INTERVAL = 20  # how often publish_metrics looks for due snapshots

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
        datadir=str(settings.worker_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        # Faust serves table contents (a message's phone and contact name) at /table
        # and the cluster layout at /router to anyone who reaches the port; the API
        # service (streams/api) is the read side, so both stay off.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        # A standby copy costs its worker Faust's record-by-record changelog reading
        # all the time; a takeover restores in bulk instead (streams/engine/restore.py).
        table_standby_replicas=settings.standby_replicas,
        producer_acks=-1,
        # Let the producer gather a batch's records into few requests.
        producer_linger=settings.producer_linger_ms / 1000,
        # Faust's 20-minute default let one unanswered produce request stall the
        # worker and its commits that long; a delivery that fails stops the
        # worker (streams/engine/delivery_guard.py).
        producer_request_timeout=settings.producer_request_timeout,
        # Faust's 60 s default keeps a SIGKILLed worker's partitions idle for a minute.
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 5),
        key_serializer="raw",
        value_serializer="raw",
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms  # type: ignore[attr-defined]  # fix 6
    kind_of_topic = {name: kind for kind, name in settings.input_topics.items()}
    inputs = app.topic(*settings.input_topics.values(), **RAW)
    dead_letters = app.topic(settings.dead_letter_topic, **RAW)
    message_events = app.topic(settings.message_events_topic, internal=True, **RAW)
    message_updates = app.topic(settings.message_updates_topic, internal=True, **RAW)
    metrics_topic = app.topic(settings.campaign_metrics_topic, **RAW)
    windows_topic = app.topic(settings.window_metrics_topic, **RAW)

    guard = delivery.DeliveryGuard() if delivery.guard_enabled() else None
    if guard is not None:
        guard.install(app.producer)
    else:
        log.warning("%s is set: failed deliveries are ignored (tests only)", delivery.UNSAFE_ENV)
    protected = replay_protection_enabled()
    if not protected:
        log.warning("%s is set: replay protection is OFF (tests only)", UNSAFE_ENV)
    views = CampaignViews(int(settings.window_retention_days * 86_400_000),
                          int(settings.emit_interval * 1000))

    def restored_messages(values: Iterable[Any]) -> None:
        telemetry.orphan_events.set(sum(len(v["seen"]) for v in map(serde.unless_sent, values)
                                        if v is not None and v["sent"] is None))

    def restored_contributions(values: Iterable[Any]) -> None:
        views.rebuild_fields(serde.contribution_fields_of(v["contribution"])
                             for v in map(serde.as_dict, values)
                             if v["contribution"] is not None)

    messages = rebuilding_table(app, "messages", restored_messages, lazy_restore=True)
    contributions = rebuilding_table(app, "contributions", restored_contributions,
                                     lazy_restore=True)
    if settings.bulk_restore_seconds > 0:
        def bulk_restored(records: Mapping[str, int], seconds: float) -> None:
            for table, n in records.items():
                telemetry.restored_records.labels(table).inc(n)
            telemetry.restore_seconds.observe(seconds)

        # Faust's recovery gives up on a step that takes longer than its broker
        # request timeout (90 s): stay well inside it.
        restore.install(app, restore.BulkRestore(
            settings.kafka_bootstrap,
            min(settings.bulk_restore_seconds, app.conf.broker_request_timeout / 2),
            bulk_restored))

    async def dead_letter(message: Message, reason: str) -> None:
        topic = message.topic
        telemetry.rejected_records.labels(topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", topic, message.partition, message.offset,
                    reason)
        await produce(dead_letters, *dead_letter_record(
            message.key or b"", message.value or b"", reason, topic, message.partition,
            message.offset, app.conf.producer_max_request_size))

    inbox_of = {name: bulk.Inbox(app, topics, settings.batch_max, settings.batch_seconds)
                for name, topics in (("fold", [inputs, message_events]),
                                     ("aggregate", [message_updates]))}
    bulk.install(app, inbox_of.values())
    positions_of(app.consumer).on_reread = lambda reason: telemetry.rereads.labels(reason).inc()
    watchdog.install(app, telemetry)

    async def produce(topic: faust.TopicT, key: bytes, value: bytes,
                      headers: dict[str, bytes] | None = None) -> None:
        """Hand a record to the producer (Faust flushes it before committing, step 5)."""
        await app.producer.send(topic.get_topic_name(), key, value, None, None, headers)

    @app.task
    async def _log_levels() -> None:
        """Mode's logging setup leaves some library loggers at DEBUG (their records
        were built on every produce, then filtered out): hold them to our level."""
        level = logging.getLevelName(settings.log_level.upper())
        for name in ("", "aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(level)

    message_events_name = settings.message_events_topic
    consumer: Any = app.consumer

    def home_partitions(topic: str) -> int | None:
        """Partitions of ``message-events`` if ``topic`` has as many (Faust's assignor
        then gives its partition p to the owner of the ``messages`` partition p), else
        ``None``."""
        count = consumer.topic_partitions(message_events_name)
        return count if count and consumer.topic_partitions(topic) == count else None

    async def admit(event: Message, consumed: Counter[tuple[str, str]],
                    homes: dict[str, int | None]) -> Event | None:
        """Step 1 of streams/engine/tables.py for one input record: the decoded event if it
        is in its message's own partition (``homes``: ``home_partitions`` per input
        topic); otherwise it is dead-lettered or forwarded to ``message-events`` keyed
        by message id, and ``None``."""
        topic = event.topic
        expected = kind_of_topic.get(topic, "?")
        try:
            decoded = decode_event(event.value or b"")
            kind = EVENT_TYPES[type(decoded)]
            consumed[topic, kind] += 1
            if kind != expected:
                raise InvalidEventError(f"a {kind} record on the {expected} topic")
        except InvalidEventError as exc:
            consumed[topic, "invalid"] += 1
            await dead_letter(event, exc.reason)
            return None
        DECODED.offer(topic, event.partition, event.offset, decoded)  # for the events sink
        key = decoded.message_id.encode()
        partitions = homes.get(topic)
        if partitions is None or event.partition != message_partition(key, partitions):
            telemetry.rerouted_events.inc()
            await produce(message_events, key, event.value or b"")
            return None
        return decoded

    # Decoded states of recently written messages, beside the table's bytes:
    # decoding a stored state again cost more than folding an event into it.
    # An entry counts only while the table still holds the very bytes it was
    # made from, so a recovery's restored values are always decoded afresh.
    state_cache: dict[str, tuple[bytes, MessageState]] = {}

    def stored_state(key: str) -> MessageState:
        stored = messages.raw(key)
        if stored is None:
            return MessageState(key)
        hit = state_cache.get(key)
        if hit is not None and hit[0] is stored:
            return hit[1]
        return serde.state_from_dict(serde.as_dict(stored))

    def remember(key: str, value: bytes, state: MessageState) -> None:
        if len(state_cache) >= settings.state_cache_size:
            state_cache.clear()
        state_cache[key] = (value, state)

    def outbox() -> Outbox:
        producer: Any = app.producer
        return Outbox(producer._ensure_producer, guard.done if guard is not None else None)

    message_updates_name = message_updates.get_topic_name()

    async def partition_count(topic: str) -> int:
        """The topic's partitions, from the producer's metadata (fetched if missing,
        as ``producer.send`` does before it partitions a record)."""
        client = app.producer._ensure_producer().client  # type: ignore[attr-defined]
        partitions = client.cluster.partitions_for_topic(topic)
        if not partitions:
            await client._wait_on_metadata(topic)
            partitions = client.cluster.partitions_for_topic(topic)
        return len(partitions)

    @app.task
    async def fold_messages() -> None:
        """Steps 2 and 3 of streams/engine/tables.py, one table write per message per batch."""
        out = outbox()
        async for events in inbox_of["fold"].batches():
            # per message: its state now, whether the batch changed it, its partition,
            # its state before the batch
            touched: dict[str, tuple[MessageState, bool, int, MessageState]] = {}
            duplicates = 0
            consumed: Counter[tuple[str, str]] = Counter()
            ages: list[float] = []
            now_s = time.time()
            homes = {topic: home_partitions(topic) for topic in kind_of_topic}
            for event in events:
                try:
                    if event.topic == message_events_name:
                        decoded = decode_event(event.value or b"")
                    else:
                        admitted = await admit(event, consumed, homes)
                        if admitted is None:
                            continue
                        decoded = admitted
                        ages.append(max(now_s - event.timestamp, 0.0))
                    key = decoded.message_id
                    if key in touched:
                        state, changed, _, before = touched[key]
                    else:
                        state = before = stored_state(key)
                        changed = False
                    new = fold(state, decoded, protected)
                    duplicates += new is state
                    touched[key] = (new, changed or new is not state, event.partition, before)
                except InvalidEventError as exc:  # forwarded records were valid; never crash
                    await dead_letter(event, exc.reason)
            telemetry.duplicate_events.inc(duplicates)
            telemetry.processing_seconds.observe_many(ages)
            for (topic, kind), n in consumed.items():
                telemetry.events_consumed.labels(topic, kind).inc(n)
            orphans = 0
            now = _now_ms()
            # the default partitioner's choice for a record keyed by campaign id
            updates_in = await partition_count(message_updates_name) if touched else 0
            for key, (state, changed, partition, before) in touched.items():
                try:
                    if changed:
                        value = serde.encode_state(state, partition)
                        messages.put(partition, key, value)
                        remember(key, value, state)
                        orphans += held_events(state) - held_events(before)
                    row = message_log_row(state, updated_at=now)
                    if row is not None:
                        contribution = message_contribution(state, settings.window_sizes_s)
                        campaign_key = row.campaign_id.encode()
                        out.add(message_updates_name,
                                message_partition(campaign_key, updates_in), campaign_key,
                                serde.encode_message_update(state.version, row, contribution))
                except Exception:
                    telemetry.processing_errors.labels("fold_messages").inc()
                    log.exception("fold failed for a message in partition %s", partition)
            messages.pending_to(out)
            await out.send()
            telemetry.orphan_events.inc(orphans)

    @app.task
    async def aggregate_campaigns() -> None:
        """Step 4 of streams/engine/tables.py, one table write per message per batch."""
        out = outbox()
        async for events in inbox_of["aggregate"].batches():
            now_s = time.time()
            telemetry.handoff_seconds.observe_many(max(now_s - e.timestamp, 0.0) for e in events)
            newest: dict[str, tuple[int, Any, ContributionFields | None, int]] = {}
            fields_of = serde.contribution_fields_of
            for event in events:
                try:
                    message_id, version, contribution = serde.decode_update_head(
                        event.value or b"")
                    fields = None if contribution is None else fields_of(contribution)
                except Exception:
                    telemetry.processing_errors.labels("aggregate_campaigns").inc()
                    log.exception("undecodable update at %s[%s]@%s", event.topic,
                                  event.partition, event.offset)
                    await dead_letter(event, "processing error in aggregate_campaigns")
                    continue
                seen = newest.get(message_id)
                if seen is None or seen[0] < version:
                    newest[message_id] = (version, contribution, fields, event.partition)
            changes: list[Change] = []
            for key, (version, contribution, fields, partition) in newest.items():
                previous = contributions.peek(key)
                if previous is not None and previous["version"] >= version:
                    continue
                old = previous["contribution"] if previous else None
                contributions.put(partition, key, serde.dumps(
                    {"version": version, "contribution": contribution, "p": partition}))
                if old != contribution:
                    changes.append((None if old is None else fields_of(old), fields))
            views.move_all(changes)
            contributions.pending_to(out)
            await out.send()

    @app.task
    async def publish_metrics() -> None:
        """Snapshots of changed campaigns and windows: each key at most once per
        ``CA_EMIT_INTERVAL`` and as soon as that allows (looked at every 1/20 of it)."""
        pruned = 0
        while True:
            await asyncio.sleep(settings.emit_interval / EMIT_CHECKS_PER_INTERVAL)
            now = _now_ms()
            if await publish_due(now):
                gc_tuning.collect_when_quiet()  # what is in flight has an interval to go
            if now - pruned >= settings.emit_interval * 1000:
                views.prune_windows(now)
                pruned = now

    async def publish_due(now: int) -> int:
        """Publish the due snapshots; how many."""
        published = 0
        for campaign_id, counts in views.take_dirty(now):
            summary = summarize(campaign_id, counts)
            await metrics_topic.send(
                key=campaign_id.encode(), value=encode_campaign_metrics(summary, now)
            )
            telemetry.metric_snapshots.inc()
            published += 1
        for campaign_id, key, counts in views.take_dirty_windows(now):
            await windows_topic.send(
                key=window_record_key(campaign_id, key),
                value=encode_campaign_window(campaign_id, key, counts, now),
            )
            published += 1
        return published

    @app.task
    async def run_clickhouse_sinks() -> None:
        """``message_log``; ``events``, ``replies``, ``link_clicks``
        (streams/sink_runtime/runner.py)."""
        if not settings.sink_in_worker:
            log.info("the ClickHouse sinks are not run by this worker (CA_SINK_IN_WORKER=0)")
            return
        if sinks is not None:
            await sinks.run()
        else:
            await run_sinks(settings, telemetry)

    sinks = SinkProcess(settings, telemetry) if settings.sink_in_worker and settings.sink_child \
        else None

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        """This worker's metrics, its sink process's added in (streams/sink_runtime/process.py)."""
        child = await sinks.metrics_text() if sinks is not None else None
        return web.bytes(merge_expositions(telemetry.registry, child),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.telemetry = telemetry  # type: ignore[attr-defined]  # for tests and the CLI
    return app
