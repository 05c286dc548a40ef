"""Contender a, the limit: aiokafka ``getmany`` + Avro decoding, no processing.

Every record is decoded and validated with ``streams.codecs.input_avro.decode_event`` (what
the worker does first with each record); offsets are committed after each batch.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from benchmarks.contenders.common import FirstEvent, group, settings
from streams.codecs.input_avro import decode_event


async def run() -> None:
    cfg = settings()
    mark = FirstEvent()
    consumer = AIOKafkaConsumer(
        *cfg.input_topics.values(),
        bootstrap_servers=cfg.kafka_bootstrap,
        group_id=group(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    decoded = 0
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                continue
            mark()
            for records in batch.values():
                for record in records:
                    decode_event(record.value)
                    decoded += 1
            await consumer.commit()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(run())
