"""API latency and live-stream fan-out of ``campaign-analytics api``.

    .venv/bin/python -m benchmarks.api_bench [--messages 1000000] [--requests 100]
        [--concurrency 1,8] [--sse-clients 1,100,500,1000,2000,4000,5000,6000,8000]
        [--rounds 5]
        [--only latency,sse] [--json FILE]

Prints its figures; not part of the tests. One run, each part its own process:

1. **fill**: a child process writes one campaign of ``--messages`` messages into
   ``message_log`` of a fresh embedded engine (chdb) in a temp directory, with a
   reply on ``--reply-share`` and clicks on ``--click-share`` of them, through
   ``ChdbStore(..., hold_open=True).insert`` in batches of ``--batch`` rows (the
   sinks' insert plans, built directly: far faster than publishing ~3 events per
   message through the pipeline), one row per message, and closes the engine;
2. **serve**: a child process owns that directory and serves ``SqlEndpoint`` (the
   read-only ClickHouse HTTP interface); ``campaign-analytics api`` runs as its own
   process with ``CA_SQL_PORT`` pointing at it and ``CA_KAFKA_BOOTSTRAP`` at the
   broker; one metrics snapshot of the campaign (the counts of what was written,
   both variants) is published to the campaign-metrics topic under a fresh
   ``CA_TOPIC_PREFIX``; the run waits for ``/readyz``;
3. **latency**: ``--requests`` requests per route at each ``--concurrency``
   (requests in flight, one aiohttp client in this process): the summary, message-log
   pages of 100 (the first, one deep in via a cursor at 90 % of the campaign, the
   first with ``status=failed``) and the first replies page of 100; p50/p99/mean/max,
   requests/s, and the CPU the API and the SQL endpoint's process spent per request;
4. **fan-out**: for each N of ``--sse-clients``, N ``/events`` streams held by
   ``--sse-procs`` client processes (plain asyncio sockets reading HTTP/1.1 chunks,
   as a browser's EventSource does); ``--rounds`` snapshots, each with a new
   ``sent``, are published; a delivery's delay runs from just before the snapshot
   is produced to when a client has read the whole event. Per N: p50/p99/max, the
   API process's RSS (VmRSS) with the N streams open and its CPU over the rounds.

Starts a broker of its own (``deploy/kafka/kafka.sh`` with ``CA_KAFKA_BOOTSTRAP`` =
``--bootstrap``, ``CA_KAFKA_DIR`` = ``--kafka-dir``) when none answers there and
removes it at the end; deletes its topics, the engine directory and its temp folder,
and stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from benchmarks.throughput import broker_answers, cpu_seconds, delete_topics, free_port, stop
from projections.message_log import MessageLogRow
from projections.metrics import CampaignCounts, duration_bucket, summarize
from sinks.plan import (
    LINK_CLICK_COLUMNS,
    LINK_CLICKS_TABLE,
    REPLIES_TABLE,
    REPLY_COLUMNS,
    InsertPlan,
    dedup_token,
    plan_message_log_insert,
)
from streams.cli.admin import ensure_topics
from streams.codecs.output_avro import encode_campaign_metrics
from streams.settings import Settings, settings_of

REPO = Path(__file__).resolve().parents[1]
DATABASE = "campaign_analytics"
CAMPAIGN = "api-bench"
PAGE = 100
DAY_MS = 86_400_000
# (status, share of messages); replies and clicks only on delivered ones
STATUSES = (("delivered", 0.85), ("sent", 0.04), ("queued", 0.01), ("undelivered", 0.04),
            ("failed", 0.05), ("rejected", 0.01))
DELIVERED_SHARE = dict(STATUSES)["delivered"]
CARRIERS = ("att", "tmobile", "verizon", "uscellular")
ERRORS = (("30003", "Unreachable destination handset"), ("30005", "Unknown destination handset"),
          ("30007", "Message filtered"), ("30008", "Unknown error"))
REPLY_BODIES = ("Thanks!", "ok", "When does the sale end?", "Yes please", "Who is this?")


# --- 1. fill (child process) --------------------------------------------------------


def message_id(i: int) -> str:
    # Odd multiplier mod 2**32: unique, and in no relation to send order (as UUIDs
    # would be), so a page by message_id draws on every insert's part, not on one.
    return f"msg-{(i * 2_654_435_761) % 2**32:08x}"


def _add(bag: dict[str, int], keys: list[str]) -> None:
    for key in keys:
        bag[key] = bag.get(key, 0) + 1


def fill_batch(start: int, stop_: int, rng: random.Random, t0: int, reply_share: float,
               click_share: float, bags: dict[str, dict[str, int]]) -> list[InsertPlan]:
    """The inserts of messages ``start..stop_`` and their replies and clicks; their
    counts go into ``bags`` ("" = the campaign, else the variant) as the worker
    would count them, so the published snapshot matches the stored rows."""
    rows: list[MessageLogRow] = []
    replies: list[tuple[object, ...]] = []
    clicks: list[tuple[object, ...]] = []
    for i in range(start, stop_):
        mid, variant, sent_at = message_id(i), "AB"[i % 2], t0 + i * 100
        draw, status = rng.random(), STATUSES[-1][0]
        for name, share in STATUSES:
            if draw < share:
                status = name
                break
            draw -= share
        carrier = None if status == "rejected" else CARRIERS[i // 2 % len(CARRIERS)]
        keys = [] if status == "rejected" else ["sent", f"carrier:{carrier}"]
        delivered_at = failed_at = error_code = error_text = None
        first_click = last_click = last_reply = None
        n_clicks = n_replies = 0
        if status == "delivered":
            delivered_at = sent_at + rng.randint(1_000, 120_000)
            keys += ["delivered", f"time_to_deliver:{duration_bucket(delivered_at - sent_at)}"]
            if rng.random() < reply_share / DELIVERED_SHARE:
                n_replies, last_reply = 1, delivered_at + rng.randint(60_000, 6 * 3_600_000)
                body = "STOP" if rng.random() < 1 / 12 else rng.choice(REPLY_BODIES)
                replies.append((f"r-{mid}", mid, f"contact-{i:07d}", f"+1555{i:07d}", body,
                                last_reply))
                keys += ["replies", "unique_repliers"] + (["opt_outs"] if body == "STOP" else [])
            if rng.random() < click_share / DELIVERED_SHARE:
                n_clicks = rng.choice((1, 1, 1, 2))
                first_click = delivered_at + rng.randint(5_000, 2 * 3_600_000)
                last_click = first_click + (n_clicks - 1) * rng.randint(1_000, 600_000)
                for k, at in enumerate(sorted({first_click, last_click})):
                    clicks.append((f"k{k}-{mid}", mid, "lnk-1", at, "Mozilla/5.0 (iPhone)"))
                keys += ["link_clicks"] * n_clicks + [
                    "unique_link_clicks",
                    f"time_to_first_click:{duration_bucket(first_click - sent_at)}"]
        elif status in ("undelivered", "failed", "rejected"):
            error_code, error_text = ERRORS[i // 2 % len(ERRORS)]
            failed_at = sent_at if status == "rejected" else sent_at + rng.randint(500, 60_000)
            keys += ["failed", f"error_code:{error_code}"]
        else:
            keys.append("pending")
        _add(bags[""], keys)
        _add(bags.setdefault(variant, {}), keys)
        updated = max(t for t in (sent_at, delivered_at, failed_at, last_click, last_reply) if t)
        rows.append(MessageLogRow(
            mid, CAMPAIGN, variant, f"contact-{i:07d}", f"Contact {i}", f"+1555{i:07d}", status,
            sent_at, delivered_at, failed_at, error_code, error_text, carrier, 1, n_clicks,
            first_click, last_click, n_replies, last_reply, updated, 2 + n_clicks + n_replies))
    token = dedup_token("api-bench", 0, start, stop_ - 1)
    plans = [plan_message_log_insert(rows, token),
             InsertPlan(REPLIES_TABLE, REPLY_COLUMNS, replies, token),
             InsertPlan(LINK_CLICKS_TABLE, LINK_CLICK_COLUMNS, clicks, token)]
    return [plan for plan in plans if plan.rows]


def fill(path: Path, messages: int, batch: int, reply_share: float, click_share: float) -> None:
    """Write the campaign and print (stdout, one JSON line) its summary and counts."""
    from sinks.chdb_store import ChdbStore  # only this child loads the engine

    started = time.monotonic()
    rng = random.Random(15)
    t0 = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    bags: dict[str, dict[str, int]] = {"": {}}
    inserted: Counter[str] = Counter()
    store = ChdbStore(path, DATABASE, hold_open=True)
    try:
        store.migrate()
        for first in range(0, messages, batch):
            for plan in fill_batch(first, min(first + batch, messages), rng, t0, reply_share,
                                   click_share, bags):
                inserted[plan.table] += store.insert(plan)
            if first // batch % 20 == 19:
                print(f"  filled {first + batch:,} messages", file=sys.stderr, flush=True)
        stored = store.count_message_log(CAMPAIGN)
        replies = store.row_counts(REPLIES_TABLE).final
        ids = sorted(message_id(i) for i in range(messages))
        engine = engine_alone(store, ids[int(len(ids) * 0.9)])
    finally:
        store.close()
    total = bags.pop("")
    summary = summarize(CAMPAIGN, CampaignCounts(total=total, variants=bags))
    print(json.dumps({
        "summary": summary, "messages": stored, "replies": replies,
        "rows": dict(inserted), "seconds": time.monotonic() - started, "engine_ms": engine,
        "deep_after": ids[int(len(ids) * 0.9)], "failed_status": total.get("failed", 0),
    }), flush=True)


def engine_alone(store: Any, deep_after: str, repeat: int = 5) -> dict[str, float]:
    """Median ms of the store calls behind each ClickHouse route, in this process on
    the open engine: what the endpoint, HTTP and the API add comes on top."""
    calls = {
        "as_of": lambda: store.as_of(CAMPAIGN),
        "messages, first page": lambda: store.message_log(CAMPAIGN, None, PAGE + 1),
        "messages, page at 90 %": lambda: store.message_log(CAMPAIGN, None, PAGE + 1, deep_after),
        "messages, status=failed": lambda: store.message_log(CAMPAIGN, "failed", PAGE + 1),
        "replies, first page": lambda: store.replies_page(CAMPAIGN, PAGE + 1),
    }
    out = {}
    for name, call in calls.items():
        call()  # warm-up
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        out[name] = 1000 * sorted(times)[repeat // 2]
    return out


# --- 2. the engine's owner (child process) ------------------------------------------


async def serve_sql(path: Path) -> None:
    """Serve ``SqlEndpoint`` over ``path`` on a free port (printed) until SIGTERM."""
    from sinks.sql_endpoint import SqlEndpoint

    endpoint = SqlEndpoint(path, DATABASE)
    port = await endpoint.start("127.0.0.1", 0)
    print(json.dumps({"port": port}), flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await endpoint.stop()


# --- 4. server-sent-event clients (child process) -----------------------------------


@dataclass
class _Stream:
    seen: list[tuple[int, float]] = field(default_factory=list)  # (event id, read at)
    latest: int = -1
    open: bool = True
    first: asyncio.Event = field(default_factory=asyncio.Event)


class _StreamProtocol(asyncio.Protocol):
    """One ``/events`` stream read straight off its socket: HTTP/1.1 chunks, as a
    browser's EventSource gets them. A protocol, not a reader task, so that the
    client processes spend as little of the shared cores as they can."""

    def __init__(self, clients: _Clients, stream: _Stream) -> None:
        self.clients, self.stream = clients, stream
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.body = bytearray()
        self.head_done = self.chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.clients.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()  # when the bytes came, before any parsing
        self.raw += data
        if not self.head_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.raw[:end]).lower()
            del self.raw[:end + 4]
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                self._fail(f"answer {head[:40]!r}")
                return
            self.head_done, self.chunked = True, b"transfer-encoding: chunked" in head
        if self.chunked:
            while (eol := self.raw.find(b"\r\n")) >= 0:
                size = int(bytes(self.raw[:eol]).split(b";")[0], 16)
                if len(self.raw) < eol + size + 4:
                    break
                self.body += self.raw[eol + 2:eol + 2 + size]
                del self.raw[:eol + size + 4]
        else:
            self.body += self.raw
            self.raw.clear()
        while (end := self.body.find(b"\n\n")) >= 0:
            block = bytes(self.body[:end])
            del self.body[:end + 2]
            self.clients.event(self.stream, block, now)

    def _fail(self, why: str) -> None:
        self.clients.errors[why] += 1
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.clients.errors[type(exc).__name__] += 1
        self.stream.open = False
        self.stream.first.set()
        self.clients.check_done()


class _Clients:
    """Many ``/events`` streams in one event loop; ``wait`` says when each got an
    event with id >= a target (the offset of the snapshot just published)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = (f"GET {parts.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode()
        self.streams: list[_Stream] = []
        self.transports: list[asyncio.BaseTransport] = []
        self.target: int | None = None
        self.reached = 0
        self.done = asyncio.Event()
        self.errors: Counter[str] = Counter()

    def check_done(self) -> None:
        if self.target is not None and self.reached >= sum(s.open for s in self.streams):
            self.done.set()

    def event(self, stream: _Stream, block: bytes, now: float) -> None:
        event_id, summary = None, False
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                event_id = int(line[4:])
            elif line == b"event: summary":
                summary = True
        if not summary or event_id is None:
            return  # the retry line or a keep-alive comment
        stream.seen.append((event_id, now))
        before, stream.latest = stream.latest, max(stream.latest, event_id)
        stream.first.set()
        if self.target is not None and before < self.target <= event_id:
            self.reached += 1
            self.check_done()

    async def _open(self, stream: _Stream) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _StreamProtocol(self, stream), self.host, self.port)
            self.transports.append(transport)
        except OSError as exc:
            self.errors[f"{type(exc).__name__}: {exc}"[:100]] += 1
            stream.open = False
            stream.first.set()

    async def connect(self, count: int, batch: int, timeout: float) -> dict[str, Any]:
        """Open ``count`` streams, ``batch`` at a time (the server's listen backlog is
        128), each counted once its first summary event has come."""
        for first in range(0, count, batch):
            new = [_Stream() for _ in range(min(batch, count - first))]
            self.streams += new
            await asyncio.gather(*(self._open(s) for s in new))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in new)), timeout)
        ok = sum(1 for s in self.streams if s.open and s.latest >= 0)
        return {"connected": ok, "failed": count - ok, "errors": dict(self.errors)}

    async def wait(self, target: int, timeout: float) -> dict[str, Any]:
        self.target, self.done = target, asyncio.Event()
        self.reached = sum(1 for s in self.streams if s.latest >= target)
        self.check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout)
        times = [next(t for i, t in s.seen if i >= target)
                 for s in self.streams if s.latest >= target]
        ever = sum(1 for s in self.streams if s.seen)  # a stream that never connected
        return {"times": times, "missing": ever - len(times),
                "closed": sum(not s.open for s in self.streams)}

    async def close(self) -> None:
        for transport in self.transports:
            transport.close()
        await asyncio.sleep(0.1)  # let the transports' close callbacks run


async def sse_client(url: str, count: int, batch: int) -> None:
    """Hold ``count`` streams; answer ``wait OFFSET TIMEOUT`` lines on stdin with one
    JSON line each, stop at ``quit`` or the end of stdin."""
    clients = _Clients(url)
    print(json.dumps(await clients.connect(count, batch, timeout=60)), flush=True)
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                return
            result = await clients.wait(int(words[1]), float(words[2]))
            print(json.dumps(result), flush=True)
    finally:
        await clients.close()


# --- the run -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank; ``inf`` stands for a delivery that never came."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def vm_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def raise_nofile() -> int:
    # Children inherit it: the API needs a descriptor per stream, the clients too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def machine() -> dict[str, Any]:
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpus": os.cpu_count(), "memory_gb": round(mem_kb / 1024**2, 1),
            "load_at_start": os.getloadavg(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine()}


@dataclass
class Run:
    args: argparse.Namespace
    tag: str
    workdir: Path
    env: dict[str, str]
    settings: Settings
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
              pipes: bool = False) -> subprocess.Popen[bytes]:
        """A child in its own session (``stop`` signals its group); stderr (and stdout
        unless ``pipes``) to ``<name>.log`` in the run's folder."""
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env or self.env,
                                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if pipes else log, stderr=log,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _self_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.api_bench", *args]


async def _json_line(stream: Any, timeout: float, what: str) -> dict[str, Any]:
    line = await asyncio.wait_for(asyncio.to_thread(stream.readline), timeout)
    if not line:
        raise RuntimeError(f"{what} ended without an answer")
    result: dict[str, Any] = json.loads(line)
    return result


async def start_broker(args: argparse.Namespace) -> bool:
    """Start our own broker if none answers at ``--bootstrap``; whether we started it."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "connect call failed" is the answer we ask for here
    try:
        answers = await broker_answers(args.bootstrap)
    finally:
        quiet.setLevel(level)
    if answers:
        print(f"using the broker that answers at {args.bootstrap}", flush=True)
        return False
    print(f"starting a broker at {args.bootstrap} (data in {args.kafka_dir})", flush=True)
    proc = await asyncio.create_subprocess_exec(
        "bash", str(REPO / "deploy/kafka/kafka.sh"), "start", cwd=REPO,
        env=os.environ | {"CA_KAFKA_BOOTSTRAP": args.bootstrap,
                          "CA_KAFKA_DIR": str(args.kafka_dir)})
    if await proc.wait() != 0:
        raise RuntimeError("deploy/kafka/kafka.sh start failed")
    return True


def clean_broker(args: argparse.Namespace) -> None:
    subprocess.run(["bash", str(REPO / "deploy/kafka/kafka.sh"), "clean"], cwd=REPO,
                   env=os.environ | {"CA_KAFKA_BOOTSTRAP": args.bootstrap,
                                     "CA_KAFKA_DIR": str(args.kafka_dir)}, check=False)


async def publish(producer: AIOKafkaProducer, settings: Settings, summary: dict[str, Any],
                  sent: int) -> tuple[int, float]:
    """One snapshot with ``sent`` as its marker: (its offset, the time it was sent)."""
    published = time.time()
    value = encode_campaign_metrics(summary | {"sent": sent}, int(published * 1000))
    meta = await producer.send_and_wait(settings.campaign_metrics_topic, value=value,
                                        key=CAMPAIGN.encode())
    return int(meta.offset), published


async def wait_ready(run: Run, api: subprocess.Popen[bytes], base: str) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while True:
            if api.poll() is not None:
                raise RuntimeError(f"the API exited ({api.returncode}):\n{run.log_tail('api')}")
            if time.monotonic() - started > run.args.timeout:
                raise RuntimeError(f"the API not ready in {run.args.timeout:.0f} s:\n"
                                   f"{run.log_tail('api')}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(base + "/readyz") as ready, \
                        session.get(f"{base}/api/v1/campaigns/{CAMPAIGN}") as summary:
                    if ready.status == 200 and summary.status == 200:
                        return time.monotonic() - started
            await asyncio.sleep(0.2)


def _cursor(after: str) -> str:
    # The API's own cursor form (a JSON list, base64url), as its next_cursor would be
    return base64.urlsafe_b64encode(orjson.dumps([after])).decode().rstrip("=")


def routes(filled: dict[str, Any]) -> list[tuple[str, str, Any, bool]]:
    """(name, path, check of a 200 answer's JSON, whether it is a live route) of each
    measured route."""
    base = f"/api/v1/campaigns/{CAMPAIGN}"
    after = filled["deep_after"]

    def full_page(body: dict[str, Any]) -> bool:
        return len(body["items"]) == PAGE

    return [
        ("summary", base, lambda b: b["sent"] >= 1, True),
        ("messages, first page", f"{base}/messages?limit={PAGE}", full_page, False),
        ("messages, page at 90 %", f"{base}/messages?limit={PAGE}&cursor={_cursor(after)}",
         lambda b: full_page(b) and b["items"][0]["message_id"] > after, False),
        ("messages, status=failed", f"{base}/messages?status=failed&limit={PAGE}",
         lambda b: full_page(b) and all(i["status"] == "failed" for i in b["items"]), False),
        ("replies, first page", f"{base}/replies?limit={PAGE}", full_page, False),
    ]


async def measure_route(session: aiohttp.ClientSession, url: str, check: Any, requests: int,
                        concurrency: int, pids: dict[str, int]) -> dict[str, Any]:
    latencies: list[float] = []
    bad: Counter[str] = Counter()

    async def one(record: bool) -> None:
        started = time.perf_counter()
        try:
            async with session.get(url) as resp:
                body = await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            bad[type(exc).__name__] += 1
            return
        elapsed = time.perf_counter() - started
        if status != 200:
            bad[f"{status} {body[:120]!r}"] += 1
        elif not check(orjson.loads(body)):
            bad["200 with unexpected content"] += 1
        if record:
            latencies.append(elapsed)

    for _ in range(3):  # warm-up: connections, the engine's caches
        await one(False)
    bad.clear()
    todo = iter(range(requests))

    async def worker() -> None:
        for _ in todo:  # one iterator shared by the workers: `requests` in all
            await one(True)

    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (own_after.ru_utime + own_after.ru_stime) - (own.ru_utime + own.ru_stime)
    ms = [x * 1000 for x in latencies]
    out = {
        "requests": requests, "concurrency": concurrency, "answered": len(ms),
        "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else math.nan, "max_ms": max(ms, default=math.nan),
        "requests_per_s": requests / wall, "errors": sum(bad.values()), "error_kinds": dict(bad),
        "client_cpu_ms_per_request": 1000 * client_cpu / requests,
    }
    for name, pid in pids.items():
        out[f"{name}_cpu_ms_per_request"] = 1000 * (cpu_seconds(pid) - cpu[name]) / requests
    return out


async def latency(run: Run, api_url: str, filled: dict[str, Any],
                  pids: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for concurrency in run.args.concurrency:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for name, path, check, live in routes(filled):
                requests = run.args.live_requests if live else run.args.requests
                result = await measure_route(session, api_url + path, check, requests,
                                             concurrency, pids)
                out.append({"route": name, "path": path, **result})
                print(f"  {name:<26} c={concurrency}: p50 {result['p50_ms']:7.1f} ms, p99 "
                      f"{result['p99_ms']:7.1f} ms, {result['requests_per_s']:7.1f} req/s, "
                      f"errors {result['errors']}", flush=True)
    return out


def _tell(proc: subprocess.Popen[bytes], line: str) -> None:
    if proc.stdin is None:
        raise RuntimeError("not a client process with a pipe")
    proc.stdin.write((line + "\n").encode())
    proc.stdin.flush()


async def _ask(proc: subprocess.Popen[bytes], line: str, timeout: float) -> dict[str, Any]:
    _tell(proc, line)
    return await _json_line(proc.stdout, timeout, "an SSE client")


async def sse_step(run: Run, n: int, events_url: str, api_pid: int,
                   producer: AIOKafkaProducer, summary: dict[str, Any], marker: int
                   ) -> dict[str, Any]:
    """N streams from the client processes, ``--rounds`` snapshots, the delays."""
    args = run.args
    procs = min(args.sse_procs, n)
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    clients = [run.spawn(f"sse-{n}-{i}", _self_cmd("--sse-client", events_url,
                                                   "--connections", str(share)), pipes=True)
               for i, share in enumerate(shares)]
    result: dict[str, Any] = {"clients": n, "client_processes": procs}
    try:
        started = time.monotonic()
        hellos = await asyncio.gather(*(_json_line(c.stdout, args.timeout, "an SSE client")
                                        for c in clients))
        result["connected"] = sum(h["connected"] for h in hellos)
        result["connect_seconds"] = time.monotonic() - started
        errors: Counter[str] = Counter()
        for hello in hellos:
            errors.update(hello["errors"])
        result["connect_errors"] = dict(errors)
        await asyncio.sleep(0.5)  # let the API finish the streams' first writes
        result["api_rss_mb"] = vm_kb(api_pid, "VmRSS") / 1024
        delays: list[float] = []
        missing = 0
        cpu0, clients_cpu0 = cpu_seconds(api_pid), sum(cpu_seconds(c.pid) for c in clients)
        window = time.monotonic()
        for r in range(args.rounds):
            offset, published = await publish(producer, run.settings, summary, marker + r)
            answers = await asyncio.gather(*(
                _ask(c, f"wait {offset} {args.round_timeout}", args.round_timeout + 60)
                for c in clients))
            for answer in answers:
                delays += [t - published for t in answer["times"]]
                missing += answer["missing"]
            await asyncio.sleep(args.round_gap)
        wall = time.monotonic() - window
        cpu = cpu_seconds(api_pid) - cpu0
        clients_cpu = sum(cpu_seconds(c.pid) for c in clients) - clients_cpu0
        all_delays = delays + [math.inf] * missing  # a delivery that never came
        result |= {
            "rounds": args.rounds, "deliveries": len(delays), "missing": missing,
            "p50_s": percentile(all_delays, 50), "p99_s": percentile(all_delays, 99),
            "max_s": max(all_delays, default=math.nan),
            "api_cpu_percent": 100 * cpu / wall, "api_cpu_s_per_snapshot": cpu / args.rounds,
            "clients_cpu_percent": 100 * clients_cpu / wall,
            "api_rss_after_mb": vm_kb(api_pid, "VmRSS") / 1024,
        }
    finally:
        for c in clients:
            with contextlib.suppress(OSError, ValueError):
                _tell(c, "quit")
        for c in clients:
            try:
                c.wait(30)
            except subprocess.TimeoutExpired:
                stop(c)
    return result


async def fan_out(run: Run, events_url: str, api_pid: int, producer: AIOKafkaProducer,
                  summary: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step, n in enumerate(run.args.sse_clients):
        result = await sse_step(run, n, events_url, api_pid, producer, summary,
                                summary["sent"] + 1000 * (step + 1))
        out.append(result)
        if "p99_s" not in result:
            break
        print(f"  {n:>6} streams ({result['connected']} connected in "
              f"{result['connect_seconds']:.1f} s): p50 {result['p50_s']:.3f} s, p99 "
              f"{result['p99_s']:.3f} s, max {result['max_s']:.3f} s, missing "
              f"{result['missing']}, API {result['api_rss_mb']:.0f} MB RSS, "
              f"{result['api_cpu_percent']:.0f} % CPU", flush=True)
        await asyncio.sleep(1.0)  # the API closes the streams the clients dropped
        if result["connected"] < n:
            break  # more would not connect either
    return out


async def sql_parts(sql_port: int) -> dict[str, int]:
    """Active parts per table: what FINAL reads across (the fill leaves merges to the
    engine's background, as the sinks do)."""
    query = ("SELECT table, count() FROM system.parts WHERE active AND database = {db:String}"
             " GROUP BY table FORMAT JSONCompact")
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{sql_port}/", params={"query": query, "param_db": DATABASE}
    ) as resp:
        body = await resp.json(content_type=None)
    return {table: int(count) for table, count in body["data"]}


async def amain(args: argparse.Namespace) -> int:
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"api-bench-{tag}-"))
    prefix = f"apibench-{tag}."
    env = os.environ | {
        "CA_KAFKA_BOOTSTRAP": args.bootstrap, "CA_TOPIC_PREFIX": prefix,
        "CA_APP_ID": f"apibench-{tag}", "CA_DATA_DIR": str(workdir / "state"),
        "CA_CHDB_PATH": str(workdir / "chdb"), "CA_CLICKHOUSE_URL": "",
        "CA_CLICKHOUSE_DATABASE": DATABASE, "CA_API_TOKEN": "", "CA_SQL_HOST": "127.0.0.1",
        "CA_LOG_LEVEL": "warning", "PYTHONPATH": str(REPO)}
    run = Run(args, tag, workdir, env, settings_of(env))
    run.results["machine"] = machine()
    run.results["nofile_limit"] = raise_nofile()
    print(f"run {tag}; working folder {workdir}", flush=True)
    broker_started = False
    producer: AIOKafkaProducer | None = None
    failed = True
    try:
        filler = run.spawn("fill", _self_cmd(
            "--fill", str(workdir / "chdb"), "--messages", str(args.messages), "--batch",
            str(args.batch), "--reply-share", str(args.reply_share), "--click-share",
            str(args.click_share)), pipes=True)
        broker_started = await start_broker(args)  # meanwhile the engine fills
        filled = await _json_line(filler.stdout, args.timeout, "the fill")
        filler.wait(30)
        run.results["fill"] = {k: v for k, v in filled.items() if k != "summary"}
        print(f"filled {filled['messages']:,} messages, {filled['replies']:,} replies, "
              f"{filled['rows'].get('link_clicks', 0):,} clicks in {filled['seconds']:.0f} s "
              "(direct inserts into the engine, not through the pipeline)", flush=True)
        if filled["messages"] != args.messages:
            raise RuntimeError(f"the engine holds {filled['messages']} messages, not "
                               f"{args.messages}")
        summary = filled["summary"]

        owner = run.spawn("sql-endpoint", _self_cmd("--serve-sql", str(workdir / "chdb")),
                          pipes=True)
        sql_port = int((await _json_line(owner.stdout, 120, "the SQL endpoint"))["port"])
        await ensure_topics(run.settings)
        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
        await producer.start()
        await publish(producer, run.settings, summary, summary["sent"])
        api_port = free_port()
        api_cmd = [str(Path(sys.executable).with_name("campaign-analytics")), "api",
                   "--port", str(api_port)]
        api = run.spawn("api", api_cmd, env=run.env | {"CA_SQL_PORT": str(sql_port)})
        api_url = f"http://127.0.0.1:{api_port}"
        ready = await wait_ready(run, api, api_url)
        run.results["api_ready_seconds"] = ready
        run.results["parts"] = await sql_parts(sql_port)
        run.results["api_rss_idle_mb"] = vm_kb(api.pid, "VmRSS") / 1024
        print(f"API ready in {ready:.1f} s ({run.results['api_rss_idle_mb']:.0f} MB RSS); "
              f"active parts {run.results['parts']}", flush=True)
        if "latency" in args.parts:
            print(f"latency: {args.requests} requests per ClickHouse route and concurrency, "
                  f"{args.live_requests} of the summary", flush=True)
            run.results["latency"] = await latency(
                run, api_url, filled, {"api": api.pid, "sql": owner.pid})
        if "sse" in args.parts:
            print(f"fan-out: {args.rounds} snapshots per step", flush=True)
            run.results["sse"] = await fan_out(
                run, f"{api_url}/api/v1/campaigns/{CAMPAIGN}/events", api.pid, producer,
                summary)
        run.results["api_rss_peak_mb"] = vm_kb(api.pid, "VmHWM") / 1024
        run.results["sql_endpoint_rss_peak_mb"] = vm_kb(owner.pid, "VmHWM") / 1024
        failed = False
    finally:
        if producer is not None:
            await producer.stop()
        if failed:
            for name in ("fill", "sql-endpoint", "api"):
                tail = run.log_tail(name)
                if tail:
                    print(f"---- {name}.log (tail)\n{tail}", file=sys.stderr)
        for proc in reversed(run.procs):
            stop(proc)
        if not broker_started and not args.keep_topics:
            with contextlib.suppress(Exception):
                await delete_topics(args.bootstrap, tag)
        shutil.rmtree(workdir, ignore_errors=True)
        if broker_started:
            clean_broker(args)  # its topics go with its data
    text = report(run)
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps({
            "tag": tag, "args": {k: str(v) for k, v in vars(args).items()},
            **run.results, "report": text}, indent=2, default=str))
    return 0


# --- report --------------------------------------------------------------------------


def report(run: Run) -> str:
    r, args = run.results, run.args
    m = r["machine"]
    fill_ = r.get("fill", {})
    lines = [
        f"machine: {m['cpus']} cores ({m['cpu']}), {m['memory_gb']} GB, load at start "
        f"{m['load_at_start'][0]:.2f}, Python {m['python']}; broker {args.bootstrap}",
        f"campaign: {fill_.get('messages', 0):,} messages in message_log, "
        f"{fill_.get('replies', 0):,} replies, {fill_.get('rows', {}).get('link_clicks', 0):,} "
        f"clicks; written straight into chdb in {fill_.get('seconds', math.nan):.0f} s "
        f"(insert plans, batches of {args.batch:,}; not through Kafka and the worker)",
        f"active parts when measured: {r.get('parts', {})}; API RSS idle "
        f"{r.get('api_rss_idle_mb', math.nan):.0f} MB, peak "
        f"{r.get('api_rss_peak_mb', math.nan):.0f} MB; SQL endpoint's process peak "
        f"{r.get('sql_endpoint_rss_peak_mb', math.nan):.0f} MB",
    ]
    if r.get("latency"):
        lines += ["", f"latency: {args.requests} requests per ClickHouse row, "
                  f"{args.live_requests} per summary row (after 3 warm-up), pages of 100; CPU "
                  "per request of the API / the SQL endpoint's process / this client:", "",
                  f"{'route':<26} {'in flight':>9} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
                  f"{'max ms':>8} {'req/s':>8} {'CPU ms API/SQL/client':>22} {'errors':>6}"]
        for x in r["latency"]:
            cpu = (f"{x['api_cpu_ms_per_request']:.1f}/{x['sql_cpu_ms_per_request']:.1f}/"
                   f"{x['client_cpu_ms_per_request']:.1f}")
            lines.append(
                f"{x['route']:<26} {x['concurrency']:>9} {x['p50_ms']:>8.1f} {x['p99_ms']:>8.1f} "
                f"{x['mean_ms']:>8.1f} {x['max_ms']:>8.1f} {x['requests_per_s']:>8.1f} "
                f"{cpu:>22} {x['errors']:>6}")
            if x["error_kinds"]:
                lines.append(f"  errors: {x['error_kinds']}")
        engine = fill_.get("engine_ms", {})
        lines.append("the same store calls on the open engine in one process (no endpoint, "
                     "HTTP or API), median of 5: "
                     + ", ".join(f"{k} {v:.0f} ms" for k, v in engine.items()))
    if r.get("sse"):
        lines += ["", f"fan-out: {args.rounds} snapshots per row, {args.round_gap:g} s apart; "
                  "delay = produce -> a client has read the event; a missing delivery counts "
                  "as infinite", "",
                  f"{'streams':>8} {'connected':>9} {'p50 s':>7} {'p99 s':>7} {'max s':>7} "
                  f"{'missing':>7} {'API RSS MB':>10} {'API CPU %':>9} {'CPU s/snapshot':>14} "
                  f"{'clients CPU %':>13}"]
        for x in r["sse"]:
            if "p99_s" not in x:
                lines.append(f"{x['clients']:>8} {x.get('connected', 0):>9}  (no rounds: "
                             f"{x.get('connect_errors')})")
                continue
            lines.append(
                f"{x['clients']:>8} {x['connected']:>9} {x['p50_s']:>7.3f} {x['p99_s']:>7.3f} "
                f"{x['max_s']:>7.3f} {x['missing']:>7} {x['api_rss_mb']:>10.0f} "
                f"{x['api_cpu_percent']:>9.0f} {x['api_cpu_s_per_snapshot']:>14.3f} "
                f"{x['clients_cpu_percent']:>13.0f}")
        ok = [x["clients"] for x in r["sse"] if x.get("p99_s", math.inf) <= 1.0
              and x["missing"] == 0 and x["connected"] == x["clients"]]
        best = max(ok, default=0)
        r["sse_largest_ok"] = best
        tested = max(x["clients"] for x in r["sse"])
        lines.append(f"largest N with p99 <= 1 s (all connected, none missing): {best}"
                     + (" (the largest tried)" if best == tested else ""))
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Method and figures: docs/performance.md, section 'API'.")
    parser.add_argument("--messages", type=int, default=1_000_000,
                        help="messages of the campaign in message_log (1000000)")
    parser.add_argument("--reply-share", type=float, default=0.05,
                        help="share of messages with a reply (0.05)")
    parser.add_argument("--click-share", type=float, default=0.10,
                        help="share of messages with clicks (0.10)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per insert (10000)")
    parser.add_argument("--requests", type=int, default=100,
                        help="measured requests per ClickHouse route and concurrency (100)")
    parser.add_argument("--live-requests", type=int, default=2000,
                        help="measured requests of the summary route per concurrency (2000)")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8],
                        help="requests in flight, comma-separated (1,8)")
    parser.add_argument("--sse-clients", type=_ints,
                        default=[1, 100, 500, 1000, 2000, 4000, 5000, 6000, 8000],
                        help="numbers of /events streams to try, comma-separated "
                             "(1,100,500,1000,2000,4000,5000,6000,8000); stops after a step "
                             "where not all connect")
    parser.add_argument("--sse-procs", type=int, default=2,
                        help="client processes holding the streams (2)")
    parser.add_argument("--rounds", type=int, default=5, help="snapshots per fan-out step (5)")
    parser.add_argument("--round-gap", type=float, default=1.0,
                        help="seconds between two snapshots of a step (1.0)")
    parser.add_argument("--round-timeout", type=float, default=10.0,
                        help="seconds a snapshot may take to reach every client; later = "
                             "missing (10)")
    parser.add_argument("--only", default="latency,sse", help="parts to run (latency,sse)")
    parser.add_argument("--bootstrap", default="127.0.0.1:49092",
                        help="Kafka broker; started (and removed at the end) if none answers "
                             "(127.0.0.1:49092)")
    parser.add_argument("--kafka-dir", type=Path, default=REPO / ".run/kafka-apibench",
                        help="data folder of a broker this run starts (.run/kafka-apibench)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds the fill, or the API's start, may take (600)")
    parser.add_argument("--keep-topics", action="store_true",
                        help="keep the run's topics on a broker it did not start")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    # the run's own child processes
    parser.add_argument("--fill", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-sql", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sse-client", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--connect-batch", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if set(args.parts) - {"latency", "sse"}:
        parser.error("--only takes latency and/or sse")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fill:
        fill(args.fill, args.messages, args.batch, args.reply_share, args.click_share)
        return 0
    if args.serve_sql:
        asyncio.run(serve_sql(args.serve_sql))
        return 0
    if args.sse_client:
        raise_nofile()
        asyncio.run(sse_client(args.sse_client, args.connections, args.connect_batch))
        return 0
    # aiokafka logs its retries while a new topic's leaders settle; keep them quiet
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
