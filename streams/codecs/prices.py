"""The prices file (``CA_PRICES_FILE``, docs/prices.md): a CSV of what one message
segment costs per country, read into a ``projections.costs.PriceTable``.

UTF-8 (a BOM is allowed), header ``country,price_per_segment,currency``, then one row
per country (ISO 3166 alpha-2, as ``phonenumbers`` names regions; ``ZZ``: numbers
placed nowhere) and one default row (``*`` or ``default``) for every other country.
Prices are non-negative decimal numbers, read exactly (``Decimal``); every row names
the same currency (ISO 4217, three letters). Blank lines and lines starting with
``#`` are skipped. Anything else is a ``ConfigurationError`` naming the file and the
line (the CLI: one line, exit 2, at start).
"""

from __future__ import annotations

import csv
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from projections.costs import PriceTable
from streams.settings import ConfigurationError

HEADER = ("country", "price_per_segment", "currency")
DEFAULT_NAMES = frozenset({"*", "default"})
_COUNTRY = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")
MAX_BYTES = 1 << 20  # some 250 countries fit in a few kB
# Bounds that keep every sum exact (projections/costs.py) and no price absurd.
MAX_PRICE = Decimal(1_000_000)
MAX_DECIMALS = 10


def load_prices(path: Path | None) -> PriceTable | None:
    """The price table of ``path``; None (no cost figures) when no file is set."""
    if path is None:
        return None
    where = f"CA_PRICES_FILE {path}"
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigurationError(f"{where}: larger than {MAX_BYTES} bytes: not a prices file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"{where}: cannot read it: {reason}") from None
    return parse_prices(text, where)


def parse_prices(text: str, where: str = "prices") -> PriceTable:
    """The price table of a prices file's text (``where`` names it in errors)."""
    try:
        lines = text.removeprefix("\ufeff").splitlines()
        rows = [(n, row) for n, row in enumerate(csv.reader(lines), start=1)
                if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    except csv.Error as exc:
        raise ConfigurationError(f"{where}: not CSV: {exc}") from None
    if not rows:
        raise ConfigurationError(f"{where}: empty; the header is {','.join(HEADER)}")
    line, header = rows[0]
    if tuple(cell.strip().lower() for cell in header) != HEADER:
        raise ConfigurationError(f"{where}: line {line}: the header must be "
                                 f"{','.join(HEADER)}, got {','.join(header)[:80]!r}")
    default: Decimal | None = None
    by_country: dict[str, Decimal] = {}
    currency: str | None = None
    for line, row in rows[1:]:
        if len(row) != len(HEADER):
            raise ConfigurationError(f"{where}: line {line}: {len(row)} fields, not 3")
        country, price_text, code = (cell.strip() for cell in row)
        price = _price(price_text, f"{where}: line {line}")
        code = code.upper()
        if not _CURRENCY.fullmatch(code):
            raise ConfigurationError(f"{where}: line {line}: the currency must be an ISO 4217 "
                                     f"code such as USD, got {code[:20]!r}")
        if currency is not None and code != currency:
            raise ConfigurationError(f"{where}: line {line}: currency {code}, but the file's "
                                     f"is {currency}: one currency per file")
        currency = code
        if country.lower() in DEFAULT_NAMES:
            if default is not None:
                raise ConfigurationError(f"{where}: line {line}: a second default row")
            default = price
            continue
        country = country.upper()
        if not _COUNTRY.fullmatch(country):
            raise ConfigurationError(f"{where}: line {line}: the country must be an ISO 3166 "
                                     f"alpha-2 code such as US, or * for the default, got "
                                     f"{country[:20]!r}")
        if country in by_country:
            raise ConfigurationError(f"{where}: line {line}: {country} is priced twice")
        by_country[country] = price
    if default is None or currency is None:
        raise ConfigurationError(f"{where}: no default row (country * or default): the "
                                 "price of a country the file does not list")
    return PriceTable(currency=currency, default=default, by_country=by_country)


def _price(text: str, where: str) -> Decimal:
    try:
        price = Decimal(text)
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite() or price < 0:
        raise ConfigurationError(f"{where}: price_per_segment must be a non-negative decimal "
                                 f"number such as 0.0079, got {text[:20]!r}")
    exponent = price.as_tuple().exponent
    if price > MAX_PRICE or (isinstance(exponent, int) and exponent < -MAX_DECIMALS):
        raise ConfigurationError(f"{where}: price_per_segment must be at most {MAX_PRICE} with "
                                 f"at most {MAX_DECIMALS} decimals, got {text[:20]!r}")
    return price
