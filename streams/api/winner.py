"""The winner decision (issue 21 item 3): record one ``WinnerDecided`` per campaign on
``campaign-analytics.winner-decisions``; the API's routes and the CLI's ``winner``
share it.

One decision per campaign, even with several processes asked at once: the campaign's
first record on the topic is its decision (docs/consumers.md), so the writer reads
the campaign's partition to its end E (a decision there: 409 with it), writes, and
reads back from E: if the campaign's first record after E is not its own, another
decision won and this one answers 409 with that one. The same compare-and-set as
the retry rounds (``streams/api/retries.py``), on the shared ``command_topic``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from projections.errors import CampaignAnalyticsError
from projections.winner import check_request, decision_record
from streams.api.command_topic import open_campaign_partition, read_campaign
from streams.api.timefmt import iso
from streams.codecs.commands import decode_winner_decision, encode_winner_decision
from streams.settings import Settings


class WinnerDecidedError(CampaignAnalyticsError):
    """The campaign has a decision already (409); ``decision`` is that one."""

    def __init__(self, decision: dict[str, Any]) -> None:
        super().__init__(f"campaign {decision['campaign_id']} has a decision already: "
                         f"{decision['variant']}, by {decision['requested_by']}")
        self.decision = decision


async def _first(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
                 campaign_id: str) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = []
    await read_campaign(consumer, tp, start, end, campaign_id, decode_winner_decision,
                        lambda _, record: found.append(record))
    return found[0] if found else None


async def read_decision(settings: Settings, campaign_id: str) -> dict[str, Any] | None:
    """The campaign's decision, or None."""
    async with open_campaign_partition(settings, settings.winner_decisions_topic,
                                       campaign_id) as part:
        return await _first(part.consumer, part.tp, part.start, part.end, campaign_id)


async def decide_winner(settings: Settings, campaign_id: str,
                        statistics: Callable[[], tuple[dict[str, Any], str]], *,
                        variant: str, reason: str, force: bool, requested_by: str
                        ) -> dict[str, Any]:
    """Record the decision and return its record. ``statistics``: the A/B answer and
    the as_of of its snapshot, asked after the topic is read (a decision made
    meanwhile is found first). Raises ``WinnerDecidedError``, and
    ``projections.winner``'s errors for a request that may not be recorded."""
    async with open_campaign_partition(settings, settings.winner_decisions_topic,
                                       campaign_id) as part:
        earlier = await _first(part.consumer, part.tp, part.start, part.end, campaign_id)
        if earlier is not None:
            raise WinnerDecidedError(earlier)
        ab, as_of = statistics()
        forced = check_request(ab, variant, reason, force)
        record = decision_record(ab, campaign_id, variant, reason=reason, forced=forced,
                                 requested_by=requested_by, decided_at=int(time.time() * 1000),
                                 decision_id=str(uuid.uuid4()), as_of=as_of)
        sent = await part.producer.send_and_wait(
            part.tp.topic, encode_winner_decision(record), key=campaign_id.encode(),
            partition=part.tp.partition)
        won = await _first(part.consumer, part.tp, part.end, sent.offset + 1, campaign_id)
        if won is None or won["decision_id"] != record["decision_id"]:
            raise WinnerDecidedError(won or record)
        return won


def decision_body(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of a decision: the record, its statistics as JSON, not text."""
    body = {k: v for k, v in record.items() if k != "statistics_json"}
    body["decided_at"] = iso(record["decided_at"])
    body["statistics"] = orjson.loads(record["statistics_json"])
    return body

