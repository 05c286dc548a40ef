"""``streams.engine.harden``: the faust-streaming version check, then everything applied."""

from __future__ import annotations

import asyncio
from importlib import metadata
from pathlib import Path
from typing import Any

import faust
import pytest

from projections.errors import CampaignAnalyticsError
from streams import engine
from streams.engine import Engine, Inbox, Outbox, UnsupportedFaustVersionError, harden
from streams.engine.errors import EngineError
from streams.settings import ConfigurationError
from streams.telemetry import Telemetry


def _installed(version: str | None) -> Any:
    def read(name: str) -> str:
        assert name == "faust-streaming"
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version

    return read


def _harden(app: Any, restore_seconds: float = 10.0) -> Engine:
    topic = app.topic("harden-in", key_type=bytes, value_type=bytes) if app else None
    return harden(app, telemetry=Telemetry(), bootstrap="127.0.0.1:1",
                  inputs={"stage": [topic]}, batch_max=10, batch_seconds=0.01,
                  fetch_max_wait_ms=123, bulk_restore_seconds=restore_seconds)


@pytest.mark.parametrize(("version", "found"), [("0.16.0", "found version 0.16.0"),
                                                ("0.15.2", "found version 0.15.2"),
                                                (None, "found not installed")])
def test_another_faust_version_is_refused_before_anything_is_touched(
        monkeypatch: pytest.MonkeyPatch, version: str | None, found: str) -> None:
    monkeypatch.setattr(engine.metadata, "version", _installed(version))
    with pytest.raises(UnsupportedFaustVersionError) as raised:
        _harden(None)  # no app at all: the check comes first
    message = str(raised.value)
    assert f"faust-streaming 0.15.3 is required, {found}" in message
    assert "docs/faust-hardening.md" in message
    assert (raised.value.installed, raised.value.supported) == (version, "0.15.3")
    # the CLI prints a ConfigurationError's message and exits with code 2
    assert isinstance(raised.value, ConfigurationError)
    assert isinstance(raised.value, EngineError)
    assert isinstance(raised.value, CampaignAnalyticsError)


def test_the_installed_version_is_the_one_the_engine_was_written_for() -> None:
    """Negative control: the pinned faust-streaming passes the check."""
    assert metadata.version("faust-streaming") == engine.FAUST_VERSION == "0.15.3"
    engine.check_faust_version()


def test_harden_applies_everything_on_the_supported_version(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(engine.metadata, "version", _installed("0.15.3"))

    async def build() -> tuple[faust.App, Engine]:
        app = faust.App("harden-test", broker="kafka://127.0.0.1:1", store="memory://",
                        datadir=str(tmp_path))
        return app, _harden(app)

    app, hardened = asyncio.run(build())
    assert isinstance(hardened.inboxes["stage"], Inbox)
    assert isinstance(hardened.outbox(), Outbox)
    assert hardened.guard is not None
    assert app.fetch_max_wait_ms == 123  # type: ignore[attr-defined]
    assert app.bulk_restore.time_limit == 10.0  # type: ignore[attr-defined]
    consumer: Any = app.consumer
    assert consumer.callback.__qualname__.startswith("install.")  # records go to the inbox
