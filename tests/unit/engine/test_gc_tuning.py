"""The worker's collector: every collection timed by generation, the start-up heap
frozen, the young threshold from CA_GC_GEN0 (0: CPython's own)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.engine import gc_tuning
from streams.settings import ConfigurationError, load_settings
from streams.telemetry import Telemetry


def _count(telemetry: Telemetry, generation: str) -> float:
    value = telemetry.registry.get_sample_value(
        "campaign_analytics_gc_seconds_count", {"generation": generation})
    return value or 0.0


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_collections_are_timed_and_the_threshold_set(restore_gc: None) -> None:
    telemetry = Telemetry()
    timer = gc_tuning.install(telemetry, 50_000)
    try:
        assert gc.get_threshold()[0] == 50_000
        assert gc.get_freeze_count() > 0
        before = _count(telemetry, "2")
        gc.collect()
        gc.collect(0)
        assert _count(telemetry, "2") == before + 1
        assert _count(telemetry, "0") >= 1
    finally:
        gc_tuning.uninstall(timer)
    assert timer not in gc.callbacks
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
    counted = _count(telemetry, "2")
    gc.collect()
    assert _count(telemetry, "2") == counted  # no longer timed


def test_zero_keeps_cpythons_thresholds(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    timer = gc_tuning.install(Telemetry(), 0)
    try:
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc_tuning.uninstall(timer)


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CA_GC_GEN0", raising=False)
    assert load_settings().gc_gen0_threshold == 200_000
    monkeypatch.setenv("CA_GC_GEN0", "0")
    assert load_settings().gc_gen0_threshold == 0
    monkeypatch.setenv("CA_GC_GEN0", "-1")
    with pytest.raises(ConfigurationError, match="CA_GC_GEN0 must be >= 0"):
        load_settings()
    monkeypatch.setenv("CA_GC_GEN0", "many")
    with pytest.raises(ConfigurationError, match="CA_GC_GEN0 must be an integer"):
        load_settings()


def test_collect_when_quiet_runs_the_collection_that_is_due(restore_gc: None) -> None:
    gc.collect()
    gc.set_threshold(1_000_000, 10, 10)  # no automatic collection during the test
    kept = [[] for _ in range(20_000)]
    assert gc_tuning.collect_when_quiet(0.5) is None  # 20,000 of 1,000,000: not due
    assert gc.get_count()[0] >= 20_000
    gc.set_threshold(30_000, 10, 10)
    assert gc_tuning.collect_when_quiet(0.5) == 0  # over half of 30,000: young
    assert gc.get_count()[0] < 1_000
    assert gc.get_count()[1] == 1  # counted for the middle generation, as CPython does
    for _ in range(10):
        gc.collect(0)
    kept += [[] for _ in range(20_000)]
    assert gc.get_count()[1] == 11
    assert gc_tuning.collect_when_quiet(0.5) == 1  # the middle generation is over 10
    assert gc.get_count()[1] == 0
    assert gc.get_count()[2] == 1
    gc.set_threshold(30_000, 0, 0)
    kept += [[] for _ in range(20_000)]
    assert gc_tuning.collect_when_quiet(0.5) == 0  # the middle count, 0, is not over 0
    kept += [[] for _ in range(20_000)]
    assert gc.get_count()[1:] == (1, 1)
    assert gc_tuning.collect_when_quiet(0.5) == 2  # both older counts are over theirs
    assert gc.get_count()[1:] == (0, 0)
    assert len(kept) == 80_000


def test_collect_when_quiet_leaves_a_disabled_collector_alone(restore_gc: None) -> None:
    gc.set_threshold(1_000, 10, 10)
    gc.disable()
    try:
        kept = [[] for _ in range(5_000)]
        assert gc_tuning.collect_when_quiet(0.5) is None
        assert gc.get_count()[0] >= 5_000
    finally:
        gc.enable()
    assert kept
