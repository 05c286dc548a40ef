"""Topic creation and small Kafka reads used by the CLI (aiokafka at the edge)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from streams.kafka_security import client_options, describe
from streams.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)


async def _metadata(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


async def wait_for_kafka(bootstrap: str, *, interval: float = 1.0, say_every: float = 15.0,
                         probe: Callable[[str], Awaitable[None]] = _metadata) -> int:
    """Return once Kafka at ``bootstrap`` answers a metadata request, however long that
    takes: a worker started before its broker waits for it (and says so, every
    ``say_every`` seconds) instead of exiting and being restarted in a loop. Returns how
    many attempts failed."""
    loop = asyncio.get_running_loop()
    failed, said = 0, -say_every
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # its "Unable connect" each try: ours says it
    try:
        while True:
            try:
                await asyncio.wait_for(probe(bootstrap), 15)
                break
            except (KafkaError, OSError, TimeoutError) as exc:
                failed += 1
                if loop.time() - said >= say_every:
                    said = loop.time()
                    name, text = type(exc).__name__, str(exc)
                    reason = text if text.startswith(name) else f"{name}: {text}".rstrip(": ")
                    log.warning("waiting for Kafka at %s (%s); trying again every %g s",
                                bootstrap, reason, interval)
            await asyncio.sleep(interval)
    finally:
        client_log.setLevel(level)
    if failed:
        log.warning("Kafka at %s answers, after %d failed attempt(s)", bootstrap, failed)
    return failed


class TopicLayoutError(ConfigurationError):
    """A topic this system uses exists with a replication, ``min.insync.replicas`` or
    partitioning that breaks its guarantees (exit 2 at start, nothing consumed)."""


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> Settings:
    """Create the input, internal, dead-letter, metrics and command topics if they are missing,
    and return once the broker's metadata shows every one of them; refuse topics that exist
    with a layout that breaks the guarantees (``TopicLayoutError``). Returns ``settings``
    with the replication and ``min.insync.replicas`` used (``Settings.replication`` of the
    brokers that answer when the settings leave them empty).

    The worker's own internal topics and its tables' changelogs are created here too,
    before Faust subscribes: a consumer that subscribes to a missing topic may not
    notice it appear for minutes (metadata max age; a leader that missed a changelog
    assigned none of it, and a takeover never caught up). "Created" is not yet
    "visible": a group joined in between was seen assigning nothing at all ("Ignoring
    missing topic") and then idling, so the wait is part of the job.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **client_options(settings))
    await admin.start()
    try:
        plain = [*settings.input_topics.values(), *settings.internal_topics,
                 settings.dead_letter_topic, settings.retry_requests_topic]
        compacted = [settings.campaign_metrics_topic, settings.window_metrics_topic,
                     *settings.changelog_topics]
        # a decision is the campaign's first record, for good: kept for ever, not compacted
        # (compaction would keep a campaign's last record, not its first)
        kept = [settings.winner_decisions_topic]
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        replicas, min_insync = settings.replication(brokers)
        settings = dataclasses.replace(settings, topic_replication_factor=replicas,
                                       topic_min_insync_replicas=min_insync)
        ours = [*plain, *compacted, *kept]
        problems = await _layout_problems(admin, settings, [t for t in ours if t in existing])
        if problems:
            raise TopicLayoutError(
                "existing topics would break exactly-once metrics or acks=all durability:\n  "
                + "\n  ".join(problems) + "\nfix the topics (kafka-reassign-partitions, "
                "kafka-configs; docs/operations.md, running on a cluster) or the settings")
        insync = {"min.insync.replicas": str(min_insync)}
        wanted = [NewTopic(name, settings.partitions, replicas, topic_configs=insync)
                  for name in plain if name not in existing]
        wanted += [
            NewTopic(name, settings.partitions, replicas,
                     topic_configs={**insync, "cleanup.policy": "compact"})
            for name in compacted if name not in existing
        ]
        wanted += [NewTopic(name, settings.partitions, replicas,
                            topic_configs={**insync, "retention.ms": "-1",
                                           "retention.bytes": "-1"})
                   for name in kept if name not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                _refused(await admin.create_topics(wanted), settings)
        await _wait_visible(admin, ours, timeout)
    finally:
        await admin.close()
    return settings


async def _layout_problems(admin: AIOKafkaAdminClient, settings: Settings,
                           topics: list[str]) -> list[str]:
    """What in the existing ``topics`` breaks a guarantee: fewer replicas or a lower
    ``min.insync.replicas`` than the settings' (an acknowledged write could be lost with
    one broker), a ``min.insync.replicas`` above the replicas (no acks=all write could
    succeed), a table's source and changelog partitioned apart (a restored partition
    would not be the one the worker folds). Inputs partitioned unlike ``message-events``
    only cost a hop through it (docs/exactness.md, step 1): a warning."""
    if not topics:
        return []
    want_replicas = settings.topic_replication_factor or 1
    want_insync = settings.topic_min_insync_replicas or 1
    problems: list[str] = []
    partitions: dict[str, int] = {}
    replicas: dict[str, int] = {}
    for described in await admin.describe_topics(topics):
        parts = described["partitions"]
        if described["error_code"] != 0 or not parts:
            continue  # being created or deleted right now: left to the wait
        name = described["topic"]
        partitions[name] = len(parts)
        replicas[name] = min(len(p["replicas"]) for p in parts)
        if replicas[name] < want_replicas:
            problems.append(f"{name} has {replicas[name]} replica(s), fewer than the "
                            f"{want_replicas} required (CA_TOPIC_REPLICATION_FACTOR)")
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, {"min.insync.replicas": None})
         for name in replicas])
    for response in responses:
        for resource in response.resources:
            name = resource[3]
            for entry in resource[4]:
                if entry[0] != "min.insync.replicas" or entry[1] is None:
                    continue
                value = int(entry[1])
                if value < want_insync:
                    problems.append(f"{name} has min.insync.replicas={value}, below the "
                                    f"{want_insync} required (CA_TOPIC_MIN_INSYNC_REPLICAS)")
                elif value > replicas[name]:
                    problems.append(f"{name} has min.insync.replicas={value} but "
                                    f"{replicas[name]} replica(s): no acks=all write succeeds")
    messages_log, contributions_log = settings.changelog_topics
    for source, changelog in ((settings.message_events_topic, messages_log),
                              (settings.message_updates_topic, contributions_log)):
        for name in (source, changelog):
            if name in partitions and partitions[name] != settings.partitions:
                problems.append(f"{name} has {partitions[name]} partition(s), its table "
                                f"{settings.partitions} (CA_PARTITIONS): the table's "
                                f"{source} and {changelog} must be partitioned alike")
    homes = partitions.get(settings.message_events_topic, settings.partitions)
    for name in settings.input_topics.values():
        if name in partitions and partitions[name] != homes:
            log.warning("input %s has %d partition(s), %s %d: each of its records takes "
                        "a hop through %s", name, partitions[name],
                        settings.message_events_topic, homes, settings.message_events_topic)
    return problems


def _refused(response: Any, settings: Settings) -> None:
    """Raise for topics the broker refused to create for lack of rights (its ACLs): the
    wait for them to appear would only time out. Other errors are left to that wait."""
    refused = sorted(error[0] for error in response.topic_errors
                     if error[1] in (TopicAuthorizationFailedError.errno,
                                     ClusterAuthorizationFailedError.errno))
    if refused:
        raise KafkaError(f"{describe(settings)} may not create the missing topic(s) "
                         f"{', '.join(refused)}; create them with a user that may (the "
                         "input topics belong to their producers: docs/security.md)")


async def _wait_visible(admin: AIOKafkaAdminClient, topics: list[str], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(topics)
        missing = sorted(d["topic"] for d in described
                         if d["error_code"] != 0 or not d["partitions"])
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaError(f"topics not visible after {timeout:.0f}s: {', '.join(missing)}")
        await asyncio.sleep(0.2)


async def read_topic(settings: Settings, topic: str, timeout: float = 30.0
                     ) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic from the beginning to its current end, no group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        **client_options(settings),
    )
    await consumer.start()
    try:
        partitions = await _partitions(settings, topic)
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        out: list[tuple[bytes | None, bytes | None]] = []
        remaining = {tp for tp in partitions if end[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while remaining and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                out.extend((r.key, r.value) for r in records)
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end in {timeout:.0f}s")
        return out
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **client_options(settings))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def latest_summaries(settings: Settings) -> dict[str, dict[str, Any]]:
    """The newest metrics snapshot of every campaign, from the compacted metrics topic.

    Whichever worker holds a campaign's state published it there, so this answers
    the same whatever the partition assignment.
    """
    from streams.codecs.output_avro import decode_campaign_metrics

    latest: dict[str, dict[str, Any]] = {}
    for _key, value in await read_topic(settings, settings.campaign_metrics_topic):
        if value is None:
            continue
        summary = decode_campaign_metrics(value)
        latest[summary["campaign_id"]] = summary  # one key, one partition: offset order
    return latest


async def group_lag(settings: Settings, attempts: int = 30) -> int:
    """Records of the input and internal topics the worker group has not committed yet."""
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                    **client_options(settings))
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
            break
        except KafkaError as exc:  # e.g. the coordinator of a brand-new group
            if not exc.retriable or attempt == attempts - 1:
                raise
            await asyncio.sleep(1.0)
        finally:
            await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                **client_options(settings))
    await consumer.start()
    try:
        topics = [*settings.input_topics.values(), *settings.internal_topics]
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
