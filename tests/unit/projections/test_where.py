"""Where failures happen and what a result cost (issue 22 items 3 and 4, domain.md 3b):
sent, delivered and failed by country, by failure category and by carrier; the cost
figures; all equal to the batch recount (tests/oracle.py) whatever the order,
duplicates and batching."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.costs import PriceTable, cost_figures, message_cost, total_cost
from projections.failures import FailureCategory, category_of, failure_category
from projections.message import MessageState, apply_event
from projections.metrics import (
    CampaignCounts,
    ContactActivity,
    MessageContribution,
    apply_changes,
    contribution_fields,
    message_contribution,
    summarize,
)
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import parse_json_line
from tests.oracle import CATEGORY_OF_CODE, recount

NOW = 1_800_000_000_000
T = 1_790_000_000_000
WHERE_KEYS = ("by_country", "by_failure_category", "by_carrier_outcome")
COST_KEYS = ("currency", "cost", "cost_per_delivered", "cost_per_unique_human_click")

# Numbers phonenumbers places (checked against a full parse by the oracle too).
PHONES = {
    "+12125550100": "US",  # New York
    "+14165550123": "CA",  # Toronto: +1 is shared by 25 regions
    "+18765550123": "JM",  # Jamaica, +1 too
    "+447400123456": "GB",  # a UK mobile: +44 is shared with GG, IM, JE
    "+4915123456789": "DE",
    "+33612345678": "FR",
    "+919876543210": "IN",
    "+5511987654321": "BR",
    "+79161234567": "RU",  # +7 is shared with KZ
    "+77012345678": "KZ",
    "+818012345678": "JP",
    "+15550000000": "ZZ",  # 555-0000: a fictional number, placed nowhere
    "+80012345678": "ZZ",  # +800, international freephone: no country
    "+999123456": "ZZ",  # no such calling code
}


def decoded(lines: Iterable[dict[str, Any]]) -> list[Any]:
    """The events as the worker sees them: through the input codec, which places
    the number in its country."""
    return [parse_json_line(json.dumps(line), now_ms=NOW)[1] for line in lines]


def sent(mid: str, phone: str, *, outcome: str = "ACCEPTED", code: str | None = None,
         variant: str | None = "A", segments: int = 1, contact: str | None = None
         ) -> dict[str, Any]:
    return {"type": "sent", "event_id": f"s-{mid}", "message_id": mid, "occurred_at": T,
            "campaign_id": "cw", "variant": variant, "contact_id": contact or f"k-{mid}",
            "phone": phone, "outcome": outcome, "error_code": code, "segments": segments}


def receipt(mid: str, n: int, status: str, *, code: str | None = None,
            carrier: str | None = None, at: int = 0) -> dict[str, Any]:
    return {"type": "delivery", "event_id": f"r-{mid}-{n}", "message_id": mid,
            "occurred_at": T + 1_000 + at, "status": status, "error_code": code,
            "carrier": carrier}


def fold_in_batches(events: list[Any], batch: int = 1
                    ) -> tuple[dict[str, MessageState], dict[str, CampaignCounts]]:
    """The pipeline in process: fold each batch's events per message, then move the
    aggregates by each touched message's (old, new) contribution, once per batch."""
    states: dict[str, MessageState] = {}
    held: dict[str, MessageContribution] = {}
    campaigns: dict[str, CampaignCounts] = {}
    contacts: dict[tuple[str, str], ContactActivity] = {}
    for start in range(0, len(events), batch):
        touched: set[str] = set()
        for event in events[start:start + batch]:
            states[event.message_id] = apply_event(
                states.get(event.message_id, MessageState(event.message_id)), event)
            touched.add(event.message_id)
        changes = []
        for mid in sorted(touched):
            new = message_contribution(states[mid])
            if new is None:
                continue
            old = held.get(mid)
            changes.append((old and contribution_fields(old), contribution_fields(new)))
            held[mid] = new
        moved, moved_contacts, _ = apply_changes(campaigns, contacts, {}, changes)
        campaigns.update(moved)
        for key, activity in moved_contacts.items():
            if activity is None:
                contacts.pop(key, None)
            else:
                contacts[key] = activity
    return states, campaigns


def where(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in WHERE_KEYS + COST_KEYS}


# --- the country of a number --------------------------------------------------------


@pytest.mark.parametrize(("phone", "country"), sorted(PHONES.items()))
def test_numbers_of_several_countries_are_placed(phone: str, country: str) -> None:
    from streams.codecs.phones import country_of
    from tests.oracle import country as full_parse

    assert country_of(phone) == country == full_parse(phone)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["1", "7", "44", "39", "47", "61", "212", "262", "290", "358", "590",
                        "599", "49", "33", "91", "55", "800", "882", "999", "2", "3", "42"]),
       st.text("0123456789", min_size=6, max_size=13))
def test_the_cached_shortcuts_give_what_a_full_parse_gives(code: str, digits: str) -> None:
    """country_of looks a code with one region up and takes +1 numbers without parse;
    a full parse (the oracle's) gives the same, for any number the codec admits."""
    from streams.codecs.phones import clear_country_cache, country_of
    from tests.oracle import country as full_parse

    phone = ("+" + code + digits)[:16]
    if len(phone) < 8:
        return
    clear_country_cache()
    assert country_of(phone) == full_parse(phone)  # cold
    assert country_of(phone) == full_parse(phone)  # cached


def test_calling_codes_are_prefix_free() -> None:
    """country_of takes the first of 1-3 digits that is a code, as parse does; no code
    is a prefix of another, so there is never a choice (a new phonenumbers release
    breaking this fails here)."""
    import phonenumbers

    codes = {str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    assert not [(a, b) for a in codes for b in codes if a != b and b.startswith(a)]


def test_the_input_codec_places_the_sent_event_and_keeps_it_out_of_the_record() -> None:
    from streams.codecs.input_avro import decode_event, encode_event

    event = decoded([sent("m1", "+4915123456789")])[0]
    assert event.country == "DE"
    data = encode_event(event)  # the Avro record has no country field: refused if it had
    assert decode_event(data, NOW).country == "DE"


def test_a_state_stored_before_the_country_gets_it_when_read() -> None:
    from streams.codecs import state as codec

    state = apply_event(MessageState("m1"), decoded([sent("m1", "+33612345678")])[0])
    stored = codec.loads(codec.encode_state(state, 0))
    assert codec.state_from_dict(stored) == state
    del stored["sent"]["country"]  # as a state written before issue 22
    assert codec.state_from_dict(stored).sent.country == "FR"


# --- the breakdowns through the pipeline ---------------------------------------------


def several_countries() -> list[dict[str, Any]]:
    return [
        sent("us1", "+12125550100"), receipt("us1", 1, "DELIVERED", carrier="att"),
        sent("us2", "+12125550100", variant="B", segments=3),
        receipt("us2", 1, "UNDELIVERED", code="30003", carrier="att"),
        sent("ca1", "+14165550123"), receipt("ca1", 1, "DELIVERED", carrier="rogers"),
        sent("gb1", "+447400123456", variant="B"),
        receipt("gb1", 1, "FAILED", code="30007", carrier="vodafone-uk"),
        sent("de1", "+4915123456789", outcome="REJECTED", code="21211"),
        sent("fr1", "+33612345678", segments=2),  # pending: no receipt yet
        sent("in1", "+919876543210", variant="B"), receipt("in1", 1, "DELIVERED"),
        sent("br1", "+5511987654321"), receipt("br1", 1, "FAILED", code="30006"),
        sent("zz1", "+15550000000", variant=None),
        receipt("zz1", 1, "FAILED"),  # no code: unclassified
    ]


def test_the_country_breakdown_counts_each_country_and_the_unplaced() -> None:
    _, campaigns = fold_in_batches(decoded(several_countries()))
    summary = summarize("cw", campaigns["cw"])
    zero = {"sent": 0, "delivered": 0, "failed": 0}
    assert summary["by_country"] == {
        "US": {"sent": 2, "delivered": 1, "failed": 1},
        "CA": zero | {"sent": 1, "delivered": 1},
        "GB": zero | {"sent": 1, "failed": 1},
        "DE": zero | {"failed": 1},  # REJECTED: failed, never sent
        "FR": zero | {"sent": 1},
        "IN": zero | {"sent": 1, "delivered": 1},
        "BR": zero | {"sent": 1, "failed": 1},
        "ZZ": zero | {"sent": 1, "failed": 1},
    }
    assert summary["by_failure_category"] == {
        "temporary": 1, "blocked": 1, "invalid_number": 1, "not_mobile": 1, "unclassified": 1}
    assert summary["by_carrier_outcome"] == {
        "att": {"sent": 2, "delivered": 1, "failed": 1},
        "rogers": zero | {"sent": 1, "delivered": 1},
        "vodafone-uk": zero | {"sent": 1, "failed": 1},
    }
    b = summary["variants"]["B"]
    assert b["by_country"] == {"US": zero | {"sent": 1, "failed": 1},
                               "GB": zero | {"sent": 1, "failed": 1},
                               "IN": zero | {"sent": 1, "delivered": 1}}
    assert b["by_failure_category"] == {"temporary": 1, "blocked": 1}
    expected = recount(several_countries())["cw"]
    assert where(summary) == where(expected)
    assert {v: where(s) for v, s in summary["variants"].items()} == {
        v: where(s) for v, s in expected["variants"].items()}


def test_the_category_is_the_winning_receipts_not_the_logs_error_code() -> None:
    """The failure cause is the winning terminal receipt's code (domain.md 3b, as the
    retries read it); message_log's error_code is the latest receipt with a code."""
    lines = [sent("m1", "+12125550100"),
             receipt("m1", 1, "FAILED", code="30007", carrier="att"),
             receipt("m1", 2, "UNDELIVERED", at=50)]  # later, wins, no code
    states, campaigns = fold_in_batches(decoded(reversed(lines)))
    total = summarize("cw", campaigns["cw"])
    assert total["by_failure_category"] == {"unclassified": 1}
    assert total["by_error_code"] == {"30007": 1}
    assert failure_category(states["m1"]) is FailureCategory.UNCLASSIFIED
    assert where(total) == where(recount(lines)["cw"])


def test_a_superseding_delivery_takes_the_failure_back() -> None:
    lines = [sent("m1", "+447400123456", contact="k"),
             receipt("m1", 1, "FAILED", code="30003", carrier="ee"),
             receipt("m1", 2, "DELIVERED", at=10),
             sent("m2", "+447400123456", outcome="REJECTED", code="21610", contact="k")]
    events = decoded(lines)
    _, early = fold_in_batches(events[:2])
    assert summarize("cw", early["cw"])["by_failure_category"] == {"temporary": 1}
    _, campaigns = fold_in_batches(events)
    summary = summarize("cw", campaigns["cw"])
    assert summary["by_failure_category"] == {"opted_out": 1}
    assert summary["by_carrier_outcome"] == {"ee": {"sent": 1, "delivered": 1, "failed": 0}}
    assert summary["by_country"] == {"GB": {"sent": 1, "delivered": 1, "failed": 1}}


@pytest.mark.parametrize("code", [*CATEGORY_OF_CODE, "30008", None, "99999", " 30003 "])
def test_every_code_maps_as_the_retries_map_it(code: str | None) -> None:
    """Through the pipeline, each code of domain.md 3b lands in the category the retry
    action reads (projections/failures.py) and the oracle's own table names."""
    from tests.oracle import category

    lines = [sent("m1", "+919876543210"), receipt("m1", 1, "FAILED", code=code)]
    _, campaigns = fold_in_batches(decoded(lines))
    got = summarize("cw", campaigns["cw"])["by_failure_category"]
    assert got == {category_of(code).value: 1} == {category(code): 1}


# --- the cost -------------------------------------------------------------------------

PRICES = PriceTable("EUR", Decimal("0.05"), {"US": Decimal("0.0079"), "GB": Decimal("0.0351"),
                                             "ZZ": Decimal("0.1")})
ORACLE_PRICES = (PRICES.currency, PRICES.default, dict(PRICES.by_country))


def test_cost_is_segments_of_accepted_messages_times_their_price() -> None:
    _, campaigns = fold_in_batches(decoded(several_countries()))
    summary = summarize("cw", campaigns["cw"], PRICES)
    # accepted segments: US 1+3, CA 1, GB 1, FR 2, IN 1, BR 1, ZZ 1 (DE was REJECTED)
    cost = (Decimal("0.0079") * 4 + Decimal("0.05") * (1 + 2 + 1 + 1)
            + Decimal("0.0351") + Decimal("0.1"))
    assert summary["currency"] == "EUR"
    assert summary["cost"] == float(cost) == 0.4167
    assert summary["cost_per_delivered"] == round(float(cost) / 3, 6)  # US, CA, IN
    assert summary["cost_per_unique_human_click"] is None  # no clicks: no divisor
    assert where(summary) == where(recount(several_countries(), prices=ORACLE_PRICES)["cw"])
    for name, variant in summary["variants"].items():
        assert where(variant) == where(
            recount(several_countries(), prices=ORACLE_PRICES)["cw"]["variants"][name])


def test_without_prices_no_cost_is_guessed() -> None:
    _, campaigns = fold_in_batches(decoded(several_countries()))
    summary = summarize("cw", campaigns["cw"])
    assert {k: summary[k] for k in COST_KEYS} == dict.fromkeys(COST_KEYS)
    assert all(v[k] is None for v in summary["variants"].values()
               for k in COST_KEYS)


def test_cost_per_result_and_its_rounding() -> None:
    counts = {"segments:US": 3, "segments:XX": 1, "delivered": 3, "unique_human_link_clicks": 7}
    figures = cost_figures(counts, PRICES, delivered=3, unique_human_clicks=7)
    # 3 x 0.0079 + 0.05 (XX: the default) = 0.0737 exactly; / 7 = 0.010528571... -> 0.010529
    assert figures == {"currency": "EUR", "cost": 0.0737, "cost_per_delivered": 0.024567,
                       "cost_per_unique_human_click": 0.010529}
    assert cost_figures({}, PRICES, delivered=0, unique_human_clicks=0) == {
        "currency": "EUR", "cost": 0.0, "cost_per_delivered": None,
        "cost_per_unique_human_click": None}
    summary = summarize("c", CampaignCounts(total=counts), PRICES)
    assert summary["cost_per_unique_human_click"] == 0.010529
    # exact sums: a million segments at 0.0079 is 7900, not 7899.999999999...
    assert total_cost({"segments:US": 1_000_000}, PRICES) == Decimal("7900.0000")
    assert message_cost(PRICES, "GB", 2) == 0.0702
    assert message_cost(PRICES, "ZZ", 1) == 0.1


# --- any order, duplicates, batching: the extended oracle -----------------------------


@st.composite
def messy_world(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """A demo campaign whose contacts live in several countries and whose failures
    carry every kind of code, shuffled, with duplicates, and a batch size."""
    seed = draw(st.integers(0, 10_000))
    events = generate_campaign("cw", draw(st.integers(1, 40)), seed=seed, shuffle=False,
                               duplicate_rate=0.0, retry_rate=draw(st.sampled_from((0.0, 0.6))))
    rng = random.Random(seed)
    phones = sorted(PHONES)
    codes = [*CATEGORY_OF_CODE, "30008", "12345", None]
    carriers = ["att", "t-mobile", "vodafone:uk", None]  # a colon in a name, too
    phone_of: dict[str, str] = {}
    for e in events:
        contact = e.get("contact_id") or e["message_id"]
        if "phone" in e:
            e["phone"] = phone_of.setdefault(contact, rng.choice(phones))
        if e["type"] == "sent" and e["outcome"] == "REJECTED":
            e["error_code"] = rng.choice(codes)
        if e["type"] == "delivery":
            e["carrier"] = rng.choice(carriers)
            if e["status"] in ("UNDELIVERED", "FAILED"):
                e["error_code"] = rng.choice(codes)
    order = draw(st.permutations(range(len(events))))
    dups = draw(st.lists(st.integers(0, len(events) - 1), max_size=15))
    shuffled = [events[i] for i in order] + [events[i] for i in dups]
    return events, shuffled, draw(st.integers(1, 9))


@settings(max_examples=120, deadline=None)
@given(messy_world(), st.booleans())
def test_any_order_duplicates_and_batches_give_the_batch_recount(case: Any,
                                                                 priced: bool) -> None:
    original, shuffled, batch = case
    prices = PRICES if priced else None
    _, in_order = fold_in_batches(decoded(original))
    _, messy = fold_in_batches(decoded(shuffled), batch)
    assert messy == in_order
    expected = recount(shuffled, prices=ORACLE_PRICES if priced else None)
    for cid, counts in messy.items():
        summary = summarize(cid, counts, prices)
        assert where(summary) == where(expected[cid])
        assert {v: where(s) for v, s in summary["variants"].items()} == {
            v: where(s) for v, s in expected[cid]["variants"].items()}
        # every message counts once per country: the totals add up
        by_country = summary["by_country"]
        for outcome in ("sent", "delivered", "failed"):
            assert sum(c[outcome] for c in by_country.values()) == summary[outcome]
        assert sum(summary["by_failure_category"].values()) == summary["failed"]


def test_negative_control_a_category_from_the_logs_error_code_fails_the_checker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker above sees the difference between the winning receipt's code and
    the latest receipt with a code (message_log's error_code): with the wrong one the
    pipeline's categories no longer equal the recount's."""
    import projections.metrics as metrics

    def latest_code(state: MessageState) -> str | None:
        return state.error_receipt.error_code if state.error_receipt is not None else None

    lines = [sent("m1", "+12125550100"), receipt("m1", 1, "FAILED", code="30007"),
             receipt("m1", 2, "UNDELIVERED", at=50)]
    monkeypatch.setattr(metrics, "failure_cause", latest_code)
    _, campaigns = fold_in_batches(decoded(lines))
    assert where(summarize("cw", campaigns["cw"])) != where(recount(lines)["cw"])


def test_negative_control_an_unplaced_country_fails_the_checker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.codecs.input_avro as input_avro

    monkeypatch.setattr(input_avro, "country_of", lambda phone: "ZZ")
    _, campaigns = fold_in_batches(decoded(several_countries()))
    assert where(summarize("cw", campaigns["cw"])) != where(recount(several_countries())["cw"])


def test_the_worker_publishes_the_cost_figures_and_the_breakdowns() -> None:
    """The worker's publish path (due_snapshots) prices the snapshots it encodes; a
    reader of the metrics topic (summary --json, the API) decodes the same figures."""
    from streams.codecs.output_avro import decode_campaign_metrics
    from streams.pipeline.publish import due_snapshots
    from streams.pipeline.views import CampaignViews

    def published(prices: PriceTable | None) -> dict[str, Any]:
        views = CampaignViews(86_400_000)
        states, _ = fold_in_batches(decoded(several_countries()))
        for state in states.values():
            views.move(None, message_contribution(state))
        metrics, _ = due_snapshots(views, NOW, prices)
        [(key, value)] = metrics
        assert key == b"cw"
        return decode_campaign_metrics(value)

    expected = recount(several_countries(), prices=ORACLE_PRICES)["cw"]
    priced = published(PRICES)
    assert where(priced) == where(expected)
    assert {v: where(s) for v, s in priced["variants"].items()} == {
        v: where(s) for v, s in expected["variants"].items()}
    unpriced = published(None)
    assert {k: unpriced[k] for k in COST_KEYS} == dict.fromkeys(COST_KEYS)
    assert unpriced["by_country"] == priced["by_country"]


def test_the_message_log_row_names_the_country_and_the_failure_category() -> None:
    """The row's failure_category is the summaries' (the winning receipt's code), which
    need not be its error_code (the latest receipt with one); none unless failed."""
    from projections.message_log import message_log_row

    lines = [sent("m1", "+12125550100"), receipt("m1", 1, "FAILED", code="30007"),
             receipt("m1", 2, "UNDELIVERED", at=50),
             sent("m2", "+447400123456", outcome="REJECTED", code="21610"),
             sent("m3", "+33612345678"), receipt("m3", 1, "FAILED", code="30003"),
             receipt("m3", 2, "DELIVERED", at=10),
             sent("m4", "+15550000000")]
    states, _ = fold_in_batches(decoded(lines))
    rows = {mid: message_log_row(state, updated_at=NOW) for mid, state in states.items()}
    assert {mid: (r.status, r.country, r.error_code, r.failure_category)
            for mid, r in rows.items() if r is not None} == {
        "m1": ("undelivered", "US", "30007", "unclassified"),
        "m2": ("rejected", "GB", "21610", "opted_out"),
        "m3": ("delivered", "FR", None, None),
        "m4": ("sent", "ZZ", None, None),
    }
