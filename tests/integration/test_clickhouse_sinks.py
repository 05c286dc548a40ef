"""The ClickHouse sinks on the real broker: killed between insert and commit, and
ClickHouse unavailable for a while; every check has its negative control.

The sinks are driven directly (no Faust worker): the test produces what the
worker's publishers and stages would: the input events to the input topics and
the message versions (folded here with the projections) to ``message-updates``.

Exactly-once is proved on the stored rows: the raw ``events`` table keeps one
row per source record, so ``count() = uniqExact(source_topic, source_partition,
source_offset) = records produced``; FINAL counts equal the distinct event and
message ids; SQL metrics equal the oracle's recount.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from projections.message import MessageState, apply_event
from projections.message_log import message_log_row
from projections.metrics import message_contribution
from sinks.chdb_store import ChdbStore
from streams.cli.admin import ensure_topics
from streams.cli.demo import generate_campaign
from streams.codecs import state as serde
from streams.codecs.input_avro import parse_json_line
from streams.settings import Settings, settings_of
from streams.sink_runtime.runner import UNSAFE_NO_DEDUP_ENV, ClickHouseEventsSink, ClickHouseSink
from streams.telemetry import Telemetry
from tests import oracle
from tests.integration.conftest import free_port
from tests.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = 1_714_564_800_000

# Runs both sinks; SIGKILLs itself right after the events sink's N-th insert,
# before that batch's offsets are committed (argv[1]; 0 = never).
SINK_CHILD = """
import asyncio, os, signal, sys
from streams.settings import load_settings
from streams.sink_runtime.runner import ClickHouseEventsSink, ClickHouseSink, run_restarting
from streams.telemetry import Telemetry

crash_after = int(sys.argv[1])

class CrashingEventsSink(ClickHouseEventsSink):
    writes = 0

    async def _write(self, plans):
        await super()._write(plans)
        CrashingEventsSink.writes += 1
        if CrashingEventsSink.writes == crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

async def main():
    settings, telemetry = load_settings(), Telemetry()
    await asyncio.gather(run_restarting(ClickHouseSink(settings, telemetry), telemetry, 1),
                         run_restarting(CrashingEventsSink(settings, telemetry), telemetry, 1))

asyncio.run(main())
"""


def deployment_env(bootstrap: str, root: Path, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "CA_KAFKA_BOOTSTRAP": bootstrap,
        "CA_APP_ID": f"ca-sinktest-{tag}",
        "CA_TOPIC_PREFIX": f"s{tag}.",
        "CA_DATA_DIR": str(root / "state"),
        "CA_PARTITIONS": "4",
        "CA_SINK_BATCH_ROWS": "60",
        "CA_SINK_BATCH_SECONDS": "0.3",
        "CA_SESSION_TIMEOUT": "6",
        "CA_CLICKHOUSE_URL": "",
        "CA_SQL_PORT": str(free_port()),  # the owner's endpoint
        **extra,
    }


def records_of(events: list[dict[str, Any]]) -> tuple[list[tuple[str, bytes, bytes]], list]:
    """(input records with their kind, message-updates records) as the publisher and the
    worker's stages make them."""
    raw, updates = [], []
    states: dict[str, MessageState] = {}
    for line in events:
        kind, event, data = parse_json_line(json.dumps(line))
        raw.append((kind, event.message_id.encode(), data))
        old = states.get(event.message_id, MessageState(event.message_id))
        new = states[event.message_id] = apply_event(old, event)
        row = message_log_row(new, updated_at=T0)
        if row is not None:
            value = serde.encode_message_update(new.version, row, message_contribution(new))
            updates.append((row.campaign_id.encode(), value))
    return raw, updates


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def sink_lag(settings: Settings) -> int:
    """Records of both sink topics their groups have not committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        lag = 0
        for suffix, topics in (("clickhouse-sink", [settings.message_updates_topic]),
                               ("clickhouse-events-sink", settings.input_topics.values())):
            tps = [TopicPartition(topic, p) for topic in topics
                   for p in range(settings.partitions)]
            try:
                committed = await admin.list_consumer_group_offsets(
                    f"{settings.app_id}-{suffix}", partitions=tps)
            except Exception:  # a group whose coordinator is not there yet
                return -1
            ends = await consumer.end_offsets(tps)
            lag += sum(ends[tp] - max(committed[tp].offset, 0) if tp in committed else ends[tp]
                       for tp in tps)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def wait_caught_up(settings: Settings, timeout: float = 120) -> None:
    lag = -1

    def caught_up() -> bool:
        nonlocal lag
        lag = asyncio.run(sink_lag(settings))
        return lag == 0

    wait_until(caught_up, "the sinks to catch up", timeout, 0.5,
               explain=lambda: f"their lag: {lag}")


class Scenario:
    def __init__(self, bootstrap: str, root: Path, **env: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env = deployment_env(bootstrap, root, **env)
        self.settings = settings_of(self.env)
        self.campaign = f"camp-{uuid.uuid4().hex[:8]}"
        self.events = generate_campaign(self.campaign, messages=250, seed=21)
        self.raw, self.updates = records_of(self.events)
        asyncio.run(ensure_topics(self.settings))
        self.stop_merges()

    def stop_merges(self) -> None:
        """Keep merges from collapsing repeated rows, which would hide duplicates the
        sink wrote (a replaying merge is the second line of defence, not the proof)."""
        store = self.store()
        try:
            store.migrate()
            for table in ("message_log", "replies", "link_clicks", "events"):
                store._query(
                    f"ALTER TABLE campaign_analytics.{table} MODIFY SETTING"
                    " max_bytes_to_merge_at_max_space_in_pool = 1,"
                    " max_bytes_to_merge_at_min_space_in_pool = 1", "TabSeparated")
        finally:
            store.close()

    def produce(self, part: slice = slice(None)) -> None:
        for kind, topic in self.settings.input_topics.items():
            asyncio.run(produce(self.settings, topic,
                                [(key, value) for k, key, value in self.raw[part] if k == kind]))
        asyncio.run(produce(self.settings, self.settings.message_updates_topic,
                            self.updates[part]))

    def run_child(self, crash_after: int) -> subprocess.Popen[bytes]:
        log = (self.root / "sink.log").open("ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-c", SINK_CHILD, str(crash_after)], cwd=REPO,
                env=os.environ | self.env | {"PYTHONPATH": str(REPO)},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def store(self) -> ChdbStore:
        return ChdbStore(self.settings.chdb_path, self.settings.clickhouse_database)

    def assert_exact(self) -> None:
        """Nothing missing, nothing doubled, metrics equal to the oracle."""
        store = self.store()
        try:
            events = store.row_counts("events")
            assert events.stored == events.distinct_sources == len(self.raw)
            assert events.final == events.distinct_keys == len({e["event_id"]
                                                                for e in self.events})
            for table, kind in (("replies", "reply"), ("link_clicks", "click")):
                counts = store.row_counts(table)
                wanted = len({e["event_id"] for e in self.events if e["type"] == kind})
                assert counts.final == counts.distinct_keys == wanted > 0, table
            log = store.row_counts("message_log")
            messages = len({e["message_id"] for e in self.events if e["type"] == "sent"})
            assert log.final == log.distinct_keys == messages
            assert store.count_message_log(self.campaign) == messages
            summary = oracle.recount(self.events)[self.campaign]
            metrics = store.campaign_metrics(self.campaign)
            assert metrics is not None
            assert {k: getattr(metrics.totals, k) for k in ("sent", "delivered", "failed",
                    "pending", "replies", "unique_repliers", "opt_outs", "link_clicks",
                    "unique_link_clicks")} == {k: summary[k] for k in (
                    "sent", "delivered", "failed", "pending", "replies", "unique_repliers",
                    "opt_outs", "link_clicks", "unique_link_clicks")}
        finally:
            store.close()


@pytest.fixture
def scenario_factory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Any]:
    children: list[subprocess.Popen[bytes]] = []

    def make(**env: str) -> Scenario:
        scenario = Scenario(kafka_bootstrap, tmp_path / uuid.uuid4().hex[:6], **env)
        original = scenario.run_child

        def tracked(crash_after: int) -> subprocess.Popen[bytes]:
            child = original(crash_after)
            children.append(child)
            return child

        scenario.run_child = tracked  # type: ignore[method-assign]
        return scenario

    yield make
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)


def crash_then_recover(scenario: Scenario, crashes: tuple[int, ...]) -> None:
    """Records trickle in while the sinks run, so batches are cut by time at offsets a
    replay would not choose by itself; the sinks are killed after their N-th insert."""
    cursor, chunk = 0, 25
    for crash_after in crashes:
        child = scenario.run_child(crash_after)

        def fed_until_exit(child: subprocess.Popen[bytes] = child) -> bool:
            nonlocal cursor
            if child.poll() is not None:
                return True
            if cursor < len(scenario.raw):
                scenario.produce(slice(cursor, cursor + chunk))
                cursor += chunk
            return False

        wait_until(fed_until_exit, f"the sinks to kill themselves after insert {crash_after}",
                   120, 0.2, explain=lambda: (scenario.root / "sink.log").read_text())
        assert child.wait(10) == -signal.SIGKILL, (scenario.root / "sink.log").read_text()
    scenario.produce(slice(cursor, None))
    child = scenario.run_child(0)
    try:
        wait_caught_up(scenario.settings)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)


@pytest.mark.slow
def test_killed_between_insert_and_commit_writes_every_record_once(
    scenario_factory: Any,
) -> None:
    scenario = scenario_factory()
    crash_then_recover(scenario, crashes=(3, 4, 3))
    scenario.assert_exact()


@pytest.mark.slow
def test_negative_control_without_dedup_token_the_replay_is_written_twice(
    scenario_factory: Any,
) -> None:
    scenario = scenario_factory(**{UNSAFE_NO_DEDUP_ENV: "1"})
    crash_then_recover(scenario, crashes=(3, 4, 3))

    store = scenario.store()
    try:
        events = store.row_counts("events")
    finally:
        store.close()
    assert events.distinct_sources == len(scenario.raw)  # nothing missing ...
    assert events.stored > events.distinct_sources  # ... but replays written twice
    with pytest.raises(AssertionError):
        scenario.assert_exact()


HOLDER = """
import sys
from sinks.chdb_store import ChdbStore
store = ChdbStore(sys.argv[1], "campaign_analytics", hold_open=True)
store.count_message_log("any")
print("holding", flush=True)
sys.stdin.readline()
store.close()
"""


@pytest.mark.slow
def test_clickhouse_unavailable_for_a_while_then_exact_catch_up(scenario_factory: Any) -> None:
    """The chdb directory is held by another process (a previous owner still closing
    it, or a tool) when the sinks start, while half the records are there: the sinks
    back off and commit nothing, then catch up exactly once it is let go."""
    scenario = scenario_factory()
    telemetry = Telemetry()
    half = len(scenario.raw) // 2

    async def scenario_run() -> None:
        loop = asyncio.get_running_loop()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(scenario.settings.chdb_path)], cwd=REPO,
            env=os.environ | {"PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        tasks: list[asyncio.Task[None]] = []
        try:
            assert holder.stdout is not None  # (read off the loop: the sinks run on it)
            assert await loop.run_in_executor(None, holder.stdout.readline) == "holding\n"
            await loop.run_in_executor(None, scenario.produce, slice(0, half))
            sinks = [ClickHouseSink(scenario.settings, telemetry),
                     ClickHouseEventsSink(scenario.settings, telemetry)]
            tasks = [asyncio.create_task(s.run()) for s in sinks]
            # it did hit the locked engine (each try waits up to 10 s for the directory)
            await wait_until_async(lambda: telemetry.sink_errors._value.get() >= 2,
                                   "two sink errors on the locked engine", 60, 0.5)
            assert await sink_lag(scenario.settings) > 0  # ... and committed nothing
        finally:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.close()
            holder.wait(30)
            if holder.stdout is not None:
                holder.stdout.close()
        try:
            await loop.run_in_executor(None, wait_caught_up, scenario.settings)
            await loop.run_in_executor(None, scenario.produce, slice(half, None))
            await loop.run_in_executor(None, wait_caught_up, scenario.settings)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert all(not t.exception() for t in tasks if not t.cancelled())

    asyncio.run(scenario_run())
    scenario.assert_exact()
