"""Faults of the broker itself (issue 19 item 3): each test runs its own broker
(``PrivateBroker``), SIGKILLs or withholds it, or freezes a worker past its session,
and then checks every number: each campaign's summary against the batch recount
(tests/oracle.py), and in ClickHouse ``count() = uniqExact(key)`` on the FINAL view
of each table, raw ``events`` rows = input records = distinct event ids (the input
has no duplicates), and the SQL metrics against the recount. The processes the
fault hits are never restarted: the same pids run from start to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sinks import queries
from streams.cli.admin import read_topic
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import parse_json_line
from streams.codecs.output_avro import decode_campaign_metrics
from tests.integration.conftest import CLI, Deployment, PrivateBroker, free_port
from tests.integration.test_chaos import _expected, _pick, _wait_exact
from tests.oracle import recount
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.faults]

TOKEN = "faults-token-not-a-secret"  # noqa: S105 - a test value
TOTALS = ("sent", "delivered", "failed", "pending", "replies", "unique_repliers",
          "opt_outs", "link_clicks", "unique_link_clicks")


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    """A broker of this test's own, not started yet; stopped and removed at the end."""
    own = PrivateBroker(tmp_path)
    try:
        yield own
    finally:
        own.clean()


@pytest.fixture
def dep(broker: PrivateBroker, tmp_path: Path) -> Any:
    deployment = Deployment(broker.bootstrap, tmp_path)
    deployment.env["CA_API_TOKEN"] = TOKEN
    try:
        yield deployment
    finally:
        deployment.close()


def _events(tag: str, messages: tuple[int, ...], seed: int) -> list[dict[str, Any]]:
    """Campaigns of ``messages`` each, shuffled together; no duplicate records, so the
    raw ``events`` table must hold exactly one row per distinct event id."""
    events: list[dict[str, Any]] = []
    for n, count in enumerate(messages):
        events += generate_campaign(f"{tag}-{n}", count, seed=seed + n, duplicate_rate=0)
    random.Random(seed).shuffle(events)
    assert len({e["event_id"] for e in events}) == len(events)
    return events


def _publish(dep: Deployment, events: list[dict[str, Any]], name: str) -> None:
    path = dep.root / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    dep.cli("publish", str(path))
    path.unlink()


def _encoded(dep: Deployment, events: list[dict[str, Any]]) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of each event as the publisher makes them."""
    topics = dep.settings().input_topics
    out = []
    for e in events:
        kind, event, data = parse_json_line(json.dumps(e))
        out.append((topics[kind], event.message_id.encode(), data))
    return out


async def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    """Records encoded beforehand, produced as fast as the client goes: a backlog the
    workers are still folding when the test kills the broker right after."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def _consumed(dep: Deployment, workers: list[Any]) -> float:
    """Input records the workers have folded (not the ones rerouted to message-events)."""
    inputs = f'topic="{dep.env["CA_TOPIC_PREFIX"]}sms.'
    return sum(float(line.rsplit(" ", 1)[1]) for w in workers
               for line in w.metrics().splitlines()
               if line.startswith("campaign_analytics_events_consumed_total{")
               and inputs in line)


def _mid_stream(dep: Deployment, workers: list[Any], before: float) -> float:
    """Wait until the workers have folded some of the new input; how much."""
    def folded() -> float:
        return _consumed(dep, workers) - before

    return wait_until(folded, "the workers to fold the new input", 90, 0.05)


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _sink_child(worker: Any) -> int:
    """The pid of the worker's ClickHouse sink process (streams/sink_runtime/process.py)."""
    assert worker.proc is not None

    def one() -> int | None:
        kids = [p for p in _children(worker.proc.pid)
                if b" sink " in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")]
        return kids[0] if len(kids) == 1 else None

    return wait_until(one, f"the sink process of worker {worker.web_port}", 60, 0.5)


def _assert_never_restarted(workers: list[Any], sinks: dict[int, int]) -> None:
    """Every worker still runs as the process the test started, and so does its sink
    process (the worker restarts one that exits, under a new pid, and counts it)."""
    for worker in workers:
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
        assert _sink_child(worker) == sinks[worker.web_port], worker.warnings()
        restarts = worker.counter(
            'campaign_analytics_processing_errors_total{stage="sink-process"}')
        assert restarts == 0, worker.warnings()


class SqlCheck:
    """ClickHouse through the engine owner's read-only SQL endpoint (the sinks keep
    running): the row counts that prove nothing was lost or doubled."""

    def __init__(self, dep: Deployment) -> None:
        self.settings = dep.settings()

    def rows(self, sql: str, params: dict[str, object] | None = None) -> list[tuple]:
        import clickhouse_connect

        client = clickhouse_connect.get_client(host="127.0.0.1", port=self.settings.sql_port,
                                               database=self.settings.clickhouse_database)
        try:
            return list(client.query(sql, parameters=params).result_rows)
        finally:
            client.close()

    def counts(self, table: str) -> queries.RowCounts:
        (values,) = self.rows(queries.row_counts_query(self.settings.clickhouse_database,
                                                       table))
        return queries.row_counts(values)

    def problems(self, events: list[dict[str, Any]]) -> list[str]:
        """What differs from the input (empty: exact)."""
        found = []
        ids = {e["event_id"] for e in events}
        raw = self.counts("events")
        if not raw.stored == raw.distinct_sources == len(events) == len(ids):
            found.append(f"raw events {raw}, want {len(events)} rows = distinct event ids")
        if not raw.final == raw.distinct_keys == len(ids):
            found.append(f"events FINAL {raw}, want {len(ids)}")
        for table, kind in (("replies", "reply"), ("link_clicks", "click")):
            want = len({e["event_id"] for e in events if e["type"] == kind})
            got = self.counts(table)
            if not got.final == got.distinct_keys == want:
                found.append(f"{table} {got}, want FINAL = uniqExact = {want}")
        messages = len({e["message_id"] for e in events if e["type"] == "sent"})
        log = self.counts("message_log")
        if not log.final == log.distinct_keys == messages:
            found.append(f"message_log {log}, want FINAL = uniqExact = {messages}")
        for campaign_id, summary in recount(events).items():
            sql, params = queries.campaign_metrics_query(self.settings.clickhouse_database,
                                                         campaign_id)
            metrics = queries.campaign_metrics(campaign_id, self.rows(sql, params))
            got_totals = None if metrics is None else {
                k: getattr(metrics.totals, k) for k in TOTALS}
            if got_totals != {k: summary[k] for k in TOTALS}:
                found.append(f"{campaign_id} SQL metrics {got_totals}, "
                             f"want {({k: summary[k] for k in TOTALS})}")
        return found

    def wait_exact(self, events: list[dict[str, Any]], timeout: float = 120) -> None:
        last: list[str] = []

        def exact() -> bool:
            nonlocal last
            last = self.problems(events)
            return not last

        wait_until(exact, "ClickHouse to hold every event exactly once", timeout, 1,
                   explain=lambda: "\n".join(last))


class Api:
    """``campaign-analytics api`` as its own process."""

    def __init__(self, dep: Deployment) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        self.log = dep.root / "api.log"
        out = self.log.open("wb")
        self.proc = subprocess.Popen([*CLI, "api", "--port", self.base.rsplit(":", 1)[1]],
                                     env=dep.env, cwd=dep.root, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def get(self, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path,  # noqa: S310 - loopback
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def summaries_equal(self, expected: dict[str, dict]) -> bool:
        keys = ("campaign_id", *TOTALS, "delivery_rate", "reply_rate", "link_click_rate",
                "variants")
        for campaign_id, want in expected.items():
            status, body = self.get(f"/api/v1/campaigns/{campaign_id}")
            if status != 200 or {k: body[k] for k in keys} != {k: want[k] for k in keys}:
                return False
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _outage(broker: PrivateBroker, seconds: float, api: Api, campaign_id: str
            ) -> list[int]:
    """SIGKILL the broker, keep it down ``seconds`` while asking the API for a summary
    about once a second, start it again on the same data; the answers' statuses."""
    broker.kill()
    statuses = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        statuses.append(api.get(f"/api/v1/campaigns/{campaign_id}")[0])
        time.sleep(1)
    broker.start()
    return statuses


def test_broker_sigkilled_twice_mid_stream_everything_carries_on(
        broker: PrivateBroker, dep: Deployment):
    """3a: SIGKILL the broker while two workers fold a backlog, restart it 12 s later
    (same port and data), again during the next backlog after 20 s; the workers, their
    sink processes and the API run through both outages without a restart, the API
    answers during them, and every number ends exact."""
    broker.start()
    events = _events("bounce", (2000, 1500, 800), seed=301)
    fifth = len(events) // 5
    phases = [events[:fifth], events[fifth:3 * fifth], events[3 * fifth:]]
    workers = [dep.worker().start(), dep.worker().start()]
    for worker in workers:
        worker.wait_ready()
    dep.wait_for_members(2)
    sinks = {w.web_port: _sink_child(w) for w in workers}
    api = Api(dep)
    try:
        _publish(dep, phases[0], "phase-0")
        _wait_exact(dep, phases[0], timeout=180)  # the API has something to serve
        wait_until(lambda: api.summaries_equal(_expected(phases[0])),
                   "the API to serve the first phase's summaries", 120, 1)
        answered: list[list[int]] = []
        folded_at_kill: list[float] = []
        for n, seconds in ((1, 12), (2, 20)):
            records = _encoded(dep, phases[n])
            before = _consumed(dep, workers)
            asyncio.run(_produce(broker.bootstrap, records))
            folded_at_kill.append(_mid_stream(dep, workers, before))
            answered.append(_outage(broker, seconds, api, "bounce-0"))
        assert len(set(broker.pids)) == 3  # started, and started again twice

        _wait_exact(dep, events, timeout=300)
        wait_until(lambda: api.summaries_equal(_expected(events)),
                   "the API to serve the final summaries", 120, 1,
                   explain=lambda: api.log.read_text()[-3000:])
        SqlCheck(dep).wait_exact(events)
        _assert_never_restarted(workers, sinks)
        assert api.alive(), api.log.read_text()[-3000:]
        # the API kept serving the last snapshots it had while the broker was down
        assert all(status == 200 for statuses in answered for status in statuses), answered
        assert all(0 < folded_at_kill[n - 1] < len(phases[n]) for n in (1, 2)), (
            f"a kill was not mid-stream: folded {folded_at_kill}")
        print(f"3a: {len(events)} events, broker SIGKILLed twice after "
              f"{folded_at_kill} of the phase's events were folded; API answers during "
              f"the outages: {[len(s) for s in answered]}")
    finally:
        api.stop()


def _stays_alive(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether ``proc`` is still running after ``seconds`` (an observation, no speed)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if proc.poll() is not None:
            return False
        time.sleep(0.5)
    return proc.poll() is None


def test_worker_started_before_its_broker_waits_then_works(
        broker: PrivateBroker, dep: Deployment):
    """3b: a worker started with no broker stays up (no exit, so no crash loop under a
    supervisor), says it waits for Kafka at its address, and once the broker comes it
    processes everything exactly, as the same process."""
    worker = dep.worker().start()
    assert worker.proc is not None
    waiting = f"waiting for Kafka at {broker.bootstrap}"
    wait_until(lambda: waiting in worker.log.read_text(), "the worker to say what it waits for",
               60, 0.5, explain=worker.tail)
    assert _stays_alive(worker.proc, 20), worker.tail()
    log = worker.log.read_text()
    assert "Traceback" not in log, worker.tail()
    assert 1 <= log.count(waiting) <= 3, worker.tail()  # once per 15 s, not per attempt

    broker.start()
    worker.wait_ready()
    sink = _sink_child(worker)
    events = _events("late", (800, 500), seed=311)
    _publish(dep, events, "late")
    _wait_exact(dep, events, timeout=180)
    SqlCheck(dep).wait_exact(events)
    _assert_never_restarted([worker], {worker.web_port: sink})
    assert re.search(r"Kafka at \S+ answers, after \d+ failed attempt", worker.log.read_text())


def test_negative_control_a_process_that_exits_fails_the_alive_check(
        broker: PrivateBroker, dep: Deployment):
    """The check of 3b on a command that gives up when Kafka is down (``summary``
    exits 4): it must report that process as not staying alive."""
    proc = subprocess.Popen([*CLI, "summary", "nobody"], env=dep.env, cwd=dep.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert not _stays_alive(proc, 20)
        assert proc.returncode == 4
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _member_of(dep: Deployment, worker: Any) -> str:
    """The group member id a worker last joined with (its seat, streams/engine/membership)."""
    return (dep.settings().data_dir / f"worker-{worker.web_port}" / "group-member").read_text()


async def _assignments(dep: Deployment) -> tuple[str, dict[str, set[tuple[str, int]]]]:
    """The worker group's state and each member's partitions."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    admin = AIOKafkaAdminClient(bootstrap_servers=dep.env["CA_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        group = (await admin.describe_consumer_groups([dep.env["CA_APP_ID"]]))[0].groups[0]
    finally:
        await admin.close()
    members = {}
    for member_id, _client, _host, _metadata, assignment in group[5]:
        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
        members[member_id] = {(topic, p) for topic, ps in decoded.assignment for p in ps}
    return group[2], members


def _stable_members(dep: Deployment, count: int) -> dict[str, set[tuple[str, int]]]:
    def stable() -> dict[str, set[tuple[str, int]]] | None:
        state, members = asyncio.run(_assignments(dep))
        return members if state == "Stable" and len(members) == count else None

    return wait_until(stable, f"the worker group to be stable with {count} member(s)", 120, 0.5)


async def _metric_records(dep: Deployment, since: dict[int, int] | None = None
                          ) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """The metrics topic's end offsets, and every snapshot from ``since`` (offsets per
    partition) to them, decoded as the CLI's summary."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = dep.settings().campaign_metrics_topic
    consumer = AIOKafkaConsumer(bootstrap_servers=dep.env["CA_KAFKA_BOOTSTRAP"],
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(int(dep.env["CA_PARTITIONS"]))]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out = []
        for tp in tps:
            start = (since or {}).get(tp.partition, ends[tp])
            if start >= ends[tp]:
                continue
            consumer.seek(tp, start)
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset < ends[tp] and record.value is not None:
                        out.append(json.loads(json.dumps(decode_campaign_metrics(record.value))))
        return {tp.partition: ends[tp] for tp in tps}, out
    finally:
        await consumer.stop()


def _stale_snapshots(dep: Deployment, since: dict[int, int], expected: dict[str, dict]
                     ) -> list[dict[str, Any]]:
    """Snapshots appended after ``since`` that differ from the recount ``expected``."""
    _, records = asyncio.run(_metric_records(dep, since))
    return [r for r in records if _pick(r) != expected.get(r["campaign_id"])]


class Frozen:
    """Two workers (6 s sessions); the second is SIGSTOPped while it folds the first
    phase, the group gives its partitions to the first, which folds the second phase
    too; then SIGCONT. ``woke_at``: the metrics topic's end offsets at the wake."""

    def __init__(self, broker: PrivateBroker, dep: Deployment) -> None:
        dep.env["CA_SESSION_TIMEOUT"] = "6"
        # a campaign's first snapshot goes out at once, the next ones 3 s apart: at the
        # freeze the worker holds changes it has not published yet
        dep.env["CA_EMIT_INTERVAL"] = "3"
        broker.start()
        self.dep = dep
        self.events = _events("frozen", (1500, 1000, 500), seed=321)
        third = len(self.events) // 3
        self.phases = [self.events[:third], self.events[third:2 * third],
                       self.events[2 * third:]]
        self.first, self.second = dep.worker().start(), dep.worker().start()
        for worker in (self.first, self.second):
            worker.wait_ready()
        self.before = _stable_members(dep, 2)
        self.sink = _sink_child(self.first)
        self.held = self.before[_member_of(dep, self.second)]
        assert {tp for tp in self.held if ".sms." in tp[0]}, (
            f"the second worker holds no input partition: {self.before}")

    def freeze_and_wake(self) -> None:
        dep, second = self.dep, self.second
        records = _encoded(dep, self.phases[0])
        asyncio.run(_produce(dep.env["CA_KAFKA_BOOTSTRAP"], records))
        self.folded = _mid_stream(dep, [second], 0)
        assert second.proc is not None
        os.kill(second.proc.pid, signal.SIGSTOP)
        try:
            after = _stable_members(dep, 1)  # its session has timed out
            ((survivor, taken),) = after.items()
            assert survivor == _member_of(dep, self.first) and self.held <= taken, (
                self.before, after)  # its partitions moved to the first worker
            _publish(dep, self.phases[1], "phase-1")
            _wait_exact(dep, self.phases[0] + self.phases[1], timeout=180)
            self.woke_at, _ = asyncio.run(_metric_records(dep))
        finally:
            os.kill(second.proc.pid, signal.SIGCONT)


def test_worker_frozen_past_its_session_loses_its_partitions_and_changes_nothing(
        broker: PrivateBroker, dep: Deployment):
    """3c: SIGSTOP a worker mid-stream for longer than its session timeout (6 s here);
    the group gives its partitions to the other worker, which finishes the input and
    more. On SIGCONT the frozen worker stops before writing anything (its freeze
    guard, exit 75) and its supervisor's restart joins the group again; no snapshot
    appended after the wake differs from the recount, the other worker and its sink
    process run throughout, and every number ends exact after a last phase of input."""
    frozen = Frozen(broker, dep)
    frozen.freeze_and_wake()
    second = frozen.second
    assert second.proc is not None
    assert second.proc.wait(30) == 75, second.tail()
    assert "did not run for" in second.log.read_text(), second.tail()
    restarted = dep.worker(second.web_port).start()  # what its supervisor does
    restarted.wait_ready()
    _stable_members(dep, 2)
    expected = _expected(frozen.phases[0] + frozen.phases[1])
    # after the rebalance every owner publishes its campaigns again: wait for those
    wait_until(lambda: {r["campaign_id"] for r in asyncio.run(
        _metric_records(dep, frozen.woke_at))[1]} >= set(expected),
        "snapshots of every campaign after the wake", 60, 1)
    stale = _stale_snapshots(dep, frozen.woke_at, expected)
    assert stale == [], f"snapshots after the wake differ from the recount: {stale[:3]}"

    _publish(dep, frozen.phases[2], "phase-2")
    _wait_exact(dep, frozen.events, timeout=180)
    SqlCheck(dep).wait_exact(frozen.events)
    _assert_never_restarted([frozen.first], {frozen.first.web_port: frozen.sink})
    print(f"3c: {len(frozen.events)} events; the frozen worker had folded {frozen.folded}; "
          f"its {len(frozen.held)} partitions moved to the other worker")

    # negative control of the snapshot check: an old snapshot appended now is caught
    old = next((key, value) for key, value in asyncio.run(
        read_topic(dep.settings(), dep.settings().campaign_metrics_topic))
        if value is not None and _pick(json.loads(json.dumps(decode_campaign_metrics(value))))
        != _expected(frozen.events)[key.decode()])
    end, _ = asyncio.run(_metric_records(dep))
    asyncio.run(_append(dep, *old))
    assert [r["campaign_id"] for r in _stale_snapshots(dep, end, _expected(frozen.events))] \
        == [old[0].decode()]


@pytest.mark.timing
def test_negative_control_without_the_freeze_guard_the_woken_worker_sets_metrics_back(
        broker: PrivateBroker, dep: Deployment):
    """The same freeze with the guard off (CA_UNSAFE_DISABLE_FREEZE_GUARD=1): the woken
    worker publishes snapshots of the views it held, and the check above sees them.
    Only when its emit timer beats its rejoin on waking: it saw them in 6 of 7 runs
    (one clean-clone make test saw none), so make test leaves it out (-m "not timing");
    the stale-snapshot check's own control is the re-appended snapshot above."""
    dep.env["CA_UNSAFE_DISABLE_FREEZE_GUARD"] = "1"
    frozen = Frozen(broker, dep)
    frozen.freeze_and_wake()
    expected = _expected(frozen.phases[0] + frozen.phases[1])
    stale = wait_until(lambda: _stale_snapshots(dep, frozen.woke_at, expected),
                       "the woken worker to publish what it held", 30, 1)
    print("negative control, stale snapshots after the wake:", [
        (r["campaign_id"], {k: (r[k], expected[r["campaign_id"]][k]) for k in TOTALS
                            if r[k] != expected[r["campaign_id"]][k]}) for r in stale])


async def _append(dep: Deployment, key: bytes, value: bytes) -> None:
    """Produce one record to the metrics topic."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=dep.env["CA_KAFKA_BOOTSTRAP"], acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(dep.settings().campaign_metrics_topic, value, key=key)
    finally:
        await producer.stop()
