"""The prices file (CA_PRICES_FILE, docs/prices.md): what it accepts, and a clear error
for what it does not, also from the worker command (exit 2, one line, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from projections.costs import PriceTable
from streams.codecs.prices import load_prices, parse_prices
from streams.settings import ConfigurationError

REPO = Path(__file__).resolve().parents[3]
GOOD = "country,price_per_segment,currency\n*,0.05,EUR\nUS,0.0079,EUR\nGB,0.0351,EUR\n"


def test_a_good_file_gives_its_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(GOOD, encoding="utf-8")
    assert load_prices(path) == PriceTable(
        "EUR", Decimal("0.05"), {"US": Decimal("0.0079"), "GB": Decimal("0.0351")})


def test_no_file_no_prices() -> None:
    assert load_prices(None) is None


def test_the_documented_example_loads() -> None:
    table = load_prices(REPO / "docs" / "prices-example.csv")
    assert table is not None
    assert table.currency == "USD"
    assert table.price("US") == Decimal("0.0083")
    assert table.price("ZZ") == table.default == Decimal("0.0500")


def test_bom_comments_blank_lines_case_and_spaces_are_read() -> None:
    text = ("\ufeff# prices of 2026-12\nCountry, Price_Per_Segment, Currency\n\n"
            " default , 0.01 , usd\n# the UK\ngb,0.04,USD\n")
    assert parse_prices(text) == PriceTable("USD", Decimal("0.01"), {"GB": Decimal("0.04")})


@pytest.mark.parametrize(("text", "said"), [
    ("", "empty"),
    ("# only a comment\n", "empty"),
    ("country,price,currency\n*,0.01,USD\n", "line 1: the header must be"),
    ("country,price_per_segment,currency\nUS,0.01,USD\n", "no default row"),
    (GOOD + "*,0.06,EUR\n", "line 5: a second default row"),
    (GOOD + "US,0.01,EUR\n", "line 5: US is priced twice"),
    (GOOD + "FR,0.01,USD\n", "line 5: currency USD, but the file's is EUR"),
    (GOOD + "FR,0.01,euro\n", "line 5: the currency must be an ISO 4217 code"),
    (GOOD + "FRA,0.01,EUR\n", "line 5: the country must be an ISO 3166 alpha-2 code"),
    (GOOD + "FR,-0.01,EUR\n", "line 5: price_per_segment must be a non-negative"),
    (GOOD + "FR,abc,EUR\n", "line 5: price_per_segment must be a non-negative"),
    (GOOD + "FR,NaN,EUR\n", "line 5: price_per_segment must be a non-negative"),
    (GOOD + "FR,Infinity,EUR\n", "line 5: price_per_segment must be a non-negative"),
    (GOOD + "FR,1e9,EUR\n", "line 5: price_per_segment must be at most"),
    (GOOD + "FR,0.00000000001,EUR\n", "line 5: price_per_segment must be at most"),
    (GOOD + "FR,0.01\n", "line 5: 2 fields, not 3"),
    (GOOD + "FR,0.01,EUR,x\n", "line 5: 4 fields, not 3"),
    ("country,price_per_segment,currency\n*,0.01,USD\nUS,\"0.01,USD\n", "line 3: 2 fields"),
])
def test_a_bad_file_is_an_error_naming_its_line(text: str, said: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_prices(text, "CA_PRICES_FILE p.csv")
    assert said in str(caught.value)
    assert str(caught.value).startswith("CA_PRICES_FILE p.csv: ")


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read it"):
        load_prices(tmp_path / "missing.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_prices(binary)


@pytest.mark.parametrize("content", [None, "country,price_per_segment,currency\nUS,x,USD\n"])
def test_the_worker_refuses_a_bad_prices_file_at_start(tmp_path: Path,
                                                       content: str | None) -> None:
    """Exit 2 (configuration), one line on stderr, before any broker is tried (none
    answers at the bootstrap address given)."""
    path = tmp_path / "prices.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    env = os.environ | {"CA_PRICES_FILE": str(path), "CA_DATA_DIR": str(tmp_path / "data"),
                        "CA_KAFKA_BOOTSTRAP": "127.0.0.1:9", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: CA_PRICES_FILE {path}: ")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # refused before the state directory
