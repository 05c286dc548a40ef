"""Prometheus metrics of one worker, in a registry of its own (tests get a fresh one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.sink_batch_seconds = Histogram(
            "campaign_analytics_sink_batch_seconds",
            "Latency of one ClickHouse insert",
            registry=r,
        )
        self.commit_seconds = Histogram(
            "campaign_analytics_commit_seconds",
            "Duration of one offset commit (producer flush + consumer commit)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.stalled_commits = Counter(
            "campaign_analytics_stalled_commits_total",
            "Offset commits still running after the watchdog threshold (logged with stacks)",
            registry=r,
        )
        self.processing_seconds = Histogram(
            "campaign_analytics_processing_seconds",
            "Time from an input record's Kafka timestamp to its processing",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
