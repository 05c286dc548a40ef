"""In-memory stand-ins for what the Faust agents give the stages: records and tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from streams.codecs.input_avro import parse_json_line
from streams.codecs.routing import message_partition

INPUT_TOPICS = {"sent": "sms.sent", "delivery": "sms.delivery", "reply": "sms.reply",
                "click": "sms.click"}
KIND_OF_TOPIC = {topic: kind for kind, topic in INPUT_TOPICS.items()}
MESSAGE_EVENTS = "app-message-events"
UPDATES = "app-message-updates"


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 0.0


class Table:
    """``raw`` / ``peek`` / ``put`` over a dict, as ``RebuildingTable`` stores values."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts: list[tuple[int, str]] = []

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def peek(self, key: str) -> Any:
        value = self.data.get(key)
        return None if value is None else orjson.loads(value)

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.data[key] = value
        self.puts.append((partition, key))


def input_record(event: dict[str, Any], partitions: int, offset: int = 0,
                 own_partition: bool = True) -> Rec:
    """The Avro record of a JSON event on its input topic, in its message's own
    partition (or the next one)."""
    kind, decoded, data = parse_json_line(json.dumps(event))
    key = decoded.message_id.encode()
    home = message_partition(key, partitions)
    partition = home if own_partition else (home + 1) % partitions
    return Rec(INPUT_TOPICS[kind], partition, offset, key, data)
