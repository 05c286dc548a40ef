"""Throughput, latency and recovery of the worker, side by side with three contenders.

    .venv/bin/python -m benchmarks.throughput [--events 500000] [--repeat 3]
        [--only limit,naive,peer,ours,ours2,latency,recovery] [--recovery-messages 1000000]

(or ``make bench``). Needs the broker at ``CA_KAFKA_BOOTSTRAP``. One run:

1. pre-produces ``--events`` messy events (several campaigns from
   ``streams.cli.demo.generate_campaign``: sends, 0-3 receipts, clicks, replies, 10%
   duplicates, shuffled), Avro single-object records on the four input topics
   keyed by message_id, under a fresh ``CA_TOPIC_PREFIX``;
2. runs each contender ``--repeat`` times, one at a time, each from a fresh
   consumer group over that same input, and takes: the timed window from its
   first processed event to the moment all its consumer groups have committed
   every record of every topic they read (lag 0, polled every 0.25 s); the
   process CPU time (user + system, from /proc, the process and its children)
   spent in that window; the peak RSS (VmHWM):

   a. ``limit``: aiokafka ``getmany`` + Avro decoding, no processing
      (``benchmarks/contenders/limit.py``);
   b. ``naive``: one Faust agent per input topic, a per-campaign Table
      (``benchmarks/contenders/naive_faust.py``);
   c. ``peer``: the aggregation with Quix Streams (``benchmarks/contenders/quix_peer.py``);
   d. ``ours``: the real worker (``python -m streams.cli worker``) with its
      ClickHouse sink; done when the groups ``<app_id>`` (inputs, message-events,
      message-updates) and ``<app_id>-clickhouse-sink`` have lag 0;
   e. ``ours2``: the same with two worker processes in one group (CPU and peak
      RSS summed over both): how it scales with processes;

3. ``latency``: ours on fresh topics, fed at a steady rate (half of ours' median
   from step 2, or ``--latency-rate``) for ``--latency-seconds``; among the
   input, probe sends of one campaign; a probe send's latency is from its
   produce timestamp to the ``emitted_at`` of the first campaign-metrics
   snapshot whose ``sent`` count covers it (the k-th probe send is covered when
   ``sent >= k``); p50/p95/p99;
4. ``recovery``: ours builds state for ``--recovery-messages`` messages (one send
   each), is SIGKILLed and restarted; the time from the restart until it has
   published, for every campaign, a snapshot counting all the old messages plus
   one sent after the restart (so it comes from recovered state, not from before
   the kill).

Prints a table (medians, min-max) and the ratios ours/naive, ours/peer,
ours/limit; ``--json`` writes every figure to a file. Not part of the tests.
With ``CA_SCHEMA_REGISTRY_URL`` set the worker runs with the registry and the input
is Confluent-framed too (``confluent_inputs``): registry on vs off, docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from streams.cli.admin import ensure_topics
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import encode_event, encode_record, record_to_event
from streams.codecs.output_avro import decode_campaign_metrics
from streams.settings import Settings, load_settings, settings_of

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = ("limit", "naive", "peer", "ours", "ours2")
PARTS = (*CONTENDERS, "latency", "recovery")
EVENTS_PER_MESSAGE = 3.85  # generate_campaign's mean, duplicates included
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes -----------------------------------------------------------------------


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and its live descendants."""
    total = 0
    for pid in _descendants(root):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def peak_rss_mb(root: int) -> float:
    total = 0
    for pid in _descendants(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 30) -> None:
    """Signal the process group the harness started for this process."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- Kafka ---------------------------------------------------------------------------


async def broker_answers(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await admin.list_topics()
        return True
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


class LagProbe:
    """Uncommitted records of consumer groups, with one admin client and one consumer."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> LagProbe:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self, groups: dict[str, Sequence[str]]) -> tuple[int, int]:
        """(records not committed, records in the topics) summed over the groups."""
        lag = ends_total = 0
        for group, topics in groups.items():
            tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
            ends = await self.consumer.end_offsets(tps)
            try:
                committed = await self.admin.list_consumer_group_offsets(group)
            except KafkaError as exc:  # a brand-new group's coordinator
                if not exc.retriable:
                    raise
                committed = {}
            for tp in tps:
                done = committed[tp].offset if tp in committed else 0
                lag += ends[tp] - max(done, 0)
                ends_total += ends[tp]
        return lag, ends_total


async def produce(bootstrap: str, records: Iterable[tuple[str, bytes, bytes]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=262144)
    await producer.start()
    n = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            n += 1
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


async def delete_topics(bootstrap: str, tag: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if tag in t]
        if names:
            await admin.delete_topics(names)
        return len(names)
    finally:
        await admin.close()


class MetricsTail:
    """Follows the campaign-metrics topic from its current end: (record time, summary)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                         enable_auto_commit=False)

    async def __aenter__(self) -> MetricsTail:
        await self.consumer.start()
        topic = self.settings.campaign_metrics_topic
        tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, not at the first getmany
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> list[dict[str, Any]]:
        out = []
        batch = await self.consumer.getmany(timeout_ms=timeout_ms)
        for records in batch.values():
            for r in records:
                if r.value is not None:
                    out.append(decode_campaign_metrics(r.value))
        return out


# --- input ---------------------------------------------------------------------------


@dataclass
class Input:
    records: list[tuple[str, bytes, bytes]]
    expected_sent: dict[str, int]  # accepted sends per campaign (what `sent` must show)


def build_input(settings: Settings, events: int, campaigns: int, seed: int,
                prefix: str = "bench") -> Input:
    """Messy campaigns, shuffled together and cut to exactly ``events`` records."""
    per_campaign = math.ceil(events / EVENTS_PER_MESSAGE / campaigns * 1.03) + 1
    rows: list[tuple[str, bytes, bytes, str | None, bool]] = []
    for c in range(campaigns):
        for raw in generate_campaign(f"{prefix}-c{c}", per_campaign, seed=seed + c):
            kind = raw.pop("type")
            event = record_to_event(kind, raw)
            rows.append((settings.input_topics[kind], event.message_id.encode(),
                         encode_event(event), raw.get("campaign_id"),
                         raw.get("outcome") == "ACCEPTED"))
    random.Random(seed).shuffle(rows)
    rows = rows[:events]
    accepted: dict[str, set[bytes]] = {}
    for _topic, key, _value, campaign, ok in rows:
        if campaign is not None and ok:
            accepted.setdefault(campaign, set()).add(key)
    records = [(t, k, v) for t, k, v, _c, _ok in rows]
    if settings.schema_registry_url:
        records = confluent_inputs(settings, records)
    return Input(records, {c: len(keys) for c, keys in sorted(accepted.items())})


def confluent_inputs(settings: Settings, records: list[tuple[str, bytes, bytes]]
                     ) -> list[tuple[str, bytes, bytes]]:
    """The records Confluent-framed, as producers on the registry write them: each input
    topic's schema registered under ``<topic>-value``, each value given its id."""
    from schemas import FRAMING
    from streams.codecs.input_avro import CURRENT
    from streams.codecs.registry import install, register_produced

    client = install(settings.schema_registry_url)
    register_produced(client, {topic: kind for kind, topic in settings.input_topics.items()})
    frames = {topic: FRAMING.frames.pop(CURRENT[kind].fingerprint)
              for kind, topic in settings.input_topics.items()}
    return [(t, k, frames[t] + v[10:]) for t, k, v in records]


def send_record(campaign: str, n: int, at_ms: int) -> dict[str, Any]:
    contact = n % 1_000_000
    return {
        "event_id": f"{campaign}-m{n}-e0", "message_id": f"{campaign}-m{n}",
        "occurred_at": at_ms, "campaign_id": campaign, "variant": "AB"[n % 2],
        "contact_id": f"contact-{contact}", "contact_name": "Ana Smith",
        "phone": f"+1555{contact:07d}", "outcome": "ACCEPTED", "error_code": None,
        "error_description": None, "segments": 1,
    }


def sends(settings: Settings, campaign: str, first: int, count: int
          ) -> list[tuple[str, bytes, bytes]]:
    at = int(time.time() * 1000) - 3_600_000
    topic = settings.input_topics["sent"]
    return [(topic, f"{campaign}-m{n}".encode(),
             encode_record("sent", send_record(campaign, n, at)))
            for n in range(first, first + count)]


# --- one contender run ---------------------------------------------------------------


@dataclass
class Run:
    contender: str
    events: int
    seconds: float = math.nan      # first processed event -> lag 0
    cpu_seconds: float = math.nan  # process CPU in that window
    peak_rss_mb: float = math.nan
    startup_seconds: float = math.nan  # process start -> first processed event
    check: str = ""
    error: str = ""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_seconds / self.events


@dataclass
class Bench:
    args: argparse.Namespace
    base: Settings  # bootstrap and partitions
    tag: str
    workdir: Path
    runs: list[Run] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def env(self, prefix: str, **extra: str) -> dict[str, str]:
        return os.environ | {
            "CA_KAFKA_BOOTSTRAP": self.base.kafka_bootstrap,
            "CA_TOPIC_PREFIX": prefix,
            "CA_PARTITIONS": str(self.base.partitions),
            "CA_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
            "PYTHONPATH": str(REPO),
        } | extra

    def settings_for(self, env: dict[str, str]) -> Settings:
        return settings_of(env)


def _metrics_count(port: int) -> float:
    """campaign_analytics_events_consumed_total of a worker's /metrics (0 if not up)."""
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=0.5) as resp:  # noqa: S310 - localhost
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("campaign_analytics_events_consumed_total{"))


def _histograms(port: int, names: Sequence[str]) -> dict[str, dict[float, float]]:
    """Cumulative buckets (bound -> count, summed over labels) of the worker's
    histograms ``names`` on its ``/metrics``, plus ``"sum"`` as bound ``-1``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",  # noqa: S310
                                    timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in names:
            continue
        buckets = out.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
            elif sample.name.endswith("_sum"):
                bound = -1.0
            else:
                continue
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return out


def _bucket_of(buckets: dict[float, float], q: float) -> float:
    """The bound of the bucket holding quantile ``q`` (0..1)."""
    count = buckets.get(math.inf, 0.0)
    for bound in sorted(b for b in buckets if b >= 0):
        if buckets[bound] >= q * count:
            return bound
    return math.inf


def worker_waits(port: int) -> dict[str, float]:
    """From the worker's /metrics: its garbage-collection pauses (count, seconds, the
    longest's bucket) and the input records' age when folded (p50/p99 buckets)."""
    found = _histograms(port, ("campaign_analytics_gc_seconds",
                               "campaign_analytics_processing_seconds",
                               "campaign_analytics_handoff_seconds"))
    out: dict[str, float] = {}
    gc_buckets = found.get("campaign_analytics_gc_seconds")
    if gc_buckets:
        out |= {"gc_count": gc_buckets.get(math.inf, 0.0), "gc_seconds": gc_buckets[-1.0],
                "gc_longest_under": _bucket_of(gc_buckets, 1.0)}
    folded = found.get("campaign_analytics_processing_seconds")
    if folded and folded.get(math.inf):
        out |= {"fold_age_p50_under": _bucket_of(folded, 0.5),
                "fold_age_p99_under": _bucket_of(folded, 0.99)}
    handed = found.get("campaign_analytics_handoff_seconds")
    if handed and handed.get(math.inf):
        out |= {"handoff_p50_under": _bucket_of(handed, 0.5),
                "handoff_p99_under": _bucket_of(handed, 0.99)}
    return out


async def timed_run(bench: Bench, run: Run, cmds: list[list[str]], env: dict[str, str],
                    groups: dict[str, Sequence[str]], expected_ends: int,
                    mark: Path | None, metrics_ports: list[int],
                    procs: list[subprocess.Popen[bytes]]) -> None:
    """Start a contender's processes (appended to ``procs``; the caller stops them) and
    fill ``run`` once its groups have lag 0."""
    log_path = bench.workdir / f"{run.contender}-{uuid.uuid4().hex[:6]}.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        for cmd in cmds:
            procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    def cpu() -> float:
        return sum(cpu_seconds(p.pid) for p in procs)

    first: float | None = None
    cpu_first = 0.0
    zero_at: tuple[float, float, float, int] | None = None  # (time, cpu, rss, ends)
    next_lag = 0.0
    deadline = started + bench.args.timeout
    async with LagProbe(bench.base.kafka_bootstrap, bench.base.partitions) as probe:
        while True:
            now = time.monotonic()
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                run.error = f"exited with {dead[0].returncode}; see {log_path}"
                return
            if now > deadline:
                run.error = f"not done after {bench.args.timeout:.0f} s; see {log_path}"
                return
            if first is None:
                seen = (mark is not None and mark.exists()) or any(
                    _metrics_count(port) > 0 for port in metrics_ports)
                if not seen and mark is None and now >= next_lag:
                    # no such counter (any more)? then the first commit, a little late
                    next_lag = now + 0.25
                    lag, ends = await probe.lag(groups)
                    seen = lag < ends
                if seen:
                    cpu_first = cpu()
                    first = time.monotonic()
                    if mark is not None:  # the contender's own clocks, at its first event
                        first -= max(0.0, time.time() - float(mark.read_text()))
                        cpu_first = float(mark.with_suffix(".cpu").read_text())
                    run.startup_seconds = first - started
            if first is not None and now >= next_lag:
                next_lag = now + 0.25
                lag, ends = await probe.lag(groups)
                if lag == 0 and ends >= expected_ends:
                    if zero_at is not None and zero_at[3] == ends:
                        t, cpu_done, rss, _ = zero_at
                        run.seconds = t - first
                        run.cpu_seconds = cpu_done - cpu_first
                        run.peak_rss_mb = rss
                        return
                    # when the answer came: done by then (at most one poll late)
                    zero_at = (time.monotonic(), cpu(),
                               sum(peak_rss_mb(p.pid) for p in procs), ends)
                else:
                    zero_at = None
            await asyncio.sleep(0.05)


def contender_command(name: str) -> list[str]:
    module = {"limit": "limit", "naive": "naive_faust", "peer": "quix_peer"}[name]
    return [sys.executable, "-m", f"benchmarks.contenders.{module}"]


async def run_contender(bench: Bench, name: str, prefix: str, data: Input, round_no: int
                        ) -> Run:
    run = Run(name, len(data.records))
    group = f"bench-{bench.tag}-{name}-{round_no}"
    workdir = bench.workdir / group
    inputs = list(bench.settings_for(bench.env(prefix)).input_topics.values())
    if name.startswith("ours"):
        env = bench.env(prefix, CA_APP_ID=group, CA_DATA_DIR=str(workdir))
        settings = bench.settings_for(env)
        await ensure_topics(settings)  # the worker does it too; its internal topics
        ports = [free_port() for _ in range(2 if name == "ours2" else 1)]
        cmds = [[sys.executable, "-m", "streams.cli", "worker", "--web-port", str(port)]
                for port in ports]
        groups: dict[str, Sequence[str]] = {
            group: [*inputs, *settings.internal_topics],
            f"{group}-clickhouse-sink": [settings.message_updates_topic],
            f"{group}-clickhouse-events-sink": inputs,
        }
        mark: Path | None = None
    else:
        mark = bench.workdir / f"{group}.first"
        env = bench.env(prefix, BENCH_GROUP=group, BENCH_WORKDIR=str(workdir),
                        BENCH_MARK=str(mark), BENCH_WEB_PORT=str(free_port()))
        cmds = [contender_command(name)]
        groups = {group: inputs}
        ports = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            tail = None
            if ports:
                tail = await stack.enter_async_context(MetricsTail(bench.settings_for(env)))
            await timed_run(bench, run, cmds, env, groups, len(data.records), mark, ports,
                            procs)
            if tail is not None and not run.error:
                run.check = await check_summaries(tail, data.expected_sent)
    finally:
        for proc in procs:
            stop(proc)
    shutil.rmtree(workdir, ignore_errors=True)
    return run


async def check_summaries(tail: MetricsTail, expected: dict[str, int],
                          wait: float = 10.0, more: float = 50.0) -> str:
    """Do ours' newest snapshots (published during this run) count every accepted send?
    Within ``wait`` s of the end of the timed window: "exact"; within ``more`` s
    after that, say how late (a late snapshot is not a wrong count)."""
    latest: dict[str, int] = {}
    start = time.monotonic()
    while time.monotonic() < start + wait + more:
        for summary in await tail.poll():
            latest[summary["campaign_id"]] = summary["sent"]
        if all(latest.get(c) == n for c, n in expected.items()):
            late = time.monotonic() - start
            return ("sent counts exact" if late <= wait else
                    f"sent counts exact, but only {late:.0f} s after the last commit")
    wrong = {c: (latest.get(c), n) for c, n in expected.items() if latest.get(c) != n}
    return f"sent counts differ (seen, expected): {wrong}"


async def _fresh_worker(bench: Bench, short: str, part: str) -> tuple[dict[str, str], Any]:
    """Environment and settings of a worker of its own (topics, group, data directory)."""
    app_id = f"bench-{bench.tag}-ours-{part}"
    env = bench.env(f"bench-{bench.tag}-{short}.", CA_APP_ID=app_id,
                    CA_DATA_DIR=str(bench.workdir / app_id))
    settings = bench.settings_for(env)
    await ensure_topics(settings)
    return env, settings


# --- latency -------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def latency(bench: Bench, rate: float) -> dict[str, Any]:
    seconds = bench.args.latency_seconds
    env, settings = await _fresh_worker(bench, "lat", "latency")
    total = int(rate * seconds)
    probe_every = 20
    probes = total // probe_every
    background = build_input(settings, total - probes, bench.args.campaigns, seed=11,
                             prefix="lat").records
    probe_campaign = "latency-probe"
    probe_records = sends(settings, probe_campaign, 1, probes)
    port = free_port()
    log_path = bench.workdir / "latency-worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(port)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    produced_ms: list[int] = []
    snapshots: list[tuple[int, int]] = []  # (emitted_at, sent) of the probe campaign
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=2)
    try:
        async with MetricsTail(settings) as tail:
            await producer.start()
            # warm-up: the worker is up and the pipeline flows end to end
            await produce(settings.kafka_bootstrap, sends(settings, "latency-warmup", 0, 1))
            deadline = time.monotonic() + 180
            while not any(s["campaign_id"] == "latency-warmup" for s in await tail.poll()):
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"worker not serving; see {log_path}")
            # steady input: `rate` records per second, sent in 10 ms slices
            start = time.monotonic()
            bg, pr, sent_n = iter(background), iter(probe_records), 0
            futures: list[asyncio.Future[Any]] = []
            while sent_n < total:
                due = min(total, int((time.monotonic() - start) * rate) + 1)
                while sent_n < due:
                    sent_n += 1
                    rec = next(pr, None) if sent_n % probe_every == 0 else next(bg, None)
                    if rec is None:
                        continue
                    now_ms = int(time.time() * 1000)
                    if rec[0] == settings.input_topics["sent"] and \
                            rec[1].startswith(probe_campaign.encode()):
                        produced_ms.append(now_ms)
                    futures.append(await producer.send(rec[0], value=rec[2], key=rec[1],
                                                       timestamp_ms=now_ms))
                for s in await tail.poll(timeout_ms=0):
                    if s["campaign_id"] == probe_campaign:
                        snapshots.append((s["emitted_at"], s["sent"]))
                await asyncio.sleep(0.01)
            achieved = total / (time.monotonic() - start)
            await asyncio.gather(*futures)
            deadline = time.monotonic() + 120
            while not snapshots or snapshots[-1][1] < len(produced_ms):
                if time.monotonic() > deadline:
                    break
                for s in await tail.poll():
                    if s["campaign_id"] == probe_campaign:
                        snapshots.append((s["emitted_at"], s["sent"]))
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        pauses = worker_waits(port)
        stop(worker)
        shutil.rmtree(bench.workdir / settings.app_id, ignore_errors=True)
    latencies: list[float] = []
    covered = 0
    for emitted_at, sent in snapshots:
        while covered < min(sent, len(produced_ms)):
            latencies.append((emitted_at - produced_ms[covered]) / 1000)
            covered += 1
    if not latencies:
        raise RuntimeError(f"no probe send reached a snapshot; see {log_path}")
    return {
        "target_rate": rate, "achieved_rate": achieved, "seconds": seconds,
        "probes": len(produced_ms), "covered": covered,
        "p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95),
        "p99": _percentile(latencies, 99), "max": max(latencies),
        "emit_interval": settings.emit_interval, **pauses,
        **_gaps([emitted_at for emitted_at, _ in snapshots]),
    }


def _gaps(emitted_ms: list[int]) -> dict[str, float]:
    """Seconds between the probe campaign's consecutive snapshots (the contract allows
    one per ``CA_EMIT_INTERVAL``; a longer gap is time every covered send waited)."""
    gaps = [(b - a) / 1000 for a, b in zip(emitted_ms, emitted_ms[1:], strict=False)]
    if not gaps:
        return {}
    return {"gap_p50": _percentile(gaps, 50), "gap_p99": _percentile(gaps, 99),
            "gap_max": max(gaps)}


# --- recovery ------------------------------------------------------------------------


async def recovery(bench: Bench) -> dict[str, Any]:
    messages = bench.args.recovery_messages
    env, settings = await _fresh_worker(bench, "rec", "recovery")
    campaigns = [f"rec-c{c}" for c in range(4)]
    per = math.ceil(messages / len(campaigns))
    t = time.monotonic()
    for c in campaigns:
        await produce(settings.kafka_bootstrap, sends(settings, c, 0, per))
    print(f"  recovery: produced {per * len(campaigns)} sends in {time.monotonic() - t:.0f} s",
          flush=True)
    port = free_port()
    cmd = [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(port)]
    log = (bench.workdir / "recovery-worker.log").open("ab")
    expected = dict.fromkeys(campaigns, per)
    result: dict[str, Any] = {"messages": per * len(campaigns)}
    procs: list[subprocess.Popen[bytes]] = []

    def start_worker() -> subprocess.Popen[bytes]:
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
        return procs[-1]

    try:
        async with MetricsTail(settings) as tail:
            start = time.monotonic()
            worker = start_worker()
            built = await wait_for_counts(tail, expected, worker, bench.args.timeout)
            result["build_seconds"] = built - start
            async with LagProbe(settings.kafka_bootstrap, settings.partitions) as probe:
                topics = [*settings.input_topics.values(), *settings.internal_topics]
                while (await probe.lag({settings.app_id: topics}))[0]:
                    await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # let the last changelog records out
            stop(worker, signal.SIGKILL)
            restart = time.monotonic()
            worker = start_worker()
            for c in campaigns:  # one new message each, counted only on recovered state
                await produce(settings.kafka_bootstrap, sends(settings, c, per, 1))
            expected = {c: per + 1 for c in campaigns}
            wrong: list[tuple[str, int]] = []
            done = await wait_for_counts(tail, expected, worker, bench.args.timeout, wrong)
            result["recovery_seconds"] = done - restart
            result["wrong_snapshots_after_restart"] = len(wrong)
            result["session_timeout"] = settings.session_timeout
    finally:
        for proc in procs:
            stop(proc)
        log.close()
        shutil.rmtree(bench.workdir / settings.app_id, ignore_errors=True)
    return result


async def wait_for_counts(tail: MetricsTail, expected: dict[str, int],
                          worker: subprocess.Popen[bytes], timeout: float,
                          wrong: list[tuple[str, int]] | None = None) -> float:
    latest: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode})")
        for s in await tail.poll():
            latest[s["campaign_id"]] = s["sent"]
            if wrong is not None and s["sent"] not in (expected.get(s["campaign_id"]),
                                                       expected.get(s["campaign_id"], 0) - 1):
                wrong.append((s["campaign_id"], s["sent"]))
        if all(latest.get(c) == n for c, n in expected.items()):
            return time.monotonic()
    raise RuntimeError(f"counts not reached in {timeout:.0f} s: {latest} vs {expected}")


# --- report --------------------------------------------------------------------------


def _spread(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}" \
           f"-{format(max(values), fmt)})"


def report(bench: Bench) -> str:
    ok = [r for r in bench.runs if not r.error]
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, broker {bench.base.kafka_bootstrap}, "
        f"{bench.base.partitions} partitions",
    ]
    if bench.runs:
        events = bench.runs[0].events
        lines += [f"{events} events, {bench.args.repeat} round(s); median (min-max)", "",
                  f"{'contender':<8} {'events/s':>24} {'CPU µs/event':>22} "
                  f"{'peak RSS MB':>18} {'start-up s':>10}"]
        medians: dict[str, float] = {}
        for name in CONTENDERS:
            rs = [r for r in ok if r.contender == name]
            if not rs:
                continue
            medians[name] = statistics.median(r.events_per_s for r in rs)
            lines.append(
                f"{name:<8} {_spread([r.events_per_s for r in rs], '.0f'):>24} "
                f"{_spread([r.cpu_us_per_event for r in rs], '.1f'):>22} "
                f"{_spread([r.peak_rss_mb for r in rs], '.0f'):>18} "
                f"{statistics.median(r.startup_seconds for r in rs):>10.1f}")
        for r in bench.runs:
            if r.error:
                lines.append(f"  {r.contender}: FAILED: {r.error}")
        checks = sorted({r.check for r in ok if r.check})
        if checks:
            lines.append(f"ours' metric snapshots: {'; '.join(checks)}")
        if "ours" in medians:
            lines.append("")
            for other in ("naive", "peer", "limit"):
                if other in medians:
                    lines.append(f"ours/{other:<6} {medians['ours'] / medians[other]:6.2f}x "
                                 f"events/s")
            if "ours2" in medians:
                lines.append(f"ours2/ours   {medians['ours2'] / medians['ours']:6.2f}x events/s "
                             "(two worker processes / one)")
        bench.results["medians_events_per_s"] = medians
    if "latency" in bench.results:
        lat = bench.results["latency"]
        lines += ["", f"latency (ours, {lat['achieved_rate']:.0f} events/s for "
                  f"{lat['seconds']:.0f} s, {lat['covered']} probe sends, snapshots every "
                  f"{lat['emit_interval']:g} s): p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, "
                  f"p99 {lat['p99']:.2f} s, max {lat['max']:.2f} s"]
        if lat.get("gap_max"):
            lines += [f"  seconds between the probe campaign's snapshots: p50 "
                      f"{lat['gap_p50']:.2f}, p99 {lat['gap_p99']:.2f}, max {lat['gap_max']:.2f}"]
        if lat.get("gc_count"):
            lines += [f"  the worker's garbage collections: {lat['gc_count']:.0f}, "
                      f"{lat['gc_seconds']:.2f} s in all, the longest under "
                      f"{lat['gc_longest_under']:g} s"]
        if lat.get("fold_age_p50_under"):
            lines += [f"  input records' age when folded: p50 under "
                      f"{lat['fold_age_p50_under']:g} s, p99 under "
                      f"{lat['fold_age_p99_under']:g} s"]
        if lat.get("handoff_p50_under"):
            lines += [f"  message updates' age when aggregated (fold -> aggregation): p50 "
                      f"under {lat['handoff_p50_under']:g} s, p99 under "
                      f"{lat['handoff_p99_under']:g} s"]
    if "recovery" in bench.results:
        rec = bench.results["recovery"]
        lines += ["", f"recovery (ours, {rec['messages']} messages of state, built in "
                  f"{rec['build_seconds']:.0f} s): SIGKILL + restart -> correct metrics in "
                  f"{rec['recovery_seconds']:.1f} s (session timeout "
                  f"{rec['session_timeout']:g} s; wrong snapshots meanwhile: "
                  f"{rec['wrong_snapshots_after_restart']})"]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000, help="input events (500000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per contender (3)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run ({','.join(PARTS)})")
    parser.add_argument("--campaigns", type=int, default=8, help="campaigns in the input (8)")
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="input events/s of the latency run (default: half of ours' median)")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--recovery-messages", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one contender run may take")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--keep-topics", action="store_true",
                        help="do not delete the run's topics at the end")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the run's working directory (process logs) at the end")
    parser.add_argument("--check-broker", action="store_true",
                        help="only say (exit status 0/1) whether the broker answers")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {PARTS}")
    return args


async def amain(args: argparse.Namespace) -> int:
    base = load_settings()
    if not await broker_answers(base.kafka_bootstrap):
        print(f"no Kafka broker answers at {base.kafka_bootstrap} (CA_KAFKA_BOOTSTRAP); "
              "start one with `make kafka-up`", file=sys.stderr)
        return 2
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{tag}-"))
    bench = Bench(args, base, tag, workdir)
    print(f"run {tag}; logs in {workdir}", flush=True)
    try:
        contenders = [c for c in CONTENDERS if c in args.parts]
        if contenders:
            prefix = f"bench-{tag}."
            settings = bench.settings_for(bench.env(prefix))
            t = time.monotonic()
            data = build_input(settings, args.events, args.campaigns, seed=5)
            await ensure_topics(settings)
            await produce(settings.kafka_bootstrap, data.records)
            print(f"produced {len(data.records)} events under {prefix!r} in "
                  f"{time.monotonic() - t:.0f} s", flush=True)
            for round_no in range(1, args.repeat + 1):
                for name in contenders:
                    run = await run_contender(bench, name, prefix, data, round_no)
                    bench.runs.append(run)
                    print(f"  round {round_no} {name:<6} " + (
                        f"FAILED: {run.error}" if run.error else
                        f"{run.events_per_s:8.0f} events/s  {run.cpu_us_per_event:6.1f} µs "
                        f"CPU/event  {run.peak_rss_mb:5.0f} MB  {run.check}"), flush=True)
        if "latency" in args.parts:
            rate = args.latency_rate
            ours = [r.events_per_s for r in bench.runs if r.contender == "ours" and not r.error]
            if rate is None and ours:
                rate = statistics.median(ours) / 2
            if rate is None:
                print("latency: needs ours' throughput from this run or --latency-rate",
                      file=sys.stderr)
            else:
                bench.results["latency"] = await latency(bench, rate)
                print(f"  latency done: p99 {bench.results['latency']['p99']:.2f} s", flush=True)
        if "recovery" in args.parts:
            bench.results["recovery"] = await recovery(bench)
            print(f"  recovery done: {bench.results['recovery']['recovery_seconds']:.1f} s",
                  flush=True)
    finally:
        if not args.keep_topics:
            with contextlib.suppress(Exception):
                await delete_topics(base.kafka_bootstrap, tag)
    text = report(bench)
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps({
            "tag": tag, "args": {k: str(v) for k, v in vars(args).items()},
            "runs": [asdict(r) | {"events_per_s": r.events_per_s,
                                  "cpu_us_per_event": r.cpu_us_per_event}
                     for r in bench.runs if not r.error],
            "failed": [asdict(r) for r in bench.runs if r.error],
            **bench.results, "report": text}, indent=2, default=str))
    failed = any(r.error for r in bench.runs)
    if not failed and not args.keep_logs:  # keep the logs of a failed run
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # aiokafka retries by itself while a brand-new topic's leaders settle; keep it quiet
    logging.basicConfig(level=logging.ERROR)
    if args.check_broker:
        return 0 if asyncio.run(broker_answers(load_settings().kafka_bootstrap)) else 1
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
