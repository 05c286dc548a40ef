"""The store unavailable for 60 s on a running deployment (issue 19 item 3d).

A worker and ``campaign-analytics api`` run on the real broker while events stream
in; then the store goes away for 60 s: with chdb its owner (the worker's sink child)
is killed and the test holds the sink lock, so the restarted child waits; with a
server (``CA_TEST_CLICKHOUSE_URL``, else skipped) a proxy in between is closed.
Meanwhile the sinks commit nothing and the worker's and sinks' RSS stay within a
generous bound of before; the API serves live summaries (200, following the new
events) and answers 503 with ``Retry-After`` on its store routes (200 before and
after: the control). Then everything catches up exactly: summary = batch recount;
FINAL count = uniqExact(key) for every table, raw events = records published =
distinct sources, FINAL events = distinct event ids, SQL metrics = recount (merges
stopped, so the raw counts prove it). docs/operations.md has the why.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import pytest

from sinks import Credentials, open_reader
from sinks.chdb_store import ChdbStore
from sinks.server_store import ClickHouseServerStore
from streams.api.log_reads import STALE_FACTOR
from streams.cli.admin import ensure_topics
from streams.cli.demo import generate_campaign
from streams.settings import Settings
from streams.sink_runtime.runner import sink_lock_path
from tests import oracle
from tests.integration.conftest import Deployment, WorkerProcess, free_port
from tests.integration.test_api import TOKEN, Api
from tests.integration.test_clickhouse_sinks import produce, records_of, sink_lag
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = 60.0
PASSWORD = "outage-test-Pa55"  # noqa: S105 - a test password
SERVER_URL_ENV = "CA_TEST_CLICKHOUSE_URL"
COUNTS = ("sent", "delivered", "failed", "pending", "replies", "unique_repliers",
          "opt_outs", "link_clicks", "unique_link_clicks")
STORE_ROUTES = ("messages", "replies", "clicks", "export.csv")
# The API answers message-log pages from a read ahead of the store for up to
# STALE_FACTOR x CA_PAGE_CACHE_SECONDS (streams/api/log_reads.py): that long after its
# last read before the outage, and no longer, a page may still come back 200.
PAGE_CACHE_SECONDS = 1.0
READ_AHEAD_GRACE_S = STALE_FACTOR * PAGE_CACHE_SECONDS + 0.5
# RSS may grow by this much over the outage (fraction of the RSS before, plus a floor):
# generous, it is a bound on buffering the backlog, not a benchmark
RSS_GROWTH, RSS_FLOOR_KB = 0.5, 64 * 1024


def rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def sink_child(worker: WorkerProcess) -> int | None:
    """The worker's current ``campaign-analytics sink`` child, if one runs."""
    assert worker.proc is not None
    pid = worker.proc.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in map(int, children):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sink" in argv:
            return child
    return None


def take_lock(path: Path, timeout: float) -> IO[str]:
    """The sink lock, as soon as the killed owner's is released (before the worker's
    restarted child, which comes RESTART_PAUSE = 5 s later, can take it)."""
    deadline = time.monotonic() + timeout
    while True:
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.close()
            if time.monotonic() > deadline:
                pytest.fail(f"{path} was not released by the killed owner")
            time.sleep(0.02)


def _no_merges(database: str) -> list[str]:
    return [f"ALTER TABLE {database}.{table} MODIFY SETTING"
            " max_bytes_to_merge_at_max_space_in_pool = 1,"
            " max_bytes_to_merge_at_min_space_in_pool = 1"
            for table in ("message_log", "replies", "link_clicks", "events")]


def stop_merges(settings: Settings) -> None:
    """Before the owner opens the engine: no merge collapses repeated rows, so the raw
    ``events`` count shows every record written, and none twice (as in
    ``test_clickhouse_sinks``: the replacing merge is a second line of defence, not
    the proof)."""
    store = ChdbStore(settings.chdb_path, settings.clickhouse_database)
    try:
        store.migrate()
        for sql in _no_merges(settings.clickhouse_database):
            store._query(sql, "TabSeparated")
    finally:
        store.close()


class Proxy:
    """A TCP proxy to ``target`` on a port of its own, served from a thread; ``stop``
    closes it (new connections refused, open ones cut), ``start`` opens it again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()
        self.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        async def listen() -> None:
            self.server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port,
                                                     reuse_address=True)
        self._call(listen())

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in list(self.open):
                writer.transport.abort()
        self._call(close())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.open |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            self.open -= {writer, up_writer}


class Embedded:
    """The embedded engine: its owner (the worker's sink child) killed, and the sink
    lock held by the test for the outage, so the restarted child waits for it."""

    def __init__(self) -> None:
        self.lock: IO[str] | None = None
        self.credentials = Credentials("reader", PASSWORD)

    def env(self) -> dict[str, str]:
        return {"CA_CLICKHOUSE_USER": "reader", "CA_CLICKHOUSE_PASSWORD": PASSWORD}

    def prepare(self, settings: Settings) -> None:
        stop_merges(settings)

    def go_down(self, worker: WorkerProcess, settings: Settings) -> None:
        owner = sink_child(worker)
        assert owner is not None
        os.kill(owner, signal.SIGKILL)
        self.lock = take_lock(sink_lock_path(settings), 4.0)

    def come_back(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def close(self) -> None:
        self.come_back()


class Server:
    """A ClickHouse server (``CA_TEST_CLICKHOUSE_URL``) behind a ``Proxy``, in a
    database of its own, dropped at the end."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = f"{parts.scheme}://{parts.hostname}:{parts.port or 8123}"
        self.credentials = Credentials(unquote(parts.username or ""),
                                       unquote(parts.password or ""))
        self.database = f"ca_outage_{uuid.uuid4().hex[:10]}"
        self.proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 8123))

    def env(self) -> dict[str, str]:
        return {"CA_CLICKHOUSE_URL": f"http://127.0.0.1:{self.proxy.port}",
                "CA_CLICKHOUSE_DATABASE": self.database,
                "CA_CLICKHOUSE_USER": self.credentials.user,
                "CA_CLICKHOUSE_PASSWORD": self.credentials.password}

    def _direct(self, statements: list[str]) -> None:
        store = ClickHouseServerStore(self.url, self.database, credentials=self.credentials)
        try:
            client = store._get_client()
            for sql in statements:
                client.command(sql)
        finally:
            store.close()

    def prepare(self, settings: Settings) -> None:
        store = ClickHouseServerStore(self.url, self.database, credentials=self.credentials)
        try:
            store.migrate()
        finally:
            store.close()
        self._direct(_no_merges(self.database))

    def go_down(self, worker: WorkerProcess, settings: Settings) -> None:
        self.proxy.stop()

    def come_back(self) -> None:
        self.proxy.start()

    def close(self) -> None:
        self.proxy.close()
        with contextlib.suppress(Exception):
            self._direct([f"DROP DATABASE IF EXISTS {self.database}"])


def picked(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in COUNTS}


class Outage:
    def __init__(self, deployment: Deployment, api: Api, worker: WorkerProcess,
                 events: list[dict[str, Any]], campaign: str) -> None:
        self.deployment, self.api, self.worker = deployment, api, worker
        self.settings: Settings = deployment.settings()
        self.events, self.campaign = events, campaign
        self.raw, _ = records_of(events)
        self.published = 0

    def publish(self, upto: int) -> None:
        """The raw input records [published, upto) to their topics, in order."""
        part = self.raw[self.published:upto]
        for kind, topic in self.settings.input_topics.items():
            asyncio.run(produce(self.settings, topic,
                                [(key, value) for k, key, value in part if k == kind]))
        self.published = max(self.published, upto)

    def live_matches(self) -> bool:
        code, _, body = self.api.get(f"/api/v1/campaigns/{self.campaign}")
        assert code in (200, 404), body[:300]  # 404 until its first snapshot
        if code == 404:
            return False
        want = picked(oracle.recount(self.events[:self.published])[self.campaign])
        return picked(json.loads(body)) == want

    def store_route(self, route: str) -> tuple[int, dict[str, str], bytes]:
        return self.api.get(f"/api/v1/campaigns/{self.campaign}/{route}")

    def reader_checks(self, credentials: Credentials) -> None:
        assert_store_exact(self.settings, self.events, len(self.raw), credentials)


def assert_store_exact(settings: Settings, events: list[dict[str, Any]], records: int,
                       credentials: Credentials | None = None) -> None:
    """Read through the owner's SQL endpoint: nothing missing, nothing doubled
    (``records`` input records were published), the metrics equal the recount."""
    store = open_reader(settings.clickhouse_url, settings.clickhouse_database,
                        sql_host=settings.sql_host,
                        sql_port=settings.sql_port, credentials=credentials)
    try:
        stored = store.row_counts("events")
        assert stored.stored == stored.distinct_sources == records
        assert stored.final == stored.distinct_keys == len({e["event_id"] for e in events})
        for table, kind in (("replies", "reply"), ("link_clicks", "click")):
            counts = store.row_counts(table)
            wanted = len({e["event_id"] for e in events if e["type"] == kind})
            assert counts.final == counts.distinct_keys == wanted > 0, table
        log = store.row_counts("message_log")
        messages = len({e["message_id"] for e in events if e["type"] == "sent"})
        assert log.final == log.distinct_keys == messages
        campaigns = {e["campaign_id"] for e in events if e["type"] == "sent"}
        recounts = oracle.recount(events)
        for campaign in campaigns:
            metrics = store.campaign_metrics(campaign)
            assert metrics is not None
            assert {k: getattr(metrics.totals, k) for k in COUNTS} == picked(
                recounts[campaign])
    finally:
        store.close()


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "embedded":
        made: Embedded | Server = Embedded()
    else:
        url = os.environ.get(SERVER_URL_ENV, "")
        if not url:
            pytest.skip(f"{SERVER_URL_ENV} is not set: no ClickHouse server to take away")
        made = Server(url)
    try:
        yield made
    finally:
        made.close()


def test_store_unavailable_60s_sinks_pause_api_serves_then_exact_catch_up(
        kafka_bootstrap: str, tmp_path: Path, backend: Embedded | Server) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path)
    deployment.env |= {"CA_API_TOKEN": TOKEN, "CA_SINK_BATCH_ROWS": "200",
                       "CA_PAGE_CACHE_SECONDS": str(PAGE_CACHE_SECONDS), **backend.env()}
    embedded = isinstance(backend, Embedded)
    campaign = "outage-camp"
    events = generate_campaign(campaign, messages=900, seed=19)
    api: Api | None = None
    try:
        asyncio.run(ensure_topics(deployment.settings()))
        backend.prepare(deployment.settings())
        worker = deployment.worker().start()
        worker.wait_ready()
        api = Api(deployment, free_port(), tmp_path / "api.log")
        outage = Outage(deployment, api, worker, events, campaign)
        third = len(outage.raw) // 3

        # before: everything answers
        outage.publish(third)
        api.wait(outage.live_matches, "the live summary of the first third")
        api.wait(lambda: outage.store_route("messages")[0] == 200, "the message log")
        for route in STORE_ROUTES:  # negative control of the 503s below
            assert outage.store_route(route)[0] == 200, route
        last_read = time.monotonic()  # no block of the read ahead is newer than this
        owner = sink_child(worker)
        assert owner is not None
        worker_pid = worker.proc.pid  # type: ignore[union-attr]
        rss_before = {"worker": rss_kb(worker_pid), "sink": rss_kb(owner)}

        # the store goes away for OUTAGE_SECONDS (with chdb: its owner dies)
        backend.go_down(worker, outage.settings)
        started = time.monotonic()
        peak = {"worker": 0, "sink": 0}
        waiting: set[int] = set()
        refused: dict[str, int] = dict.fromkeys(STORE_ROUTES, 0)
        step = max(1, third // 10)
        while (elapsed := time.monotonic() - started) < OUTAGE_SECONDS:
            if outage.published < 2 * third:
                outage.publish(min(2 * third, outage.published + step))
            code, _, body = api.get(f"/api/v1/campaigns/{campaign}")
            assert code == 200, body[:300]
            for route in STORE_ROUTES:
                code, headers, body = outage.store_route(route)
                if (route == "messages" and code == 200
                        and time.monotonic() - last_read <= READ_AHEAD_GRACE_S):
                    continue  # a page of the read ahead, within its bound
                assert code == 503, (route, body[:300])
                assert int(headers["Retry-After"]) >= 1
                refused[route] += 1
            child = sink_child(worker)
            if child is not None and (child != owner or not embedded):
                waiting.add(child)  # with chdb a new one, waiting for the engine
                peak["sink"] = max(peak["sink"], rss_kb(child) or 0)
            peak["worker"] = max(peak["worker"], rss_kb(worker_pid) or 0)
            if outage.published >= 2 * third and elapsed > OUTAGE_SECONDS / 2:
                assert asyncio.run(sink_lag(outage.settings)) > 0  # paused: nothing committed
            time.sleep(2.0)
        # the live side kept going: the summary has every event published so far
        wait_until(outage.live_matches, "the live summary during the outage", 20, 0.5)
        assert asyncio.run(sink_lag(outage.settings)) > 0
        assert waiting, "no sink process during the outage"
        assert all(n >= 3 for n in refused.values()), refused
        for name, before in rss_before.items():
            assert before is not None
            bound = before * (1 + RSS_GROWTH) + RSS_FLOOR_KB
            assert 0 < peak[name] <= bound, (name, before, peak[name])
        assert worker.proc is not None and worker.proc.poll() is None

        # back: the waiting child takes the engine, the sinks catch up exactly
        backend.come_back()
        outage.publish(len(outage.raw))
        api.wait(outage.live_matches, "the live summary of every event")
        api.wait(lambda: asyncio.run(sink_lag(outage.settings)) == 0, "the sinks to catch up")
        for route in STORE_ROUTES:
            api.wait(lambda r=route: outage.store_route(r)[0] == 200, f"{route} again")
        messages = api.pages(f"/api/v1/campaigns/{campaign}/messages", 500)
        assert len(messages) == len({e["message_id"] for e in events if e["type"] == "sent"})
        outage.reader_checks(backend.credentials)
        print(f"outage {OUTAGE_SECONDS:.0f} s: RSS before {rss_before} kB, peak {peak} kB; "
              f"refused {refused}; sink children waiting {sorted(waiting)}")
    finally:
        backend.come_back()
        if api is not None:
            api.stop()
        deployment.close()
        shutil.rmtree(tmp_path / "state", ignore_errors=True)
