"""AggregateStage without a broker: the newest version per message wins, a stale or
replayed hand-off moves nothing, and fold + aggregate over a messy campaign in random
batches, with redeliveries, equal the batch recount."""

from __future__ import annotations

import random
from typing import Any

from projections.message_log import message_log_row
from projections.metrics import message_contribution, summarize
from streams.cli.demo import generate_campaign
from streams.codecs import state as codec
from streams.pipeline.aggregate import AggregateStage
from streams.pipeline.views import CampaignViews
from tests.oracle import BREAKDOWN_KEYS, recount
from tests.unit.pipeline.stage_doubles import (
    KIND_OF_TOPIC,
    MESSAGE_EVENTS,
    UPDATES,
    Rec,
    Table,
    input_record,
)
from tests.unit.pipeline.test_fold_stage import T, delivered, sent, stage

P, U = 4, 3


def views() -> CampaignViews:
    return CampaignViews(window_retention_ms=10 ** 15)


def update(version: int, state: Any, offset: int = 0) -> Rec:
    log_row = message_log_row(state, updated_at=T)
    assert log_row is not None
    value = codec.encode_message_update(version, log_row,
                                        message_contribution(state, (60, 3600)))
    return Rec(UPDATES, 0, offset, b"c1", value)


def states() -> dict[str, Any]:
    """The message's state after its send, and after its delivery too."""
    table = Table()
    s = stage(table)
    s.handle([input_record(sent(), P)], {t: P for t in KIND_OF_TOPIC}, U, T, 0.0)
    pending = codec.state_from_dict(codec.as_dict(table.data["m1"]))
    s.handle([input_record(delivered(), P)], {t: P for t in KIND_OF_TOPIC}, U, T, 0.0)
    done = codec.state_from_dict(codec.as_dict(table.data["m1"]))
    return {"pending": pending, "delivered": done}


def total(v: CampaignViews) -> dict[str, int]:
    return {k: n for k, n in v.counts["c1"].total.items() if k in ("pending", "delivered")}


def test_the_newest_version_in_a_batch_wins_whatever_the_order():
    s = states()
    table, v = Table(), views()
    effects = AggregateStage(table, v).handle(
        [update(2, s["delivered"]), update(1, s["pending"])], 0.0)
    assert effects.applied == 1 and table.peek("m1")["version"] == 2
    assert total(v) == {"delivered": 1}


def test_a_stale_or_replayed_hand_off_moves_nothing():
    s = states()
    table, v = Table(), views()
    aggregate = AggregateStage(table, v)
    aggregate.handle([update(2, s["delivered"])], 0.0)
    for stale in (update(1, s["pending"]), update(2, s["delivered"])):
        effects = aggregate.handle([stale], 0.0)
        assert effects.applied == 0 and len(table.puts) == 1
        assert total(v) == {"delivered": 1}
    # negative control: the same stale record on an empty table is applied
    fresh = views()
    assert AggregateStage(Table(), fresh).handle([update(1, s["pending"])], 0.0).applied == 1
    assert total(fresh) == {"pending": 1}


def test_a_newer_version_moves_the_views_by_new_minus_old():
    s = states()
    table, v = Table(), views()
    aggregate = AggregateStage(table, v)
    aggregate.handle([update(1, s["pending"])], 0.0)
    assert total(v) == {"pending": 1}
    aggregate.handle([update(2, s["delivered"])], 0.0)
    assert total(v) == {"delivered": 1}  # a count that reaches 0 is dropped


def test_an_undecodable_update_is_dead_lettered():
    effects = AggregateStage(Table(), views()).handle([Rec(UPDATES, 0, 5, b"c1", b"{oops")], 0.0)
    assert effects.errors == 1 and effects.applied == 0
    assert [reason for _, reason in effects.dead_letters] == [
        "processing error in aggregate_campaigns"]


def run(events: list[dict[str, Any]], seed: int, protected: bool = True) -> dict[str, Any]:
    """Fold and aggregate ``events`` in random batches, every fourth batch redelivered
    (as after a crash before the commit), records in random partitions (forwarded
    ones come back through message-events)."""
    rng = random.Random(seed)
    fold_table, contributions, v = Table(), Table(), views()
    fold = stage(fold_table, protected=protected)
    aggregate = AggregateStage(contributions, v)
    homes = {t: P for t in KIND_OF_TOPIC}
    records = [input_record(e, P, i, own_partition=rng.random() < 0.7)
               for i, e in enumerate(events)]
    while records:
        size = rng.randint(1, 40)
        batch, records = records[:size], records[size:]
        for _ in range(2 if rng.random() < 0.25 else 1):
            effects = fold.handle(batch, homes, U, T, 0.0)
            back = [Rec(MESSAGE_EVENTS, 0, 0, key, value) for key, value in effects.forwards]
            more = fold.handle(back, homes, U, T, 0.0)
            updates = [Rec(UPDATES, p, 0, k, val) for p, k, val in effects.updates + more.updates]
            rng.shuffle(updates)
            aggregate.handle(updates, 0.0)
    return {cid: summarize(cid, counts) for cid, counts in v.counts.items()}


KEYS = ("campaign_id", "sent", "delivered", "failed", "pending", "replies", "unique_repliers",
        "opt_outs", "link_clicks", "unique_link_clicks", "delivery_rate", "reply_rate",
        "link_click_rate", *BREAKDOWN_KEYS, "variants")


def pick(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in KEYS}


def test_fold_and_aggregate_in_random_batches_equal_the_recount():
    events = generate_campaign("c1", 150, seed=3, duplicate_rate=0.2)
    random.Random(4).shuffle(events)
    want = recount(events)["c1"]
    for seed in range(3):
        assert pick(run(events, seed)["c1"]) == pick(want), seed
    # negative control: without replay protection the redelivered batches double-count
    assert pick(run(events, 0, protected=False)["c1"]) != pick(want)
