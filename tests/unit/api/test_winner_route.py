"""The winner routes without a broker (POST and GET /api/v1/campaigns/{id}/winner):
what is refused before Kafka (415, 400, 404, 401), the 409 answers (the verdict, or
the decision made before), a 503 instead of a 500; and CA_CONVERSATION_URL_TEMPLATE:
replies and per-contact clicks carry conversation_url, with the id URL-encoded."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from projections.errors import CampaignAnalyticsError
from projections.winner import check_request, decision_record
from sinks.queries import ClickRow, ContactClicks, ReplyRow
from streams.api import app as api_app
from streams.api.live import LiveState
from streams.api.winner import WinnerDecidedError
from streams.settings import ConfigurationError, settings_of
from tests.unit.api import test_app
from tests.unit.api.test_app import FakeStore, _run, _settings

URL = "/api/v1/campaigns/c1/winner"
DECIDED: dict[str, Any] = {}


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def decide(settings: Any, campaign_id: str, statistics: Any, **kw: Any
                     ) -> dict[str, Any]:
        calls.append({"campaign_id": campaign_id, **kw})
        if kw["reason"] == "no topic":
            raise CampaignAnalyticsError("topic t does not exist")
        if DECIDED:
            raise WinnerDecidedError(DECIDED)
        ab, as_of = statistics()
        forced = check_request(ab, kw["variant"], kw["reason"], kw["force"])
        record = decision_record(ab, campaign_id, kw["variant"], reason=kw["reason"],
                                 forced=forced, requested_by=kw["requested_by"],
                                 decided_at=1_800_000_000_000, decision_id="d-1", as_of=as_of)
        DECIDED.update(record)
        return record

    async def read(settings: Any, campaign_id: str) -> dict[str, Any] | None:
        return DECIDED or None

    DECIDED.clear()
    monkeypatch.setattr(api_app, "decide_winner", decide)
    monkeypatch.setattr(api_app, "read_decision", read)
    return calls


def test_refusals_before_kafka_then_no_winner_forced_and_decided(asked):
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        form = await client.post(URL, data={"variant": "A"})  # a cross-site form
        assert form.status == 415
        for body in (b"", b"[1]", b"{}", b'{"variant": 1}', b'{"variant": "A", "force": 1}',
                     b'{"variant": "A", "x": 1}', b"{not json"):
            bad = await client.post(URL, data=body, headers={"Content-Type": "application/json"})
            assert bad.status == 400, body
        assert (await client.post("/api/v1/campaigns/nope/winner", json={"variant": "A"})
                ).status == 404
        assert asked == []
        assert (await client.get(URL)).status == 404  # no decision yet
        # the fixture's snapshot has no clicks: no_winner_yet
        refused = await client.post(URL, json={"variant": "B", "reason": "hunch"})
        body = await refused.json()
        assert refused.status == 409 and body["error"] == "no_winner"
        assert body["verdict"]["status"] == "no_winner_yet" and "no_winner_yet" in body["detail"]
        unknown = await client.post(URL, json={"variant": "C", "force": True, "reason": "x"})
        assert unknown.status == 400 and "no variant 'C'" in (await unknown.json())["detail"]
        no_reason = await client.post(URL, json={"variant": "B", "force": True})
        assert no_reason.status == 400
        forced = await client.post(URL, json={"variant": "B", "force": True,
                                              "reason": "launch"})
        decision = await forced.json()
        assert forced.status == 200, decision
        assert decision["forced"] and decision["reason"] == "launch"
        assert decision["requested_by"] == "api" and decision["decided_at"].endswith("Z")
        assert decision["statistics"]["verdict"]["status"] == "no_winner_yet"
        assert "statistics_json" not in decision
        assert await (await client.get(URL)).json() == decision
        second = await client.post(URL, json={"variant": "A", "force": True, "reason": "no"})
        again = await second.json()
        assert second.status == 409 and again["error"] == "decided"
        assert again["decision"] == decision
        missing = await client.post(URL, json={"variant": "A", "reason": "no topic"})
        assert missing.status == 503 and "Retry-After" in missing.headers

    _run(test)


def test_the_token_is_needed_like_on_every_route(asked):
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        assert (await client.post(URL, json={"variant": "A"})).status == 401
        assert (await client.get(URL)).status == 401
        ok = await client.get(URL, headers={"Authorization": "Bearer t0ken"})
        assert ok.status == 404 and (await ok.json())["error"] == "no_decision"

    _run(test, _settings(api_token="t0ken"))  # noqa: S106 - a test value


class ContactStore(FakeStore):
    def replies_page(self, campaign_id: str, limit: int, before: Any) -> list[ReplyRow]:
        return [ReplyRow("e1", "m-001", "ana/b c?", None, "+15550000000", "A", "hi",
                         1_790_000_000_000)]

    def contact_clicks(self, campaign_id: str, limit: int, after: Any) -> list[ContactClicks]:
        return [ContactClicks("ana/b c?", None, "+15550000000", 2, 1, 2)]

    def contact_click_events(self, campaign_id: str, contact_id: str, limit: int, after: Any
                             ) -> list[ClickRow]:
        return [ClickRow("e2", "m-001", "l1", 1_790_000_000_000, None)]


def _contact_run(test: Any, template: str) -> None:
    with pytest.MonkeyPatch.context() as patch:  # _run's store answers the contact routes
        patch.setattr(test_app, "FakeStore", ContactStore)
        _run(test, _settings(conversation_url_template=template))


def test_replies_and_contact_clicks_carry_the_conversation_url_when_set():
    want = "https://app.example/conversations/ana%2Fb%20c%3F"

    async def with_links(client: TestClient, state: LiveState, store: FakeStore) -> None:
        replies = await (await client.get("/api/v1/campaigns/c1/replies")).json()
        assert replies["items"][0]["conversation_url"] == want
        contacts = await (await client.get("/api/v1/campaigns/c1/clicks")).json()
        assert contacts["items"][0]["conversation_url"] == want
        one = await (await client.get("/api/v1/campaigns/c1/clicks?contact_id=ana%2Fb%20c%3F")
                     ).json()
        assert one["conversation_url"] == want

    async def without(client: TestClient, state: LiveState, store: FakeStore) -> None:
        replies = await (await client.get("/api/v1/campaigns/c1/replies")).json()
        contacts = await (await client.get("/api/v1/campaigns/c1/clicks")).json()
        one = await (await client.get("/api/v1/campaigns/c1/clicks?contact_id=x")).json()
        assert "conversation_url" not in replies["items"][0]
        assert "conversation_url" not in contacts["items"][0]
        assert "conversation_url" not in one

    _contact_run(with_links, "https://app.example/conversations/{contact_id}")
    _contact_run(without, "")


@pytest.mark.parametrize("bad", ["https://app.example/conversations", "{contact_id}",
                                 "https://x/{id}", "https://x/{contact_id}/{other}",
                                 "https://x/{contact_id"])
def test_a_template_without_exactly_the_contact_id_placeholder_is_refused(bad):
    with pytest.raises(ConfigurationError, match="CA_CONVERSATION_URL_TEMPLATE"):
        settings_of({"CA_CONVERSATION_URL_TEMPLATE": bad})
    assert settings_of({"CA_CONVERSATION_URL_TEMPLATE": "https://x/{contact_id}?a={{b}}"})
