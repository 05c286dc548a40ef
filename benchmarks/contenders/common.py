"""What every contender needs: its settings and the first-event marker."""

from __future__ import annotations

import os
import time
from pathlib import Path

from streams.settings import Settings, load_settings


def settings() -> Settings:
    return load_settings()


def group() -> str:
    return os.environ["BENCH_GROUP"]


def workdir() -> Path:
    path = Path(os.environ["BENCH_WORKDIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


class FirstEvent:
    """At the first processed event, once: the wall-clock time to ``BENCH_MARK`` and
    the process CPU time so far next to it (``.cpu``), for the harness's window."""

    def __init__(self) -> None:
        self.path = Path(os.environ["BENCH_MARK"])
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            wall, cpu = time.time(), time.process_time()  # CPU of every thread
            tmp = self.path.with_suffix(".tmp")
            self.path.with_suffix(".cpu").write_text(repr(cpu))
            tmp.write_text(repr(wall))
            tmp.replace(self.path)
