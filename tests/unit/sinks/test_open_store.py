"""open_store and open_reader pick the backend from their parameters and connect to
nothing yet; a reader refuses to migrate or insert."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks import Retention, open_reader, open_store
from sinks.chdb_store import ChdbStore
from sinks.plan import plan_message_log_insert
from sinks.server_store import ClickHouseServerStore, ReadOnlyStoreError
from sinks.store import ClickHouseStore

DB = "campaign_analytics"
UNUSED = Path("/nonexistent/chdb")  # a server store never opens a chdb directory


def writer_at(url: str, database: str = DB, chdb_path: Path = UNUSED) -> ClickHouseStore:
    return open_store(url, database, chdb_path, retention=Retention())


def reader_at(url: str, sql_host: str = "127.0.0.1", sql_port: int = 8124,
           database: str = DB) -> ClickHouseStore:
    return open_reader(url, database, sql_host=sql_host, sql_port=sql_port)


def test_no_url_means_embedded_chdb(tmp_path: Path) -> None:
    store = writer_at("", chdb_path=tmp_path / "chdb")
    assert isinstance(store, ChdbStore)
    assert isinstance(store, ClickHouseStore)
    assert not (tmp_path / "chdb").exists()  # nothing opened before the first call
    store.close()


def test_a_url_means_the_server() -> None:
    store = writer_at("http://user:pw@localhost:8123")
    assert isinstance(store, ClickHouseServerStore)
    assert isinstance(store, ClickHouseStore)
    store.close()


def test_the_database_name_is_allow_listed() -> None:
    with pytest.raises(ValueError, match="identifier"):
        writer_at("http://localhost:8123", database="a;b")
    with pytest.raises(ValueError, match="identifier"):
        writer_at("", database="a-b")


def test_a_reader_on_the_embedded_engine_goes_to_the_owners_endpoint() -> None:
    reader = reader_at("", sql_host="127.0.0.2", sql_port=18124, database="analytics")
    assert isinstance(reader, ClickHouseServerStore)
    assert (reader._url, reader._database) == ("http://127.0.0.2:18124", "analytics")
    assert "SQL endpoint" in reader._where
    v6 = reader_at("", sql_host="::1", sql_port=8124)
    assert isinstance(v6, ClickHouseServerStore) and v6._url == "http://[::1]:8124"
    with pytest.raises(ReadOnlyStoreError, match="migrate"):
        reader.migrate()


def test_a_reader_with_a_server_url_goes_to_the_server() -> None:
    reader = reader_at("http://user:pw@ch:8123")
    assert isinstance(reader, ClickHouseServerStore)
    assert reader._url == "http://user:pw@ch:8123"
    assert reader._where == "http://ch:8123"  # no password in messages
    with pytest.raises(ReadOnlyStoreError, match="insert"):
        reader.insert(plan_message_log_insert([], None))


def test_negative_control_the_writers_store_is_not_read_only() -> None:
    store = writer_at("http://ch:8123")
    assert store.insert(plan_message_log_insert([], None)) == 0  # no refusal, nothing sent
