"""The API service end to end: a real broker, a worker (whose sink process owns the
embedded ClickHouse and serves its SQL endpoint), and ``campaign-analytics api`` as
its own process. Every route's answer is compared with a batch recount of the
published events; schemathesis then runs every operation of the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from projections.ab import AbConfig, ab_statistics, first_attempt_counts
from streams.cli.demo import generate_campaign
from tests.integration.conftest import CLI, Deployment, free_port
from tests.integration.test_pipeline import _messy_events, _write
from tests.oracle import BREAKDOWN_KEYS, expected_log, recount, recount_windows
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

TOKEN = "test-token-not-a-secret"  # noqa: S105 - a test value
CONVERSATION = "https://app.example/conversations/{contact_id}"
SUMMARY_KEYS = ("campaign_id", "sent", "delivered", "failed", "pending", "replies",
                "unique_repliers", "opt_outs", "link_clicks", "unique_link_clicks",
                "delivery_rate", "reply_rate", "link_click_rate", *BREAKDOWN_KEYS, "retries",
                "recovered_by_retry", "first_attempts", "variants")


class Api:
    def __init__(self, deployment: Deployment, port: int, log: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        out = log.open("wb")
        self.proc = subprocess.Popen([*CLI, "api", "--port", str(port)], env=deployment.env,
                                     cwd=deployment.root, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def get(self, path: str, token: str | None = TOKEN, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, headers={  # noqa: S310 - loopback
            **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def post_json(self, path: str, body: dict[str, Any], token: str = TOKEN
                  ) -> tuple[int, dict[str, Any]]:
        """POST ``body`` as JSON with ``token``; (status, the JSON answer)."""
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def json(self, path: str, status: int = 200) -> Any:
        code, _, body = self.get(path)
        assert code == status, f"GET {path}: {code} {body[:500]!r}"
        return json.loads(body)

    def wait(self, check: Any, what: str, timeout: float = 120) -> Any:
        def alive_and_checked() -> Any:
            if self.proc.poll() is not None:
                pytest.fail(f"api exited:\n{self.log.read_text()[-3000:]}")
            return check()

        return wait_until(alive_and_checked, what, timeout, 1,
                          explain=lambda: self.log.read_text()[-3000:])

    def pages(self, path: str, limit: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        sep = "&" if "?" in path else "?"
        page = self.json(f"{path}{sep}limit={limit}")
        items += page["items"]
        cursors = set()
        while page["next_cursor"] is not None:
            assert len(page["items"]) == limit
            assert page["next_cursor"] not in cursors, f"{path}: the cursor does not move"
            cursors.add(page["next_cursor"])
            page = self.json(f"{path}{sep}limit={limit}&cursor={page['next_cursor']}")
            items += page["items"]
        return items

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Deployment, Api, list[dict[str, Any]]]]:
    root = tmp_path_factory.mktemp("api")
    deployment = Deployment(kafka_bootstrap, root)
    deployment.env["CA_API_TOKEN"] = TOKEN
    deployment.env["CA_SQL_PORT"] = str(free_port())
    deployment.env["CA_CONVERSATION_URL_TEMPLATE"] = CONVERSATION
    events = _messy_events()
    worker = deployment.worker().start()
    api: Api | None = None
    try:
        worker.wait_ready()
        deployment.cli("publish", str(_write(root / "events.jsonl", events)))
        api = Api(deployment, free_port(), root / "api.log")
        api.wait(lambda: api.json("/readyz")["status"] == "ready", "readiness")
        want = recount(events)
        for campaign_id in ("camp-ab", "camp-plain"):
            api.wait(lambda c=campaign_id: _pick(api.json(f"/api/v1/campaigns/{c}"))
                     == _pick(want[c]), f"the summary of {campaign_id}")
        # the sinks trail the metrics: wait until the log has every message's latest state
        expected = expected_log(events, "camp-ab")
        api.wait(lambda: _statuses(api.pages("/api/v1/campaigns/camp-ab/messages", 500))
                 == _statuses(expected.values()), "the complete message log")
        yield deployment, api, events
    finally:
        if api is not None:
            api.stop()
        deployment.close()


def _pick(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in SUMMARY_KEYS}


def _statuses(rows: Any) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        out[row["phone"], row["status"]] += 1
    return dict(out)


def _iso(ms: int | None) -> str | None:
    from sinks.export import format_timestamp

    return None if ms is None else format_timestamp(ms)


def _distinct(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for e in events:
        seen.setdefault(e["event_id"], e)
    return list(seen.values())


def _sends(events: list[dict[str, Any]], campaign_id: str) -> dict[str, dict[str, Any]]:
    sends: dict[str, dict[str, Any]] = {}
    for e in sorted(_distinct(events), key=lambda e: (e.get("occurred_at"), e["event_id"])):
        if e["type"] == "sent" and e["campaign_id"] == campaign_id:
            sends.setdefault(e["message_id"], e)
    return sends


def test_campaigns_summary_ab_and_timeseries_equal_the_recount(live):
    deployment, api, events = live
    want = recount(events)
    listed = {c["campaign_id"]: c for c in api.json("/api/v1/campaigns")["campaigns"]}
    assert {"camp-ab", "camp-plain"} <= set(listed)
    assert listed["camp-ab"]["sent"] == want["camp-ab"]["sent"]
    assert listed["camp-ab"]["as_of"].endswith("Z")

    summary = api.json("/api/v1/campaigns/camp-ab")
    assert _pick(summary) == _pick(want["camp-ab"])
    assert summary["as_of"].endswith("Z")
    cli = deployment.summary("camp-ab")
    assert cli is not None and {k: summary[k] for k in cli} == cli  # the same keys and values

    ab = api.json("/api/v1/campaigns/camp-ab/ab")
    # first attempts only (domain.md 3b): the recount's, without the retries
    expected_ab = ab_statistics(first_attempt_counts(want["camp-ab"]["variants"]), AbConfig())
    assert want["camp-ab"]["retries"] > 0
    assert ab_statistics(want["camp-ab"]["variants"], AbConfig()) != expected_ab
    assert {k: ab[k] for k in expected_ab} == json.loads(json.dumps(expected_ab))

    # windows older than CA_WINDOW_RETENTION_DAYS (30) are neither kept nor published
    kept_from = time.time() * 1000 - 29 * 86_400_000
    windows = {key: w for key, w in recount_windows(events, "camp-ab").items()
               if key[1] >= kept_from}
    for size in (60, 3600):
        series = api.json(f"/api/v1/campaigns/camp-ab/timeseries?window={size}")
        got = {p["start"]: {k: v for k, v in p.items() if k != "start"} for p in series["points"]}
        assert got == {_iso(start): w["counts"] for (s, start), w in windows.items()
                       if s == size}
        one = api.json(f"/api/v1/campaigns/camp-ab/timeseries?window={size}&variant=B")
        got_b = {p["start"]: {k: v for k, v in p.items() if k != "start"} for p in one["points"]}
        want_b = {_iso(start): w["variants"]["B"] for (s, start), w in windows.items()
                  if s == size and "B" in w["variants"]}
        assert {k: v for k, v in got_b.items() if any(v.values())} == want_b
    first = min(start for (s, start) in windows if s == 60)
    since = api.json(f"/api/v1/campaigns/camp-ab/timeseries?window=60&from={first + 60_000}")
    assert _iso(first) not in {p["start"] for p in since["points"]}


def test_message_log_pages_return_every_message_once(live):
    _, api, events = live
    expected = expected_log(events, "camp-ab")
    items = api.pages("/api/v1/campaigns/camp-ab/messages", 37)
    ids = [m["message_id"] for m in items]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == set(expected)
    assert ids == sorted(ids)
    for m in items:
        want = expected[m["message_id"]]
        assert (m["phone"], m["variant"], m["status"], m["delivered_at"], m["retry_of"]) == (
            want["phone"], want["variant"], want["status"], _iso(want["delivered_at"]),
            want["retry_of"])
    assert any(m["retry_of"] for m in items)  # a retried message's attempts are in the log
    for status in ("delivered", "undelivered", "rejected"):
        filtered = api.pages(f"/api/v1/campaigns/camp-ab/messages?status={status}", 10)
        assert {m["message_id"] for m in filtered} == {
            i for i, w in expected.items() if w["status"] == status}
    page = api.json("/api/v1/campaigns/camp-ab/messages?limit=5")
    assert page["as_of"] is not None and page["as_of"].endswith("Z")


def test_replies_and_clicks_equal_the_recount(live):
    _, api, events = live
    sends = _sends(events, "camp-ab")
    replies = sorted(((e["occurred_at"], e["event_id"]) for e in _distinct(events)
                      if e["type"] == "reply" and e["message_id"] in sends), reverse=True)
    got = api.pages("/api/v1/campaigns/camp-ab/replies", 7)
    assert [(r["received_at"], r["event_id"]) for r in got] == [
        (_iso(at), event_id) for at, event_id in replies]
    assert all(r["contact_id"] == sends[r["message_id"]]["contact_id"] for r in got)
    link = CONVERSATION.replace("{contact_id}", "")  # the generated ids need no encoding
    assert got and all(r["conversation_url"] == link + r["contact_id"] for r in got)

    clicks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in _distinct(events):
        if e["type"] == "click" and e["message_id"] in sends:
            clicks[sends[e["message_id"]]["contact_id"]].append(e)
    per_contact = api.pages("/api/v1/campaigns/camp-ab/clicks", 9)
    assert {c["contact_id"]: (c["clicks"], c["first_click_at"], c["last_click_at"])
            for c in per_contact} == {
        contact: (len(cs), _iso(min(c["occurred_at"] for c in cs)),
                  _iso(max(c["occurred_at"] for c in cs))) for contact, cs in clicks.items()}
    assert all(c["conversation_url"] == link + c["contact_id"] for c in per_contact)
    contact = max(clicks, key=lambda c: len(clicks[c]))
    assert api.json(f"/api/v1/campaigns/camp-ab/clicks?contact_id={contact}")[
        "conversation_url"] == link + contact
    each = api.pages(f"/api/v1/campaigns/camp-ab/clicks?contact_id={contact}", 1)
    assert [c["event_id"] for c in each] == [
        c["event_id"] for c in sorted(clicks[contact],
                                      key=lambda c: (c["occurred_at"], c["event_id"]))]


def test_export_route_streams_the_cli_export(live):
    deployment, api, events = live
    code, headers, body = api.get("/api/v1/campaigns/camp-ab/export.csv")
    assert code == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert len(rows) == len(expected_log(events, "camp-ab"))
    out = deployment.root / "cli.csv"
    deployment.cli("export", "camp-ab", "--output", str(out))
    assert body == out.read_bytes()


def test_errors_auth_and_the_closed_worker_web_server(live):
    deployment, api, events = live
    code, headers, body = api.get("/api/v1/campaigns/camp-ab", token=None)
    assert code == 401 and json.loads(body)["error"] == "unauthorized"
    assert api.get("/api/v1/campaigns/camp-ab", token="wrong")[0] == 401  # noqa: S106
    assert api.get("/healthz", token=None)[0] == 200
    code, _, body = api.get("/api/v1/campaigns/no-such-campaign")
    assert code == 404 and json.loads(body) == {
        "error": "unknown_campaign", "detail": "no metrics for campaign 'no-such-campaign'"}
    for bad in ("messages?limit=0", "messages?limit=x", "messages?status=lost",
                "messages?cursor=bm90LWEtY3Vyc29y", "timeseries?window=7",
                "timeseries?from=yesterday", "replies?cursor=%%%"):
        code, _, body = api.get(f"/api/v1/campaigns/camp-ab/{bad}")
        assert code == 400, bad
        assert set(json.loads(body)) == {"error", "detail"}
    # Faust's /table served a message's phone and contact name to anyone; now nothing
    message_id = next(e["message_id"] for e in events if e["type"] == "sent")
    worker = deployment.workers[0]
    for path in (f"/table/messages/{message_id}/", "/router/"):
        try:
            with urllib.request.urlopen(  # noqa: S310 - loopback
                    f"http://127.0.0.1:{worker.web_port}{path}", timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 404, path


def test_server_sent_events_deliver_new_snapshots_and_resume(live):
    deployment, api, _ = live

    async def scenario() -> None:
        import aiohttp

        auth = {"Authorization": f"Bearer {TOKEN}"}
        url = api.base + "/api/v1/campaigns/camp-plain/events"
        async with aiohttp.ClientSession(headers=auth) as session:
            async with session.get(url) as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                first = await _next_event(response)
                assert first["event"] == "summary"
                before = json.loads(first["data"])
                more = generate_campaign("camp-plain", 20, seed=99, variants=(),
                                         duplicate_rate=0)
                for e in more:
                    e["message_id"] += "-more"
                    e["event_id"] += "-more"
                path = _write(deployment.root / "more.jsonl", more)
                await asyncio.to_thread(deployment.cli, "publish", str(path))
                while True:  # snapshots follow as the new events are folded
                    later = await asyncio.wait_for(_next_event(response), 60)
                    assert int(later["id"]) > int(first["id"])
                    if json.loads(later["data"])["sent"] > before["sent"]:
                        break
            # resuming from the first id: what was missed is the current state
            resume = {"Last-Event-ID": first["id"]}
            async with session.get(url, headers=resume) as response:
                again = await asyncio.wait_for(_next_event(response), 10)
                assert int(again["id"]) >= int(later["id"])

    asyncio.run(scenario())


async def _next_event(response: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    while True:
        line = (await response.content.readline()).decode()
        if line == "":
            raise AssertionError("the stream ended")
        line = line.rstrip("\n")
        if line == "":
            if "data" in fields:
                return fields
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.lstrip(" ")


def test_schemathesis_runs_every_operation_against_the_live_service(live):
    deployment, api, _ = live
    report = deployment.root / "schemathesis"
    result = subprocess.run(
        [str(Path(CLI[0]).parent / "schemathesis"),
         "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
         "run", api.base + "/api/v1/openapi.json",
         "-H", f"Authorization: Bearer {TOKEN}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance,response_headers_conformance",
         "--max-examples", "50", "--request-timeout", "20", "--seed", "1",
         "--phases", "examples,coverage,fuzzing", "--report-dir", str(report)],
        env=deployment.env, cwd=deployment.root, capture_output=True, text=True, timeout=600,
        check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 14" in result.stdout, result.stdout[-3000:]  # every operation ran


def test_sql_endpoint_of_the_engines_owner_answers_clickhouse_connect(live):
    """The worker's sink process owns the embedded engine and serves SQL beside its
    sinks: a data engineer's client reads the same log, and cannot write."""
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError

    deployment, _, events = live
    settings = deployment.settings()
    client = clickhouse_connect.get_client(host="127.0.0.1", port=settings.sql_port,
                                           database=settings.clickhouse_database)
    try:
        result = client.query(
            "SELECT status, count() FROM message_log FINAL"
            " WHERE campaign_id = {c:String} GROUP BY status ORDER BY status",
            parameters={"c": "camp-ab"})
        counts: dict[str, int] = defaultdict(int)
        for row in expected_log(events, "camp-ab").values():
            counts[row["status"]] += 1
        assert dict(result.result_rows) == dict(counts)
        with pytest.raises(DatabaseError) as refused:
            client.command("INSERT INTO message_log (message_id) VALUES ('x')")
        assert "164" in str(refused.value) or "READONLY" in str(refused.value)
        again = client.query("SELECT count() FROM message_log FINAL"
                             " WHERE campaign_id = 'camp-ab'").result_rows[0][0]
        assert again == len(expected_log(events, "camp-ab"))
    finally:
        client.close()
    cli = deployment.cli("sql", "SELECT count() AS n FROM message_log FINAL"
                         " WHERE campaign_id = 'camp-ab'", "--format", "json")
    assert json.loads(cli.stdout) == [{"n": len(expected_log(events, "camp-ab"))}]
