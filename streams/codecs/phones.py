"""What an E.164 number tells: the contact's time zone, from ``phonenumbers``' data.

``phonenumbers`` places a number by its prefix (a New York area code gives
America/New_York). A number it cannot place (``Etc/Unknown``, or not a number at
all) or that it places in several zones (most Russian mobiles, US toll-free numbers)
takes the default zone, and ``by_default`` says so (quiet hours of retries, issue 21).
"""

from __future__ import annotations

import functools
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
