"""A STAND-IN SENDER FOR THE DEMO ONLY (``campaign-analytics demo-sender``).

Sending is the messaging platform's job, not this system's; ``make run`` starts this
in its place so the demo shows retries recovering messages. It reads every valid
round of ``campaign-analytics.retry-requests`` (docs/consumers.md), waits for each
record's ``not_before``, publishes a new ``sent`` event with ``retry_of`` (same contact,
phone and variant) and a few seconds later its receipt (mostly DELIVERED). Ids derive
from the request (``<original>-a<attempt>``), so a restart, which reads the topic
from the start again, publishes duplicates the fold ignores. Never run it beside a
real sending service.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.cli.admin import ensure_topics
from streams.codecs.commands import decode_retry_request
from streams.codecs.input_avro import parse_json_line
from streams.kafka_security import client_options
from streams.settings import Settings

log = logging.getLogger("campaign_analytics.demo_sender")

DELIVERED_SHARE = 0.8  # of the retries; the others fail again (30003, temporary)


@dataclass
class _Rounds:
    """The round validity rule of docs/consumers.md for one partition, record by
    record: a round is valid when its campaign's previous record lies below its
    ``round_base_offset`` (or there is none)."""

    last: dict[str, int] = field(default_factory=dict)  # campaign -> last offset
    valid: dict[str, bool] = field(default_factory=dict)  # round id -> valid

    def accept(self, offset: int, record: dict[str, Any]) -> bool:
        campaign, round_id = record["campaign_id"], record["round_id"]
        if round_id not in self.valid:
            before = self.last.get(campaign)
            self.valid[round_id] = before is None or before < record["round_base_offset"]
        self.last[campaign] = offset
        return self.valid[round_id]


def _ms(value: Any) -> int:
    """A timestamp-millis field as epoch ms (an int, or a datetime from fastavro)."""
    return value if isinstance(value, int) else int(value.timestamp() * 1000)


def _roll(text: str) -> float:
    """A number in [0, 1) fixed by ``text``: the same request always gets the same fate."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def retry_events(record: dict[str, Any], sent_at: int, receipt_delay_ms: int
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The new ``sent`` event and its receipt for one retry request."""
    new_id = f"{record['original_message_id']}-a{record['attempt']}"
    sent = {"type": "sent", "event_id": f"{new_id}-sent", "message_id": new_id,
            "occurred_at": sent_at, "campaign_id": record["campaign_id"],
            "variant": record["variant"], "contact_id": record["contact_id"],
            "phone": record["phone"], "outcome": "ACCEPTED", "segments": 1,
            "retry_of": record["message_id"]}
    delivered = _roll(new_id) < DELIVERED_SHARE
    receipt = {"type": "delivery", "event_id": f"{new_id}-receipt", "message_id": new_id,
               "occurred_at": sent_at + receipt_delay_ms,
               "status": "DELIVERED" if delivered else "FAILED",
               "error_code": None if delivered else "30003",
               "error_description": None if delivered else "Unreachable destination handset",
               "carrier": "demo-sender"}
    return sent, receipt


class DemoSender:
    def __init__(self, settings: Settings, receipt_delay: float) -> None:
        self.settings = settings
        self.receipt_delay = receipt_delay
        self.producer: AIOKafkaProducer | None = None
        self.pending: set[asyncio.Task[None]] = set()

    async def _publish(self, event: dict[str, Any]) -> None:
        kind, parsed, data = parse_json_line(json.dumps(event))
        if self.producer is None:
            raise RuntimeError("the demo sender is not running")
        await self.producer.send_and_wait(self.settings.input_topics[kind], value=data,
                                          key=parsed.message_id.encode())

    async def _send(self, record: dict[str, Any]) -> None:
        wait = (_ms(record["not_before"]) - time.time() * 1000) / 1000
        if wait > 0:
            log.info("retry of %s waits %.0f s for quiet hours to end", record["message_id"], wait)
            await asyncio.sleep(wait)
        sent, receipt = retry_events(record, int(time.time() * 1000),
                                     int(self.receipt_delay * 1000))
        await self._publish(sent)
        await asyncio.sleep(self.receipt_delay)
        await self._publish(receipt)
        log.info("sent %s (retry of %s): %s", sent["message_id"], record["message_id"],
                 receipt["status"])

    async def run(self) -> None:
        settings = self.settings
        await ensure_topics(settings)
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                         acks="all", enable_idempotence=True,
                                         **client_options(settings))
        consumer = AIOKafkaConsumer(settings.retry_requests_topic,
                                    bootstrap_servers=settings.kafka_bootstrap,
                                    group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **client_options(settings))
        await self.producer.start()
        try:
            await consumer.start()
            rounds: dict[int, _Rounds] = {}
            async for message in consumer:
                if message.value is None:
                    continue
                record = decode_retry_request(message.value)
                if not rounds.setdefault(message.partition, _Rounds()).accept(
                        message.offset, record):
                    continue  # a round that lost (docs/consumers.md): not a command
                task = asyncio.create_task(self._send(record))
                self.pending.add(task)
                task.add_done_callback(self._done)
        finally:
            for task in self.pending:
                task.cancel()
            await consumer.stop()
            await self.producer.stop()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a demo retry could not be published: %s", task.exception())
