"""Kafka security on the real broker's SASL_SSL listener (deploy/kafka/kafka.sh: SCRAM
users admin, worker and downstream, TLS with the CA kafka.sh generated, KRaft ACLs).

The session broker's data dir holds the CA and the passwords: ``.run/kafka-test`` for
the broker the session starts, ``CA_TEST_KAFKA_DIR`` with ``CA_TEST_KAFKA_BOOTSTRAP``.
Each test grants the ACLs of its own deployment (topic prefix, app id) with
``kafka.sh acls``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAuthorizationFailedError, for_code

from streams.cli.admin import ensure_topics
from streams.kafka_security import client_options
from streams.settings import Settings, settings_of
from tests.integration.conftest import CLI, KAFKA_SH, REPO, Deployment
from tests.integration.test_pipeline import _summary_and_export
from tests.unit.cli.test_unreachable import problems

pytestmark = pytest.mark.integration


@dataclass
class SecureBroker:
    plaintext: str  # the session's bootstrap (PLAINTEXT, ANONYMOUS is a super user)
    secure: str  # host:port of the SASL_SSL listener
    dir: Path

    def env(self, user: str, password_file: Path | None = None) -> dict[str, str]:
        """The variables a process connecting as ``user`` gets (docs/security.md)."""
        return {"CA_KAFKA_BOOTSTRAP": self.secure, "CA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CA_KAFKA_SSL_CAFILE": str(self.dir / "secure" / "ca.crt"),
                "CA_KAFKA_USERNAME": user,
                "CA_KAFKA_PASSWORD_FILE": str(password_file or
                                              self.dir / "secure" / f"{user}.password")}

    def grant(self, prefix: str, app_id: str) -> None:
        """The worker's and downstream's ACLs for one deployment."""
        env = os.environ | {"CA_KAFKA_BOOTSTRAP": self.plaintext, "CA_KAFKA_DIR": str(self.dir),
                            "CA_TOPIC_PREFIX": prefix, "CA_APP_ID": app_id}
        done = subprocess.run(["bash", str(KAFKA_SH), "acls"], env=env, text=True,
                              capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            pytest.fail(f"kafka.sh acls failed:\n{done.stderr}")


@pytest.fixture(scope="session")
def secure_broker(kafka_bootstrap: str) -> SecureBroker:
    given = os.environ.get("CA_TEST_KAFKA_BOOTSTRAP")
    if given and not os.environ.get("CA_TEST_KAFKA_DIR"):
        pytest.fail("CA_TEST_KAFKA_BOOTSTRAP is set: set CA_TEST_KAFKA_DIR to that broker's "
                    "CA_KAFKA_DIR too (its CA and passwords are there)")
    kdir = Path(os.environ["CA_TEST_KAFKA_DIR"]) if given else REPO / ".run" / "kafka-test"
    config = (kdir / "server.properties").read_text()
    found = re.search(r"^listeners=.*SASL_SSL://([^,\s]+)", config, re.MULTILINE)
    if found is None:
        pytest.fail(f"the broker of {kdir} has no SASL_SSL listener (started by an older "
                    "kafka.sh, or with CA_KAFKA_SECURE_PORT=off?)")
    return SecureBroker(kafka_bootstrap, found.group(1), kdir)


def _secured(deployment: Deployment, secure_broker: SecureBroker, user: str) -> None:
    secure_broker.grant(deployment.env["CA_TOPIC_PREFIX"], deployment.env["CA_APP_ID"])
    deployment.env.update(secure_broker.env(user))


async def _create(settings: Settings, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 2, 1) for t in topics])
    finally:
        await admin.close()


async def _produce(settings: Settings, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                **client_options(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k", partition=0)
    finally:
        await producer.stop()


async def _read(settings: Settings, topic: str) -> list[bytes | None]:
    """Partition 0 of ``topic`` from its start; a topic the user may not describe raises
    its error (aiokafka's consumer alone would just see nothing)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **client_options(settings))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise for_code(described["error_code"])(topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes | None] = []
        while len(values) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values += [r.value for r in batch.get(tp, [])]
        return values
    finally:
        await consumer.stop()


def test_pipeline_over_sasl_ssl_as_the_worker_principal(deployment: Deployment,
                                                        secure_broker: SecureBroker,
                                                        tmp_path: Path) -> None:
    """test_pipeline's end-to-end check with every Kafka client on SASL_SSL: the worker
    (and its sink process) as ``worker``, which may only read the inputs, so they are
    created and published by ``admin`` (the CLI: publish, summary)."""
    _secured(deployment, secure_broker, "admin")
    asyncio.run(_create(deployment.settings(), list(deployment.settings().input_topics.values())))
    make_worker = deployment.worker

    def as_worker(web_port: int | None = None):  # type: ignore[no-untyped-def]
        worker = make_worker(web_port)
        worker.env = worker.env | secure_broker.env("worker")
        return worker

    deployment.worker = as_worker  # type: ignore[method-assign]
    _summary_and_export(deployment, tmp_path)
    log = deployment.workers[0].log.read_text(errors="replace")
    assert "not authorized" not in log and "AuthorizationFailed" not in log  # ACLs suffice


def test_downstream_reads_the_metrics_and_is_refused_the_inputs(
        kafka_bootstrap: str, secure_broker: SecureBroker) -> None:
    tag = uuid.uuid4().hex[:10]
    base = {"CA_TOPIC_PREFIX": f"t{tag}.", "CA_APP_ID": f"ca-test-{tag}"}
    secure_broker.grant(base["CA_TOPIC_PREFIX"], base["CA_APP_ID"])
    admin, worker, downstream = (settings_of(base | secure_broker.env(user))
                                 for user in ("admin", "worker", "downstream"))
    sent, metrics = admin.input_topics["sent"], admin.campaign_metrics_topic

    async def scenario() -> None:
        await _create(admin, [sent, metrics])
        await _produce(admin, sent, b"an input")
        await _produce(worker, metrics, b"a snapshot")  # the worker owns its outputs

        assert await _read(downstream, metrics) == [b"a snapshot"]
        with pytest.raises(TopicAuthorizationFailedError):
            await _read(downstream, sent)
        with pytest.raises(TopicAuthorizationFailedError):  # it may only read
            await _produce(downstream, metrics, b"forged")
        # negative control: the same read as the worker, which may read the inputs
        assert await _read(worker, sent) == [b"an input"]
        with pytest.raises(TopicAuthorizationFailedError):  # ...but not write them
            await _produce(worker, sent, b"forged")

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(_delete(settings_of({"CA_KAFKA_BOOTSTRAP": kafka_bootstrap}),
                            [sent, metrics]))


def test_created_topics_take_min_insync_replicas_from_settings(kafka_bootstrap: str) -> None:
    """On one broker only ``min.insync.replicas`` can differ from the broker's default
    (1): 2 here, read back from the broker for every topic ``ensure_topics`` creates."""
    tag = uuid.uuid4().hex[:10]
    settings = settings_of({"CA_KAFKA_BOOTSTRAP": kafka_bootstrap, "CA_TOPIC_PREFIX": f"t{tag}.",
                            "CA_APP_ID": f"ca-test-{tag}", "CA_TOPIC_MIN_INSYNC_REPLICAS": "2"})
    topics = [*settings.input_topics.values(), *settings.internal_topics,
              settings.dead_letter_topic, settings.campaign_metrics_topic,
              settings.window_metrics_topic, settings.retry_requests_topic,
              settings.winner_decisions_topic]

    async def configs() -> dict[str, str]:
        await ensure_topics(settings)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None})
                 for t in topics])
        finally:
            await admin.close()
        return {resource[3]: entry[1] for response in responses
                for resource in response.resources for entry in resource[4]
                if entry[0] == "min.insync.replicas"}

    try:
        assert asyncio.run(configs()) == dict.fromkeys(topics, "2")
    finally:
        asyncio.run(_delete(settings, topics))


async def _delete(settings: Settings, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


@pytest.mark.parametrize("command", ["worker", "summary"])
def test_a_wrong_password_is_one_line_and_exit_4(command: str, deployment: Deployment,
                                                 secure_broker: SecureBroker,
                                                 tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    env = deployment.env | secure_broker.env("worker", wrong)
    args = {"worker": ["worker", "--web-port", "0"], "summary": ["summary", "c"]}[command]

    result = subprocess.run([*CLI, *args], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)

    assert problems(result) == []
    assert "refused user 'worker' (SCRAM-SHA-512 over SASL_SSL)" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout


def test_a_broker_certificate_the_ca_file_does_not_vouch_for_is_exit_4(
        deployment: Deployment, secure_broker: SecureBroker, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=another CA", "-keyout", str(tmp_path / "other-ca.key"),
                    "-out", str(other_ca)], check=True, capture_output=True, timeout=60)
    env = deployment.env | secure_broker.env("worker") | {"CA_KAFKA_SSL_CAFILE": str(other_ca)}

    result = subprocess.run([*CLI, "summary", "c"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)

    assert problems(result) == []
    assert "TLS with Kafka at" in result.stderr and "CERTIFICATE_VERIFY_FAILED" in result.stderr
