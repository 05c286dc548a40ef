"""``BulkHistogram`` exposes what prometheus-client's own Histogram would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.telemetry import BulkHistogram

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    """Bucket, sum and count lines of the exposition (the reference's ``_created`` aside)."""
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("h_") and not line.startswith("h_created"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_a_batch_is_exposed_as_the_same_observations_one_by_one() -> None:
    rng = random.Random(7)
    values = [rng.choice([0.0, 0.01, 0.05, 1, 60, 61]) for _ in range(50)]
    values += [rng.expovariate(1.0) for _ in range(500)]
    reference, bulk = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("h", "doc", buckets=BUCKETS, registry=reference)
    for value in values:
        histogram.observe(value)
    ours = BulkHistogram("h", "doc", BUCKETS, bulk)
    ours.observe_many(values[:100])
    ours.observe_many(values[100:])

    want, got = _samples(reference), _samples(bulk)
    assert got.keys() == want.keys() and len(want) == len(BUCKETS) + 3
    for name in want:
        assert abs(got[name] - want[name]) < 1e-9, name


def test_a_value_on_a_bound_counts_in_that_bound() -> None:
    registry = CollectorRegistry()
    ours = BulkHistogram("h", "doc", (1, 2), registry)
    ours.observe_many([1, 1.5, 2, 3])
    assert _samples(registry) == {'h_bucket{le="1.0"}': 1.0, 'h_bucket{le="2.0"}': 3.0,
                                  'h_bucket{le="+Inf"}': 4.0, "h_count": 4.0, "h_sum": 7.5}
