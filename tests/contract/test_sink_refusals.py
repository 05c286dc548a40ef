"""A row the engine refuses for good (a value its column cannot hold) is dead-lettered
by the sink, the rest of its batch written once, replay included (issue 19 item 3e)."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from sinks.plan import InsertPlan, plan_message_log_insert
from sinks.store import ClickHouseStore
from streams.settings import Settings
from streams.sink_runtime.runner import Records, _PartitionSink
from streams.telemetry import Telemetry
from tests.contract.test_store_contract import make_row, new_campaign

TP = TopicPartition("updates", 0)


class Sink(_PartitionSink):
    def __init__(self, campaign: str) -> None:
        super().__init__(Settings(), Telemetry(), dedup=True)
        self.campaign = campaign

    def plans(self, records: Records, token: str | None) -> list[InsertPlan]:
        rows = [make_row(self.campaign, r.offset) for r in records]
        rows[3] = dataclasses.replace(rows[3], segments=-1)  # type: ignore[arg-type]
        return [plan_message_log_insert(rows, token,
                                        [(r.topic, r.partition, r.offset) for r in records])]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def commit(self, offsets: Any) -> None:
        self.calls.append(offsets)

    async def send_and_wait(self, topic: str, value: bytes, **kw: Any) -> None:
        self.calls.append((topic, value, kw))


def test_a_value_the_column_cannot_hold_is_dead_lettered_and_the_rest_written_once(
    store: ClickHouseStore,
) -> None:
    campaign = new_campaign()
    records = [SimpleNamespace(topic=TP.topic, partition=0, offset=i, key=b"k%d" % i,
                               value=b"v%d" % i, timestamp=-1) for i in range(10)]
    for _ in range(2):  # the second round is the batch replayed after a crash before step 4
        sink, consumer, producer = Sink(campaign), Recorder(), Recorder()
        sink._store = store
        sink._producer = producer  # type: ignore[assignment]
        asyncio.run(sink._flush(consumer, {TP: records}))  # type: ignore[arg-type]

        ((topic, value, kw),) = producer.calls
        assert topic == Settings().dead_letter_topic and value == b"v3"
        headers = dict(kw["headers"])
        assert headers["source-offset"] == b"3"
        assert headers["reason"].startswith(b"ClickHouse refused the row for message_log: ")
        assert consumer.calls[-1] == {TP: (10, "")}
        assert store.count_message_log(campaign, final=False) == 9  # each once, no repeat
