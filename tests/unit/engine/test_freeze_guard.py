"""The freeze guard (streams/engine/freeze_guard.py): a process that did not run for
longer than its limit stops before its next write, whichever thread runs first after
the wake; one that kept running is never stopped. On the real broker:
tests/integration/test_broker_faults.py (SIGSTOP past the session timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.engine import freeze_guard
from streams.engine.freeze_guard import EXIT_FROZEN, FreezeGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock, stops: list[int]) -> FreezeGuard:
    return FreezeGuard(8.0, stop=stops.append, clock=clock)


def test_ticking_normally_it_never_stops() -> None:
    clock, stops = Clock(), []
    g = guard(clock, stops)
    for _ in range(200):  # 0.25 s ticks, and a loop busy for 7 s between two writes
        clock.now += 0.25
        g.beat()
    clock.now += 7.0
    g.check()
    assert stops == []


def test_a_write_first_after_a_freeze_stops_the_process(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    clock, stops = Clock(), []
    g = guard(clock, stops)
    clock.now += 20.0  # SIGSTOP for 20 s; the main thread runs before the guard's thread
    g.check()
    assert stops == [EXIT_FROZEN]
    assert "did not run for 20.0 s" in caplog.text
    g.beat()  # the thread's tick after it: no second stop
    assert stops == [EXIT_FROZEN]


def test_the_thread_first_after_a_freeze_stops_the_process() -> None:
    clock, stops = Clock(), []
    g = guard(clock, stops)
    clock.now += 8.5
    g.beat()
    assert stops == [EXIT_FROZEN]


def test_the_producer_and_the_outbox_check_before_they_write(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock, stops = Clock(), []
    g = guard(clock, stops)
    sent: list[Any] = []

    class Producer:
        async def send(self, *args: Any) -> str:
            sent.append(args)
            return "future"

    producer = Producer()
    g.install(producer)
    assert asyncio.run(producer.send("topic", b"k")) == "future" and stops == []
    clock.now += 30
    asyncio.run(producer.send("topic", b"k2"))
    assert stops == [EXIT_FROZEN]  # (os._exit would not have returned to send it)

    from streams.engine.outbox import Outbox

    stops.clear()
    g.stopped = False
    monkeypatch.setattr(freeze_guard, "_ACTIVE", g)
    box = Outbox(lambda: pytest.fail("no client may be reached"))
    box.add("t", 0, b"k", b"v")

    def stop(code: int) -> None:
        stops.append(code)
        raise SystemExit(code)

    g._stop = stop
    with pytest.raises(SystemExit):
        asyncio.run(box.send())
    assert stops == [EXIT_FROZEN]


def test_the_unsafe_switch_leaves_the_guard_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(freeze_guard.UNSAFE_ENV, "1")
    monkeypatch.setattr(freeze_guard, "_ACTIVE", None)
    assert freeze_guard.install(object(), 10, 2) is None
    freeze_guard.check()  # nothing installed: a no-op
