"""A worker that was frozen past its session (SIGSTOP, a paused VM) stops before it writes.

While it was frozen the group gave its partitions to another worker. On waking, its
event loop carries on with what it held (a fetched batch, views without the new
owner's work) and nothing fences its records without transactions: its snapshots
were seen setting campaign metrics back for half a second (issue 19 item 3c,
tests/integration/test_broker_faults.py), and its changelog writes could land after
the new owner's. So a thread ticks every ``tick`` seconds, and a gap longer than
``limit`` (the session timeout less a heartbeat interval) means the process did not
run long enough to lose its membership: it exits at once (``EXIT_FROZEN``), and so
does any write handed to the producer in that state before the thread has run. A
crash at any point is what exactness is built for; restarted, the worker joins anew.
``CA_UNSAFE_DISABLE_FREEZE_GUARD=1`` (tests only) leaves it out. Why:
docs/faust-hardening.md#freeze-guard.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from streams.settings import unsafe_switch_on

log = logging.getLogger(__name__)

EXIT_FROZEN = 75  # EX_TEMPFAIL: start it again
UNSAFE_ENV = "CA_UNSAFE_DISABLE_FREEZE_GUARD"


class FreezeGuard:
    """Stops the process (``stop``) once it has not run for more than ``limit`` seconds."""

    def __init__(self, limit: float, tick: float = 0.25,
                 stop: Callable[[int], Any] = os._exit,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.tick = tick
        self._stop = stop
        self._clock = clock
        self._last = clock()
        self.stopped = False

    def check(self) -> None:
        """Call before any write: stops the process if it was frozen past ``limit``."""
        gap = self._clock() - self._last
        if gap > self.limit and not self.stopped:
            self.stopped = True
            log.critical("this worker did not run for %.1f s (frozen: SIGSTOP, a paused VM), "
                         "longer than its group session allows; its partitions have moved, "
                         "so it stops now, before it writes anything it held; restarted, "
                         "it joins the group again", gap)
            for handler in logging.getLogger().handlers:
                handler.flush()
            self._stop(EXIT_FROZEN)

    def beat(self) -> None:
        """One tick of the watching thread: check, then note that the process ran."""
        self.check()
        self._last = self._clock()

    def start(self) -> None:
        def run() -> None:
            while not self.stopped:
                time.sleep(self.tick)
                self.beat()

        threading.Thread(target=run, name="freeze-guard", daemon=True).start()

    def install(self, producer: Any) -> None:
        """Check before every record ``producer`` (Faust's) is given, and before its
        aiokafka client sends any batch to a broker: batches handed over just before
        the freeze still sit in the accumulator on waking, and the client's sender
        task may run before the guard's thread."""
        send = producer.send
        new_producer = producer._new_producer
        check = self.check

        async def checked_send(*args: Any, **kwargs: Any) -> Any:
            check()
            return await send(*args, **kwargs)

        def checked_new_producer(*args: Any, **kwargs: Any) -> Any:
            client = new_producer(*args, **kwargs)
            guard_sender(client, check)
            return client

        producer.send = checked_send
        producer._new_producer = checked_new_producer
        if getattr(producer, "_producer", None) is not None:  # already started
            guard_sender(producer._producer, check)


def guard_sender(client: Any, check: Callable[[], None]) -> None:
    """Make aiokafka ``client``'s sender call ``check`` before each produce request."""
    sender = client._sender
    send_request = sender._send_produce_req

    async def checked_send_request(node_id: int, batches: Any) -> Any:
        check()
        return await send_request(node_id, batches)

    sender._send_produce_req = checked_send_request


_ACTIVE: FreezeGuard | None = None  # process-wide on purpose: a freeze stops every thread


def check() -> None:
    """``FreezeGuard.check`` of the process's guard, if one is installed (the outbox)."""
    if _ACTIVE is not None:
        _ACTIVE.check()


def install(producer: Any, session_timeout: float, heartbeat_interval: float
            ) -> FreezeGuard | None:
    """Start the process's guard for a worker whose group session lasts
    ``session_timeout`` seconds, heartbeating every ``heartbeat_interval``."""
    global _ACTIVE
    if unsafe_switch_on(UNSAFE_ENV):
        log.warning("%s is set: a worker frozen past its session writes what it held "
                    "(tests only)", UNSAFE_ENV)
        return None
    guard = FreezeGuard(max(session_timeout - heartbeat_interval, 1.0))
    guard.install(producer)
    guard.start()
    _ACTIVE = guard
    return guard
