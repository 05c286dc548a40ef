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
    old = dataclasses.replace(make_row("camp-up", 1), retry_of=None)
    plan = plan_message_log_insert([old], None)
    # written by a sink of that time: no retry_of column in its insert
    store.insert(InsertPlan(plan.table, plan.columns[:-1], [plan.rows[0][:-1]], None))

    assert store.migrate() == [6]
    retry = dataclasses.replace(make_row("camp-up", 2), retry_of=old.message_id)
    store.insert(plan_message_log_insert([retry], None))
    assert store.message_log("camp-up", limit=10) == [old, retry]
    assert store.migrate() == []
    store.close()
