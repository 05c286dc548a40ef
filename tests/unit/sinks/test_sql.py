"""Shared SQL: identifier allow-list, bound parameters, column types, Arrow mapping."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from projections.message_log import CSV_EXPORT_COLUMNS, MESSAGE_LOG_COLUMNS
from sinks.arrow_rows import arrow_type, batch_rows, plan_table
from sinks.migrations import load_migrations
from sinks.plan import InsertPlan, plan_message_log_insert
from sinks.sql import (
    MESSAGE_LOG_TYPES,
    column_types,
    export_query,
    insert_deduplication_token,
    message_log_count_query,
    message_log_page_query,
    qualified,
    string_literal,
    validate_identifier,
)
from tests.unit.sinks.test_plan import T0, row


@pytest.mark.parametrize("name", ["campaign_analytics", "_x", "A1", "a" * 63])
def test_identifier_allowed(name: str) -> None:
    assert validate_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1abc", "a-b", "a.b", "a b", "x; DROP TABLE t", "`x`", "a" * 64, "é", "x\n"],
)
def test_identifier_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        validate_identifier(name)


def test_qualified_validates_both_parts() -> None:
    assert qualified("db", "message_log") == "db.message_log"
    with pytest.raises(ValueError):
        qualified("db", "t; DROP")


def test_string_literal_escapes_quote_and_backslash() -> None:
    assert string_literal("it's a \\ test") == "'it\\'s a \\\\ test'"


def test_values_are_bound_never_spliced() -> None:
    hostile = "x' OR 1=1 --"
    sql, params = message_log_page_query("db", hostile, "sent", 10, hostile)
    assert hostile not in sql
    assert params == {"campaign_id": hostile, "status": "sent", "after_message_id": hostile}
    assert "{campaign_id:String}" in sql and "{after_message_id:String}" in sql
    for build in (message_log_count_query("db", hostile, True), export_query("db", hostile)):
        assert hostile not in build[0]


def test_page_query_reads_latest_state_in_key_order() -> None:
    sql, params = message_log_page_query("db", "c", None, 100, None)
    assert " FROM db.message_log FINAL WHERE campaign_id = {campaign_id:String} " in sql
    assert sql.endswith("ORDER BY message_id LIMIT 100")
    assert params == {"campaign_id": "c"}


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_page_query_bounds_the_limit(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        message_log_page_query("db", "c", None, limit, None)


def test_page_query_filters_by_country_and_failure_category_bound() -> None:
    sql, params = message_log_page_query("db", "c", "unknown", 10, None, "DE", "temporary")
    assert "status = {status:String} AND country = {country:String} AND " \
        "failure_category = {failure_category:String}" in sql
    assert params == {"campaign_id": "c", "status": "unknown", "country": "DE",
                      "failure_category": "temporary"}


@pytest.mark.parametrize(("country", "category"), [
    ("de", None), ("DEU", None), ("' OR 1=1", None), (None, "Temporary"), (None, "x")])
def test_page_query_rejects_a_bad_country_or_category(country: str | None,
                                                      category: str | None) -> None:
    with pytest.raises(ValueError, match="country|category"):
        message_log_page_query("db", "c", None, 10, None, country, category)


def test_page_query_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match="status"):
        message_log_page_query("db", "c", "DELIVERED", 10, None)


def test_count_query_final_or_raw() -> None:
    assert "message_log FINAL WHERE" in message_log_count_query("db", "c", True)[0]
    assert "FINAL" not in message_log_count_query("db", "c", False)[0]


def test_export_query_selects_the_csv_columns_with_epoch_ms() -> None:
    sql, _ = export_query("db", "c")
    selected = sql.split(" FROM ")[0].removeprefix("SELECT ").split(", ")
    assert len(selected) == len(CSV_EXPORT_COLUMNS)
    assert selected[-4:] == ["human_click_count", "country", "failure_category", "segments"]
    assert "toUnixTimestamp64Milli(sent_at) AS sent_at_ms" in selected
    assert "toUnixTimestamp64Milli(delivered_at) AS delivered_at_ms" in selected


def test_types_cover_exactly_the_row_columns() -> None:
    assert tuple(MESSAGE_LOG_TYPES) == MESSAGE_LOG_COLUMNS


def test_types_match_the_migration() -> None:
    sql = next(m for m in load_migrations() if m.name == "message_log").sql
    body = sql[sql.index("message_log\n(") : sql.index("\n)\nENGINE")]
    declared = dict(re.findall(r"^    (\w+)\s+(.+?),?$", body, re.MULTILINE))
    later = "".join(m.sql for m in load_migrations())
    declared.update(re.findall(  # columns added by later migrations
        r"ALTER TABLE {database}\.message_log\s+ADD COLUMN IF NOT EXISTS (\w+) (.+?) DEFAULT ",
        later))
    assert "retry_of" in declared
    assert declared == MESSAGE_LOG_TYPES


def test_column_types_refuses_unknown_table_or_column() -> None:
    with pytest.raises(ValueError, match="table"):
        column_types("nope", ["a"])
    with pytest.raises(ValueError, match="columns"):
        column_types("message_log", ["message_id", "nope"])


def test_a_plan_without_token_gets_a_fresh_one_each_time() -> None:
    plan = plan_message_log_insert([row()], None)
    first, second = insert_deduplication_token(plan), insert_deduplication_token(plan)
    assert first != second
    assert InsertPlan("message_log", plan.columns, [], first).dedup_token == first  # SQL-safe
    assert insert_deduplication_token(plan_message_log_insert([row()], "t-0-1-2")) == "t-0-1-2"


@pytest.mark.parametrize(
    ("clickhouse", "arrow"),
    [
        ("String", pa.string()),
        ("LowCardinality(Nullable(String))", pa.string()),
        ("UInt32", pa.uint32()),
        ("UInt64", pa.uint64()),
        ("DateTime64(3, 'UTC')", pa.timestamp("ms", tz="UTC")),
        ("Nullable(DateTime64(3, 'UTC'))", pa.timestamp("ms", tz="UTC")),
    ],
)
def test_arrow_type(clickhouse: str, arrow: object) -> None:
    assert arrow_type(clickhouse) == arrow


def test_arrow_type_unknown() -> None:
    with pytest.raises(ValueError, match="Arrow"):
        arrow_type("Decimal(10, 2)")


def test_plan_table_round_trips_values() -> None:
    rows = [row("m-1"), row("m-2", contact_name=None, delivered_at=None, variant=None)]
    plan = plan_message_log_insert(rows, None)
    table = plan_table(plan)
    assert table.column_names == list(MESSAGE_LOG_COLUMNS)
    assert table.schema.field("sent_at").type == pa.timestamp("ms", tz="UTC")
    assert table.column("sent_at").cast(pa.int64()).to_pylist() == [T0, T0]
    assert table.column("delivered_at").null_count == 1
    back = list(batch_rows(table.drop_columns([c for c in table.column_names if "_at" in c])))
    assert back[1][MESSAGE_LOG_COLUMNS.index("contact_name")] is None


def test_plan_table_of_an_empty_plan() -> None:
    assert plan_table(plan_message_log_insert([], None)).num_rows == 0
