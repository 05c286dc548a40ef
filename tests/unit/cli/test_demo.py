"""The demo campaign has what issue 22's numbers are about (make run's acceptance):
link previews as messages land and people's clicks later, receipts that never come
(old enough to be unknown under the demo's 1 h CA_RECEIPT_TIMEOUT) beside messages
sent in the last minute (pending), several countries and numbers no one can place,
failures of every category; and the CLI's summary shows the new numbers."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from projections.failures import FailureCategory, category_of
from streams.cli.demo import generate_campaign
from streams.cli.demo_run import DEMO_LOST_RECEIPTS, DEMO_PREVIEWS, DEMO_RECENT
from streams.cli.format import format_summary
from streams.codecs.phones import country_of
from streams.codecs.prices import load_prices
from streams.codecs.user_agents import is_automated_agent

HOUR_MS = 3_600_000
REPO = Path(__file__).resolve().parents[3]


def _demo() -> list[dict]:
    return generate_campaign("demo-campaign", 2000, countries=True, previews=DEMO_PREVIEWS,
                             lost_receipts=DEMO_LOST_RECEIPTS, recent=DEMO_RECENT)


def _by_message(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in events:
        out.setdefault(e["message_id"], []).append(e)
    return out


def test_the_demo_has_previews_then_peoples_clicks() -> None:
    previews = people = 0
    for events in _by_message(_demo()).values():
        delivered = [e["occurred_at"] for e in events
                     if e["type"] == "delivery" and e["status"] == "DELIVERED"]
        for click in (e for e in events if e["type"] == "click"):
            if is_automated_agent(click["user_agent"]):
                # a preview fetcher's, as the message lands (either side of its receipt)
                assert any(abs(click["occurred_at"] - at) < 2000 for at in delivered)
                previews += 1
            elif all(click["occurred_at"] - at >= 2000 for at in delivered):
                people += 1
    assert previews > 300 and people > 300, (previews, people)


def test_the_demo_has_lost_receipts_and_recent_pending_messages() -> None:
    now = int(time.time() * 1000)
    lost = recent = 0
    for events in _by_message(_demo()).values():
        sent = next((e for e in events if e["type"] == "sent"), None)
        if sent is None or sent["outcome"] == "REJECTED":
            continue
        terminal = any(e["type"] == "delivery" and e["status"] in (
            "DELIVERED", "UNDELIVERED", "FAILED") for e in events)
        if terminal:
            continue
        if now - sent["occurred_at"] > HOUR_MS:  # unknown under the demo's 1 h timeout
            lost += 1
        elif now - sent["occurred_at"] < 120_000:  # sent in the last minute: pending
            recent += 1
    assert lost > 100 and recent > 40, (lost, recent)


def test_the_demo_has_several_countries_one_unplaceable_and_every_failure_category() -> None:
    events = _demo()
    countries = Counter(country_of(e["phone"]) for e in events if e["type"] == "sent")
    assert set(countries) == {"US", "GB", "DE", "FR", "IN", "BR", "ZZ"}
    assert min(countries.values()) > 100
    categories = {category_of(e["error_code"]) for e in events
                  if e["type"] == "delivery" and e["status"] in ("UNDELIVERED", "FAILED")}
    categories |= {category_of(e["error_code"]) for e in events if e.get("outcome") == "REJECTED"}
    assert categories >= set(FailureCategory) - {FailureCategory.OPTED_OUT}
    # the demo's prices file names them (ZZ at the default row's price)
    prices = load_prices(REPO / "deploy" / "demo" / "prices.csv")
    assert prices is not None and set(countries) - {"ZZ"} <= set(prices.by_country)


def test_without_the_new_options_the_campaign_is_the_one_tests_always_drew() -> None:
    """Negative control of the options' own rng: off, nothing of the above appears."""
    events = generate_campaign("c", 400, seed=3, start_ms=1_700_000_000_000, retry_rate=0.5)
    assert {country_of(e["phone"]) for e in events if e["type"] == "sent"} == {"ZZ"}
    assert not any(e["type"] == "click" and is_automated_agent(e["user_agent"]) for e in events)
    assert events == generate_campaign("c", 400, seed=3, start_ms=1_700_000_000_000,
                                       retry_rate=0.5, countries=False, previews=0.0)


def test_the_cli_summary_shows_human_clicks_unknown_and_cost() -> None:
    bag = {"sent": 10, "delivered": 6, "delivery_rate": 0.6, "failed": 1, "pending": 1,
           "unknown": 2, "link_clicks": 5, "human_link_clicks": 3,
           "unique_human_link_clicks": 2, "human_link_click_rate": 0.2, "currency": "USD",
           "cost": 0.083, "cost_per_delivered": 0.013833, "cost_per_unique_human_click": None,
           "by_failure_category": {"temporary": 1}, "by_country": {
               "US": {"sent": 9, "delivered": 6, "failed": 1},
               "ZZ": {"sent": 1, "delivered": 0, "failed": 0}}}
    text = format_summary({"campaign_id": "c", **bag, "variants": {"A": bag}})
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:]}
    assert lines["unknown"] == ["2", "2"] and lines["human_link_clicks"] == ["3", "3"]
    assert lines["human_link_click_rate"] == ["20.0%", "20.0%"]
    assert lines["cost"] == ["0.0830", "0.0830"] and lines["cost_per_unique_human_click"] == [
        "-", "-"]
    assert "costs in USD" in text and "sent by country: US=9, ZZ=1" in text
    unpriced = format_summary({"campaign_id": "c", **bag, "currency": None, "variants": {}})
    assert "cost" not in unpriced  # without prices: no cost rows at all
