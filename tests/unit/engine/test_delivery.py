"""The delivery guard: a record that was not delivered stops the worker at once; a
delivered or cancelled one does not."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from streams.engine.delivery_guard import EXIT_DELIVERY_FAILED, DeliveryGuard


class _Producer:
    """Faust's producer surface the guard wraps: ``send`` returns a delivery future."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None,
                   headers: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def _scenario(outcomes: list[str]) -> list[int]:
    stops: list[int] = []

    async def run() -> None:
        producer = _Producer()
        DeliveryGuard(stop=stops.append).install(producer)
        for outcome in outcomes:
            future = await producer.send("t", b"k", b"v", 0, None, None)
            if outcome == "delivered":
                future.set_result("metadata")
            elif outcome == "cancelled":
                future.cancel()
            else:
                future.set_exception(RuntimeError(outcome))
        await asyncio.sleep(0)  # done-callbacks run on the next turn of the loop

    asyncio.run(run())
    return stops


def test_delivered_and_cancelled_records_change_nothing() -> None:
    assert _scenario(["delivered", "cancelled", "delivered"]) == []


def test_the_first_failed_delivery_stops_the_process_once(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.CRITICAL, logger="streams.engine.delivery_guard"):
        stops = _scenario(["delivered", "MessageSizeTooLargeError", "delivered", "timeout"])
    assert stops == [EXIT_DELIVERY_FAILED]
    [record] = caplog.records
    assert "MessageSizeTooLargeError" in record.getMessage()

