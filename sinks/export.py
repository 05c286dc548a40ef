"""The CSV export of a campaign's message log (domain.md section 4).

RFC 4180: comma separated, ``\\r\\n`` line ends, fields quoted when they hold a
comma, quote or line break, quotes doubled. A null is an empty cell.
Timestamps are ISO-8601 in UTC with millisecond precision and a ``Z``
(``2024-05-01T12:00:00.123Z``). Open ``out`` with ``newline=""`` so the
``\\r\\n`` is written as is.

Cells are written as they are: no spreadsheet-formula escaping, because phone
numbers in E.164 begin with ``+`` and must survive unchanged. ``cost``: see ``_cost``.

``write_csv_file`` writes to a temporary file beside the target and renames it
only when every row is written, so an export that fails (the store stops
answering halfway) leaves no partial file, and an earlier export stays as it was.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from projections.costs import PriceTable, message_cost
from projections.message_log import CSV_EXPORT_COLUMNS
from sinks.sql import EXPORT_QUERY_COLUMNS, TIMESTAMP_COLUMNS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP_POSITIONS = frozenset(
    i for i, name in enumerate(CSV_EXPORT_COLUMNS) if name in TIMESTAMP_COLUMNS
)
_STATUS = EXPORT_QUERY_COLUMNS.index("status")
_COUNTRY = EXPORT_QUERY_COLUMNS.index("country")
_SEGMENTS = EXPORT_QUERY_COLUMNS.index("segments")


def format_timestamp(epoch_ms: int) -> str:
    """``2024-05-01T12:00:00.123Z`` for epoch milliseconds (exact, no float rounding)."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _cell(position: int, value: object) -> object:
    if value is None:
        return ""
    if position in _TIMESTAMP_POSITIONS:
        if not isinstance(value, int):
            raise TypeError(f"{CSV_EXPORT_COLUMNS[position]} must be epoch ms, got {value!r}")
        return format_timestamp(value)
    return value


def _cost(row: tuple[object, ...], prices: PriceTable | None) -> str:
    """The message's cost as plain decimal text (never ``1e-05``): the store gives its
    segments (``EXPORT_QUERY_COLUMNS``), times the price of its country
    (``projections.costs.message_cost``) for an accepted message (any status but
    ``rejected``); empty without prices or for a rejected message."""
    if prices is None or row[_STATUS] == "rejected":
        return ""
    segments, country = row[_SEGMENTS], row[_COUNTRY]
    if not isinstance(segments, int) or not isinstance(country, str):
        raise TypeError(f"segments and country expected, got {segments!r}, {country!r}")
    return f"{Decimal(repr(message_cost(prices, country, segments))):f}"


def write_csv(rows: Iterable[tuple[object, ...]], out: TextIO,
              prices: PriceTable | None = None) -> int:
    """Write the header and ``rows`` (``EXPORT_QUERY_COLUMNS`` order: segments last,
    written as the cost of ``prices``); returns the rows written."""
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_EXPORT_COLUMNS)
    written = 0
    last = len(CSV_EXPORT_COLUMNS) - 1
    for row in rows:
        if len(row) != len(CSV_EXPORT_COLUMNS):
            raise ValueError(f"expected {len(CSV_EXPORT_COLUMNS)} cells, got {len(row)}")
        cells = [_cell(i, value) for i, value in enumerate(row[:last])]
        cells.append(_cost(row, prices))
        writer.writerow(cells)
        written += 1
    return written


def write_csv_file(rows: Iterable[tuple[object, ...]], path: Path,
                   prices: PriceTable | None = None) -> int:
    """``write_csv`` into ``path``, all or nothing; returns the rows written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    # os.open with 0o666: the file gets the user's umask, as open(path, "w") would.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            count = write_csv(rows, out, prices)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count
