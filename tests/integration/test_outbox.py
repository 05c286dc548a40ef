"""The outbox (streams/engine/outbox.py) on the real broker: what goes in comes out, per
partition in order, across several record batches; a batch the broker refuses is
reported to the watcher (the delivery guard), as a refused single send is."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from streams.engine.outbox import MAX_RECORD_BYTES, Outbox
from tests.integration.conftest import new_topic

pytestmark = pytest.mark.integration


async def _read_all(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[int, list[tuple]] = {p: [] for p in range(partitions)}
        while sum(len(records) for records in out.values()) < sum(ends.values()):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                out[tp.partition] += [(r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


class Watcher:
    def __init__(self) -> None:
        self.outcomes: list[BaseException | None] = []

    def __call__(self, future: asyncio.Future[Any]) -> None:
        self.outcomes.append(future.exception())


def test_records_come_out_in_order_per_partition_across_record_batches(
        kafka_bootstrap: str) -> None:
    async def run() -> tuple[dict[int, list[tuple]], int, list[BaseException | None]]:
        a = await new_topic(kafka_bootstrap, f"outbox-a-{uuid.uuid4().hex[:8]}", 3)
        b = await new_topic(kafka_bootstrap, f"outbox-b-{uuid.uuid4().hex[:8]}", 1)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        watch = Watcher()
        try:
            outbox = Outbox(lambda: producer, watch, batch_bytes=4096)  # ~40 records each
            for i in range(1500):
                outbox.add(a, i % 3, f"k{i}".encode(), b"v" * 80 + str(i).encode())
            outbox.add(b, 0, b"only", b"one")
            assert len(outbox) == 1501
            await outbox.send()
            assert len(outbox) == 0
            await outbox.send()  # nothing queued: nothing sent
            await producer.flush()
        finally:
            await producer.stop()
        got = await _read_all(kafka_bootstrap, a, 3)
        got[3] = (await _read_all(kafka_bootstrap, b, 1))[0]
        return got, outbox.batches_sent, watch.outcomes

    got, batches, outcomes = asyncio.run(run())
    for p in range(3):
        assert got[p] == [(f"k{i}".encode(), b"v" * 80 + str(i).encode())
                          for i in range(p, 1500, 3)]
    assert got[3] == [(b"only", b"one")]
    assert batches > 3 + 1  # more than one record batch per partition of ``a``
    assert len(outcomes) == batches and outcomes == [None] * batches


def test_a_refused_record_batch_reaches_the_watcher(kafka_bootstrap: str) -> None:
    """Negative control of the first test's all-delivered outcomes: the broker refuses
    batches larger than the topic's ``max.message.bytes``, and the watcher sees it."""
    async def run() -> list[BaseException | None]:
        small = await new_topic(kafka_bootstrap, f"outbox-small-{uuid.uuid4().hex[:8]}", 1,
                                {"max.message.bytes": "500"})
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                    request_timeout_ms=10000)
        await producer.start()
        watch = Watcher()
        try:
            outbox = Outbox(lambda: producer, watch)
            for _ in range(50):
                outbox.add(small, 0, b"k", b"x" * 100)
            await outbox.send()
            await producer.flush()
        finally:
            await producer.stop()
        return watch.outcomes

    outcomes = asyncio.run(run())
    assert len(outcomes) == 1 and outcomes[0] is not None, outcomes


def test_a_record_the_producer_would_refuse_is_refused_when_added() -> None:
    outbox = Outbox(lambda: None)
    with pytest.raises(MessageSizeTooLargeError):
        outbox.add("t", 0, b"k", b"x" * MAX_RECORD_BYTES)
    assert len(outbox) == 0
