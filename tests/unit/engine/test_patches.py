"""Fix 3 of ``streams/engine/patches.py`` on Faust's own ``ProducerBuffer``.

The buffer's records go to a publisher that takes longer than Faust's 0.1 s
patience per record (as a busy event loop or a full client queue does).
Faust's flush then returns with records still waiting, so a commit after it
could cover table writes that were never sent; the fixed flush returns only
when every record was handed over.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer

from streams.engine import patches as faust_fixes
from tests.waiting import wait_until_async

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
        await wait_until_async(lambda: len(channel.published) == RECORDS,
                               "the rest to go out, so the buffer can stop", 100 * SLOW, SLOW)
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


def _worker_consumer_wait(app_wait: int | None, fixed: bool, data_dir: Path) -> int:
    """``fetch_max_wait_ms`` of the consumer Faust's consumer thread creates."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from streams.app import create_app
    from streams.settings import Settings

    async def create() -> int:
        app = create_app(Settings(data_dir=data_dir))
        if app_wait is None:
            del app.fetch_max_wait_ms
        else:
            app.fetch_max_wait_ms = app_wait
        thread = app.consumer._thread
        create_consumer = (faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
                           if fixed else faust_fixes._create_worker_consumer)
        consumer = create_consumer(thread, app.transport)
        await consumer.stop()  # never started: nothing to close but its object
        return consumer._fetch_max_wait_ms

    return asyncio.run(create())


def test_the_worker_consumer_waits_as_long_as_the_settings_say(tmp_path: Path) -> None:
    """Fix 6: ``CA_FETCH_MAX_WAIT_MS`` (here 37), not Faust's hard-coded 1500."""
    assert _worker_consumer_wait(37, True, tmp_path) == 37
    assert _worker_consumer_wait(None, True, tmp_path) == faust_fixes.FAUST_FETCH_MAX_WAIT_MS


def test_faust_creates_its_consumer_with_a_fixed_wait(tmp_path: Path) -> None:
    """Negative control: Faust's own method ignores the app's setting."""
    assert _worker_consumer_wait(37, False, tmp_path) == faust_fixes.FAUST_FETCH_MAX_WAIT_MS
