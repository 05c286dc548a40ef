import json
import random
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.message import MessageState, apply_event, message_status
from projections.message_log import message_log_row
from projections.metrics import (
    BASE_METRICS,
    CampaignCounts,
    ContactActivity,
    add_counts,
    apply_changes,
    contribution_fields,
    message_contribution,
    summarize,
)
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import parse_json_line
from streams.pipeline.fold import fold
from tests.oracle import recount

NOW = 1_800_000_000_000
SUMMARY_KEYS = (*BASE_METRICS, "unique_link_clicks", "unique_repliers",
                "delivery_rate", "reply_rate", "link_click_rate",
                "retries", "recovered_by_retry", "first_attempts")


def stream_fold(lines, protected=True):
    """What the pipeline does, in process: fold per message (the worker's own ``fold``,
    with or without its replay protection), move aggregates by new - old."""
    states: dict[str, MessageState] = {}
    contributions = {}
    campaigns: dict[str, CampaignCounts] = {}
    contacts: dict[tuple[str, str], ContactActivity] = {}
    for line in lines:
        _, event, _ = parse_json_line(json.dumps(line), now_ms=NOW)
        state = states.get(event.message_id, MessageState(event.message_id))
        new = fold(state, event, protected)
        states[event.message_id] = new
        contribution = message_contribution(new)
        if contribution is None:
            continue
        old = contributions.get(event.message_id)
        moved_counts, moved_contacts, _ = apply_changes(
            campaigns, contacts, {},
            [(old and contribution_fields(old), contribution_fields(contribution))])
        campaigns.update(moved_counts)
        contacts.update({k: a for k, a in moved_contacts.items() if a is not None})
        for gone in [k for k, a in moved_contacts.items() if a is None]:
            contacts.pop(gone, None)
        contributions[event.message_id] = contribution
    return states, campaigns


def summaries(campaigns):
    out = {}
    for cid, counts in campaigns.items():
        s = summarize(cid, counts)
        out[cid] = {"campaign_id": cid, **{k: s[k] for k in SUMMARY_KEYS},
                    "variants": {v: {k: m[k] for k in SUMMARY_KEYS}
                                 for v, m in s["variants"].items()}}
    return out


def normalized(expected):
    return {cid: {"campaign_id": cid, **{k: s[k] for k in SUMMARY_KEYS},
                  "variants": {v: {k: m[k] for k in SUMMARY_KEYS}
                               for v, m in s["variants"].items()}}
            for cid, s in expected.items()}


def test_demo_campaign_matches_batch_recount():
    events = (generate_campaign("c1", 400, seed=3)
              + generate_campaign("c2", 100, seed=4, retry_rate=0.8))
    _, campaigns = stream_fold(events)
    assert summaries(campaigns) == normalized(recount(events))
    assert summaries(campaigns)["c2"]["retries"] > 0  # there were retries to count


def test_checker_detects_a_wrong_fold():
    """Negative control: the worker's fold with its replay protection off (what
    ``CA_UNSAFE_DISABLE_REPLAY_PROTECTION=1`` runs) applies a redelivered event again;
    on the same duplicated input the checker passes the real fold and fails this one."""
    events = generate_campaign("c1", 200, seed=5, duplicate_rate=0.3)
    assert len({e["event_id"] for e in events}) < len(events)  # there is something to forget
    want = normalized(recount(events))
    assert summaries(stream_fold(events)[1]) == want
    got = summaries(stream_fold(events, protected=False)[1])
    assert got != want
    inflated = {k for k in ("replies", "link_clicks") if got["c1"][k] > want["c1"][k]}
    assert inflated, (got, want)


@st.composite
def messy_campaigns(draw):
    messages = draw(st.integers(min_value=1, max_value=40))
    seed = draw(st.integers(min_value=0, max_value=10_000))
    retry_rate = draw(st.sampled_from((0.0, 0.7)))
    events = generate_campaign("cx", messages, seed=seed, shuffle=False, duplicate_rate=0.0,
                               retry_rate=retry_rate)
    permutation = draw(st.permutations(range(len(events))))
    dup_indexes = draw(st.lists(st.integers(0, len(events) - 1), max_size=20))
    return events, [events[i] for i in permutation] + [events[i] for i in dup_indexes]


@settings(max_examples=150, deadline=None)
@given(messy_campaigns())
def test_any_order_and_duplication_gives_the_batch_recount(case):
    original, shuffled = case
    states_a, campaigns_a = stream_fold(original)
    states_b, campaigns_b = stream_fold(shuffled)
    assert states_a == states_b
    assert campaigns_a == campaigns_b
    assert summaries(campaigns_b) == normalized(recount(shuffled))


@settings(max_examples=100, deadline=None)
@given(messy_campaigns(), st.integers(min_value=1, max_value=7))
def test_chunked_folds_merge_to_the_same_state(case, chunks):
    """Folding chunks separately and replaying each chunk's events gives the same state."""
    _, shuffled = case
    rng = random.Random(chunks)
    size = max(1, len(shuffled) // chunks)
    replayed = []
    for i in range(0, len(shuffled), size):
        chunk = shuffled[i : i + size]
        replayed += chunk + rng.sample(chunk, k=len(chunk) // 2)  # redelivered chunk parts
    assert stream_fold(replayed)[0] == stream_fold(shuffled)[0]


@settings(max_examples=100, deadline=None)
@given(messy_campaigns())
def test_variant_totals_add_up_to_campaign_total(case):
    _, shuffled = case
    _, campaigns = stream_fold(shuffled)
    for counts in campaigns.values():
        additive = {k: v for k, v in counts.total.items() if "unique_" not in k}
        by_variant = reduce(add_counts, (
            {k: v for k, v in bag.items() if "unique_" not in k}
            for bag in counts.variants.values()
        ), {})
        assert by_variant == additive


def _event(kind, **fields):
    return parse_json_line(json.dumps({"type": kind, **fields}), now_ms=NOW)[1]


SENT = dict(event_id="s", message_id="m", occurred_at=1_000_000_000_000, campaign_id="c",
            variant="A", contact_id="k", phone="+15550000000", outcome="ACCEPTED")


def _receipt(eid, status, at, **extra):
    return _event("delivery", event_id=eid, message_id="m", occurred_at=at, status=status,
                  **extra)


def _fold(*events):
    state = MessageState("m")
    for e in events:
        state = apply_event(state, e)
    return state


def test_late_non_terminal_receipt_changes_nothing():
    t = SENT["occurred_at"]
    state = _fold(_event("sent", **SENT), _receipt("r1", "DELIVERED", t + 5),
                  _receipt("r2", "SENT", t + 50))
    assert message_status(state) == "delivered"


def test_later_terminal_receipt_supersedes_and_ties_break_on_event_id():
    t = SENT["occurred_at"]
    state = _fold(_receipt("r2", "UNDELIVERED", t + 9, error_code="30003"),
                  _event("sent", **SENT), _receipt("r1", "DELIVERED", t + 5))
    assert message_status(state) == "undelivered"
    tie = _fold(_event("sent", **SENT), _receipt("r9", "FAILED", t + 5),
                _receipt("r1", "DELIVERED", t + 5))
    assert message_status(tie) == "failed"


def test_error_fields_are_not_erased_by_a_later_receipt_without_them():
    t = SENT["occurred_at"]
    state = _fold(_event("sent", **SENT),
                  _receipt("r1", "UNDELIVERED", t + 5, error_code="30003",
                           error_description="Unreachable"),
                  _receipt("r2", "FAILED", t + 9))
    row = message_log_row(state, updated_at=0)
    assert row is not None
    assert (row.status, row.error_code, row.error_description) == (
        "failed", "30003", "Unreachable")


def test_rejected_send_stays_failed_whatever_the_receipts():
    t = SENT["occurred_at"]
    state = _fold(_receipt("r1", "DELIVERED", t + 5),
                  _event("sent", **(SENT | {"outcome": "REJECTED", "error_code": "21211"})))
    contribution = message_contribution(state)
    assert contribution is not None
    # +1555 numbers are fictional: phonenumbers places them nowhere (ZZ)
    assert contribution.counts == {"failed": 1, "error_code:21211": 1, "country:ZZ:failed": 1,
                                   "failure_category:invalid_number": 1}
    assert message_status(state) == "rejected"


def test_orphans_count_nowhere_until_sent_then_exactly_once():
    t = SENT["occurred_at"]
    click = _event("click", event_id="c1", message_id="m", occurred_at=t + 10, link_id="l")
    orphan = _fold(click, click, _receipt("r1", "DELIVERED", t + 5))
    assert message_contribution(orphan) is None
    complete = apply_event(orphan, _event("sent", **SENT))
    contribution = message_contribution(complete)
    assert contribution is not None
    assert contribution.counts["link_clicks"] == 1
    assert contribution.counts["delivered"] == 1


def test_opt_out_keywords_are_trimmed_and_case_folded():
    t = SENT["occurred_at"]
    replies = [_event("reply", event_id=f"p{i}", message_id="m", occurred_at=t + i,
                      contact_id="k", phone="+15550000000", body=body)
               for i, body in enumerate(["  stop ", "Stop please", "QUIT", "unsubscribe"])]
    state = _fold(_event("sent", **SENT), *replies)
    contribution = message_contribution(state)
    assert contribution is not None
    assert (contribution.counts["replies"], contribution.counts["opt_outs"]) == (4, 3)


def test_unique_clickers_count_contacts_not_messages():
    t = SENT["occurred_at"]
    events = []
    for m in ("m1", "m2"):
        events.append(dict(SENT, type="sent", event_id=f"s-{m}", message_id=m))
        events.append({"type": "click", "event_id": f"c-{m}", "message_id": m,
                       "occurred_at": t + 1, "link_id": "l"})
    _, campaigns = stream_fold(events)
    total = campaigns["c"].total
    assert (total["link_clicks"], total["unique_link_clicks"]) == (2, 1)


@settings(max_examples=60, deadline=None)
@given(messy_campaigns())
def test_breakdowns_and_histograms_equal_the_batch_recount(case):
    from tests.oracle import recount_breakdowns

    _, shuffled = case
    _, campaigns = stream_fold(shuffled)
    summary = summarize("cx", campaigns["cx"])
    expected = recount_breakdowns(shuffled, "cx")
    assert {k: summary[k] for k in expected} == expected
