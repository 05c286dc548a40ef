"""Faults of a three-broker cluster under the worker group (issue 24 item 3).

Each test runs its own cluster (``PrivateCluster``: a KRaft controller and three
brokers, topics replicated three ways with ``min.insync.replicas=2``, which the
project's topics get from the defaults that follow the cluster), feeds events at a
steady rate through the fault (an idempotent acks=all producer in a thread), and
checks every number as test_broker_faults.py does: each campaign's summary against the
batch recount, ClickHouse ``count() = uniqExact(key)`` on the FINAL view of each table
and its SQL metrics, each campaign's CSV export against the recount's message log, and
that no worker or sink process was restarted. Each prints how long the folding stalled
(the longest time the workers' folded-input counter stood still while events were
still arriving, sampled 5 times a second) and how long after the fault, and after the
last event was acknowledged, every campaign's newest snapshot equalled the recount
(read twice a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.cli.admin import latest_summaries
from tests.integration.conftest import (
    BROKERS,
    REPO,
    Deployment,
    PrivateCluster,
    WorkerProcess,
)
from tests.integration.test_broker_faults import (
    SqlCheck,
    _assert_never_restarted,
    _consumed,
    _encoded,
    _events,
    _mid_stream,
    _sink_child,
)
from tests.integration.test_chaos import _expected, _pick, _wait_exact
from tests.integration.test_pipeline import _statuses
from tests.oracle import expected_log, recount
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

RATE = 200  # events per second the producer offers through a fault
CAMPAIGNS = (600, 400, 250)  # messages per campaign: about 4,400 events, 22 s at RATE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """A cluster of this module's own (a start costs 10-50 s here); stopped and removed
    at the end. Each test leaves it whole; ``dep`` starts any node one left down."""
    own = PrivateCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield own.up()
    finally:
        own.clean()


@pytest.fixture
def dep(cluster: PrivateCluster, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment of the test's own topics and group on the whole cluster."""
    cluster.up()
    deployment = Deployment(cluster.bootstrap, tmp_path)
    try:
        yield deployment
    finally:
        deployment.close()


class Flow:
    """The events, produced at ``RATE`` a second by an idempotent acks=all producer in a
    thread; ``acked_at``: when the last one was acknowledged."""

    def __init__(self, dep: Deployment, events: list[dict[str, Any]]) -> None:
        self.bootstrap = dep.env["CA_KAFKA_BOOTSTRAP"]
        self.records = _encoded(dep, events)
        self.acked_at = 0.0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
            self.acked_at = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported by wait()
            self.error = exc

    async def _produce(self) -> None:
        from aiokafka import AIOKafkaProducer

        # two minutes before a batch expires: the outages here are shorter
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5,
                                    request_timeout_ms=120_000)
        await producer.start()
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for n, (topic, key, value) in enumerate(self.records):
                if n % 20 == 0:
                    await asyncio.sleep(max(0.0, start + n / RATE - loop.time()))
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    def wait(self, timeout: float = 300) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the producer did not finish"
        assert self.error is None, f"the producer failed: {self.error!r}"


class Progress:
    """The workers' folded input records (their /metrics), sampled 5 times a second."""

    def __init__(self, dep: Deployment, workers: list[WorkerProcess]) -> None:
        self.dep, self.workers = dep, workers  # the test may add a worker to the list
        self.samples: list[tuple[float, float]] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            # a worker's /metrics may not answer for a moment: that sample is skipped
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic(), _consumed(self.dep, list(self.workers))))
            time.sleep(0.2)

    def stall(self, since: float, until: float) -> float:
        """The longest time between two rises of the count within [since, until]."""
        pairs = zip(self.samples[1:], self.samples[:-1], strict=True)
        rises = [since, *(t for (t, v), (_, before) in pairs
                          if since <= t <= until and v > before), until]
        return max(b - a for a, b in zip(rises, rises[1:], strict=False))

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)


class Exactness:
    """When every campaign's newest snapshot first equalled the recount of all the
    events (read in-process, about twice a second, from ``since``)."""

    def __init__(self, dep: Deployment, events: list[dict[str, Any]]) -> None:
        self.settings = dep.settings()
        self.expected = _expected(events)
        self.at = 0.0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _exact(self) -> bool:
        got = asyncio.run(latest_summaries(self.settings))
        return all(cid in got and _pick(json.loads(json.dumps(got[cid]))) == want
                   for cid, want in self.expected.items())

    def _run(self) -> None:
        while self.running and not self.at:
            with contextlib.suppress(Exception):  # a broker away: ask again
                if self._exact():
                    self.at = time.monotonic()
            time.sleep(0.5)

    def stop(self) -> None:
        self.running = False
        self.thread.join(30)


class Run:
    """Workers folding a steady flow of events through one fault, and the figures."""

    def __init__(self, dep: Deployment, workers: int, tag: str, seed: int) -> None:
        self.dep = dep
        self.events = _events(tag, CAMPAIGNS, seed=seed)
        self.workers = [dep.worker().start() for _ in range(workers)]
        for worker in self.workers:
            worker.wait_ready()
        dep.wait_for_members(workers)
        self.sinks = {w.web_port: _sink_child(w) for w in self.workers}
        self.progress = Progress(dep, self.workers)
        self.flow = Flow(dep, self.events)
        _mid_stream(dep, self.workers, 0)  # folding has begun
        self.fault_at = self.back_at = 0.0
        self.restart: threading.Thread | None = None
        self.exactness: Exactness

    def join(self) -> WorkerProcess:
        """One more worker joins the group (its sink process is checked at the end too)."""
        worker = self.dep.worker().start()
        worker.wait_ready()
        self.workers.append(worker)
        self.sinks[worker.web_port] = _sink_child(worker)
        return worker

    def fault(self, action: Callable[[], object]) -> None:
        self.fault_at = time.monotonic()
        self.exactness = Exactness(self.dep, self.events)
        action()

    def back(self, action: Callable[[], object]) -> None:
        action()
        self.back_at = time.monotonic()

    def back_after(self, seconds: float, action: Callable[[], object]) -> None:
        """``back`` in a thread after ``seconds``: the checks start at once, so the time
        to exact metrics is measured from the fault, whether or not it needs the node."""
        def later() -> None:
            time.sleep(seconds)
            self.back(action)

        self.restart = threading.Thread(target=later, daemon=True)
        self.restart.start()

    def check_exact(self, name: str) -> dict[str, float]:
        """Every number exact, no process restarted; the figures, printed."""
        self.flow.wait()
        _wait_exact(self.dep, self.events, timeout=300)
        self.exactness.stop()
        self.progress.stop()
        exact_at = self.exactness.at or time.monotonic()
        SqlCheck(self.dep).wait_exact(self.events)
        _exports_exact(self.dep, self.events)
        assert self.flow.acked_at > self.fault_at, "the fault came after the last event"
        if self.restart is not None:
            self.restart.join(300)
            assert self.back_at, "the node did not come back"
        _assert_never_restarted(self.workers, self.sinks)
        figures = {
            "stall_s": self.progress.stall(self.fault_at, self.flow.acked_at),
            "down_s": self.back_at - self.fault_at,
            "exact_after_fault_s": exact_at - self.fault_at,
            "exact_after_last_ack_s": exact_at - self.flow.acked_at,
        }
        print(f"{name}: {len(self.events)} events at {RATE}/s, {len(self.workers)} workers; "
              + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
        return figures


def _exports_exact(dep: Deployment, events: list[dict[str, Any]]) -> None:
    """Each campaign's CSV export holds its messages with the recount's statuses."""
    for campaign_id in sorted(recount(events)):
        _export_exact(dep, campaign_id, expected_log(events, campaign_id))


def _export_exact(dep: Deployment, campaign_id: str, want: dict[str, dict[str, Any]]) -> None:
    out = dep.root / f"{campaign_id}.csv"
    rows: list[dict[str, str]] = []

    def exported() -> bool:
        nonlocal rows
        dep.cli("export", campaign_id, "--output", str(out))
        with out.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return len(rows) == len(want) and _statuses(rows) == _statuses(want.values())

    wait_until(exported, f"{campaign_id}'s export to equal the recount", 120, 1,
               explain=lambda: f"{len(rows)} row(s) exported, {len(want)} expected")
    out.unlink()


async def _describe(bootstrap: str, topics: list[str]) -> list[dict[str, Any]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.describe_topics(topics))
    finally:
        await admin.close()


def _topics(dep: Deployment) -> list[str]:
    """The deployment's topics and the group's offsets."""
    settings = dep.settings()
    return [*settings.input_topics.values(), *settings.internal_topics,
            *settings.changelog_topics, settings.campaign_metrics_topic,
            settings.window_metrics_topic, "__consumer_offsets"]


def _under_replicated(dep: Deployment) -> list[tuple[str, int]]:
    """Partitions whose in-sync replicas are fewer than their replicas."""
    return [(d["topic"], p["partition"]) for d in asyncio.run(_describe(
        dep.env["CA_KAFKA_BOOTSTRAP"], _topics(dep)))
        for p in d["partitions"] if len(p["isr"]) < len(p["replicas"])]


def _wait_replicated(dep: Deployment, timeout: float = 180) -> float:
    """Until no partition is under-replicated; how long that took."""
    start = time.monotonic()
    last: list[tuple[str, int]] = []

    def replicated() -> bool:
        nonlocal last
        last = _under_replicated(dep)
        return not last

    wait_until(replicated, "every partition to have all its replicas in sync", timeout, 0.5,
               explain=lambda: f"under-replicated: {last[:10]}")
    return time.monotonic() - start


def _busiest_leader(dep: Deployment) -> tuple[str, int, int]:
    """The input partition with the most records so far, and its leader's broker id."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    bootstrap = dep.env["CA_KAFKA_BOOTSTRAP"]
    described = asyncio.run(_describe(bootstrap, list(dep.settings().input_topics.values())))
    leaders = {(d["topic"], p["partition"]): p["leader"] for d in described
               for p in d["partitions"]}

    async def ends() -> dict[Any, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            return await consumer.end_offsets([TopicPartition(*tp) for tp in leaders])
        finally:
            await consumer.stop()

    tp, _ = max(asyncio.run(ends()).items(), key=lambda item: item[1])
    return tp.topic, tp.partition, leaders[(tp.topic, tp.partition)]


def _topics_fit_and_a_short_one_is_refused(cluster: PrivateCluster, dep: Deployment) -> None:
    """With CA_KAFKA_BOOTSTRAP alone every topic the workers created has 3 replicas and
    min.insync.replicas 2; another deployment whose input exists with one replica is
    refused at start (exit 2, the topic and the rule named)."""
    described = asyncio.run(_describe(cluster.bootstrap, _topics(dep)[:-1]))
    assert {len(p["replicas"]) for d in described for p in d["partitions"]} == {3}
    short = Deployment(cluster.bootstrap, dep.root / "short")
    short.root.mkdir()
    sent = short.settings().input_topics["sent"]

    async def create() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(sent, 4, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    refused = short.cli("worker", "--web-port", "1", check=False)
    assert refused.returncode == 2, refused.stderr
    assert f"{sent} has 1 replica(s), fewer than the 3 required" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_leader_of_the_busiest_input_partition_sigkilled_mid_stream(
        cluster: PrivateCluster, dep: Deployment) -> None:
    """(a) Two workers fold a steady flow; the leader of the input partition with the
    most records is SIGKILLed and started again 15 s later (same data). After: the
    topics' replication (and a refused deployment, ``_topics_fit_and_a_short_one_...``)."""
    run = Run(dep, 2, "leader", seed=401)
    topic, partition, leader = _busiest_leader(dep)
    node = cluster.node_of(leader)
    run.fault(lambda: cluster.kill(node))
    run.back_after(15, lambda: cluster.up(node))
    figures = run.check_exact("(a) leader SIGKILLed")
    print(f"(a) killed {node}, leader of {topic}[{partition}]; every partition in sync "
          f"again {_wait_replicated(dep):.1f} s after the checks")
    _topics_fit_and_a_short_one_is_refused(cluster, dep)
    assert figures["stall_s"] > 0


def test_two_of_three_brokers_down_for_20_s(cluster: PrivateCluster, dep: Deployment) -> None:
    """(b) Two brokers SIGKILLed together, started again 20 s later: with one broker no
    write reaches min.insync.replicas=2, so nothing is acknowledged (the producer and the
    workers retry: requests time out, NOT_ENOUGH_REPLICAS, no leader) and no commit covers
    input whose writes were not; the workers say what they wait for, and resume
    exactly when the brokers are back."""
    # a record not delivered within CA_PRODUCER_REQUEST_TIMEOUT (60 s) stops the worker
    # (exit 70, by design: docs/faust-hardening.md); two JVMs restarting here take up to
    # 40 s after the 20 s, so the outage the workers see can pass 60 s
    dep.env["CA_PRODUCER_REQUEST_TIMEOUT"] = "180"
    run = Run(dep, 2, "minority", seed=411)
    down = ("broker2", "broker3")

    def both() -> None:
        for node in down:
            cluster.kill(node)

    marks = {w.web_port: w.log.stat().st_size for w in run.workers}
    run.fault(both)
    run.back_after(20, lambda: cluster.up(*down))
    run.check_exact("(b) two of three down")
    said = [w.log.read_text(errors="replace")[marks[w.web_port]:] for w in run.workers]
    ports = [str(cluster.ports[node]) for node in down]
    # the commit watchdog names the produce requests a commit waits for (after 30 s);
    # before, the clients' own lines name the brokers they cannot reach
    waits = ("offset commit has been running", "NotEnoughReplicas", "Unable connect",
             *ports)
    assert all(any(w in text for w in waits) for text in said), [s[-2000:] for s in said]
    print("(b) the workers' first lines about it:",
          [next((line for line in text.splitlines() if any(w in line for w in waits)), "")
           for text in said])


def test_rolling_restart_of_all_brokers_while_a_third_worker_joins(
        cluster: PrivateCluster, dep: Deployment) -> None:
    """(c) Each broker in turn is shut down (SIGTERM), started again and waited for until
    no partition is under-replicated, while events flow; a third worker joins after the
    first restart."""
    run = Run(dep, 2, "rolling", seed=421)
    durations: list[float] = []
    run.fault(lambda: None)  # the clock starts; the restarts follow
    for n, node in enumerate(BROKERS):
        start = time.monotonic()
        cluster.stop(node)
        cluster.up(node)
        if n == 0:
            run.join()
        _wait_replicated(dep)
        durations.append(time.monotonic() - start)
    run.back_at = time.monotonic()
    run.check_exact("(c) rolling restart")
    print(f"(c) each broker's restart until fully replicated: "
          f"{', '.join(f'{d:.1f} s' for d in durations)}")


def test_broker_wiped_while_down_rejoins_and_re_replicates(
        cluster: PrivateCluster, dep: Deployment) -> None:
    """(d) The leader of the busiest input partition is SIGKILLed and its data directory
    deleted. Kafka 4.1 refuses to start it as it is ("No readable meta.properties files
    found"); the recovery (`cluster.sh up`, which formats it with the cluster's id) brings
    it back empty, and it copies every replica it holds from the others."""
    run = Run(dep, 2, "wiped", seed=431)
    _, _, leader = _busiest_leader(dep)
    node = cluster.node_of(leader)
    refused: list[subprocess.CompletedProcess[str]] = []
    times: dict[str, float] = {}

    def recover() -> None:
        refused.append(subprocess.run(
            ["java", "-Xmx256m", "-cp", str(REPO / "deploy/kafka/.cache/libs/*"),
             f"-Dlog4j2.configurationFile={REPO / 'deploy/kafka/log4j2.xml'}",
             f"-Dkafka.logs.dir={cluster.dir / node / 'logs'}",
             "kafka.Kafka", str(cluster.dir / node / "server.properties")],
            capture_output=True, text=True, timeout=120, check=False))
        shutil.rmtree(cluster.dir / node / "data", ignore_errors=True)  # what the try left
        cluster.up(node)
        times["up"] = time.monotonic()
        times["replicated"] = _wait_replicated(dep)

    def wipe() -> None:
        cluster.kill(node)
        shutil.rmtree(cluster.dir / node / "data")

    run.fault(wipe)
    run.back_after(0, recover)
    run.check_exact("(d) wiped broker")
    assert refused[0].returncode != 0, refused[0].stdout[-2000:]
    said = refused[0].stdout + (cluster.dir / node / "logs" / "server.log").read_text()
    assert "No readable meta.properties files found" in said, said[-3000:]
    held = sum(leader in p["replicas"] for d in asyncio.run(_describe(
        cluster.bootstrap, _topics(dep))) for p in d["partitions"])
    print(f"(d) {node} wiped; refused as is, formatted and answering "
          f"{times['up'] - run.fault_at:.1f} s after the kill; its {held} partitions all in "
          f"sync {times['replicated']:.1f} s after that")
    assert held > 0
