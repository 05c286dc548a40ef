"""The ClickHouse sink: its own consumer group on ``message-updates``.

It runs inside the worker but apart from Faust's stream machinery, so that a
slow or unavailable ClickHouse pauses only the sink (its lag grows), never the
metrics; and so that it commits exactly the offsets it has inserted:

1. read a batch per partition (``getmany``);
2. keep the newest version of each message in it; build the insert plan with a
   deduplication token from ``topic-partition-firstOffset-lastOffset``;
3. insert; on failure wait (``retry_after`` or backoff) and insert the same plan
   again: nothing is skipped and nothing is committed meanwhile;
4. commit the offsets the insert covered.

A crash between 3 and 4 re-reads the batch: the same rows come again with the
same versions, and ``message_log`` is a ReplacingMergeTree by version (and the
token drops the replay when the batch boundaries match).

The embedded engine (chdb) can be opened by one process at a time, so with it
only the worker holding ``<chdb dir>.sink.lock`` runs the sink; the others wait
for the lock (a worker that dies releases it). With a ClickHouse server every
worker runs a sink and the group splits the partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from typing import IO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from projections.errors import SinkError
from projections.message_log import MessageLogRow
from sinks import open_store
from sinks.plan import InsertPlan, dedup_token, plan_message_log_insert
from streams import serde
from streams.settings import Settings
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)


def plan_batch(tp: TopicPartition, records: list[ConsumerRecord]) -> InsertPlan:
    """Step 2: the newest row of each message in one partition's batch."""
    latest: dict[str, tuple[int, MessageLogRow]] = {}
    for record in records:
        version, row, _ = serde.decode_message_update(record.value)
        if row.message_id not in latest or latest[row.message_id][0] < version:
            latest[row.message_id] = (version, row)
    token = dedup_token(tp.topic, tp.partition, records[0].offset, records[-1].offset)
    return plan_message_log_insert([row for _, row in latest.values()], token)


@contextlib.asynccontextmanager
async def _sink_ownership(settings: Settings) -> AsyncIterator[None]:
    """With chdb, hold the sink lock for as long as this worker runs the sink."""
    if settings.clickhouse_url:
        yield
        return
    path = settings.chdb_path.with_name(settings.chdb_path.name + ".sink.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = path.open("a")
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(2.0)  # another worker sinks; take over if it dies
        log.info("this worker (pid %d) runs the ClickHouse sink", os.getpid())
        yield
    finally:
        handle.close()  # releases the lock


class ClickHouseSink:
    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self._settings = settings
        self._telemetry = telemetry

    async def run(self) -> None:
        async with _sink_ownership(self._settings):
            store = open_store(self._settings)
            await self._insist(store.migrate)
            store.close()
            consumer = AIOKafkaConsumer(
                self._settings.message_updates_topic,
                bootstrap_servers=self._settings.kafka_bootstrap,
                group_id=f"{self._settings.app_id}-clickhouse-sink",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self._settings.sink_batch_rows,
            )
            await consumer.start()
            try:
                while True:
                    batches = await consumer.getmany(
                        timeout_ms=int(self._settings.sink_batch_seconds * 1000),
                        max_records=self._settings.sink_batch_rows,
                    )
                    batches = {tp: records for tp, records in batches.items() if records}
                    if batches:
                        await self._write(batches)
                        await consumer.commit(  # step 4
                            {tp: records[-1].offset + 1 for tp, records in batches.items()})
            finally:
                await consumer.stop()

    async def _write(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """One insert per partition, all in one opening of the store (the embedded
        engine costs 50-200 ms to open, and holding it would lock ``export`` out)."""
        plans = [plan_batch(tp, records) for tp, records in batches.items()]

        def insert_all() -> None:
            store = open_store(self._settings, hold_open=True)
            try:
                for plan in plans:
                    store.insert(plan)
            finally:
                store.close()

        with self._telemetry.sink_batch_seconds.time():
            await self._insist(insert_all)
        self._telemetry.sink_rows.labels("message_log").inc(sum(len(p.rows) for p in plans))

    async def _insist(self, call: object) -> None:
        """Step 3: run ``call`` in a thread until it succeeds; never give up, never skip."""
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(call)  # type: ignore[arg-type]
                return
            except SinkError as exc:
                self._telemetry.sink_errors.inc()
                wait = exc.retry_after or delay
                log.warning("ClickHouse call failed (%s); retrying in %.1fs", exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)
