"""The API's plain parts without a broker: the live state fed with encoded snapshots,
the routes' errors, auth, cursors and server-sent events (a stand-in store answers
the ClickHouse routes; tests/integration/test_api.py runs the real one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from projections.message_log import MessageLogRow
from projections.metrics import CampaignCounts, summarize
from sinks.errors import SinkError
from sinks.sql import EXPORT_QUERY_COLUMNS
from streams.api import app as api_app
from streams.api.app import create_api
from streams.api.live import LiveState
from streams.api.timefmt import parse_instant
from streams.codecs.output_avro import encode_campaign_metrics
from streams.settings import ConfigurationError, Settings


def _metrics(campaign_id: str, sent: int, emitted_at: int = 1_790_000_000_000) -> bytes:
    counts = CampaignCounts(total={"sent": sent, "delivered": sent // 2},
                            variants={"A": {"sent": sent // 2}, "B": {"sent": sent - sent // 2}})
    return encode_campaign_metrics(summarize(campaign_id, counts), emitted_at)


def _row(n: int) -> MessageLogRow:
    return MessageLogRow(f"m-{n:03d}", "c1", "A", f"contact-{n}", None, "+15550000000",
                         "delivered", 1_790_000_000_000, 1_790_000_001_000, None, None, None,
                         "att", 1, 0, None, None, 0, None, 1_790_000_002_000, 3,
                         retry_of=f"m-{n - 1:03d}" if n % 10 == 9 else None,
                         human_click_count=0, country=("US", "DE", "ZZ")[n % 3],
                         failure_category=None)


class FakeStore:
    """The store interface's read methods over a list of rows."""

    def __init__(self, rows: int = 25) -> None:
        self.rows = [_row(n) for n in range(rows)]
        self.fail: SinkError | None = None

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def message_log(self, campaign_id: str, status: str | None = None, limit: int = 100,
                    after_message_id: str | None = None, **filters: str) -> list[MessageLogRow]:
        self._check()
        rows = [r for r in self.rows if after_message_id is None or r.message_id > after_message_id]
        wanted = {"status": status, **filters}
        rows = [r for r in rows if all(v is None or getattr(r, k) == v for k, v in wanted.items())]
        return rows[:limit]

    def as_of(self, campaign_id: str | None = None) -> int | None:
        self._check()
        return 1_790_000_002_000

    def iter_export_rows(self, campaign_id: str) -> Iterator[tuple[object, ...]]:
        self._check()
        for r in self.rows:  # as the store's export query gives them: segments last
            yield tuple(getattr(r, c) for c in EXPORT_QUERY_COLUMNS)

    def close(self) -> None:
        pass


def _settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def _run(test: Callable[[TestClient, LiveState, FakeStore], Awaitable[None]],
         settings: Settings | None = None) -> None:
    async def main() -> None:
        state = LiveState()
        state.apply_metrics(5, _metrics("c1", 100))
        store = FakeStore()
        app = create_api(settings or _settings(), state, store, None)  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            await test(client, state, store)

    asyncio.run(main())


def test_live_state_keeps_the_newest_snapshot_by_offset():
    state = LiveState()
    state.apply_metrics(7, _metrics("c1", 10))
    state.apply_metrics(3, _metrics("c1", 99))  # read again after a reconnect: older
    state.apply_metrics(8, _metrics("c2", 5))
    assert state.snapshots["c1"].offset == 7 and state.snapshots["c1"].body["sent"] == 10
    assert state.snapshots["c1"].body["as_of"] == "2026-09-21T14:13:20.000Z"
    assert "emitted_at" not in state.snapshots["c1"].body
    state.apply_metrics(9, b"not avro")
    assert state.rejected == 1 and set(state.snapshots) == {"c1", "c2"}


def test_a_subscription_holds_only_the_newest_snapshot():
    async def main() -> None:
        state = LiveState()
        subscription = state.subscribe("c1")
        for offset in range(1, 1001):  # a client that never reads
            state.apply_metrics(offset, _metrics("c1", offset))
        assert subscription.ready.is_set()
        newest = subscription.take()
        assert newest is not None and newest.offset == 1000
        assert subscription.take() is None and not subscription.ready.is_set()
        state.unsubscribe("c1", subscription)
        assert state.subscriber_count() == 0

    asyncio.run(main())


def test_routes_answer_errors_as_json():
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        response = await client.get("/api/v1/campaigns/nope")
        assert response.status == 404
        assert await response.json() == {"error": "unknown_campaign",
                                         "detail": "no metrics for campaign 'nope'"}
        for path in ("/api/v1/campaigns/c1/messages?limit=0",
                     "/api/v1/campaigns/c1/messages?limit=501",
                     "/api/v1/campaigns/c1/messages?cursor=WyJtLTAwMSJd!",
                     "/api/v1/campaigns/c1/messages?colour=red",
                     "/api/v1/campaigns/c1/timeseries?window=61",
                     "/api/v1/campaigns/c1/timeseries?variant=Z",
                     "/api/v1/campaigns/c1/timeseries?to=2026-01-01T00:00:00"):
            response = await client.get(path)
            assert response.status == 400, path
            assert set(await response.json()) == {"error", "detail"}
        assert (await client.get("/no/such/route")).status == 404
        store.fail = SinkError("the engine is away", retry_after=7)
        response = await client.get("/api/v1/campaigns/c1/messages")
        assert response.status == 503 and response.headers["Retry-After"] == "7"
        assert (await response.json())["error"] == "unavailable"
        assert (await client.get("/readyz")).status == 503

    _run(test)


def test_message_pages_cover_every_row_once():
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        seen: list[str] = []
        cursor = None
        while True:
            query = "?limit=10" + (f"&cursor={cursor}" if cursor else "")
            page = await (await client.get(f"/api/v1/campaigns/c1/messages{query}")).json()
            seen += [m["message_id"] for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [r.message_id for r in store.rows]
        assert page["items"][0]["sent_at"] == "2026-09-21T14:13:20.000Z"
        retried = (await (await client.get("/api/v1/campaigns/c1/messages?limit=10")).json())
        assert [m["retry_of"] for m in retried["items"]] == [None] * 9 + ["m-008"]

    _run(test)


def test_message_log_filters_reach_the_store_and_rows_carry_issue_22s_fields():
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        url = "/api/v1/campaigns/c1/messages?limit=100"
        de = await (await client.get(url + "&country=DE")).json()
        assert [m["message_id"] for m in de["items"]] == [
            r.message_id for r in store.rows if r.country == "DE"]
        assert {(m["country"], m["human_clicks"], m["failure_category"])
                for m in de["items"]} == {("DE", 0, None)}
        unknown = await client.get(url + "&status=unknown&failure_category=temporary")
        assert unknown.status == 200 and (await unknown.json())["items"] == []
        bad = await client.get(url + "&region=DE")
        assert bad.status == 400  # only the documented parameters

    _run(test)


def test_the_ab_route_counts_first_attempts_only():
    """domain.md 3b: a retry moves the summary's counts, not the A/B statistics."""
    first = {"sent": 50, "delivered": 40, "failed": 10, "unique_link_clicks": 5}
    retries = {"sent": 8, "delivered": 8, "unique_link_clicks": 3}

    def bag(with_retries: bool) -> dict[str, int]:
        if not with_retries:
            return dict(first)
        return {**{k: first.get(k, 0) + retries.get(k, 0) for k in first | retries},
                "retries": 8, **{f"retry:{k}": v for k, v in retries.items()}}

    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        answers = []
        for offset, with_retries in ((6, False), (7, True)):
            counts = CampaignCounts(total=bag(with_retries),
                                    variants={"A": bag(with_retries), "B": dict(first)})
            state.apply_metrics(offset, encode_campaign_metrics(summarize("c1", counts),
                                                                1_790_000_000_000 + offset))
            summary = await (await client.get("/api/v1/campaigns/c1")).json()
            assert summary["variants"]["A"]["sent"] == (58 if with_retries else 50)
            answers.append(await (await client.get("/api/v1/campaigns/c1/ab")).json())
        assert answers[0]["variants"] == answers[1]["variants"]
        assert answers[1]["variants"][0]["counts"]["sent"] == 50  # A's first attempts
        assert answers[0]["comparisons"] == answers[1]["comparisons"]

    _run(test)


def test_a_token_guards_every_api_route_but_not_health():
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        assert (await client.get("/api/v1/campaigns")).status == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/api/v1/openapi.json", headers=wrong)).status == 401
        right = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/api/v1/campaigns", headers=right)).status == 200
        assert (await client.get("/healthz")).status == 200
        document = await (await client.get("/api/v1/openapi.json", headers=right)).json()
        assert document["security"] == [{"bearer": []}]

    _run(test, _settings(api_token="s3cret"))  # noqa: S106 - a test value


def test_server_sent_events_resume_and_heartbeat(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(api_app, "HEARTBEAT_SECONDS", 0.05)

    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        response = await client.get("/api/v1/campaigns/c1/events")
        assert response.headers["Content-Type"] == "text/event-stream"
        text = await _read_until(response, b"\n\n", skip_retry=True)
        assert text.startswith("id: 5\nevent: summary\ndata: ")
        assert json.loads(text.split("data: ", 1)[1])["sent"] == 100
        state.apply_metrics(6, _metrics("c1", 120))
        text = await _read_until(response, b"\n\n")
        assert text.startswith("id: 6\n")
        assert (await _read_until(response, b"\n\n")).startswith(": keep-alive")
        response.close()
        # up to date: only heartbeats; behind: the current state at once
        response = await client.get("/api/v1/campaigns/c1/events",
                                    headers={"Last-Event-ID": "6"})
        assert (await _read_until(response, b"\n\n", skip_retry=True)).startswith(": keep")
        response.close()
        response = await client.get("/api/v1/campaigns/c1/events",
                                    headers={"Last-Event-ID": "2"})
        assert (await _read_until(response, b"\n\n", skip_retry=True)).startswith("id: 6\n")
        response.close()

    _run(test)


async def _read_until(response: Any, end: bytes, skip_retry: bool = False) -> str:
    while True:
        data = b""
        while not data.endswith(end):
            data += await asyncio.wait_for(response.content.readline(), 5)
        text = data.decode()
        if skip_retry and text.startswith("retry:"):
            continue
        return text


def test_a_client_that_stops_reading_is_disconnected(monkeypatch: pytest.MonkeyPatch):
    """A write that stays blocked (the client's socket is full) ends the stream."""
    monkeypatch.setattr(api_app, "SLOW_CLIENT_SECONDS", 0.1)

    class Blocked(web.StreamResponse):
        async def write(self, data: bytes) -> None:
            await asyncio.sleep(3600)

    async def main() -> None:
        state = LiveState()
        state.apply_metrics(1, _metrics("c1", 1))
        app = create_api(_settings(), state, FakeStore(), None)  # type: ignore[arg-type]
        monkeypatch.setattr(api_app.web, "StreamResponse", Blocked)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/v1/campaigns/c1/events")
            await asyncio.wait_for(response.read(), 5)  # the server ended it
        assert state.subscriber_count() == 0

    asyncio.run(main())


def test_instants_are_iso_with_an_offset_or_epoch_ms():
    assert parse_instant("2026-09-21T14:13:20Z") == 1_790_000_000_000
    assert parse_instant("2026-09-21T16:13:20.5+02:00") == 1_790_000_000_500
    assert parse_instant("1790000000000") == 1_790_000_000_000
    for bad in ("2026-09-21T14:13:20", "yesterday", ""):
        with pytest.raises(ValueError):
            parse_instant(bad)


def test_stopping_the_service_ends_open_streams_cleanly(caplog: pytest.LogCaptureFixture):
    async def main() -> None:
        state = LiveState()
        state.apply_metrics(1, _metrics("c1", 1))
        app = create_api(_settings(), state, FakeStore(), None)  # type: ignore[arg-type]
        server = TestServer(app)
        client = TestClient(server)
        await client.start_server()
        response = await client.get("/api/v1/campaigns/c1/events")
        await _read_until(response, b"\n\n", skip_retry=True)
        await asyncio.wait_for(server.runner.shutdown(), 5)  # on_shutdown: streams end
        assert (await asyncio.wait_for(response.content.read(), 5)) == b""
        await client.close()
        assert state.subscriber_count() == 0

    asyncio.run(main())
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_the_export_has_a_cost_column_priced_by_the_apis_prices_file(tmp_path: Path):
    """export.csv: domain.md 4's columns, then issue 22's; cost = segments x the price
    of the message's country with CA_PRICES_FILE, empty without (control)."""
    prices = tmp_path / "prices.csv"
    prices.write_text("country,price_per_segment,currency\n*,0.05,EUR\nDE,0.0079,EUR\n")
    got: dict[str, list[list[str]]] = {}

    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        response = await client.get("/api/v1/campaigns/c1/export.csv")
        assert response.status == 200
        got[str(len(got))] = [line.split(",") for line in (await response.text()).splitlines()]

    _run(test, _settings(prices_file=prices))
    _run(test)
    priced, unpriced = got["0"], got["1"]
    assert priced[0][8:] == ["human_click_count", "country", "failure_category", "cost"]
    rows = [_row(n) for n in range(25)]
    assert [line[-1] for line in priced[1:]] == [
        "0.0079" if r.country == "DE" else "0.05" for r in rows]  # 1 segment each
    assert [line[9] for line in priced[1:]] == [r.country for r in rows]
    assert {line[-1] for line in unpriced[1:]} == {""}


def test_a_bad_prices_file_stops_the_api_at_start(tmp_path: Path):
    bad = tmp_path / "prices.csv"
    bad.write_text("country,price_per_segment,currency\nUS,0.01,USD\n")  # no default row
    with pytest.raises(ConfigurationError, match="default"):
        create_api(_settings(prices_file=bad), LiveState(), FakeStore(), None)  # type: ignore[arg-type]
