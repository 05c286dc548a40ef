"""A log page's ``as_of`` is read from the store at most once per campaign per
``AS_OF_SECONDS`` (it doubled the engine's queries per page under load)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from streams.api import app as api
from streams.api.live import LiveState
from tests.unit.api.test_app import FakeStore, _metrics, _settings


class CountingStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.as_of_calls: list[str | None] = []
        self.newest = 1_790_000_002_000

    def as_of(self, campaign_id: str | None = None) -> int | None:
        self.as_of_calls.append(campaign_id)
        return self.newest


def pages(monkeypatch: Any, clock: list[float]) -> tuple[list[str], CountingStore]:
    """Five message-log pages of c1 and one of c2 at the clock's times."""
    monkeypatch.setattr(api, "as_of_clock", lambda: clock[0])
    store = CountingStore()
    seen: list[str] = []

    async def main() -> None:
        state = LiveState()
        state.apply_metrics(5, _metrics("c1", 100))
        state.apply_metrics(6, _metrics("c2", 10))
        # the read ahead off: a page it answers reads no as_of at all (test_log_reads)
        app = api.create_api(_settings(page_cache_seconds=0.0), state, store,  # type: ignore[arg-type]
                             None)
        async with TestClient(TestServer(app)) as client:
            for at, campaign in ((0.0, "c1"), (0.5, "c1"), (0.9, "c2"), (0.99, "c1"),
                                 (1.0, "c1"), (1.5, "c1")):
                clock[0] = at
                store.newest += 1000  # the sinks write on meanwhile
                response = await client.get(f"/api/v1/campaigns/{campaign}/messages")
                assert response.status == 200
                seen.append((await response.json())["as_of"])

    asyncio.run(main())
    return seen, store


def test_as_of_is_read_once_per_campaign_per_second(monkeypatch: Any) -> None:
    seen, store = pages(monkeypatch, [0.0])
    assert store.as_of_calls == ["c1", "c2", "c1"]  # at 0 s, c2 at 0.9 s, c1 again at 1 s
    assert seen[0] == seen[1] == seen[3] != seen[4] == seen[5]


def test_negative_control_without_the_cache_every_page_reads_it(monkeypatch: Any) -> None:
    monkeypatch.setattr(api, "AS_OF_SECONDS", 0.0)
    _, store = pages(monkeypatch, [0.0])
    assert len(store.as_of_calls) == 6
