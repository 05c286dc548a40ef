"""Migration 0006 on a message log created before it: the table gets ``retry_of``,
its rows read as first attempts, and a retry's row keeps the message it retries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sinks.chdb_store import ChdbStore, _ChdbMigrationTarget
from sinks.migrations import apply_migrations, load_migrations
from sinks.plan import InsertPlan, plan_message_log_insert
from tests.contract.test_store_contract import make_row


def test_an_existing_message_log_gets_retry_of(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb", "ca_upgrade")
    before = [m for m in load_migrations() if m.version < 6]
    with store._connection() as conn:  # test scaffolding: the database as 0005 left it
        assert apply_migrations(_ChdbMigrationTarget(conn), "ca_upgrade", before) == [
            m.version for m in before]
    old = dataclasses.replace(make_row("camp-up", 1), retry_of=None, human_click_count=0,
                              country="ZZ", failure_category=None)  # what 0007 gives it
    plan = plan_message_log_insert([old], None)
    cut = plan.columns.index("retry_of")  # the columns after it came later still
    # written by a sink of that time: no retry_of column in its insert
    store.insert(InsertPlan(plan.table, plan.columns[:cut], [plan.rows[0][:cut]], None))

    assert store.migrate() == [6, 7]
    retry = dataclasses.replace(make_row("camp-up", 2), retry_of=old.message_id)
    store.insert(plan_message_log_insert([retry], None))
    assert store.message_log("camp-up", limit=10) == [old, retry]
    assert store.migrate() == []
    store.close()


def test_an_existing_message_log_gets_the_issue_22_columns(tmp_path: Path) -> None:
    """Migration 0007: human_click_count, country and failure_category on a table 0001-0006
    made; its rows read 0, 'ZZ' and NULL, and a new row keeps its own values."""
    store = ChdbStore(tmp_path / "chdb", "ca_upgrade7")
    before = [m for m in load_migrations() if m.version < 7]
    with store._connection() as conn:  # test scaffolding: the database as 0006 left it
        apply_migrations(_ChdbMigrationTarget(conn), "ca_upgrade7", before)
    added = ("human_click_count", "country", "failure_category")
    old = dataclasses.replace(make_row("camp-up7", 1), human_click_count=0, country="ZZ",
                              failure_category=None)
    plan = plan_message_log_insert([old], None)
    assert plan.columns[-3:] == added
    # written by a sink of that time: none of the three columns in its insert
    store.insert(InsertPlan(plan.table, plan.columns[:-3], [plan.rows[0][:-3]], None))

    assert store.migrate() == [7]
    new = dataclasses.replace(make_row("camp-up7", 2, status="unknown"), human_click_count=1,
                              country="DE", failure_category=None)
    failed = dataclasses.replace(make_row("camp-up7", 3, status="failed"), country="GB",
                                 failure_category="temporary")
    store.insert(plan_message_log_insert([new, failed], None))
    assert store.message_log("camp-up7", limit=10) == [old, new, failed]
    assert store.message_log("camp-up7", status="unknown") == [new]
    assert store.message_log("camp-up7", country="ZZ") == [old]
    assert store.migrate() == []
    store.close()
