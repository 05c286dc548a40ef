"""The commit watchdog names where a slow commit waits, and stays quiet otherwise."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from streams.engine.commit_watchdog import CommitWatchdog
from streams.telemetry import Telemetry
from tests.waiting import wait_until_async


async def _broker_never_answers() -> None:
    await asyncio.sleep(3600)


def _watched(commit: Any) -> tuple[CommitWatchdog, Any, Telemetry]:
    consumer = SimpleNamespace(commit=commit)
    telemetry = Telemetry()
    dog = CommitWatchdog(SimpleNamespace(consumer=consumer), telemetry,  # type: ignore[arg-type]
                         threshold=0.05)
    dog.install()
    return dog, consumer, telemetry


def test_a_stuck_commit_is_reported_once_with_its_await_chain(
        caplog: pytest.LogCaptureFixture) -> None:
    async def slow_commit() -> bool:
        await _broker_never_answers()
        return True

    async def scenario() -> None:
        dog, consumer, telemetry = _watched(slow_commit)
        task = asyncio.ensure_future(consumer.commit())

        def reported() -> float:  # what the app's timer does every few seconds
            dog.check()
            return telemetry.stalled_commits._value.get()

        await wait_until_async(reported, "the stuck commit to be reported", 5, 0.01)
        dog.check()  # once per commit
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert telemetry.stalled_commits._value.get() == 1
        # at least as long as check() saw it running
        assert telemetry.commit_seconds._sum.get() >= dog.threshold

    with caplog.at_level(logging.WARNING, logger="streams.engine.commit_watchdog"):
        asyncio.run(scenario())
    stuck = [r.getMessage() for r in caplog.records if "running for" in r.getMessage()]
    assert len(stuck) == 1
    assert "_broker_never_answers" in stuck[0] and "slow_commit" in stuck[0]


def test_a_quick_commit_is_only_timed(caplog: pytest.LogCaptureFixture) -> None:
    async def quick_commit() -> bool:
        await asyncio.sleep(0)
        return True

    async def scenario() -> None:
        dog, consumer, telemetry = _watched(quick_commit)
        assert await consumer.commit() is True
        await asyncio.sleep(0.1)
        dog.check()
        assert telemetry.stalled_commits._value.get() == 0
        assert telemetry.commit_seconds._sum.get() < 0.05

    with caplog.at_level(logging.WARNING, logger="streams.engine.commit_watchdog"):
        asyncio.run(scenario())
    assert not caplog.records


def test_the_report_says_what_the_producer_still_holds() -> None:
    """Read from a real (unstarted) aiokafka producer holding one pending batch."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    from streams.engine.commit_watchdog import producer_state

    async def scenario() -> str:
        client = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started
        for value in (b"a", b"b"):
            await client._message_accumulator.add_message(
                TopicPartition("t", 1), None, value, timeout=1)
        client._sender._in_flight.add(7)
        buffer = SimpleNamespace(size=3, _handing_over=1)
        try:
            return producer_state(SimpleNamespace(producer=SimpleNamespace(
                buffer=buffer, _producer=client)))
        finally:
            client._sender._in_flight.clear()
            await client.stop()

    state = asyncio.run(scenario())
    assert state.startswith("buffer 3, handing over 1, aiokafka batches 1 (2 records, oldest ")
    assert "TopicPartition(topic='t', partition=1)" in state
    assert state.endswith("produce requests in flight to brokers [7]")
    # whatever it is given, it describes and never raises
    assert producer_state(SimpleNamespace()).startswith("unknown (AttributeError")
