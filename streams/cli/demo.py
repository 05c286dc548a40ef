"""A realistic, messy A/B campaign as JSON-lines events (for the demo and tests).

Messy on purpose: events shuffled (receipts and clicks before their sends),
duplicate deliveries, intermediate QUEUED/SENT receipts, terminal receipts superseded
by later ones, REJECTED sends, contacts with several messages, clicks, replies and
STOP replies; with ``retry_rate``, retries (``retry_of``) of failed messages.

Issue 22's numbers (domain.md 3b), each off by default (an rng of their own, so the
campaigns tests draw stay as they were): ``countries`` (several countries, numbers
no one can place, each country's carriers, failures of every category),
``previews`` (a share of delivered messages whose link a preview fetcher opens as
the message lands), ``lost_receipts`` (final receipts that never come: ``unknown``
once CA_RECEIPT_TIMEOUT has passed) and ``recent`` (sent in the last minute: pending).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FIRST_NAMES = ("Ana", "Bo", "Chen", "Dana", "Émile", "Farah", "Gus", "Hana", "Ivo", "Jo")
LAST_NAMES = ("O'Brien", "Smith, Jr.", 'Lee "Lucky"', "Nguyễn", "Kowalski", "Ørsted", "🙂 Fox")
REPLY_BODIES = ("Thanks!", "Who is this?", "yes please", " STOP ", "stop", "Unsubscribe", "Quit")
CARRIERS = ("att", "verizon", "tmobile")
# ``countries``: (region, number prefix, digits after it, its carriers), valid numbers
# by phonenumbers; +1 555 numbers are placed nowhere (ZZ). Weights: a US-heavy list.
COUNTRIES: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("US", "+1202555", 4, CARRIERS),
    ("US", "+1202555", 4, CARRIERS),
    ("US", "+1202555", 4, CARRIERS),
    ("GB", "+447400", 6, ("ee", "vodafone-uk")),
    ("DE", "+49151", 8, ("telekom-de", "o2-de")),
    ("FR", "+336", 8, ("orange-fr",)),
    ("IN", "+9198", 8, ("jio", "airtel")),
    ("BR", "+55119", 8, ("vivo",)),
    ("ZZ", "+1555", 7, CARRIERS),
)
# ``countries``: receipt failure codes of every category (docs/failures.md).
FAILURE_CODES: tuple[tuple[str, str], ...] = (
    ("30003", "Unreachable destination handset"),  # temporary
    ("30003", "Unreachable destination handset"),
    ("30005", "Unknown destination handset"),  # invalid number
    ("30006", "Landline or unreachable carrier"),  # not a mobile
    ("30007", "Carrier violation"),  # blocked or filtered
    ("30008", "Unknown error"),  # unclassified
)
# ``previews``: messaging apps' link-preview fetchers (streams/codecs/user_agents.py),
# and the browsers of the people who click after them.
PREVIEW_AGENTS = ("WhatsApp/2.23.20.0 A", "facebookexternalhit/1.1",
                  "TelegramBot (like TwitterBot)", "Slackbot-LinkExpanding 1.0")
BROWSERS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/124.0.0.0 Mobile Safari/537.36")


@dataclass(frozen=True)
class _Extras:
    """Issue 22's messiness (see the module docstring), from its own rng."""

    rng: random.Random
    countries: bool
    previews: float
    lost_receipts: float
    recent: float
    now_ms: int


def generate_campaign(
    campaign_id: str = "demo-campaign",
    messages: int = 200,
    *,
    seed: int = 7,
    start_ms: int | None = None,
    variants: tuple[str, ...] = ("A", "B"),
    duplicate_rate: float = 0.1,
    shuffle: bool = True,
    retry_rate: float = 0.0,
    countries: bool = False,
    previews: float = 0.0,
    lost_receipts: float = 0.0,
    recent: float = 0.0,
) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    now_ms = int(time.time() * 1000)
    if start_ms is None:  # three hours ago, on the hour: recent enough for every window
        hour = 3_600_000
        start_ms = now_ms // hour * hour - 3 * hour
    extras = None
    if countries or previews or lost_receipts or recent:
        extras = _Extras(random.Random(seed + 2), countries,  # noqa: S311 - as above
                         previews, lost_receipts, recent, max(now_ms, start_ms))
    events: list[dict[str, Any]] = []
    contacts = max(1, int(messages * 0.8))  # some contacts get two messages
    for n in range(messages):
        events.extend(_message_events(rng, campaign_id, n, contacts, start_ms, variants,
                                      extras))
    if retry_rate > 0:
        retry_rng = random.Random(seed + 1)  # noqa: S311 - as above
        events.extend(_retries(events, retry_rng, retry_rate, contacts, variants))
    dups = [dict(e) for e in events if rng.random() < duplicate_rate]
    events.extend(dups)
    if shuffle:
        rng.shuffle(events)
    return events


def _message_events(
    rng: random.Random,
    campaign_id: str,
    n: int,
    contacts: int,
    start_ms: int,
    variants: tuple[str, ...],
    extras: _Extras | None = None,
) -> Iterator[dict[str, Any]]:
    message_id = f"{campaign_id}-m{n:06d}"
    contact = rng.randrange(contacts)
    sent_at = start_ms + n * 50 + rng.randrange(50)
    ev = _ids(message_id)
    rejected = rng.random() < 0.03
    phone, carriers = _phone(contact, extras)
    recent = extras is not None and not rejected and extras.rng.random() < extras.recent
    if recent:
        assert extras is not None  # noqa: S101 - for mypy
        sent_at = extras.now_ms - extras.rng.randrange(1_000, 60_000)
    yield {
        "type": "sent",
        "event_id": next(ev),
        "message_id": message_id,
        "occurred_at": sent_at,
        "campaign_id": campaign_id,
        "variant": variants[n % len(variants)] if variants else None,
        "contact_id": f"contact-{contact}",
        "contact_name": f"{FIRST_NAMES[contact % 10]} {LAST_NAMES[contact % 7]}",
        "phone": phone,
        "outcome": "REJECTED" if rejected else "ACCEPTED",
        "error_code": "21211" if rejected else None,
        "error_description": "Invalid 'To' phone number" if rejected else None,
        "segments": rng.choice((1, 1, 2)),
    }
    carrier = rng.choice(carriers)
    t = sent_at
    for status in ("QUEUED", "SENT"):
        if rng.random() < 0.5:
            t += rng.randrange(10, 500)
            yield _receipt(next(ev), message_id, t, status, carrier)
    roll = rng.random()
    if roll < 0.08 or recent:
        return  # no final receipt yet: pending
    if extras is not None and not rejected and extras.rng.random() < extras.lost_receipts:
        return  # the carrier never sends it: unknown once CA_RECEIPT_TIMEOUT has passed
    t += rng.randrange(500, 20_000)
    final = "DELIVERED" if roll < 0.85 else rng.choice(("UNDELIVERED", "FAILED"))
    failure = extras.rng.choice(FAILURE_CODES) if extras is not None and extras.countries \
        else None
    yield _receipt(next(ev), message_id, t, final, carrier, failure)
    if rng.random() < 0.05:  # a later receipt supersedes the first terminal one
        superseding = "UNDELIVERED" if final == "DELIVERED" else "DELIVERED"
        yield _receipt(next(ev), message_id, t + rng.randrange(1, 5000), superseding, None,
                       failure)
    if rng.random() < 0.02:  # a late SENT after the terminal one changes nothing
        yield _receipt(next(ev), message_id, t + 10_000, "SENT", carrier)
    if final == "DELIVERED" and extras is not None and extras.rng.random() < extras.previews:
        yield {  # the messaging app's preview, as the message lands (either side of it)
            "type": "click",
            "event_id": f"{message_id}-p0",
            "message_id": message_id,
            "occurred_at": t + extras.rng.randrange(-300, 1_500),
            "link_id": f"lnk-{message_id}",
            "user_agent": extras.rng.choice(PREVIEW_AGENTS),
        }
    if final == "DELIVERED" and rng.random() < 0.3:
        for _ in range(rng.choice((1, 1, 2, 3))):
            t += rng.randrange(1000, 600_000)
            agent = rng.choice(("Mozilla/5.0 (iPhone)", "Mozilla/5.0 (Android)", None))
            if extras is not None and extras.previews and agent is not None:
                agent = extras.rng.choice(BROWSERS)
            yield {
                "type": "click",
                "event_id": next(ev),
                "message_id": message_id,
                "occurred_at": t,
                "link_id": f"lnk-{message_id}",
                "user_agent": agent,
            }
    if final == "DELIVERED" and rng.random() < 0.15:
        t += rng.randrange(1000, 900_000)
        yield {
            "type": "reply",
            "event_id": next(ev),
            "message_id": message_id,
            "occurred_at": t,
            "contact_id": f"contact-{contact}",
            "phone": phone,
            "body": rng.choice(REPLY_BODIES),
        }


def _phone(contact: int, extras: _Extras | None) -> tuple[str, tuple[str, ...]]:
    """The contact's number and the carriers that may serve it (the same for every
    message to the contact: its country follows from the contact alone)."""
    if extras is None or not extras.countries:
        return f"+1555{contact:07d}", CARRIERS
    _, prefix, digits, carriers = COUNTRIES[contact % len(COUNTRIES)]
    return f"{prefix}{contact % 10 ** digits:0{digits}d}", carriers


def _retries(events: list[dict[str, Any]], rng: random.Random, rate: float, contacts: int,
             variants: tuple[str, ...]) -> list[dict[str, Any]]:
    """A retry (``<id>-r1``, same contact and variant, an hour later) of a share of
    the messages with a failure (rejected, or a failed receipt, superseded or not);
    its own rng, so the campaign without retries stays as it was."""
    failed = [e["message_id"] for e in events if e.get("outcome") == "REJECTED"
              or e.get("status") in ("UNDELIVERED", "FAILED")]
    sends = {e["message_id"]: e for e in events if e["type"] == "sent"}
    out: list[dict[str, Any]] = []
    for original in dict.fromkeys(failed):
        if rng.random() >= rate:
            continue
        first = sends[original]
        retry_id = f"{original}-r1"
        for e in _message_events(rng, first["campaign_id"], 0, contacts,
                                 first["occurred_at"] + 3_600_000, variants):
            e = e | {"message_id": retry_id,
                     "event_id": retry_id + e["event_id"].removeprefix(e["message_id"])}
            if e["type"] == "sent":
                e |= {k: first[k] for k in ("variant", "contact_id", "contact_name", "phone")}
                e["retry_of"] = original
            elif e["type"] == "reply":
                e |= {"contact_id": first["contact_id"], "phone": first["phone"]}
            out.append(e)
    return out


def _ids(message_id: str) -> Iterator[str]:
    n = 0
    while True:
        yield f"{message_id}-e{n}"
        n += 1


def _receipt(
    event_id: str, message_id: str, t: int, status: str, carrier: str | None,
    failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    failed = status in ("UNDELIVERED", "FAILED")
    code, description = failure or ("30003", "Unreachable destination handset")
    return {
        "type": "delivery",
        "event_id": event_id,
        "message_id": message_id,
        "occurred_at": t,
        "status": status,
        "error_code": code if failed else None,
        "error_description": description if failed else None,
        "carrier": carrier,
    }
