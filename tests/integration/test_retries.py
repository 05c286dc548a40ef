"""Retry requests end to end (issue 21 items 2 and 7) on a real broker and worker.

A messy campaign (failures of every category, REJECTED sends, opt-out replies, 21610
failures, a failure whose log code is not its cause, retry_of chains, earlier rounds
written straight to the topic, one of them invalid) is published; the selection the
CLI and the API answer must equal ``recount_retries`` below, plain code over the raw
events. Then: dry runs write nothing, the records written are the recount's with a
quiet-hours contact's not_before, a request id twice writes nothing new, and two API
processes asked at once write one valid round and answer 200 and 409.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from schemas import encode_single_object, latest, load_schemas
from streams.cli.demo import generate_campaign
from tests.integration.conftest import Deployment, free_port, read_topic
from tests.integration.test_api import Api
from tests.integration.test_pipeline import _write
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CAMPAIGN = "camp-retry"
TOKEN = "retry-test-token"  # noqa: S105 - a test value
NOT_RETRYABLE = {"21211", "30005", "21614", "30006", "30004", "30007", "30034", "21610"}
STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit"}
RANK = {"QUEUED": 0, "SENT": 1, "DELIVERED": 2, "UNDELIVERED": 2, "FAILED": 2}
TOKYO, PARIS, RUSSIA, NOWHERE = "+81312345678", "+33612345678", "+79123456789", "+99912345678"
REASONS = ("opted_out", "not_retryable", "already_requested", "max_attempts", "too_old")


# --- the independent recount ----------------------------------------------------------


def recount_retries(events: list[dict[str, Any]], earlier: dict[str, str],
                    max_attempts: int = 1) -> tuple[list[str], dict[str, int]]:
    """(message ids to request, skipped per reason) from the raw events; ``earlier``:
    message id -> original message id of the valid earlier rounds."""
    by_message: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_message.setdefault(event["message_id"], []).append(event)
    failed: list[tuple[int, str, dict[str, Any], str | None]] = []
    opted_out: set[str] = set()
    for message_id, mine in by_message.items():
        sends = sorted((e for e in mine if e["type"] == "sent"),
                       key=lambda e: (e["occurred_at"], e["event_id"]))
        if not sends or sends[0]["campaign_id"] != CAMPAIGN:
            continue
        sent = sends[0]
        opted_out |= {e["contact_id"] for e in mine if e["type"] == "reply"
                      and e["body"].strip().lower() in STOP_WORDS}
        if sent["outcome"] == "REJECTED":
            failed.append((sent["occurred_at"], message_id, sent, sent.get("error_code")))
            continue
        receipts = [e for e in mine if e["type"] == "delivery"]
        if receipts:
            top = max(receipts, key=lambda e: (RANK[e["status"]], e["occurred_at"],
                                               e["event_id"]))
            if top["status"] in ("UNDELIVERED", "FAILED"):
                failed.append((sent["occurred_at"], message_id, sent, top.get("error_code")))
    opted_out |= {s["contact_id"] for _, _, s, code in failed if code == "21610"}
    attempts = Counter(earlier.values())
    skipped = dict.fromkeys(REASONS, 0)
    chosen = []
    for _, message_id, sent, code in sorted(failed, key=lambda f: (f[0], f[1])):
        root = message_id
        while root not in earlier and root in by_message and any(
                e.get("retry_of") for e in by_message[root] if e["type"] == "sent"):
            root = next(e["retry_of"] for e in by_message[root] if e["type"] == "sent")
        root = earlier.get(root, root)
        if sent["contact_id"] in opted_out:
            skipped["opted_out"] += 1
        elif code in NOT_RETRYABLE:
            skipped["not_retryable"] += 1
        elif message_id in earlier:
            skipped["already_requested"] += 1
        elif attempts[root] >= max_attempts:
            skipped["max_attempts"] += 1
        else:
            attempts[root] += 1
            chosen.append(message_id)
    return sorted(chosen), skipped


# --- the campaign ---------------------------------------------------------------------


def _events(start: int) -> list[dict[str, Any]]:
    events = generate_campaign(CAMPAIGN, 150, seed=21, duplicate_rate=0.1, retry_rate=0.3,
                               start_ms=start)
    n = 0

    def message(phone: str, outcome: str = "ACCEPTED", code: str | None = None,
                receipts: tuple[tuple[str, str | None], ...] = (), contact: str | None = None,
                retry_of: str | None = None, mid: str | None = None) -> str:
        nonlocal n
        n += 1
        mid = mid or f"hand-{n}"
        at = start + n * 1000
        events.append({"type": "sent", "event_id": f"{mid}-s", "message_id": mid,
                       "occurred_at": at, "campaign_id": CAMPAIGN, "variant": "A",
                       "contact_id": contact or f"hc-{n}", "contact_name": None, "phone": phone,
                       "outcome": outcome, "error_code": code,
                       **({"retry_of": retry_of} if retry_of else {})})
        for i, (status, receipt_code) in enumerate(receipts):
            events.append({"type": "delivery", "event_id": f"{mid}-d{i}", "message_id": mid,
                           "occurred_at": at + 100 * (i + 1), "status": status,
                           "error_code": receipt_code})
        return mid

    for code in ("21211", "30005", "21614", "30006", "30004", "30007", "30034", "21610",
                 "30001", "30003", "30008", "99999", None):
        message(PARIS, receipts=(("FAILED", code),))
        message(TOKYO, receipts=(("SENT", None), ("UNDELIVERED", code)))
        message(NOWHERE, "REJECTED", code)
    # opted out by a reply to another message; by a 21610 failure of another message
    message(RUSSIA, receipts=(("FAILED", "30003"),), contact="stopper")
    replied = message(PARIS, receipts=(("DELIVERED", None),), contact="stopper")
    events.append({"type": "reply", "event_id": "stop-1", "message_id": replied,
                   "occurred_at": start + 999_000, "contact_id": "stopper", "phone": PARIS,
                   "body": "  Stop "})
    message(TOKYO, receipts=(("FAILED", "30001"),), contact="blocked-later")
    message(TOKYO, receipts=(("FAILED", "21610"),), contact="blocked-later")
    # the log shows 21610 (highest receipt with a code), the cause is none: retryable
    message(TOKYO, receipts=(("FAILED", "21610"), ("UNDELIVERED", None)))
    # chains: e-1 was requested earlier, its retry failed again; o-2 never was
    message(PARIS, receipts=(("FAILED", "30003"),), mid="e-1", contact="chain-1")
    message(PARIS, receipts=(("FAILED", "30003"),), mid="r-1", contact="chain-1",
            retry_of="e-1")
    message(PARIS, receipts=(("FAILED", "30003"),), mid="o-2", contact="chain-2")
    message(PARIS, receipts=(("FAILED", "30003"),), mid="r-2", contact="chain-2",
            retry_of="o-2")
    message(RUSSIA, receipts=(("FAILED", "30001"),), mid="e-2")  # in the invalid round only
    message(NOWHERE, receipts=(("FAILED", None),))  # unclassified, default zone
    return events


_SCHEMA = latest(load_schemas(), "retry_request")


def _earlier_record(message_id: str, round_id: str, base: int) -> bytes:
    return encode_single_object(_SCHEMA, {
        "request_id": f"req-{round_id}", "round_id": round_id, "round_base_offset": base,
        "round_size": 1, "campaign_id": CAMPAIGN, "message_id": message_id,
        "original_message_id": message_id, "attempt": 1, "contact_id": "x", "phone": PARIS,
        "variant": "A", "failure_code": "30003", "not_before": 0, "time_zone": "UTC",
        "zone_by_default": True, "requested_by": "cli:test", "requested_at": 0, "reason": "",
    })


async def _produce_earlier_rounds(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:  # keyed: the default partitioner picks the campaign's partition, as the code must
        await producer.send_and_wait(topic, _earlier_record("e-1", "old", 0), key=CAMPAIGN.encode())
        # based on offset 0 but written after "old": invalid, so e-2 is not requested
        await producer.send_and_wait(topic, _earlier_record("e-2", "lost", 0),
                                     key=CAMPAIGN.encode())
    finally:
        await producer.stop()


async def _records(bootstrap: str, topic: str) -> list[tuple[int, dict[str, Any]]]:
    """The campaign's records, as (offset, fields), decoded with fastavro and the .avsc."""
    from schemas import by_fingerprint, decode_single_object

    writers = by_fingerprint([_SCHEMA])
    return sorted(((r.offset, decode_single_object(_SCHEMA, r.value, writers))
                   for r in await read_topic(bootstrap, topic)
                   if r.key == CAMPAIGN.encode() and r.value), key=lambda r: r[0])


def _valid(records: list[tuple[int, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rounds by the rule of docs/consumers.md, written again here."""
    last: int | None = None
    valid: dict[str, bool] = {}
    rounds: dict[str, list[dict[str, Any]]] = {}
    for offset, record in records:
        if record["round_id"] not in valid:
            valid[record["round_id"]] = last is None or last < record["round_base_offset"]
        rounds.setdefault(record["round_id"], []).append(record)
        last = offset
    return {r: recs for r, recs in rounds.items() if valid[r]}


def _no_single_zone(phone: str) -> bool:
    """phonenumbers asked directly: no zone, or several."""
    import phonenumbers
    from phonenumbers import timezone

    try:
        zones = timezone.time_zones_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return True
    return len(zones) != 1 or zones[0] == "Etc/Unknown"


def _lines(requested: int, later: int, skipped: dict[str, int], by_default: int) -> list[str]:
    return [f"requested {requested}", f"scheduled_later {later}",
            *(f"skipped_{reason} {skipped[reason]}" for reason in REASONS),
            f"placed_by_default_zone {by_default}"]


def _quiet_window_around_tokyo_now() -> tuple[str, datetime]:
    """Quiet hours holding now in Tokyo only (an hour before to two after), and the
    not_before a Tokyo contact gets: the window's end, local wall time."""
    local = datetime.now(ZoneInfo("Asia/Tokyo"))
    start, end = local - timedelta(hours=1), local + timedelta(hours=2)
    text = f"{start:%H:%M}-{end:%H:%M}"
    return text, end.replace(second=0, microsecond=0).astimezone(UTC)


@pytest.fixture(scope="module")
def campaign(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Deployment, list[dict[str, Any]], datetime]]:
    root = tmp_path_factory.mktemp("retries")
    deployment = Deployment(kafka_bootstrap, root)
    quiet, tokyo_until = _quiet_window_around_tokyo_now()
    deployment.env |= {"CA_QUIET_HOURS": quiet, "CA_API_TOKEN": TOKEN}
    start = int((datetime.now(UTC) - timedelta(hours=2)).timestamp() * 1000)
    events = _events(start)
    worker = deployment.worker().start()
    try:
        worker.wait_ready()
        topic = deployment.settings().retry_requests_topic
        asyncio.run(_produce_earlier_rounds(kafka_bootstrap, topic))
        deployment.cli("publish", str(_write(root / "events.jsonl", events)))
        yield deployment, events, tokyo_until
    finally:
        deployment.close()
        asyncio.run(_delete_topics(kafka_bootstrap, deployment.env["CA_TOPIC_PREFIX"],
                                   deployment.env["CA_APP_ID"]))


async def _delete_topics(bootstrap: str, prefix: str, app_id: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics()
                if t.startswith(prefix) or t.startswith(app_id)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def test_the_cli_selection_equals_the_recount_and_writes_it_once(campaign):
    deployment, events, tokyo_until = campaign
    topic = deployment.settings().retry_requests_topic
    bootstrap = deployment.env["CA_KAFKA_BOOTSTRAP"]
    before = asyncio.run(_records(bootstrap, topic))
    assert [r["message_id"] for r in _valid(before)["old"]] == ["e-1"] and len(before) == 2
    chosen, skipped = recount_retries(events, {"e-1": "e-1"})
    assert "e-2" in chosen and "o-2" in chosen and "r-2" not in chosen  # the control
    tokyo = {e["message_id"] for e in events if e["type"] == "sent" and e["phone"] == TOKYO}
    by_default = {e["message_id"] for e in events
                  if e["type"] == "sent" and _no_single_zone(e["phone"])}
    assert {RUSSIA, NOWHERE} <= {e["phone"] for e in events
                                 if e["type"] == "sent" and e["message_id"] in by_default}
    later = len(set(chosen) & tokyo)
    want = _lines(len(chosen), later, skipped, len(set(chosen) & by_default))
    assert later > 0 and skipped["opted_out"] > 0 and skipped["max_attempts"] > 0

    last: list[Any] = []

    def dry_run() -> list[str] | None:
        result = deployment.cli("retry", CAMPAIGN, "--dry-run", check=False)
        last[:] = [result.returncode, result.stdout, result.stderr[-2000:]]
        lines = result.stdout.splitlines()
        return lines if result.returncode == 0 and lines == want else None

    # the sinks trail the publish: the dry run converges on the recount, exactly
    wait_until(dry_run, "the dry run to equal the recount", 120, 1,
               explain=lambda: f"want {want}\ngot {last}")
    assert asyncio.run(_records(bootstrap, topic)) == before  # dry runs wrote nothing

    done = deployment.cli("retry", CAMPAIGN, "--reason", "carrier outage", "--request-id", "q-1")
    assert done.stdout.splitlines() == want
    after = asyncio.run(_records(bootstrap, topic))
    rounds = _valid(after)
    assert set(rounds) == {"old", next(r for r in rounds if r != "old")}
    (new,) = [recs for r, recs in rounds.items() if r != "old"]
    assert sorted(r["message_id"] for r in new) == chosen
    assert len(new) == new[0]["round_size"] and {r["request_id"] for r in new} == {"q-1"}
    assert all(r["requested_by"].startswith("cli:") and r["reason"] == "carrier outage"
               for r in new)
    for record in new:
        if record["message_id"] in tokyo:
            assert record["time_zone"] == "Asia/Tokyo" and not record["zone_by_default"]
            assert record["not_before"] == int(tokyo_until.timestamp() * 1000)
        else:
            assert record["not_before"] == record["requested_at"]
            assert record["zone_by_default"] == (record["message_id"] in by_default)
        if record["message_id"] == "e-2":
            assert record["attempt"] == 1 and record["original_message_id"] == "e-2"

    again = deployment.cli("retry", CAMPAIGN, "--request-id", "q-1")  # the same request id
    assert again.stdout.splitlines()[:2] == want[:2] and "answered before" in again.stderr
    assert asyncio.run(_records(bootstrap, topic)) == after
    fresh = deployment.cli("retry", CAMPAIGN)  # a new request: everything is requested
    _, skipped_now = recount_retries(events, {**{m: m for m in chosen}, "e-1": "e-1"})
    assert fresh.stdout.splitlines() == _lines(0, 0, skipped_now, 0)
    assert asyncio.run(_records(bootstrap, topic)) == after


def _post(api: Api, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return api.post_json(f"/api/v1/campaigns/{CAMPAIGN}/retries", body, TOKEN)


def test_two_api_processes_asked_at_once_write_one_round(campaign, tmp_path: Path):
    deployment, events, _ = campaign
    topic = deployment.settings().retry_requests_topic
    bootstrap = deployment.env["CA_KAFKA_BOOTSTRAP"]
    start = max(e["occurred_at"] for e in events) + 1000
    more = [{"type": "sent", "event_id": f"late-{i}-s", "message_id": f"late-{i}",
             "occurred_at": start + i, "campaign_id": CAMPAIGN, "variant": "B",
             "contact_id": f"late-{i}", "phone": PARIS, "outcome": "ACCEPTED"}
            for i in range(5)]
    more += [{"type": "delivery", "event_id": f"late-{i}-d", "message_id": f"late-{i}",
              "occurred_at": start + 500 + i, "status": "FAILED", "error_code": "30003"}
             for i in range(5)]
    deployment.cli("publish", str(_write(tmp_path / "more.jsonl", more)))
    # both select, then wait 3 s before writing: asked together, they overlap for sure
    deployment.env["CA_UNSAFE_RETRY_HOLD_SECONDS"] = "3"
    apis = [Api(deployment, free_port(), tmp_path / f"api-{n}.log") for n in range(2)]
    try:
        for api in apis:
            api.wait(lambda a=api: a.json("/readyz")["status"] == "ready", "readiness")
        apis[0].wait(lambda: _post(apis[0], {"dry_run": True})[1].get("requested") == 5,
                     "the late failures in the dry run")
        before = asyncio.run(_records(bootstrap, topic))
        assert _post(apis[1], {"dry_run": True})[0] == 200
        assert asyncio.run(_records(bootstrap, topic)) == before  # a dry run writes nothing
        answers: list[tuple[int, dict[str, Any]]] = []
        threads = [threading.Thread(target=lambda a=api, n=n: answers.append(
            _post(a, {"request_id": f"together-{n}", "reason": "twice"})))
            for n, api in enumerate(apis)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert sorted(status for status, _ in answers) == [200, 409], answers
        ((_, won),) = [(s, b) for s, b in answers if s == 200]
        assert won["requested"] == 5 and won["skipped"]["already_requested"] > 0
        after = asyncio.run(_records(bootstrap, topic))
        new_valid = {r: recs for r, recs in _valid(after).items() if r not in _valid(before)}
        assert list(new_valid) == [won["round_id"]]
        assert sorted(r["message_id"] for r in new_valid[won["round_id"]]) == [
            f"late-{i}" for i in range(5)]
        assert {r["requested_by"] for r in new_valid[won["round_id"]]} == {"api"}
        assert len(after) == len(before) + 10  # the loser's records are there, invalid
        status, repeat = _post(apis[1], {"request_id": won["request_id"]})
        assert status == 200 and repeat["repeated"] and repeat["requested"] == 5
        assert asyncio.run(_records(bootstrap, topic)) == after
        status, left = _post(apis[1], {})
        assert status == 200 and left["requested"] == 0 and left["round_id"] is None
    finally:
        for api in apis:
            api.stop()
        deployment.env.pop("CA_UNSAFE_RETRY_HOLD_SECONDS")
