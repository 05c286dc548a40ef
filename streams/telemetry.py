"""Prometheus metrics of one worker, in a registry of its own (tests get a fresh one)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# seconds; fine below 1 s, where the event -> metric target lies
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1, 2.5, 5, 10,
                   30, 60)


class BulkHistogram(Collector):
    """A Prometheus histogram fed a batch of observations at once.

    ``Histogram.observe`` takes a lock and walks the buckets for every value: per
    input event that was 2 % of a busy worker's CPU. Here a batch is counted in
    plain Python and added under one lock; the exposition is the same
    (``_bucket{le=...}``, ``_sum``, ``_count``)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts = [0] * len(self._counts)
        bounds = self.bounds
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # le: the first bound >= value
            total += value
        with self._lock:
            for i, n in enumerate(counts):
                self._counts[i] += n
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip([*map(floatToGoString, self.bounds), "+Inf"], counts, strict=True):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative,
                                    sum_value=total)


@dataclass
class Telemetry:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_consumed = Counter(
            "campaign_analytics_events_consumed_total",
            "Input records consumed, by topic and event type",
            ["topic", "type"],
            registry=r,
        )
        self.rejected_records = Counter(
            "campaign_analytics_rejected_records_total",
            "Input records sent to the dead-letter topic, by topic",
            ["topic"],
            registry=r,
        )
        self.processing_errors = Counter(
            "campaign_analytics_processing_errors_total",
            "Unexpected errors while processing a record, by stage",
            ["stage"],
            registry=r,
        )
        self.duplicate_events = Counter(
            "campaign_analytics_duplicate_events_total",
            "Events whose event_id was already applied",
            registry=r,
        )
        self.rerouted_events = Counter(
            "campaign_analytics_rerouted_events_total",
            "Input records not in their message's partition (another partitioner, or input "
            "topics with another partition count), forwarded to message-events",
            registry=r,
        )
        self.orphan_events = Gauge(
            "campaign_analytics_orphan_events",
            "Receipts, replies and clicks held because their sent event has not come "
            "(in this process's partitions)",
            registry=r,
        )
        self.receipt_deadlines = Gauge(
            "campaign_analytics_receipt_deadlines",
            "Sent messages without a terminal receipt whose CA_RECEIPT_TIMEOUT deadline "
            "this worker watches (in its partitions)",
            registry=r,
        )
        self.receipt_timeouts = Counter(
            "campaign_analytics_receipt_timeouts_total",
            "Timeout records sent for messages past their receipt deadline (judged "
            "unknown); a sweep after a crash or rebalance may send one again, applied once",
            registry=r,
        )
        self.metric_snapshots = Counter(
            "campaign_analytics_metric_snapshots_total",
            "Campaign metric snapshots published",
            registry=r,
        )
        self.sink_rows = Counter(
            "campaign_analytics_sink_rows_total",
            "Rows inserted into ClickHouse, by table",
            ["table"],
            registry=r,
        )
        self.sink_errors = Counter(
            "campaign_analytics_sink_errors_total",
            "Failed ClickHouse inserts (retried)",
            registry=r,
        )
        self.sink_rejected_rows = Counter(
            "campaign_analytics_sink_rejected_rows_total",
            "Rows ClickHouse refused for good (a non-transient error), dead-lettered and "
            "skipped, by table",
            ["table"],
            registry=r,
        )
        self.sink_batch_seconds = Histogram(
            "campaign_analytics_sink_batch_seconds",
            "Latency of one ClickHouse insert",
            registry=r,
        )
        self.gc_seconds = Histogram(
            "campaign_analytics_gc_seconds",
            "Duration of one garbage collection (the event loop waits), by generation",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "campaign_analytics_commit_seconds",
            "Duration of one offset commit (producer flush + consumer commit)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.rereads = Counter(
            "campaign_analytics_partition_rereads_total",
            "Input partitions read again from a record that was not processed: 'jump' "
            "(records lost between fetch and delivery), 'hole' (the commit found its head "
            "missing); each is a late record, not a lost one (streams/engine/positions.py)",
            ["reason"], registry=r,
        )
        self.restored_records = Counter(
            "campaign_analytics_bulk_restored_records_total",
            "Table changelog records read by the bulk restore (streams/engine/restore.py), "
            "by table",
            ["table"], registry=r,
        )
        self.restore_seconds = Histogram(
            "campaign_analytics_bulk_restore_seconds",
            "Duration of one bulk restore of the tables' changelogs",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60),
            registry=r,
        )
        self.stalled_commits = Counter(
            "campaign_analytics_stalled_commits_total",
            "Offset commits still running after the watchdog threshold (logged with stacks)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "campaign_analytics_consumer_lag",
            "Records in each assigned partition past the committed offset (highwater - "
            "committed, from the consumer's own positions every few seconds; "
            "streams/engine/lag.py)",
            ["topic", "partition"], registry=r,
        )
        self.sink_lag_records = Gauge(
            "campaign_analytics_sink_lag_records",
            "Records of each partition a ClickHouse sink has not written yet (highwater - "
            "written, from the sink consumer's own positions every few seconds; "
            "streams/sink_runtime/freshness.py)",
            ["sink", "topic", "partition"], registry=r,
        )
        self.sink_lag_seconds = Gauge(
            "campaign_analytics_sink_lag_seconds",
            "How long the oldest record a ClickHouse sink has not written yet has been in "
            "Kafka (its broker timestamp to now; 0 when the sink has written everything)",
            ["sink"], registry=r,
        )
        self.clickhouse_rows = Gauge(
            "campaign_analytics_clickhouse_rows",
            "Rows stored in each ClickHouse table (active parts in system.parts: before "
            "replaced versions are merged away), read by the sink process every 30 s",
            ["table"], registry=r,
        )
        self.snapshot_age_seconds = Gauge(
            "campaign_analytics_snapshot_age_seconds",
            "Seconds since each active campaign's last metric snapshot (campaigns with "
            "input on this worker in the last 15 minutes; streams/pipeline/freshness.py)",
            ["campaign"], registry=r,
        )
        self.snapshot_pending_seconds = Gauge(
            "campaign_analytics_snapshot_pending_seconds",
            "Age of the oldest campaign change no snapshot has published yet (0: every "
            "change is out)",
            registry=r,
        )
        self.processing_seconds = BulkHistogram(
            "campaign_analytics_processing_seconds",
            "Time from an input record's Kafka timestamp to its processing",
            LATENCY_BUCKETS,
            r,
        )
        self.handoff_seconds = BulkHistogram(
            "campaign_analytics_handoff_seconds",
            "Time from a message update's Kafka timestamp (its fold) to its aggregation",
            LATENCY_BUCKETS,
            r,
        )
