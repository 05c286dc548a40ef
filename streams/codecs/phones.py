"""What an E.164 number tells, from ``phonenumbers``' data: the contact's time zone,
and the country (``country_of``: where failures happen, what a segment costs).

``phonenumbers`` places a number by its prefix (a New York area code gives
America/New_York). A number it cannot place (``Etc/Unknown``, or not a number at
all) or that it places in several zones (most Russian mobiles, US toll-free numbers)
takes the default zone, and ``by_default`` says so (quiet hours of retries, issue 21).
A number it places in no country counts under ``UNPLACED`` (ZZ).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones

_UNKNOWN_ZONE = "Etc/Unknown"


@dataclass(frozen=True, slots=True)
class Placement:
    zone: str
    by_default: bool  # the number gave no single zone


@functools.lru_cache(maxsize=4096)
def contact_zone(phone: str, default_zone: str) -> Placement:
    """The contact's zone from the number, or ``default_zone`` when it has no single one."""
    try:
        zones = phone_zones.time_zones_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        zones = (_UNKNOWN_ZONE,)
    if len(zones) != 1 or zones[0] == _UNKNOWN_ZONE:
        return Placement(default_zone, True)
    try:
        ZoneInfo(zones[0])
    except (ZoneInfoNotFoundError, ValueError):  # phonenumbers newer than the tz data
        return Placement(default_zone, True)
    return Placement(zones[0], False)


# --- the country of a number (issue 22: sent, delivered and failed by country) -------

UNPLACED = "ZZ"  # ISO 3166's user-assigned "unknown country": a number nobody can place


def _region_of_code() -> dict[str, str | None]:
    """Calling code (its digits) -> its one region; None when regions share the code
    (+1, +7, +44, ...: only the whole number tells them apart). A non-geographic
    code (``001``: +800, +882, ...) places nowhere."""
    out: dict[str, str | None] = {}
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        single = regions[0] if len(regions) == 1 else None
        out[str(code)] = UNPLACED if single == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY \
            else single
    return out


_REGION_OF_CODE = _region_of_code()
_NANP_NATIONAL = re.compile(r"[2-9][0-9]{9}")


def country_of(phone: str) -> str:
    """The ISO 3166 alpha-2 region of an E.164 number (as the input codec admits them),
    exactly as ``phonenumbers.region_code_for_number(phonenumbers.parse(phone))``
    gives it, ``UNPLACED`` when that gives none. Per sent event, so cheap: a code
    with one region is a dict lookup (calling codes are prefix-free, and ``parse``
    takes the first of 1-3 digits that is one); a shared code parses the whole
    number, once per number (cached)."""
    for end in (2, 3, 4):
        code = phone[1:end]
        if code in _REGION_OF_CODE:
            region = _REGION_OF_CODE[code]
            return region if region is not None else _shared_code_country(phone, code)
    return UNPLACED


@functools.lru_cache(maxsize=65536)
def _shared_code_country(phone: str, code: str) -> str:
    national = phone[1 + len(code):]
    if code == "1" and _NANP_NATIONAL.fullmatch(national):
        # What ``parse`` makes of it (no national prefix "1" to strip, no leading
        # zero), without its 25 us of work: half of this path's cost for +1.
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
    else:
        try:
            number = phonenumbers.parse(phone, None)
        except phonenumbers.NumberParseException:
            return UNPLACED
    region = phonenumbers.region_code_for_number(number)
    if region is None or region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        return UNPLACED
    return region


def clear_country_cache() -> None:
    """Forget the numbers placed so far (a benchmark or a test starts cold)."""
    _shared_code_country.cache_clear()
