"""Kafka clients' repeated warnings, once per window with a count, not once per try.

While a broker is away, aiokafka logs each failed connection, fetch and heartbeat of
every client, several times a second: one worker logged about 8,600 lines in 32 s of
a broker outage (tests/integration/test_broker_faults.py), burying the line that
says what the process waits for. A warning (or worse) of an ``aiokafka`` logger goes
out the first time its message template is seen in a window; the rest of the
window's are counted, and the next one that goes out says how many there were.
Debug and info records are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 10.0
_MAX_KEYS = 1_000  # templates, not formatted lines: a handful in practice


@dataclass(slots=True)
class _Seen:
    since: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    def __init__(self, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str, object], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self.window:
            seen.suppressed += 1
            return False
        if len(self._seen) >= _MAX_KEYS:
            self._seen.clear()
        self._seen[key] = _Seen(now)
        if seen is not None and seen.suppressed:
            # appended to the template, the arguments untouched (handlers format the
            # record later, some in their own way); the suffix has no % in it
            record.msg = (f"{record.msg} ({seen.suppressed} more like this in "
                          f"the {self.window:g} s before)")
        return True


_FILTER = RepeatFilter()


def install() -> RepeatFilter:
    """The filter on every ``aiokafka`` logger (a logger's filters do not apply to its
    children's records, so each gets it); idempotent."""
    import aiokafka.consumer.fetcher  # noqa: F401  (modules make their loggers on import)
    import aiokafka.consumer.group_coordinator  # noqa: F401
    import aiokafka.producer.sender  # noqa: F401

    names = ["aiokafka", *(name for name in logging.root.manager.loggerDict
                           if name.startswith("aiokafka."))]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER
