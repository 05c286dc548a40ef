"""The worker's garbage collector: measured, and tuned for a large, long-lived heap.

A worker holds hundreds of thousands of long-lived objects (the cache of decoded
message states, the views; the tables hold their values as bytes, which the
collector does not see: ``streams/engine/tables.py``) and allocates many
short-lived ones per event. With CPython's default thresholds (700, 10, 10) the
young generations are collected every few hundred allocations and every
surviving object is traversed again and again on its way to the old
generation, and a full collection walks the whole heap while the event loop
waits: a pause in every record's path (its event-to-metric latency).

``install`` (called once per worker process):

* counts the time of every collection, by generation, in
  ``campaign_analytics_gc_seconds`` (a histogram; SREs see the pauses);
* moves everything allocated while starting (modules, Faust, schemas) to the
  permanent generation (``gc.freeze``), so no collection walks it again;
* raises the first threshold to ``CA_GC_GEN0`` (default 200,000 allocations;
  0 keeps CPython's defaults): fewer, larger young collections.

A young collection still walks every object that survived since the last one:
with the default threshold, ~190,000 objects (the cache of decoded message
states: the cache's tuple, the state, its ``seen`` set, its send and receipts),
0.15-0.25 s at 7,500 events/s. Any record in flight then waits that long, and
one that misses its campaign's next snapshot because of it waits a whole
``CA_EMIT_INTERVAL`` more. So the worker runs due collections itself at the
moment that costs least, ``collect_when_quiet``: right after it has published
snapshots, when what is in flight has a whole interval before the next ones.

Reference cycles are still collected; only how often the collector runs
changes.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from streams.telemetry import Telemetry

GENERATIONS = ("0", "1", "2")


class GcTimer:
    """A ``gc.callbacks`` entry that times each collection into a histogram."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started:
            elapsed = time.perf_counter() - self.started
            self.started = 0.0
            generation = GENERATIONS[min(int(info.get("generation", 2)), 2)]
            self.telemetry.gc_seconds.labels(generation).observe(elapsed)


def install(telemetry: Telemetry, gen0_threshold: int) -> GcTimer:
    """Time every collection; freeze what exists now; set the young threshold."""
    timer = GcTimer(telemetry)
    gc.callbacks.append(timer)
    gc.collect()
    gc.freeze()
    if gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
    return timer


def collect_when_quiet(share: float = 0.5) -> int | None:
    """Run now the collection CPython would run next, once it is ``share`` due.

    Due means the young generation holds at least ``share`` of its threshold of
    allocations. The generation is the one CPython would choose when the young
    threshold is reached: the oldest whose count is over its threshold (each
    collection counts one for the next older generation), but without CPython's
    extra rule that holds back a full collection until the objects waiting for
    one are a quarter of those that survived the last: with the thresholds
    (n, 10, 10), a middle collection comes every 11th time and a full one every
    121st.
    Returns the generation collected, or ``None``.
    """
    threshold0, *older = gc.get_threshold()
    counts = gc.get_count()
    if not gc.isenabled() or threshold0 <= 0 or counts[0] < threshold0 * share:
        return None
    generation = 0
    while generation < 2 and counts[generation + 1] > older[generation]:
        generation += 1
    gc.collect(generation)
    return generation


def uninstall(timer: GcTimer) -> None:
    """Undo ``install`` (tests): the callback, the frozen set, CPython's thresholds."""
    if timer in gc.callbacks:
        gc.callbacks.remove(timer)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
