"""Records produced in bulk: one record batch per partition, not one send per record.

An ``Outbox`` gathers a stage batch's records per topic partition and hands each
partition's records to aiokafka as whole record batches (``send_batch``), with
one delivery future per batch, which the delivery guard watches. The batches sit
in the accumulator Faust's flush waits for before every commit, so durability is
unchanged; a partition's records keep their order. Why (per-record sends were a
fifth of the worker's CPU): docs/faust-hardening.md#outbox.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder

from streams.engine import freeze_guard

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
        freeze_guard.check()  # a worker frozen past its session writes nothing it held
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


def producer_client(app: Any) -> Any:
    """The aiokafka producer under a Faust app's producer (Faust makes it at start)."""
    return app.producer._ensure_producer()


async def partition_count(app: Any, topic: str) -> int:
    """The topic's partitions, from the producer's metadata (fetched if missing, as
    ``producer.send`` does before it partitions a record)."""
    client = producer_client(app).client
    partitions = client.cluster.partitions_for_topic(topic)
    if not partitions:
        await client._wait_on_metadata(topic)
        partitions = client.cluster.partitions_for_topic(topic)
    return len(partitions)
