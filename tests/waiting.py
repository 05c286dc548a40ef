"""One way for a test to wait: poll a check until it returns something truthy.

``wait_until`` returns that value, or fails (``AssertionError``) after ``timeout``
seconds with a message that names what it waited for and the check's last value or
exception. An exception from the check counts as "not yet" (a server still starting,
a group still forming); ``pytest.fail`` inside the check still fails at once.
``await wait_until_async(...)`` is the same for a check that may be a coroutine, and
sleeps without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_NOTHING = object()


class _Last:
    """The check's last outcome, for the failure message."""

    def __init__(self) -> None:
        self.value: object = _NOTHING
        self.error: Exception | None = None

    def failure(self, what: str, timeout: float, explain: Callable[[], str] | None
                ) -> AssertionError:
        if self.error is not None:
            last = f"last exception: {self.error!r}"
        elif self.value is _NOTHING:
            last = "the check never ran"
        else:
            last = f"last value: {self.value!r}"
        message = f"timed out after {timeout:g} s waiting for {what}; {last}"
        if explain is not None:
            message += "\n" + explain()
        return AssertionError(message)


def wait_until(check: Callable[[], T], what: str, timeout: float, interval: float = 0.5,
               *, explain: Callable[[], str] | None = None) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy,
    and return that. ``explain`` adds details (logs) to a timeout's message."""
    deadline = time.monotonic() + timeout
    last = _Last()
    while True:
        try:
            value = check()
        except Exception as exc:  # not ready yet: try again, and say so if it lasts
            last.error = exc
        else:
            if value:
                return value
            last.value, last.error = value, None
        if time.monotonic() >= deadline:
            raise last.failure(what, timeout, explain) from last.error
        time.sleep(interval)


async def wait_until_async(check: Callable[[], T | Awaitable[T]], what: str, timeout: float,
                           interval: float = 0.5, *,
                           explain: Callable[[], str] | None = None) -> T:
    """``wait_until`` inside an event loop; ``check`` may return an awaitable."""
    deadline = time.monotonic() + timeout
    last = _Last()
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:  # not ready yet: try again, and say so if it lasts
            last.error = exc
        else:
            if value:
                return value  # type: ignore[return-value]
            last.value, last.error = value, None
        if time.monotonic() >= deadline:
            raise last.failure(what, timeout, explain) from last.error
        await asyncio.sleep(interval)
