"""The worker's sink child process: one exposition for both processes, and the child
that goes when its parent does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import Settings
from streams.sink_runtime import process as sink_process
from streams.sink_runtime.process import die_with_parent, merge_expositions
from streams.telemetry import Telemetry
from tests.waiting import wait_until, wait_until_async


def _registry(rows: int, errors: dict[str, int], seconds: list[float]) -> CollectorRegistry:
    registry = CollectorRegistry()
    sink_rows = Counter("sink_rows", "rows", ["table"], registry=registry)
    for table in ("message_log", "events"):
        sink_rows.labels(table).inc(rows)
    failures = Counter("errors", "errors", ["stage"], registry=registry)
    for stage, n in errors.items():
        failures.labels(stage).inc(n)
    Gauge("orphans", "held", registry=registry).set(rows)
    histogram = Histogram("batch_seconds", "s", buckets=(0.1, 1), registry=registry)
    for value in seconds:
        histogram.observe(value)
    return registry


def _series(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples if not s.name.endswith("_created")}


def test_the_childs_series_are_added_to_the_workers() -> None:
    worker = _registry(0, {"fold_messages": 2}, [])
    child = _registry(7, {"message_log": 1}, [0.05, 0.5, 3])
    merged = _series(merge_expositions(worker, merge_expositions(child, None).decode()))
    assert merged[("sink_rows_total", (("table", "message_log"),))] == 7
    assert merged[("errors_total", (("stage", "fold_messages"),))] == 2
    assert merged[("errors_total", (("stage", "message_log"),))] == 1
    assert merged[("orphans", ())] == 7
    assert merged[("batch_seconds_bucket", (("le", "0.1"),))] == 1
    assert merged[("batch_seconds_bucket", (("le", "+Inf"),))] == 3
    assert merged[("batch_seconds_count", ())] == 3
    # one family each: a scraper rejects a name declared twice
    text = merge_expositions(worker, merge_expositions(child, None).decode()).decode()
    assert text.count("# TYPE sink_rows_total counter") + text.count(
        "# TYPE sink_rows counter") == 1


def test_without_a_child_the_exposition_is_the_workers_own() -> None:
    worker = _registry(3, {"fold_messages": 2}, [0.2])
    assert _series(merge_expositions(worker, None)) == _series(
        merge_expositions(CollectorRegistry(), merge_expositions(worker, None).decode()))
    assert _series(merge_expositions(worker, None))[("orphans", ())] == 3


def test_negative_control_a_summing_check_sees_a_missing_child() -> None:
    worker = _registry(0, {}, [])
    child = _registry(7, {}, [])
    assert _series(merge_expositions(worker, None)) != _series(
        merge_expositions(worker, merge_expositions(child, None).decode()))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
@pytest.mark.parametrize("asks", [True, False], ids=["dies-with-parent", "negative-control"])
def test_the_child_dies_with_its_parent(tmp_path, asks: bool) -> None:
    """A parent starts a child that calls ``die_with_parent``; the parent is SIGKILLed;
    the child is gone within seconds (it would otherwise sleep for a minute). The
    negative control, a child that does not ask, is still there."""
    pid_file = tmp_path / "child.pid"
    child_code = textwrap.dedent(f"""
        import os, sys, time
        from streams.sink_runtime.process import die_with_parent
        if {asks}:
            die_with_parent(int(sys.argv[1]))
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """)
    parent_code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {child_code!r}, str(os.getpid())])
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=os.getcwd())
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the child to start", 30, 0.1)
    child_pid = int(pid_file.read_text())
    assert _alive(child_pid)
    parent.kill()
    parent.wait()
    gone = _gone_within(child_pid, 10 if asks else 3)
    if asks:
        assert gone, "the child outlived its parent"
    else:
        assert not gone, "the negative control died without asking"
        os.kill(child_pid, signal.SIGKILL)


def _gone_within(pid: int, timeout: float) -> bool:
    try:
        wait_until(lambda: not _alive(pid), f"process {pid} to end", timeout, 0.1)
    except AssertionError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_whose_parent_is_already_gone_exits() -> None:
    with pytest.raises(SystemExit):
        die_with_parent(os.getppid() + 999_999)


def test_the_worker_restarts_a_child_that_exits_and_stops_it(monkeypatch) -> None:
    """``SinkProcess`` with a stand-in child that serves nothing, tells its port and
    exits at once (first start) or sleeps (later starts): the supervisor learns the
    port, counts the exit, starts it again, and ``stop`` ends it."""
    monkeypatch.setattr(sink_process, "RESTART_PAUSE", 0.1)
    marker = os.path.join(os.getcwd(), f".sink-test-{os.getpid()}")

    class StandIn(sink_process.SinkProcess):
        def command(self, port_fd: int) -> list[str]:
            code = textwrap.dedent(f"""
                import os, sys, time
                os.write({port_fd}, b"4242\\n")
                if not os.path.exists({marker!r}):
                    open({marker!r}, "w").close()
                    sys.exit(3)
                time.sleep(60)
            """)
            return [sys.executable, "-c", code]

    telemetry = Telemetry()
    sinks = StandIn(Settings(), telemetry)

    async def scenario() -> tuple[int, int | None, int | None]:
        task = asyncio.ensure_future(sinks.run())
        await wait_until_async(lambda: sinks.starts >= 2 and sinks.metrics_port is not None,
                               "the child to be started again, its port known", 30, 0.05)
        assert sinks.proc is not None
        child = sinks.proc
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return sinks.starts, sinks.metrics_port, child.returncode

    try:
        starts, port, code = asyncio.run(scenario())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(marker)
    assert starts == 2 and port == 4242
    assert code is not None, "stop() left the child running"
    assert telemetry.processing_errors.labels("sink-process")._value.get() == 1
