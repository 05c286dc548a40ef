"""``ClickHouseServerStore``: the message log on a ClickHouse server (clickhouse-connect).

The client is created on first use, so a worker starts while the server is
down and its sink backs off (``SinkError.retry_after``) until it is up.
clickhouse-connect never retries an insert by itself: the sink does, with the
same plan and so the same ``insert_deduplication_token``.

Error messages never contain the URL (it may carry a password) nor the password of
the ``Credentials`` (``sinks/credentials.py``) the store sends.

A reader's store (``read_only=True``, ``sinks.open_reader``) refuses ``migrate``
and ``insert``: the tables, their TTLs included, are the sinks' to change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from projections.errors import CampaignAnalyticsError
from projections.message_log import MessageLogRow
from sinks.credentials import Credentials
from sinks.errors import RETRY_AFTER_SECONDS, SinkError, retry_after_for
from sinks.migrations import apply_migrations
from sinks.plan import InsertPlan
from sinks.reads import SqlReads
from sinks.retention import Retention, apply_retention
from sinks.sql import (
    column_types,
    export_query,
    insert_deduplication_token,
    message_log_count_query,
    message_log_page_query,
    message_log_row,
    validate_identifier,
)


class ReadOnlyStoreError(CampaignAnalyticsError):
    """A reader's store was asked to change the tables (a bug in its caller)."""


class ClickHouseServerStore(SqlReads):
    """The ``ClickHouseStore`` on a ClickHouse server reached over HTTP(S).

    ``read_only``: refuse ``migrate`` and ``insert``. ``where``: how error messages
    name the server (default: the URL's scheme, host and port).
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        connect_timeout: float = 10.0,
        send_receive_timeout: float = 300.0,
        retention: Retention | None = None,
        read_only: bool = False,
        where: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._credentials = credentials or Credentials()
        self._retention = retention or Retention()
        self._url = url
        self._where = where or _redacted(url)
        self._read_only = read_only
        self._database = validate_identifier(database)
        self._connect_timeout = connect_timeout
        self._send_receive_timeout = send_receive_timeout
        self._client: Any = None
        self._mutex = threading.Lock()

    def _get_client(self) -> Any:
        with self._mutex:
            if self._client is None:
                http_options: dict[str, Any] = {
                    # No HTTP session: concurrent queries on one session are refused.
                    "autogenerate_session_id": False,
                    "connect_timeout": self._connect_timeout,
                    "send_receive_timeout": self._send_receive_timeout,
                }
                # clickhouse-connect's embedded backend (chdb://...) has no HTTP options.
                options = {} if self._url.startswith("chdb:") else {
                    **http_options, **self._credentials.client_options()}
                try:
                    self._client = clickhouse_connect.get_client(dsn=self._url, **options)
                except (ClickHouseError, OSError) as exc:
                    message = f"cannot connect to ClickHouse at {self._where}"
                    raise self._error(message, exc) from self._cause(exc)
            return self._client

    def _run(self, action: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except (ClickHouseError, OSError) as exc:
            raise self._error(f"ClickHouse {action} failed at {self._where}", exc) \
                from self._cause(exc)

    def _error(self, message: str, exc: BaseException) -> SinkError:
        """``_sink_error`` with the password taken out of the client's message."""
        error = _sink_error(message, exc)
        return SinkError(self._credentials.scrub(str(error)), error.retry_after)

    def _cause(self, exc: BaseException) -> BaseException | None:
        """``exc``, or None if its chain names the password (a logged traceback would)."""
        text = _chain_text(exc)
        return exc if self._credentials.scrub(text) == text else None

    # -- ClickHouseStore ---------------------------------------------------

    def _refuse_if_read_only(self, what: str) -> None:
        if self._read_only:
            raise ReadOnlyStoreError(f"a reader's store does not {what} ({self._where})")

    def migrate(self) -> list[int]:
        self._refuse_if_read_only("migrate")
        target = _ServerMigrationTarget(self._run, self._get_client)
        applied = apply_migrations(target, self._database)
        apply_retention(target, self._database, self._retention)
        return applied

    def insert(self, plan: InsertPlan) -> int:
        self._refuse_if_read_only("insert")
        if not plan.rows:
            return 0
        settings = {
            "insert_deduplication_token": insert_deduplication_token(plan),
            "optimize_on_insert": 0,  # see sinks.plan: one stored row per planned row
        }
        names = [validate_identifier(c) for c in plan.columns]
        types = column_types(plan.table, plan.columns)
        client = self._get_client()
        try:
            client.insert(
                table=validate_identifier(plan.table),
                data=plan.rows,
                column_names=names,
                database=self._database,
                column_type_names=types,
                settings=settings,
            )
        except (ClickHouseError, OSError) as exc:
            raise self._error(f"ClickHouse insert failed at {self._where}", exc) \
                from self._cause(exc)
        except (ValueError, TypeError, OverflowError) as exc:  # a value its column cannot hold
            raise SinkError(self._credentials.scrub(
                f"rows do not fit the columns of {plan.table}: {exc}")) from self._cause(exc)
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
        result = self._run("query", self._get_client().query, sql, parameters=params)
        return [message_log_row(values) for values in result.result_rows]

    def count_message_log(self, campaign_id: str, final: bool = True) -> int:
        sql, params = message_log_count_query(self._database, campaign_id, final)
        result = self._run("query", self._get_client().query, sql, parameters=params)
        return int(result.result_rows[0][0])

    def _select(self, sql: str, params: dict[str, object] | None = None) -> list[tuple[Any, ...]]:
        result = self._run("query", self._get_client().query, sql, parameters=params or {})
        return [tuple(values) for values in result.result_rows]

    def iter_export_rows(self, campaign_id: str) -> Generator[tuple[object, ...], None, None]:
        sql, params = export_query(self._database, campaign_id)
        client = self._get_client()
        stream = self._run("export", client.query_rows_stream, sql, parameters=params)
        try:
            with stream:
                for row in stream:
                    yield tuple(row)
        except (ClickHouseError, OSError) as exc:
            raise self._error(f"ClickHouse export failed at {self._where}", exc) \
                from self._cause(exc)

    def close(self) -> None:
        with self._mutex:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class _ServerMigrationTarget:
    """A store's ``_run`` and ``_get_client``, for its migrations."""

    def __init__(self, run: Callable[..., Any], client: Callable[[], Any]) -> None:
        self._run = run
        self._client = client

    def execute(self, sql: str) -> None:
        self._run("migration", self._client().command, sql)

    def select_rows(self, sql: str) -> list[tuple[Any, ...]]:
        result = self._run("migration", self._client().query, sql)
        return [tuple(row) for row in result.result_rows]


def _sink_error(message: str, exc: BaseException) -> SinkError:
    transient = isinstance(exc, OperationalError | OSError)
    retry_after = RETRY_AFTER_SECONDS if transient else retry_after_for(str(exc))
    return SinkError(f"{message}: {_reason(exc)}", retry_after)


def _chain_text(exc: BaseException) -> str:
    """The messages of ``exc`` and of its causes and contexts, joined."""
    texts: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(texts) < 20:
        texts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    return "\n".join(texts)


def _reason(exc: BaseException) -> str:
    """The socket error under clickhouse-connect's and urllib3's wrappers (``Connection
    refused``), whose own messages run to several hundred characters; else the first line."""
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(cause).__name__}: {cause.strerror}"
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:500]


def _redacted(url: str) -> str:
    """``scheme://host:port`` of ``url``: no user, password, path or query."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable ClickHouse URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"
