"""Fix 4 (``streams/engine/positions.py``): the offset to commit never passes a record
that was not processed, and the inbox takes each partition's records in
sequence, reading a partition again rather than passing over a record.

Negative controls: Faust's own choice of the offset to commit (saved before
the fix) commits over missing records in the two cases that lost events.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from intervaltree import IntervalTree

from streams.engine import inbox as bulk
from streams.engine import patches as faust_fixes
from streams.engine import positions
from streams.engine.positions import ReadOffsets, ReadPositions, next_commit, positions_of

TP0 = TP("sms.sent", 0)


# --- the pure decision -------------------------------------------------------

def test_commits_the_run_that_starts_at_the_base() -> None:
    assert next_commit([12, 10, 11, 11, 14], 10, []) == ([14], 13, None)


def test_a_missing_head_holds_the_commit_and_names_the_first_processed() -> None:
    assert next_commit([11, 12, 13], 10, []) == ([11, 12, 13], None, 11)


def test_offsets_below_the_base_are_forgotten() -> None:
    assert next_commit([3, 4, 10], 10, []) == ([], 11, None)


def test_offsets_absent_from_the_log_count_as_done() -> None:
    assert next_commit([12, 13, 20], 10, [(10, 12), (14, 20)]) == ([], 21, None)


def test_without_a_known_base_the_lowest_processed_offset_starts_the_run() -> None:
    assert next_commit([7, 5, 6, 9], None, []) == ([9], 8, None)


# --- on a consumer's bookkeeping, against Faust's own ------------------------

def _consumer(acked: list[int], committed: int | None, start: int | None = None) -> Any:
    consumer = SimpleNamespace(
        _acked=defaultdict(list, {TP0: list(acked)}),
        _acked_index=defaultdict(set, {TP0: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {TP0: committed}),
        _gap=defaultdict(IntervalTree),
    )
    if start is not None:
        positions_of(consumer).start[TP0] = start
    return consumer


@pytest.mark.parametrize(("committed", "start"), [(None, 0), (0, None), (100, None)])
def test_faust_commits_over_a_missing_head(committed: int | None, start: int | None) -> None:
    """Negative control: no check without a commit or at 0; one missing offset let
    through above 0."""
    base = committed if committed else start or 0
    consumer = _consumer(list(range(base + 1, base + 10)), committed)
    assert faust_fixes._original_new_offset(consumer, TP0) == base + 10


@pytest.mark.parametrize(("committed", "start"), [(None, 0), (None, 40), (100, None)])
def test_the_fix_holds_the_commit_and_reads_the_partition_again(
        committed: int | None, start: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    base = committed if committed is not None else start
    assert base is not None
    consumer = _consumer(list(range(base + 1, base + 10)), committed, start)
    repairs: list[tuple[int, int]] = []
    monkeypatch.setattr(positions, "hole",
                        lambda c, tp, at, first: repairs.append((at, first)))
    assert positions.new_offset(consumer, TP0) is None
    assert repairs == [(base, base + 1)]
    consumer._acked[TP0].append(base)  # the re-read record is processed
    assert positions.new_offset(consumer, TP0) == base + 10
    assert consumer._acked[TP0] == []


def test_a_registered_gap_lets_the_commit_pass() -> None:
    consumer = _consumer([13, 14], 10)
    consumer._gap[TP0].addi(10, 13)
    assert positions.new_offset(consumer, TP0) == 15
    assert not consumer._gap[TP0]


class FakeClient:
    """The aiokafka consumer, as the consumer thread sees it."""

    def __init__(self, beginning: int = 0) -> None:
        self.beginning = beginning
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {TP0}

    async def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: self.beginning for tp in tps}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def _threaded(client: FakeClient) -> Any:
    async def call_thread(fn: Any) -> Any:
        return await fn()
    consumer = _consumer([], None)
    consumer._thread = SimpleNamespace(_ensure_consumer=lambda: client, call_thread=call_thread)
    consumer.assignment = client.assignment
    return consumer


def test_a_hole_is_read_again_once_per_interval() -> None:
    client = FakeClient()
    consumer = _threaded(client)
    reasons: list[str] = []
    positions_of(consumer).on_reread = reasons.append

    async def run() -> None:
        positions.hole(consumer, TP0, 10, 15)
        positions.hole(consumer, TP0, 10, 15)  # within REPAIR_EVERY: no second seek
        # the re-reads it started (one), to their end
        await asyncio.gather(*asyncio.all_tasks() - {asyncio.current_task()})

    asyncio.run(run())
    assert client.seeks == [(TP0, 10)]
    assert reasons == ["hole"]
    assert positions_of(consumer).epoch[TP0] == 1
    assert positions_of(consumer).at[TP0] == 10


def test_records_deleted_by_retention_count_as_absent() -> None:
    client = FakeClient(beginning=50)
    consumer = _threaded(client)
    asyncio.run(positions.reread(consumer, TP0, 10))
    assert client.seeks == [(TP0, 50)]
    assert sorted((iv.begin, iv.end) for iv in consumer._gap[TP0]) == [(10, 50)]


def test_faust_read_offsets_are_unknown_for_inbox_topics() -> None:
    offsets = ReadOffsets({"sms.sent"}, {TP("other", 0): 5})
    offsets[TP0] = 99
    assert offsets[TP0] is None
    assert offsets[TP("other", 0)] == 5
    assert offsets[TP("other", 1)] is None


def test_stamps_carry_the_epoch_at_fetch_time() -> None:
    reads = ReadPositions()
    reads.sought(TP0, 0)
    before = [SimpleNamespace(), SimpleNamespace()]
    reads.stamp({TP0: before})
    reads.sought(TP0, 0)
    after = [SimpleNamespace()]
    reads.stamp({TP0: after})
    assert [r.fetch_epoch for r in before + after] == [1, 1, 2]


# --- the inbox's sequence check ----------------------------------------------

class Reread:
    def __init__(self) -> None:
        self.calls: list[int] = []

    async def __call__(self, consumer: Any, tp: TP, offset: int) -> None:
        self.calls.append(offset)
        positions_of(consumer).sought(tp, offset)


def _inbox(monkeypatch: pytest.MonkeyPatch, at: int = 10) -> tuple[bulk.Inbox, Reread, Any]:
    consumer = _consumer([], None)
    consumer.assignment = lambda: {TP0}
    app: Any = SimpleNamespace(consumer=consumer)
    inbox = bulk.Inbox(app, [], max_batch=10, within=0.0)
    positions_of(consumer).sought(TP0, at)
    reread = Reread()
    monkeypatch.setattr(positions, "reread", reread)
    return inbox, reread, consumer


def _record(offset: int, epoch: int) -> Any:
    return SimpleNamespace(tp=TP0, offset=offset, fetch_epoch=epoch)


def _take(inbox: bulk.Inbox, offset: int, epoch: int) -> bool:
    """What ``Inbox.deliver`` does with a record once the flow is active."""
    message = _record(offset, epoch)
    verdict = inbox._verdict(message)
    if verdict == bulk.TAKE:
        return True
    asyncio.run(inbox._refuse(message, verdict))
    return False


def test_the_inbox_takes_records_in_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, reread, _ = _inbox(monkeypatch)
    assert [_take(inbox, o, 1) for o in (10, 11, 12)] == [True, True, True]
    assert not _take(inbox, 12, 1)  # a repeat
    assert reread.calls == []


def test_a_record_fetched_before_the_latest_seek_is_left_to_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, reread, consumer = _inbox(monkeypatch)
    assert _take(inbox, 10, 1)
    positions_of(consumer).sought(TP0, 10)
    assert not _take(inbox, 11, 1)  # epoch 1 is stale now
    assert _take(inbox, 10, 2)
    assert reread.calls == []


def test_a_jump_reads_the_partition_again_from_the_first_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, reread, consumer = _inbox(monkeypatch)
    assert _take(inbox, 10, 1)
    assert not _take(inbox, 13, 1)
    assert reread.calls == [11]
    assert not consumer._gap[TP0]  # nothing was declared absent
    assert _take(inbox, 11, 2)


def test_offsets_absent_after_a_seek_are_proven_by_two_seeks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, reread, consumer = _inbox(monkeypatch)
    assert not _take(inbox, 12, 1)  # first seek began at 12, not 10: once is not proof
    assert reread.calls == [10]
    assert not consumer._gap[TP0]
    assert _take(inbox, 12, 2)  # the second seek began there too
    assert sorted((iv.begin, iv.end) for iv in consumer._gap[TP0]) == [(10, 12)]


def test_a_record_not_taken_makes_the_next_one_a_jump(monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, reread, consumer = _inbox(monkeypatch)
    inbox._not_taken(_record(10, 1))  # dropped: a rebalance stopped the flow
    assert not _take(inbox, 11, 1)
    assert reread.calls == [10]
    assert not consumer._gap[TP0]


# --- fix 5: the revocation's commit sees the offsets it covers ---------------

class RevokingConsumer:
    """The parts of Faust's consumer its ``on_partitions_revoked`` touches; the app's
    handler notes what the commit it makes would see."""

    def __init__(self) -> None:
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.app = SimpleNamespace(_start_span_from_rebalancing=lambda name: _NoSpan())
        self._active_partitions: set[TP] | None = {TP0}
        self._paused_partitions: set[TP] = set()
        self._gap: Any = defaultdict(IntervalTree)
        self._acked: Any = defaultdict(list, {TP0: [100, 101]})
        self._acked_index: Any = defaultdict(set, {TP0: {100, 101}})
        self._read_offset: Any = defaultdict(lambda: None)
        self._committed_offset: Any = defaultdict(lambda: None, {TP0: 100})
        self.seen_by_commit: tuple[list[int], int | None] | None = None

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.seen_by_commit = (list(self._acked[TP0]), self._committed_offset[TP0])


class _NoSpan:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_faust_forgets_the_offsets_before_the_revocation_commit() -> None:
    """Negative control: Faust's own order."""
    consumer = RevokingConsumer()
    asyncio.run(faust_fixes._faust_on_partitions_revoked(consumer, {TP0}))
    assert consumer.seen_by_commit == ([], None)


def test_the_revocation_commit_sees_the_offsets_then_they_are_forgotten() -> None:
    consumer = RevokingConsumer()
    asyncio.run(faust_fixes._on_partitions_revoked(consumer, {TP0}))
    assert consumer.seen_by_commit == ([100, 101], 100)
    assert TP0 not in consumer._acked and TP0 not in consumer._committed_offset
    assert consumer._active_partitions == set()


# --- acknowledging a batch at once ---------------------------------------------

class AckingConsumer:
    def __init__(self, committed: int | None) -> None:
        self._acked: Any = defaultdict(list)
        self._acked_index: Any = defaultdict(set)
        self._committed_offset: Any = defaultdict(lambda: None, {TP0: committed})
        self._unacked_messages: set[Any] = set()
        self._n_acked = 0
        self._waiting_for_ack: Any = None
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))


def _messages(offsets: list[int]) -> list[Any]:
    from faust.types.tuples import Message
    return [Message("sms.sent", 0, o, 0.0, 0, None, None, b"", None, tp=TP0) for o in offsets]


@pytest.mark.parametrize("committed", [None, 5])
def test_a_batch_acknowledgement_keeps_fausts_bookkeeping(committed: int | None) -> None:
    from faust.transport.consumer import Consumer
    offsets = [3, 5, 6, 6, 7]  # one below the commit, one repeat
    results = []
    for ack_all in (lambda c, ms: [Consumer.ack(c, m) for m in ms], bulk.acknowledge):
        consumer = AckingConsumer(committed)
        messages = _messages(offsets)
        consumer._unacked_messages.update(messages)
        ack_all(consumer, messages)
        results.append((dict(consumer._acked), dict(consumer._acked_index), consumer._n_acked,
                        all(m.acked for m in messages)))
    assert results[0] == results[1]
    assert results[1][0][TP0] == ([3, 5, 6, 7] if committed is None else [5, 6, 7])
