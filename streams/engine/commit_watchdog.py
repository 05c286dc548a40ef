"""Say where an offset commit is stuck, while it is stuck.

Times every commit (``campaign_analytics_commit_seconds``) and, when one has run
for ``threshold`` seconds, logs what it waits on: its await chain, the await
chains of the tasks in Faust's consumer thread, and the producer's state (a
commit first waits for every record produced before it). Read-only: it changes
nothing about the commit. Why: docs/faust-hardening.md#commit-watchdog.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Iterable
from typing import Any

import faust

from streams.telemetry import Telemetry

log = logging.getLogger(__name__)


def await_chain(task: asyncio.Task[Any]) -> str:
    """The frames a task is suspended in, outermost first: its coroutine and what each
    one awaits (``cr_await``; ``Task.get_stack`` shows only the outermost frame)."""
    frames = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    # a future (or another awaitable) at the end of the chain
    end = f"  awaiting {type(awaited).__qualname__}\n" if awaited is not None else ""
    lines = traceback.format_list(traceback.StackSummary.extract(iter(frames)))
    return "".join(lines) + end or "  (no frames)\n"


def _thread_tasks(consumer: Any) -> Iterable[asyncio.Task[Any]]:
    loop = getattr(getattr(consumer, "_thread", None), "thread_loop", None)
    if loop is None or loop.is_closed():
        return []
    try:
        return list(asyncio.all_tasks(loop))
    except RuntimeError:  # the set changed while it was copied (another thread)
        return []


def producer_state(app: Any) -> str:
    """One line on what the producer still holds (best effort: private attributes)."""
    try:
        producer = app.producer
        buffer = producer.buffer
        parts = [f"buffer {buffer.size}", f"handing over {getattr(buffer, '_handing_over', 0)}"]
        client = getattr(producer, "_producer", None)
        accumulator = getattr(client, "_message_accumulator", None)
        if accumulator is not None:
            now = time.monotonic()
            batches = [b for queue in accumulator._batches.values() for b in queue]
            oldest = max((now - b._ctime for b in batches), default=0.0)
            parts.append(f"aiokafka batches {len(batches)} "
                         f"({sum(b.record_count for b in batches)} records, oldest {oldest:.1f} s,"
                         f" partitions {sorted(str(tp) for tp in accumulator._batches)[:8]})")
        sender = getattr(client, "_sender", None)
        if sender is not None:
            parts.append(f"produce requests in flight to brokers {sorted(sender._in_flight)}")
        return ", ".join(parts)
    except Exception as exc:  # a diagnostic must not fail the check
        return f"unknown ({exc!r})"


class CommitWatchdog:
    def __init__(self, app: faust.App, telemetry: Telemetry, threshold: float) -> None:
        self.app = app
        self.telemetry = telemetry
        self.threshold = threshold
        self.running: dict[asyncio.Task[Any], float] = {}
        self.reported: set[asyncio.Task[Any]] = set()

    def install(self) -> None:
        consumer: Any = self.app.consumer
        commit = consumer.commit

        async def timed_commit(*args: Any, **kwargs: Any) -> Any:
            task = asyncio.current_task()
            started = time.monotonic()
            if task is not None:
                self.running[task] = started
            try:
                return await commit(*args, **kwargs)
            finally:
                elapsed = time.monotonic() - started
                self.telemetry.commit_seconds.observe(elapsed)
                if task is not None:
                    self.running.pop(task, None)
                    if task in self.reported:
                        self.reported.discard(task)
                        log.warning("the offset commit reported stuck finished after %.1f s",
                                    elapsed)

        consumer.commit = timed_commit

    def check(self) -> None:
        """Warn once per commit that has been running for ``threshold`` seconds."""
        now = time.monotonic()
        for task, started in list(self.running.items()):
            if task in self.reported or now - started < self.threshold:
                continue
            self.reported.add(task)
            self.telemetry.stalled_commits.inc()
            threads = "".join(
                f"-- consumer thread task {t.get_name()}:\n{await_chain(t)}"
                for t in _thread_tasks(self.app.consumer))
            log.warning("an offset commit has been running for %.0f s; producer: %s; "
                        "it waits at:\n%s%s", now - started, producer_state(self.app),
                        await_chain(task), threads)


def install(app: faust.App, telemetry: Telemetry, threshold: float = 30.0,
            every: float = 5.0) -> CommitWatchdog:
    watchdog = CommitWatchdog(app, telemetry, threshold)
    watchdog.install()

    @app.timer(interval=every)
    async def commit_watchdog() -> None:
        watchdog.check()

    return watchdog
