"""ClickHouse (embedded chdb) benchmark: sink throughput, read latency, export memory.

    .venv/bin/python -m benchmarks.sink_bench --rows 1000000
    .venv/bin/python -m benchmarks.sink_bench --rows 10000000   # long: ~10x the time

Prints its figures; not part of the tests. What it measures, in a fresh directory:

1. **sink rows/s**: the sinks' own code path without Kafka: encoded records ->
   ``plan_message_updates`` / ``plan_message_events`` (decode + plan) -> one store
   opening per round of 4 partition batches of ``--batch`` rows -> inserts with
   dedup tokens (``--sink-rows`` message updates; about as many events).
2. **bulk load** (Python row generation included) of ``--rows`` message-log rows in one campaign
   (the worst case for per-campaign reads), plus replies on ~5% and clicks on
   ~10% of the messages, through ``ChdbStore.insert``.
3. **query latency** (median of ``--repeat``, engine held open, after one warm-up):
   a message-log page (first page, a page by status, a keyset page deep in the
   campaign), the SQL summary (``campaign_metrics``), a replies page and a
   per-contact clicks page.
4. **CSV export** of the whole campaign to a file, in a child process (its own
   peak RSS, ``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from projections.events import LinkClicked, ReplyReceived
from projections.message_log import MESSAGE_LOG_COLUMNS, MessageLogRow
from sinks.chdb_store import ChdbStore
from sinks.plan import (
    MESSAGE_LOG_TABLE,
    InsertPlan,
    SourcedEvent,
    dedup_token,
    plan_event_inserts,
)
from streams.cli.demo import generate_campaign
from streams.codecs import state as serde
from streams.codecs.input_avro import parse_json_line
from streams.sink_runtime.runner import plan_message_events, plan_message_updates

DATABASE = "campaign_analytics"
SINK_DATABASE = "sink_bench"
CAMPAIGN = "bench-campaign"
T0 = 1_714_564_800_000
STATUSES = ("delivered",) * 8 + ("sent", "failed", "undelivered", "rejected")

# Peak RSS from VmHWM: ru_maxrss of an exec'd child still counts the pages it
# shared with the forking parent (Linux carries the pre-exec peak over).
EXPORT_CHILD = """
import sys, time
from sinks.chdb_store import ChdbStore
from sinks.export import write_csv

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

before = hwm_kb()
store = ChdbStore(sys.argv[1], "campaign_analytics")
start = time.perf_counter()
with open(sys.argv[3], "w", newline="", encoding="utf-8") as out:
    rows = write_csv(store.iter_export_rows(sys.argv[2]), out)
seconds = time.perf_counter() - start
print(rows, seconds, hwm_kb(), before)
"""


def message_row(i: int, rng: random.Random) -> tuple[object, ...]:
    status = STATUSES[i % len(STATUSES)]
    sent_at = T0 + i * 10
    row = MessageLogRow(
        message_id=f"m{i:09d}", campaign_id=CAMPAIGN, variant="AB"[i % 2],
        contact_id=f"contact-{i % 900_000}", contact_name=f"Contact {i}, \"Jr.\"",
        phone=f"+1555{i % 10_000_000:07d}", status=status, sent_at=sent_at,
        delivered_at=sent_at + rng.randrange(500, 20_000) if status == "delivered" else None,
        failed_at=sent_at + 900 if status in ("failed", "undelivered") else None,
        error_code="30003" if status in ("failed", "undelivered") else None,
        error_description="Unreachable destination handset" if status == "failed" else None,
        carrier="att", segments=1, click_count=0, first_click_at=None, last_click_at=None,
        reply_count=0, last_reply_at=None, updated_at=sent_at, version=3,
    )
    return tuple(getattr(row, c) for c in MESSAGE_LOG_COLUMNS)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def sink_throughput(path: Path, updates: int, batch: int) -> tuple[float, float]:
    """rows/s of the message_log sink path and of the events sink path (own database)."""
    ChdbStore(path, SINK_DATABASE).migrate()
    rng = random.Random(1)
    records = []
    for i in range(updates):
        values = message_row(i, rng)
        row = MessageLogRow(*values)  # type: ignore[arg-type]
        records.append(SimpleNamespace(topic="u", partition=i % 4, offset=i // 4,
                                       value=serde.encode_message_update(row.version, row, None)))
    events = [parse_json_line(json.dumps(e))[2]
              for e in generate_campaign("sink-bench", messages=max(updates // 4, 10), seed=3)]
    event_records = [SimpleNamespace(topic="e", partition=i % 4, offset=i // 4, value=v)
                     for i, v in enumerate(events)]
    rates = []
    def plan_events(part: list[Any], token: str) -> list[InsertPlan]:
        return plan_message_events(part, token, {})

    for plan_records, all_records in ((plan_message_updates, records),
                                      (plan_events, event_records)):
        start = time.perf_counter()
        for first in range(0, len(all_records), 4 * batch):
            round_ = all_records[first : first + 4 * batch]
            plans: list[InsertPlan] = []
            for p in range(4):
                part = [r for r in round_ if r.partition == p]
                if part:
                    token = dedup_token(part[0].topic, p, part[0].offset, part[-1].offset)
                    plans += plan_records(part, token)
            store = ChdbStore(path, SINK_DATABASE, hold_open=True)  # once per round, as the sink
            try:
                for plan in plans:
                    store.insert(plan)
            finally:
                store.close()
        rates.append(len(all_records) / (time.perf_counter() - start))
    return rates[0], rates[1]


def bulk_plans(first: int, rows: int, batch: int) -> Iterator[list[InsertPlan]]:
    rng = random.Random(first)
    for start in range(first, rows, batch):
        stop = min(start + batch, rows)
        log_rows = [message_row(i, rng) for i in range(start, stop)]
        events: list[SourcedEvent] = []
        for i in range(start, stop):
            if i % 10 == 3:
                events.append(SourcedEvent("sms.click", 0, i, LinkClicked(
                    f"k{i}", f"m{i:09d}", T0 + i * 10 + 60_000, f"lnk-{i}", "Mozilla/5.0")))
            if i % 20 == 7:
                events.append(SourcedEvent("sms.reply", 0, i, ReplyReceived(
                    f"r{i}", f"m{i:09d}", T0 + i * 10 + 90_000, f"contact-{i % 900_000}",
                    f"+1555{i % 10_000_000:07d}", "STOP" if i % 60 == 7 else "Thanks!")))
        token = dedup_token("bulk", 0, start, stop - 1)
        yield [InsertPlan(MESSAGE_LOG_TABLE, MESSAGE_LOG_COLUMNS, log_rows, token),
               *plan_event_inserts(events, token)]


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm-up
    return statistics.median(timed(call)[0] for _ in range(repeat)) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="message-log rows")
    parser.add_argument("--sink-rows", type=int, default=200_000,
                        help="message updates sent through the sink's code path")
    parser.add_argument("--batch", type=int, default=5000, help="rows per insert")
    parser.add_argument("--repeat", type=int, default=5, help="runs per query")
    parser.add_argument("--dir", type=Path, default=None, help="engine directory (default: temp)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        path = (args.dir or Path(tmp)) / "chdb"
        ChdbStore(path, DATABASE).migrate()
        print(f"ClickHouse sink benchmark (chdb, {args.rows:,} message-log rows, "
              f"batch {args.batch:,})")

        sink_rows = min(args.sink_rows, args.rows)
        log_rate, events_rate = sink_throughput(path, sink_rows, args.batch)
        print(f"sink, message_log path (decode+plan+insert): {log_rate:,.0f} rows/s "
              f"({sink_rows:,} updates)")
        print(f"sink, events path (Avro decode+plan+3 tables): {events_rate:,.0f} events/s")

        store = ChdbStore(path, DATABASE, hold_open=True)
        seconds, _ = timed(lambda: [store.insert(p) for plans in bulk_plans(0, args.rows,
                                                                            args.batch)
                                    for p in plans])
        print(f"bulk load: {args.rows:,} rows in {seconds:.1f} s "
              f"({args.rows / seconds:,.0f} message-log rows/s, with replies and clicks)")

        deep = f"m{args.rows * 9 // 10:09d}"
        queries: dict[str, Callable[[], Any]] = {
            "message-log first page (100)": lambda: store.message_log(CAMPAIGN, limit=100),
            "message-log page by status (failed, 100)":
                lambda: store.message_log(CAMPAIGN, status="failed", limit=100),
            "message-log keyset page at 90% (100)":
                lambda: store.message_log(CAMPAIGN, limit=100, after_message_id=deep),
            "SQL summary (campaign + variants)": lambda: store.campaign_metrics(CAMPAIGN),
            "replies first page (100)": lambda: store.replies(CAMPAIGN, limit=100),
            "per-contact clicks first page (100)": lambda: store.contact_clicks(CAMPAIGN),
        }
        for name, call in queries.items():
            print(f"{name}: {median_ms(call, args.repeat):,.0f} ms (median of {args.repeat})")
        metrics = store.campaign_metrics(CAMPAIGN)
        if metrics is None or store.count_message_log(CAMPAIGN) != args.rows:
            raise SystemExit("the load is incomplete: the figures above are not valid")
        store.close()

        out = Path(tmp) / "export.csv"
        child = subprocess.run([sys.executable, "-c", EXPORT_CHILD, str(path), CAMPAIGN,
                                str(out)], capture_output=True, text=True, check=True)
        rows, export_s, peak_kb, start_kb = child.stdout.split()
        print(f"CSV export: {int(rows):,} rows, {out.stat().st_size / 1e6:,.0f} MB in "
              f"{float(export_s):.1f} s ({int(rows) / float(export_s):,.0f} rows/s), "
              f"peak RSS of the exporting process {int(peak_kb) / 1024:,.0f} MB "
              f"({int(start_kb) / 1024:,.0f} MB after imports)")
        print(f"benchmark (loading) process peak RSS: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
