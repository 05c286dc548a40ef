"""The read-only SQL endpoint over chdb (sinks/sql_endpoint.py), the ``sql`` command,
and the example queries of docs/data.md.

One chdb path per process: the module's store (holding the directory open, as the
sink process will) and every endpoint here share one path, in this process. The
endpoint runs in a background thread with its own event loop, as it would beside
the sinks; the CLI runs in-process (``main()``), so nothing else opens the path.
"""

# The SQL here is test input built from this module's constants (S608), and the URLs
# are this module's own endpoint (S310).
# ruff: noqa: S608, S310

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chdb
import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from projections.events import LinkClicked, ReplyReceived
from projections.message import MessageState, apply_event
from projections.message_log import MessageLogRow, message_log_row
from sinks import sql_endpoint
from sinks.chdb_store import ChdbStore
from sinks.plan import SourcedEvent, dedup_token, plan_event_inserts, plan_message_log_insert
from sinks.sql_endpoint import SqlEndpoint
from streams import cli
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import parse_json_line
from tests.waiting import wait_until

DATABASE = "campaign_analytics"
CAMPAIGN = "sql-camp"
START_MS = 1_780_000_000_000  # 2026-05-28T20:26:40Z: replies fall on two days
DOCS = Path(__file__).resolve().parents[2] / "docs" / "data.md"


class Data:
    def __init__(self, path: Path, rows: list[MessageLogRow], events: list[Any]) -> None:
        self.path = path
        self.rows = rows
        self.events = events


class Running:
    """An endpoint serving from its own thread and event loop."""

    def __init__(self, endpoint: SqlEndpoint) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.new_event_loop()
        self.port = self.loop.run_until_complete(endpoint.start("127.0.0.1", 0))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.endpoint.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    """The demo campaign loaded as the sinks would, in a directory held open."""
    path = tmp_path_factory.mktemp("sql") / "chdb"
    store = ChdbStore(path, DATABASE, hold_open=True)
    store.migrate()
    raw = generate_campaign(CAMPAIGN, 400, seed=11, start_ms=START_MS)
    # replies spread over two days, so "replies of a day" has something to leave out
    for record in raw:  # by message, so that the duplicates of a reply move with it
        if record["type"] == "reply" and int(record["message_id"][-1]) % 2:
            record["occurred_at"] += 86_400_000
    decoded = [parse_json_line(json.dumps(e))[1] for e in raw]
    states: dict[str, MessageState] = {}
    for event in decoded:
        states[event.message_id] = apply_event(
            states.get(event.message_id, MessageState(event.message_id)), event
        )
    rows = [r for s in states.values() if (r := message_log_row(s, updated_at=START_MS))]
    store.insert(plan_message_log_insert(rows, None))
    sourced = [SourcedEvent("sms.sent", 0, offset, e) for offset, e in enumerate(decoded)]
    for first in range(0, len(sourced), 100):
        batch = sourced[first : first + 100]
        for plan in plan_event_inserts(batch, dedup_token("in", 0, first, first + 99)):
            store.insert(plan)
    try:
        yield Data(path, rows, decoded)
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(data: Data) -> Iterator[Running]:
    running = Running(SqlEndpoint(data.path, DATABASE))
    yield running
    running.stop()


@pytest.fixture
def writable(data: Data) -> Iterator[Any]:
    """A writable connection (the negative controls) and a scratch table with one row."""
    conn = chdb.connect(str(data.path))
    conn.query(f"CREATE TABLE {DATABASE}.scratch (x UInt32) ENGINE = MergeTree ORDER BY x")
    conn.query(f"INSERT INTO {DATABASE}.scratch VALUES (1)")
    try:
        yield conn
    finally:
        for name in ("scratch", "scratch2", "scratch3"):
            conn.query(f"DROP TABLE IF EXISTS {DATABASE}.{name}")
        conn.close()


def client(server: Running, **kwargs: Any) -> Any:
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=server.port, database=DATABASE, **kwargs
    )


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def sql_get(server: Running, sql: str, **params: str) -> tuple[int, dict[str, str], bytes]:
    return get(f"{server.url}/?" + urllib.parse.urlencode({"query": sql, **params}))


def scratch_state(conn: Any) -> list[Any]:
    """Tables named scratch*, their columns and row counts: what a write would change."""
    names = bytes(conn.query(
        f"SELECT name FROM system.tables WHERE database = '{DATABASE}'"
        " AND name LIKE 'scratch%' ORDER BY name", "TSV").bytes()).decode().split()
    return [(name,
             bytes(conn.query(f"DESCRIBE TABLE {DATABASE}.{name}", "TSV").bytes()).decode(),
             bytes(conn.query(f"SELECT count() FROM {DATABASE}.{name}", "TSV").bytes()).decode())
            for name in names]


# -- the HTTP interface ------------------------------------------------------


def test_curl_like_get_and_ping(server: Running) -> None:
    status, headers, body = get(f"{server.url}/?query=SELECT%201")
    assert (status, body) == (200, b"1\n")
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Query-Id"]
    assert headers["X-ClickHouse-Timezone"]
    assert json.loads(headers["X-ClickHouse-Summary"])["result_bytes"] == "2"
    assert get(f"{server.url}/ping")[2] == b"Ok.\n"


def test_post_body_url_prefix_format_and_default_format(server: Running) -> None:
    def post(url: str, body: bytes) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(url, data=body)) as r:
            return bytes(r.read())

    assert post(f"{server.url}/", b"SELECT 2 AS n FORMAT JSONEachRow") == b'{"n":2}\n'
    prefix = urllib.parse.quote("SELECT number FROM numbers(3)")
    assert post(f"{server.url}/?query={prefix}", b"WHERE number > 0") == b"1\n2\n"
    _, headers, body = sql_get(server, "SELECT 3 AS n", default_format="CSVWithNames")
    assert (headers["X-ClickHouse-Format"], body) == ("CSVWithNames", b'"n"\n3\n')
    # the database parameter; an unknown one is ClickHouse's UNKNOWN_DATABASE
    assert sql_get(server, "SELECT currentDatabase()", database="system")[2] == b"system\n"
    status, headers, body = sql_get(server, "SELECT 1", database="nope")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "81")


def test_clickhouse_connect_typed_results_with_parameters(server: Running, data: Data) -> None:
    expected = sorted((r for r in data.rows if r.variant == "A"), key=lambda r: r.message_id)[:3]
    c = client(server)
    try:
        result = c.query(
            "SELECT message_id, variant, segments, sent_at, delivered_at, version"
            " FROM message_log FINAL WHERE campaign_id = {campaign:String}"
            " AND variant = {variant:String} ORDER BY message_id LIMIT {n:UInt8}",
            parameters={"campaign": CAMPAIGN, "variant": "A", "n": 3},
        )
        assert result.column_names == (
            "message_id", "variant", "segments", "sent_at", "delivered_at", "version")
        got = result.result_rows
        assert [r[0] for r in got] == [r.message_id for r in expected]
        assert all(isinstance(r[2], int) and isinstance(r[3], dt.datetime) for r in got)
        assert [int(r[3].replace(tzinfo=dt.UTC).timestamp() * 1000) for r in got] == [
            r.sent_at for r in expected]
        assert c.command("SELECT count() FROM message_log FINAL") == len(data.rows)
        assert c.query("SELECT {s:String} AS s", parameters={"s": "a'b\\c\n"}).result_rows == [
            ("a'b\\c\n",)]
    finally:
        c.close()


def test_clickhouse_connect_sql_error_is_a_database_error(server: Running) -> None:
    c = client(server)
    try:
        with pytest.raises(DatabaseError) as caught:
            c.query("SELECT no_such_column FROM message_log")
        assert caught.value.code == 47
        assert "UNKNOWN_IDENTIFIER" in str(caught.value)
    finally:
        c.close()


def test_compression_on_request_and_uncompressed_by_default(server: Running) -> None:
    # clickhouse-connect asks for lz4/zstd/gzip in Accept-Encoding (compress=True, the
    # default, used above); gzip when a client also sets enable_http_compression=1
    url = f"{server.url}/?" + urllib.parse.urlencode(
        {"query": "SELECT number FROM numbers(100)", "enable_http_compression": "1"})
    _, headers, body = get(url, {"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(body).split() == [str(i).encode() for i in range(100)]
    _, headers, body = sql_get(server, "SELECT 1")
    assert "Content-Encoding" not in headers and body == b"1\n"


def test_url_settings_apply_but_cannot_lift_limits(server: Running) -> None:
    status, headers, _ = sql_get(server, "SELECT number FROM numbers(10)", max_result_rows="3")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "396")
    assert sql_get(server, "SELECT getSetting('max_execution_time')",
                   max_execution_time="5")[2] == b"5\n"
    cap = f"{sql_endpoint.MAX_EXECUTION_SECONDS}\n".encode()
    assert sql_get(server, "SELECT getSetting('max_execution_time')",
                   max_execution_time="100000")[2] == cap
    # a result setting applies, and only to its request (a session serves only requests
    # with the same settings)
    assert sql_get(server, "SELECT toUInt64(1) AS n FORMAT JSONEachRow",
                   output_format_json_quote_64bit_integers="1")[2] == b'{"n":"1"}\n'
    assert sql_get(server, "SELECT toUInt64(1) AS n FORMAT JSONEachRow")[2] == b'{"n":1}\n'
    # transport parameters are not settings
    assert sql_get(server, "SELECT 1", wait_end_of_query="1", client_protocol_version="54405",
                   send_progress_in_http_headers="1")[2] == b"1\n"
    status, headers, body = sql_get(server, "SELECT 1", no_such_setting="1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "115")
    assert body.startswith(b"Code: 115. DB::Exception:") and b"(UNKNOWN_SETTING)" in body


def test_a_query_runs_on_one_thread_however_often_asked(server: Running) -> None:
    """The engine's owner is the sink process: a read leaves it a core (and a session
    configured once answers again, with the same limits)."""
    for _ in range(3):
        assert sql_get(server, "SELECT getSetting('max_threads')")[2] == b"1\n"
    assert sql_get(server, "SELECT getSetting('max_threads')", max_threads="8")[2] == b"1\n"
    # a failed query's session is dropped; the next request still gets the limits
    assert sql_get(server, "SELECT throwIf(1)")[0] == 500
    assert sql_get(server, "SELECT getSetting('max_threads')")[2] == b"1\n"


def test_a_query_over_its_time_is_stopped(server: Running) -> None:
    started = time.monotonic()
    status, headers, body = sql_get(server, "SELECT count() FROM numbers(100000000000)",
                                    max_execution_time="1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "159")
    assert b"TIMEOUT_EXCEEDED" in body
    assert time.monotonic() - started < 10


def test_busy_endpoint_answers_503_and_keeps_the_loop_free(data: Data) -> None:
    running = Running(SqlEndpoint(data.path, DATABASE, max_concurrent=1, queue_wait=0.2))
    try:
        slow = threading.Thread(target=sql_get, args=(running, "SELECT sleep(2)"))
        slow.start()

        def turned_away() -> tuple[int, dict[str, str], bytes] | None:
            answer = sql_get(running, "SELECT 1")  # waits queue_wait for the slot
            return answer if answer[0] == 503 else None

        status, headers, body = wait_until(
            turned_away, "the slow query to hold the only slot", 5, 0.05)
        started = time.monotonic()
        assert get(f"{running.url}/ping")[2] == b"Ok.\n"  # the loop is not blocked
        assert time.monotonic() - started < 0.5
        assert (status, headers["Retry-After"]) == (503, "1")
        assert headers["X-ClickHouse-Exception-Code"] == "202"
        slow.join(10)
        assert sql_get(running, "SELECT 1")[2] == b"1\n"  # the slot is free again
    finally:
        running.stop()


# -- read-only ---------------------------------------------------------------

REFUSED = [
    "INSERT INTO scratch VALUES (2)",
    "CREATE TABLE scratch2 (x UInt8) ENGINE = MergeTree ORDER BY x",
    "DROP TABLE scratch",
    "ALTER TABLE scratch ADD COLUMN y UInt8",
    "TRUNCATE TABLE scratch",
    "RENAME TABLE scratch TO scratch3",
    "INSERT INTO scratch SETTINGS readonly = 0 VALUES (2)",
    "SELECT 1; INSERT INTO scratch VALUES (2)",
    "/* a comment */ insert into scratch values (2)",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_are_refused_and_change_nothing(
    server: Running, writable: Any, sql: str
) -> None:
    before = scratch_state(writable)
    status, headers, body = sql_get(server, sql)
    code = headers.get("X-ClickHouse-Exception-Code")
    if ";" in sql:  # ClickHouse's HTTP interface: one statement per request
        assert (code, b"Multi-statements are not allowed" in body) == ("62", True)
    else:
        assert (status, code) == (403, "164"), body
        assert re.match(rb"Code: 164\. DB::Exception: .*readonly mode\. \(READONLY\)\n$", body)
    assert scratch_state(writable) == before
    # negative control: the same statement on a writable connection changes the data
    writable.query(sql.replace("scratch", f"{DATABASE}.scratch"))
    assert scratch_state(writable) != before


def test_readonly_0_as_a_url_setting_is_refused(server: Running, writable: Any) -> None:
    before = scratch_state(writable)
    status, headers, body = sql_get(server, "INSERT INTO scratch VALUES (2)", readonly="0")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164")
    assert b"Cannot modify 'readonly' setting" in body
    assert sql_get(server, "SELECT 1", readonly="0")[0] == 403
    assert sql_get(server, "SELECT 1", readonly="1")[2] == b"1\n"
    assert scratch_state(writable) == before


def test_clickhouse_connect_command_write_is_refused(server: Running, writable: Any) -> None:
    before = scratch_state(writable)
    c = client(server)
    try:
        with pytest.raises(DatabaseError) as caught:
            c.command("INSERT INTO scratch VALUES (2)")
        assert caught.value.code == 164
        with pytest.raises(DatabaseError) as caught:
            c.query("SELECT 1", settings={"readonly": 0})
    except Exception:
        raise
    finally:
        c.close()
    assert scratch_state(writable) == before


def test_the_engine_enforces_readonly_on_a_configured_session(data: Data) -> None:
    """Layer 1 alone (no statement check): chdb refuses writes under the session
    the endpoint sets up; the same connection before it accepts them."""
    conn = chdb.connect(str(data.path))
    try:
        conn.query(f"CREATE TABLE {DATABASE}.scratch_engine (x UInt8) ENGINE = Memory")
        sql_endpoint._configure_session(conn, {}, DATABASE)
        for sql in ("INSERT INTO scratch_engine VALUES (1)", "DROP TABLE scratch_engine",
                    "SELECT 1 SETTINGS max_execution_time = 0", "SET readonly = 0",
                    "SELECT * FROM file('/etc/hostname', 'LineAsString')"):
            with pytest.raises(RuntimeError, match=r"Code: 164\."):
                conn.query(sql)
        # what readonly does not stop, and why statements are checked as well
        conn.query("SYSTEM START MERGES")
    finally:
        conn.close()
    conn = chdb.connect(str(data.path))
    try:
        conn.query(f"INSERT INTO {DATABASE}.scratch_engine VALUES (1)")  # negative control
        assert bytes(conn.query(f"SELECT count() FROM {DATABASE}.scratch_engine",
                                "TSV").bytes()) == b"1\n"
        conn.query(f"DROP TABLE {DATABASE}.scratch_engine")
    finally:
        conn.close()


@pytest.mark.parametrize("sql", ["SYSTEM STOP MERGES", "KILL QUERY WHERE 1", "USE system"])
def test_statements_readonly_lets_through_are_refused(server: Running, sql: str) -> None:
    status, headers, _ = sql_get(server, sql)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164")


def test_into_outfile_is_refused(server: Running, tmp_path: Path, data: Data) -> None:
    target = tmp_path / "out.tsv"
    status, headers, _ = sql_get(server, f"SELECT 1 INTO OUTFILE '{target}'")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "344")
    assert not target.exists()
    # a string that merely says so is fine
    assert sql_get(server, "SELECT 'INTO OUTFILE' AS s")[2] == b"INTO OUTFILE\n"
    conn = chdb.connect(str(data.path))  # negative control: chdb itself writes the file
    try:
        conn.query(f"SELECT 1 INTO OUTFILE '{target}'")
    finally:
        conn.close()
    assert target.exists()


# -- the sql command ---------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, server: Running) -> Running:
    monkeypatch.delenv("CA_CLICKHOUSE_URL", raising=False)
    monkeypatch.setenv("CA_SQL_HOST", "127.0.0.1")
    monkeypatch.setenv("CA_SQL_PORT", str(server.port))
    monkeypatch.setenv("CA_CLICKHOUSE_DATABASE", DATABASE)
    return server


QUERY = ("SELECT status, count() AS messages FROM message_log FINAL"
         f" WHERE campaign_id = '{CAMPAIGN}' GROUP BY status ORDER BY status")


def status_counts(data: Data) -> dict[str, int]:
    return dict(sorted(Counter(r.status for r in data.rows).items()))


def test_sql_command_table(
    cli_env: Running, data: Data, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sql", QUERY]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["status", "messages"]
    assert set(lines[1]) <= {"-", " "}
    assert {line.split()[0]: int(line.split()[1]) for line in lines[2:]} == status_counts(data)
    # aligned: every line's second column ends at the same place
    assert len({len(line) for line in lines}) == 1


def test_sql_command_csv(cli_env: Running, data: Data, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", QUERY, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["status", "messages"]
    assert {s: int(n) for s, n in rows[1:]} == status_counts(data)


def test_sql_command_json(cli_env: Running, data: Data, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", QUERY, "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == [{"status": s, "messages": n} for s, n in status_counts(data).items()]


def test_sql_command_errors(cli_env: Running, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", "SELECT nope FROM message_log"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Code: 47.") and err.count("\n") == 1
    assert "Traceback" not in err
    assert cli.main(["sql", "DROP TABLE message_log"]) == 2
    err = capsys.readouterr().err
    assert "Code: 164." in err and "(READONLY)" in err and err.count("\n") == 1


def test_sql_command_without_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv("CA_CLICKHOUSE_URL", raising=False)
    monkeypatch.setenv("CA_SQL_PORT", str(port))
    assert cli.main(["sql", "SELECT 1"]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot query ClickHouse SQL at http://127.0.0.1:{port}")
    assert err.rstrip().endswith("is a worker (its sink process) running?")
    assert err.count("\n") == 1 and "Traceback" not in err


# -- docs/data.md's examples -------------------------------------------------


def doc_examples() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- example: (\w+) -->\s*```sql\n(.*?)```", text, re.DOTALL))


def test_docs_have_the_four_examples() -> None:
    assert set(doc_examples()) == {
        "delivery_by_carrier", "clickers_of_variant", "replies_of_day", "failures_by_error"}


def run_example(server: Running, name: str, **parameters: Any) -> list[tuple[Any, ...]]:
    c = client(server)
    try:
        return list(c.query(doc_examples()[name], parameters=parameters).result_rows)
    finally:
        c.close()


def test_example_delivery_rate_by_carrier(server: Running, data: Data) -> None:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in data.rows:
        if row.status != "rejected":
            counts[row.carrier or "(none)"][0] += 1
            counts[row.carrier or "(none)"][1] += row.status == "delivered"
    expected = [(carrier, sent, delivered) for carrier, (sent, delivered) in sorted(counts.items())]
    got = run_example(server, "delivery_by_carrier", campaign=CAMPAIGN)
    assert [g[:3] for g in got] == expected
    assert [g[3] for g in got] == pytest.approx([d / s for _, s, d in expected], abs=5e-5)
    assert len(expected) > 2


def test_example_clickers_of_a_variant(server: Running, data: Data) -> None:
    by_message = {r.message_id: r for r in data.rows}
    clicks: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for event in data.events:
        if isinstance(event, LinkClicked) and event.event_id not in seen:
            seen.add(event.event_id)
            row = by_message[event.message_id]
            if row.variant == "B":
                clicks[row.contact_id].append(event.occurred_at)
    expected = [(contact, by_message_contact_name(data, contact), len(times),
                 min(times)) for contact, times in sorted(clicks.items())]
    got = run_example(server, "clickers_of_variant", campaign=CAMPAIGN, variant="B")
    assert [(c, n, k, _ms(t)) for c, n, k, t in got] == expected
    assert len(expected) > 5


def by_message_contact_name(data: Data, contact: str) -> str | None:
    return next(r.contact_name for r in data.rows if r.contact_id == contact)


def test_example_replies_of_a_day(server: Running, data: Data) -> None:
    day = dt.datetime.fromtimestamp(START_MS / 1000, dt.UTC).date()
    seen: dict[str, ReplyReceived] = {}
    for event in data.events:
        if isinstance(event, ReplyReceived):
            seen.setdefault(event.event_id, event)
    on_day = [e for e in seen.values()
              if dt.datetime.fromtimestamp(e.occurred_at / 1000, dt.UTC).date() == day]
    expected = sorted((e.occurred_at, e.message_id, e.contact_id, e.body) for e in on_day)
    got = run_example(server, "replies_of_day", campaign=CAMPAIGN, day=day)
    assert [(_ms(t), m, c, b) for t, m, c, b in got] == expected
    assert 0 < len(expected) < len(seen)  # the other day's replies are left out


def test_example_failures_by_error_code(server: Running, data: Data) -> None:
    failed = [r for r in data.rows if r.status in ("undelivered", "failed", "rejected")]
    codes = sorted({r.error_code for r in failed}, key=lambda c: (c is None, c))
    expected = [
        (code,
         sum(r.error_code == code for r in failed),
         sum(r.error_code == code and r.status == "rejected" for r in failed),
         sum(r.error_code == code and r.status == "undelivered" for r in failed),
         sum(r.error_code == code and r.status == "failed" for r in failed))
        for code in codes
    ]
    expected.sort(key=lambda e: -e[1])
    got = run_example(server, "failures_by_error", campaign=CAMPAIGN)
    assert [tuple(g[:1]) + tuple(g[2:]) for g in got] == expected
    assert all(isinstance(g[1], str) or g[0] is None for g in got)  # its description


def _ms(value: dt.datetime) -> int:
    return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000)


# -- credentials (issue 19 item 2) -------------------------------------------

SQL_PASSWORD = "endpoint-Pa55"  # noqa: S105 - a test password


@pytest.fixture(scope="module")
def guarded(data: Data) -> Iterator[Running]:
    """The endpoint of an owner configured with CA_CLICKHOUSE_USER/_PASSWORD."""
    from sinks.credentials import Credentials

    running = Running(SqlEndpoint(data.path, DATABASE,
                                  credentials=Credentials("reader", SQL_PASSWORD)))
    yield running
    running.stop()


def basic(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_with_a_password_the_endpoint_asks_for_it(guarded: Running, server: Running) -> None:
    url = f"{guarded.url}/?query=SELECT%201"
    for headers in ({}, basic("reader", "wrong"), basic("default", SQL_PASSWORD),
                    {"X-ClickHouse-User": "reader", "X-ClickHouse-Key": "wrong"},
                    {"Authorization": "Basic !!!"}, {"Authorization": f"Bearer {SQL_PASSWORD}"}):
        status, answer, body = get(url, headers)
        assert status == 401, headers
        assert answer["X-ClickHouse-Exception-Code"] == "516"
        assert answer["WWW-Authenticate"].startswith("Basic")
        assert SQL_PASSWORD not in body.decode()
    for headers in (basic("reader", SQL_PASSWORD),
                    {"X-ClickHouse-User": "reader", "X-ClickHouse-Key": SQL_PASSWORD}):
        assert get(url, headers)[::2] == (200, b"1\n")
    assert get(f"{guarded.url}/ping")[0] == 200  # as ClickHouse's: no credentials
    # negative control: without a password configured, the same bare request passes
    assert get(f"{server.url}/?query=SELECT%201")[::2] == (200, b"1\n")


def test_clickhouse_connect_and_open_reader_log_in(guarded: Running, data: Data) -> None:
    from sinks import open_reader
    from sinks.credentials import Credentials

    with pytest.raises(DatabaseError, match="516"):
        client(guarded).query("SELECT 1")
    good = client(guarded, username="reader", password=SQL_PASSWORD)
    assert good.query("SELECT 1").result_rows == [(1,)]
    good.close()
    reader = open_reader("", DATABASE, sql_host="127.0.0.1", sql_port=guarded.port,
                         credentials=Credentials("reader", SQL_PASSWORD))
    try:
        assert reader.count_message_log(CAMPAIGN) == len(data.rows)
    finally:
        reader.close()


def test_sql_command_sends_the_configured_credentials(
    monkeypatch: pytest.MonkeyPatch, guarded: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CA_CLICKHOUSE_URL", raising=False)
    monkeypatch.delenv("CA_CLICKHOUSE_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("CA_SQL_PORT", str(guarded.port))
    monkeypatch.setenv("CA_CLICKHOUSE_DATABASE", DATABASE)
    monkeypatch.setenv("CA_CLICKHOUSE_USER", "reader")
    monkeypatch.setenv("CA_CLICKHOUSE_PASSWORD", SQL_PASSWORD)
    assert cli.main(["sql", "SELECT 1 AS one", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "one\n1\n"
    monkeypatch.setenv("CA_CLICKHOUSE_PASSWORD", "not-" + SQL_PASSWORD)
    assert cli.main(["sql", "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert "Code: 516." in err and err.count("\n") == 1 and SQL_PASSWORD not in err
