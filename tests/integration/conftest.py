"""Real infrastructure for integration tests: a Kafka broker and worker processes.

The session uses the broker at ``CA_TEST_KAFKA_BOOTSTRAP`` when that is set;
otherwise it starts its own single-node broker (``deploy/kafka/kafka.sh``) on
127.0.0.1:19092 with a throw-away data directory, and stops it at the end. If it
cannot start, the tests fail: they never skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings, settings_of
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
CLI = [sys.executable, "-m", "streams.cli"]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("CA_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    env = os.environ | {
        "CA_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "CA_KAFKA_DIR": str(REPO / ".run" / "kafka-test"),
    }
    subprocess.run(["bash", str(KAFKA_SH), "clean"], env=env, check=False,
                   capture_output=True)
    started = subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, text=True,
                             capture_output=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"could not start the test broker:\n{started.stdout}\n{started.stderr}")
    print(started.stdout.strip(), file=sys.stderr)
    try:
        yield env["CA_KAFKA_BOOTSTRAP"]
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "clean"], env=env, check=False,
                       capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_sum(metrics_text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def broker_ports() -> tuple[int, int]:
    """A free (broker, controller) port pair for a private broker: from
    ``CA_TEST_BROKER_PORTS`` (``first-last``) when set, else below the ephemeral range,
    where no client's outgoing connection can take the port while the broker is down."""
    given = os.environ.get("CA_TEST_BROKER_PORTS")
    first, last = map(int, given.split("-")) if given else (20000, 32000)
    candidates = list(range(first, last, 2))
    random.shuffle(candidates)
    for port in candidates:
        if _bindable(port) and _bindable(port + 1):
            return port, port + 1
    pytest.fail(f"no two free ports in {first}-{last} for a private broker")


class PrivateBroker:
    """A broker of one test's own (``deploy/kafka/kafka.sh``, its data under ``root``),
    which the test may SIGKILL and start again on the same port and data."""

    def __init__(self, root: Path) -> None:
        port, controller = broker_ports()
        self.bootstrap = f"127.0.0.1:{port}"
        self.dir = root / "kafka"
        self.env = os.environ | {
            "CA_KAFKA_BOOTSTRAP": self.bootstrap,
            "CA_KAFKA_CONTROLLER_PORT": str(controller),
            "CA_KAFKA_DIR": str(self.dir),
            "KAFKA_HEAP_OPTS": os.environ.get("KAFKA_HEAP_OPTS", "-Xmx512m -Xms128m"),
        }
        self.pids: list[int] = []  # every JVM this broker ran as, in order

    def _sh(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(KAFKA_SH), command], env=self.env, text=True,
                              capture_output=True, check=False, timeout=180)

    def start(self) -> PrivateBroker:
        started = self._sh("start")
        if started.returncode != 0:
            pytest.fail(f"could not start the private broker at {self.bootstrap}:\n"
                        f"{started.stdout}\n{started.stderr}")
        self.pids.append(int((self.dir / "kafka.pid").read_text()))
        return self

    def kill(self) -> None:
        """SIGKILL the broker (no shutdown of any kind) and wait until it is gone."""
        kill_and_wait(self.pids[-1], "the broker")

    def clean(self) -> None:
        self._sh("clean")


def kill_and_wait(pid: int, what: str) -> None:
    """SIGKILL ``pid`` and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return state == "Z"  # killed; its reaper (PID 1) may be late

    wait_until(gone, f"{what} (pid {pid}) to die", 30, 0.1)


CLUSTER_SH = REPO / "deploy" / "kafka" / "cluster.sh"
BROKERS = ("broker1", "broker2", "broker3")


def cluster_port() -> int:
    """A free base port for a private cluster (``deploy/kafka/cluster.sh``): the
    controller's, then three brokers' and their SASL_SSL listeners' (seven in a row),
    from ``CA_TEST_BROKER_PORTS`` when set, as ``broker_ports``."""
    given = os.environ.get("CA_TEST_BROKER_PORTS")
    first, last = map(int, given.split("-")) if given else (20000, 32000)
    candidates = list(range(first, last - 7, 8))
    random.shuffle(candidates)
    for base in candidates:
        if all(_bindable(base + n) for n in range(7)):
            return base
    pytest.fail(f"no seven free ports in a row in {first}-{last} for a private cluster")


class PrivateCluster:
    """A KRaft controller and three brokers of one test's own (``cluster.sh``, data under
    ``root``), which the test may SIGKILL, stop, wipe and start again node by node."""

    def __init__(self, root: Path) -> None:
        base = cluster_port()
        self.dir = root / "cluster"
        self.ports = {name: base + n for n, name in enumerate(BROKERS, 1)}
        self.bootstrap = ",".join(f"127.0.0.1:{port}" for port in self.ports.values())
        self.env = os.environ | {"CA_CLUSTER_DIR": str(self.dir), "CA_CLUSTER_PORT": str(base),
                                 "CA_CLUSTER_SECURE": "off"}  # tests use PLAINTEXT
        self.starts: list[tuple[float, str]] = []  # (monotonic time, nodes) of each `up`

    def _sh(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(CLUSTER_SH), *args], env=self.env, text=True,
                              capture_output=True, check=False, timeout=240)

    def up(self, *nodes: str) -> PrivateCluster:
        """Start ``nodes`` (all that are down when none), return once every broker
        answers and is in the metadata."""
        started = self._sh("up", *nodes)
        if started.returncode != 0:
            pytest.fail(f"could not start the private cluster's {nodes or 'nodes'}:\n"
                        f"{started.stdout}\n{started.stderr}")
        assert started.stdout.strip() == f"CA_KAFKA_BOOTSTRAP={self.bootstrap}", started.stdout
        self.starts.append((time.monotonic(), " ".join(nodes)))
        return self

    def pid(self, node: str) -> int:
        return int((self.dir / node / "kafka.pid").read_text())

    def kill(self, node: str) -> None:
        """SIGKILL one node (no shutdown of any kind) and wait until it is gone."""
        kill_and_wait(self.pid(node), node)

    def stop(self, node: str) -> None:
        """A controlled shutdown of one node (SIGTERM), as a rolling restart does."""
        stopped = self._sh("down", node)
        assert stopped.returncode == 0, stopped.stderr

    def node_of(self, broker_id: int) -> str:
        return BROKERS[broker_id - 1]

    def clean(self) -> None:
        """SIGKILL every node (its data goes: no controlled shutdown needed), remove it."""
        for node in (*BROKERS, "controller"):
            self._sh("kill", node)
        self._sh("clean")


class WorkerProcess:
    def __init__(self, env: dict[str, str], web_port: int, cwd: Path, log: Path) -> None:
        self.env, self.web_port, self.cwd, self.log = env, web_port, cwd, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*CLI, "worker", "--web-port", str(self.web_port)],
            env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        return self

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.read().decode()

    def counter(self, name: str) -> float:
        """The sum of a counter's series on this worker's ``/metrics``."""
        return metric_sum(self.metrics(), name)

    def wait_ready(self, timeout: float = 90) -> None:
        proc = self.proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"worker exited with {proc.returncode}:\n{self.tail()}")
            self.metrics()
            return True

        wait_until(ready, f"the worker's /metrics on port {self.web_port}", timeout, 0.5,
                   explain=self.tail)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def warnings(self, most: int = 6, lines_each: int = 25) -> str:
        """The log's first ``most`` warnings and errors, each with up to ``lines_each``
        of its lines (a stuck commit's report spans many): a failure's first clue,
        often long gone from the tail."""
        found: list[list[str]] = []
        current: list[str] | None = None
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("[20"):  # a new log record
                current = None
                if ("[WARNING]" in line or "[ERROR]" in line) and len(found) < most:
                    current = [line]
                    found.append(current)
            elif current is not None and len(current) < lines_each:
                current.append(line)
        return "\n".join("\n".join(block) for block in found)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


async def new_topic(bootstrap: str, name: str, partitions: int = 2,
                    configs: dict[str, str] | None = None) -> str:
    """Create ``name`` on the broker (for tests that need a bare topic) and return it."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()
    return name


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record on ``topic``, each partition from its start to its end when asked,
    in (partition, offset) order (aiokafka ``ConsumerRecord``s)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    assert parts, f"no topic {topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += records
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


class Deployment:
    """One isolated deployment: unique topics, consumer group and state directory."""

    def __init__(self, bootstrap: str, root: Path) -> None:
        tag = uuid.uuid4().hex[:10]
        self.root = root
        self.env = os.environ | {
            "CA_KAFKA_BOOTSTRAP": bootstrap,
            "CA_APP_ID": f"ca-test-{tag}",
            "CA_TOPIC_PREFIX": f"t{tag}.",
            "CA_DATA_DIR": str(root / "state"),
            "CA_PARTITIONS": "4",
            "CA_EMIT_INTERVAL": "0.5",
            "CA_SINK_BATCH_SECONDS": "0.5",
            "CA_LOG_LEVEL": os.environ.get("CA_TEST_LOG_LEVEL", "warning"),
            # the engine's owner serves its SQL endpoint here, export and the API read it
            "CA_SQL_PORT": str(free_port()),
            "PYTHONPATH": str(REPO),
        }
        self.env.pop("CA_CLICKHOUSE_URL", None)
        self.workers: list[WorkerProcess] = []

    def settings(self) -> Settings:
        return settings_of(self.env)

    def worker(self, web_port: int | None = None) -> WorkerProcess:
        port = web_port or free_port()
        worker = WorkerProcess(self.env, port, self.root, self.root / f"worker-{port}.log")
        self.workers.append(worker)
        return worker

    def cli(self, *args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*CLI, *args], env=self.env, cwd=self.root, input=stdin,
                                text=True, capture_output=True, timeout=180, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def summary(self, campaign_id: str) -> dict[str, object] | None:
        result = self.cli("summary", campaign_id, "--json", check=False)
        if result.returncode == 3:
            return None
        if result.returncode != 0:
            pytest.fail(f"summary failed:\n{result.stderr}")
        return json.loads(result.stdout)

    def wait_for_summary(self, campaign_id: str, expected: dict[str, object],
                         timeout: float = 120, keys: Callable[[dict], dict] | None = None
                         ) -> dict[str, object]:
        pick = keys or (lambda s: s)
        last: dict[str, object] | None = None

        def matching() -> dict[str, object] | None:
            nonlocal last
            last = self.summary(campaign_id)
            return last if last is not None and pick(last) == expected else None

        def explain() -> str:
            logs = "\n".join(f"-- worker {w.web_port}: warnings\n{w.warnings()}\n"
                             f"-- worker {w.web_port}: last lines\n{w.tail(30)}"
                             for w in self.workers)
            return f"last: {last}\nwant: {expected}\n{logs}"

        found = wait_until(matching, f"{campaign_id}'s summary to match the recount", timeout, 1,
                           explain=explain)
        assert found is not None
        return found

    def wait_for_members(self, count: int, timeout: float = 90) -> None:
        """Until the worker group is stable with ``count`` members (each holds partitions)."""
        from aiokafka.admin import AIOKafkaAdminClient

        async def members() -> tuple[str, int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.env["CA_KAFKA_BOOTSTRAP"])
            await admin.start()
            try:
                groups = (await admin.describe_consumer_groups([self.env["CA_APP_ID"]]))[0]
                group = groups.groups[0]
                return group[2], len(group[5])
            finally:
                await admin.close()

        state: tuple[str, int] | None = None

        def stable() -> bool:  # an exception (e.g. a group still forming): ask again
            nonlocal state
            state = asyncio.run(members())
            return state == ("Stable", count)

        wait_until(stable, f"the worker group to be stable with {count} members", timeout, 0.5,
                   explain=lambda: f"last group state: {state}")

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(kafka_bootstrap, tmp_path)
    try:
        yield dep
    finally:
        dep.close()
        shutil.rmtree(tmp_path / "state", ignore_errors=True)
