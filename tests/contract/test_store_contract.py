"""The ClickHouseStore contract, run against every backend (see conftest.py)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from projections.message_log import MessageLogRow
from sinks.errors import SinkError
from sinks.migrations import load_migrations
from sinks.plan import dedup_token, plan_message_log_insert
from sinks.sql import EXPORT_QUERY_COLUMNS
from sinks.store import ClickHouseStore
from tests.contract.conftest import StoreFactory

T0 = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z


def new_campaign() -> str:
    return f"camp-{uuid.uuid4().hex[:10]}"


def make_row(campaign_id: str, i: int, *, status: str = "sent", version: int = 1) -> MessageLogRow:
    delivered = status == "delivered"
    return MessageLogRow(
        message_id=f"msg-{i:05d}",
        campaign_id=campaign_id,
        variant="AB"[i % 2] if i % 3 else None,
        contact_id=f"contact-{i}",
        contact_name=None if i % 7 == 0 else f'Zoë "{i}", O\'Neil\n😀',
        phone=f"+1555{i:07d}",
        status=status,
        sent_at=T0 + i,
        delivered_at=T0 + 60_000 + i if delivered else None,
        failed_at=None,
        error_code=None if delivered or i % 5 else "30007",
        error_description=None if delivered or i % 5 else 'Carrier, "filtered"',
        carrier="carrier-x" if i % 2 else None,
        segments=1 + i % 3,
        click_count=i % 4,
        first_click_at=T0 + 1_000 if i % 4 else None,
        last_click_at=T0 + 2_000 if i % 4 else None,
        reply_count=i % 2,
        last_reply_at=T0 + 3_000 if i % 2 else None,
        updated_at=T0 + 10_000 + version,
        version=version,
        retry_of=f"msg-{i - 1:05d}" if i % 6 == 5 else None,
        human_click_count=(i % 4) // 2,  # of click_count
        country=("US", "DE", "GB", "ZZ")[i % 4],
        failure_category=(None, "temporary", "invalid_number")[i % 3]
        if status != "delivered" else None,
    )


def rows_for(campaign_id: str, n: int) -> list[MessageLogRow]:
    return [make_row(campaign_id, i) for i in range(n)]


def all_messages(store: ClickHouseStore, campaign_id: str, **filters: str) -> list[MessageLogRow]:
    return store.message_log(campaign_id, limit=10_000, **filters)


def test_migrate_twice_is_idempotent(make_store: StoreFactory) -> None:
    store = make_store()
    first = store.migrate()
    assert store.migrate() == []
    assert store.migrate() == []
    campaign = new_campaign()
    store.insert(plan_message_log_insert(rows_for(campaign, 3), None))
    assert store.count_message_log(campaign) == 3
    # every version on a fresh database; [] when a shared server database is reused
    assert first in ([m.version for m in load_migrations()], [])


def test_insert_then_read_back_every_field(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    rows = rows_for(campaign, 30)
    assert store.insert(plan_message_log_insert(rows, "t-0-0-29")) == 30
    assert all_messages(store, campaign) == rows
    assert {r.retry_of for r in rows} > {None}  # retries among them
    assert {r.human_click_count for r in rows} == {0, 1}  # issue 22's columns vary
    assert {r.country for r in rows} == {"US", "DE", "GB", "ZZ"}
    assert {r.failure_category for r in rows} == {None, "temporary", "invalid_number"}
    assert store.count_message_log(campaign) == 30


def test_empty_plan_is_a_no_op(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    assert store.insert(plan_message_log_insert([], "t-0-0-0")) == 0
    assert store.count_message_log(campaign, final=False) == 0


def test_newer_version_replaces_older(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    store.insert(plan_message_log_insert(rows_for(campaign, 10), "t-0-0-9"))
    newer = [make_row(campaign, i, status="delivered", version=2) for i in (2, 5)]
    store.insert(plan_message_log_insert(newer, "t-0-10-11"))

    latest = {row.message_id: row for row in all_messages(store, campaign)}
    assert len(latest) == 10
    assert latest["msg-00002"] == newer[0]
    assert latest["msg-00005"] == newer[1]
    assert latest["msg-00003"].status == "sent"
    assert store.count_message_log(campaign) == 10
    assert store.count_message_log(campaign, final=False) in (10, 12)  # 10 once merged


def test_older_version_arriving_later_does_not_win(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    newer = make_row(campaign, 1, status="delivered", version=3)
    store.insert(plan_message_log_insert([newer], "t-0-5-5"))
    store.insert(plan_message_log_insert([make_row(campaign, 1, version=1)], "t-1-0-0"))
    assert all_messages(store, campaign) == [newer]


def test_same_token_twice_writes_once(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    plan = plan_message_log_insert(rows_for(campaign, 50), dedup_token("sms.msg", 3, 100, 149))
    store.insert(plan)
    raw_after_first = store.count_message_log(campaign, final=False)
    store.insert(plan)  # the replay after a crash before the offset commit

    assert raw_after_first == 50
    assert store.count_message_log(campaign, final=False) == raw_after_first
    messages = all_messages(store, campaign)
    assert store.count_message_log(campaign) == len({r.message_id for r in messages}) == 50


def test_same_token_drops_a_rebuilt_batch_whose_rows_differ(store: ClickHouseStore) -> None:
    """The token, not the block's content, identifies the insert: a batch rebuilt
    after a crash in another order (so another content hash) is still dropped."""
    campaign = new_campaign()
    rows = rows_for(campaign, 50)
    token = dedup_token("sms.msg", 0, 0, 49)
    store.insert(plan_message_log_insert(rows, token))
    store.insert(plan_message_log_insert(rows[::-1], token))
    assert store.count_message_log(campaign, final=False) == 50


def test_negative_control_without_token_the_replay_is_written_twice(
    store: ClickHouseStore,
) -> None:
    """Proves the tests above can fail: without a token the duplicate is stored."""
    campaign = new_campaign()
    plan = plan_message_log_insert(rows_for(campaign, 50), None)
    store.insert(plan)
    store.insert(plan)

    assert store.count_message_log(campaign, final=False) == 100
    assert store.count_message_log(campaign) == 50  # FINAL still shows one row per message


def test_a_different_token_is_a_different_insert(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    rows = rows_for(campaign, 20)
    store.insert(plan_message_log_insert(rows, "t-0-0-19"))
    store.insert(plan_message_log_insert(rows, "t-0-20-39"))
    assert store.count_message_log(campaign, final=False) == 40


def test_keyset_pagination_visits_every_message_once(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    rows = rows_for(campaign, 25)
    store.insert(plan_message_log_insert(list(reversed(rows)), None))

    pages: list[list[MessageLogRow]] = []
    after: str | None = None
    while True:
        page = store.message_log(campaign, limit=10, after_message_id=after)
        if not page:
            break
        pages.append(page)
        after = page[-1].message_id

    assert [len(p) for p in pages] == [10, 10, 5]
    assert [r for p in pages for r in p] == sorted(rows, key=lambda r: r.message_id)


def test_status_filter_sees_only_the_latest_status(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    store.insert(plan_message_log_insert(rows_for(campaign, 12), "t-0-0-11"))
    delivered = [make_row(campaign, i, status="delivered", version=2) for i in (0, 4, 8, 11)]
    store.insert(plan_message_log_insert(delivered, "t-0-12-15"))

    assert all_messages(store, campaign, status="delivered") == delivered
    sent_ids = [r.message_id for r in all_messages(store, campaign, status="sent")]
    assert sent_ids == [f"msg-{i:05d}" for i in range(12) if i not in (0, 4, 8, 11)]
    first = store.message_log(campaign, status="delivered", limit=3)
    rest = store.message_log(
        campaign, status="delivered", limit=3, after_message_id=first[-1].message_id
    )
    assert first + rest == delivered
    assert store.message_log(campaign, status="failed") == []


def test_unknown_status_country_and_category_filters(store: ClickHouseStore) -> None:
    """domain.md 3b: a message whose receipt never came reads status 'unknown'; the
    log filters by it, by country and by failure category, alone or together, on the
    latest state (a late receipt takes a message out of 'unknown')."""
    campaign = new_campaign()
    rows = [make_row(campaign, i, status="unknown" if i % 2 else "failed") for i in range(24)]
    store.insert(plan_message_log_insert(rows, "t-0-0-23"))
    settled = make_row(campaign, 1, status="delivered", version=2)  # a late receipt
    store.insert(plan_message_log_insert([settled], "t-0-24-24"))
    latest = [settled if r.message_id == settled.message_id else r for r in rows]

    def want(**f: str) -> list[MessageLogRow]:
        return [r for r in latest if all(getattr(r, k) == v for k, v in f.items())]

    for filters in ({"status": "unknown"}, {"country": "DE"}, {"country": "ZZ"},
                    {"failure_category": "temporary"}, {"status": "failed", "country": "US"},
                    {"status": "unknown", "country": "DE", "failure_category": "temporary"}):
        got = all_messages(store, campaign, **filters)
        assert got == want(**filters), filters
        assert got  # each filter finds something, so the equality says something
    assert settled not in all_messages(store, campaign, status="unknown")
    assert all_messages(store, campaign, country="FR") == []
    # Negative control: the filters are not ignored.
    assert all_messages(store, campaign, country="DE") != latest


def test_campaigns_do_not_see_each_other(store: ClickHouseStore) -> None:
    one, other = new_campaign(), new_campaign()
    store.insert(plan_message_log_insert(rows_for(one, 3) + rows_for(other, 4), None))
    assert store.count_message_log(one) == 3
    assert {r.campaign_id for r in all_messages(store, other)} == {other}
    assert len(list(store.iter_export_rows(one))) == 3


def test_export_streams_the_latest_rows_in_message_order(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    rows = rows_for(campaign, 40)
    store.insert(plan_message_log_insert(rows[::-1], "t-0-0-39"))
    updated = make_row(campaign, 7, status="delivered", version=2)
    store.insert(plan_message_log_insert([updated], "t-0-40-40"))
    latest = [updated if r.message_id == updated.message_id else r for r in rows]

    exported = list(store.iter_export_rows(campaign))

    expected = [tuple(getattr(r, c) for c in EXPORT_QUERY_COLUMNS) for r in latest]
    assert exported == expected
    assert list(store.iter_export_rows(new_campaign())) == []


def test_export_of_many_rows_crosses_batches(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    rows = [
        dataclasses.replace(make_row(campaign, i), message_id=f"m{i:06d}") for i in range(25_000)
    ]
    store.insert(plan_message_log_insert(rows, "t-0-0-24999"))

    count, last = 0, ""
    for exported in store.iter_export_rows(campaign):
        count += 1
        assert exported[4] == rows[count - 1].sent_at  # order by message id = insertion order
        last = str(exported[1])
    assert count == 25_000
    assert last == rows[-1].phone


def test_an_abandoned_export_releases_its_connection(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    store.insert(plan_message_log_insert(rows_for(campaign, 5), None))
    stream = store.iter_export_rows(campaign)
    next(stream)
    stream.close()
    assert store.count_message_log(campaign) == 5


def test_bad_arguments_raise_value_error(store: ClickHouseStore) -> None:
    campaign = new_campaign()
    with pytest.raises(ValueError, match="limit"):
        store.message_log(campaign, limit=0)
    with pytest.raises(ValueError, match="status"):
        store.message_log(campaign, status="DELIVERED")


@pytest.mark.parametrize("segments", [-1, 2**40, "two"])
def test_a_value_the_column_cannot_hold_is_a_sink_error(
    store: ClickHouseStore, segments: object
) -> None:
    campaign = new_campaign()
    bad = dataclasses.replace(make_row(campaign, 1), segments=segments)  # type: ignore[arg-type]
    with pytest.raises(SinkError) as caught:
        store.insert(plan_message_log_insert([bad], None))
    assert caught.value.retry_after is None  # retrying the same rows cannot help


def test_an_unmigrated_database_is_a_sink_error(make_store: StoreFactory) -> None:
    store = make_store(database=f"ca_missing_{uuid.uuid4().hex[:8]}")
    with pytest.raises(SinkError) as caught:
        store.count_message_log(new_campaign())
    assert caught.value.__cause__ is not None


def test_close_is_idempotent(make_store: StoreFactory) -> None:
    store = make_store()
    store.migrate()
    store.close()
    store.close()
