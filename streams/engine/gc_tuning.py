"""The process's garbage collector: measured, and tuned for a large, long-lived heap.

``install`` (once per worker or sink process, ``streams.engine.harden_process``)
times every collection (``campaign_analytics_gc_seconds``), freezes what
starting allocated (``gc.freeze``), and raises the young threshold to
``CA_GC_GEN0``. ``collect_when_quiet`` runs a due collection when it costs
least (right after snapshots are published); ``no_collection`` holds collections
off while a restore builds its values. Reference cycles are still collected.
Why, with the pauses measured: docs/faust-hardening.md#gc-tuning.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """No cyclic garbage collection inside; afterwards everything that exists moves to
    the permanent generation.

    A restore builds a million table values (and a rebuild as many view entries);
    the collector would walk them again and again while they are built (half the
    time of a restore) and at every full collection afterwards. Table values and
    views are plain data, never cycles, and reference counting still frees them."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        gc.freeze()
