"""No commit after a record that was never delivered.

Faust's flush before a commit waits for every delivery to *end*, delivered or
not, and nobody reads a failed delivery's future: its input was committed
without its write. The guard watches every delivery future of the worker's
producer and stops the process at the first failure (exit code
``EXIT_DELIVERY_FAILED``), as a SIGKILL would: nothing after it is committed, and
the restarted worker processes that input again. A cancelled delivery is not a
failure. ``CA_UNSAFE_DISABLE_DELIVERY_GUARD=1`` (tests only) leaves failures
unread, as Faust does. Why: docs/faust-hardening.md#delivery-guard.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from streams.settings import unsafe_switch_on

log = logging.getLogger(__name__)

EXIT_DELIVERY_FAILED = 70  # EX_SOFTWARE
UNSAFE_ENV = "CA_UNSAFE_DISABLE_DELIVERY_GUARD"


def guard_enabled() -> bool:
    return not unsafe_switch_on(UNSAFE_ENV)


class DeliveryGuard:
    """Reads the outcome of every delivery; stops the process at the first failure."""

    def __init__(self, stop: Callable[[int], Any] = os._exit) -> None:
        self._stop = stop
        self.failures = 0

    def done(self, future: asyncio.Future[Any]) -> None:
        """A delivery future's done-callback."""
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            return
        self.failures += 1
        if self.failures > 1:
            return  # already stopping
        log.critical("a produced record was not delivered (%r): the worker stops now, before "
                     "a commit can cover the input that produced it; restarted, it "
                     "processes that input again", error)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._stop(EXIT_DELIVERY_FAILED)

    def install(self, producer: Any) -> None:
        """Watch every record ``producer`` (Faust's) sends from now on."""
        send = producer.send
        done = self.done

        async def watched_send(*args: Any, **kwargs: Any) -> Any:
            future = await send(*args, **kwargs)
            future.add_done_callback(done)
            return future

        producer.send = watched_send
