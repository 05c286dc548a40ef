"""When a retried message may go out: outside quiet hours in the contact's local time
(its zone: ``streams.codecs.phones.contact_zone``).

Quiet hours may wrap midnight (21:00-09:00, the default) or
not (00:00-07:00); the end is the first minute allowed again. The next allowed local
time is built as a wall-clock time in the zone, so a DST change that night moves its
UTC instant, not the local hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``"HH:MM-HH:MM"``; ``""`` or ``"off"`` is none. ValueError on anything else."""
        text = text.strip()
        if text.lower() in ("", "off"):
            return None
        start, sep, end = text.partition("-")
        if not sep:
            raise ValueError(f"quiet hours {text!r}: expected HH:MM-HH:MM, or off")
        hours = cls(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))
        if hours.start == hours.end:
            raise ValueError(f"quiet hours {text!r}: start and end are the same")
        return hours

    def holds(self, local: time) -> bool:
        """Whether a local wall-clock time is quiet: start inclusive, end exclusive."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def not_before(now: datetime, zone: str, quiet: QuietHours | None) -> datetime:
    """``now`` if it is not quiet where the contact is, else the end of the quiet
    hours in their zone (as an aware UTC datetime)."""
    if quiet is None:
        return now.astimezone(UTC)
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if not quiet.holds(local.timetz().replace(tzinfo=None)):
        return now.astimezone(UTC)
    day = local.date()
    if local.time() >= quiet.end:  # evening part of a wrapping window: ends tomorrow
        day += timedelta(days=1)
    # A wall-clock time in the zone; one a DST gap skips is moved on by the gap's length
    # (fold=0), which is the first local minute that exists after it.
    end = datetime.combine(day, quiet.end, tzinfo=tz)
    return end.astimezone(UTC)
