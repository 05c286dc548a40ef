"""Existing topics that would break a guarantee are refused at start (issue 24 item 2;
the replication case is on the cluster, test_cluster.py): exit 2 and one line per
problem, nothing published. Its control: every other test starts on the topics
``ensure_topics`` creates."""

from __future__ import annotations

import asyncio
import json

import pytest

from streams.cli.demo import generate_campaign
from tests.integration.conftest import Deployment, new_topic

pytestmark = [pytest.mark.integration]


def test_a_table_topic_partitioned_apart_and_an_unwritable_input_are_refused(
        deployment: Deployment) -> None:
    settings = deployment.settings()
    bootstrap = settings.kafka_bootstrap
    events = deployment.root / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in generate_campaign("layout", 5)))
    sent = settings.input_topics["sent"]
    asyncio.run(new_topic(bootstrap, settings.message_events_topic, partitions=2))
    asyncio.run(new_topic(bootstrap, sent, partitions=4,
                          configs={"min.insync.replicas": "2"}))  # one replica here

    try:
        refused = deployment.cli("publish", str(events), check=False)
        assert refused.returncode == 2, refused.stderr
        assert (f"{settings.message_events_topic} has 2 partition(s), its table 4 "
                "(CA_PARTITIONS)") in refused.stderr
        assert f"{sent} has min.insync.replicas=2 but 1 replica(s)" in refused.stderr
        assert "Traceback" not in refused.stderr and "published" not in refused.stdout
    finally:
        asyncio.run(_delete(bootstrap, [settings.message_events_topic, sent]))


async def _delete(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()
