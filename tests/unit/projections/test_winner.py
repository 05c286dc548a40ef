"""The winner decision's rules and record (projections/winner.py): a variant the
verdict names is decided, anything else is refused unless forced with a reason; the
record round-trips through its Avro schema and carries enough for an auditor to
recompute the verdict from the record alone."""

from __future__ import annotations

import json

import pytest

from projections.ab import AbConfig, ab_statistics
from projections.winner import (
    WinnerRefusedError,
    WinnerRequestError,
    check_request,
    decision_record,
)
from streams.codecs.commands import decode_winner_decision, encode_winner_decision


def arm(sent: int, clicks: int) -> dict[str, int]:
    # previews and bots clicked too (raw 20 more); the verdict is on human clicks
    return {"sent": sent, "delivered": sent - 10, "failed": 10,
            "unique_link_clicks": clicks + 20, "unique_human_link_clicks": clicks,
            "unique_repliers": clicks // 3, "opt_outs": 2}


CLEAR = ab_statistics({"A": arm(5000, 500), "B": arm(5000, 650)})  # 10 % vs 13 %
EVEN = ab_statistics({"A": arm(5000, 500), "B": arm(5000, 505)})


def _record(ab: dict, variant: str, forced: bool, reason: str = "") -> dict:
    return decision_record(ab, "c1", variant, reason=reason, forced=forced,
                           requested_by="cli:ana", decided_at=1_800_000_000_000,
                           decision_id="d-1", as_of="2027-01-15T08:00:00.000Z")


def test_the_verdicts_winner_is_decided_without_force():
    assert CLEAR["verdict"]["status"] == "winner" and CLEAR["verdict"]["variant"] == "B"
    assert check_request(CLEAR, "B", "", force=False) is False
    assert check_request(CLEAR, "B", "clear", force=True) is False  # not forced: it won


def test_no_winner_yet_is_refused_with_the_reasons_unless_forced_with_a_reason():
    assert EVEN["verdict"]["status"] == "no_winner_yet"
    with pytest.raises(WinnerRefusedError) as refused:
        check_request(EVEN, "B", "looks better", force=False)
    assert refused.value.verdict == EVEN["verdict"]
    assert "no_winner_yet" in str(refused.value)
    assert EVEN["verdict"]["reasons"][0] in str(refused.value)
    with pytest.raises(WinnerRequestError, match="needs a reason"):
        check_request(EVEN, "B", "  ", force=True)
    assert check_request(EVEN, "B", "launch date", force=True) is True


def test_another_variant_than_the_verdicts_winner_needs_force_too():
    with pytest.raises(WinnerRefusedError, match="winner is B, not A"):
        check_request(CLEAR, "A", "", force=False)
    assert check_request(CLEAR, "A", "brand rules", force=True) is True


def test_a_variant_the_campaign_does_not_have_is_a_bad_request():
    for force in (False, True):
        with pytest.raises(WinnerRequestError, match="no variant 'C'"):
            check_request(CLEAR, "C", "why", force=force)
    with pytest.raises(WinnerRequestError, match="at most"):
        check_request(CLEAR, "B", "x" * 2001, force=False)


def test_the_record_round_trips_and_keeps_the_statistics_as_they_stood():
    record = _record(CLEAR, "B", False)
    decoded = decode_winner_decision(encode_winner_decision(record))
    assert decoded == record
    assert json.loads(decoded["statistics_json"]) == json.loads(json.dumps(CLEAR))
    assert (decoded["verdict_status"], decoded["verdict_variant"]) == ("winner", "B")
    assert decoded["verdict_p_value"] == CLEAR["verdict"]["always_valid_p_value"] < 0.05
    assert decoded["verdict_reasons"] == [] and decoded["always_valid"]
    by_name = {v["variant"]: v for v in decoded["variants"]}
    assert (by_name["B"]["successes"], by_name["B"]["trials"]) == (650, 5000)
    assert decoded["verdict_metric"] == "human_click_rate"  # CA_AB_CLICKS=human
    b_vs_a = CLEAR["comparisons"][0]["metrics"]["human_click_rate"]
    assert by_name["B"]["always_valid_p_value"] == b_vs_a["always_valid_p_value"]
    assert by_name["B"]["p_value"] == b_vs_a["p_value"]
    assert by_name["A"]["p_value"] is None  # the control
    forced = decode_winner_decision(encode_winner_decision(_record(EVEN, "B", True, "why")))
    assert forced["forced"] and forced["reason"] == "why"
    assert forced["verdict_status"] == "no_winner_yet" and forced["verdict_reasons"]
    assert forced["verdict_variant"] is None and forced["verdict_p_value"] is None


@pytest.mark.parametrize("ab", [CLEAR, EVEN])
def test_an_auditor_recomputes_the_verdict_from_the_typed_fields_alone(ab):
    record = decode_winner_decision(encode_winner_decision(_record(ab, "B", True, "audit")))
    counts = {v["variant"]: {k: v[k] for k in ("sent", "delivered", "failed", "pending",
                                               "unknown", "unique_repliers",
                                               "unique_link_clicks", "opt_outs")}
              for v in record["variants"]}
    # the human clickers are the successes of the metric the verdict is on
    assert record["verdict_metric"] == "human_click_rate"
    for v in record["variants"]:
        counts[v["variant"]]["unique_human_link_clicks"] = v["successes"]
    # clicks="raw": the record's metric exactly as it names it
    again = ab_statistics(counts, AbConfig(alpha=record["alpha"], level=record["level"],
                                           control=record["control"], clicks="raw",
                                           primary=record["verdict_metric"]))
    assert again["verdict"]["status"] == record["verdict_status"]
    assert again["verdict"].get("variant") == record["verdict_variant"]
    assert again["verdict"].get("always_valid_p_value") == record["verdict_p_value"]
    # Negative control: other counts give another verdict.
    counts["B"]["unique_human_link_clicks"] = 500 if ab is CLEAR else 700
    moved = ab_statistics(counts, AbConfig(alpha=record["alpha"]))
    assert moved["verdict"]["status"] != record["verdict_status"]
