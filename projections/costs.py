"""What a result cost (domain.md 3b): the segments of accepted messages times a price
per segment and country; cost per delivered message and per unique human click.

Prices are ``Decimal``s (read from text, never through a float), so a campaign's cost
is an exact sum of ``segments:<CC>`` counts times their country's price; the figures
are handed out as floats rounded half-even to ``COST_DECIMALS`` places (a millionth
of the currency: a segment costs a few thousandths). Without a price table every
figure is None: a cost is never guessed. The table is read from ``CA_PRICES_FILE``
by ``streams/codecs/prices.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

# A message's accepted segments in a bag of counts: ``segments:<CC>`` (projections/metrics.py).
SEGMENTS_PREFIX = "segments:"
COST_DECIMALS = 6
_QUANTUM = Decimal(1).scaleb(-COST_DECIMALS)
# Digits kept by the sums: enough for any count times any price the prices file allows
# (at most 10 decimals, at most 1e6), so no sum is ever rounded.
_PRECISION = 60
COST_KEYS: tuple[str, ...] = ("currency", "cost", "cost_per_delivered",
                              "cost_per_unique_human_click")


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Price per segment by ISO 3166 alpha-2 country, ``default`` for any other (ZZ,
    a number placed nowhere, included unless listed), all in one ``currency``."""

    currency: str
    default: Decimal
    by_country: Mapping[str, Decimal] = field(default_factory=dict)

    def price(self, country: str) -> Decimal:
        return self.by_country.get(country, self.default)


def rounded(value: Decimal) -> float:
    """A money amount as the summaries give it: ``COST_DECIMALS`` places, half-even."""
    with localcontext(prec=_PRECISION):
        return float(value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN))


def total_cost(counts: Mapping[str, int], prices: PriceTable) -> Decimal:
    """The exact cost of a bag of counts: each ``segments:<CC>`` times its price."""
    total = Decimal(0)
    with localcontext(prec=_PRECISION):
        for key, n in counts.items():
            if key.startswith(SEGMENTS_PREFIX):
                total += prices.price(key[len(SEGMENTS_PREFIX):]) * n
    return total


def message_cost(prices: PriceTable, country: str, segments: int) -> float:
    """One accepted message's cost (the CSV export's column)."""
    return rounded(prices.price(country) * segments)


def cost_figures(counts: Mapping[str, int], prices: PriceTable | None, *, delivered: int,
                 unique_human_clicks: int) -> dict[str, str | float | None]:
    """The summary's cost keys (``COST_KEYS``) of a bag of counts. None without prices;
    a figure per result is None when there is no such result (divisor 0)."""
    if prices is None:
        return dict.fromkeys(COST_KEYS)
    cost = total_cost(counts, prices)
    with localcontext(prec=_PRECISION):  # a quotient to 60 digits, then rounded once
        return {
            "currency": prices.currency,
            "cost": rounded(cost),
            "cost_per_delivered": rounded(cost / delivered) if delivered > 0 else None,
            "cost_per_unique_human_click":
                rounded(cost / unique_human_clicks) if unique_human_clicks > 0 else None,
        }
