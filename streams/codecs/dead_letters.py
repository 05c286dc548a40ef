"""The record a rejected input record becomes on the dead-letter topic.

Its key and value as they came, and headers that say why and where it came
from: ``reason``, ``source-topic``, ``source-partition``, ``source-offset``, and
``schema-id`` when the value is Confluent-framed (first byte 0: the id it names).
An input record can be as large as the broker takes (1 MiB by default), and
its dead letter is that plus the headers, which the producer may refuse
(Faust's ``producer_max_request_size``, 1,000,000 bytes by default); a refused
dead letter stopped the worker, and the record stopped it again after every
restart. So a dead letter that would be larger than the producer's limit is
cut to fit: the key to at most ``KEY_ROOM`` bytes, the value to what is left,
and a ``truncated`` header gives the original sizes. The whole record stays
in its source topic at the offset the headers give.
"""

from __future__ import annotations

KEY_ROOM = 1024
# Room for what the producer counts besides keys, values and header bytes: the
# record's length fields and the record batch's header (61 bytes).
OVERHEAD = 1024


def dead_letter(key: bytes, value: bytes, reason: str, topic: str, partition: int,
                offset: int, limit: int) -> tuple[bytes, bytes, dict[str, bytes]]:
    """(key, value, headers) of the dead letter, at most ``limit`` bytes in all."""
    headers = {
        "reason": reason.encode(),
        "source-topic": topic.encode(),
        "source-partition": str(partition).encode(),
        "source-offset": str(offset).encode(),
    }
    if len(value) >= 5 and value[0] == 0:  # Confluent wire format (streams/codecs/registry.py)
        headers["schema-id"] = str(int.from_bytes(value[1:5], "big")).encode()
    if _size(key, value, headers) + OVERHEAD <= limit:
        return key, value, headers
    headers["truncated"] = f"key {len(key)} bytes, value {len(value)} bytes".encode()
    room = max(limit - OVERHEAD - _size(b"", b"", headers), 0)
    key = key[:min(KEY_ROOM, room)]
    return key, value[:room - len(key)], headers


def _size(key: bytes, value: bytes, headers: dict[str, bytes]) -> int:
    return len(key) + len(value) + sum(len(k) + len(v) for k, v in headers.items())
