"""A row the store refuses for good is isolated, dead-lettered and counted; the sink
goes on (issue 19 item 3e). A transient failure is retried as before."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from sinks.errors import SinkError
from sinks.plan import InsertPlan
from streams.codecs.dead_letters import dead_letter
from streams.settings import Settings
from streams.sink_runtime.runner import DEAD_LETTER_MAX_BYTES, Records, _PartitionSink
from streams.telemetry import Telemetry

TOPIC = "in"
TP = TopicPartition(TOPIC, 2)


class FakeStore:
    """Refuses for good every insert holding a row whose id is in ``bad``; fails the
    first ``transient`` calls with ``retry_after`` set; keeps what it accepted."""

    def __init__(self, bad: set[str] = frozenset(), transient: int = 0) -> None:  # type: ignore[assignment]
        self.bad = bad
        self.transient = transient
        self.rows: list[tuple[object, ...]] = []
        self.tokens: list[str | None] = []

    def insert(self, plan: InsertPlan) -> int:
        if self.transient:
            self.transient -= 1
            raise SinkError("TOO_MANY_PARTS", retry_after=0.001)
        refused = [row[0] for row in plan.rows if row[0] in self.bad]
        if refused:
            raise SinkError(f"value {refused[0]} does not fit column n of {plan.table}")
        self.rows += plan.rows
        self.tokens.append(plan.dedup_token)
        return len(plan.rows)


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, tuple[int, str]]] = []

    async def commit(self, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        self.commits.append(offsets)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes,
                            headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, key, value, headers))


class RowSink(_PartitionSink):
    """One row per record, ``(key, offset)``, traced to its record unless ``untraced``."""

    def __init__(self, settings: Settings, telemetry: Telemetry, untraced: bool = False) -> None:
        super().__init__(settings, telemetry, dedup=True)
        self.untraced = untraced

    def topics(self) -> list[str]:
        return [TOPIC]

    def plans(self, records: Records, token: str | None) -> list[InsertPlan]:
        rows: list[tuple[object, ...]] = [(r.key.decode(), r.offset) for r in records]
        sources = None if self.untraced else tuple(
            (r.topic, r.partition, r.offset) for r in records)
        # a second plan after the refused one: it is inserted too
        return [InsertPlan("t", ("id", "n"), rows, token, sources),
                InsertPlan("u", ("id", "n"), rows[:2], token, sources and sources[:2])]


def records(n: int) -> list[Any]:
    return [SimpleNamespace(topic=TOPIC, partition=2, offset=10 + i, key=f"k{i}".encode(),
                            value=f"value {i}".encode(), timestamp=-1) for i in range(n)]


def flush(store: FakeStore, batch: list[Any], untraced: bool = False
          ) -> tuple[RowSink, FakeConsumer, FakeProducer, Telemetry]:
    telemetry = Telemetry()
    sink = RowSink(Settings(), telemetry, untraced)
    consumer, producer = FakeConsumer(), FakeProducer()
    sink._store = store  # type: ignore[assignment]
    sink._producer = producer  # type: ignore[assignment]
    asyncio.run(sink._flush(consumer, {TP: batch}))  # type: ignore[arg-type]
    return sink, consumer, producer, telemetry


def test_a_refused_row_is_dead_lettered_and_counted_and_the_rest_inserted_once() -> None:
    batch = records(7)
    store = FakeStore(bad={"k4"})
    sink, consumer, producer, telemetry = flush(store, batch)

    expected = [(f"k{i}", 10 + i) for i in range(7) if i != 4] + [("k0", 10), ("k1", 11)]
    assert sorted(store.rows) == sorted(expected)  # every other row, exactly once
    reason = "ClickHouse refused the row for t: value k4 does not fit column n of t"
    bad = batch[4]
    key, value, headers = dead_letter(bad.key, bad.value, reason, TOPIC, 2, 14,
                                      DEAD_LETTER_MAX_BYTES)
    assert producer.sent == [(Settings().dead_letter_topic, key, value, list(headers.items()))]
    assert telemetry.registry.get_sample_value(
        "campaign_analytics_sink_rejected_rows_total", {"table": "t"}) == 1
    assert telemetry.registry.get_sample_value(
        "campaign_analytics_sink_rows_total", {"table": "t"}) == 6
    # the commit moves past the batch, after the intent (steps 1 and 4)
    assert consumer.commits == [{TP: (10, "ca-sink-batch:10-16")}, {TP: (17, "")}]
    # the parts carry tokens of their own, derived from the batch's
    whole = "in-2-10-16"
    assert store.tokens[-1] == whole  # plan "u", whole
    assert all(t is not None and t.startswith(whole + "/") for t in store.tokens[:-1])
    assert len(set(store.tokens)) == len(store.tokens)


def test_a_row_without_its_record_is_dead_lettered_as_its_key_and_reason() -> None:
    store = FakeStore(bad={"k1"})
    _, consumer, producer, _ = flush(store, records(3), untraced=True)

    assert len(producer.sent) == 2  # its row in "t" and its row in "u"
    for (_, key, value, headers), table in zip(producer.sent, "tu", strict=True):
        assert key == b"k1" and b'"id":"k1"' in value
        assert dict(headers) == {
            "reason": f"ClickHouse refused the row for {table}: value k1 does not fit "
                      f"column n of {table}".encode(), "table": table.encode()}
    assert consumer.commits[-1] == {TP: (13, "")}


def test_a_transient_error_is_retried_not_dead_lettered() -> None:
    store = FakeStore(transient=2)
    _, consumer, producer, telemetry = flush(store, records(3))

    assert producer.sent == []
    assert sorted(store.rows) == sorted([("k0", 10), ("k1", 11), ("k2", 12),
                                         ("k0", 10), ("k1", 11)])
    assert store.tokens == ["in-2-10-12", "in-2-10-12"]  # whole plans, no split
    assert telemetry.registry.get_sample_value("campaign_analytics_sink_errors_total") == 2
    assert telemetry.registry.get_sample_value(
        "campaign_analytics_sink_rejected_rows_total", {"table": "t"}) is None
    assert consumer.commits[-1] == {TP: (13, "")}
