"""The composition root: the Faust app, its topics and tables, and the agents that feed
the pipeline's stages (streams/pipeline/) and send what they hand back.

    sms.sent / sms.delivery / sms.reply / sms.click -> fold_messages (FoldStage)
    <app>-message-events (keyed by message id, by us) -> fold_messages too
    <app>-message-updates (keyed by campaign) -> aggregate_campaigns (AggregateStage)
    campaign-metrics, campaign-windows (compacted) <- publish_metrics
    ClickHouse <- the sinks (streams/sink_runtime/), in a child process

The commit order and why it keeps every number exact: streams/pipeline/__init__.py and
docs/exactness.md. The engine hardening that makes Faust keep it: streams/engine/.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST

from streams.codecs import state as serde
from streams.codecs.dead_letters import dead_letter as dead_letter_record
from streams.codecs.prices import load_prices
from streams.codecs.registry import resolve as resolve_schema_ids
from streams.engine import collect_when_quiet, harden
from streams.engine.tables import rebuilding_table
from streams.kafka_security import client_options, faust_credentials
from streams.pipeline.aggregate import AggregateStage
from streams.pipeline.fold import UNSAFE_ENV, FoldStage, Record, replay_protection_enabled
from streams.pipeline.freshness import SnapshotAges
from streams.pipeline.publish import due_snapshots
from streams.pipeline.views import CampaignViews
from streams.settings import Settings
from streams.sink_runtime.process import SinkProcess, merge_expositions
from streams.sink_runtime.runner import DECODED, run_sinks
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

# CA_STATE_CACHE=0: decoded states kept, by whether the tables are on disk (rocksdb);
# 200,000 held ~280 MB, which grew through a 5-minute load run (docs/performance.md).
STATE_CACHE = {False: 200_000, True: 20_000}
EMIT_CHECKS_PER_INTERVAL = 20  # how often publish_metrics looks for due snapshots
SNAPSHOT_AGE_EVERY = 5.0  # seconds between two updates of the snapshot-age gauges
RECEIPT_SWEEP_EVERY = 1.0  # seconds between two looks for receipt deadlines passed

RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                       "value_serializer": "raw"}


def _now_ms() -> int:
    return int(time.time() * 1000)


def create_app(settings: Settings, telemetry: Telemetry | None = None) -> faust.App:
    telemetry = telemetry or Telemetry()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        # CA_KAFKA_SECURITY_PROTOCOL & co. (streams/kafka_security.py); the topics Faust
        # creates (its changelogs, its leader topic) get CA_TOPIC_REPLICATION_FACTOR.
        broker_credentials=faust_credentials(settings),
        topic_replication_factor=settings.replication(1)[0],
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
    views = CampaignViews(int(settings.window_retention_days * 86_400_000),
                          int(settings.emit_interval * 1000))
    prices = load_prices(settings.prices_file)  # CA_PRICES_FILE: the snapshots' cost figures

    def restored_messages(values: Iterable[Any]) -> None:
        orphans = 0

        def counted(values: Iterable[Any]) -> Iterator[Any]:
            nonlocal orphans
            for value in values:
                held = None if value is None else serde.unless_sent(value)
                if held is not None and held["sent"] is None:
                    orphans += len(held["seen"])
                yield value

        # one pass (the values may be read from disk): the orphan count, and the
        # receipt sweep's index rebuilt from these partitions only
        fold_stage.deadlines.rebuild(counted(values))
        telemetry.orphan_events.set(orphans)

    def restored_contributions(values: Iterable[Any]) -> None:
        views.rebuild_fields(serde.contribution_fields_of(v["contribution"])
                             for v in map(serde.as_dict, values)
                             if v["contribution"] is not None)

    # the worker's ensure_topics filled both in for the cluster it met (one broker's here
    # when they are still empty: a test's app)
    changelog_configs = {"min.insync.replicas": str(settings.replication(1)[1])}
    on_disk = settings.table_store == "rocksdb"  # CA_TABLE_STORE (Faust's store= is unused)
    messages = rebuilding_table(app, "messages", restored_messages, lazy_restore=True,
                                topic_configs=changelog_configs, on_disk=on_disk)
    contributions = rebuilding_table(app, "contributions", restored_contributions,
                                     lazy_restore=True, topic_configs=changelog_configs,
                                     on_disk=on_disk)
    engine = harden(
        app, telemetry=telemetry, bootstrap=settings.kafka_bootstrap,
        inputs={"fold": [inputs, message_events], "aggregate": [message_updates]},
        batch_max=settings.batch_max, batch_seconds=settings.batch_seconds,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        bulk_restore_seconds=settings.bulk_restore_seconds,
        client_options=client_options(settings))

    async def dead_letter(message: Record, reason: str) -> None:
        topic = message.topic
        telemetry.rejected_records.labels(topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", topic, message.partition, message.offset,
                    reason)
        await produce(dead_letters, *dead_letter_record(
            message.key or b"", message.value or b"", reason, topic, message.partition,
            message.offset, app.conf.producer_max_request_size))

    inbox_of = engine.inboxes

    async def produce(topic: faust.TopicT, key: bytes, value: bytes | None,
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

    message_updates_name = message_updates.get_topic_name()

    fold_stage = FoldStage(messages, kind_of_topic=kind_of_topic,
                           message_events_topic=message_events_name,
                           window_sizes_s=settings.window_sizes_s,
                           state_cache_size=settings.state_cache_size or STATE_CACHE[on_disk],
                           protected=protected,
                           receipt_timeout_ms=int(settings.receipt_timeout * 1000),
                           preview_window_ms=round(settings.preview_window_seconds * 1000))
    aggregate_stage = AggregateStage(contributions, views)

    @app.task
    async def fold_messages() -> None:
        """Steps 1-3 (FoldStage), then the records they ask for; step 5 follows."""
        out = engine.outbox()
        async for records in inbox_of["fold"].batches():
            # Confluent-framed records' new schema ids, from the registry (waited for)
            await resolve_schema_ids((r.value for r in records), "the fold's input")
            homes = {topic: home_partitions(topic) for topic in kind_of_topic}
            updates_in = await engine.partition_count(message_updates_name)
            effects = fold_stage.handle(records, homes, updates_in, _now_ms(), time.time())
            for record, event in effects.accepted:  # for the events sink
                DECODED.offer(record.topic, record.partition, record.offset, event)
            for record, reason in effects.dead_letters:
                await dead_letter(record, reason)
            for key, value in effects.forwards:
                await produce(message_events, key, value)
            for partition, key, value in effects.updates:
                out.add(message_updates_name, partition, key, value)
            messages.pending_to(out)
            await out.send()
            telemetry.rerouted_events.inc(len(effects.forwards))
            telemetry.duplicate_events.inc(effects.duplicates)
            telemetry.processing_seconds.observe_many(effects.ages)
            for (topic, kind), n in effects.consumed.items():
                telemetry.events_consumed.labels(topic, kind).inc(n)
            if effects.errors:
                telemetry.processing_errors.labels("fold_messages").inc(effects.errors)
            telemetry.orphan_events.inc(effects.orphans)

    @app.timer(interval=RECEIPT_SWEEP_EVERY)
    async def sweep_receipt_deadlines() -> None:
        """domain.md 3b: a timeout record on ``message-events`` for each message whose
        receipt deadline has passed (pipeline/deadlines.py); fold_messages applies them,
        so a campaign whose input has stopped still moves its pending messages to
        unknown, each once, crashes and rebalances included."""
        now = _now_ms()
        due = fold_stage.receipt_timeouts(now)
        telemetry.receipt_deadlines.set(len(fold_stage.deadlines))
        if not due:
            return
        try:
            for partition, key, value in due:
                sweep_out.add(message_events_name, partition, key, value)
            await sweep_out.send()
        except Exception:  # the next tick tries again; the timer must not die
            fold_stage.timeouts_unsent(due, now)
            log.exception("receipt timeout: %d record(s) not sent, tried again", len(due))
            return
        telemetry.receipt_timeouts.inc(len(due))
        log.info("receipt timeout: %d message(s) past their deadline", len(due))

    sweep_out = engine.outbox()

    @app.task
    async def aggregate_campaigns() -> None:
        """Step 4 (AggregateStage); step 5 follows."""
        out = engine.outbox()
        async for records in inbox_of["aggregate"].batches():
            effects = aggregate_stage.handle(records, time.time())
            telemetry.handoff_seconds.observe_many(effects.ages)
            if effects.errors:
                telemetry.processing_errors.labels("aggregate_campaigns").inc(effects.errors)
            for record, reason in effects.dead_letters:
                await dead_letter(record, reason)
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
            if now - pruned >= settings.emit_interval * 1000:
                views.prune_windows(now)  # their tombstones go out with this publish
                pruned = now
            if await publish_due(now):
                collect_when_quiet()  # what is in flight has an interval to go

    async def publish_due(now: int) -> int:
        """Publish the due snapshots; how many."""
        metrics, windows = due_snapshots(views, now, prices)
        for key, value in metrics:
            await metrics_topic.send(key=key, value=value)
        snapshot_ages.observe([key.decode() for key, _ in metrics], (), now)
        for key, window in windows:
            if window is None:  # a window past retention: compaction removes its key
                await produce(windows_topic, key, None)
            else:
                await windows_topic.send(key=key, value=window)
        telemetry.metric_snapshots.inc(len(metrics))
        return len(metrics) + len(windows)

    snapshot_ages = SnapshotAges()
    aged: set[str] = set()

    @app.timer(interval=SNAPSHOT_AGE_EVERY)
    async def snapshot_age_gauges() -> None:
        """streams/pipeline/freshness.py; on a timer of its own, so a stuck publisher
        shows as a growing wait."""
        nonlocal aged
        now = _now_ms()
        snapshot_ages.observe((), views.waiting_campaigns(), now)
        ages = snapshot_ages.ages(now, views.counts)
        for gone in aged - ages.keys():
            telemetry.snapshot_age_seconds.remove(gone)
        for campaign_id, age in ages.items():
            telemetry.snapshot_age_seconds.labels(campaign_id).set(age)
        aged = set(ages)
        telemetry.snapshot_pending_seconds.set(snapshot_ages.oldest_pending(now))

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
