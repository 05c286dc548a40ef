"""open_store picks the backend from the settings and connects to nothing yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks import open_store
from sinks.chdb_store import ChdbStore
from sinks.server_store import ClickHouseServerStore
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
