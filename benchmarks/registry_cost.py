"""What the Confluent wire format costs per record (issue 23, in-process, no registry).

    .venv/bin/python -m benchmarks.registry_cost [--events N] [--repeat R]

Times, over N input events of the demo generator (every kind), ``decode_event`` of
the single-object records and of the same records Confluent-framed (the writer found
by id in ``schemas.FRAMING``, as after the batch's ``resolve``), the per-batch
``unseen_ids`` scan the fold and the events sink run before decoding (every id
known: the steady state), and ``encode_campaign_metrics`` of a demo summary
single-object and framed. Prints CPU ns per record (best of R, the variants
interleaved so a busy machine slows them alike). End to end with and without a registry:
``CA_SCHEMA_REGISTRY_URL=... python -m benchmarks.throughput --only ours``
(docs/performance.md). Not part of the tests.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from projections.metrics import summarize
from schemas import FRAMING
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import CURRENT, decode_event, encode_record
from streams.codecs.output_avro import _SCHEMA as METRICS_SCHEMA
from streams.codecs.output_avro import encode_campaign_metrics
from streams.codecs.registry import unseen_ids
from tests.unit.projections.test_projections import stream_fold

NOW = 2**62  # judged against no clock (the far-future rule passes every event)


def _records(events: int) -> tuple[list[bytes], list[bytes]]:
    single, framed = [], []
    ids = {kind: n for n, kind in enumerate(CURRENT, 100)}
    for kind, n in ids.items():
        FRAMING.writers[n] = CURRENT[kind]
    while len(single) < events:
        for raw in generate_campaign(f"bench-{len(single)}", 500, seed=len(single)):
            kind = raw.pop("type")
            value = encode_record(kind, raw)
            single.append(value)
            framed.append(b"\x00" + ids[kind].to_bytes(4, "big") + value[10:])
    return single[:events], framed[:events]


def _best(work: Callable[[], Any], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time_ns()  # CPU time: the machine may be busy
        work()
        best = min(best, (time.process_time_ns() - start) / count)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    single, framed = _records(args.events)
    _, campaigns = stream_fold(generate_campaign("bench", 2000, seed=3))
    summary = summarize("bench", campaigns["bench"])
    snapshots = 20_000
    rounds: dict[str, list[float]] = {}
    for _ in range(args.repeat):  # interleaved, best of each
        for name, work, count in (
            ("decode, single-object", lambda: [decode_event(v, NOW) for v in single],
             len(single)),
            ("decode, Confluent-framed", lambda: [decode_event(v, NOW) for v in framed],
             len(framed)),
            ("unseen_ids scan, single-object batch", lambda: unseen_ids(single), len(single)),
            ("unseen_ids scan, Confluent batch", lambda: unseen_ids(framed), len(framed)),
            ("encode metrics snapshot, single-object",
             lambda: [encode_campaign_metrics(summary, 1) for _ in range(snapshots)],
             snapshots),
            ("encode metrics snapshot, Confluent", lambda: _framed_snapshots(summary, snapshots),
             snapshots),
        ):
            rounds.setdefault(name, []).append(_best(work, count, 1))
    for name, values in rounds.items():
        print(f"{name:42s} {min(values):10.0f} ns/record")


def _framed_snapshots(summary: dict[str, Any], count: int) -> None:
    FRAMING.frames[METRICS_SCHEMA.fingerprint] = b"\x00\x00\x00\x00\x07"
    try:
        for _ in range(count):
            encode_campaign_metrics(summary, 1)
    finally:
        del FRAMING.frames[METRICS_SCHEMA.fingerprint]


if __name__ == "__main__":
    main()
