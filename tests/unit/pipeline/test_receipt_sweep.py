"""The receipt-timeout sweep without a broker (domain.md 3b): FoldStage's deadline index,
its timeout records folded back through ``message-events``, and AggregateStage, on a
clock the test sets. The edge (deadline - 1 ms pending, deadline unknown), a late
receipt, a sweep run twice or by two workers, a rebuild after recovery, and fold +
sweep + aggregate over messy campaigns equal the recount as of the sweep's instant."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.metrics import summarize
from streams.cli.demo import generate_campaign
from streams.codecs import state as codec
from streams.pipeline.aggregate import AggregateStage
from streams.pipeline.fold import FoldStage
from streams.pipeline.views import CampaignViews
from tests.oracle import expected_log, recount
from tests.unit.pipeline.stage_doubles import (
    KIND_OF_TOPIC,
    MESSAGE_EVENTS,
    UPDATES,
    Rec,
    Table,
    input_record,
)
from tests.unit.pipeline.test_fold_stage import T, delivered, sent

P, U = 4, 3
TIMEOUT = 60_000  # ms
DEADLINE = T + TIMEOUT
KEYS = ("sent", "delivered", "failed", "pending", "unknown", "delivery_rate", "retries",
        "recovered_by_retry")
FIRST = ("sent", "delivered", "failed", "pending")  # of first_attempts


class Worker:
    """One worker's fold and aggregate stages over in-memory tables; what the fold and
    the sweep produce goes round (message-events, message-updates) at once."""

    def __init__(self, table: Table | None = None, aggregate: AggregateStage | None = None,
                 timeout_ms: int = TIMEOUT) -> None:
        self.table = table if table is not None else Table()
        self.fold = FoldStage(self.table, kind_of_topic=KIND_OF_TOPIC,
                              message_events_topic=MESSAGE_EVENTS, window_sizes_s=(60, 3600),
                              state_cache_size=100, receipt_timeout_ms=timeout_ms)
        self.aggregate = aggregate or AggregateStage(Table(), CampaignViews(10 ** 15))
        self.rows: dict[str, Any] = {}  # message id -> newest (version, row) handed on
        self.settled_late = 0  # rows that went from unknown to a terminal status

    def feed(self, records: list[Rec], now_ms: int = T) -> None:
        effects = self.fold.handle(records, {t: P for t in KIND_OF_TOPIC}, U, now_ms, 0.0)
        back = [Rec(MESSAGE_EVENTS, 0, 0, k, v) for k, v in effects.forwards]
        if back:
            self.feed(back, now_ms)
        updates = [Rec(UPDATES, p, 0, k, v) for p, k, v in effects.updates]
        for record in updates:
            version, row = codec.decode_update_row(record.value or b"")
            known = self.rows.get(row.message_id)
            if known is None or known[0] < version:
                self.rows[row.message_id] = (version, row)
                self.settled_late += known is not None and known[1].status == "unknown"
        self.aggregate.handle(updates, 0.0)

    def sweep(self, now_ms: int) -> list[Rec]:
        """The timer's tick at ``now_ms``: the timeout records it sends (not yet folded)."""
        return [Rec(MESSAGE_EVENTS, p, 0, k, v)
                for p, k, v in self.fold.receipt_timeouts(now_ms)]

    def tick(self, now_ms: int) -> int:
        records = self.sweep(now_ms)
        self.feed(records, now_ms)
        return len(records)

    def summary(self, campaign: str = "c1") -> dict[str, Any]:
        return summarize(campaign, self.aggregate.views.counts[campaign])


def _bag(bag: dict[str, Any]) -> dict[str, Any]:
    return {k: bag[k] for k in KEYS} | {"first": {k: bag["first_attempts"][k] for k in FIRST}}


def pick(summary: dict[str, Any]) -> dict[str, Any]:
    return _bag(summary) | {"variants": {v: _bag(m) for v, m in summary["variants"].items()}}


def counts(summary: dict[str, Any]) -> tuple[int, int, int]:
    return summary["pending"], summary["unknown"], summary["delivered"]


def test_pending_a_millisecond_before_the_deadline_unknown_at_it():
    w = Worker()
    w.feed([input_record(sent(), P)])
    assert w.tick(DEADLINE - 1) == 0
    assert counts(w.summary()) == (1, 0, 0)
    assert w.rows["m1"][1].status == "sent"
    assert w.tick(DEADLINE) == 1
    assert counts(w.summary()) == (0, 1, 0)
    assert w.summary()["sent"] == 1 and w.summary()["failed"] == 0  # unknown is not failed
    assert w.rows["m1"][1].status == "unknown"
    assert w.tick(DEADLINE + 10 * TIMEOUT) == 0  # judged once
    want = recount([sent()], as_of=DEADLINE, receipt_timeout_ms=TIMEOUT)["c1"]
    assert pick(w.summary()) == pick(want)
    earlier = recount([sent()], as_of=DEADLINE - 1, receipt_timeout_ms=TIMEOUT)["c1"]
    assert (earlier["pending"], earlier["unknown"]) == (1, 0)  # the oracle's edge too


def test_a_late_receipt_settles_an_unknown_message():
    w = Worker()
    w.feed([input_record(sent(), P)])
    w.tick(DEADLINE)
    judged = w.rows["m1"][0]
    w.feed([input_record(delivered(at=DEADLINE + 5000), P)])
    assert counts(w.summary()) == (0, 0, 1)
    version, row = w.rows["m1"]
    assert version > judged and row.status == "delivered"  # the sweep's version stayed
    events = [sent(), delivered(at=DEADLINE + 5000)]
    assert pick(w.summary()) == pick(recount(events, DEADLINE + 10_000, TIMEOUT)["c1"])


def test_a_settled_message_is_never_judged():
    w = Worker()
    w.feed([input_record(sent(), P), input_record(delivered(), P)])
    assert w.tick(DEADLINE) == 0 and len(w.fold.deadlines) == 0
    assert counts(w.summary()) == (0, 0, 1)


def test_a_receipt_before_the_tick_takes_the_message_out_of_the_index():
    w = Worker()
    w.feed([input_record(sent(), P)])
    w.feed([input_record(delivered(at=DEADLINE + 1), P)])  # late, but before the tick
    assert w.tick(DEADLINE + 2) == 0
    assert counts(w.summary()) == (0, 0, 1)


def test_a_timeout_record_sent_twice_or_by_two_workers_counts_once():
    w = Worker()
    w.feed([input_record(sent(), P), input_record(sent("m2", "e-sent-2"), P)])
    records = w.sweep(DEADLINE)
    assert len(records) == 2
    # a second worker, rebuilt from the same table (a rebalance), sweeps them too
    other = FoldStage(w.table, kind_of_topic=KIND_OF_TOPIC, message_events_topic=MESSAGE_EVENTS,
                      window_sizes_s=(60, 3600), state_cache_size=100,
                      receipt_timeout_ms=TIMEOUT)
    other.deadlines.rebuild(w.table.data.values())
    again = [Rec(MESSAGE_EVENTS, p, 0, k, v) for p, k, v in other.receipt_timeouts(DEADLINE)]
    assert sorted(r.key or b"" for r in again) == [b"m1", b"m2"]
    w.feed(records + records)
    version = w.rows["m1"][0]
    w.feed(again)  # after the first ones were folded: duplicates
    assert w.rows["m1"][0] == version
    assert counts(w.summary()) == (0, 2, 0) and w.summary()["sent"] == 2


def test_the_rebuild_indexes_only_unsettled_unjudged_accepted_messages():
    w = Worker()
    rejected = sent("m3", "e-sent-3") | {"outcome": "REJECTED", "error_code": "21211"}
    orphan = delivered("m4", "e-dlr-4")
    w.feed([input_record(e, P) for e in (sent(), sent("m2", "e-sent-2"), delivered("m2"),
                                          rejected, orphan, sent("m5", "e-sent-5", T + 1))])
    w.tick(DEADLINE)  # m1 judged
    rebuilt = Worker(w.table).fold
    rebuilt.deadlines.rebuild(w.table.data.values())
    assert len(rebuilt.deadlines) == 1  # m5 only
    assert [k for _, k, _ in rebuilt.receipt_timeouts(DEADLINE + 1)] == [b"m5"]
    # Faust's own restore gives dicts: the same
    from_dicts = Worker(w.table).fold
    from_dicts.deadlines.rebuild([codec.loads(v) for v in w.table.data.values()])
    assert [k for _, k, _ in from_dicts.receipt_timeouts(DEADLINE + 1)] == [b"m5"]


def test_unsent_timeout_records_are_due_again():
    w = Worker()
    w.feed([input_record(sent(), P)])
    due = w.fold.receipt_timeouts(DEADLINE)
    assert w.fold.receipt_timeouts(DEADLINE) == []
    w.fold.timeouts_unsent(due, DEADLINE)
    assert w.tick(DEADLINE) == 1 and counts(w.summary()) == (0, 1, 0)


def test_without_the_sweep_the_checker_fails():
    """Negative control: a worker that never ticks keeps its lost messages pending,
    and the recount as of the deadline says otherwise."""
    w = Worker()
    w.feed([input_record(sent(), P)])
    want = pick(recount([sent()], as_of=DEADLINE, receipt_timeout_ms=TIMEOUT)["c1"])
    assert pick(w.summary()) != want
    w.tick(DEADLINE)
    assert pick(w.summary()) == want


def _case(seed: int, messages: int) -> list[dict[str, Any]]:
    events = generate_campaign("c1", messages, seed=seed, start_ms=T, duplicate_rate=0.0,
                               shuffle=False, retry_rate=0.5)
    rng = random.Random(seed)
    # lose some receipts: a message that has none left can only time out
    sends = {e["message_id"]: e["occurred_at"] for e in events if e["type"] == "sent"}
    lost = {m for m in sorted(sends) if rng.random() < 0.4}
    kept = [e for e in events if not (e["type"] == "delivery" and e["message_id"] in lost)]
    # and a receipt that comes after its deadline for some of them
    late = [{"type": "delivery", "event_id": f"{m}-late", "message_id": m,
             "occurred_at": sends[m] + TIMEOUT + rng.randrange(TIMEOUT),
             "status": rng.choice(("DELIVERED", "UNDELIVERED"))}
            for m in sorted(lost) if rng.random() < 0.3]
    return kept + late


@st.composite
def messy(draw: Any) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], list[int], int]:
    seed = draw(st.integers(0, 10_000))
    events = _case(seed, draw(st.integers(1, 30)))
    order = draw(st.permutations(range(len(events))))
    dups = draw(st.lists(st.integers(0, len(events) - 1), max_size=15))
    stream = [events[i] for i in order] + [events[i] for i in dups]
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    sends = [e["occurred_at"] for e in events if e["type"] == "sent"] or [T]
    span = max(sends) - min(sends) + 2 * TIMEOUT
    ticks = sorted(draw(st.lists(st.integers(T, T + span), min_size=len(chunks),
                                 max_size=len(chunks))))
    as_of = draw(st.integers(ticks[-1], T + span + 1))
    return events, chunks, ticks, as_of


@settings(max_examples=120, deadline=None)
@given(messy())
def test_fold_sweep_and_aggregate_equal_the_recount_as_of_the_last_tick(case):
    """Chunks in any order with duplicates, a sweep tick after each, one at ``as_of``
    at the end: the metrics and the log's statuses are the recount's as of then."""
    events, chunks, ticks, as_of = case
    w = Worker()
    for chunk, now in zip(chunks, ticks, strict=True):
        w.feed([input_record(e, P, own_partition=random.Random(now).random() < 0.7)
                for e in chunk], now)
        w.tick(now)
    w.tick(as_of)
    want = recount(events, as_of=as_of, receipt_timeout_ms=TIMEOUT)
    if "c1" not in want:
        return
    assert pick(w.summary()) == pick(want["c1"])
    log = expected_log(events, "c1", as_of=as_of, receipt_timeout_ms=TIMEOUT)
    assert {m: r.status for m, (_, r) in w.rows.items()} == {m: r["status"]
                                                             for m, r in log.items()}


def test_the_property_covers_both_sides_of_the_deadline():
    """The generated campaigns hold lost receipts on both sides of an instant."""
    events = _case(3, 30)
    got = recount(events, as_of=T + TIMEOUT + 700, receipt_timeout_ms=TIMEOUT)["c1"]
    assert got["unknown"] > 0 and got["pending"] > 0
