"""Per-partition batching and batch intents of the ClickHouse sinks: pure, no Kafka."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from streams.sink_runtime.batches import PartitionBatches, intent_metadata, parse_intent


@dataclass(frozen=True)
class Rec:
    offset: int


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recs(first: int, last: int) -> list[Rec]:
    return [Rec(o) for o in range(first, last + 1)]


def offsets(batch: list[Rec]) -> tuple[int, int, int]:
    return batch[0].offset, batch[-1].offset, len(batch)


def test_intent_round_trip_and_foreign_metadata() -> None:
    assert parse_intent(intent_metadata(10, 59)) == (10, 59)
    for other in ("", None, "something else", "ca-sink-batch:9-3", "ca-sink-batch:1-2x"):
        assert parse_intent(other) is None
    with pytest.raises(ValueError):
        intent_metadata(5, 4)


def test_a_partition_is_due_when_full_or_old_enough() -> None:
    clock = Clock()
    batches: PartitionBatches[str, Rec] = PartitionBatches(10, 1.0, clock)
    batches.add("p0", recs(0, 3))
    batches.add("p1", recs(0, 11))
    assert {k: offsets(v) for k, v in batches.due().items()} == {"p1": (0, 9, 10)}
    assert batches.seconds_to_next() == pytest.approx(1.0)
    clock.now += 1.0
    assert {k: offsets(v) for k, v in batches.due().items()} == {"p0": (0, 3, 4), "p1": (10, 11, 2)}
    assert batches.buffered() == 0 and batches.due() == {}


def test_the_rest_of_a_full_partition_keeps_its_age() -> None:
    clock = Clock()
    batches: PartitionBatches[str, Rec] = PartitionBatches(5, 1.0, clock)
    batches.add("p", recs(0, 6))
    assert offsets(batches.due()["p"]) == (0, 4, 5)
    clock.now += 1.0
    assert offsets(batches.due()["p"]) == (5, 6, 2)


def test_memory_is_bounded_by_the_batch_size() -> None:
    batches: PartitionBatches[int, Rec] = PartitionBatches(50, 10.0, Clock())
    offset = {p: 0 for p in range(4)}
    for round_ in range(200):  # each fetch adds at most max_rows records in all
        p = round_ % 4
        batches.add(p, recs(offset[p], offset[p] + 49))
        offset[p] += 50
        batches.due()
        assert batches.buffered() < (4 + 1) * 50


def test_a_replayed_batch_ends_exactly_at_the_intent() -> None:
    clock = Clock()
    batches: PartitionBatches[str, Rec] = PartitionBatches(100, 1.0, clock)
    batches.replay("p", 36)
    batches.add("p", recs(20, 30))
    clock.now += 5
    assert batches.due() == {}  # not complete yet, however old
    batches.add("p", recs(31, 80))
    assert offsets(batches.due()["p"]) == (20, 36, 17)  # neither by size nor by time
    assert offsets(batches.due()["p"]) == (37, 80, 44)  # then the usual rules (it is old)


def test_a_replay_over_a_gap_in_offsets_still_completes() -> None:
    batches: PartitionBatches[str, Rec] = PartitionBatches(100, 1.0, Clock())
    batches.replay("p", 12)
    batches.add("p", [Rec(10), Rec(11), Rec(14), Rec(15)])  # 12, 13 compacted away
    assert offsets(batches.due()["p"]) == (10, 11, 2)


def test_dropped_partitions_forget_their_buffer_and_replay() -> None:
    clock = Clock()
    batches: PartitionBatches[str, Rec] = PartitionBatches(10, 1.0, clock)
    batches.replay("p", 50)
    batches.add("p", recs(0, 5))
    batches.drop(["p"])
    assert batches.buffered() == 0
    batches.add("p", recs(6, 7))
    clock.now += 1
    assert offsets(batches.due()["p"]) == (6, 7, 2)
