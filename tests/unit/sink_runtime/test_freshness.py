"""How far a sink's rows trail Kafka (streams/sink_runtime/freshness.py and the
sink's lag gauges), and the stored-rows gauge: plain code, no broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from sinks.errors import SinkError
from sinks.plan import InsertPlan
from streams.settings import Settings
from streams.sink_runtime.freshness import SinkLag
from streams.sink_runtime.runner import Records, _PartitionSink, report_stored_rows
from streams.telemetry import Telemetry

A, B, C = TopicPartition("in", 0), TopicPartition("in", 1), TopicPartition("in", 2)
NOW = 1_800_000_000_000


def samples(telemetry: Telemetry, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for family in telemetry.registry.collect()
            if family.name == name for s in family.samples}


def test_records_behind_are_highwater_minus_the_next_offset_to_write() -> None:
    lag: SinkLag[TopicPartition] = SinkLag()
    lag.assigned({A: 10, B: 5, C: 0})
    lag.wrote(B, 8, NOW - 4_000)
    highwaters = {A: 25, B: 8}  # C: not fetched yet (left out)
    records, seconds = lag.measure(highwaters.get, {A: NOW - 3_000}, NOW)
    assert records == {A: 15, B: 0}
    assert seconds == 3.0  # A's oldest unwritten record; B has written everything


def test_seconds_fall_back_to_the_last_record_written_and_are_zero_without_lag() -> None:
    """A lagging partition with nothing fetched: the last written record's time (an
    upper bound). Control: the same partition caught up counts 0 s."""
    lag: SinkLag[TopicPartition] = SinkLag()
    lag.wrote(A, 100, NOW - 7_500)
    assert lag.measure({A: 130}.get, {}, NOW) == ({A: 30}, 7.5)
    assert lag.measure({A: 100}.get, {}, NOW) == ({A: 0}, 0.0)


def test_revoked_partitions_are_forgotten_and_a_failing_highwater_is_skipped() -> None:
    lag: SinkLag[TopicPartition] = SinkLag()
    lag.assigned({A: 1, B: 1})
    lag.assigned({A: 3})  # assigned again: its committed offset is where it goes on
    lag.revoked([B])

    def highwater(tp: TopicPartition) -> int | None:
        if tp == B:
            raise AssertionError("Partition is not assigned")  # as aiokafka does
        return 3

    assert lag.measure(highwater, {}, NOW) == ({A: 0}, 0.0)


class StuckStore:
    """Fails every insert (transient) until ``release`` is set."""

    def __init__(self) -> None:
        self.release = False
        self.rows: list[tuple[object, ...]] = []

    def insert(self, plan: InsertPlan) -> int:
        if not self.release:
            raise SinkError("Connection refused", retry_after=0.01)
        self.rows += plan.rows
        return len(plan.rows)


class Consumer:
    async def commit(self, offsets: Any) -> None:
        pass


class OneTableSink(_PartitionSink):
    lag_label = "t"

    def topics(self) -> list[str]:
        return ["in"]

    def plans(self, records: Records, token: str | None) -> list[InsertPlan]:
        return [InsertPlan("t", ("offset",), [(r.offset,) for r in records], token)]


def batch(tp: TopicPartition, first: int, n: int, first_ms: int) -> list[Any]:
    return [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=first + i,
                            timestamp=first_ms + 100 * i, key=b"k", value=b"v")
            for i in range(n)]


def test_a_batch_stuck_in_its_insert_shows_as_growing_lag_then_none() -> None:
    """While ClickHouse refuses, the lag gauges (set beside the sink's loop) count the
    batch's records and the age of its first; once written, both are 0 and a partition
    no longer assigned loses its series."""
    telemetry = Telemetry()
    sink = OneTableSink(Settings(), telemetry)
    store = StuckStore()
    sink._store = store  # type: ignore[assignment]
    sink.lag.assigned({A: 40, B: 7})
    sink._batches.add(B, batch(B, 7, 2, NOW - 1_000))  # fetched, not due yet
    highwaters = {A: 43, B: 9}

    async def scenario() -> None:
        flushing = asyncio.create_task(sink._flush(Consumer(), {A: batch(A, 40, 3, NOW - 60_000)}))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        sink.report_lag(highwaters.get, NOW)
        assert samples(telemetry, "campaign_analytics_sink_lag_records") == {
            ("t", "in", "0"): 3, ("t", "in", "1"): 2}
        assert samples(telemetry, "campaign_analytics_sink_lag_seconds") == {("t",): 60.0}
        sink.report_lag(highwaters.get, NOW + 30_000)
        assert samples(telemetry, "campaign_analytics_sink_lag_seconds") == {("t",): 90.0}
        store.release = True
        await flushing

    asyncio.run(scenario())
    assert store.rows == [(40,), (41,), (42,)]
    sink._batches.drop([B])
    sink.lag.revoked([B])
    sink.report_lag(highwaters.get, NOW + 31_000)
    assert samples(telemetry, "campaign_analytics_sink_lag_records") == {("t", "in", "0"): 0}
    assert samples(telemetry, "campaign_analytics_sink_lag_seconds") == {("t",): 0.0}


class RowsStore:
    def __init__(self, answers: list[dict[str, int] | None]) -> None:
        self.answers = answers

    def stored_rows(self) -> dict[str, int]:
        answer = self.answers.pop(0)
        if answer is None:
            raise SinkError("Connection refused", retry_after=1.0)
        return answer


def test_stored_rows_gauge_follows_the_store_and_keeps_its_value_on_a_failed_read() -> None:
    telemetry = Telemetry()
    store = RowsStore([{"events": 5, "message_log": 2}, None, {"events": 9, "message_log": 2}])
    seen: list[dict[tuple[str, ...], float]] = []

    async def scenario() -> None:
        task = asyncio.create_task(report_stored_rows(store, telemetry, every=0.02))  # type: ignore[arg-type]
        for _ in range(3):
            await asyncio.sleep(0.01)
            seen.append(samples(telemetry, "campaign_analytics_clickhouse_rows"))
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    assert seen == [{("events",): 5, ("message_log",): 2}, {("events",): 5, ("message_log",): 2},
                    {("events",): 9, ("message_log",): 2}]
