"""Insert plans of the event tables, the read queries' SQL and the TTL statements:
pure, no engine."""

from __future__ import annotations

import json
import re

import pytest

from projections.events import (
    DeliveryStatus,
    LinkClicked,
    MessageSent,
    ReceiptReceived,
    ReplyReceived,
    SendOutcome,
)
from sinks import queries
from sinks.errors import StoreConfigurationError
from sinks.migrations import load_migrations
from sinks.plan import (
    EVENT_COLUMNS,
    LINK_CLICK_COLUMNS,
    REPLY_COLUMNS,
    SourcedEvent,
    event_payload,
    plan_event_inserts,
)
from sinks.retention import Retention, current_ttl_days, retention_statements
from sinks.sql import TABLE_TYPES

T0 = 1_714_564_800_123

SENT = MessageSent("e1", "m1", T0, "c1", "A", "k1", "Ann", "+15550000001", SendOutcome.ACCEPTED)
RECEIPT = ReceiptReceived("e2", "m1", T0 + 1, DeliveryStatus.DELIVERED, carrier="acme")
REPLY = ReplyReceived("e3", "m1", T0 + 2, "k1", "+15550000001", " STOP ")
CLICK = LinkClicked("e4", "m1", T0 + 3, "lnk-1", None)


def test_every_record_goes_to_events_and_replies_and_clicks_to_their_tables() -> None:
    sourced = [SourcedEvent("in", 2, 10 + i, e)
               for i, e in enumerate([SENT, RECEIPT, REPLY, CLICK])]
    sourced.append(SourcedEvent("in", 2, 14, REPLY))  # a repeated event is a record of its own

    events, replies, clicks = plan_event_inserts(sourced, "t-2-10-14")

    assert (events.table, events.columns) == ("events", EVENT_COLUMNS)
    assert [r[:4] + r[5:] for r in events.rows] == [
        ("e1", "m1", "sent", T0, "in", 2, 10), ("e2", "m1", "delivery", T0 + 1, "in", 2, 11),
        ("e3", "m1", "reply", T0 + 2, "in", 2, 12), ("e4", "m1", "click", T0 + 3, "in", 2, 13),
        ("e3", "m1", "reply", T0 + 2, "in", 2, 14),
    ]
    assert (replies.table, replies.columns) == ("replies", REPLY_COLUMNS)
    assert replies.rows == [("e3", "m1", "k1", "+15550000001", " STOP ", T0 + 2)] * 2
    assert (clicks.table, clicks.columns) == ("link_clicks", LINK_CLICK_COLUMNS)
    assert clicks.rows == [("e4", "m1", "lnk-1", T0 + 3, None)]
    assert {p.dedup_token for p in (events, replies, clicks)} == {"t-2-10-14"}


def test_tables_without_rows_get_no_plan() -> None:
    (only,) = plan_event_inserts([SourcedEvent("in", 0, 0, SENT)], None)
    assert only.table == "events" and only.dedup_token is None
    assert plan_event_inserts([], "t-0-0-0") == []


def test_payload_is_the_events_fields_as_json() -> None:
    payload = json.loads(event_payload(SENT))
    assert payload["type"] == "sent" and payload["outcome"] == "ACCEPTED"
    assert payload["phone"] == "+15550000001" and payload["segments"] == 1
    assert json.loads(event_payload(CLICK))["user_agent"] is None


@pytest.mark.parametrize("table", ["replies", "link_clicks", "events"])
def test_types_match_the_migrations(table: str) -> None:
    sql = "".join(m.sql for m in load_migrations())
    body = sql[sql.index(f".{table}\n(") : sql.index("\n)\nENGINE", sql.index(f".{table}\n("))]
    declared = dict(re.findall(r"^    (\w+)\s+(.+?),?$", body, re.MULTILINE))
    declared.update(re.findall(  # columns added by later migrations
        rf"ALTER TABLE {{database}}\.{table}\s+ADD COLUMN IF NOT EXISTS (\w+) (.+?) DEFAULT ", sql))
    declared.pop("inserted_at")
    assert declared == TABLE_TYPES[table]


def test_read_queries_bind_values_and_bound_the_page() -> None:
    hostile = "x' OR 1=1 --"
    for sql, params in (
        queries.replies_query("db", hostile, 10, (T0, hostile)),
        queries.contact_clicks_query("db", hostile, 10, hostile),
        queries.campaign_metrics_query("db", hostile),
    ):
        assert hostile not in sql
        assert params["campaign_id"] == hostile
        assert "FINAL" in sql and "{campaign_id:String}" in sql
    for limit in (0, 10_001):
        with pytest.raises(ValueError, match="limit"):
            queries.replies_query("db", "c", limit, None)
        with pytest.raises(ValueError, match="limit"):
            queries.contact_clicks_query("db", "c", limit, None)


def test_metric_rows_become_totals_and_named_variants() -> None:
    rows = [(None, 1, 5, 4, 1, 0, 2, 1, 1, 3, 2), ("A", 0, 3, 2, 1, 0, 2, 1, 1, 3, 2),
            ("B", 0, 2, 2, 0, 0, 0, 0, 0, 0, 0), (None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    metrics = queries.campaign_metrics("c", rows)
    assert metrics is not None
    assert metrics.totals == queries.CampaignCounts(5, 4, 1, 0, 2, 1, 1, 3, 2)
    assert list(metrics.variants) == ["A", "B"]
    assert queries.campaign_metrics("c", []) is None
    assert queries.campaign_metrics("c", [(None, 1, *[0] * 9)]) is None


def test_retention_alters_only_tables_whose_ttl_differs() -> None:
    engines = {
        "message_log": "ReplacingMergeTree(version) ORDER BY (campaign_id, message_id) SETTINGS x",
        "events": "ReplacingMergeTree ORDER BY (message_id, event_id)"
        " TTL toDateTime(occurred_at) + toIntervalDay(90) SETTINGS y",
        "replies": "ReplacingMergeTree ORDER BY (message_id, event_id)"
        " TTL toDateTime(replied_at) + toIntervalDay(7) SETTINGS y",
    }
    assert current_ttl_days(engines["events"]) == 90
    assert current_ttl_days(engines["message_log"]) is None
    assert retention_statements("db", engines, Retention(days=0, events_days=90)) == [
        "ALTER TABLE db.replies REMOVE TTL"
    ]
    assert retention_statements("db", engines, Retention(days=7, events_days=30)) == [
        "ALTER TABLE db.message_log MODIFY TTL toDateTime(sent_at) + INTERVAL 7 DAY"
        " SETTINGS materialize_ttl_after_modify = 0",
        "ALTER TABLE db.events MODIFY TTL toDateTime(occurred_at) + INTERVAL 30 DAY"
        " SETTINGS materialize_ttl_after_modify = 0",
    ]
    with pytest.raises(StoreConfigurationError):
        Retention(days=-1)


def test_payload_text_is_what_the_json_module_wrote() -> None:
    """The payload's encoder changed (json -> orjson); rows written before and after
    must read the same, byte for byte, for every kind of event (non-ASCII text too)."""
    from projections.events import EVENT_TYPES, INPUT_FIELDS
    from streams.cli.demo import generate_campaign
    from streams.codecs.input_avro import parse_json_line

    events = generate_campaign("c-é", 60, seed=3)
    events[0] = events[0] | {"contact_name": "Zoë ✓"}
    kinds: set[str] = set()
    for line in events:
        _, event, _ = parse_json_line(json.dumps(line))
        # the input fields: what is judged at decoding (DERIVED_FIELDS) was never written
        fields = {name: getattr(event, name) for name in INPUT_FIELDS[type(event)]}
        fields["type"] = EVENT_TYPES[type(event)]
        kinds.add(fields["type"])
        before = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        assert event_payload(event) == before
    assert kinds == set(EVENT_TYPES.values())
