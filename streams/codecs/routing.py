"""Which partition a message's records belong to.

The same as Kafka's Java client and aiokafka's default partitioner
(murmur2 of the key, positive, modulo the partition count), which is what
``campaign-analytics publish`` and the worker use when they key a record by
``message_id``. Producers with another partitioner (librdkafka's default is
CRC32) put records elsewhere; the worker then forwards them (``streams/app.py``).
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=65_536)
def message_partition(key: bytes, partitions: int) -> int:
    """The partition of ``partitions`` that the default partitioner gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
