"""POST /api/v1/campaigns/{id}/retries without a broker: what is refused before any
Kafka or ClickHouse call (415 without a JSON content type, so a cross-site form cannot
trigger it; 400 for bad bodies; 401 without the token; 404 for an unknown campaign),
and a valid body reaching the request with its fields."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from projections.errors import CampaignAnalyticsError
from streams.api import app as api_app
from streams.api.live import LiveState
from streams.api.retries import RetryAnswer, RetryConflictError
from tests.unit.api.test_app import FakeStore, _run, _settings

URL = "/api/v1/campaigns/c1/retries"


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def fake(settings: Any, campaign_id: str, inputs: Any, **kw: Any) -> RetryAnswer:
        calls.append({"campaign_id": campaign_id, **kw})
        if kw["reason"] == "conflict":
            raise RetryConflictError("another round won")
        if kw["reason"] == "no topic":
            raise CampaignAnalyticsError("topic t does not exist")
        return RetryAnswer(campaign_id, kw["request_id"] or "generated", kw["dry_run"], False,
                           None, {"requested": 0, "scheduled_later": 0,
                                  "placed_by_default_zone": 0, "skipped": {}})

    monkeypatch.setattr(api_app, "request_retries", fake)
    return calls


def test_only_a_json_object_of_known_fields_is_a_command(asked):
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        form = await client.post(URL, data={"dry_run": "false"})  # a cross-site form
        assert form.status == 415 and (await form.json())["error"] == "unsupported_media_type"
        plain = await client.post(URL, data=b'{"dry_run": true}',
                                  headers={"Content-Type": "text/plain"})
        assert plain.status == 415
        for body in (b"", b"[1]", b'{"dry_run": 1}', b'{"reason": null}', b'{"x": 1}',
                     b'{"request_id": ""}', b"{not json"):
            bad = await client.post(URL, data=body,
                                    headers={"Content-Type": "application/json"})
            assert bad.status == 400, body
        unknown = await client.post("/api/v1/campaigns/nope/retries", json={})
        assert unknown.status == 404
        assert asked == []  # nothing of the above reached the request
        ok = await client.post(URL, json={"dry_run": True, "reason": "why",
                                          "request_id": "r-1"})
        assert ok.status == 200
        assert (await ok.json())["request_id"] == "r-1"
        assert asked == [{"campaign_id": "c1", "dry_run": True, "reason": "why",
                          "requested_by": "api", "request_id": "r-1"}]
        conflict = await client.post(URL, json={"reason": "conflict"})
        assert conflict.status == 409 and (await conflict.json())["error"] == "conflict"
        missing = await client.post(URL, json={"reason": "no topic"})  # not a 500
        assert missing.status == 503 and "Retry-After" in missing.headers

    _run(test)


def test_the_token_is_needed_like_on_every_route(asked):
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        refused = await client.post(URL, json={"dry_run": True})
        assert refused.status == 401
        ok = await client.post(URL, json={"dry_run": True},
                               headers={"Authorization": "Bearer t0ken"})
        assert ok.status == 200 and len(asked) == 1

    _run(test, _settings(api_token="t0ken"))  # noqa: S106 - a test value
