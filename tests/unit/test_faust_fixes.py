"""Fix 3 of ``streams/faust_fixes.py`` on Faust's own ``ProducerBuffer``.

The buffer's records go to a publisher that takes longer than Faust's 0.1 s
patience per record (as a busy event loop or a full client queue does).
Faust's flush then returns with records still waiting, so a commit after it
could cover table writes that were never sent; the fixed flush returns only
when every record was handed over.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer

from streams import faust_fixes

RECORDS = 4
SLOW = 0.15  # seconds per record, more than Faust's 0.1 s wait


class SlowChannel:
    def __init__(self) -> None:
        self.published: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(SLOW)
        self.published.append(fut.n)


async def _flush_with_slow_publisher(flush: Any) -> tuple[int, int]:
    """(records still buffered or on their way when flush returned, records published)."""
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    channel = SlowChannel()
    await buffer.start()
    try:
        for n in range(RECORDS):
            buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=channel)))
        await asyncio.sleep(0)
        await flush(buffer)
        not_handed_over = RECORDS - len(channel.published)
        return not_handed_over, len(channel.published)
    finally:
        for _ in range(100):  # let the rest go out, so the buffer can stop
            if len(channel.published) == RECORDS:
                break
            await asyncio.sleep(SLOW)
        await buffer.stop()


def test_faust_flush_returns_with_records_still_waiting() -> None:
    """Negative control: Faust's own flush (saved before the fix) gives up early."""
    waiting, _ = asyncio.run(_flush_with_slow_publisher(_ORIGINAL_FLUSH))
    assert waiting > 0


def test_fixed_flush_returns_only_when_everything_was_handed_over() -> None:
    faust_fixes.install()
    waiting, published = asyncio.run(_flush_with_slow_publisher(ProducerBuffer.flush))
    assert (waiting, published) == (0, RECORDS)


_ORIGINAL_FLUSH = faust_fixes._original_flush
