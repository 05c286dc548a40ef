"""The CLI's ``export`` reads through ``open_reader`` and changes nothing: run with the
CLI's own TTL settings (30 days; the audit events' default 90), it leaves the tables'
TTLs as the writer set them. Its negative control applies those settings the way
``export`` used to (``open_store(...).migrate()`` with its settings) and sees the
checker catch it.

Backends: the owner's SQL endpoint over chdb (the default deployment), the server
store's code on clickhouse-connect's ``chdb://`` backend, and a real server when
``CA_TEST_CLICKHOUSE_URL`` is set.
"""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks import open_store
from sinks.chdb_store import ChdbStore
from sinks.plan import plan_message_log_insert
from sinks.retention import TTL_COLUMNS, Retention, current_ttl_days
from sinks.server_store import ClickHouseServerStore
from sinks.sql import string_literal
from sinks.store import ClickHouseStore
from streams.cli import main
from streams.settings import load_settings
from tests.contract.conftest import SERVER_URL_ENV, ServedEndpoint
from tests.contract.test_store_contract import new_campaign, rows_for

NO_TTL = Retention(days=0, events_days=0)


class Target:
    """A writer that set no TTL, and the environment the CLI reads it with."""

    def __init__(self, writer: ClickHouseStore, database: str, env: dict[str, str]) -> None:
        self.writer, self.database, self.env = writer, database, env

    def ttls(self) -> dict[str, int | None]:
        sql = ("SELECT name, engine_full FROM system.tables"  # noqa: S608  # test constants
               f" WHERE database = {string_literal(self.database)}")
        rows = self.writer._select(sql)  # type: ignore[attr-defined]  # both stores have it
        return {str(name): current_ttl_days(str(engine)) for name, engine in rows
                if name in TTL_COLUMNS}


@pytest.fixture(params=["chdb-endpoint", "server-code-on-chdb", "server"])
def target(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    path, database = tmp_path / "chdb", "campaign_analytics"
    # the CLI's own retention: different from the writer's on every table
    env = {"CA_CLICKHOUSE_TTL_DAYS": "30", "CA_CHDB_PATH": str(path),
           "CA_DATA_DIR": str(tmp_path / "state")}
    monkeypatch.delenv("CA_CLICKHOUSE_EVENTS_TTL_DAYS", raising=False)  # its default: 90
    served = None
    writer: ClickHouseStore
    if request.param == "chdb-endpoint":
        writer = ChdbStore(path, database, hold_open=True, retention=NO_TTL)
        served = ServedEndpoint(path, database)
        env |= {"CA_CLICKHOUSE_URL": "", "CA_SQL_HOST": "127.0.0.1",
                "CA_SQL_PORT": str(served.port)}
    elif request.param == "server-code-on-chdb":
        env["CA_CLICKHOUSE_URL"] = f"chdb://{path}"
        writer = ClickHouseServerStore(env["CA_CLICKHOUSE_URL"], database, retention=NO_TTL)
    else:
        url = os.environ.get(SERVER_URL_ENV, "")
        if not url:
            pytest.skip(f"{SERVER_URL_ENV} is not set: no ClickHouse server")
        database = f"ca_ttl_{uuid.uuid4().hex[:12]}"
        env["CA_CLICKHOUSE_URL"] = url
        writer = ClickHouseServerStore(url, database, retention=NO_TTL)
    env["CA_CLICKHOUSE_DATABASE"] = database
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        writer.migrate()
        yield Target(writer, database, env)
    finally:
        if request.param == "server":
            writer._get_client().command(  # type: ignore[attr-defined]  # the server store
                f"DROP DATABASE IF EXISTS {database}")
        writer.close()
        if served is not None:
            served.stop()


def test_export_leaves_the_ttls_as_the_writer_set_them(target: Target, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    campaign = new_campaign()
    target.writer.insert(plan_message_log_insert(rows_for(campaign, 12), None))
    before = target.ttls()
    assert set(before) == set(TTL_COLUMNS) and set(before.values()) == {None}

    out = tmp_path / "out.csv"
    assert main(["export", campaign, "--output", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 12
    assert "exported 12 message(s)" in capsys.readouterr().err
    assert target.ttls() == before

    # Negative control: what export did before (migrate with the CLI's settings).
    cli = load_settings()
    store = open_store(cli.clickhouse_url, cli.clickhouse_database, cli.chdb_path,
                       retention=Retention(cli.clickhouse_ttl_days,
                                           cli.clickhouse_events_ttl_days))
    try:
        store.migrate()
    finally:
        store.close()
    changed = target.ttls()
    assert changed["events"] == 90 and changed["message_log"] == 30
