"""Publish JSON-lines events to the input topics, keyed by message_id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from projections.errors import InvalidEventError
from streams.cli.admin import ensure_topics
from streams.codecs.input_avro import parse_json_line
from streams.kafka_security import client_options
from streams.settings import Settings

CHECK_EVERY = 10_000  # records between two checks of their deliveries (bounded memory)


@dataclass
class PublishReport:
    published: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


async def publish_lines(settings: Settings, lines: Iterable[str]) -> PublishReport:
    """Validate every line; publish the valid ones; a bad line never stops the others."""
    await ensure_topics(settings)
    report = PublishReport()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        **client_options(settings),
    )
    await producer.start()
    sent: list[tuple[int, asyncio.Future[object]]] = []
    try:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                kind, event, data = parse_json_line(line)
            except InvalidEventError as exc:
                report.rejected.append((line_no, exc.reason))
                continue
            sent.append((line_no, await producer.send(
                settings.input_topics[kind], value=data, key=event.message_id.encode())))
            if len(sent) >= CHECK_EVERY:
                await producer.flush()
                _tally(sent, report)
        await producer.flush()
    finally:
        await producer.stop()
    _tally(sent, report)
    report.rejected.sort()
    return report


def _tally(sent: list[tuple[int, asyncio.Future[object]]], report: PublishReport) -> None:
    """Count delivered records as published; a record the broker did not take is
    reported with its line, never counted."""
    for line_no, future in sent:
        if not future.done() or future.cancelled():
            report.rejected.append((line_no, "not delivered to Kafka"))
        elif (error := future.exception()) is not None:
            report.rejected.append((line_no, f"not delivered to Kafka: {error!r}"))
        else:
            report.published += 1
    sent.clear()
