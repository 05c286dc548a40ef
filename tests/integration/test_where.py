"""Where failures happen and what a result cost, end to end on the real broker (issue
22 items 3 and 4): a worker started with CA_PRICES_FILE publishes, for the campaign and
each variant, sent/delivered/failed by country, by failure category and by carrier and
the cost figures, and ``summary --json`` equals the batch recount (tests/oracle.py) of
a messy campaign whose contacts live in several countries."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.cli.demo import generate_campaign
from tests.integration.conftest import REPO, Deployment
from tests.oracle import CATEGORY_OF_CODE, recount

pytestmark = pytest.mark.integration

KEYS = ("sent", "delivered", "failed", "by_country", "by_failure_category",
        "by_carrier_outcome", "currency", "cost", "cost_per_delivered",
        "cost_per_unique_human_click")
PRICES_FILE = REPO / "docs" / "prices-example.csv"
# docs/prices-example.csv, written out again for the oracle
PRICES = ("USD", Decimal("0.0500"), {
    "US": Decimal("0.0083"), "CA": Decimal("0.0083"), "GB": Decimal("0.0400"),
    "DE": Decimal("0.0900"), "FR": Decimal("0.0800"), "IN": Decimal("0.0050"),
    "BR": Decimal("0.0450")})
PHONES = ("+12125550100", "+14165550123", "+18765550123", "+447400123456", "+4915123456789",
          "+33612345678", "+919876543210", "+5511987654321", "+79161234567", "+77012345678",
          "+15550000000", "+80012345678")


def _events() -> list[dict[str, Any]]:
    events = generate_campaign("camp-where", 240, seed=21, duplicate_rate=0.1, retry_rate=0.5)
    rng = random.Random(21)
    codes = [*CATEGORY_OF_CODE, "30008", "12345", None]
    phone_of: dict[str, str] = {}
    for e in events:
        if "phone" in e:
            e["phone"] = phone_of.setdefault(e["contact_id"], rng.choice(PHONES))
        if e["type"] == "sent" and e["outcome"] == "REJECTED":
            e["error_code"] = rng.choice(codes)
        if e["type"] == "delivery":
            e["carrier"] = rng.choice(["att", "vodafone:uk", "rogers", None])
            if e["status"] in ("UNDELIVERED", "FAILED"):
                e["error_code"] = rng.choice(codes)
    rng.shuffle(events)
    return events


def _pick(summary: dict[str, Any]) -> dict[str, Any]:
    return {**{k: summary[k] for k in KEYS},
            "variants": {v: {k: s[k] for k in KEYS} for v, s in summary["variants"].items()}}


def test_breakdowns_and_cost_equal_the_batch_recount(deployment: Deployment,
                                                     tmp_path: Path) -> None:
    events = _events()
    deployment.env["CA_PRICES_FILE"] = str(PRICES_FILE)
    worker = deployment.worker().start()
    worker.wait_ready()
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    deployment.cli("publish", str(path))
    expected = _pick(recount(events, prices=PRICES)["camp-where"])
    summary = deployment.wait_for_summary("camp-where", expected, keys=_pick)
    # the campaign had something to show: several countries, categories and carriers
    assert len(summary["by_country"]) >= 8
    assert len(summary["by_failure_category"]) >= 4
    assert {"att", "vodafone:uk", "rogers"} <= set(summary["by_carrier_outcome"])
    assert summary["currency"] == "USD"
    assert isinstance(summary["cost"], float) and summary["cost"] > 0
