"""A write the broker refuses stops the worker before any commit covers its input
(streams/engine/delivery_guard.py), and nothing is lost once the broker takes the writes again.

The broker is made to refuse every ``messages`` changelog record: the changelog
topic is created before the worker starts with ``max.message.bytes`` smaller than
any message state. The negative control runs the same with the guard off and
shows what it prevents: input offsets committed although none of the state
writes that input produced reached the changelog.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.cli.demo import generate_campaign
from streams.engine.delivery_guard import EXIT_DELIVERY_FAILED, UNSAFE_ENV
from streams.settings import Settings
from tests.integration.conftest import Deployment
from tests.oracle import recount
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SUMMARY_KEYS = ("sent", "delivered", "failed", "pending", "replies", "link_clicks")
TOO_SMALL = "120"  # bytes: every message state is larger
DEFAULT_MAX = "1048588"  # the broker's default max.message.bytes


def _changelog(settings: Settings) -> str:
    return f"{settings.app_id}-messages-changelog"


async def _refuse_states(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(
            _changelog(settings), settings.partitions, 1,
            topic_configs={"cleanup.policy": "compact", "max.message.bytes": TOO_SMALL})])
    finally:
        await admin.close()


async def _accept_states(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, _changelog(settings),
            configs={"cleanup.policy": "compact", "max.message.bytes": DEFAULT_MAX})])
    finally:
        await admin.close()


async def _positions(settings: Settings) -> tuple[int, int]:
    """(input records the group has committed, records in the messages changelog)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        inputs = [TopicPartition(topic, p) for topic in settings.input_topics.values()
                  for p in range(settings.partitions)]
        committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=inputs)
        changelog = [TopicPartition(_changelog(settings), p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(changelog)
        return (sum(max(meta.offset, 0) for meta in committed.values()),
                sum(ends.values()))
    finally:
        await consumer.stop()
        await admin.close()


def _publish(deployment: Deployment, tmp_path: Path) -> list[dict]:
    events = generate_campaign("camp-guard", 150, seed=21, duplicate_rate=0.1)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = deployment.cli("publish", str(path))
    assert f"published {len(events)} event(s)" in result.stdout
    return events


def test_a_refused_state_write_stops_the_worker_before_any_commit(
        deployment: Deployment, tmp_path: Path) -> None:
    settings = deployment.settings()
    asyncio.run(_refuse_states(settings))
    worker = deployment.worker().start()
    worker.wait_ready()
    events = _publish(deployment, tmp_path)

    assert worker.proc is not None
    try:
        code = worker.proc.wait(60)
    except Exception:
        pytest.fail(f"the worker kept running with its state writes refused:\n{worker.tail()}")
    assert code == EXIT_DELIVERY_FAILED, worker.tail()
    assert "was not delivered" in worker.log.read_text()
    committed, written = asyncio.run(_positions(settings))
    assert (committed, written) == (0, 0)

    # The broker takes state writes again: a new worker processes everything, exactly.
    asyncio.run(_accept_states(settings))
    deployment.worker().start().wait_ready()
    want = recount(events)["camp-guard"]
    deployment.wait_for_summary("camp-guard", {k: want[k] for k in SUMMARY_KEYS},
                                keys=lambda s: {k: s[k] for k in SUMMARY_KEYS})
    committed, written = _wait_committed(settings)
    assert committed > 0 and written > 0


def _wait_committed(settings: Settings, timeout: float = 60) -> tuple[int, int]:
    """(committed input records, changelog records) once the group committed any."""

    def committed() -> tuple[int, int] | None:
        positions = asyncio.run(_positions(settings))
        return positions if positions[0] > 0 else None

    found = wait_until(committed, "the worker group to commit any input", timeout, 1)
    assert found is not None
    return found


def test_negative_control_without_the_guard_input_is_committed_without_its_writes(
        deployment: Deployment, tmp_path: Path) -> None:
    """With the guard off (Faust's own behaviour), the same refusal goes unseen: the
    worker commits the input although no state write reached the changelog, so a
    restart would restore none of that state."""
    deployment.env[UNSAFE_ENV] = "1"
    settings = deployment.settings()
    asyncio.run(_refuse_states(settings))
    worker = deployment.worker().start()
    worker.wait_ready()
    _publish(deployment, tmp_path)
    committed, written = _wait_committed(settings)
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    assert committed > 0 and written == 0, (committed, written)


def test_publish_reports_records_the_broker_refuses(deployment: Deployment,
                                                    tmp_path: Path) -> None:
    """``publish`` counts a record as published only once the broker took it: here
    the reply topic refuses every record (too large), and those lines are reported."""
    settings = deployment.settings()

    async def small_reply_topic() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(
                settings.input_topics["reply"], settings.partitions, 1,
                topic_configs={"max.message.bytes": TOO_SMALL})])
        finally:
            await admin.close()

    asyncio.run(small_reply_topic())
    events = generate_campaign("camp-refused", 40, seed=3)
    replies = [n for n, e in enumerate(events, start=1) if e["type"] == "reply"]
    assert replies
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = deployment.cli("publish", str(path), check=False)
    assert result.returncode != 0
    assert (f"published {len(events) - len(replies)} event(s); "
            f"rejected {len(replies)} line(s)") in result.stdout
    refused = [line for line in result.stderr.splitlines() if "not delivered to Kafka" in line]
    assert [int(line.split()[1].rstrip(":")) for line in refused] == replies
    assert "MessageSizeTooLarge" in refused[0]
