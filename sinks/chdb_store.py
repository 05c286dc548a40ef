"""``ChdbStore``: the message log in embedded ClickHouse (chdb), in a local directory.

chdb 4.4 lets one process at a time open a directory, and a process only one path
(``tests/contract/test_chdb_sharing.py`` pins both). So one process owns the directory
for its whole life: the sink process holding ``<chdb dir>.sink.lock`` opens it with
``hold_open=True`` (one connection, no per-call opening cost) and serves every other
reader through its read-only SQL endpoint (``sinks.sql_endpoint``, ``sinks.open_reader``).

``hold_open=False`` (the default) opens the directory per call, for tools and tests
that run while no owner does; a directory held by another live process is retried with
backoff for up to ``lock_timeout`` seconds, then ``SinkError`` with ``retry_after``.

Inserts go as ``FORMAT ArrowStream``, the fastest format tried. How chdb shares a
directory: docs/sinks.md; insert rates: docs/performance.md ("ClickHouse").
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import chdb
import pyarrow as pa

from projections.message_log import MessageLogRow
from sinks import arrow_rows
from sinks.errors import RETRY_AFTER_SECONDS, SinkError, StoreConfigurationError, retry_after_for
from sinks.migrations import apply_migrations
from sinks.plan import InsertPlan
from sinks.reads import SqlReads
from sinks.retention import Retention, apply_retention
from sinks.sql import (
    export_query,
    insert_deduplication_token,
    message_log_count_query,
    message_log_page_query,
    message_log_row,
    qualified,
    string_literal,
    validate_identifier,
)

_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 0.5
_UNEXPLAINED_FAILURES = 5


class ChdbStore(SqlReads):
    """The ``ClickHouseStore`` on an embedded chdb engine (see the module docstring)."""

    def __init__(
        self,
        path: Path | str,
        database: str,
        *,
        hold_open: bool = False,
        lock_timeout: float = 10.0,
        retention: Retention | None = None,
    ) -> None:
        self._retention = retention or Retention()
        self._path = Path(path).resolve()
        if "?" in str(self._path):
            raise StoreConfigurationError(f"chdb path must not contain '?': {self._path}")
        self._database = validate_identifier(database)
        self._hold_open = hold_open
        self._lock_timeout = lock_timeout
        self._held: Any = None
        self._mutex = threading.Lock()

    # -- connections -------------------------------------------------------

    def _open(self) -> Any:
        """A new connection, waiting (bounded) while another process holds the directory."""
        try:
            self._path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the state directory not writable (yet): a sink retries
            raise SinkError(f"cannot create the chdb directory {self._path}: "
                            f"{exc.strerror or exc}", RETRY_AFTER_SECONDS) from exc
        deadline = time.monotonic() + self._lock_timeout
        delay = _FIRST_BACKOFF
        unexplained = 0
        while True:
            try:
                return chdb.connect(str(self._path))
            except RuntimeError as exc:
                message = str(exc)
                holder = _foreign_holder(self._path)
                if holder is None:
                    # Not held by a live process now; it may have let go since our
                    # attempt failed, so retry a few times before calling it real.
                    unexplained += 1
                if "already initialized" in message or unexplained >= _UNEXPLAINED_FAILURES:
                    raise SinkError(
                        f"cannot open chdb at {self._path}: {message}", retry_after_for(message)
                    ) from exc
                if time.monotonic() + delay > deadline:
                    who = f"process {holder}" if holder else "another process"
                    raise SinkError(
                        f"chdb directory {self._path} is in use by {who}",
                        retry_after=RETRY_AFTER_SECONDS,
                    ) from exc
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if not self._hold_open:
            conn = self._open()
            try:
                yield conn
            finally:
                conn.close()
            return
        with self._mutex:
            if self._held is None:
                self._held = self._open()
            yield self._held

    def _query(self, sql: str, fmt: str, params: dict[str, object] | None = None) -> Any:
        with self._connection() as conn:
            return _query_on(conn, sql, fmt, params)

    # -- ClickHouseStore ---------------------------------------------------

    def migrate(self) -> list[int]:
        with self._connection() as conn:  # one opening for all statements
            target = _ChdbMigrationTarget(conn)
            applied = apply_migrations(target, self._database)
            apply_retention(target, self._database, self._retention)
            return applied

    def insert(self, plan: InsertPlan) -> int:
        if not plan.rows:
            return 0
        try:
            table = arrow_rows.plan_table(plan)
        except (pa.ArrowException, OverflowError) as exc:
            raise SinkError(f"rows do not fit the columns of {plan.table}: {exc}") from exc
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        payload = sink.getvalue().to_pybytes()
        token = string_literal(insert_deduplication_token(plan))
        columns = ", ".join(validate_identifier(c) for c in plan.columns)
        sql = (
            f"INSERT INTO {qualified(self._database, plan.table)} ({columns})"
            f" SETTINGS insert_deduplication_token = {token}, optimize_on_insert = 0"
        )
        with self._connection() as conn:
            try:
                with conn.send_insert(sql, "ArrowStream") as inserter:
                    inserter.append(payload)
                    inserter.finish()
            except RuntimeError as exc:
                raise SinkError(f"chdb insert failed: {exc}", retry_after_for(str(exc))) from exc
        return len(plan.rows)

    def message_log(
        self,
        campaign_id: str,
        status: str | None = None,
        limit: int = 100,
        after_message_id: str | None = None,
        country: str | None = None,
        failure_category: str | None = None,
    ) -> list[MessageLogRow]:
        sql, params = message_log_page_query(
            self._database, campaign_id, status, limit, after_message_id, country,
            failure_category)
        table = self._query(sql, "ArrowTable", params)
        return [message_log_row(values) for values in arrow_rows.batch_rows(table)]

    def count_message_log(self, campaign_id: str, final: bool = True) -> int:
        sql, params = message_log_count_query(self._database, campaign_id, final)
        return int(self._query(sql, "TabSeparated", params).bytes())

    def _select(self, sql: str, params: dict[str, object] | None = None) -> list[tuple[Any, ...]]:
        return list(arrow_rows.batch_rows(self._query(sql, "ArrowTable", params)))

    def iter_export_rows(self, campaign_id: str) -> Generator[tuple[object, ...], None, None]:
        sql, params = export_query(self._database, campaign_id)
        # Its own connection: a connection with an open stream answers nothing else.
        conn = self._open()
        try:
            stream = conn.send_query(sql, "Arrow", params=params)
            try:
                for batch in stream.record_batch(rows_per_batch=arrow_rows.EXPORT_BATCH_ROWS):
                    yield from arrow_rows.batch_rows(batch)
            finally:
                stream.close()
        except RuntimeError as exc:
            raise SinkError(f"chdb export failed: {exc}", retry_after_for(str(exc))) from exc
        finally:
            conn.close()

    def close(self) -> None:
        with self._mutex:
            held, self._held = self._held, None
        if held is not None:
            held.close()


def _query_on(conn: Any, sql: str, fmt: str, params: dict[str, object] | None = None) -> Any:
    try:
        return conn.query(sql, fmt, params=params or {})
    except RuntimeError as exc:
        raise SinkError(f"chdb query failed: {exc}", retry_after_for(str(exc))) from exc


class _ChdbMigrationTarget:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str) -> None:
        _query_on(self._conn, sql, "TabSeparated")

    def select_rows(self, sql: str) -> list[tuple[Any, ...]]:
        return list(arrow_rows.batch_rows(_query_on(self._conn, sql, "ArrowTable")))


def _foreign_holder(path: Path) -> int | None:
    """PID of another live process that holds the engine directory, if any."""
    try:
        text = (path / "status").read_text("utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "PID" and value.strip().isdigit():
            pid = int(value.strip())
            return pid if pid != os.getpid() and _alive(pid) else None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
