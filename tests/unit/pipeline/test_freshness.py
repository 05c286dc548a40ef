"""Snapshot ages (streams/pipeline/freshness.py): per active campaign, and the oldest
change no snapshot has carried yet."""

from __future__ import annotations

import json

from projections.message import MessageState, apply_event
from projections.metrics import MessageContribution, message_contribution
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import parse_json_line
from streams.pipeline.freshness import SnapshotAges
from streams.pipeline.views import CampaignViews


def contributions(campaign_id: str, n: int) -> list[MessageContribution]:
    """The contributions of ``n`` sent messages of a demo campaign."""
    sent = [e for e in generate_campaign(campaign_id, n, seed=1) if e["type"] == "sent"][:n]
    out = []
    for line in sent:
        _, event, _ = parse_json_line(json.dumps(line), now_ms=1_800_000_000_000)
        made = message_contribution(apply_event(MessageState(event.message_id), event))
        assert made is not None
        out.append(made)
    return out


def test_age_is_the_time_since_the_last_snapshot() -> None:
    ages = SnapshotAges(active_ms=60_000)
    ages.observe(["a", "b"], (), 1_000)
    ages.observe(["a"], (), 4_000)
    assert ages.ages(10_000) == {"a": 6.0, "b": 9.0}


def test_a_campaign_never_published_ages_from_its_first_waiting_change() -> None:
    ages = SnapshotAges(active_ms=60_000)
    ages.observe((), ["new"], 2_000)
    ages.observe((), ["new"], 7_000)  # still waiting: the first sighting counts
    assert ages.ages(12_000) == {"new": 10.0}
    assert ages.oldest_pending(12_000) == 10.0


def test_pending_is_zero_once_every_change_is_published() -> None:
    ages = SnapshotAges()
    assert ages.oldest_pending(5_000) == 0.0
    ages.observe(["a"], ["b", "c"], 1_000)
    ages.observe((), ["c"], 3_000)
    assert ages.oldest_pending(5_000) == 4.0
    ages.observe(["b", "c"], (), 6_000)
    assert ages.oldest_pending(9_000) == 0.0
    ages.observe((), ["a"], 9_000)  # a new change after its snapshot
    assert ages.oldest_pending(9_500) == 0.5


def test_idle_and_foreign_campaigns_drop_out() -> None:
    """Only campaigns changed within ``active_ms`` keep a series; a campaign this
    worker no longer has (``known``) goes at once. Control: an active one stays."""
    ages = SnapshotAges(active_ms=10_000)
    ages.observe(["idle", "moved", "busy"], (), 0)
    ages.observe(["busy"], (), 8_000)
    ages.observe((), ["moved"], 8_000)
    assert ages.ages(12_000, known={"idle", "busy"}) == {"busy": 4.0}
    assert ages.oldest_pending(12_000) == 0.0  # the moved campaign's wait went with it


def test_views_report_the_campaigns_waiting_for_a_snapshot() -> None:
    views = CampaignViews(window_retention_ms=10**12, emit_interval_ms=1_000)
    first, second = contributions("c1", 2)
    views.move(None, first)
    assert views.waiting_campaigns() == {"c1"}
    assert [cid for cid, _ in views.take_dirty(5_000)] == ["c1"]
    views.move(None, second)
    assert views.waiting_campaigns() == {"c1"}  # held back: published 0 s ago
    assert views.take_dirty(5_500) == []
    assert views.take_dirty(6_000) != [] and views.waiting_campaigns() == frozenset()
