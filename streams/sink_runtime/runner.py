"""The ClickHouse sinks: one consumer group each, inserting exactly what they commit.

- ``ClickHouseSink``: ``message-updates`` -> ``message_log`` (newest version of each
  message in a batch), group ``<app_id>-clickhouse-sink``;
- ``ClickHouseEventsSink``: every valid record of the four input topics -> ``events``
  (raw, for audit), ``replies`` and ``link_clicks``, group ``<app_id>-clickhouse-events-sink``.

A worker runs them in a child process (``streams/sink_runtime/process.py``), so a slow
or unavailable ClickHouse pauses only the sinks (their lag grows), never the metrics.
Each batch's boundaries are committed with its offset before the insert, so a batch
replayed after a crash carries the same deduplication token and is written once (the
steps in ``_PartitionSink._flush``; why it holds: docs/sinks.md). With the embedded
engine only the process holding ``<chdb dir>.sink.lock`` runs the sinks and serves
readers (``_EngineOwner``); with a server every worker runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from projections.errors import InvalidEventError
from projections.events import Event
from sinks import ClickHouseStore, Credentials, Retention, open_store
from sinks.errors import SinkError
from sinks.plan import (
    InsertPlan,
    SourcedEvent,
    dedup_token,
    plan_event_inserts,
    plan_message_log_insert,
)
from streams.codecs import state as serde
from streams.codecs.dead_letters import dead_letter
from streams.codecs.input_avro import broker_time_ms, decode_input
from streams.codecs.registry import resolve as resolve_schema_ids
from streams.kafka_security import client_options
from streams.settings import Settings
from streams.sink_runtime.batches import PartitionBatches, intent_metadata, parse_intent
from streams.sink_runtime.freshness import LAG_EVERY, ROWS_EVERY, SinkLag
from streams.telemetry import Telemetry

if TYPE_CHECKING:
    from sinks.sql_endpoint import SqlEndpoint

log = logging.getLogger(__name__)

# Test-only: send no deduplication token, so a replayed batch is written again.
# It exists for the negative control of the crash tests; never set it in production.
UNSAFE_NO_DEDUP_ENV = "CA_UNSAFE_DISABLE_SINK_DEDUP"

Records = Sequence[ConsumerRecord]

# The dead-letter producer's limit (aiokafka's default ``max_request_size``).
DEAD_LETTER_MAX_BYTES = 1_048_576


def plan_message_updates(records: Records, token: str | None) -> list[InsertPlan]:
    """The newest ``message_log`` row of each message in one partition's batch."""
    latest: dict[str, tuple[int, ConsumerRecord]] = {}
    for record in records:
        message_id, version = serde.update_identity(record.value)
        if message_id not in latest or latest[message_id][0] < version:
            latest[message_id] = (version, record)
    rows = [serde.decode_update_row(r.value)[1] for _, r in latest.values()]
    sources = [(r.topic, r.partition, r.offset) for _, r in latest.values()]
    return [plan_message_log_insert(rows, token, sources)]


class DecodedEvents:
    """Input events the worker's fold has decoded and accepted, for the events sink of
    the same process, which would otherwise decode the same bytes again (about 3 %
    of a worker's CPU). Keyed by the record's (topic, partition, offset): the bytes
    there never change, so the event is the one the sink would decode. Offered only
    while an events sink runs in this process; bounded (oldest dropped first: the
    sink then decodes those itself): the sink trails the fold by a batch or two,
    and 50,000 events take about 26 MB."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self.readers = 0
        self._events: dict[tuple[str, int, int], Event] = {}

    def offer(self, topic: str, partition: int, offset: int, event: Event) -> None:
        if not self.readers:
            return
        events = self._events
        if len(events) >= self.capacity:
            del events[next(iter(events))]
        events[topic, partition, offset] = event

    def take(self, topic: str, partition: int, offset: int) -> Event | None:
        return self._events.pop((topic, partition, offset), None)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        self.readers += 1
        try:
            yield
        finally:
            self.readers -= 1
            if not self.readers:
                self._events.clear()


DECODED = DecodedEvents()  # process-wide on purpose: the fold and the sink share it


def _no_event(topic: str, partition: int, offset: int) -> Event | None:
    return None


def plan_message_events(records: Records, token: str | None, kind_of_topic: dict[str, str],
                        decoded: Callable[[str, int, int], Event | None] = _no_event
                        ) -> list[InsertPlan]:
    """Every valid input event of one partition's batch into ``events``, ``replies``,
    ``link_clicks``.

    A record the worker dead-letters (it does not decode, or its type is not its
    topic's; judged, as the fold judges it, at the record's broker timestamp) is left
    out and logged by position only; the dead-letter topic has it.
    ``decoded`` gives the events already decoded and accepted (``DecodedEvents``).
    """
    sourced: list[SourcedEvent] = []
    for record in records:
        known = decoded(record.topic, record.partition, record.offset)
        if known is not None:
            sourced.append(SourcedEvent(record.topic, record.partition, record.offset, known))
            continue
        try:
            event, _ = decode_input(record.value, kind_of_topic.get(record.topic),
                                    broker_time_ms(record.timestamp))
            sourced.append(SourcedEvent(record.topic, record.partition, record.offset, event))
        except InvalidEventError as exc:
            log.debug("events sink skips %s[%d]@%d: %s", record.topic, record.partition,
                      record.offset, exc.reason)
    return plan_event_inserts(sourced, token)


async def _take_flock(path: Path) -> IO[str]:
    """An exclusive ``flock`` on ``path``, waited for; closing the handle releases it
    (and so does the process's death, ``kill -9`` included). A state directory that
    cannot be written is waited for too, its reason logged: exiting would only have
    the worker start this process again and again."""
    delay = 2.0
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle: IO[str] = path.open("a")
        except OSError as exc:
            log.error("cannot take the sink lock %s (%s): fix the state directory "
                      "(CA_DATA_DIR, CA_CHDB_PATH); trying again in %.0f s",
                      path, exc.strerror or exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.close()
        await asyncio.sleep(2.0)  # another process owns the engine; take over if it dies


def sink_lock_path(settings: Settings) -> Path:
    """``<chdb dir>.sink.lock``: held by the one process that owns the embedded engine."""
    return settings.chdb_path.with_name(settings.chdb_path.name + ".sink.lock")


async def _insist(name: str, telemetry: Telemetry, work: Callable[[], object], *,
                  refusable: bool = False) -> None:
    """Run ``work`` in a thread until it succeeds; never give up, never skip. With
    ``refusable``, a non-transient ``SinkError`` (``retry_after`` None: trying again
    fails the same way) is raised instead of retried."""
    delay = 0.5
    while True:
        try:
            await asyncio.to_thread(work)
            return
        except SinkError as exc:
            telemetry.sink_errors.inc()
            if refusable and exc.retry_after is None:
                raise
            wait = exc.retry_after or delay
            log.warning("%s: ClickHouse call failed (%s); retrying in %.1fs", name, exc, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30.0)


async def _serve_sql(settings: Settings) -> SqlEndpoint | None:
    """The read-only SQL endpoint on the owned engine, or None if it cannot serve.
    Readers then fail (exit 4, 503), but the sinks go on: restarting them would find
    the port taken again, and the message log would stop."""
    from sinks.sql_endpoint import SqlEndpoint

    endpoint = SqlEndpoint(settings.chdb_path, settings.clickhouse_database,
                           credentials=Credentials(*settings.clickhouse_login()))
    try:
        port = await endpoint.start(settings.sql_host, settings.sql_port)
    except (OSError, SinkError) as exc:
        log.error("cannot serve the read-only SQL endpoint on %s:%d (%s); the sinks go on, "
                  "but export and the API cannot read the embedded engine until this "
                  "process restarts", settings.sql_host, settings.sql_port, exc)
        return None
    log.info("read-only SQL endpoint of the embedded engine on http://%s:%d",
             settings.sql_host, port)
    return endpoint


class _EngineOwner:
    """The process's one store for its sinks (both share it) and, with chdb, its
    ownership of the engine directory.

    With chdb the first sink to start takes ``<chdb dir>.sink.lock`` (waiting while
    another process holds it), opens the store with ``hold_open=True``, runs the
    migrations and starts the read-only SQL endpoint on ``CA_SQL_HOST:CA_SQL_PORT``;
    every reader goes through that endpoint, so nothing else opens the directory.
    ``run_sinks`` holds it for the process's life; when the last holder lets go,
    the endpoint stops, the store closes and the lock is released, in that order.
    With a server there is no lock and no endpoint: every process migrates and writes.
    """

    def __init__(self) -> None:
        self._users = 0
        self._store: ClickHouseStore | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def _guard(self) -> asyncio.Lock:
        """The lock of the running loop (a process may run several loops in turn)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    @contextlib.asynccontextmanager
    async def hold(self, settings: Settings, telemetry: Telemetry
                   ) -> AsyncIterator[ClickHouseStore]:
        async with self._guard():
            if self._store is None:
                self._store, self._stack = await self._open(settings, telemetry)
            store = self._store
            self._users += 1
        try:
            yield store
        finally:
            async with self._guard():
                self._users -= 1
                if self._users == 0 and self._stack is not None:
                    stack, self._stack, self._store = self._stack, None, None
                    await stack.aclose()

    @staticmethod
    async def _open(settings: Settings, telemetry: Telemetry
                    ) -> tuple[ClickHouseStore, contextlib.AsyncExitStack]:
        stack = contextlib.AsyncExitStack()
        try:
            if not settings.clickhouse_url:
                lock = await _take_flock(sink_lock_path(settings))
                stack.callback(lock.close)
                log.info("this process (pid %d) owns the embedded ClickHouse engine and "
                         "runs the sinks", os.getpid())
            # Connects on its first call, the migrations, which run in a thread: starting
            # the embedded engine takes 70-190 ms.
            store = open_store(settings.clickhouse_url, settings.clickhouse_database,
                               settings.chdb_path, hold_open=True,
                               credentials=Credentials(*settings.clickhouse_login()),
                               retention=Retention(settings.clickhouse_ttl_days,
                                                   settings.clickhouse_events_ttl_days))
            stack.push_async_callback(asyncio.to_thread, store.close)
            await _insist("clickhouse_sinks", telemetry, store.migrate)
            if not settings.clickhouse_url:
                endpoint = await _serve_sql(settings)
                if endpoint is not None:
                    stack.push_async_callback(endpoint.stop)
        except BaseException:
            await stack.aclose()
            raise
        return store, stack


_OWNER = _EngineOwner()  # process-wide on purpose: the engine is too


class _PartitionSink:
    """The loop shared by both sinks (see the module docstring for its order)."""

    name = "clickhouse_sink"
    group_suffix = "clickhouse-sink"
    lag_label = "message_log"  # the sink label of the lag gauges

    def __init__(
        self, settings: Settings, telemetry: Telemetry, *, dedup: bool | None = None
    ) -> None:
        self._settings = settings
        self._telemetry = telemetry
        self._dedup = dedup if dedup is not None else not os.environ.get(UNSAFE_NO_DEDUP_ENV)
        self._batches: PartitionBatches[TopicPartition, ConsumerRecord] = PartitionBatches(
            settings.sink_batch_rows, settings.sink_batch_seconds
        )
        self._store: ClickHouseStore | None = None
        self._producer: AIOKafkaProducer | None = None  # dead letters; started on need
        self.lag: SinkLag[TopicPartition] = SinkLag()
        self._in_flight: dict[TopicPartition, int] = {}  # being inserted: first record's time
        self._lag_shown: set[tuple[str, str]] = set()

    @property
    def group_id(self) -> str:
        return f"{self._settings.app_id}-{self.group_suffix}"

    def topics(self) -> list[str]:
        raise NotImplementedError

    def plans(self, records: Records, token: str | None) -> list[InsertPlan]:
        raise NotImplementedError

    async def run(self) -> None:
        if not self._dedup:
            log.warning("%s is set: %s sends no dedup token (tests only)",
                        UNSAFE_NO_DEDUP_ENV, self.name)
        async with _OWNER.hold(self._settings, self._telemetry) as store:
            self._store = store
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self._settings.sink_batch_rows,
                fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
                session_timeout_ms=int(self._settings.session_timeout * 1000),
                heartbeat_interval_ms=int(min(3.0, self._settings.session_timeout / 5) * 1000),
                **client_options(self._settings),
            )
            admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.kafka_bootstrap,
                                        **client_options(self._settings))
            self._batches.clear()  # a fresh start: read again from the committed offsets
            self.lag, self._in_flight = SinkLag(), {}
            await admin.start()
            try:
                consumer.subscribe(self.topics(),
                                   listener=_Rebalance(self, self._batches, admin))
                await consumer.start()
                reporter = asyncio.create_task(self._report_lag(consumer))
                try:
                    await self._consume(consumer)
                finally:
                    reporter.cancel()
                    await consumer.stop()
            finally:
                await admin.close()
                producer, self._producer = self._producer, None
                if producer is not None:
                    await producer.stop()

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """The lag gauges every ``LAG_EVERY`` s, beside the loop: a batch whose insert
        is retried for minutes must show up as growing lag (streams/sink_runtime/freshness.py)."""
        try:
            while True:
                await asyncio.sleep(LAG_EVERY)
                self.report_lag(consumer.highwater, int(time.time() * 1000))
        finally:
            for gone in self._lag_shown:
                self._telemetry.sink_lag_records.remove(self.lag_label, *gone)
            self._lag_shown = set()

    def report_lag(self, highwater: Callable[[TopicPartition], int | None], now_ms: int) -> None:
        oldest = {tp: record.timestamp for tp, record in self._batches.heads().items()}
        oldest.update(self._in_flight)
        records, seconds = self.lag.measure(highwater, oldest, now_ms)
        labels = {(tp.topic, str(tp.partition)): n for tp, n in records.items()}
        gauge = self._telemetry.sink_lag_records
        for gone in self._lag_shown - labels.keys():
            gauge.remove(self.lag_label, *gone)
        for (topic, partition), n in labels.items():
            gauge.labels(self.lag_label, topic, partition).set(n)
        self._lag_shown = set(labels)
        self._telemetry.sink_lag_seconds.labels(self.lag_label).set(seconds)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            wait = min(self._batches.seconds_to_next(), self._settings.sink_batch_seconds)
            fetched = await consumer.getmany(
                timeout_ms=max(int(wait * 1000), 10), max_records=self._settings.sink_batch_rows
            )
            for tp, records in fetched.items():
                self._batches.add(tp, records)
            due = self._batches.due()
            if due:
                await self._flush(consumer, due)

    async def _flush(
        self, consumer: AIOKafkaConsumer, due: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """One round: the due batches, each inserted exactly once (docs/sinks.md).

        1. commit each batch's first offset with its intent ``first..last`` (nothing moves);
        2. build the insert plans (pure) with the token ``topic-partition-first-last``;
        3. insert, retried until it succeeds: nothing is skipped, committed or fetched
           meanwhile; except a row the store refuses for good (a non-transient
           ``SinkError``): its plan is bisected until the refused rows stand alone, the
           rest is inserted, and each refused row is dead-lettered (sent and acknowledged)
           and counted;
        4. commit ``last + 1`` (empty metadata).
        """
        # Confluent-framed records' new schema ids first, waited for: a registry that
        # cannot be reached holds the round instead of leaving rows out
        await resolve_schema_ids((r.value for rs in due.values() for r in rs), "the events sink")
        bounds = {tp: (records[0].offset, records[-1].offset) for tp, records in due.items()}
        await consumer.commit(  # step 1
            {tp: (first, intent_metadata(first, last)) for tp, (first, last) in bounds.items()}
        )
        plans: list[InsertPlan] = []  # step 2
        for tp, records in due.items():
            plans += self.plans(
                records, dedup_token(tp.topic, tp.partition, *bounds[tp]) if self._dedup else None)
            await asyncio.sleep(0)  # one partition at a time: the stages run in between
        self._in_flight = {tp: records[0].timestamp for tp, records in due.items()}
        refused = await self._write(plans)  # step 3
        if refused:
            await self._dead_letter(refused, due)  # step 3 (before the commit)
        await consumer.commit({tp: (last + 1, "") for tp, (_, last) in bounds.items()})  # step 4
        for tp, records in due.items():
            self.lag.wrote(tp, bounds[tp][1] + 1, records[-1].timestamp)
        self._in_flight = {}

    async def _write(self, plans: list[InsertPlan]) -> list[tuple[InsertPlan, int, str]]:
        """Step 3: all inserts of a round through the process's one store (``_EngineOwner``),
        a transient failure retried until it succeeds. A plan refused for good is
        bisected (``_isolate``); the refused rows come back as (plan, row index, reason)."""
        store = self._store
        if store is None:
            raise RuntimeError("a sink writes only while run() holds the store")
        done = 0  # plans inserted: a retry goes on from the one that failed

        def insert_rest() -> None:
            nonlocal done
            while done < len(plans):
                store.insert(plans[done])
                done += 1

        refused: list[tuple[InsertPlan, int, str]] = []
        with self._telemetry.sink_batch_seconds.time():
            while done < len(plans):
                try:
                    await _insist(self.name, self._telemetry, insert_rest, refusable=True)
                except SinkError as exc:
                    refused += await self._isolate(store, plans[done], str(exc))
                    done += 1
        for plan in plans:
            self._telemetry.sink_rows.labels(plan.table).inc(
                len(plan.rows) - sum(p is plan for p, _, _ in refused))
        return refused

    async def _isolate(self, store: ClickHouseStore, plan: InsertPlan, reason: str
                       ) -> list[tuple[InsertPlan, int, str]]:
        """Insert ``plan``, which the store refused for good, in halves, and halves of
        the halves that are refused, until each refused row stands alone; those rows
        come back with the store's reason. A part's token is the plan's with its row
        range (``token/first-end``): the refusal is deterministic, so a batch replayed
        after a crash splits the same way and its parts are deduplicated too."""
        refused: list[tuple[InsertPlan, int, str]] = []
        parts: list[tuple[int, int, str | None]] = [(0, len(plan.rows), reason)]
        while parts:
            first, end, why = parts.pop()
            if why is None:  # not tried yet
                why = await self._refusal(store, replace(
                    plan, rows=plan.rows[first:end],
                    sources=plan.sources[first:end] if plan.sources is not None else None,
                    dedup_token=(f"{plan.dedup_token}/{first}-{end}"
                                 if plan.dedup_token is not None else None)))
                if why is None:
                    continue
            if end - first == 1:
                refused.append((plan, first, why))
                continue
            middle = (first + end) // 2
            parts += [(middle, end, None), (first, middle, None)]  # the first half first
        return refused

    async def _refusal(self, store: ClickHouseStore, plan: InsertPlan) -> str | None:
        """None once ``plan`` is inserted (transient failures retried), else why the
        store refuses it for good."""
        try:
            await _insist(self.name, self._telemetry, lambda: store.insert(plan),
                          refusable=True)
        except SinkError as exc:
            return str(exc)
        return None

    async def _dead_letter(self, refused: list[tuple[InsertPlan, int, str]],
                           due: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Each refused row to the dead-letter topic as the input record it came from
        (``streams/codecs/dead_letters.py``); a row that cannot be traced to one
        record goes as its key (first column), the row as JSON and the reason."""
        records = {(r.topic, r.partition, r.offset): r
                   for batch in due.values() for r in batch}
        topic = self._settings.dead_letter_topic
        if self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self._settings.kafka_bootstrap,
                                        max_request_size=DEAD_LETTER_MAX_BYTES, acks="all",
                                        **client_options(self._settings))
            await producer.start()
            self._producer = producer
        for plan, index, reason in refused:
            row = plan.rows[index]
            why = f"ClickHouse refused the row for {plan.table}: {reason}"[:2000]
            source = records.get(plan.sources[index]) if plan.sources is not None else None
            if source is not None:
                key, value, headers = dead_letter(
                    source.key or b"", source.value or b"", why, source.topic,
                    source.partition, source.offset, DEAD_LETTER_MAX_BYTES)
            else:
                key = str(row[0]).encode()
                value = orjson.dumps(dict(zip(plan.columns, row, strict=True)), default=str)
                key, value, headers = key[:1024], value[:DEAD_LETTER_MAX_BYTES // 2], {
                    "reason": why.encode(), "table": plan.table.encode()}
            await self._producer.send_and_wait(topic, value, key=key,
                                               headers=list(headers.items()))
            self._telemetry.sink_rejected_rows.labels(plan.table).inc()
            log.error("%s: dead-lettered %s: %s", self.name,
                      f"{source.topic}[{source.partition}]@{source.offset}"
                      if source is not None else f"the row keyed {row[0]!r}", why)


class _Rebalance(ConsumerRebalanceListener):
    """Drops revoked partitions' buffers; on assignment, rebuilds pending intents."""

    def __init__(self, sink: _PartitionSink,
                 batches: PartitionBatches[TopicPartition, ConsumerRecord],
                 admin: AIOKafkaAdminClient) -> None:
        self._sink = sink
        self._batches = batches  # the sink's own
        self._admin = admin

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._batches.drop(revoked)
        self._sink.lag.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        tps = list(assigned)
        self._batches.drop(tps)
        if not tps:
            return
        for attempt in range(5):
            try:
                committed = await self._admin.list_consumer_group_offsets(
                    self._sink.group_id, partitions=tps
                )
                break
            except KafkaError as exc:
                if attempt == 4:  # FINAL reads stay exact; only raw counts may double
                    log.warning("%s: cannot read batch intents (%s); replays will not be "
                                "rebuilt exactly", self._sink.name, exc)
                    return
                await asyncio.sleep(1.0)
        self._sink.lag.assigned({tp: at.offset for tp, at in committed.items() if at.offset >= 0})
        for tp, at in committed.items():
            intent = parse_intent(at.metadata)
            if intent is not None and intent[0] == at.offset:
                log.info("%s: rebuilding batch %s[%d] %d..%d after a restart",
                         self._sink.name, tp.topic, tp.partition, *intent)
                self._batches.replay(tp, intent[1])


class ClickHouseSink(_PartitionSink):
    """``message-updates`` -> ``message_log``."""

    name = "clickhouse_sink"
    group_suffix = "clickhouse-sink"

    def topics(self) -> list[str]:
        return [self._settings.message_updates_topic]

    def plans(self, records: Records, token: str | None) -> list[InsertPlan]:
        return plan_message_updates(records, token)


class ClickHouseEventsSink(_PartitionSink):
    """The input topics -> ``events``, ``replies``, ``link_clicks``."""

    name = "clickhouse_events_sink"
    group_suffix = "clickhouse-events-sink"
    lag_label = "events"

    def topics(self) -> list[str]:
        return list(self._settings.input_topics.values())

    def plans(self, records: Records, token: str | None) -> list[InsertPlan]:
        kinds = {topic: kind for kind, topic in self._settings.input_topics.items()}
        return plan_message_events(records, token, kinds, DECODED.take)

    async def run(self) -> None:
        with DECODED.reading():
            await super().run()


async def run_restarting(sink: _PartitionSink, telemetry: Telemetry, pause: float = 5.0) -> None:
    """Run ``sink`` for ever: an unexpected error (a failed commit after a rebalance,
    a broker outage) restarts it from the committed offsets and never takes the
    worker down."""
    while True:
        try:
            await sink.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            telemetry.processing_errors.labels(sink.name).inc()
            log.exception("%s stopped; restarting it in %.0f s", sink.name, pause)
            await asyncio.sleep(pause)


async def run_sinks(settings: Settings, telemetry: Telemetry) -> None:
    """Every ClickHouse sink, each restarted on failure: ``message_log``; ``events``,
    ``replies``, ``link_clicks``. Run by a worker's child, by a worker itself, or alone by
    ``campaign-analytics sink``. With chdb this process owns the engine (and serves
    its SQL endpoint) from the moment it takes the sink lock until it ends, whatever
    its sinks' restarts (``_EngineOwner``)."""
    sinks = (ClickHouseSink(settings, telemetry), ClickHouseEventsSink(settings, telemetry))
    async with _OWNER.hold(settings, telemetry) as store, asyncio.TaskGroup() as group:
        # A TaskGroup, not gather: cancelled, gather returns once its first child is
        # done (the reporter, at once) and the sinks' consumers are cut off while they
        # leave their groups; a TaskGroup waits for every child's cleanup.
        for sink in sinks:
            group.create_task(run_restarting(sink, telemetry))
        group.create_task(report_stored_rows(store, telemetry))


async def report_stored_rows(store: ClickHouseStore, telemetry: Telemetry,
                             every: float = ROWS_EVERY) -> None:
    """``campaign_analytics_clickhouse_rows{table}`` every ``every`` s, from the parts'
    metadata (``ClickHouseStore.stored_rows``: no table is read); a failed read
    leaves the gauge as it was (the sinks' own retries report ClickHouse errors)."""
    while True:
        try:
            rows = await asyncio.to_thread(store.stored_rows)
        except SinkError as exc:
            log.debug("stored rows unavailable: %s", exc)
        else:
            for table, n in rows.items():
                telemetry.clickhouse_rows.labels(table).set(n)
        await asyncio.sleep(every)
