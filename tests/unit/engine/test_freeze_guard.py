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

        def _new_producer(self) -> None:
            pytest.fail("not used here")

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


def test_batches_handed_over_before_a_freeze_are_not_sent_after_it() -> None:
    """A batch already in aiokafka's accumulator at SIGSTOP: on waking, the client's
    sender task may run before the guard's thread; it checks before each request."""
    from aiokafka import AIOKafkaProducer

    clock, stops = Clock(), list[int]()
    g = guard(clock, stops)
    requests: list[tuple[int, list[str]]] = []
    made: list[AIOKafkaProducer] = []

    def stop(code: int) -> None:
        stops.append(code)
        raise SystemExit(code)

    def client() -> AIOKafkaProducer:
        made.append(AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))

        async def send_request(node_id: int, batches: dict[str, str]) -> None:
            requests.append((node_id, list(batches)))  # where the request would leave

        made[-1]._sender._send_produce_req = send_request
        return made[-1]

    class FaustProducer:
        def __init__(self, started: AIOKafkaProducer | None) -> None:
            self._producer = started

        async def send(self, *args: Any) -> None:
            pytest.fail("not used here")

        def _new_producer(self) -> AIOKafkaProducer:
            return client()

    async def run() -> None:
        for started in (None, client()):  # the guard installed before or after start
            stops.clear()
            requests.clear()
            g._stop, g.stopped, clock.now = stops.append, False, 100.0
            faust_producer = FaustProducer(started)
            g.install(faust_producer)
            sender = (started or faust_producer._new_producer())._sender
            await sender._send_produce_req(1, {"metrics-0": "batch"})
            assert requests == [(1, ["metrics-0"])] and stops == []
            clock.now += 30  # frozen with a second batch drained but not sent
            g._stop = stop
            with pytest.raises(SystemExit):
                await sender._send_produce_req(1, {"metrics-0": "stale"})
            assert stops == [EXIT_FROZEN] and requests == [(1, ["metrics-0"])]
        for each in made:
            await each.stop()

    asyncio.run(run())


def test_the_unsafe_switch_leaves_the_guard_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(freeze_guard.UNSAFE_ENV, "1")
    monkeypatch.setattr(freeze_guard, "_ACTIVE", None)
    assert freeze_guard.install(object(), 10, 2) is None
    freeze_guard.check()  # nothing installed: a no-op
