"""Records produced in bulk: one record batch per partition, not one send per record.

A stage's batch writes thousands of records (changelog values, hand-offs). Through
``producer.send`` each one costs a partitioner call, a per-record future, its
append to the accumulator and, on delivery, its future's resolution: about a
fifth of the worker's CPU. An ``Outbox`` gathers a stage batch's records per
topic partition and hands each partition's records to aiokafka as whole record
batches (``AIOKafkaProducer.send_batch``), appended by aiokafka's C batch
builder, with one delivery future per record batch.

Nothing about durability changes (streams/engine/tables.py, step 5): the record
batches sit in the same accumulator that Faust's flush waits for before every
commit, and the delivery guard (streams/engine/delivery_guard.py) watches each batch's future
as it watches each record's. Records of one partition keep their order: a
partition's record batches are submitted in order, and aiokafka queues a
partition's batches in the order submitted.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder

# Well under the broker's default ``message.max.bytes`` (1 MiB): a record batch is
# one "message" to the broker.
BATCH_BYTES = 512 * 1024
# The same bound ``producer.send`` puts on one record (aiokafka's default).
MAX_RECORD_BYTES = 1_048_576

Watch = Callable[["asyncio.Future[Any]"], None]


class Outbox:
    """Records waiting to be produced, per topic partition, in the order added."""

    def __init__(self, client: Callable[[], Any], watch: Watch | None = None,
                 batch_bytes: int = BATCH_BYTES) -> None:
        self._client = client  # the aiokafka producer (Faust's makes its own at start)
        self._watch = watch
        self._batch_bytes = batch_bytes
        self._records: defaultdict[tuple[str, int], list[tuple[bytes, bytes]]] = \
            defaultdict(list)
        self.batches_sent = 0

    def add(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        """Queue one record; a record ``producer.send`` would refuse is refused here."""
        if len(key) + len(value) > MAX_RECORD_BYTES:
            raise MessageSizeTooLargeError(
                f"a {len(key) + len(value)}-byte record for {topic}[{partition}] is larger "
                f"than {MAX_RECORD_BYTES} bytes")
        self._records[topic, partition].append((key, value))

    def __len__(self) -> int:
        return sum(len(records) for records in self._records.values())

    async def send(self) -> None:
        """Hand every queued record to the producer client (delivered in the background)."""
        if not self._records:
            return
        records, self._records = self._records, defaultdict(list)
        client = self._client()
        compression = client._message_accumulator._compression_type
        for (topic, partition), pending in records.items():
            builder = BatchBuilder(self._batch_bytes, compression, is_transactional=False)
            for key, value in pending:
                if builder.append(timestamp=None, key=key, value=value) is None:
                    await self._submit(client, builder, topic, partition)
                    builder = BatchBuilder(self._batch_bytes, compression,
                                           is_transactional=False)
                    builder.append(timestamp=None, key=key, value=value)  # first always fits
            await self._submit(client, builder, topic, partition)

    async def _submit(self, client: Any, builder: BatchBuilder, topic: str,
                      partition: int) -> None:
        builder.close()  # complete: aiokafka sends it without lingering
        future = await client.send_batch(builder, topic, partition=partition)
        self.batches_sent += 1
        if self._watch is not None:
            future.add_done_callback(self._watch)
