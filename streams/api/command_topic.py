"""What the command writers share (``streams/api/retries.py``, ``streams/api/winner.py``):
the campaign's partition of a command topic, its clients, and reading the campaign's
records of a range of offsets, for the compare-and-set that keeps one answer per
campaign when several processes write at once (docs/consumers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from projections.errors import CampaignAnalyticsError
from streams.kafka_security import client_options
from streams.settings import Settings

BATCH_BYTES = 900_000  # below the broker's default message.max.bytes (1 MiB)
READ_SECONDS = 30.0


def clients(settings: Settings) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    """A producer (acks=all, idempotent) and a group-less consumer, not started."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, group_id=None,
                                **client_options(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, max_batch_size=BATCH_BYTES,
                                max_request_size=BATCH_BYTES + 65_536,
                                request_timeout_ms=30_000, **client_options(settings))
    return producer, consumer


async def campaign_partition(producer: AIOKafkaProducer, topic: str, campaign_id: str
                             ) -> TopicPartition:
    """The campaign's partition, as a keyed producer picks it (murmur2 of the key)."""
    try:
        ids = sorted(await producer.partitions_for(topic))
    except KafkaTimeoutError:
        raise CampaignAnalyticsError(f"topic {topic} does not exist: run a worker once "
                                     "(it creates the topics)") from None
    return TopicPartition(topic, DefaultPartitioner()(campaign_id.encode(), ids, ids))


@dataclass(frozen=True, slots=True)
class CampaignPartition:
    """Started clients on the campaign's partition, and its offsets when it was opened."""

    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer
    tp: TopicPartition
    start: int
    end: int


@contextlib.asynccontextmanager
async def open_campaign_partition(settings: Settings, topic: str, campaign_id: str
                                  ) -> AsyncIterator[CampaignPartition]:
    """The clients started, the consumer on the campaign's partition; stopped after."""
    producer, consumer = clients(settings)
    await producer.start()
    try:
        await consumer.start()
        tp = await campaign_partition(producer, topic, campaign_id)
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        yield CampaignPartition(producer, consumer, tp, start, end)
    finally:
        await consumer.stop()
        await producer.stop()


async def read_campaign(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
                        campaign_id: str, decode: Callable[[bytes], dict[str, Any]],
                        add: Callable[[int, dict[str, Any]], None]) -> None:
    """``add(offset, decode(value))`` for each of the campaign's records of ``tp`` in
    ``[start, end)``, in order (``consumer`` has ``tp`` assigned)."""
    if start >= end:
        return
    consumer.seek(tp, start)
    key = campaign_id.encode()
    deadline = asyncio.get_running_loop().time() + READ_SECONDS
    while await consumer.position(tp) < end:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"could not read {tp.topic} [{tp.partition}] to offset {end}")
        batch = await consumer.getmany(tp, timeout_ms=500)
        for record in batch.get(tp, []):
            if record.offset < end and record.key == key and record.value is not None:
                add(record.offset, decode(record.value))
