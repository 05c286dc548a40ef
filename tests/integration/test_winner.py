"""The winner decision end to end (issue 21 items 3 and 7) on a real broker, worker and
API process: a campaign whose A/B verdict names B is decided for B; a campaign with
no winner yet is refused (409 with the verdict's reasons) until forced with a
reason, which is recorded; a second decision, by the API or the CLI, answers 409
with the first; two deciders at once record one; the CLI refuses, forces and
answers the first the same way. Every record on the topic is
decoded with fastavro and the ``.avsc`` file alone (no project code), and equals
what the API answered.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.conftest import REPO, Deployment, free_port, read_topic
from tests.integration.test_api import Api
from tests.integration.test_pipeline import _write
from tests.integration.test_retries import _delete_topics, _earlier_record

pytestmark = pytest.mark.integration

TOKEN = "winner-test-token"  # noqa: S105 - a test value
AVSC = REPO / "schemas" / "winner_decision.v1.avsc"
# (sent, unique clickers) per variant: 10 % vs 30 % is a clear winner at 600 per arm
# (always-valid p ~ 0.003); 15 % vs 16 % at 200 per arm is not.
CAMPAIGNS = {"camp-win": {"A": (600, 60), "B": (600, 180)},
             "camp-even": {"A": (200, 30), "B": (200, 32)},
             "camp-cli": {"A": (100, 10), "B": (100, 12)}}


def _events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    t = 1_790_000_000_000
    for campaign, variants in CAMPAIGNS.items():
        for variant, (sent, clicks) in variants.items():
            for n in range(sent):
                mid = f"{campaign}-{variant}-{n}"
                t += 10
                events.append({"type": "sent", "event_id": f"{mid}-s", "message_id": mid,
                               "occurred_at": t, "campaign_id": campaign, "variant": variant,
                               "contact_id": f"{mid}-c", "phone": "+15550000000",
                               "outcome": "ACCEPTED"})
                events.append({"type": "delivery", "event_id": f"{mid}-d", "message_id": mid,
                               "occurred_at": t + 1, "status": "DELIVERED"})
                if n < clicks:  # a person, a minute after the message landed (domain.md 3b)
                    events.append({"type": "click", "event_id": f"{mid}-k", "message_id": mid,
                                   "occurred_at": t + 60_001, "link_id": "l1",
                                   "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 "
                                                 "like Mac OS X)"})
    return events


def _decode_with_the_avsc_alone(value: bytes) -> dict[str, Any]:
    """What a downstream service does with a copy of the .avsc and fastavro only: the
    value is Avro single-object encoding (docs/consumers.md): 0xC3 0x01, the 8-byte
    CRC-64-AVRO fingerprint of the schema's canonical form (the spec's byte order),
    then the schemaless body."""
    from fastavro import parse_schema, schemaless_reader
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    schema = parse_schema(json.loads(AVSC.read_text()))
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == bytes.fromhex(fingerprint(to_parsing_canonical_form(schema),
                                                    "CRC-64-AVRO"))
    record = schemaless_reader(io.BytesIO(value[10:]), schema, None)
    assert isinstance(record, dict)
    return record


async def _records(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, record) of every record on the topic, in each partition's order."""
    return [(r.key.decode(), _decode_with_the_avsc_alone(r.value))
            for r in await read_topic(bootstrap, topic)]


async def _retention(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    (resource,) = response.to_object()["resources"]
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]
            if e["config_names"] in ("retention.ms", "retention.bytes", "cleanup.policy")}


def _post(api: Api, campaign: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return api.post_json(f"/api/v1/campaigns/{campaign}/winner", body, TOKEN)


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Deployment, Api]]:
    root = tmp_path_factory.mktemp("winner")
    deployment = Deployment(kafka_bootstrap, root)
    deployment.env["CA_API_TOKEN"] = TOKEN
    worker = deployment.worker().start()
    api: Api | None = None
    try:
        worker.wait_ready()
        deployment.cli("publish", str(_write(root / "events.jsonl", _events())))
        api = Api(deployment, free_port(), root / "api.log")
        for campaign, variants in CAMPAIGNS.items():
            want = {v: {"sent": s, "unique_link_clicks": c, "unique_human_link_clicks": c}
                    for v, (s, c) in variants.items()}
            api.wait(lambda c=campaign, w=want: _variants(api, c) == w, f"{campaign}'s counts")
        yield deployment, api
    finally:
        if api is not None:
            api.stop()
        deployment.close()
        asyncio.run(_delete_topics(kafka_bootstrap, deployment.env["CA_TOPIC_PREFIX"],
                                   deployment.env["CA_APP_ID"]))


def _get(api: Api, path: str) -> tuple[int, Any]:
    code, _, body = api.get(path, token=TOKEN)
    return code, json.loads(body)


def _variants(api: Api, campaign: str) -> dict[str, dict[str, int]] | None:
    code, summary = _get(api, f"/api/v1/campaigns/{campaign}")
    if code != 200:
        return None
    return {name: {k: v[k] for k in ("sent", "unique_link_clicks", "unique_human_link_clicks")}
            for name, v in summary["variants"].items()}


def test_decide_refuse_force_and_second_decisions(live):
    deployment, api = live
    topic = deployment.settings().winner_decisions_topic
    bootstrap = deployment.env["CA_KAFKA_BOOTSTRAP"]
    assert _get(api, "/api/v1/campaigns/camp-win/winner")[0] == 404  # nothing decided yet
    win_ab = _get(api, "/api/v1/campaigns/camp-win/ab")[1]
    even_ab = _get(api, "/api/v1/campaigns/camp-even/ab")[1]
    assert win_ab["verdict"]["status"] == "winner" and win_ab["verdict"]["variant"] == "B"
    assert even_ab["verdict"]["status"] == "no_winner_yet"

    assert _post(api, "camp-win", {"variant": "Z", "reason": "x", "force": True})[0] == 400
    status, refused = _post(api, "camp-even", {"variant": "B", "reason": "looks better"})
    assert status == 409 and refused["error"] == "no_winner"
    assert refused["verdict"] == even_ab["verdict"]
    assert even_ab["verdict"]["reasons"][0] in refused["detail"]
    status, other = _post(api, "camp-win", {"variant": "A"})  # not the verdict's winner
    assert status == 409 and other["error"] == "no_winner"
    assert asyncio.run(_records(bootstrap, topic)) == []  # refusals write nothing

    status, won = _post(api, "camp-win", {"variant": "B", "reason": "clear winner"})
    assert status == 200, won
    assert (won["variant"], won["forced"], won["requested_by"]) == ("B", False, "api")
    assert won["statistics"] == win_ab  # the statistics as they stood
    assert (won["verdict_status"], won["verdict_variant"]) == ("winner", "B")
    assert won["verdict_p_value"] == win_ab["verdict"]["always_valid_p_value"] < 0.05
    assert {v["variant"]: (v["sent"], v["successes"]) for v in won["variants"]} == {
        "A": (600, 60), "B": (600, 180)}
    assert _get(api, "/api/v1/campaigns/camp-win/winner") == (200, won)

    status, forced = _post(api, "camp-even", {"variant": "B", "force": True,
                                              "reason": "launch date"})
    assert status == 200, forced
    assert forced["forced"] and forced["reason"] == "launch date"
    assert forced["verdict_status"] == "no_winner_yet" and forced["verdict_reasons"]

    status, second = _post(api, "camp-win", {"variant": "A", "force": True, "reason": "no"})
    assert status == 409 and second["error"] == "decided" and second["decision"] == won
    cli = deployment.cli("winner", "camp-even", "A", "--force", "--reason", "mine",
                         check=False)
    assert cli.returncode == 6 and json.loads(cli.stdout) == forced, cli.stderr
    assert "has a decision already" in cli.stderr

    records = asyncio.run(_records(bootstrap, topic))
    # kept for ever, never compacted: the first record stays the decision
    assert asyncio.run(_retention(bootstrap, topic)) == {
        "retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    assert sorted(key for key, _ in records) == ["camp-even", "camp-win"]
    by_key = dict(records)
    assert len(by_key) == len(records) == 2  # the 409s wrote nothing
    for key, answer in (("camp-win", won), ("camp-even", forced)):
        record = dict(by_key[key])
        assert json.loads(record.pop("statistics_json")) == answer["statistics"]
        assert record["decided_at"].timestamp() > 0  # a timestamp-millis, as the .avsc says
        record.pop("decided_at")
        assert record == {k: v for k, v in answer.items()
                          if k not in ("statistics", "decided_at")}
    # Negative control: the decoder refuses another schema's record (a retry request).
    with pytest.raises(AssertionError):
        _decode_with_the_avsc_alone(_earlier_record("m-1", "round", 0))


def test_two_deciders_at_once_record_one_and_the_cli_answers_the_first(live):
    from projections.ab import ab_statistics
    from streams.api.winner import WinnerDecidedError, decide_winner

    deployment, _ = live
    settings = deployment.settings()
    ab = {"campaign_id": "camp-race", "as_of": "2027-01-01T00:00:00.000Z",
          **ab_statistics({"A": {"sent": 600, "unique_link_clicks": 60,
                                 "unique_human_link_clicks": 60},
                           "B": {"sent": 600, "unique_link_clicks": 180,
                                 "unique_human_link_clicks": 180}})}
    barrier = threading.Barrier(2, timeout=60)
    answers: list[Any] = []

    def statistics() -> tuple[dict[str, Any], str]:
        barrier.wait()  # both have read the partition to its end: neither sees the other
        return ab, ab["as_of"]

    def decide(n: int) -> None:
        try:
            answers.append(asyncio.run(decide_winner(
                settings, "camp-race", statistics, variant="B", reason=f"r{n}", force=False,
                requested_by=f"cli:test-{n}")))
        except WinnerDecidedError as exc:
            answers.append(exc)

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    (won,) = [a for a in answers if isinstance(a, dict)]
    (lost,) = [a for a in answers if isinstance(a, WinnerDecidedError)]
    assert lost.decision == won
    records = asyncio.run(_records(deployment.env["CA_KAFKA_BOOTSTRAP"],
                                   settings.winner_decisions_topic))
    race = [r for key, r in records if key == "camp-race"]
    assert len(race) == 2  # the loser's record is there, and is not the first
    assert race[0]["decision_id"] == won["decision_id"] != race[1]["decision_id"]

    cli = deployment.cli("winner", "camp-win", "B", "--reason", "again", check=False)
    assert cli.returncode == 6 and json.loads(cli.stdout)["requested_by"] == "api"
    assert deployment.cli("winner", "nope", "B", check=False).returncode == 3
    assert deployment.cli("winner", "camp-cli", "C", "--force", "--reason", "x",
                          check=False).returncode == 2
    refused = deployment.cli("winner", "camp-cli", "B", check=False)
    assert refused.returncode == 6 and "no_winner_yet" in refused.stderr
    assert refused.stdout == ""
    forced = deployment.cli("winner", "camp-cli", "B", "--force", "--reason", "deadline")
    decided = json.loads(forced.stdout)
    assert decided["forced"] and decided["reason"] == "deadline"
    assert decided["requested_by"].startswith("cli:") and decided["variant"] == "B"
    assert decided["statistics"]["verdict"]["status"] == "no_winner_yet"
    assert decided["statistics_as_of"].endswith("Z")
