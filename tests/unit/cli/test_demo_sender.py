"""The demo's stand-in sender (streams/cli/demo_sender.py): the events it makes of a
retry request are valid input, deterministic, and it skips rounds that lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from streams.cli.demo_sender import _ms, _Rounds, retry_events
from streams.codecs.commands import decode_retry_request, encode_retry_request
from streams.codecs.input_avro import parse_json_line


def _request(message_id: str = "m1", round_id: str = "r1", base: int = 0,
             attempt: int = 1, campaign: str = "c") -> dict[str, Any]:
    return {"request_id": "q", "round_id": round_id, "round_base_offset": base,
            "round_size": 1, "campaign_id": campaign, "message_id": message_id,
            "original_message_id": "m0" if attempt > 1 else message_id, "attempt": attempt,
            "contact_id": "k1", "phone": "+15550000001", "variant": "B",
            "failure_code": "30003", "not_before": 1_700_000_000_000, "time_zone": "UTC",
            "zone_by_default": True, "requested_by": "api",
            "requested_at": 1_700_000_000_000, "reason": ""}


def test_a_retry_is_a_valid_sent_event_with_retry_of_then_a_receipt() -> None:
    record = decode_retry_request(encode_retry_request(_request("m0-a1", attempt=2)))
    sent, receipt = retry_events(record, 1_700_000_100_000, 8_000)
    kind, event, _ = parse_json_line(json.dumps(sent))
    assert kind == "sent"
    assert event.message_id == "m0-a2" and event.retry_of == "m0-a1"  # type: ignore[attr-defined]
    assert (sent["contact_id"], sent["phone"], sent["variant"]) == ("k1", "+15550000001", "B")
    kind, event, _ = parse_json_line(json.dumps(receipt))
    assert kind == "delivery" and event.message_id == "m0-a2"
    assert receipt["occurred_at"] == sent["occurred_at"] + 8_000
    # a replay (the sender restarted) makes the same events: duplicates the fold ignores
    assert retry_events(record, 1_700_000_100_000, 8_000) == (sent, receipt)


def test_most_retries_are_delivered_and_some_fail_again() -> None:
    statuses = [retry_events(_request(f"m{n}"), 0, 1)[1]["status"] for n in range(200)]
    assert 120 < statuses.count("DELIVERED") < 190
    assert statuses.count("FAILED") == 200 - statuses.count("DELIVERED")


def test_rounds_that_lost_are_skipped() -> None:
    rounds = _Rounds()
    assert rounds.accept(0, _request("m1", "r1", base=0))
    assert rounds.accept(1, _request("m2", "r1", base=0))  # the same round goes on
    # r2 had read up to offset 1 only: r1's record at 1 lies between, so r2 lost
    assert not rounds.accept(2, _request("m3", "r2", base=1))
    assert not rounds.accept(3, _request("m4", "r2", base=1))
    assert rounds.accept(4, _request("m5", "r3", base=4))  # read everything before it
    assert rounds.accept(5, _request("m6", "r4", base=0, campaign="other"))  # per campaign
    # negative control: without the rule, r2 would have been sent
    assert _Rounds().accept(2, _request("m3", "r2", base=1))


def test_timestamps_read_either_way() -> None:
    assert _ms(1_700_000_000_000) == 1_700_000_000_000
    assert _ms(datetime.fromtimestamp(1_700_000_000, UTC)) == 1_700_000_000_000
