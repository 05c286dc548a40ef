"""The schema registry (issue 23) with real clients, on a real broker and a real registry.

The session's registry is ``deploy/registry/registry.sh`` on a port of its own (or the
one at ``CA_TEST_SCHEMA_REGISTRY_URL``). What downstream teams run reads the worker's
topics with no project code: confluent-kafka's ``AvroDeserializer`` (metrics and the
winner-decisions command topic, equal to the API's answers), an old reader schema
after a compatible change, chdb's ``AvroConfluent`` through the registry, and Debian's
``kcat`` fetching the raw records. A breaking change of our own making is refused and
the worker says so (exit 7). A private registry is stopped under a worker with a
Confluent-framed input record of an id it has not seen: the record waits, is counted
once the registry is back (which kept its ids across the restart), and never reaches
the dead-letter topic; an id the registry does not have is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import load_schemas
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import encode_record
from tests.integration.conftest import (
    REPO,
    Deployment,
    broker_ports,
    free_port,
    read_topic,
)
from tests.integration.test_api import TOKEN, Api
from tests.integration.test_pipeline import _write
from tests.integration.test_retries import _delete_topics
from tests.oracle import recount
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

REGISTRY_SH = REPO / "deploy" / "registry" / "registry.sh"
COUNTS = ("sent", "delivered", "failed", "replies", "link_clicks", "unique_link_clicks")


def _schema(name: str, version: int | None = None) -> str:
    """A schema file's text: the given version, else the newest."""
    versions = sorted(s.version for s in load_schemas() if s.name == name)
    return (REPO / "schemas" / f"{name}.v{version or versions[-1]}.avsc").read_text()


def _newest(name: str) -> int:
    return max(s.version for s in load_schemas() if s.name == name)


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _register(url: str, subject: str, schema: str) -> int:
    code, answer = _http("POST", f"{url}/subjects/{subject}/versions", {"schema": schema})
    assert code == 200, answer
    return int(answer["id"])


def _delete_subjects(url: str, prefix: str) -> None:
    code, subjects = _http("GET", f"{url}/subjects")
    for subject in subjects if code == 200 else []:
        if subject.startswith(prefix):
            _http("DELETE", f"{url}/subjects/{subject}")
            _http("DELETE", f"{url}/subjects/{subject}?permanent=true")


class PrivateRegistry:
    """A registry of one test's own (``registry.sh``, its data under ``root``), on a port
    of ``CA_TEST_BROKER_PORTS``' range, which the test may stop and start again."""

    def __init__(self, root: Path) -> None:
        self.port, _ = broker_ports()
        self.url = f"http://127.0.0.1:{self.port}/apis/ccompat/v7"
        self.dir = root / "registry"
        self.env = os.environ | {"CA_SCHEMA_REGISTRY_PORT": str(self.port),
                                 "CA_SCHEMA_REGISTRY_DIR": str(self.dir)}
        self.startup_s: list[float] = []

    def _sh(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(REGISTRY_SH), command], env=self.env, text=True,
                              capture_output=True, check=False, timeout=240)

    def start(self) -> PrivateRegistry:
        started = self._sh("start")
        if started.returncode != 0:
            pytest.fail(f"could not start the registry at {self.url}:\n{started.stderr}")
        assert started.stdout.splitlines()[-1] == f"CA_SCHEMA_REGISTRY_URL={self.url}"
        self.startup_s.append(float(re.findall(r"up in ([0-9.]+) s", started.stdout)[0]))
        return self

    def rss_mb(self) -> float:
        pid = (self.dir / "registry.pid").read_text().strip()
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.findall(r"VmRSS:\s+(\d+) kB", status)[0]) / 1024

    def stop(self) -> None:
        assert self._sh("stop").returncode == 0

    def clean(self) -> None:
        self._sh("clean")


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's registry URL: ``CA_TEST_SCHEMA_REGISTRY_URL``, else one started here."""
    given = os.environ.get("CA_TEST_SCHEMA_REGISTRY_URL")
    if given:
        yield given
        return
    registry = PrivateRegistry(tmp_path_factory.mktemp("session-registry")).start()
    print(f"session registry up in {registry.startup_s[0]} s, "  # noqa: T201 - the figure
          f"{registry.rss_mb():.0f} MB resident", flush=True)
    try:
        yield registry.url
    finally:
        registry.clean()


def _with_registry(deployment: Deployment, url: str) -> Deployment:
    deployment.env["CA_SCHEMA_REGISTRY_URL"] = url
    deployment.env["CA_API_TOKEN"] = TOKEN
    return deployment


def _cleanup(deployment: Deployment, url: str) -> None:
    deployment.close()
    asyncio.run(_delete_topics(deployment.env["CA_KAFKA_BOOTSTRAP"],
                               deployment.env["CA_TOPIC_PREFIX"], deployment.env["CA_APP_ID"]))
    _delete_subjects(url, deployment.env["CA_TOPIC_PREFIX"])


# --- compatibility -------------------------------------------------------------------


def _breaking_metrics_schema() -> str:
    """The newest campaign_metrics with a required field (no default) added: a reader
    of it cannot read what the worker writes, so FULL_TRANSITIVE refuses the worker's."""
    raw = json.loads(_schema("campaign_metrics"))
    raw["fields"].append({"name": "required_by_an_old_reader", "type": "string"})
    return json.dumps(raw)


def test_the_worker_refuses_to_start_when_the_registry_refuses_its_schema(
        kafka_bootstrap: str, schema_registry: str, tmp_path: Path):
    deployment = _with_registry(Deployment(kafka_bootstrap, tmp_path), schema_registry)
    subject = deployment.settings().campaign_metrics_topic + "-value"
    try:
        _register(schema_registry, subject, _breaking_metrics_schema())
        refused = deployment.cli("worker", "--web-port", str(free_port()), check=False)
        assert refused.returncode == 7, refused.stderr[-2000:]
        error = refused.stderr.strip().splitlines()[-1]
        assert error.startswith(f"error: the schema registry at {schema_registry} refuses "
                                f"campaign_metrics v{_newest('campaign_metrics')} for subject "
                                f"{subject} (compatibility FULL_TRANSITIVE)"), error
        assert "Traceback" not in refused.stderr
        # control: with the subject's history a compatible one, it starts (the API too,
        # which registers the command topics' schemas)
        _delete_subjects(schema_registry, deployment.env["CA_TOPIC_PREFIX"])
        _register(schema_registry, subject, _schema("campaign_metrics", 1))
        worker = deployment.worker().start()
        worker.wait_ready()
        code, versions = _http("GET", f"{schema_registry}/subjects/{subject}/versions")
        assert code == 200 and len(versions) == 2, versions
    finally:
        _cleanup(deployment, schema_registry)


# --- the ecosystem's clients -----------------------------------------------------------


@contextlib.contextmanager
def _deserializer(url: str, reader: str | None = None) -> Iterator[Any]:
    """confluent-kafka's AvroDeserializer (the writer's schema from the registry; read as
    ``reader`` when given) as ``decode(topic, value)``."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    with SchemaRegistryClient({"url": url}) as client:
        deserializer = AvroDeserializer(client, schema_str=reader)
        yield lambda topic, value: deserializer(value, SerializationContext(
            topic, MessageField.VALUE))


def _confluent_newest(bootstrap: str, topic: str, decode: Any) -> dict[str, tuple[int, int, Any]]:
    """{key: (partition, offset, decoded value)} of the topic's newest records, read with
    confluent-kafka's consumer from the start to the end of every partition."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{free_port()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        newest: dict[str, tuple[int, int, Any]] = {}
        done = {p for p, end in ends.items() if end == 0}
        while len(done) < len(ends):
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            newest[message.key().decode()] = (message.partition(), message.offset(),
                                              decode(topic, message.value()))
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return newest
    finally:
        consumer.close()


def _kcat(bootstrap: str, topic: str, partition: int, offset: int) -> bytes:
    fetched = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-p", str(partition), "-o", str(offset),
         "-c", "1", "-e", "-q", "-f", "%s"], capture_output=True, check=True, timeout=60)
    return fetched.stdout


def _chdb_avro_confluent(path: Path, url: str) -> list[dict[str, Any]]:
    import chdb

    columns = ("campaign_id, metrics.sent AS sent, metrics.delivered AS delivered, "
               "metrics.failed AS failed, metrics.link_clicks AS link_clicks")
    query = (f"SELECT {columns} FROM file('{path}', 'AvroConfluent') "  # noqa: S608 - ours
             f"SETTINGS format_avro_schema_registry_url = '{url}'")
    return [json.loads(line) for line in str(chdb.query(query, "JSONEachRow")).splitlines()]


@pytest.fixture(scope="module")
def campaign(kafka_bootstrap: str, schema_registry: str,
             tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Deployment, Api, list[dict[str, Any]]]]:
    """A worker and an API with the registry, the metrics subject holding campaign_metrics
    v1 before the worker registers the newest (a compatible change), a demo campaign
    counted, and one winner decision recorded through the API."""
    root = tmp_path_factory.mktemp("registry-clients")
    deployment = _with_registry(Deployment(kafka_bootstrap, root), schema_registry)
    subject = deployment.settings().campaign_metrics_topic + "-value"
    api: Api | None = None
    try:
        _register(schema_registry, subject, _schema("campaign_metrics", 1))
        worker = deployment.worker().start()
        worker.wait_ready()
        events = generate_campaign("reg-demo", 300, seed=11)
        deployment.cli("publish", str(_write(root / "events.jsonl", events)))
        expected = recount(events)["reg-demo"]
        deployment.wait_for_summary("reg-demo", {k: expected[k] for k in COUNTS},
                                    keys=lambda s: {k: s[k] for k in COUNTS})
        api = Api(deployment, free_port(), root / "api.log")
        api.wait(lambda: api.get("/api/v1/campaigns/reg-demo")[0] == 200, "the API's summary")
        code, decided = api.post_json("/api/v1/campaigns/reg-demo/winner",
                                      {"variant": "A", "force": True, "reason": "test"}, TOKEN)
        assert code in (200, 201), decided
        yield deployment, api, events
    finally:
        if api is not None:
            api.stop()
        _cleanup(deployment, schema_registry)


def test_confluent_kafka_decodes_the_metrics_and_command_topics_as_the_api_answers(
        campaign, schema_registry: str):
    from confluent_kafka.serialization import SerializationError

    deployment, api, _ = campaign
    settings, bootstrap = deployment.settings(), deployment.env["CA_KAFKA_BOOTSTRAP"]
    with _deserializer(schema_registry) as decode:
        metrics = _confluent_newest(bootstrap, settings.campaign_metrics_topic, decode)
        decisions = _confluent_newest(bootstrap, settings.winner_decisions_topic, decode)
        # negative control: the same bytes in the single-object encoding are refused
        partition, offset, _ = metrics["reg-demo"]
        raw = _kcat(bootstrap, settings.campaign_metrics_topic, partition, offset)
        with pytest.raises(SerializationError, match="(?i)magic"):
            decode(settings.campaign_metrics_topic, b"\xc3\x01" + bytes(8) + raw[5:])
    record = metrics["reg-demo"][2]
    summary = api.json("/api/v1/campaigns/reg-demo")
    for key in (*COUNTS, "pending", "opt_outs", "unique_repliers", "delivery_rate"):
        assert record["metrics"][key] == summary[key], key
    assert set(record["variants"]) == set(summary["variants"])
    for name, variant in record["variants"].items():
        assert {k: variant[k] for k in COUNTS} == {k: summary["variants"][name][k]
                                                   for k in COUNTS}
    decision = decisions["reg-demo"][2]
    answered = api.json("/api/v1/campaigns/reg-demo/winner")
    assert (decision["variant"], decision["forced"], decision["reason"]) == ("A", True, "test")
    for key in ("decision_id", "variant", "forced", "reason", "requested_by", "verdict_status",
                "control"):
        assert decision[key] == answered[key], key
    assert json.loads(decision["statistics_json"]) == answered["statistics"]


def test_an_old_reader_schema_keeps_decoding_after_a_compatible_change(
        campaign, schema_registry: str):
    deployment, api, _ = campaign
    topic = deployment.settings().campaign_metrics_topic
    code, versions = _http("GET", f"{schema_registry}/subjects/{topic}-value/versions")
    assert code == 200 and len(versions) == 2, versions  # v1, then the worker's newest
    with _deserializer(schema_registry, _schema("campaign_metrics", 1)) as old_reader:
        old = _confluent_newest(deployment.env["CA_KAFKA_BOOTSTRAP"], topic, old_reader)
    record = old["reg-demo"][2]
    summary = api.json("/api/v1/campaigns/reg-demo")
    assert {k: record["metrics"][k] for k in COUNTS} == {k: summary[k] for k in COUNTS}
    assert "retries" not in record["metrics"]  # read as v1: the newer fields are skipped


def test_kcat_fetches_the_raw_records_and_chdb_reads_them_through_the_registry(
        campaign, schema_registry: str, tmp_path: Path):
    deployment, api, events = campaign
    bootstrap, topic = deployment.env["CA_KAFKA_BOOTSTRAP"], \
        deployment.settings().campaign_metrics_topic
    on_topic = [r for r in asyncio.run(read_topic(bootstrap, topic)) if r.key == b"reg-demo"]
    newest = on_topic[-1]
    raw = _kcat(bootstrap, topic, newest.partition, newest.offset)
    assert raw == newest.value
    code, latest = _http("GET", f"{schema_registry}/subjects/{topic}-value/versions/latest")
    assert code == 200
    assert raw[:5] == b"\x00" + int(latest["id"]).to_bytes(4, "big")  # the Confluent framing
    path = tmp_path / "newest.avro"
    path.write_bytes(raw)
    (row,) = _chdb_avro_confluent(path, schema_registry)
    expected = recount(events)["reg-demo"]
    assert row == {"campaign_id": "reg-demo", **{k: expected[k] for k in
                                                 ("sent", "delivered", "failed", "link_clicks")}}
    # negative control: the same record in the single-object encoding is not AvroConfluent
    single = tmp_path / "single.avro"
    single.write_bytes(b"\xc3\x01" + raw[5:])
    with pytest.raises(Exception, match="(?i)magic|confluent|schema"):
        _chdb_avro_confluent(single, schema_registry)


def test_the_registry_consumer_of_docs_consumers_md_prints_the_apis_numbers(
        campaign, schema_registry: str, tmp_path: Path):
    deployment, api, _ = campaign
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "consumers.md").read_text(), re.S)
    (code,) = [b for b in blocks if b.startswith("# registry_consumer.py")]
    script, out = tmp_path / "registry_consumer.py", tmp_path / "out.jsonl"
    script.write_text(code)
    summary = api.json("/api/v1/campaigns/reg-demo")
    want = {k: summary[k] for k in COUNTS}

    def newest() -> dict[str, Any] | None:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        mine = [line["value"]["metrics"] for line in lines if line["key"] == "reg-demo"]
        return {k: mine[-1][k] for k in COUNTS} if mine else None

    with out.open("wb") as sink:
        consumer = subprocess.Popen(
            [sys.executable, str(script), deployment.env["CA_KAFKA_BOOTSTRAP"], schema_registry,
             deployment.settings().campaign_metrics_topic, f"doc-reader-{free_port()}"],
            stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_until(lambda: newest() == want, "the doc's consumer to print the API's numbers",
                   90, 0.5, explain=lambda: f"{newest()} != {want}\n{out.read_text()[-2000:]}")
    finally:
        consumer.terminate()
        consumer.wait(30)


# --- a registry that cannot be reached ---------------------------------------------------


def _sent_record(event_id: str, message_id: str, campaign_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "message_id": message_id,
            "occurred_at": 1_790_000_000_000, "campaign_id": campaign_id, "variant": None,
            "contact_id": "contact-1", "contact_name": None, "phone": "+33612345678",
            "outcome": "ACCEPTED", "error_code": None, "error_description": None}


def _framed(schema_id: int, record: dict[str, Any]) -> bytes:
    single_object = encode_record("sent", record)
    return b"\x00" + schema_id.to_bytes(4, "big") + single_object[10:]


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_a_registry_outage_holds_confluent_records_and_never_dead_letters_them(
        kafka_bootstrap: str, tmp_path: Path):
    registry = PrivateRegistry(tmp_path).start()
    deployment = _with_registry(Deployment(kafka_bootstrap, tmp_path), registry.url)
    settings = deployment.settings()
    sent_topic, dead = settings.input_topics["sent"], settings.dead_letter_topic
    bootstrap = deployment.env["CA_KAFKA_BOOTSTRAP"]
    try:
        worker = deployment.worker().start()
        worker.wait_ready()
        schema_id = _register(registry.url, f"{sent_topic}-value", _schema("sent"))
        registry.stop()
        asyncio.run(_produce(bootstrap, sent_topic,
                             [(b"m-held", _framed(schema_id, _sent_record("e1", "m-held",
                                                                          "reg-outage")))]))
        wait_until(lambda: f"schema id {schema_id} of a record on" in worker.log.read_text(),
                   "the worker to say why the record waits", 90, 0.5, explain=worker.tail)
        assert "decoding waits" in worker.log.read_text()
        assert deployment.summary("reg-outage") is None
        assert asyncio.run(read_topic(bootstrap, dead)) == []
        registry.start()  # same port, same data: the id is still the sent schema's
        deployment.wait_for_summary("reg-outage", {"sent": 1},
                                    keys=lambda s: {"sent": s["sent"]})
        assert asyncio.run(read_topic(bootstrap, dead)) == []
        # an id the registry does not have: dead-lettered, the id in a header
        missing = 987_654
        bad = _framed(missing, _sent_record("e2", "m-bad", "reg-outage"))
        asyncio.run(_produce(bootstrap, sent_topic, [(b"m-bad", bad)]))
        (letter,) = wait_until(lambda: asyncio.run(read_topic(bootstrap, dead)),
                               "the unknown id's dead letter", 90, 0.5, explain=worker.tail)
        headers = {k: v.decode() for k, v in letter.headers}
        assert letter.value == bad
        assert headers["schema-id"] == str(missing)
        assert headers["reason"] == (f"schema id {missing}: the schema registry has no "
                                     "Avro schema under it")
        assert deployment.summary("reg-outage")["sent"] == 1
        # the registry kept its ids across the restart; control: a new data dir has none
        code, answer = _http("GET", f"{registry.url}/schemas/ids/{schema_id}")
        assert code == 200 and json.loads(answer["schema"])["name"] == "MessageSent", answer
        registry.clean()
        registry.start()
        assert _http("GET", f"{registry.url}/schemas/ids/{schema_id}")[0] == 404
        print(f"registry start-up: {registry.startup_s} s; "  # noqa: T201 - the figures
              f"{registry.rss_mb():.0f} MB resident", flush=True)
    finally:
        deployment.close()
        registry.clean()
        asyncio.run(_delete_topics(bootstrap, deployment.env["CA_TOPIC_PREFIX"],
                                   deployment.env["CA_APP_ID"]))

