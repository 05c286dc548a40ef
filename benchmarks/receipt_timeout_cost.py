"""What the receipt-timeout sweep (domain.md 3b) costs the worker, in process, no broker.

    .venv/bin/python -m benchmarks.receipt_timeout_cost [--messages N] [--rounds R]

1. the fold: ``FoldStage.handle`` over a messy campaign's input records (in batches of
   500, in-memory table), with the deadline index as the worker has it and with its
   ``note`` made a no-op, alternately; records per CPU second each (median of the
   rounds) and the difference, then ``note`` alone per call (steadier when the
   machine is shared);
2. a tick with nothing due over an index of N unsettled messages (the steady state);
3. the rebuild after a recovery over N stored states, a third of them unsettled;
4. a tick that judges every one of N messages (each gives one timeout record).
Prints figures; not part of the tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from streams.cli.demo import generate_campaign
from streams.codecs import state as codec
from streams.pipeline.deadlines import ReceiptDeadlines
from streams.pipeline.fold import FoldStage
from tests.unit.pipeline.stage_doubles import KIND_OF_TOPIC, MESSAGE_EVENTS, Table, input_record

P, U, BATCH = 4, 3, 500


def _stage(table: Table, timeout_ms: int = 72 * 3_600_000) -> FoldStage:
    return FoldStage(table, kind_of_topic=KIND_OF_TOPIC, message_events_topic=MESSAGE_EVENTS,
                     window_sizes_s=(60, 3600), state_cache_size=200_000,
                     receipt_timeout_ms=timeout_ms)


def _fold(records: list[Any], index: bool) -> tuple[float, FoldStage]:
    stage = _stage(Table())
    if not index:
        stage.deadlines.note = lambda *_: None  # type: ignore[method-assign]
    homes = {t: P for t in KIND_OF_TOPIC}
    start = time.process_time()  # CPU time: the machine may be shared
    for i in range(0, len(records), BATCH):
        stage.handle(records[i:i + BATCH], homes, U, 0, 0.0)
    return time.process_time() - start, stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    events = generate_campaign("bench", args.messages, seed=5, duplicate_rate=0.1)
    records = [input_record(e, P, i) for i, e in enumerate(events)]
    times: dict[bool, list[float]] = {True: [], False: []}
    stage = _stage(Table())
    for _ in range(args.rounds):
        for index in (False, True):
            took, folded = _fold(records, index)
            times[index].append(took)
            if index:
                stage = folded
    print(f"1. fold: {len(records)} records, {args.messages} messages, batches of {BATCH}, "
          f"median of {args.rounds}")
    for index in (False, True):
        t = statistics.median(times[index])
        print(f"   index {'on ' if index else 'off'}: {len(records) / t:9.0f} records/s "
              f"({t:.3f} s)")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"   cost of the index: {100 * (ratio - 1):+.1f}% time; "
          f"{len(stage.deadlines)} unsettled messages indexed")

    states = [codec.state_from_dict(codec.as_dict(v))
              for v in stage.table.data.values()]  # type: ignore[attr-defined]
    alone = ReceiptDeadlines(stage.deadlines.timeout_ms)
    start = time.process_time()
    for _ in range(20):
        for state in states:
            alone.note(state.message_id, state, 0)
    per_note = (time.process_time() - start) / (20 * len(states))
    per_record = statistics.median(times[False]) / len(records)
    print(f"   note alone: {per_note * 1e9:.0f} ns a call (at most one per record) = "
          f"{100 * per_note / per_record:.1f}% of the fold's {per_record * 1e6:.1f} us a "
          f"record: the steadier figure on a shared machine")

    start = time.perf_counter()
    ticks = 10_000
    for _ in range(ticks):
        stage.receipt_timeouts(0)  # nothing is due at the epoch
    per_tick = (time.perf_counter() - start) / ticks
    print(f"2. a tick with nothing due, {len(stage.deadlines)} indexed: "
          f"{per_tick * 1e6:.2f} us")

    values = list(stage.table.data.values())  # type: ignore[attr-defined]
    rebuilt = _stage(Table())
    start = time.perf_counter()
    rebuilt.deadlines.rebuild(values)
    took = time.perf_counter() - start
    print(f"3. rebuild from {len(values)} stored states ({len(rebuilt.deadlines)} unsettled): "
          f"{took:.3f} s = {len(values) / took:.0f} states/s")

    start = time.perf_counter()
    due = rebuilt.receipt_timeouts(2 ** 62)
    took = time.perf_counter() - start
    print(f"4. a tick judging all {len(due)}: {took * 1000:.1f} ms "
          f"= {len(due) / max(took, 1e-9):.0f} records/s")


if __name__ == "__main__":
    main()
