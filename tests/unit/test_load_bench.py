"""The load benchmark's own judgements (benchmarks/load.py): what it reads from the
worker's /metrics, when memory counts as flat, and its verdict."""

from __future__ import annotations

import argparse
import math

from benchmarks.load import flat, slope_mb_per_min, verdict, worker_gauges

METRICS = """\
# TYPE campaign_analytics_events_consumed_total counter
campaign_analytics_events_consumed_total{topic="s",type="sent"} 10.0
campaign_analytics_events_consumed_total{topic="d",type="receipt"} 5.0
# TYPE campaign_analytics_consumer_lag gauge
campaign_analytics_consumer_lag{partition="0",topic="s"} 7.0
campaign_analytics_consumer_lag{partition="1",topic="s"} 3.0
# TYPE campaign_analytics_sink_lag_seconds gauge
campaign_analytics_sink_lag_seconds{sink="message_log"} 2.5
campaign_analytics_sink_lag_seconds{sink="events"} 99.0
# TYPE campaign_analytics_sink_lag_records gauge
campaign_analytics_sink_lag_records{partition="0",sink="message_log",topic="u"} 4.0
campaign_analytics_sink_lag_records{partition="1",sink="message_log",topic="u"} 6.0
campaign_analytics_sink_lag_records{partition="0",sink="events",topic="s"} 500.0
"""


def test_the_message_log_lag_is_the_message_log_sinks_only() -> None:
    assert worker_gauges(METRICS) == {"consumed": 15.0, "consumer_lag": 10.0,
                                      "log_lag_s": 2.5, "log_lag_records": 10.0}


def test_flat_allows_noise_and_warm_up_but_not_growth() -> None:
    assert flat([50, 80, 100, 104, 99, 108, 101], 0.10) == (True, 1)  # warm-up, then noise
    assert flat([100, 100, 100, 140, 180, 220], 0.10) == (False, 120)  # the control
    assert flat([float("nan"), 100, 101], 0.10) == (True, 0.0)  # too few samples


def test_the_slope_is_taken_after_the_warm_up() -> None:
    times = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert slope_mb_per_min(times, [50, 90, 100, 100, 100, 100]) == 0.0  # warm-up only
    assert math.isclose(slope_mb_per_min(times, [100, 110, 120, 130, 140, 150]), 60.0)
    assert math.isnan(slope_mb_per_min(times[:2], [1.0, 2.0]))


def row(t: float, api_mb: float, worker_mb: float = 100.0) -> dict[str, object]:
    return {"t": t, "input_per_s": 1000.0, "log_lag_s": 1.0, "log_lag_records": 10.0,
            "consumer_lag": 0.0,
            "rss_mb": {"worker": worker_mb, "sink": 200 + t, "api": api_mb, "producer": 50.0,
                       "client": 60.0}}


def test_verdict_passes_only_without_errors_and_with_flat_memory() -> None:
    args = argparse.Namespace(flat_share=0.10, seconds=30.0)
    rows = [row(t, 70.0) for t in (10.0, 20.0, 30.0)]  # the sink grows: its engine's rows
    ok = {"rate": 1000.0, "rows": rows, "errors": {}, "produced": {}, "pages_ok": 1,
          "sse_events": 1, "table_store": "rocksdb"}
    assert verdict(ok, args)[-1].startswith("verdict: PASS")
    assert verdict(ok | {"errors": {"page: HTTP 503": 1}}, args)[-1] == "verdict: FAIL"
    growing = ok | {"rows": [row(t, 70.0 + 10 * t) for t in (10.0, 20.0, 30.0)]}
    assert verdict(growing, args)[-1] == "verdict: FAIL"


def test_the_worker_is_judged_when_its_tables_are_on_disk() -> None:
    args = argparse.Namespace(flat_share=0.10, seconds=30.0)
    rows = [row(t, 70.0, worker_mb=100 + 10 * t) for t in (10.0, 20.0, 30.0)]
    run = {"rate": 1000.0, "rows": rows, "errors": {}, "produced": {}, "pages_ok": 1,
           "sse_events": 1}
    assert verdict(run | {"table_store": "rocksdb"}, args)[-1] == "verdict: FAIL"
    # the control: a memory store keeps every message, so its growth is reported only
    lines = verdict(run | {"table_store": "memory"}, args)
    assert lines[-1].startswith("verdict: PASS")
    assert any(line.startswith("memory worker:") and "per 1,000 events" in line
               for line in lines)
