"""The ClickHouse sinks in a child process of the worker (``CA_SINK_CHILD=1``, default).

Inside the worker's event loop the sinks' inserts held up every metric update behind
them, so the worker starts ``campaign-analytics sink`` as a child and keeps it running:

- the child dies with the worker (``PR_SET_PDEATHSIG`` on Linux, and a check of its
  parent once a second);
- a child that exits is started again after ``RESTART_PAUSE`` seconds;
- the worker's ``/metrics`` includes the child's metrics (``merge_expositions``).

Exactness does not depend on it: a child killed at any point is the crash the sinks'
commit protocol is built for. Details: docs/sinks.md; figures: docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from streams.settings import Settings
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

RESTART_PAUSE = 5.0
_PR_SET_PDEATHSIG = 1


# --- in the child ---------------------------------------------------------------------


def die_with_parent(parent_pid: int) -> None:
    """Ask for ``SIGTERM`` when the parent dies (Linux), and exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        raise SystemExit("the worker that started this sink process is gone")


async def watch_parent(parent_pid: int, every: float = 1.0) -> None:
    """Return once the parent is gone (the portable half of ``die_with_parent``)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(every)
    log.warning("the worker that started this sink process is gone; stopping")


def serve_metrics(registry: CollectorRegistry, port_fd: int) -> None:
    """Serve ``registry`` on a free loopback port and write the port to ``port_fd``."""
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        os.write(port_fd, f"{httpd.server_port}\n".encode())
    finally:
        os.close(port_fd)


# --- in the worker --------------------------------------------------------------------


class SinkProcess:
    """Starts ``campaign-analytics sink`` and starts it again whenever it exits."""

    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.proc: asyncio.subprocess.Process | None = None
        self.metrics_port: int | None = None
        self.starts = 0

    def command(self, port_fd: int) -> list[str]:
        return [sys.executable, "-m", "streams.cli", "sink",
                "--port-fd", str(port_fd), "--parent-pid", str(os.getpid())]

    def env(self) -> dict[str, str]:
        # The worker's own flags (--loglevel) reach the child as settings.
        return os.environ | {"CA_LOG_LEVEL": self.settings.log_level}

    async def _start(self) -> asyncio.subprocess.Process:
        """Start the child and learn its metrics port (written to a pipe)."""
        read_fd, write_fd = os.pipe()
        try:
            # Its own session: a signal to the worker's process group (Ctrl-C, a
            # supervisor's stop) reaches the worker, which stops the child itself.
            proc = await asyncio.create_subprocess_exec(
                *self.command(write_fd), env=self.env(), pass_fds=(write_fd,),
                start_new_session=True)
        finally:
            os.close(write_fd)
        try:
            line = await asyncio.to_thread(os.read, read_fd, 32)  # b"" if it died first
        finally:
            os.close(read_fd)
        self.metrics_port = int(line) if line.strip().isdigit() else None
        return proc

    async def run(self) -> None:
        """Keep the child running until cancelled (the worker stops), then stop it."""
        try:
            while True:
                self.proc = await self._start()
                self.starts += 1
                log.info("ClickHouse sinks started in process %d (metrics on port %s)",
                         self.proc.pid, self.metrics_port)
                code = await self.proc.wait()
                self.metrics_port = None
                self.telemetry.processing_errors.labels("sink-process").inc()
                log.error("the ClickHouse sink process %d exited with %s; starting it again "
                          "in %.0f s", self.proc.pid, code, RESTART_PAUSE)
                await asyncio.sleep(RESTART_PAUSE)
        finally:
            await self.stop()

    async def stop(self, grace: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def metrics_text(self, timeout: float = 2.0) -> str | None:
        """The child's exposition, or ``None`` if it does not answer."""
        if self.metrics_port is None:
            return None
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) \
                    as session, session.get(url) as response:
                return await response.text() if response.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None


# --- one exposition for both ----------------------------------------------------------


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge_expositions(own: CollectorRegistry, child_text: str | None) -> bytes:
    """``own``'s metrics with the child's added in: a series both processes have is
    summed (counters, histogram buckets, gauges of held work: the worker's total),
    except ``*_created``, which keeps the earlier time."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    sources: list[Iterable[Metric]] = [own.collect()]
    if child_text:
        sources.append(text_string_to_metric_families(child_text))
    for families in sources:
        for family in families:
            if family.name not in merged:
                merged[family.name] = Metric(family.name, family.documentation, family.type,
                                             family.unit)
                values[family.name] = {}
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in series:
                    series[key] = sample.value
                elif sample.name.endswith("_created"):
                    series[key] = min(series[key], sample.value)
                else:
                    series[key] += sample.value
    for name, family in merged.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged.values()))
    return generate_latest(registry)

