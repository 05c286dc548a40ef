"""Load: input at the worker's maximum while the API serves live streams and pages.

    .venv/bin/python -m benchmarks.load [--seconds 300] [--rate EVENTS_PER_S]
        [--sse-clients 500] [--pages-per-s 50] [--sample-every 10] [--json FILE]

Prints its figures; not part of the tests. One run:

1. **maximum**: ``--measure-events`` messy events (``benchmarks.throughput.build_input``)
   are produced first, then one worker (``campaign-analytics worker``, its sinks in
   their child process on chdb) starts; its maximum is the events over the time from
   its first processed event until its groups (the worker's and both sinks') have
   committed everything, as ``benchmarks/throughput.py`` measures it. ``--rate`` skips
   this and drives at that rate instead;
2. **load**, for ``--seconds``: a child process generates, encodes and produces new
   messy events of ``--campaigns`` campaigns at that rate (paced every 0.1 s); the
   API (``campaign-analytics api``, bearer token on) serves ``--sse-clients``
   ``/events`` streams of one fed campaign (aiohttp, in this process) and
   ``--pages-per-s`` message-log pages (100 rows; first pages and pages further down
   by their cursor, over every campaign; at most ``--max-in-flight`` at once);
3. every ``--sample-every`` s a row: input and page rates, page latency, events read
   from the streams, the worker's consumer lag, how far the message log trails the
   metrics (``campaign_analytics_sink_lag_seconds{sink="message_log"}`` and its
   records, streams/sink_runtime/freshness.py) and the RSS of each process.

Errors: an HTTP answer not 2xx, a request past ``--timeout``, a page not sent because
``--max-in-flight`` were waiting, a stream that fails, ends or stays silent for 3
heartbeats. Verdict: no error, and the RSS of the worker (its tables on disk with the
default ``CA_TABLE_STORE=rocksdb``), the API, the producer and the client flat (the
last sample at most ``--flat-share`` or 32 MB above the one a third into the run; the
least-squares slope from a third in is printed too); the sink process's engine keeps
every row (and a ``memory`` worker every message), so theirs is reported per 1,000
events. Pages answered from the API's read ahead (``X-Cache: HIT``) are counted.
Starts its own broker at ``--bootstrap`` when none answers and removes it; deletes its
topics, processes and temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.api_bench import clean_broker, machine, percentile, raise_nofile, start_broker
from benchmarks.throughput import (
    LagProbe,
    _descendants,
    build_input,
    delete_topics,
    free_port,
    produce,
    stop,
)
from streams.cli.admin import ensure_topics
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import encode_event, record_to_event
from streams.settings import Settings, settings_of

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("campaign-analytics"))
PAGE = 100
PAGE_DEPTH = 10  # a reader follows next_cursor this many pages down, then starts again
CLK_TCK = os.sysconf("SC_CLK_TCK")
PRODUCER_EXTRA = 5.0  # the producer runs this much longer: alive at the last sample
HEARTBEAT = 10.0  # the API's keep-alive period (streams/api/app.py)
# The sink process's engine holds every row (its parts are files, but chdb's caches
# grow with them), and with CA_TABLE_STORE=memory the worker keeps every message's
# state in a dict: their RSS is reported per event, not judged flat. With the default
# CA_TABLE_STORE=rocksdb the worker's states are on disk and its RSS is judged.
STATEFUL = ("sink",)
PROCESSES = ("worker", "sink", "api", "producer", "client")


# --- the producer (child process) -------------------------------------------------------


def chunk_records(settings: Settings, campaign: str, chunk: int, messages: int
                  ) -> list[tuple[str, bytes, bytes]]:
    """``messages`` new messages' messy events of ``campaign``, ids unique per chunk."""
    out = []
    for raw in generate_campaign(campaign, messages, seed=chunk):
        kind = raw.pop("type")
        raw["message_id"] = f"{raw['message_id']}-k{chunk}"
        raw["event_id"] = f"{raw['event_id']}-k{chunk}"
        event = record_to_event(kind, raw)
        out.append((settings.input_topics[kind], event.message_id.encode(), encode_event(event)))
    return out


async def drive(settings: Settings, rate: float, seconds: float, campaigns: list[str]) -> None:
    """Produce at ``rate`` events/s for ``seconds``; one JSON line at the end."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=20, max_batch_size=262144)
    await producer.start()
    sent, chunk, started = 0, 0, time.monotonic()
    ready: list[tuple[str, bytes, bytes]] = []
    pending: list[asyncio.Future[Any]] = []
    try:
        while (now := time.monotonic() - started) < seconds:
            due = int(rate * now) - sent
            while len(ready) < due:
                ready += chunk_records(settings, campaigns[chunk % len(campaigns)], chunk, 200)
                chunk += 1
            for topic, key, value in ready[:due]:
                pending.append(await producer.send(topic, value=value, key=key))
            del ready[:due]
            sent += max(due, 0)
            if len(pending) > 20_000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.1)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - started}), flush=True)


# --- the API's clients (this process) ---------------------------------------------------


@dataclass
class Clients:
    base: str
    token: str
    timeout: float
    errors: Counter[str] = field(default_factory=Counter)
    page_times: list[float] = field(default_factory=list)  # this interval's
    pages_ok: int = 0
    pages_cached: int = 0  # answered from the API's read ahead (X-Cache: HIT)
    sse_events: int = 0
    sse_open: int = 0
    closing: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def stream(self, session: aiohttp.ClientSession, campaign: str,
                     connected: asyncio.Event) -> None:
        """One ``/events`` stream, read until the run ends."""
        url = f"{self.base}/api/v1/campaigns/{campaign}/events"
        try:
            async with session.get(url, headers=self.headers | {"Accept": "text/event-stream"},
                                   timeout=aiohttp.ClientTimeout(
                                       total=None, connect=self.timeout,
                                       sock_read=3 * HEARTBEAT)) as response:
                if response.status != 200:
                    self.errors[f"stream: HTTP {response.status}"] += 1
                    return
                self.sse_open += 1
                connected.set()
                try:
                    async for line in response.content:
                        if line.startswith(b"event: summary"):
                            self.sse_events += 1
                finally:
                    self.sse_open -= 1
                if not self.closing:
                    self.errors["stream: ended by the server"] += 1
        except TimeoutError:
            if not self.closing:
                self.errors[f"stream: silent for {3 * HEARTBEAT:.0f} s or connect timeout"] += 1
        except aiohttp.ClientError as exc:
            if not self.closing:
                self.errors[f"stream: {type(exc).__name__}"] += 1
        finally:
            connected.set()

    async def page(self, session: aiohttp.ClientSession, campaign: str,
                   cursor: str | None) -> str | None:
        """One message-log page; its next cursor (None at the end or on an error)."""
        url = f"{self.base}/api/v1/campaigns/{campaign}/messages"
        params = {"limit": str(PAGE)} | ({"cursor": cursor} if cursor else {})
        started = time.monotonic()
        try:
            async with session.get(url, params=params, headers=self.headers,
                                   timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                body = await response.read()
                if not 200 <= response.status < 300:
                    self.errors[f"page: HTTP {response.status}"] += 1
                    return None
        except TimeoutError:
            self.errors[f"page: no answer in {self.timeout:.0f} s"] += 1
            return None
        except aiohttp.ClientError as exc:
            self.errors[f"page: {type(exc).__name__}"] += 1
            return None
        self.page_times.append(time.monotonic() - started)
        self.pages_ok += 1
        self.pages_cached += response.headers.get("X-Cache") == "HIT"
        next_cursor: str | None = json.loads(body).get("next_cursor")
        return next_cursor

    async def pages(self, session: aiohttp.ClientSession, campaigns: list[str],
                    per_s: float, max_in_flight: int) -> None:
        """``per_s`` pages a second on a fixed schedule (open loop): readers, one per
        campaign, each following its cursor ``PAGE_DEPTH`` pages down."""
        cursors: dict[str, tuple[int, str | None]] = {c: (0, None) for c in campaigns}
        in_flight: set[asyncio.Task[None]] = set()
        started, n = time.monotonic(), 0

        async def read(campaign: str) -> None:
            depth, cursor = cursors[campaign]
            found = await self.page(session, campaign, cursor)
            deeper = found is not None and depth + 1 < PAGE_DEPTH
            cursors[campaign] = (depth + 1, found) if deeper else (0, None)

        try:
            while True:
                n += 1
                await asyncio.sleep(max(0.0, started + n / per_s - time.monotonic()))
                if len(in_flight) >= max_in_flight:
                    self.errors[f"page: not sent, {max_in_flight} in flight"] += 1
                    continue
                task = asyncio.create_task(read(campaigns[n % len(campaigns)]))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            for task in list(in_flight):
                task.cancel()


# --- samples ----------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return math.nan


def worker_gauges(text: str) -> dict[str, float]:
    """The figures a row takes from the worker's /metrics (its sink process's in)."""
    out = {"consumed": 0.0, "consumer_lag": 0.0, "log_lag_s": 0.0, "log_lag_records": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "campaign_analytics_events_consumed_total":
                out["consumed"] += s.value
            elif s.name == "campaign_analytics_consumer_lag":
                out["consumer_lag"] += s.value
            elif s.name == "campaign_analytics_sink_lag_seconds" and \
                    s.labels.get("sink") == "message_log":
                out["log_lag_s"] = max(out["log_lag_s"], s.value)
            elif s.name == "campaign_analytics_sink_lag_records" and \
                    s.labels.get("sink") == "message_log":
                out["log_lag_records"] += s.value
    return out


async def active_parts(session: aiohttp.ClientSession, sql_port: int, database: str) -> float:
    """Active parts of ``message_log`` (a page reads them all under FINAL), from the
    engine owner's read-only SQL endpoint; NaN when it does not answer in time."""
    query = ("SELECT count() FROM system.parts WHERE active AND table = 'message_log'"  # noqa: S608
             f" AND database = '{database}'")  # our own setting's value
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
        async with session.get(f"http://127.0.0.1:{sql_port}/", params={"query": query},
                               timeout=aiohttp.ClientTimeout(total=5)) as response:
            return float((await response.text()).strip())
    return math.nan


async def metrics_of(session: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with session.get(f"http://127.0.0.1:{port}/metrics",
                           timeout=aiohttp.ClientTimeout(total=10)) as response:
        return worker_gauges(await response.text())


def slope_mb_per_min(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope (MB per minute) of the samples from a third into the run
    on (after the warm-up); NaN with fewer than 3 of them."""
    pairs = [(t, v) for t, v in zip(times, values, strict=True) if not math.isnan(v)]
    pairs = pairs[len(pairs) // 3:]
    if len(pairs) < 3:
        return math.nan
    mean_t = sum(t for t, _ in pairs) / len(pairs)
    mean_v = sum(v for _, v in pairs) / len(pairs)
    spread = sum((t - mean_t) ** 2 for t, _ in pairs)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in pairs) / spread if spread else 0.0


def flat(values: Sequence[float], share: float, floor_mb: float = 32.0) -> tuple[bool, float]:
    """(whether the last value is within ``share`` (or ``floor_mb``) of the one a third
    in, the growth in MB)."""
    values = [v for v in values if not math.isnan(v)]
    if len(values) < 3:
        return True, 0.0
    base, last = values[len(values) // 3], values[-1]
    return last - base <= max(share * base, floor_mb), last - base


# --- the run ----------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    workdir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, cmd: list[str], pipes: bool = False) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if pipes else log, stderr=log,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else ""

    def alive(self) -> None:
        for name, proc in self.procs.items():
            if name != "producer" and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")


async def wait_for(what: str, check: Any, run: Run, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run.alive()
        with contextlib.suppress(Exception):
            if value := await check():
                return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} in {timeout:.0f} s")
        await asyncio.sleep(0.25)


async def measure_maximum(run: Run, settings: Settings, web_port: int) -> float:
    """Events/s of the worker (and its sinks) over a backlog, as throughput.py measures."""
    args = run.args
    data = build_input(settings, args.measure_events, args.campaigns, seed=1,
                       prefix=f"warm-{settings.app_id}")
    await produce(settings.kafka_bootstrap, data.records)
    worker = run.spawn("worker", [CLI, "worker", "--web-port", str(web_port)])
    inputs = list(settings.input_topics.values())
    groups: dict[str, Sequence[str]] = {
        settings.app_id: [*inputs, settings.message_events_topic,
                          settings.message_updates_topic],
        f"{settings.app_id}-clickhouse-sink": [settings.message_updates_topic],
        f"{settings.app_id}-clickhouse-events-sink": inputs}
    first: float | None = None
    async with LagProbe(settings.kafka_bootstrap, settings.partitions) as probe, \
            aiohttp.ClientSession() as session:
        deadline = time.monotonic() + args.timeout + args.measure_events / 1000
        while True:
            run.alive()
            if first is None:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    if (await metrics_of(session, web_port))["consumed"] > 0:
                        first = time.monotonic()
            elif (await probe.lag(groups))[0] == 0:
                seconds = time.monotonic() - first
                print(f"maximum: {len(data.records):,} events in {seconds:.1f} s = "
                      f"{len(data.records) / seconds:,.0f} events/s (worker pid {worker.pid})",
                      flush=True)
                return len(data.records) / seconds
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not catch up with the backlog")
            await asyncio.sleep(0.25)


async def load(run: Run, settings: Settings, rate: float, web_port: int, api_port: int,
               broker_pid: int | None) -> dict[str, Any]:
    args = run.args
    campaigns = [f"load-{settings.app_id}-c{i}" for i in range(args.campaigns)]
    base = f"http://127.0.0.1:{api_port}"
    clients = Clients(base, run.env["CA_API_TOKEN"], args.timeout)
    producer = run.spawn("producer", [sys.executable, "-m", "benchmarks.load", "--produce",
                                      "--rate", str(rate),
                                      "--seconds", str(args.seconds + PRODUCER_EXTRA),
                                      "--campaigns", ",".join(campaigns)], pipes=True)
    started = time.monotonic()
    pids = {"worker": run.procs["worker"].pid, "api": run.procs["api"].pid,
            "producer": producer.pid, "client": os.getpid()}
    rows: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def summaries_exist() -> bool:  # a page of an unknown campaign is a 404
            for campaign in campaigns:
                async with session.get(f"{base}/api/v1/campaigns/{campaign}",
                                       headers=clients.headers) as response:
                    if response.status != 200:
                        return False
            return True

        await wait_for("snapshot of every fed campaign", summaries_exist, run, 60)
        print(f"load: {rate:,.0f} events/s for {args.seconds:.0f} s, {args.sse_clients} "
              f"streams of {campaigns[0]}, {args.pages_per_s:g} message-log pages/s; "
              f"CA_TABLE_STORE={settings.table_store}, CA_STATE_CACHE="
              f"{settings.state_cache_size}, CA_PAGE_CACHE_SECONDS="
              f"{settings.page_cache_seconds:g}, CA_PAGE_READ_ROWS={settings.page_read_rows}",
              flush=True)
        tasks = []
        for first in range(0, args.sse_clients, 100):  # the listen backlog is 128
            connected = [asyncio.Event() for _ in range(min(100, args.sse_clients - first))]
            tasks += [asyncio.create_task(clients.stream(session, campaigns[0], c))
                      for c in connected]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), 30)
        tasks.append(asyncio.create_task(
            clients.pages(session, campaigns, args.pages_per_s, args.max_in_flight)))
        print(f"{clients.sse_open} streams open after {time.monotonic() - started:.1f} s",
              flush=True)
        def process_pids() -> dict[str, list[int]]:
            sink = [p for p in _descendants(pids["worker"]) if p != pids["worker"]]
            return {"worker": [pids["worker"]], "sink": sink, "api": [pids["api"]],
                    "producer": [pids["producer"]], "client": [pids["client"]],
                    "broker": [broker_pid] if broker_pid else []}

        def cpu_now() -> dict[str, float]:
            return {name: sum(cpu_s(p) for p in ps) for name, ps in process_pids().items()}

        last: dict[str, Any] = {"t": time.monotonic(), "consumed": (await metrics_of(
            session, web_port))["consumed"], "sse": 0, "cpu": cpu_now()}
        header = (f"{'t s':>5} {'in ev/s':>8} {'pages/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
                  f"{'sse ev/s':>8} {'open':>4} {'errors':>6} {'lag rec':>8} "
                  f"{'log lag s':>9} {'log rec':>8} {'parts':>5} "
                  + " ".join(f"{name + ' MB':>11}" for name in
                             ("worker", "sink", "api", "producer", "client"))
                  + f" {'CPU % w/s/a/p/c/broker':>23}")
        print(header, flush=True)
        while time.monotonic() - started < args.seconds:
            await asyncio.sleep(min(args.sample_every,
                                    max(0.1, args.seconds - (time.monotonic() - started))))
            run.alive()
            now = time.monotonic()
            try:
                gauges = await metrics_of(session, web_port)
            except (aiohttp.ClientError, TimeoutError) as exc:
                clients.errors[f"worker /metrics: {type(exc).__name__}"] += 1
                continue
            span = now - last["t"]
            times, clients.page_times = clients.page_times, []
            procs = process_pids()
            cpu = cpu_now()
            row: dict[str, Any] = {
                "t": now - started,
                "input_per_s": (gauges["consumed"] - last["consumed"]) / span,
                "pages_per_s": len(times) / span,
                "page_p50_ms": 1000 * percentile(times, 50),
                "page_p99_ms": 1000 * percentile(times, 99),
                "sse_events_per_s": (clients.sse_events - last["sse"]) / span,
                "sse_open": clients.sse_open, "errors": sum(clients.errors.values()),
                "consumer_lag": gauges["consumer_lag"], "log_lag_s": gauges["log_lag_s"],
                "log_lag_records": gauges["log_lag_records"],
                "log_parts": await active_parts(session, int(run.env["CA_SQL_PORT"]),
                                                settings.clickhouse_database),
                "rss_mb": {name: sum(rss_mb(p) for p in ps) if ps else math.nan
                           for name, ps in procs.items()},
                "cpu_pct": {name: 100 * (cpu[name] - last["cpu"].get(name, 0.0)) / span
                            for name in cpu},
            }
            last = {"t": now, "consumed": gauges["consumed"], "sse": clients.sse_events,
                    "cpu": cpu}
            rows.append(row)
            print(f"{row['t']:5.0f} {row['input_per_s']:8.0f} {row['pages_per_s']:7.1f} "
                  f"{row['page_p50_ms']:7.0f} {row['page_p99_ms']:7.0f} "
                  f"{row['sse_events_per_s']:8.0f} {row['sse_open']:4d} {row['errors']:6d} "
                  f"{row['consumer_lag']:8.0f} {row['log_lag_s']:9.1f} "
                  f"{row['log_lag_records']:8.0f} {row['log_parts']:5.0f} "
                  + " ".join(f"{row['rss_mb'][n]:11.0f}" for n in
                             ("worker", "sink", "api", "producer", "client"))
                  + " " + "/".join(f"{row['cpu_pct'][n]:.0f}" for n in
                                   ("worker", "sink", "api", "producer", "client",
                                    "broker")).rjust(23),
                  flush=True)
        clients.closing = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    produced: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        line = await asyncio.wait_for(asyncio.to_thread(producer.stdout.readline),  # type: ignore[union-attr]
                                      30 + PRODUCER_EXTRA)
        produced = json.loads(line)
    return {"rate": rate, "rows": rows, "errors": dict(clients.errors), "produced": produced,
            "pages_ok": clients.pages_ok, "pages_cached": clients.pages_cached,
            "sse_events": clients.sse_events,
            "table_store": settings.table_store}


def verdict(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    rows = result["rows"]
    lines = []
    errors = result["errors"]
    lines.append(f"errors: {sum(errors.values())}" + (
        "" if not errors else " (" + ", ".join(f"{k}: {v}" for k, v in errors.items()) + ")"))
    produced = result.get("produced") or {}
    if produced:
        lines.append(f"input: {produced['sent']:,} events produced in {produced['seconds']:.0f} s "
                     f"({produced['sent'] / produced['seconds']:,.0f}/s, target "
                     f"{result['rate']:,.0f}/s); pages answered {result['pages_ok']:,} "
                     f"({result['pages_ok'] / args.seconds:.1f}/s, "
                     f"{result.get('pages_cached', 0):,} of them from the API's read ahead); "
                     f"stream events read {result['sse_events']:,}")
    flats = []
    consumed = sum(r["input_per_s"] * (r["t"] - (rows[i - 1]["t"] if i else 0.0))
                   for i, r in enumerate(rows))
    stateful = STATEFUL + (("worker",) if result.get("table_store") == "memory" else ())
    for name in PROCESSES:
        if not rows:
            lines.append(f"memory {name}: no sample")
            continue
        ok, growth = flat([r["rss_mb"][name] for r in rows], args.flat_share)
        slope = slope_mb_per_min([r["t"] for r in rows], [r["rss_mb"][name] for r in rows])
        first, last = rows[0]["rss_mb"][name], rows[-1]["rss_mb"][name]
        line = (f"memory {name}: {first:.0f} -> {last:.0f} MB (from a third in: {growth:+.0f} "
                f"MB, slope {slope:+.1f} MB/min) ")
        if name in stateful:  # holds every message: grows with them by design
            per = 1024 * (last - first) / max(1.0, consumed / 1000)
            line += (f"{'flat' if ok else 'grows'} with its state: {per:.0f} KB per 1,000 "
                     "events consumed (it keeps every message)")
        else:
            flats.append(ok)
            line += "flat" if ok else "GROWING"
        lines.append(line)
    if rows:
        lag = [r["log_lag_s"] for r in rows]
        recs = [r["log_lag_records"] for r in rows]
        lines.append(f"message log behind the metrics: max {max(lag):.1f} s / "
                     f"{max(recs):,.0f} records, at the end {lag[-1]:.1f} s / {recs[-1]:,.0f} "
                     f"records; worker's consumer lag at the end {rows[-1]['consumer_lag']:,.0f}")
    passed = not errors and all(flats) and bool(rows)
    judged = ", ".join(n for n in PROCESSES if n not in stateful)
    lines.append("verdict: " + (f"PASS (no errors; memory flat: {judged})"
                                if passed else "FAIL"))
    return lines


async def amain(args: argparse.Namespace) -> int:
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"load-{tag}-"))
    web_port, api_port = free_port(), free_port()
    env = os.environ | {
        "CA_KAFKA_BOOTSTRAP": args.bootstrap, "CA_TOPIC_PREFIX": f"load-{tag}.",
        "CA_APP_ID": f"load-{tag}", "CA_DATA_DIR": str(workdir / "state"),
        "CA_CHDB_PATH": str(workdir / "chdb"), "CA_CLICKHOUSE_URL": "",
        "CA_API_TOKEN": secrets.token_urlsafe(24), "CA_SQL_HOST": "127.0.0.1",
        "CA_SQL_PORT": str(free_port()), "CA_PARTITIONS": str(args.partitions),
        "CA_LOG_LEVEL": "warning", "PYTHONPATH": str(REPO)}
    run = Run(args, workdir, env)
    settings = settings_of(env)
    print(f"run {tag}; {machine()}; working folder {workdir}", flush=True)
    raise_nofile()
    broker_started = False
    result: dict[str, Any] = {}
    try:
        broker_started = await start_broker(args)
        await ensure_topics(settings)
        if args.rate:
            run.spawn("worker", [CLI, "worker", "--web-port", str(web_port)])
            rate = args.rate
        else:
            rate = await measure_maximum(run, settings, web_port) * args.rate_factor
        run.spawn("api", [CLI, "api", "--port", str(api_port)])

        async def ready() -> bool:
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{api_port}/readyz") as response:
                return response.status == 200

        await wait_for("ready API", ready, run, args.timeout)
        pid_file = args.kafka_dir / "kafka.pid"
        broker_pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        result = await load(run, settings, rate, web_port, api_port, broker_pid)
    except BaseException:
        for name in run.procs:
            if tail := run.tail(name):
                print(f"---- {name}.log (tail)\n{tail}", file=sys.stderr)
        raise
    finally:
        for proc in reversed(list(run.procs.values())):
            stop(proc)
        if not broker_started:
            with contextlib.suppress(Exception):
                await delete_topics(args.bootstrap, tag)
        shutil.rmtree(workdir, ignore_errors=True)
        if broker_started:
            clean_broker(args)
    lines = verdict(result, args)
    print("\n".join(lines), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"tag": tag, "args": {k: str(v) for k, v in
                                                              vars(args).items()},
                                         **result, "summary": lines}, indent=2, default=str))
    return 0 if lines[-1].startswith("verdict: PASS") else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.load", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=300.0, help="load duration (300)")
    p.add_argument("--rate", type=float, default=None,
                   help="input events/s (default: the worker's measured maximum)")
    p.add_argument("--rate-factor", type=float, default=1.0,
                   help="share of the measured maximum to drive at (1.0)")
    p.add_argument("--measure-events", type=int, default=100_000,
                   help="backlog the maximum is measured on (100,000)")
    p.add_argument("--campaigns", type=str, default="8",
                   help="campaigns fed (8); with --produce: their names, comma-separated")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--sse-clients", type=int, default=500)
    p.add_argument("--pages-per-s", type=float, default=50.0)
    p.add_argument("--max-in-flight", type=int, default=100,
                   help="pages waiting at once; one more is counted as an error (100)")
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds (10)")
    p.add_argument("--flat-share", type=float, default=0.10,
                   help="RSS growth from a third in to the end still called flat (0.10)")
    p.add_argument("--bootstrap", default="127.0.0.1:49094",
                   help="broker; one is started there if none answers (127.0.0.1:49094)")
    p.add_argument("--kafka-dir", type=Path, default=REPO / ".run" / "kafka-load",
                   help="the broker's data dir (its kafka.pid gives the broker columns)")
    p.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    p.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.produce:
        args.campaigns = int(args.campaigns)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.produce:
        settings = settings_of(dict(os.environ))
        asyncio.run(drive(settings, args.rate, args.seconds, args.campaigns.split(",")))
        return 0
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted; everything it started is stopped and removed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"load benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
