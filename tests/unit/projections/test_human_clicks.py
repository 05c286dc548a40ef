"""Human clicks (domain.md 3b): a click is automated when its user agent is a known bot
or preview fetcher, or when it is strictly less than the preview window away, either
side, from the receipt that makes its message delivered; judged again whenever that
receipt arrives or is superseded. Checked against the oracle's plain batch recount
(tests/oracle.py) in any order, with duplicates and in chunks."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.message import MessageState, apply_event, human_click_count
from projections.message_log import message_log_row
from projections.metrics import (
    CampaignCounts,
    ContactActivity,
    apply_changes,
    contribution_fields,
    message_contribution,
    summarize,
)
from streams.codecs import state as codec
from streams.codecs.input_avro import parse_json_line
from streams.pipeline.fold import fold
from tests.oracle import PREVIEW_WINDOW_MS, expected_log, recount

NOW = 1_800_000_000_000
T0 = 1_790_000_000_000
# A preview fetcher, people, no user agent at all, and an empty one.
WHATSAPP = "WhatsApp/2.23.20.0 A"
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0.6367.82 Mobile Safari/537.36")
AGENTS = (WHATSAPP, SLACK, IPHONE, ANDROID, None, "")
HUMAN_KEYS = ("human_link_clicks", "unique_human_link_clicks", "human_link_click_rate",
              "link_clicks", "unique_link_clicks", "sent", "delivered")
FIRST_KEYS = ("human_link_clicks", "unique_human_link_clicks", "link_clicks")


def stream(lines: list[dict[str, Any]], window_ms: int = PREVIEW_WINDOW_MS
           ) -> tuple[dict[str, MessageState], dict[str, CampaignCounts]]:
    """The pipeline in process: decode (the user agent judged there), fold, move the
    views by new - old contribution, one event at a time."""
    states: dict[str, MessageState] = {}
    contributions: dict[str, Any] = {}
    campaigns: dict[str, CampaignCounts] = {}
    contacts: dict[tuple[str, str], ContactActivity] = {}
    for line in lines:
        _, event, _ = parse_json_line(json.dumps(line), now_ms=NOW)
        state = fold(states.get(event.message_id, MessageState(event.message_id)), event)
        states[event.message_id] = state
        new = message_contribution(state, preview_window_ms=window_ms)
        if new is None:
            continue
        old = contributions.get(event.message_id)
        counts, moved, _ = apply_changes(
            campaigns, contacts, {}, [(old and contribution_fields(old), contribution_fields(new))])
        campaigns.update(counts)
        for contact, activity in moved.items():
            if activity is None:
                contacts.pop(contact, None)
            else:
                contacts[contact] = activity
        contributions[event.message_id] = new
    return states, campaigns


def picked(summary: dict[str, Any]) -> dict[str, Any]:
    def bag(values: dict[str, Any]) -> dict[str, Any]:
        return {**{k: values[k] for k in HUMAN_KEYS},
                "first_attempts": {k: values["first_attempts"][k] for k in FIRST_KEYS}}

    return {**bag(summary), "variants": {v: bag(m) for v, m in summary["variants"].items()}}


def streamed(lines: list[dict[str, Any]], window_ms: int = PREVIEW_WINDOW_MS
             ) -> dict[str, dict[str, Any]]:
    _, campaigns = stream(lines, window_ms)
    return {cid: picked(summarize(cid, counts)) for cid, counts in campaigns.items()}


def recounted(lines: list[dict[str, Any]], window_ms: int = PREVIEW_WINDOW_MS
              ) -> dict[str, dict[str, Any]]:
    return {cid: picked(s) for cid, s in recount(lines, preview_window_ms=window_ms).items()}


# --- events -------------------------------------------------------------------------


def sent(m: str, contact: str = "k1", variant: str = "A", at: int = T0, **extra: Any
         ) -> dict[str, Any]:
    return {"type": "sent", "event_id": f"{m}-s", "message_id": m, "occurred_at": at,
            "campaign_id": "c", "variant": variant, "contact_id": contact,
            "phone": "+15550000001", "outcome": "ACCEPTED"} | extra


def receipt(m: str, status: str, at: int, n: int = 0) -> dict[str, Any]:
    return {"type": "delivery", "event_id": f"{m}-d{n}", "message_id": m, "occurred_at": at,
            "status": status, "error_code": None if status == "DELIVERED" else "30003"}


def click(m: str, at: int, agent: str | None = None, n: int = 0) -> dict[str, Any]:
    return {"type": "click", "event_id": f"{m}-c{n}", "message_id": m, "occurred_at": at,
            "link_id": "l", "user_agent": agent}


def humans(lines: list[dict[str, Any]], window_ms: int = PREVIEW_WINDOW_MS) -> int:
    """Human clicks of campaign c, streamed; asserted equal to the recount's."""
    got, want = streamed(lines, window_ms), recounted(lines, window_ms)
    assert got == want
    return int(got["c"]["human_link_clicks"])


# --- the rule, case by case ----------------------------------------------------------

LANDED = T0 + 10_000  # the delivering receipt's time in the cases below


@pytest.mark.parametrize(("offset_ms", "human"), [
    (1_999, False), (2_000, True),  # after the receipt: 1.999 s a preview, 2.000 s a person
    (-1_999, False), (-2_000, True),  # ... and before it (clocks differ)
    (0, False), (60_000, True),
])
def test_the_windows_edge(offset_ms: int, human: bool) -> None:
    lines = [sent("m1"), receipt("m1", "DELIVERED", LANDED),
             click("m1", LANDED + offset_ms, IPHONE)]
    assert humans(lines) == int(human)
    for order in (lines[::-1], [lines[2], lines[0], lines[1]]):  # any arrival order
        assert humans(order) == int(human)


def test_the_window_is_the_setting() -> None:
    lines = [sent("m1"), receipt("m1", "DELIVERED", LANDED), click("m1", LANDED + 3_000)]
    assert humans(lines) == 1
    assert humans(lines, window_ms=5_000) == 0  # CA_PREVIEW_WINDOW_SECONDS=5
    assert humans(lines, window_ms=3_001) == 0 and humans(lines, window_ms=3_000) == 1
    near = [sent("m1"), receipt("m1", "DELIVERED", LANDED), click("m1", LANDED)]
    assert humans(near, window_ms=0) == 1  # 0: the user agent alone judges


def test_a_preview_agent_is_automated_whenever_it_clicks() -> None:
    lines = [sent("m1"), receipt("m1", "DELIVERED", LANDED),
             click("m1", LANDED + 600_000, WHATSAPP, 0), click("m1", LANDED + 600_000, SLACK, 1),
             click("m1", LANDED + 600_000, ANDROID, 2)]
    assert humans(lines) == 1


def test_a_missing_or_empty_user_agent_is_judged_by_time_alone() -> None:
    for agent in (None, ""):
        lines = [sent("m1"), receipt("m1", "DELIVERED", LANDED),
                 click("m1", LANDED + 1_000, agent, 0), click("m1", LANDED + 9_000, agent, 1)]
        assert humans(lines) == 1


@pytest.mark.parametrize("status", [None, "SENT", "UNDELIVERED", "FAILED"])
def test_a_message_not_delivered_is_judged_by_user_agent_alone(status: str | None) -> None:
    lines = [sent("m1"), click("m1", LANDED + 100, None, 0), click("m1", LANDED, IPHONE, 1),
             click("m1", LANDED + 50, WHATSAPP, 2)]
    if status is not None:
        lines.append(receipt("m1", status, LANDED))
    assert humans(lines) == 2


def test_a_rejected_message_is_not_delivered_whatever_its_receipts_say() -> None:
    lines = [sent("m1", outcome="REJECTED", error_code="21211"),
             receipt("m1", "DELIVERED", LANDED), click("m1", LANDED + 10, IPHONE)]
    assert humans(lines) == 1


def test_a_click_that_arrives_before_its_delivery_receipt_is_judged_again() -> None:
    """The click counts human while the message is not delivered; the receipt 1 s
    before it arrives later and makes it a preview. The views move back by new - old,
    the contact is no longer a human clicker."""
    first = [sent("m1"), click("m1", LANDED + 1_000, None)]
    assert humans(first) == 1
    lines = [*first, receipt("m1", "DELIVERED", LANDED)]
    assert humans(lines) == 0
    assert streamed(lines)["c"]["unique_human_link_clicks"] == 0
    assert streamed(lines)["c"]["unique_link_clicks"] == 1  # raw clicks keep their definition


def test_a_delivering_receipt_that_a_later_one_supersedes() -> None:
    """DELIVERED at LANDED makes the click a preview; a later DELIVERED (a receipt the
    carrier sent again, 30 s on) moves the time the click is judged against, and a
    later UNDELIVERED leaves the user agent alone to judge: human both times."""
    base = [sent("m1"), receipt("m1", "DELIVERED", LANDED, 0), click("m1", LANDED + 500)]
    assert humans(base) == 0
    again = [*base, receipt("m1", "DELIVERED", LANDED + 30_000, 1)]
    assert humans(again) == 1
    assert humans([*again, click("m1", LANDED + 31_000, n=1)]) == 1  # near the new one
    undelivered = [*base, receipt("m1", "UNDELIVERED", LANDED + 30_000, 1)]
    assert humans(undelivered) == 1
    for order in (undelivered[::-1], undelivered[2:] + undelivered[:2]):
        assert humans(order) == 1


def test_unique_human_clickers_are_contacts_and_retries_are_apart() -> None:
    """Two messages of one contact, one clicked by a preview only: the contact is a
    human clicker once. A contact whose only human click is on a retry is a human
    clicker, not a first-attempt one."""
    lines = [sent("m1"), receipt("m1", "DELIVERED", LANDED), click("m1", LANDED + 5_000, IPHONE),
             sent("m2", at=T0 + 1), receipt("m2", "DELIVERED", LANDED),
             click("m2", LANDED + 100, IPHONE),
             sent("m3", contact="k2", variant="B"), receipt("m3", "FAILED", LANDED),
             sent("m3r", contact="k2", variant="B", retry_of="m3"),
             receipt("m3r", "DELIVERED", LANDED), click("m3r", LANDED + 100, WHATSAPP, 0),
             click("m3r", LANDED + 7_000, ANDROID, 1)]
    got = streamed(lines)["c"]
    assert (got["human_link_clicks"], got["unique_human_link_clicks"]) == (2, 2)
    assert got["first_attempts"] == {"human_link_clicks": 1, "unique_human_link_clicks": 1,
                                     "link_clicks": 2}
    assert got["variants"]["B"]["first_attempts"]["unique_human_link_clicks"] == 0
    assert got["variants"]["B"]["unique_human_link_clicks"] == 1
    assert got["human_link_click_rate"] == 2 / 4


def test_the_message_log_row_counts_its_human_clicks() -> None:
    lines = [sent("m1"), click("m1", LANDED + 500, None, 0), receipt("m1", "DELIVERED", LANDED),
             click("m1", LANDED + 9_000, IPHONE, 1), click("m1", LANDED + 9_000, SLACK, 2)]
    states, _ = stream(lines)
    row = message_log_row(states["m1"], updated_at=NOW)
    assert row is not None and (row.click_count, row.human_click_count) == (3, 1)
    assert expected_log(lines, "c")["m1"]["human_click_count"] == 1
    wide = message_log_row(states["m1"], updated_at=NOW, preview_window_ms=10_000)
    assert wide is not None and wide.human_click_count == 0


def test_a_state_stored_before_human_clicks_still_decodes() -> None:
    """States in the ``messages`` changelog from before issue 22 keep bare click times:
    they read as clicks no user agent judged (the time rule alone), and fold on."""
    states, _ = stream([sent("m1"), receipt("m1", "DELIVERED", LANDED),
                        click("m1", LANDED + 1_000, None, 0),
                        click("m1", LANDED + 60_000, IPHONE, 1)])
    new = states["m1"]
    stored = codec.loads(codec.encode_state(new, 2))
    assert stored["clicks"] == [[LANDED + 1_000, False], [LANDED + 60_000, False]]
    stored["clicks"] = [LANDED + 1_000, LANDED + 60_000]  # the old form
    old = codec.state_from_dict(stored)
    assert old == new and human_click_count(old) == 1
    _, later, _ = parse_json_line(json.dumps(click("m1", LANDED + 90_000, WHATSAPP, 2)),
                                  now_ms=NOW)
    assert human_click_count(apply_event(old, later)) == 1  # the preview is not a person


def test_checker_detects_a_rule_judged_once_on_arrival() -> None:
    """Negative control: a count that judges each click once, as it arrives (the rule
    without "judged again"), passes when the receipt comes first and fails the
    recount when the click comes first; the stream above passes both."""
    lines = [sent("m1"), click("m1", LANDED + 1_000, None), receipt("m1", "DELIVERED", LANDED)]

    def judged_on_arrival(order: list[dict[str, Any]]) -> int:
        landed: int | None = None
        n = 0
        for e in order:
            if e["type"] == "delivery" and e["status"] == "DELIVERED":
                landed = e["occurred_at"]
            elif e["type"] == "click":
                n += landed is None or abs(e["occurred_at"] - landed) >= PREVIEW_WINDOW_MS
        return n

    want = recounted(lines)["c"]["human_link_clicks"]
    assert judged_on_arrival([lines[0], lines[2], lines[1]]) == want == 0
    assert judged_on_arrival(lines) != want
    assert humans(lines) == want


# --- any order, duplicates, chunks ----------------------------------------------------


@st.composite
def click_campaigns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A campaign whose clicks sit around their receipts: previews and people, no user
    agent, receipts superseded (DELIVERED again later, or UNDELIVERED), rejections,
    retries, two variants and contacts with several messages."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    lines: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 12))):
        m, at = f"m{i}", T0 + i * 1_000
        contact, variant = f"k{rng.randrange(4)}", rng.choice("AB")
        extra: dict[str, Any] = {}
        if rng.random() < 0.1:
            extra = {"outcome": "REJECTED", "error_code": "21211"}
        elif i and rng.random() < 0.2:
            extra = {"retry_of": f"m{rng.randrange(i)}"}
        lines.append(sent(m, contact, variant, at, **extra))
        landed = at + rng.randrange(0, 5_000)
        receipts = rng.choice(((), ("DELIVERED",), ("DELIVERED",), ("DELIVERED", "DELIVERED"),
                               ("DELIVERED", "UNDELIVERED"), ("FAILED", "DELIVERED")))
        for n, status in enumerate(receipts):
            lines.append(receipt(m, status, landed + n * rng.choice((1, 1_500, 4_000)), n))
        for n in range(rng.choice((0, 1, 1, 2, 3))):
            offset = rng.choice((-2_000, -1_999, -500, 0, 1_999, 2_000, 2_500, 5_000, 60_000))
            lines.append(click(m, landed + offset, rng.choice(AGENTS), n))
    return lines


@settings(max_examples=150, deadline=None)
@given(click_campaigns(), st.data())
def test_any_order_and_duplication_gives_the_recount(lines: list[dict[str, Any]],
                                                      data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(lines))
    duplicated = shuffled + data.draw(st.lists(st.sampled_from(lines), max_size=10))
    states_a, campaigns_a = stream(lines)
    states_b, campaigns_b = stream(duplicated)
    assert states_a == states_b and campaigns_a == campaigns_b
    assert streamed(duplicated) == recounted(duplicated)
    window = data.draw(st.sampled_from((0, 1_000, 2_000, 5_000)))
    assert streamed(duplicated, window) == recounted(duplicated, window)
    log = expected_log(duplicated, "c", preview_window_ms=window)
    for m, state in states_b.items():
        row = message_log_row(state, updated_at=NOW, preview_window_ms=window)
        assert row is not None and row.human_click_count == log[m]["human_click_count"]


@settings(max_examples=80, deadline=None)
@given(click_campaigns(), st.integers(1, 6), st.randoms(use_true_random=False))
def test_chunks_replayed_in_part_give_the_same_state_and_counts(
        lines: list[dict[str, Any]], chunks: int, rng: random.Random) -> None:
    """Chunks as a worker that crashed sees them: each chunk redelivered in part."""
    size = max(1, len(lines) // chunks)
    replayed: list[dict[str, Any]] = []
    for start in range(0, len(lines), size):
        chunk = lines[start:start + size]
        replayed += chunk + rng.sample(chunk, k=len(chunk) // 2)
    assert stream(replayed) == stream(lines)
    assert streamed(replayed) == recounted(lines)
