"""Log pages read ClickHouse at most ``STORE_CALLS`` at once; one more waits up to
``STORE_WAIT_SECONDS`` and then gets 503 with Retry-After, and a request whose client
has gone reads nothing (under overload the queue held reads nobody waited for)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from streams.api import app as api
from streams.api.live import LiveState
from tests.unit.api.test_app import FakeStore, _metrics, _settings


class BlockingStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.reads = 0

    def message_log(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        self.release.wait(10)
        return super().message_log(*args, **kwargs)


def three_pages(monkeypatch: Any, calls: int) -> tuple[list[int], list[str | None], int]:
    """Three pages at once while the store holds every read until 0.5 s have passed or
    one answer came, then a fourth page: the statuses in the order the answers came,
    their Retry-After headers, and the reads made."""
    monkeypatch.setattr(api, "STORE_CALLS", calls)
    monkeypatch.setattr(api, "STORE_WAIT_SECONDS", 0.2)
    store = BlockingStore()
    out: list[tuple[int, str | None]] = []

    async def main() -> None:
        state = LiveState()
        state.apply_metrics(5, _metrics("c1", 100))
        # the read ahead off: it would make the three identical pages one read
        app = api.create_api(_settings(page_cache_seconds=0.0), state, store,  # type: ignore[arg-type]
                             None)
        async with TestClient(TestServer(app)) as client:
            async def page() -> None:
                response = await client.get("/api/v1/campaigns/c1/messages")
                await response.read()
                out.append((response.status, response.headers.get("Retry-After")))

            tasks = [asyncio.create_task(page()) for _ in range(3)]
            await asyncio.wait(tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            store.release.set()
            await asyncio.gather(*tasks)
            await page()  # every slot is back

    asyncio.run(main())
    return [s for s, _ in out], [r for _, r in out], store.reads


def test_a_read_past_the_slots_is_refused_with_retry_after(monkeypatch: Any) -> None:
    statuses, retry, reads = three_pages(monkeypatch, calls=2)
    assert statuses == [503, 200, 200, 200]  # the third first: it waited 0.2 s, no more
    assert retry[0] is not None and int(retry[0]) >= 1
    assert reads == 3


def test_negative_control_with_a_slot_each_all_are_answered(monkeypatch: Any) -> None:
    statuses, _, reads = three_pages(monkeypatch, calls=3)
    assert statuses == [200, 200, 200, 200]
    assert reads == 4


def test_a_request_whose_client_has_gone_reads_nothing() -> None:
    called: list[bool] = []

    async def main() -> None:
        for closing in (True, False):  # the control: a client still there is read for
            request: Any = SimpleNamespace(
                app={api.STORE: object(), api.STORE_SLOTS: asyncio.Semaphore(1)},
                transport=SimpleNamespace(is_closing=lambda closing=closing: closing))
            try:
                await api._store(request, lambda store, c=closing: called.append(c))
            except api.ApiError as exc:
                assert (exc.status, closing) == (503, True)

    asyncio.run(main())
    assert called == [False]
