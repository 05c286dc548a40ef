"""The worker's garbage collector: measured, and tuned for a large, long-lived heap.

A worker holds hundreds of thousands of long-lived objects (the cache of decoded
message states, the views; the tables hold their values as bytes, which the
collector does not see: ``streams/recovery.py``) and allocates many
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


def uninstall(timer: GcTimer) -> None:
    """Undo ``install`` (tests): the callback, the frozen set, CPython's thresholds."""
    if timer in gc.callbacks:
        gc.callbacks.remove(timer)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
