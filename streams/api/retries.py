"""A retry request (issue 21): select the campaign's failed messages to send again
(``projections.retries``) and write them as one round to its partition of
``campaign-analytics.retry-requests``; the API's route and the CLI's ``retry`` share it.

One round per request, even with several API processes: a compare-and-set on the
campaign's partition. The requester reads the partition to its end E, selects, writes
its round with ``round_base_offset`` E, then reads back from E: if another record of
the campaign landed first, the other round won and this one answers 409 (readers
ignore its records: docs/consumers.md). A request id found in a valid round
produces nothing new. Earlier rounds are read from the topic, not from a table a sink
would fill: that table would trail the topic, and a round just written could be
missed and requested twice; the offsets are needed for the compare-and-set anyway.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from projections.errors import CampaignAnalyticsError
from projections.quiet_hours import QuietHours
from projections.retries import EarlierRequest, RetrySelection, select_retries
from sinks.retry_reads import RetryInputs
from streams.api.command_topic import open_campaign_partition, read_campaign
from streams.codecs.commands import decode_retry_request, encode_retry_request
from streams.codecs.phones import contact_zone
from streams.settings import ConfigurationError, Settings

# A round seen with fewer records than its round_size is still being written; past
# this age its writer is taken for dead and its records for all it wrote.
ROUND_WRITE_SECONDS = 60.0
# Tests only: seconds to wait between selecting and writing, so that two requests
# sent together are sure to overlap (tests/integration/test_retries.py).
UNSAFE_HOLD_ENV = "CA_UNSAFE_RETRY_HOLD_SECONDS"


class RetryConflictError(CampaignAnalyticsError):
    """Another round of the campaign was written first, or is being written (409)."""


@dataclass
class _Round:
    base: int
    size: int
    valid: bool
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _History:
    """The campaign's rounds in its partition, by the validity rule of docs/consumers.md."""

    campaign_id: str
    rounds: dict[str, _Round] = field(default_factory=dict)
    last_offset: int | None = None

    def add(self, offset: int, record: dict[str, Any]) -> None:
        found = self.rounds.get(record["round_id"])
        if found is None:
            base = record["round_base_offset"]
            found = _Round(base, record["round_size"],
                           self.last_offset is None or self.last_offset < base)
            self.rounds[record["round_id"]] = found
        found.records.append(record)
        self.last_offset = offset

    def valid(self) -> list[_Round]:
        return [r for r in self.rounds.values() if r.valid]


@dataclass(frozen=True)
class RetryAnswer:
    campaign_id: str
    request_id: str
    dry_run: bool
    repeated: bool  # the request id had been answered: nothing new was written
    round_id: str | None  # None: nothing written
    counts: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "request_id": self.request_id,
                "dry_run": self.dry_run, "repeated": self.repeated, "round_id": self.round_id,
                **self.counts}


def quiet_hours(settings: Settings) -> QuietHours | None:
    try:
        return QuietHours.parse(settings.quiet_hours)
    except ValueError as exc:
        raise ConfigurationError(f"CA_QUIET_HOURS: {exc}") from None


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
                history: _History) -> None:
    """Add the campaign's records of ``tp`` in ``[start, end)`` to ``history``."""
    await read_campaign(consumer, tp, start, end, history.campaign_id, decode_retry_request,
                        history.add)


def _answer_of(round_: _Round, campaign_id: str, request_id: str, round_id: str
               ) -> RetryAnswer:
    records = round_.records
    counts = {"requested": len(records),
              "scheduled_later": sum(1 for r in records if r["not_before"] > r["requested_at"]),
              "placed_by_default_zone": sum(1 for r in records if r["zone_by_default"]),
              "skipped": {}}
    return RetryAnswer(campaign_id, request_id, False, True, round_id, counts)


def _records(selection: RetrySelection, campaign_id: str, request_id: str, round_id: str,
             base: int, requested_by: str, now_ms: int, reason: str) -> list[dict[str, Any]]:
    return [{
        "request_id": request_id, "round_id": round_id, "round_base_offset": base,
        "round_size": len(selection.retries), "campaign_id": campaign_id,
        "message_id": r.message.message_id, "original_message_id": r.original_message_id,
        "attempt": r.attempt, "contact_id": r.message.contact_id, "phone": r.message.phone,
        "variant": r.message.variant, "failure_code": r.message.cause,
        "not_before": r.not_before, "time_zone": r.zone, "zone_by_default": r.zone_by_default,
        "requested_by": requested_by, "requested_at": now_ms, "reason": reason,
    } for r in selection.retries]


async def _write(producer: AIOKafkaProducer, tp: TopicPartition, key: bytes,
                 values: list[bytes]) -> int:
    """Write ``values`` to ``tp`` in as few batches as fit, in order; the first offset."""
    futures = []
    batch = producer.create_batch()
    for value in values:
        if batch.append(key=key, value=value, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, tp.topic, partition=tp.partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError("a retry request is larger than a batch")
    futures.append(await producer.send_batch(batch, tp.topic, partition=tp.partition))
    metadata = await asyncio.gather(*futures)
    return min(m.offset for m in metadata)


async def request_retries(
        settings: Settings, campaign_id: str,
        read_inputs: Callable[[], Awaitable[RetryInputs]], *,
        dry_run: bool, reason: str, requested_by: str, request_id: str | None = None,
        now_ms: int | None = None) -> RetryAnswer:
    """Select and (unless ``dry_run``) write one round; ``RetryConflictError`` when
    another round won. ``read_inputs``: the campaign's failed messages and opt-outs."""
    request_id = request_id or str(uuid.uuid4())
    topic = settings.retry_requests_topic
    async with open_campaign_partition(settings, topic, campaign_id) as part:
        producer, consumer, tp, start, end = (
            part.producer, part.consumer, part.tp, part.start, part.end)
        history = _History(campaign_id)
        await _read(consumer, tp, start, end, history)
        if not dry_run:
            for round_id, found in history.rounds.items():
                if found.valid and found.records[0]["request_id"] == request_id:
                    return _answer_of(found, campaign_id, request_id, round_id)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        for found in history.valid():
            young = now - found.records[-1]["requested_at"] < ROUND_WRITE_SECONDS * 1000
            if len(found.records) < found.size and young:
                raise RetryConflictError("another retry round of this campaign is being "
                                         "written; try again in a minute")
        inputs = await read_inputs()
        max_age = settings.retry_max_age
        selection = select_retries(
            inputs.failed, inputs.opted_out_by_reply,
            [EarlierRequest(r["message_id"], r["original_message_id"])
             for found in history.valid() for r in found.records],
            now_ms=now, quiet=quiet_hours(settings),
            place=lambda phone: _place(phone, settings.default_time_zone),
            max_attempts=settings.retry_max_attempts,
            max_age_ms=None if max_age is None else int(max_age * 1000))
        if dry_run or not selection.retries:
            return RetryAnswer(campaign_id, request_id, dry_run, False, None, selection.counts())
        hold = float(os.environ.get(UNSAFE_HOLD_ENV) or 0)
        if hold > 0:
            await asyncio.sleep(hold)
        round_id = str(uuid.uuid4())
        values = [encode_retry_request(r) for r in _records(
            selection, campaign_id, request_id, round_id, end, requested_by, now, reason)]
        first = await _write(producer, tp, campaign_id.encode(), values)
        after = _History(campaign_id)
        await _read(consumer, tp, end, first + 1, after)
        won = next(iter(after.rounds), None)
        if won != round_id:
            raise RetryConflictError("another retry round of this campaign was written "
                                     "first; this one does not count (ask again to see "
                                     "what is left)")
        return RetryAnswer(campaign_id, request_id, False, False, round_id, selection.counts())


def _place(phone: str, default_zone: str) -> tuple[str, bool]:
    placement = contact_zone(phone, default_zone)
    return placement.zone, placement.by_default
