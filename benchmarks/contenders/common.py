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
    """Writes the wall-clock time of the first processed event to ``BENCH_MARK``, once."""

    def __init__(self) -> None:
        self.path = Path(os.environ["BENCH_MARK"])
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(repr(time.time()))
            tmp.replace(self.path)
