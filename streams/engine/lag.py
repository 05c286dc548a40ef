"""Consumer lag per assigned partition, from the worker's own positions.

Every ``every`` seconds (a Faust timer, never per event) the gauge
``campaign_analytics_consumer_lag{topic,partition}`` is set to the partition's
highwater (the log end offset the last fetch saw) minus its committed offset
(the next offset to read). Both are already in the consumer's memory: no broker
request. Partitions without a committed offset yet (or a highwater, before the
first fetch) are left out; partitions no longer assigned are removed.
Alert: ``ConsumerLagGrowing`` (deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust
from faust.types import TP

from streams.telemetry import Telemetry

log = logging.getLogger(__name__)


def consumer_lag(consumer: Any) -> dict[TP, int]:
    """``highwater - committed`` (at least 0) for each assigned partition that has both."""
    lag: dict[TP, int] = {}
    committed: Mapping[TP, int | None] = getattr(consumer, "_committed_offset", {})
    for tp in consumer.assignment():
        offset = committed.get(tp)
        if offset is None:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: S112 - revoked meanwhile, or not fetched yet
            continue
        if highwater is not None:
            lag[tp] = max(0, highwater - offset)
    return lag


class LagGauge:
    def __init__(self, consumer: Any, telemetry: Telemetry) -> None:
        self.consumer = consumer
        self.gauge = telemetry.consumer_lag
        self.shown: set[tuple[str, str]] = set()

    def update(self) -> None:
        try:
            lag = consumer_lag(self.consumer)
        except Exception:  # a metric must not stop the worker
            log.debug("consumer lag unavailable", exc_info=True)
            return
        labels = {(tp.topic, str(tp.partition)): n for tp, n in lag.items()}
        for gone in self.shown - labels.keys():
            self.gauge.remove(*gone)
        for key, n in labels.items():
            self.gauge.labels(*key).set(n)
        self.shown = set(labels)


def install(app: faust.App, telemetry: Telemetry, every: float = 5.0) -> LagGauge:
    lag = LagGauge(app.consumer, telemetry)

    @app.timer(interval=every)
    async def consumer_lag_gauge() -> None:
        lag.update()

    return lag
