"""CA_RECEIPT_TIMEOUT's duration syntax: a number with ms/s/m/h/d, or bare seconds."""

from __future__ import annotations

import pytest

from streams.settings import ConfigurationError, Settings, settings_of


def test_the_default_is_72_hours():
    assert Settings().receipt_timeout == 72 * 3600


@pytest.mark.parametrize(("text", "seconds"), [
    ("72h", 259_200), ("30m", 1800), ("90s", 90), ("500ms", 0.5), ("1.5d", 129_600),
    ("90", 90), (" 2H ", 7200), ("0.25", 0.25)])
def test_durations(text: str, seconds: float):
    assert settings_of({"CA_RECEIPT_TIMEOUT": text}).receipt_timeout == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-1h", "h", "72 hours", "nan", "inf", "1w"])
def test_a_bad_duration_names_the_variable(text: str):
    with pytest.raises(ConfigurationError, match="CA_RECEIPT_TIMEOUT"):
        settings_of({"CA_RECEIPT_TIMEOUT": text})
