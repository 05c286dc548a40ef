"""Timestamps of the API: ISO-8601 in UTC with milliseconds and a ``Z``, as the CSV
export writes them; query parameters accept that form, any ISO-8601 with an
offset, or epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sinks.export import format_timestamp


def iso(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else format_timestamp(int(epoch_ms))


def parse_instant(text: str) -> int:
    """Epoch milliseconds of ``text``; ``ValueError`` with a reason otherwise."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO-8601 time or epoch milliseconds: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"a time needs an offset (e.g. Z): {text!r}")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
