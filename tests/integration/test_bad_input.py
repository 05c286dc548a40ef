"""Every bad-input rule of domain.md section 5, end to end (issue 19 item 4): one record
of each bad kind published to the real input topics beside valid events; each lands
in the dead-letter topic with its reason, and the valid events count exactly."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas import MAGIC
from streams.cli.demo import generate_campaign
from streams.codecs import input_avro as codec
from tests.integration.conftest import Deployment, metric_sum
from tests.integration.test_pipeline import _expected, _pick
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DAY = 24 * 3600 * 1000


def _sent(at: int, **overrides: Any) -> dict[str, Any]:
    record = {"event_id": "bad-e", "message_id": "bad-m", "occurred_at": at,
              "campaign_id": "camp-bad-input", "variant": None, "contact_id": "bad-k",
              "contact_name": None, "phone": "+15550001111", "outcome": "ACCEPTED",
              "error_code": None, "error_description": None, "segments": 1}
    return record | overrides


def _unknown_status(at: int) -> bytes:
    """A delivery whose status is a symbol the schema does not have: on the wire an
    enum index out of range, under the current schema's fingerprint."""
    schema = json.loads((SCHEMAS / "delivery.v1.avsc").read_text())
    for field in schema["fields"]:
        if field["name"] == "status":
            field["type"]["symbols"].append("LOST")
    out = io.BytesIO()
    out.write(MAGIC + codec.CURRENT["delivery"].fingerprint)
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), {
        "event_id": "bad-e9", "message_id": "bad-m9", "occurred_at": at, "status": "LOST",
        "error_code": None, "error_description": None, "carrier": None})
    return out.getvalue()


def _bad_records(now: int) -> list[tuple[str, bytes, bytes, str]]:
    """(kind of input topic, key, value, a part of the reason) for each bad kind."""
    valid = codec.encode_record("sent", _sent(now))
    return [
        ("sent", b"bad-1", b"garbage", "not an Avro single-object-encoded record"),
        ("delivery", b"bad-2", MAGIC + codec.CURRENT["delivery"].fingerprint + b"\xff" * 20,
         "delivery record does not decode"),
        ("sent", b"bad-3", MAGIC + b"\x01" * 8 + valid[10:], "unknown schema fingerprint"),
        ("delivery", b"bad-4", _unknown_status(now), "delivery record does not decode"),
        ("sent", b"bad-5", codec.encode_record("sent", _sent(now, event_id="")),
         "event_id is empty"),
        ("sent", b"bad-6", codec.encode_record("sent", _sent(now + 30 * DAY)),
         "occurred_at is more than 7 days in the future"),
        ("sent", b"bad-7", codec.encode_record("sent", _sent(now, contact_name="x" * 5000)),
         "contact_name is longer than 4096 characters"),
        ("sent", b"bad-8", codec.encode_record("sent", _sent(now, contact_id="k\x00\x1b")),
         "contact_id has a control character"),
        ("sent", b"bad-9", codec.encode_record(
            "sent", _sent(now, message_id="m'); DROP TABLE events; --")),
         "message_id has \"'\""),
        ("sent", b"bad-10", codec.encode_record(
            "sent", _sent(now, campaign_id="camp-bad-input' OR '1'='1")),
         "campaign_id has \"'\""),
        ("reply", b"bad-11", valid, "a sent record on the reply topic"),
    ]


async def _dead_letters(bootstrap: str, topic: str, count: int, timeout: float = 60
                        ) -> list[Any]:
    """The first ``count`` records of the dead-letter topic, with their headers."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def test_each_bad_kind_is_dead_lettered_with_its_reason(deployment: Deployment) -> None:
    from aiokafka import AIOKafkaProducer

    from streams.cli.admin import ensure_topics, read_topic

    good = generate_campaign("camp-bad-input", 40, seed=51, duplicate_rate=0)
    settings = deployment.settings()
    now = int(time.time() * 1000)
    bad = _bad_records(now)
    records = [(settings.input_topics[line["type"]], line["message_id"].encode(),
                codec.parse_json_line(json.dumps(line))[2]) for line in good]
    for i, (kind, key, value, _) in enumerate(bad):  # among the valid ones
        records.insert(3 * i + 1, (settings.input_topics[kind], key, value))

    async def produce() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                    max_request_size=2_000_000)
        await producer.start()
        try:
            for topic, key, value in records:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    worker = deployment.worker().start()
    worker.wait_ready()
    deployment.wait_for_summary("camp-bad-input", _expected(good, "camp-bad-input"),
                                keys=_pick)

    dead = asyncio.run(_dead_letters(settings.kafka_bootstrap, settings.dead_letter_topic,
                                     len(bad)))
    reasons = {r.key: dict(r.headers).get("reason", b"").decode() for r in dead}
    want = {key: reason for _, key, _, reason in bad}
    assert sorted(reasons) == sorted(want), reasons
    for key, reason in want.items():
        assert reason in reasons[key], (key, reasons[key])
    by_key = {r.key: r for r in dead}
    for kind, key, value, _ in bad:  # as it came, and where from
        headers = dict(by_key[key].headers)
        assert by_key[key].value == value
        assert headers["source-topic"].decode() == settings.input_topics[kind]
    # the plain reader sees the same records, and nothing more arrives
    assert sorted(k for k, _ in asyncio.run(read_topic(settings,
                                                       settings.dead_letter_topic))) == sorted(want)
    wait_until(lambda: metric_sum(worker.metrics(), "campaign_analytics_rejected_records_total")
               >= len(bad), "every rejection counted", 15, 0.5)
    assert metric_sum(worker.metrics(), "campaign_analytics_rejected_records_total") == len(bad)
