"""``SqlEndpoint``: a read-only ClickHouse HTTP interface over the embedded engine.

With chdb only one process may open the engine's directory (``sinks.chdb_store``), so
its owner serves this beside its sinks, for ``clickhouse_connect``, ``curl``, notebooks.
Each query runs in a worker thread on a fresh chdb connection of its own, so a
request's settings never reach the sinks' connections or another request.

Read-only, in two layers (``tests/contract/test_sql_endpoint.py`` proves each): the
session runs with ClickHouse's ``readonly = 1``, after the request's settings and the
cost limits (which a request may lower, never raise); and since chdb still runs
``SYSTEM``, ``KILL``, several statements and ``INTO OUTFILE`` under it, only one
statement, as printed by ClickHouse's own parser, starting with SELECT, WITH, SHOW,
DESCRIBE, EXPLAIN or EXISTS and without INTO OUTFILE, is run. Details: docs/sinks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chdb
from aiohttp import web

from sinks.credentials import Credentials
from sinks.errors import SinkError
from sinks.sql import validate_identifier

# What one request may cost. A query over these fails with ClickHouse's own error
# (TIMEOUT_EXCEEDED, TOO_MANY_ROWS_OR_BYTES, MEMORY_LIMIT_EXCEEDED).
MAX_EXECUTION_SECONDS = 30
MAX_RESULT_ROWS = 1_000_000
MAX_RESULT_BYTES = 256 * 1024 * 1024  # uncompressed, as the engine counts it
MAX_MEMORY_BYTES = 2 * 1024 * 1024 * 1024
MAX_REQUEST_BYTES = 1024 * 1024  # the SQL, in the URL or the body
# Threads of one query. The engine's owner is the sink process: a query on every core
# left none to its inserts, and on 2 cores a message-log page cost 2x the CPU on 2
# threads than on 1 (74 against 31 ms; docs/performance.md, load).
MAX_QUERY_THREADS = 1
# Sessions a worker thread keeps open, each for one database and set of request
# settings (its readonly session cannot be changed by a query, so it is reused only by
# requests that would have configured it the same way); and statements it remembers
# having checked.
SESSIONS_PER_THREAD = 8
CHECKED_PER_SESSION = 256
# Queries running at once (each holds a thread and cores the sinks need); one more
# waits up to QUEUE_WAIT_SECONDS for a slot, then gets 503 with Retry-After.
MAX_CONCURRENT_QUERIES = 2
QUEUE_WAIT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1

# The cost limits, as session settings; a request may only make them stricter.
_LIMITS: dict[str, int] = {
    "max_execution_time": MAX_EXECUTION_SECONDS,
    "max_result_rows": MAX_RESULT_ROWS,
    "max_result_bytes": MAX_RESULT_BYTES,
    "max_memory_usage": MAX_MEMORY_BYTES,
    "max_threads": MAX_QUERY_THREADS,
}

# URL parameters of ClickHouse's HTTP interface that are not query settings, or
# that only shape the HTTP exchange (clickhouse-connect sends several of them).
_TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query",
    "client_protocol_version", "quota_key", "user", "password", "role",
    "enable_http_compression", "send_progress_in_http_headers",
    "cancel_http_readonly_queries_on_client_close", "add_http_cors_header",
})
_TRANSPORT_PREFIXES = ("http_", "param_")

_ALLOWED_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "EXPLAIN", "EXISTS"})
# chdb's Python wrapper turns these "formats" into Python objects; no ClickHouse
# client asks for them, and their results are not bytes.
_PYTHON_FORMATS = frozenset({"dataframe", "arrowtable", "datastore"})

_ERROR_RE = re.compile(r"^Code: (\d+)\. (.*?)(?: \(([A-Z0-9_]+)\))?\s*$", re.DOTALL)
# The tail formatQuerySingleLine adds to a parse error: it names our wrapper, not
# anything the user wrote.
_WRAPPER_SCOPE_RE = re.compile(r"\.? ?: In scope SELECT formatQuerySingleLine\(.*\)\.?$", re.DOTALL)
_NESTED_RE = re.compile(
    r"^DB::Exception: Code: \d+\. (DB::Exception: .*?) \([A-Z0-9_]+\) \(version [^)]*\)\.?$",
    re.DOTALL,
)
# Tokens of a statement as formatQuerySingleLine prints it: quoted strings and
# identifiers (skipped), words, and single characters.
_TOKEN_RE = re.compile(
    r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"|(\w+)|\S", re.DOTALL
)

_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "Native": "application/octet-stream",
    "Arrow": "application/octet-stream",
    "ArrowStream": "application/octet-stream",
    "Parquet": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
}

# HTTP status by ClickHouse error name, as ClickHouse's HTTP handler maps them;
# anything else is 500. TIMEOUT_EXCEEDED stays 500: a 504 would make
# clickhouse-connect retry a query that just used its whole time.
_HTTP_STATUS_BY_NAME = {
    "AUTHENTICATION_FAILED": 401,
    **dict.fromkeys(
        ("SYNTAX_ERROR", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_NUMBER",
         "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "BAD_QUERY_PARAMETER", "TYPE_MISMATCH",
         "ILLEGAL_TYPE_OF_ARGUMENT", "NUMBER_OF_ARGUMENTS_DOESNT_MATCH", "BAD_ARGUMENTS",
         "UNKNOWN_QUERY_PARAMETER", "INCORRECT_DATA", "INTO_OUTFILE_NOT_ALLOWED"),
        400,
    ),
    **dict.fromkeys(
        ("UNKNOWN_TABLE", "UNKNOWN_DATABASE", "UNKNOWN_IDENTIFIER", "UNKNOWN_FUNCTION",
         "UNKNOWN_SETTING", "UNKNOWN_FORMAT", "UNKNOWN_TYPE", "UNKNOWN_AGGREGATE_FUNCTION"),
        404,
    ),
    "READONLY": 403,
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "TOO_MANY_SIMULTANEOUS_QUERIES": 503,
}


class QueryError(Exception):
    """A ClickHouse error: code, name and message as the engine (or we) gave them."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @classmethod
    def from_engine(cls, exc: BaseException) -> QueryError:
        match = _ERROR_RE.match(str(exc).strip())
        if match is None:
            return cls(1001, "STD_EXCEPTION", f"DB::Exception: {str(exc).strip()}")
        code, message, name = match.groups()
        message = _WRAPPER_SCOPE_RE.sub(".", message)
        # chdb wraps some errors in a second "Code: N. DB::Exception:" with a version
        nested = _NESTED_RE.match(message)
        if nested is not None:
            message = nested.group(1)
        return cls(int(code), name or "UNKNOWN_EXCEPTION", message)

    def body(self) -> str:
        """The response body ClickHouse sends, which clickhouse-connect parses."""
        message = self.message if self.message.startswith("DB::Exception") else (
            f"DB::Exception: {self.message}"
        )
        if not message.endswith("."):
            message += "."
        return f"Code: {self.code}. {message} ({self.name})\n"


def _readonly_refusal() -> QueryError:
    return QueryError(164, "READONLY", "DB::Exception: Cannot execute query in readonly mode")


@dataclass
class _Request:
    sql: str
    database: str
    default_format: str
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class _Session:
    conn: Any
    timezone: str
    checked: dict[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass
class _Result:
    body: bytes
    fmt: str
    timezone: str
    summary: dict[str, str]


class SqlEndpoint:
    """A read-only ClickHouse HTTP interface to the chdb directory at ``chdb_path``.

    Run it in the process that owns the directory (see the module docstring), in its
    event loop: ``port = await endpoint.start(host, port)`` (0 = any free port) and
    ``await endpoint.stop()``.
    """

    def __init__(
        self,
        chdb_path: Path,
        database: str,
        *,
        max_concurrent: int = MAX_CONCURRENT_QUERIES,
        queue_wait: float = QUEUE_WAIT_SECONDS,
        credentials: Credentials | None = None,
    ) -> None:
        self._credentials = credentials or Credentials()
        self._path = Path(chdb_path).resolve()
        self._database = validate_identifier(database)
        self._max_concurrent = max_concurrent
        self._queue_wait = queue_wait
        self._keeper: Any = None
        self._timezone = "UTC"
        self._display_name = socket.gethostname()
        self._executor: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._runner: web.AppRunner | None = None
        self._local = threading.local()  # each worker thread's sessions
        self._lock = threading.Lock()
        self._sessions: list[_Session] = []  # all of them, closed at stop

    async def start(self, host: str, port: int) -> int:
        """Open the engine directory and serve on ``host:port``; the port bound."""
        if self._runner is not None:
            raise RuntimeError("SqlEndpoint already started")
        self._executor = ThreadPoolExecutor(self._max_concurrent, thread_name_prefix="sql-endpoint")
        self._slots = asyncio.Semaphore(self._max_concurrent)
        loop = asyncio.get_running_loop()
        try:
            self._keeper, self._timezone = await loop.run_in_executor(self._executor, self._open)
            app = web.Application(client_max_size=MAX_REQUEST_BYTES)
            app.router.add_get("/ping", self._ping)
            app.router.add_route("*", "/", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, host, port)
                await site.start()
            except BaseException:
                await runner.cleanup()
                raise
        except BaseException:
            await self._release()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        return int(bound[1])

    async def stop(self) -> None:
        """Stop serving, wait for running queries (each ends within its time limit), close."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._release()

    async def _release(self) -> None:
        executor, self._executor = self._executor, None
        keeper, self._keeper = self._keeper, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True)
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:  # no thread uses them any more
            session.conn.close()
        self._local = threading.local()
        if keeper is not None:
            await asyncio.to_thread(keeper.close)

    def _open(self) -> tuple[Any, str]:
        try:
            conn = chdb.connect(str(self._path))
            timezone = bytes(conn.query("SELECT timezone()", "RawBLOB").bytes()).decode()
        except RuntimeError as exc:
            raise SinkError(f"SQL endpoint cannot open chdb at {self._path}: {exc}") from exc
        return conn, timezone or "UTC"

    # -- HTTP --------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query_id = request.query.get("query_id") or request.headers.get(
            "X-ClickHouse-Query-Id"
        ) or str(uuid.uuid4())
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": self._display_name,
            "X-ClickHouse-Timezone": self._timezone,
        }
        if not self._credentials.admits(request.headers):
            # the API's rule for its token: missing or wrong is a 401, compared in
            # constant time; ClickHouse's own code for it, which clients recognise
            headers["WWW-Authenticate"] = 'Basic realm="campaign-analytics SQL"'
            return _error_response(QueryError(
                516, "AUTHENTICATION_FAILED",
                "DB::Exception: a valid user and password are required"), headers)
        try:
            parsed = await self._parse(request)
            if parsed is None:  # ClickHouse answers a bare GET / like /ping
                return web.Response(text="Ok.\n", headers=headers)
            result = await self._run(parsed)
        except QueryError as exc:
            return _error_response(exc, headers)
        headers["X-ClickHouse-Format"] = result.fmt
        headers["X-ClickHouse-Timezone"] = result.timezone
        headers["X-ClickHouse-Summary"] = json.dumps(result.summary, separators=(",", ":"))
        response = web.Response(body=result.body, headers=headers)
        response.headers["Content-Type"] = _CONTENT_TYPES.get(
            result.fmt, "text/plain; charset=UTF-8"
        )
        # ClickHouse compresses only when asked by both the setting and the header;
        # clickhouse-connect sees enable_http_compression as not writable here and
        # reads an uncompressed answer whatever Accept-Encoding it sent.
        if request.query.get("enable_http_compression") == "1":
            response.enable_compression()
        return response

    async def _parse(self, request: web.Request) -> _Request | None:
        values: dict[str, str] = dict(request.query)
        body = ""
        if request.content_type == "multipart/form-data":
            # clickhouse-connect sends the query and long parameters as form fields.
            # Not x-www-form-urlencoded: `curl -d 'SELECT 1'` labels a plain query so.
            for name, value in (await request.post()).items():
                if not isinstance(value, str):
                    raise QueryError(48, "NOT_IMPLEMENTED",
                                     "External data (file fields) is not supported here")
                values[name] = value
        else:
            raw = await request.read()
            if request.headers.get("Content-Encoding", "identity") not in ("", "identity"):
                raise QueryError(48, "NOT_IMPLEMENTED",
                                 "Compressed request bodies are not supported here")
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise QueryError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                                 f"The query is not valid UTF-8: {exc}") from exc
        url_query = values.get("query", "")
        # as ClickHouse: the URL's query is a prefix of the body's
        sql = f"{url_query}\n{body}" if url_query and body else url_query or body
        if not sql.strip():
            if request.method == "GET":
                return None
            raise QueryError(62, "SYNTAX_ERROR", "Empty query")
        params = {
            name[len("param_"):]: value for name, value in values.items()
            if name.startswith("param_")
        }
        settings = {
            name: value for name, value in values.items()
            if name not in _TRANSPORT_PARAMS and not name.startswith(_TRANSPORT_PREFIXES)
        }
        return _Request(
            sql=sql,
            database=values.get("database") or self._database,
            default_format=values.get("default_format") or "TabSeparated",
            settings=settings,
            params=params,
        )

    async def _run(self, parsed: _Request) -> _Result:
        slots, executor = self._slots, self._executor
        if slots is None or executor is None:
            raise QueryError(210, "NETWORK_ERROR", "The SQL endpoint is stopping")
        try:
            await asyncio.wait_for(slots.acquire(), self._queue_wait)
        except TimeoutError:
            raise QueryError(
                202, "TOO_MANY_SIMULTANEOUS_QUERIES",
                f"Too many simultaneous queries. Maximum: {self._max_concurrent}",
            ) from None
        loop = asyncio.get_running_loop()
        try:
            future = executor.submit(self._execute, parsed)
        except BaseException:
            slots.release()
            raise
        # The slot is free when the thread is, even if the client went away before
        # (a cancelled wait leaves a running query running).
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(slots.release))
        return await asyncio.wrap_future(future)

    # -- in a worker thread ------------------------------------------------

    def _session(self, parsed: _Request) -> _Session:
        """This thread's session for the request's database and settings, configured
        once (a connection, ``USE``, the settings, the limits, ``readonly = 1``: five
        engine calls that cost about as much as a page's query)."""
        sessions: OrderedDict[tuple[object, ...], _Session] = \
            self._local.__dict__.setdefault("sessions", OrderedDict())
        key = (parsed.database, tuple(sorted(parsed.settings.items())))
        session = sessions.get(key)
        if session is not None:
            sessions.move_to_end(key)
            return session
        try:
            conn = chdb.connect(str(self._path))
        except RuntimeError as exc:
            raise QueryError.from_engine(exc) from exc
        try:
            timezone = _configure_session(conn, parsed.settings, parsed.database)
        except BaseException:
            conn.close()
            raise
        session = _Session(conn, timezone or self._timezone)
        sessions[key] = session
        with self._lock:
            self._sessions.append(session)
        if len(sessions) > SESSIONS_PER_THREAD:
            _, oldest = sessions.popitem(last=False)
            with self._lock:
                self._sessions.remove(oldest)
            oldest.conn.close()
        return session

    def _execute(self, parsed: _Request) -> _Result:
        session = self._session(parsed)
        conn = session.conn
        checked = session.checked.get(parsed.sql)
        if checked is None:
            checked = _checked_statement(conn, parsed.sql)
            if len(session.checked) >= CHECKED_PER_SESSION:
                session.checked.clear()
            session.checked[parsed.sql] = checked
        statement, sql_format = checked
        fmt = sql_format or parsed.default_format
        if fmt.lower() in _PYTHON_FORMATS:
            raise QueryError(73, "UNKNOWN_FORMAT", f"Unknown format {fmt}")
        started = time.monotonic()
        try:
            result = conn.query(statement, fmt, params=parsed.params)
        except RuntimeError as exc:
            self._drop(session)  # a failed query's session is not trusted again
            raise QueryError.from_engine(exc) from exc
        body = bytes(result.bytes())
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": "0",
            "written_bytes": "0",
            "result_bytes": str(len(body)),
            "elapsed_ns": str(int((time.monotonic() - started) * 1e9)),
        }
        return _Result(body=body, fmt=fmt, timezone=session.timezone, summary=summary)

    def _drop(self, session: _Session) -> None:
        sessions = self._local.__dict__.get("sessions", {})
        for key in [k for k, v in sessions.items() if v is session]:
            del sessions[key]
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)
        session.conn.close()


def _configure_session(conn: Any, settings: Mapping[str, str], database: str) -> str | None:
    """Apply a request's settings, the cost limits and then ``readonly = 1`` to the
    session of ``conn``; its session time zone if the request set one."""
    limits = dict(_LIMITS)
    statements: list[str] = []
    for name, value in settings.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise QueryError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
        if name == "readonly":
            if value.strip() != "1":
                raise QueryError(164, "READONLY",
                                 "Cannot modify 'readonly' setting in readonly mode")
            continue
        if name in limits:
            try:
                asked = int(value)
            except ValueError:
                raise QueryError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                                 f"Cannot parse {value!r} as the value of {name}") from None
            if 0 < asked < limits[name]:
                limits[name] = asked
            continue
        statements.append(f"SET {name} = {_literal(value)}")
    statements.append("SET " + ", ".join(f"{name} = {value}" for name, value in limits.items()))
    statements.append("SET readonly = 1")
    try:
        if database:
            conn.query(f"USE {_identifier(database)}", "TabSeparated")
        for statement in statements:
            conn.query(statement, "TabSeparated")
    except RuntimeError as exc:
        raise QueryError.from_engine(exc) from exc
    return settings.get("session_timezone") or None


def _checked_statement(conn: Any, sql: str) -> tuple[str, str | None]:
    """The one statement ``sql`` holds, as ClickHouse's parser prints it, and its
    FORMAT; QueryError for several statements or one that is not a read."""
    try:
        printed = conn.query(
            "SELECT formatQuerySingleLine({q:String})", "RawBLOB", params={"q": _escaped(sql)}
        )
    except RuntimeError as exc:
        raise QueryError.from_engine(exc) from exc
    statement = bytes(printed.bytes()).decode("utf-8")
    words = [(m.group(1) or "", m.group(0)) for m in _TOKEN_RE.finditer(statement)]
    first = words[0][1].upper() if words else ""
    if first != "(" and first not in _ALLOWED_STATEMENTS:
        raise _readonly_refusal()
    fmt: str | None = None
    for i, (word, _) in enumerate(words):
        if word == "INTO" and i + 1 < len(words) and words[i + 1][0] == "OUTFILE":
            raise QueryError(344, "INTO_OUTFILE_NOT_ALLOWED", "INTO OUTFILE is not allowed")
        # The printer puts FORMAT last, before SETTINGS only; a column named FORMAT
        # is followed by something else.
        if word == "FORMAT" and i + 1 < len(words) and words[i + 1][0]:
            after = words[i + 2][0] if i + 2 < len(words) else None
            if after is None or after == "SETTINGS":
                fmt = words[i + 1][0]
    return statement, fmt


def _escaped(value: str) -> str:
    """``value`` as a query parameter of type String (escaped as in TabSeparated)."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        .replace("\r", "\\r").replace("\0", "\\0")
    )


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _error_response(exc: QueryError, headers: dict[str, str]) -> web.Response:
    status = _HTTP_STATUS_BY_NAME.get(exc.name, 500)
    headers = {**headers, "X-ClickHouse-Exception-Code": str(exc.code)}
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    with contextlib.suppress(KeyError):
        del headers["X-ClickHouse-Format"]
    return web.Response(status=status, text=exc.body(), headers=headers,
                        content_type="text/plain", charset="utf-8")
