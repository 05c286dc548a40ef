"""The migration runner against a fake engine: order, idempotence, checksums."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sinks.errors import StoreConfigurationError
from sinks.migrations import Migration, apply_migrations, load_migrations


class FakeTarget:
    """Records statements; remembers recorded migrations like schema_migrations would."""

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.recorded: list[tuple[int, str]] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)
        if sql.startswith("INSERT INTO") and "schema_migrations" in sql:
            values = sql.split("VALUES (")[1].rstrip(")").split(", ")
            self.recorded.append((int(values[0]), values[2].strip("'")))

    def select_rows(self, sql: str) -> list[tuple[Any, ...]]:
        assert "schema_migrations" in sql
        return list(dict(self.recorded).items())


def test_the_shipped_migrations_load_in_order() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].version == 1 and migrations[0].name == "message_log"


def test_statements_render_the_database_and_split_on_semicolons() -> None:
    migration = Migration(
        7,
        "two",
        "-- header\nCREATE TABLE {database}.a (x UInt8);\n\n"
        "-- only a comment;\nCREATE TABLE {database}.b (y UInt8);\n",
    )
    assert migration.statements("db1") == [
        "-- header\nCREATE TABLE db1.a (x UInt8)",
        "CREATE TABLE db1.b (y UInt8)",
    ]


def test_message_log_migration_has_the_engine_settings() -> None:
    (statement,) = load_migrations()[0].statements("ca")
    assert statement.startswith("-- The message log")
    assert "CREATE TABLE IF NOT EXISTS ca.message_log" in statement
    assert "ENGINE = ReplacingMergeTree(version)" in statement
    assert "ORDER BY (campaign_id, message_id)" in statement
    assert "non_replicated_deduplication_window = 1000" in statement


@pytest.mark.parametrize("database", ["x; DROP DATABASE y", "a.b", ""])
def test_database_name_is_allow_listed(database: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        apply_migrations(FakeTarget(), database)


def test_apply_then_apply_again_does_nothing() -> None:
    target = FakeTarget()
    assert apply_migrations(target, "ca") == [m.version for m in load_migrations()]
    statements = len(target.executed)
    assert apply_migrations(target, "ca") == []
    assert all("message_log" not in s for s in target.executed[statements:])


def test_only_missing_migrations_are_applied() -> None:
    first = Migration(1, "a", "CREATE TABLE IF NOT EXISTS {database}.a (x UInt8);")
    second = Migration(2, "b", "CREATE TABLE IF NOT EXISTS {database}.b (x UInt8);")
    target = FakeTarget()
    assert apply_migrations(target, "ca", [first]) == [1]
    assert apply_migrations(target, "ca", [first, second]) == [2]
    assert sum("ca.a " in s for s in target.executed) == 1


def test_an_edited_applied_migration_is_refused() -> None:
    target = FakeTarget()
    apply_migrations(target, "ca", [Migration(1, "a", "CREATE TABLE {database}.a (x UInt8);")])
    edited = Migration(1, "a", "CREATE TABLE {database}.a (x UInt16);")
    with pytest.raises(StoreConfigurationError, match="changed after"):
        apply_migrations(target, "ca", [edited])


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql"])
def test_badly_named_files_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(StoreConfigurationError, match="NNNN_name"):
        load_migrations(tmp_path)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;")
    with pytest.raises(StoreConfigurationError, match="two migrations"):
        load_migrations(tmp_path)


@pytest.mark.parametrize(("version", "name"), [(0, "a"), (10_000, "a"), (1, "x'); DROP"), (1, "")])
def test_a_migration_needs_a_sane_version_and_name(version: int, name: str) -> None:
    with pytest.raises(StoreConfigurationError, match="bad migration"):
        Migration(version, name, "SELECT 1;")
