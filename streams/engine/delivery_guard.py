"""No commit after a record that was never delivered.

Every record the worker produces (table changelogs, hand-offs, forwards,
dead letters, snapshots) goes to the producer client, which delivers it in the
background and reports the outcome on a future. Faust's commit flushes the
producer first and then commits the input offsets, but a flush only waits for
the deliveries to *end*: a record the broker refused (too large, topic gone,
authorisation) or that ran out of retries ends too, and nobody read its
future. The input that produced it was then committed without its write: a
table change lost on the next restore, a hand-off the campaign stage never
sees, with every later commit building on it.

The guard watches every delivery future of the worker's producer. The first
failure stops the process at once (exit code ``EXIT_DELIVERY_FAILED``) — the
same as a SIGKILL, which every stage is built to survive (streams/engine/tables.py):
nothing after the failure is committed, and the restarted worker processes the
uncommitted input again. A cancelled delivery (the producer closing after the
final commit) is not a failure: its input was not committed.

The producer's request timeout (``CA_PRODUCER_REQUEST_TIMEOUT``, 60 s; Faust's
default is 20 minutes) bounds how long a delivery can hang before it fails, so
a produce request that never gets an answer stalls the worker (and its
commits) for at most that long instead of twenty minutes.

``CA_UNSAFE_DISABLE_DELIVERY_GUARD=1`` (tests only) leaves failures unread, as
Faust does, so the tests can show what the guard prevents.
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
