"""Quiet hours of retries (issue 21) in the contact's local time, at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from projections.quiet_hours import QuietHours, not_before

DEFAULT = QuietHours.parse("21:00-09:00")
NY = "America/New_York"


def at(zone: str, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


def test_parse() -> None:
    assert QuietHours(time(21), time(9)) == DEFAULT
    assert QuietHours.parse("off") is None and QuietHours.parse("") is None
    for bad in ("21:00", "25:00-09:00", "09:00-09:00", "nine-ten"):
        with pytest.raises(ValueError):
            QuietHours.parse(bad)


@pytest.mark.parametrize(("local", "quiet"), [
    ((20, 59), False), ((21, 0), True), ((23, 59), True), ((0, 0), True),
    ((8, 59), True), ((9, 0), False), ((12, 0), False),
])
def test_the_edges_of_a_window_that_wraps_midnight(local: tuple[int, int], quiet: bool) -> None:
    assert DEFAULT is not None and DEFAULT.holds(time(*local)) is quiet


def test_a_window_that_does_not_wrap() -> None:
    hours = QuietHours.parse("00:00-07:00")
    assert hours is not None
    assert [hours.holds(time(h)) for h in (23, 0, 6, 7)] == [False, True, True, False]
    now = at(NY, 2026, 6, 3, 3, 0)
    assert not_before(now, NY, hours) == at(NY, 2026, 6, 3, 7, 0).astimezone(UTC)


def test_at_20_59_local_it_goes_now_and_at_21_00_the_next_morning() -> None:
    before = at(NY, 2026, 6, 3, 20, 59)
    assert not_before(before, NY, DEFAULT) == before.astimezone(UTC)
    evening = at(NY, 2026, 6, 3, 21, 0)
    assert not_before(evening, NY, DEFAULT) == at(NY, 2026, 6, 4, 9, 0).astimezone(UTC)
    small_hours = at(NY, 2026, 6, 4, 2, 30)
    assert not_before(small_hours, NY, DEFAULT) == at(NY, 2026, 6, 4, 9, 0).astimezone(UTC)


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another() -> None:
    now = datetime(2026, 6, 4, 2, 0, tzinfo=UTC)  # 22:00 in New York, 04:00 in Berlin
    assert not_before(now, NY, DEFAULT) == datetime(2026, 6, 4, 13, 0, tzinfo=UTC)
    assert not_before(now, "Europe/Berlin", DEFAULT) == datetime(2026, 6, 4, 7, 0, tzinfo=UTC)
    assert not_before(now, "Asia/Tokyo", DEFAULT) == now  # 11:00 there


@pytest.mark.parametrize(("evening", "hours"), [
    ((2026, 10, 31, 21, 30), 11.5 + 1),  # clocks go back that night: 13 h of wall time + 1
    ((2026, 3, 7, 21, 30), 11.5 - 1),  # clocks go forward that night
])
def test_a_dst_change_that_night_keeps_the_local_hour(evening: tuple[int, ...],
                                                      hours: float) -> None:
    now = at(NY, *evening)
    allowed = not_before(now, NY, DEFAULT)
    assert allowed.astimezone(ZoneInfo(NY)).time() == time(9, 0)
    assert allowed - now.astimezone(UTC) == timedelta(hours=hours)


def test_outside_quiet_hours_or_without_them_it_is_now() -> None:
    now = at(NY, 2026, 6, 3, 12, 0)
    assert not_before(now, NY, DEFAULT) == now.astimezone(UTC)
    late = at(NY, 2026, 6, 3, 23, 0)
    assert not_before(late, NY, None) == late.astimezone(UTC)
