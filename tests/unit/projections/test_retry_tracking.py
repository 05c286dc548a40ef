"""Retries (domain.md 3b): counted like any message, `retries` and
`recovered_by_retry` beside them, and the A/B statistics on first attempts only."""

from __future__ import annotations

import json
from typing import Any

from projections.ab import ab_statistics, first_attempt_counts
from projections.metrics import summarize
from streams.cli.demo import generate_campaign
from tests.oracle import recount
from tests.unit.projections.test_projections import normalized, stream_fold, summaries

T0 = 1_790_000_000_000


def _sent(message_id: str, contact: str, variant: str, at: int, **extra: Any) -> dict[str, Any]:
    return {"type": "sent", "event_id": f"{message_id}-s", "message_id": message_id,
            "occurred_at": at, "campaign_id": "c", "variant": variant, "contact_id": contact,
            "phone": "+15550000001", "outcome": "ACCEPTED"} | extra


def _receipt(message_id: str, status: str, at: int, n: int = 0) -> dict[str, Any]:
    return {"type": "delivery", "event_id": f"{message_id}-d{n}", "message_id": message_id,
            "occurred_at": at, "status": status,
            "error_code": None if status == "DELIVERED" else "30003"}


def _click(message_id: str, at: int) -> dict[str, Any]:
    return {"type": "click", "event_id": f"{message_id}-c", "message_id": message_id,
            "occurred_at": at, "link_id": "l"}


def _reply(message_id: str, contact: str, at: int, body: str = "yes") -> dict[str, Any]:
    return {"type": "reply", "event_id": f"{message_id}-r", "message_id": message_id,
            "occurred_at": at, "contact_id": contact, "phone": "+15550000001", "body": body}


def _summary(events: list[dict[str, Any]], campaign: str = "c") -> dict[str, Any]:
    _, campaigns = stream_fold(events)
    got = summaries(campaigns)
    assert got == normalized(recount(events))  # the oracle agrees, whatever the case
    return summarize(campaign, campaigns[campaign])


def _ab(summary: dict[str, Any]) -> dict[str, object]:
    """The A/B statistics as the API computes them (JSON, as it answers them)."""
    return json.loads(json.dumps(ab_statistics(first_attempt_counts(summary["variants"]))))


def _retry_messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Retries of the campaign's failed messages: delivered, clicked and replied to
    (an opt-out among them); every other one fails again or is rejected."""
    sends = {e["message_id"]: e for e in events if e["type"] == "sent"}
    failed = sorted({e["message_id"] for e in events if e.get("status") == "UNDELIVERED"
                     or e.get("outcome") == "REJECTED"})
    assert len(failed) >= 6, "the campaign needs failures to retry"
    out: list[dict[str, Any]] = []
    for i, original in enumerate(failed):
        first = sends[original]
        retry = f"{original}-retry"
        at = first["occurred_at"] + 3_600_000
        out.append(_sent(retry, first["contact_id"], first["variant"], at, campaign_id=
                         first["campaign_id"], retry_of=original,
                         **({"outcome": "REJECTED", "error_code": "30003"} if i % 5 == 4
                            else {})))
        if i % 5 == 4:
            continue
        out.append(_receipt(retry, "DELIVERED" if i % 5 else "FAILED", at + 2_000))
        if i % 5 in (1, 2):
            out.append(_click(retry, at + 60_000))
        if i % 5 in (2, 3):
            out.append(_reply(retry, first["contact_id"], at + 90_000,
                              "STOP" if i % 5 == 3 else "thanks"))
    return out


def test_retries_change_the_counts_but_not_the_ab_statistics():
    events = generate_campaign("c", 400, seed=11, duplicate_rate=0.0)
    before = _summary(events)
    retries = _retry_messages(events)
    after = _summary(events + retries)

    retried = sum(1 for e in retries if e["type"] == "sent")
    accepted = sum(1 for e in retries if e["type"] == "sent" and e["outcome"] == "ACCEPTED")
    recovered = sum(1 for e in retries if e.get("status") == "DELIVERED")
    assert (before["retries"], before["recovered_by_retry"]) == (0, 0)
    assert (after["retries"], after["recovered_by_retry"]) == (retried, recovered)
    assert after["sent"] == before["sent"] + accepted
    assert after["delivered"] == before["delivered"] + recovered
    assert after["failed"] == before["failed"] + retried - recovered
    assert sum(v["retries"] for v in after["variants"].values()) == retried
    assert sum(v["recovered_by_retry"] for v in after["variants"].values()) == recovered
    # the retries clicked and replied: the variant counts moved, the first attempts not
    assert after["link_clicks"] > before["link_clicks"]
    assert after["replies"] > before["replies"]
    for name, variant in after["variants"].items():
        assert variant["first_attempts"] == before["variants"][name]["first_attempts"]
    assert _ab(after) == _ab(before)
    # negative control: fed the variants' whole counts, the statistics do move
    whole = json.loads(json.dumps(ab_statistics(after["variants"])))
    assert whole != _ab(before)


def test_a_contact_who_clicks_only_on_the_retry_is_a_unique_clicker_but_not_a_first_attempt_one():
    events = [
        _sent("m1", "k1", "A", T0), _receipt("m1", "UNDELIVERED", T0 + 1),
        _sent("m1r", "k1", "A", T0 + 10, retry_of="m1"), _receipt("m1r", "DELIVERED", T0 + 11),
        _click("m1r", T0 + 12), _reply("m1r", "k1", T0 + 13),
        # k2 clicked the first attempt and its retry: one unique clicker in both views
        _sent("m2", "k2", "A", T0), _receipt("m2", "DELIVERED", T0 + 1), _click("m2", T0 + 2),
        _sent("m2r", "k2", "B", T0 + 10, retry_of="m2"), _click("m2r", T0 + 12),
    ]
    summary = _summary(events)
    a, b = summary["variants"]["A"], summary["variants"]["B"]
    assert (summary["unique_link_clicks"], summary["first_attempts"]["unique_link_clicks"]) \
        == (2, 1)
    assert (summary["unique_repliers"], summary["first_attempts"]["unique_repliers"]) == (1, 0)
    assert (a["unique_link_clicks"], a["first_attempts"]["unique_link_clicks"]) == (2, 1)
    # in B, k2's only message is a retry
    assert (b["unique_link_clicks"], b["first_attempts"]["unique_link_clicks"]) == (1, 0)
    assert (b["retries"], b["recovered_by_retry"], b["first_attempts"]["sent"]) == (1, 0, 0)
    assert (summary["retries"], summary["recovered_by_retry"]) == (2, 1)


def test_a_superseding_undelivered_receipt_uncounts_the_recovery():
    events = [_sent("m1", "k1", "A", T0), _receipt("m1", "FAILED", T0 + 1),
              _sent("m1r", "k1", "A", T0 + 10, retry_of="m1"),
              _receipt("m1r", "DELIVERED", T0 + 11)]
    assert _summary(events)["recovered_by_retry"] == 1
    later = _summary(events + [_receipt("m1r", "UNDELIVERED", T0 + 20, n=1)])
    assert (later["retries"], later["recovered_by_retry"], later["delivered"]) == (1, 0, 0)
    assert later["variants"]["A"]["failed"] == 2


def test_a_rejected_retry_is_a_retry_and_a_failure():
    events = [_sent("m1", "k1", "A", T0), _receipt("m1", "FAILED", T0 + 1),
              _sent("m1r", "k1", "A", T0 + 10, retry_of="m1", outcome="REJECTED",
                    error_code="30003")]
    summary = _summary(events)
    assert (summary["retries"], summary["recovered_by_retry"]) == (1, 0)
    assert (summary["sent"], summary["failed"]) == (1, 2)
    assert (summary["first_attempts"]["sent"], summary["first_attempts"]["failed"]) == (1, 1)


def test_first_attempt_counts_fall_back_to_a_summary_written_before_retries():
    old = {"A": {"sent": 5, "delivered": 4}, "B": {"sent": 5, "first_attempts": None}}
    assert first_attempt_counts(old) == {"A": {"sent": 5, "delivered": 4},
                                         "B": {"sent": 5, "first_attempts": None}}
    new = {"A": {"sent": 6, "first_attempts": {"sent": 5}}}
    assert first_attempt_counts(new) == {"A": {"sent": 5}}


def test_the_log_row_of_a_retry_names_the_message_it_retries():
    from projections.message import MessageState, apply_event
    from projections.message_log import message_log_row
    from streams.codecs.input_avro import parse_json_line

    state = MessageState("m1r")
    for line in (_sent("m1r", "k1", "A", T0, retry_of="m1"), _receipt("m1r", "DELIVERED", T0 + 5)):
        state = apply_event(state, parse_json_line(json.dumps(line), now_ms=T0 + 10)[1])
    row = message_log_row(state, updated_at=T0 + 10)
    assert row is not None and (row.retry_of, row.status) == ("m1", "delivered")
