"""Replies (both orders), per-contact clicks and a contact's click events, ``as_of``,
raw events and SQL metrics, on every backend.

The metrics cross-check loads the messy demo campaign the way the sinks would
(latest message-log row per message, every event record into the event tables,
one insert per chunk of records) and compares the SQL recount with the oracle.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from projections.events import LinkClicked, ReplyReceived
from projections.message import MessageState, apply_event
from projections.message_log import message_log_row
from sinks.plan import (
    SourcedEvent,
    dedup_token,
    plan_event_inserts,
    plan_message_log_insert,
)
from sinks.queries import CampaignCounts, CampaignSqlMetrics, ClickRow
from sinks.store import ClickHouseStore
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import parse_json_line
from tests import oracle
from tests.contract.test_store_contract import T0, make_row, new_campaign, rows_for


def load(store: ClickHouseStore, events: list[dict[str, Any]], chunk: int = 97) -> None:
    """Insert ``events`` as the two sinks would: one record per event, in chunks."""
    decoded = [parse_json_line(json.dumps(e))[1] for e in events]
    states: dict[str, MessageState] = {}
    for event in decoded:
        states[event.message_id] = apply_event(
            states.get(event.message_id, MessageState(event.message_id)), event
        )
    rows = [r for s in states.values() if (r := message_log_row(s, updated_at=T0)) is not None]
    store.insert(plan_message_log_insert(rows, None))
    sourced = [SourcedEvent("sms.sent", 0, offset, event) for offset, event in enumerate(decoded)]
    for first in range(0, len(sourced), chunk):
        batch = sourced[first : first + chunk]
        token = dedup_token("events", 0, batch[0].offset, batch[-1].offset)
        for plan in plan_event_inserts(batch, token):
            store.insert(plan)


def expected_metrics(events: list[dict[str, Any]], campaign: str) -> CampaignSqlMetrics:
    summary = oracle.recount(events)[campaign]
    names = [f.name for f in dataclasses.fields(CampaignCounts)]

    def counts(values: dict[str, Any]) -> CampaignCounts:
        return CampaignCounts(**{n: values[n] for n in names})

    variants = {v: counts(values) for v, values in summary["variants"].items()}
    return CampaignSqlMetrics(campaign, counts(summary), variants)


def test_sql_metrics_equal_the_oracle_on_the_messy_scenario(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    events = generate_campaign(campaign, messages=400, seed=11)
    no_variant = generate_campaign(f"{campaign}-x", messages=40, seed=3, variants=())
    events += [dict(e, campaign_id=campaign) if e["type"] == "sent" else e for e in no_variant]
    load(store, events)

    metrics = store.campaign_metrics(campaign)

    assert metrics == expected_metrics(events, campaign)
    assert metrics is not None and metrics.totals.opt_outs > 0
    assert metrics.totals.unique_link_clicks < metrics.totals.link_clicks
    assert set(metrics.variants) == {"A", "B"}


def test_sql_metrics_of_an_unknown_campaign_are_none(store: ClickHouseStore) -> None:
    assert store.campaign_metrics(new_campaign()) is None


def test_a_replayed_batch_changes_no_count(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    events = generate_campaign(campaign, messages=60, seed=5)
    load(store, events)
    before = {t: store.row_counts(t) for t in ("events", "replies", "link_clicks")}
    load(store, events)  # the same chunks, the same tokens: all dropped

    assert {t: store.row_counts(t) for t in before} == before
    assert store.campaign_metrics(campaign) == expected_metrics(events, campaign)


def test_raw_events_keep_every_record_and_collapse_repeats(
    make_store: Any, backend: str
) -> None:
    store = make_store(database=f"ca_events_{new_campaign().replace('-', '_')}")
    store.migrate()
    events = generate_campaign(new_campaign(), messages=50, seed=9)  # ~10% repeated events
    load(store, events)

    counts = store.row_counts("events")
    distinct = len({e["event_id"] for e in events})
    assert counts.stored == counts.distinct_sources == len(events) > distinct
    assert counts.final == counts.distinct_keys == distinct


def reply(campaign_row_id: int, n: int, at: int, body: str = "Thanks") -> ReplyReceived:
    return ReplyReceived(
        event_id=f"r-{campaign_row_id}-{n}", message_id=f"msg-{campaign_row_id:05d}",
        occurred_at=at, contact_id=f"contact-{campaign_row_id}",
        phone=f"+1555{campaign_row_id:07d}", body=body,
    )


def click(row_id: int, n: int, at: int) -> LinkClicked:
    return LinkClicked(
        event_id=f"k-{row_id}-{n}", message_id=f"msg-{row_id:05d}", occurred_at=at,
        link_id=f"lnk-{row_id}", user_agent=None if n % 2 else "Mozilla/5.0",
    )


def insert_events(store: ClickHouseStore, events: list[Any], token: str | None) -> None:
    sourced = [SourcedEvent("sms.reply", 1, i, e) for i, e in enumerate(events)]
    for plan in plan_event_inserts(sourced, token):
        store.insert(plan)


def test_replies_of_a_campaign_in_time_order_with_keyset_pages(store: ClickHouseStore) -> None:
    campaign, other = new_campaign(), new_campaign()
    rows = [make_row(campaign, i) for i in range(6)]
    store.insert(plan_message_log_insert(rows, None))
    store.insert(plan_message_log_insert([dataclasses.replace(make_row(other, 9),
                                                              message_id="msg-other")], None))
    replies = [reply(i, n, T0 + 1000 * (5 - i) + n) for i in range(6) for n in range(2)]
    stray = dataclasses.replace(reply(9, 0, T0), message_id="msg-other")
    insert_events(store, [*replies, replies[0], stray], "r-0-0-13")  # a repeat, another campaign

    pages, after = [], None
    while page := store.replies(campaign, limit=5, after=after):
        pages.append(page)
        after = (page[-1].replied_at, page[-1].event_id)

    assert [len(p) for p in pages] == [5, 5, 2]
    got = [r for p in pages for r in p]
    assert [r.event_id for r in got] == [
        r.event_id for r in sorted(replies, key=lambda r: (r.occurred_at, r.event_id))
    ]
    first = got[-1]  # message 0 replied last
    assert (first.message_id, first.body, first.phone) == ("msg-00000", "Thanks", "+15550000000")
    assert first.contact_name == rows[0].contact_name and first.variant == rows[0].variant


def test_contact_clicks_first_last_and_count_over_a_contacts_messages(
    store: ClickHouseStore,
) -> None:
    campaign = new_campaign()
    rows = [make_row(campaign, i) for i in range(5)]
    rows[3] = dataclasses.replace(rows[3], contact_id="contact-1")  # contact-1 got two messages
    store.insert(plan_message_log_insert(rows, None))
    clicks = [click(1, 0, T0 + 50), click(1, 1, T0 + 10), click(3, 0, T0 + 99), click(4, 0, T0)]
    insert_events(store, [*clicks, clicks[0]], "k-0-0-4")

    got = store.contact_clicks(campaign)

    assert [(c.contact_id, c.clicks, c.first_click_at, c.last_click_at) for c in got] == [
        ("contact-1", 3, T0 + 10, T0 + 99),
        ("contact-4", 1, T0, T0),
    ]
    assert got[1].phone == rows[4].phone
    assert store.contact_clicks(campaign, limit=1, after_contact_id="contact-1") == got[1:]
    assert store.contact_clicks(new_campaign()) == []


def test_replies_page_newest_first_with_keyset_pages(store: ClickHouseStore) -> None:
    campaign, other = new_campaign(), new_campaign()
    rows = [make_row(campaign, i) for i in range(6)]
    store.insert(plan_message_log_insert(rows, None))
    store.insert(plan_message_log_insert([dataclasses.replace(make_row(other, 9),
                                                              message_id="msg-other")], None))
    # replies at one instant (a page boundary among them): event_id breaks the tie
    replies = [reply(i, n, T0 + 1000 * (i % 3)) for i in range(6) for n in range(2)]
    stray = dataclasses.replace(reply(9, 0, T0 + 99_999), message_id="msg-other")
    insert_events(store, [*replies, replies[3], stray], "r-1-0-13")

    pages, before = [], None
    for _ in range(10):  # bounded: a keyset that does not move would loop for ever
        if not (page := store.replies_page(campaign, limit=5, before=before)):
            break
        pages.append(page)
        before = (page[-1].replied_at, page[-1].event_id)

    assert [len(p) for p in pages] == [5, 5, 2]
    newest_first = sorted(replies, key=lambda r: (r.occurred_at, r.event_id), reverse=True)
    assert [r.event_id for p in pages for r in p] == [r.event_id for r in newest_first]
    assert store.replies_page(campaign, limit=100) == [r for p in pages for r in p]
    assert store.replies_page(new_campaign()) == []
    # the same rows as the oldest-first pages, reversed
    assert store.replies(campaign, limit=100)[::-1] == store.replies_page(campaign, limit=100)


def test_contact_click_events_oldest_first_over_the_contacts_messages(
    store: ClickHouseStore,
) -> None:
    campaign, other = new_campaign(), new_campaign()
    rows = [make_row(campaign, i) for i in range(5)]
    rows[3] = dataclasses.replace(rows[3], contact_id="contact-1")  # contact-1 got two messages
    store.insert(plan_message_log_insert(rows, None))
    # contact-1 in another campaign: its clicks there are not this campaign's
    store.insert(plan_message_log_insert([dataclasses.replace(
        make_row(other, 7), message_id="msg-else", contact_id="contact-1")], None))
    mine = [click(1, 0, T0 + 50), click(1, 1, T0 + 10), click(3, 0, T0 + 10), click(3, 1, T0)]
    others = [click(4, 0, T0), dataclasses.replace(click(7, 0, T0), message_id="msg-else")]
    insert_events(store, [*mine, *others, mine[0]], "k-1-0-6")  # and a repeat

    pages, after = [], None
    for _ in range(10):  # bounded, as above
        if not (page := store.contact_click_events(campaign, "contact-1", limit=2, after=after)):
            break
        pages.append(page)
        after = (page[-1].clicked_at, page[-1].event_id)

    assert [len(p) for p in pages] == [2, 2]  # the boundary falls between two at T0 + 10
    got = [c for p in pages for c in p]
    assert [(c.event_id, c.message_id, c.clicked_at) for c in got] == [
        ("k-3-1", "msg-00003", T0), ("k-1-1", "msg-00001", T0 + 10),
        ("k-3-0", "msg-00003", T0 + 10), ("k-1-0", "msg-00001", T0 + 50)]
    assert got[0] == ClickRow("k-3-1", "msg-00003", "lnk-3", T0, None)
    assert got[1].user_agent is None and got[2].user_agent == "Mozilla/5.0"
    assert store.contact_click_events(campaign, "contact-0") == []
    assert store.contact_click_events(other, "contact-1")[0].message_id == "msg-else"


def test_as_of_is_the_newest_update_written(store: ClickHouseStore) -> None:
    campaign, other = new_campaign(), new_campaign()
    assert store.as_of(campaign) is None
    store.insert(plan_message_log_insert(rows_for(campaign, 3), None))  # updated_at T0+10_001
    store.insert(plan_message_log_insert([make_row(other, 1, version=7)], None))

    assert store.as_of(campaign) == T0 + 10_001
    assert store.as_of(other) == T0 + 10_007
    newer = make_row(campaign, 2, status="delivered", version=5)
    store.insert(plan_message_log_insert([newer], None))
    assert store.as_of(campaign) == newer.updated_at == T0 + 10_005
    whole = store.as_of()
    assert whole is not None and whole >= T0 + 10_007  # (a shared server has other tests' rows)
    assert store.as_of(new_campaign()) is None


def test_row_counts_of_an_unknown_table_is_a_value_error(store: ClickHouseStore) -> None:
    with pytest.raises(ValueError, match="table"):
        store.row_counts("schema_migrations")


def test_stored_rows_are_each_tables_stored_count(make_store: Any, backend: str) -> None:
    """The cheap count behind ``campaign_analytics_clickhouse_rows`` (parts' metadata)
    equals ``count()`` of each table; empty tables are 0. Control: another database's
    rows are not counted."""
    store = make_store(database=f"ca_rows_{new_campaign().replace('-', '_')}")
    store.migrate()
    empty = store.stored_rows()
    assert empty == {"events": 0, "link_clicks": 0, "message_log": 0, "replies": 0}
    other = make_store(database=f"ca_rows_{new_campaign().replace('-', '_')}")
    other.migrate()
    load(other, generate_campaign(new_campaign(), messages=20, seed=4))
    assert store.stored_rows() == empty  # the control

    load(store, generate_campaign(new_campaign(), messages=60, seed=5))
    rows = store.stored_rows()
    assert rows == {t: store.row_counts(t).stored for t in empty}
    assert all(rows[t] > 0 for t in empty)
