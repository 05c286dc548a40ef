"""Receipts that never come, end to end on the real broker (domain.md 3b): the input
stops, and the worker later moves the messages whose receipts never came from pending
to unknown by itself, each once; a late receipt settles one. Every stage is checked
against the recount as of the instant of the check, the summary and the ClickHouse
log's statuses alike.

How the clock is set for the test: a small ``CA_RECEIPT_TIMEOUT`` (2 s) and sends
stamped ahead of the wall clock (the input rules allow up to 7 days): every deadline
falls after the publish, so whatever is unknown was judged by the worker's own
sweep; messages stamped an hour ahead stay pending throughout.
"""

from __future__ import annotations

import csv
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from streams.cli.demo import generate_campaign
from tests.integration.conftest import Deployment
from tests.oracle import expected_log, recount
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CAMPAIGN = "camp-lost"
TIMEOUT_MS = 2_000
AHEAD_MS = 40_000  # the sends' stamps ahead of the clock: the publish ends long before
KEYS = ("sent", "delivered", "failed", "pending", "unknown")


def _events(now_ms: int) -> list[dict[str, Any]]:
    """A campaign whose receipts are lost for a third of its messages, half of it sent
    AHEAD_MS from now (deadlines soon after), half an hour later (still pending)."""
    soon = generate_campaign(CAMPAIGN, 60, seed=5, start_ms=now_ms + AHEAD_MS,
                             duplicate_rate=0.1)
    later = [e | {"message_id": e["message_id"] + "-later", "event_id": e["event_id"] + "-l",
                  "occurred_at": e["occurred_at"] + 3_600_000}
             for e in generate_campaign(CAMPAIGN, 30, seed=6, start_ms=now_ms + AHEAD_MS,
                                        duplicate_rate=0.0)]
    events = soon + later
    rng = random.Random(7)
    lost = {e["message_id"] for e in events if e["type"] == "sent" and rng.random() < 0.35}
    return [e for e in events if not (e["type"] == "delivery" and e["message_id"] in lost)]


def _pick(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in KEYS} | {
        "variants": {v: {k: m[k] for k in KEYS} for v, m in summary["variants"].items()}}


def _publish(deployment: Deployment, tmp_path: Path, events: list[dict[str, Any]],
             name: str) -> None:
    path = tmp_path / name
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = deployment.cli("publish", str(path))
    assert f"published {len(events)} event(s); rejected 0 line(s)" in result.stdout


def _wait_as_of(deployment: Deployment, events: list[dict[str, Any]], what: str, after: int,
                campaign: str = CAMPAIGN, timeout: float = 120) -> tuple[dict[str, Any], int]:
    """Until the summary, read at ``after`` or later, equals the recount as of the instant
    it was read (a quiet moment: no deadline between the sweep's last tick and then);
    the summary's counts and that instant."""
    last: dict[str, Any] = {}

    def matching() -> int | None:
        nonlocal last
        summary = deployment.summary(campaign)
        as_of = int(time.time() * 1000)
        if summary is None or as_of < after:
            return None
        want = recount(events, as_of=as_of, receipt_timeout_ms=TIMEOUT_MS)[campaign]
        last = {"got": _pick(summary), "want": _pick(want)}
        return as_of if last["got"] == last["want"] else None

    as_of = wait_until(matching, what, timeout, 1, explain=lambda: str(last))
    assert as_of is not None
    return last["got"], as_of


def _export_statuses(deployment: Deployment, tmp_path: Path) -> dict[str, int]:
    out = tmp_path / "export.csv"
    deployment.cli("export", CAMPAIGN, "--output", str(out), check=False)
    if not out.exists():
        return {}
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return _count(r["status"] for r in rows)


def _count(statuses: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for status in statuses:
        out[status] = out.get(status, 0) + 1
    return out


def test_the_worker_moves_lost_receipts_to_unknown_by_itself(deployment: Deployment,
                                                             tmp_path: Path):
    deployment.env["CA_RECEIPT_TIMEOUT"] = f"{TIMEOUT_MS}ms"
    worker = deployment.worker().start()
    worker.wait_ready()
    events = _events(int(time.time() * 1000))
    deadlines = sorted(e["occurred_at"] + TIMEOUT_MS for e in events if e["type"] == "sent")
    last_soon = max(d for d in deadlines if d < deadlines[0] + 600_000)  # not the later half
    _publish(deployment, tmp_path, events, "events.jsonl")
    published = int(time.time() * 1000)
    # nothing could time out while the input was coming: the input has stopped since
    assert recount(events, as_of=published, receipt_timeout_ms=TIMEOUT_MS)[CAMPAIGN][
        "unknown"] == 0, "the publish took longer than AHEAD_MS: raise it"
    before = recount(events)[CAMPAIGN]
    deployment.wait_for_summary(CAMPAIGN, _pick(before), keys=_pick)  # all pending so far

    got, as_of = _wait_as_of(deployment, events, "the lost receipts to turn unknown", last_soon)
    assert got["unknown"] > 0 and got["pending"] > 0
    assert got["unknown"] + got["pending"] == before["pending"]  # moved, none lost or doubled
    log = expected_log(events, CAMPAIGN, as_of=as_of, receipt_timeout_ms=TIMEOUT_MS)
    want_statuses = _count(r["status"] for r in log.values())
    assert want_statuses["unknown"] == got["unknown"]
    # what an SRE sees of it: a timeout record sent for each, the rest still watched
    assert worker.counter("campaign_analytics_receipt_timeouts_total") == got["unknown"]
    wait_until(lambda: worker.counter("campaign_analytics_receipt_deadlines") == got["pending"],
               "the watched deadlines to be the pending messages", 30, 0.5,
               explain=lambda: str(worker.counter("campaign_analytics_receipt_deadlines")))
    seen: dict[str, int] = {}

    def log_caught_up() -> bool:
        nonlocal seen
        seen = _export_statuses(deployment, tmp_path)
        return seen == want_statuses

    wait_until(log_caught_up, "the message log to show the unknown statuses", 120, 1,
               explain=lambda: f"exported {seen}, want {want_statuses}")

    # a late receipt settles one unknown message; the rest stay as they are
    unknown_id = sorted(m for m, r in log.items() if r["status"] == "unknown")[0]
    sent_at = next(e["occurred_at"] for e in events
                   if e["type"] == "sent" and e["message_id"] == unknown_id)
    late = {"type": "delivery", "event_id": f"{unknown_id}-late", "message_id": unknown_id,
            "occurred_at": sent_at + TIMEOUT_MS + 500, "status": "DELIVERED"}
    _publish(deployment, tmp_path, [late, late], "late.jsonl")
    events = [*events, late, late]
    settled, _ = _wait_as_of(deployment, events, "the late receipt to settle its message",
                             as_of)
    assert settled["unknown"] == got["unknown"] - 1
    assert settled["delivered"] == got["delivered"] + 1


@pytest.mark.chaos
def test_sweeps_through_kills_and_rebalances_count_each_message_once(deployment: Deployment,
                                                                     tmp_path: Path):
    """Deadlines spread over ~25 s while workers are SIGKILLed, restarted and joined:
    sweeps run twice (a killed worker's unfolded timeout records, the successor's
    rebuilt index) and on two workers around each rebalance; the versions make them
    count once: the summary equals the recount as of a quiet moment after them all."""
    deployment.env["CA_RECEIPT_TIMEOUT"] = f"{TIMEOUT_MS}ms"
    first, second = deployment.worker().start(), deployment.worker().start()
    first.wait_ready()
    second.wait_ready()
    start = int(time.time() * 1000) + AHEAD_MS
    events = generate_campaign("lost-chaos", 500, seed=9, start_ms=start, duplicate_rate=0.1)
    rng = random.Random(10)
    lost = {e["message_id"] for e in events if e["type"] == "sent" and rng.random() < 0.5}
    events = [e for e in events if not (e["type"] == "delivery" and e["message_id"] in lost)]
    _publish(deployment, tmp_path, events, "events.jsonl")
    deadlines = sorted(e["occurred_at"] + TIMEOUT_MS for e in events if e["type"] == "sent")

    def at(ms: int) -> None:  # sleep until an instant of the deadlines' span
        time.sleep(max(0.0, (ms - time.time() * 1000) / 1000))

    span = deadlines[-1] - deadlines[0]
    at(deadlines[0] + span // 5)
    second.stop(signal.SIGKILL)  # mid-sweep: its partitions go to the first worker
    at(deadlines[0] + 2 * span // 5)
    restarted = deployment.worker(second.web_port).start()  # joins again: a rebalance
    at(deadlines[0] + 3 * span // 5)
    first.stop(signal.SIGKILL)
    third = deployment.worker().start()
    restarted.wait_ready()
    third.wait_ready()
    got, as_of = _wait_as_of(deployment, events, "every lost receipt to turn unknown once",
                             deadlines[-1], campaign="lost-chaos", timeout=300)
    accepted = {e["message_id"] for e in events
                if e["type"] == "sent" and e["outcome"] == "ACCEPTED"}
    # every deadline has passed: nothing pending, and at least every lost receipt unknown
    # (with the demo's messages that never had a terminal receipt)
    assert got["pending"] == 0 and got["unknown"] >= len(lost & accepted) > 0
    print(f"receipt-timeout chaos: {len(events)} events, {got['unknown']} unknown, "
          f"2 SIGKILLs, 3 workers: exact as of {as_of}")
