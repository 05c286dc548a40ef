"""Errors of the engine layer (the hardening of faust-streaming)."""

from __future__ import annotations

from projections.errors import CampaignAnalyticsError
from streams.settings import ConfigurationError


class EngineError(CampaignAnalyticsError):
    """The engine cannot run the worker as it was built to."""


class UnsupportedFaustVersionError(EngineError, ConfigurationError):
    """The installed faust-streaming is not the version the engine was written for.

    Also a ``ConfigurationError``: the CLI reports it as one (exit code 2)."""

    def __init__(self, installed: str | None, supported: str) -> None:
        found = "not installed" if installed is None else f"version {installed}"
        super().__init__(
            f"faust-streaming {supported} is required, found {found}: streams/engine patches "
            f"its internals and was checked against {supported} only (see "
            "docs/faust-hardening.md); install faust-streaming=="
            f"{supported} (pyproject.toml pins it)")
        self.installed = installed
        self.supported = supported


class DirectoryInUseError(EngineError):
    """Another live process holds this data directory's lock."""
