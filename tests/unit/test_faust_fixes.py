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


# Fix 4: never commit past an offset that was not acknowledged.

def _consumer(committed: int | None, acked: list[int], start: int | None) -> Any:
    from collections import defaultdict

    tp = ("in", 0)
    consumer = SimpleNamespace(
        _acked=defaultdict(list, {tp: list(acked)}),
        _acked_index=defaultdict(set, {tp: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {tp: committed}),
        _gap=defaultdict(lambda: None),
        _thread=SimpleNamespace(_start_offsets={} if start is None else {tp: start}),
    )
    return consumer, tp


def test_faust_commits_past_one_missing_head_offset_and_past_any_without_a_commit() -> None:
    """The negative control: Faust's own choice of the offset to commit."""
    original = faust_fixes._new_offset
    consumer, tp = _consumer(100, [101, 102, 103], None)  # 100 was never acknowledged
    assert original(consumer, tp) == 104
    consumer, tp = _consumer(None, [5, 6, 7], 0)  # 0-4 never acknowledged, no commit yet
    assert original(consumer, tp) == 8


def test_fixed_choice_waits_for_the_head_and_still_moves_on_a_full_run() -> None:
    fixed = faust_fixes._new_offset_without_repeats
    consumer, tp = _consumer(100, [101, 102, 103], None)
    assert fixed(consumer, tp) is None
    consumer, tp = _consumer(None, [5, 6, 7], 0)
    assert fixed(consumer, tp) is None
    consumer, tp = _consumer(0, [0, 1, 2], 0)  # committed 0: Faust keeps it as falsy
    assert fixed(consumer, tp) == 3
    consumer, tp = _consumer(100, [100, 101, 101, 102, 105], None)
    assert fixed(consumer, tp) == 103
    consumer, tp = _consumer(None, [7, 8], 7)  # the log starts at 7 (retention)
    assert fixed(consumer, tp) == 9
