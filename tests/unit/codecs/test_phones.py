"""A contact's time zone from the E.164 number (quiet hours of retries, issue 21)."""

from __future__ import annotations

import pytest

from streams.codecs.phones import Placement, contact_zone


def test_numbers_are_placed_by_their_prefix() -> None:
    assert contact_zone("+12125550100", "UTC") == Placement("America/New_York", False)
    assert contact_zone("+4915123456789", "UTC") == Placement("Europe/Berlin", False)


@pytest.mark.parametrize("phone", [
    "+79161234567",  # a Russian mobile: zones from Kaliningrad to Kamchatka
    "+18005550100",  # US toll-free
    "+447700900123",  # a UK drama number: Etc/Unknown
    "+999123",  # not a number phonenumbers can parse
    "not a phone",
])
def test_a_number_with_no_single_zone_takes_the_default(phone: str) -> None:
    assert contact_zone(phone, "Europe/Paris") == Placement("Europe/Paris", True)
