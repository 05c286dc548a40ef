"""The consumer-lag gauge: highwater - committed per assigned partition, from memory."""

from __future__ import annotations

from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.engine.lag import LagGauge, consumer_lag
from streams.telemetry import Telemetry

A0, A1, B0 = TP("input", 0), TP("input", 1), TP("other", 0)


class FakeConsumer:
    def __init__(self, assigned: set[TP], committed: dict[TP, int | None],
                 highwaters: dict[TP, int | None]) -> None:
        self.assigned = assigned
        self._committed_offset = committed
        self.highwaters = highwaters

    def assignment(self) -> set[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int | None:
        if tp not in self.highwaters:
            raise AssertionError("Partition is not assigned")  # as aiokafka does
        return self.highwaters[tp]


def lag_samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for family in registry.collect() if family.name == "campaign_analytics_consumer_lag"
            for s in family.samples}


def test_lag_is_highwater_minus_committed_for_partitions_that_have_both() -> None:
    consumer = FakeConsumer({A0, A1, B0}, {A0: 40, A1: None, B0: 7}, {A0: 100, A1: 5})
    # A1: nothing committed yet; B0: no highwater (raises) -> both left out
    assert consumer_lag(consumer) == {A0: 60}


def test_lag_is_never_negative() -> None:
    assert consumer_lag(FakeConsumer({A0}, {A0: 12}, {A0: 10})) == {A0: 0}


def test_gauge_follows_the_assignment() -> None:
    telemetry = Telemetry(CollectorRegistry())
    consumer: Any = FakeConsumer({A0, A1}, {A0: 1, A1: 2}, {A0: 11, A1: 2})
    gauge = LagGauge(consumer, telemetry)
    gauge.update()
    assert lag_samples(telemetry.registry) == {("input", "0"): 10, ("input", "1"): 0}
    consumer.assigned = {A1}  # A0 revoked: its series goes
    consumer.highwaters[A1] = 9
    gauge.update()
    assert lag_samples(telemetry.registry) == {("input", "1"): 7}


def test_a_failing_consumer_leaves_the_gauge_as_it_was() -> None:
    telemetry = Telemetry(CollectorRegistry())

    class Broken:
        def assignment(self) -> set[TP]:
            raise RuntimeError("consumer closed")

    LagGauge(Broken(), telemetry).update()
    assert lag_samples(telemetry.registry) == {}
