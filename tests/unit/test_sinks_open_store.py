"""open_store and open_reader pick the backend from the settings and connect to nothing
yet; a reader refuses to migrate or insert."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks import open_reader, open_store
from sinks.chdb_store import ChdbStore
from sinks.plan import plan_message_log_insert
from sinks.server_store import ClickHouseServerStore, ReadOnlyStoreError
from sinks.store import ClickHouseStore
from streams.settings import Settings


def test_no_url_means_embedded_chdb(tmp_path: Path) -> None:
    store = open_store(Settings(clickhouse_url="", chdb_path=tmp_path / "chdb"))
    assert isinstance(store, ChdbStore)
    assert isinstance(store, ClickHouseStore)
    assert not (tmp_path / "chdb").exists()  # nothing opened before the first call
    store.close()


def test_a_url_means_the_server() -> None:
    store = open_store(Settings(clickhouse_url="http://user:pw@localhost:8123"))
    assert isinstance(store, ClickHouseServerStore)
    assert isinstance(store, ClickHouseStore)
    store.close()


def test_the_database_name_is_allow_listed() -> None:
    with pytest.raises(ValueError, match="identifier"):
        open_store(Settings(clickhouse_url="http://localhost:8123", clickhouse_database="a;b"))
    with pytest.raises(ValueError, match="identifier"):
        open_store(Settings(clickhouse_database="a-b"))


def test_a_reader_on_the_embedded_engine_goes_to_the_owners_endpoint(tmp_path: Path) -> None:
    settings = Settings(clickhouse_url="", chdb_path=tmp_path / "chdb", sql_host="127.0.0.2",
                        sql_port=18124, clickhouse_database="analytics")
    reader = open_reader(settings)
    assert isinstance(reader, ClickHouseServerStore)
    assert (reader._url, reader._database) == ("http://127.0.0.2:18124", "analytics")
    assert "SQL endpoint" in reader._where
    v6 = open_reader(Settings(clickhouse_url="", sql_host="::1", sql_port=8124))
    assert isinstance(v6, ClickHouseServerStore) and v6._url == "http://[::1]:8124"
    assert not (tmp_path / "chdb").exists()
    with pytest.raises(ReadOnlyStoreError, match="migrate"):
        reader.migrate()


def test_a_reader_with_a_server_url_goes_to_the_server() -> None:
    reader = open_reader(Settings(clickhouse_url="http://user:pw@ch:8123"))
    assert isinstance(reader, ClickHouseServerStore)
    assert reader._url == "http://user:pw@ch:8123"
    assert reader._where == "http://ch:8123"  # no password in messages
    with pytest.raises(ReadOnlyStoreError, match="insert"):
        reader.insert(plan_message_log_insert([], None))


def test_negative_control_the_writers_store_is_not_read_only() -> None:
    store = open_store(Settings(clickhouse_url="http://ch:8123"))
    assert store.insert(plan_message_log_insert([], None)) == 0  # no refusal, nothing sent
