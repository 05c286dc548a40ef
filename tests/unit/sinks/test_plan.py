"""Insert plans, dedup tokens and the CSV export: pure, no engine."""

from __future__ import annotations

import csv
import dataclasses
import io
from decimal import Decimal

import pytest

from projections.costs import PriceTable
from projections.message_log import CSV_EXPORT_COLUMNS, MESSAGE_LOG_COLUMNS, MessageLogRow
from sinks.export import format_timestamp, write_csv
from sinks.plan import InsertPlan, dedup_token, plan_message_log_insert
from sinks.sql import EXPORT_QUERY_COLUMNS

T0 = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z


def row(message_id: str = "m-1", **changes: object) -> MessageLogRow:
    base = MessageLogRow(
        message_id=message_id,
        campaign_id="c-1",
        variant="A",
        contact_id="k-1",
        contact_name="Ann",
        phone="+15550000001",
        status="delivered",
        sent_at=T0,
        delivered_at=T0 + 1_500,
        failed_at=None,
        error_code=None,
        error_description=None,
        carrier="acme",
        segments=2,
        click_count=1,
        first_click_at=T0 + 9_000,
        last_click_at=T0 + 9_000,
        reply_count=0,
        last_reply_at=None,
        updated_at=T0 + 9_000,
        version=4,
        human_click_count=1,
        country="US",
        failure_category=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- plan ------------------------------------------------------------------


def test_plan_names_table_columns_and_token() -> None:
    plan = plan_message_log_insert([row()], "sms.sent-0-10-20")
    assert plan.table == "message_log"
    assert plan.columns == MESSAGE_LOG_COLUMNS
    assert plan.dedup_token == "sms.sent-0-10-20"  # noqa: S105  # a dedup token, not a secret


def test_plan_rows_are_tuples_in_column_order() -> None:
    rows = [row("m-1"), row("m-2", contact_name=None, delivered_at=None)]
    plan = plan_message_log_insert(rows, None)
    assert plan.rows == [dataclasses.astuple(r) for r in rows]
    assert all(type(values) is tuple for values in plan.rows)
    assert plan.rows[1][plan.columns.index("contact_name")] is None


def test_plan_is_deterministic_and_frozen() -> None:
    rows = [row(f"m-{i}") for i in range(5)]
    assert plan_message_log_insert(rows, "t-0-0-4") == plan_message_log_insert(rows, "t-0-0-4")
    plan = plan_message_log_insert(rows, "t-0-0-4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.dedup_token = "other"  # type: ignore[misc]  # noqa: S105  # not a secret


def test_plan_keeps_row_order_and_duplicates() -> None:
    """Picking the latest version is the projection's job; the plan writes what it is given."""
    rows = [row("m-2"), row("m-1"), row("m-2", version=5)]
    assert [values[0] for values in plan_message_log_insert(rows, None).rows] == [
        "m-2",
        "m-1",
        "m-2",
    ]


def test_empty_plan() -> None:
    plan = plan_message_log_insert([], None)
    assert plan.rows == []
    assert plan.columns == MESSAGE_LOG_COLUMNS


@pytest.mark.parametrize("token", ["it's", 'a"b', "a b", "a\\b", "", "x" * 8193, "é"])
def test_plan_rejects_tokens_unsafe_in_sql(token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        InsertPlan("message_log", MESSAGE_LOG_COLUMNS, [], token)


def test_plan_accepts_a_composite_token_of_several_partitions() -> None:
    token = "|".join(dedup_token("sms.msg", p, 10 * p, 10 * p + 9) for p in range(4))
    assert plan_message_log_insert([row()], token).dedup_token == token


# -- dedup token -----------------------------------------------------------


def test_dedup_token_format() -> None:
    assert dedup_token("sms.message-log", 3, 100, 149) == "sms.message-log-3-100-149"


def test_dedup_token_is_deterministic_and_distinct_per_batch() -> None:
    assert dedup_token("t", 0, 0, 9) == dedup_token("t", 0, 0, 9)
    tokens = {
        dedup_token("t", 0, 0, 9),
        dedup_token("t", 1, 0, 9),
        dedup_token("t", 0, 0, 10),
        dedup_token("t", 0, 1, 9),
        dedup_token("u", 0, 0, 9),
    }
    assert len(tokens) == 5


def test_dedup_token_reads_unambiguously_from_the_right() -> None:
    # "a-1" partition 2 and "a" partition 1 must not collide
    assert dedup_token("a-1", 2, 3, 4) != dedup_token("a", 1, 2, 3)
    topic, partition, first, last = dedup_token("a-1-x", 2, 3, 4).rsplit("-", 3)
    assert (topic, partition, first, last) == ("a-1-x", "2", "3", "4")


def test_dedup_token_single_offset_batch() -> None:
    assert dedup_token("t", 0, 7, 7) == "t-0-7-7"


@pytest.mark.parametrize(
    ("topic", "partition", "first", "last"),
    [("", 0, 0, 0), ("t", -1, 0, 0), ("t", 0, -1, 0), ("t", 0, 5, 4), ("bad topic", 0, 0, 0)],
)
def test_dedup_token_rejects_impossible_batches(
    topic: str, partition: int, first: int, last: int
) -> None:
    with pytest.raises(ValueError):
        dedup_token(topic, partition, first, last)


# -- CSV export ------------------------------------------------------------


def export_tuple(r: MessageLogRow) -> tuple[object, ...]:
    """A row as the store's export query gives it (segments where the CSV has cost)."""
    return tuple(getattr(r, c) for c in EXPORT_QUERY_COLUMNS)


def export(rows: list[tuple[object, ...]], prices: PriceTable | None = None) -> tuple[str, int]:
    out = io.StringIO(newline="")
    written = write_csv(rows, out, prices)
    return out.getvalue(), written


def test_csv_header_only_for_no_rows() -> None:
    text, written = export([])
    assert written == 0
    assert text == ",".join(CSV_EXPORT_COLUMNS) + "\r\n"


def test_csv_plain_row() -> None:
    text, written = export([export_tuple(row())])
    assert written == 1
    assert text.split("\r\n")[1] == (
        "Ann,+15550000001,A,delivered,2024-05-01T12:00:00.123Z,2024-05-01T12:00:01.623Z,,"
        ",1,US,,"  # issue 22's columns after the first eight; no prices: no cost
    )
    assert text.endswith("\r\n")


@pytest.mark.parametrize(
    "name",
    [
        "Doe, Jane",
        'Jane "JJ" Doe',
        "two\nlines",
        "cr\r\nlf",
        "😀 Zoë Ångström 山田",
        '",\n"',
        " leading and trailing ",
        "=SUM(A1:A2)",
    ],
)
def test_csv_round_trips_awkward_names(name: str) -> None:
    r = row(contact_name=name, error_description=f"carrier said: {name}")
    text, _ = export([export_tuple(r)])
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == list(CSV_EXPORT_COLUMNS)
    assert parsed[1][0] == name
    assert parsed[1][7] == f"carrier said: {name}"
    assert len(parsed) == 2


def test_csv_quotes_only_when_needed_and_doubles_quotes() -> None:
    text, _ = export([export_tuple(row(contact_name='say "hi", bye'))])
    assert text.split("\r\n")[1].startswith('"say ""hi"", bye",+15550000001,')


def test_csv_nulls_are_empty_cells() -> None:
    r = row(variant=None, contact_name=None, delivered_at=None, error_code=None)
    text, _ = export([export_tuple(r)])
    assert text.split("\r\n")[1] == ",+15550000001,,delivered,2024-05-01T12:00:00.123Z,,,,1,US,,"


def test_csv_empty_string_and_null_both_empty() -> None:
    text, _ = export([export_tuple(row(contact_name=""))])
    assert text.split("\r\n")[1].startswith(",+15550000001,")


def test_csv_new_columns_follow_the_first_eight_in_the_contracts_order() -> None:
    assert CSV_EXPORT_COLUMNS[:8] == ("contact_name", "phone", "variant", "status", "sent_at",
                                      "delivered_at", "error_code", "error_description")
    assert CSV_EXPORT_COLUMNS[8:] == ("human_click_count", "country", "failure_category",
                                      "cost")
    assert (*CSV_EXPORT_COLUMNS[:-1], "segments") == EXPORT_QUERY_COLUMNS


PRICES = PriceTable(currency="EUR", default=Decimal("0.05"),
                    by_country={"US": Decimal("0.0079"), "DE": Decimal("0.00001")})


@pytest.mark.parametrize(("changes", "cost"), [
    ({}, "0.0158"),  # 2 segments x US 0.0079
    ({"country": "FR", "segments": 3}, "0.15"),  # not listed: the default price
    ({"country": "ZZ", "segments": 1}, "0.05"),  # placed nowhere: the default too
    ({"country": "DE", "segments": 1}, "0.00001"),  # plain decimals, never 1e-05
    ({"status": "unknown"}, "0.0158"),  # accepted, receipt lost: it was paid for
    ({"status": "failed", "failure_category": "temporary"}, "0.0158"),
    ({"status": "rejected", "failure_category": "invalid_number"}, ""),  # not accepted
])
def test_csv_cost_is_segments_times_the_countrys_price_of_accepted_messages(
        changes: dict[str, object], cost: str) -> None:
    r = row(**changes)
    text, _ = export([export_tuple(r)], PRICES)
    parsed = list(csv.reader(io.StringIO(text, newline="")))[1]
    got = dict(zip(CSV_EXPORT_COLUMNS, parsed, strict=True))
    assert got["cost"] == cost
    assert (got["status"], got["country"], got["failure_category"]) == (
        r.status, r.country, r.failure_category or "")
    # Negative control: the same row without prices has no cost at all.
    assert list(csv.reader(io.StringIO(export([export_tuple(r)])[0], newline="")))[1][-1] == ""


def test_csv_counts_rows_of_a_generator() -> None:
    rows = (export_tuple(row(f"m-{i}")) for i in range(1000))
    text, written = export(rows)  # type: ignore[arg-type]
    assert written == 1000
    assert text.count("\r\n") == 1001


def test_csv_rejects_a_row_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="cells"):
        export([("only", "three", "cells")])


def test_csv_rejects_a_timestamp_that_is_not_epoch_ms() -> None:
    bad = list(export_tuple(row()))
    bad[CSV_EXPORT_COLUMNS.index("sent_at")] = "2024-05-01"
    with pytest.raises(TypeError, match="sent_at"):
        export([tuple(bad)])


@pytest.mark.parametrize(
    ("epoch_ms", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (T0, "2024-05-01T12:00:00.123Z"),
        (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
        (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ],
)
def test_format_timestamp_is_exact_utc_with_millis(epoch_ms: int, expected: str) -> None:
    assert format_timestamp(epoch_ms) == expected
