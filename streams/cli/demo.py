"""A realistic, messy A/B campaign as JSON-lines events (for the demo and tests).

Messy on purpose: events shuffled (receipts and clicks before their sends),
duplicate deliveries of the same event, intermediate QUEUED/SENT receipts,
terminal receipts superseded by later ones, REJECTED sends, contacts that get
several messages, clicks, replies and STOP replies.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

FIRST_NAMES = ("Ana", "Bo", "Chen", "Dana", "Émile", "Farah", "Gus", "Hana", "Ivo", "Jo")
LAST_NAMES = ("O'Brien", "Smith, Jr.", 'Lee "Lucky"', "Nguyễn", "Kowalski", "Ørsted", "🙂 Fox")
REPLY_BODIES = ("Thanks!", "Who is this?", "yes please", " STOP ", "stop", "Unsubscribe", "Quit")
CARRIERS = ("att", "verizon", "tmobile")


def generate_campaign(
    campaign_id: str = "demo-campaign",
    messages: int = 200,
    *,
    seed: int = 7,
    start_ms: int | None = None,
    variants: tuple[str, ...] = ("A", "B"),
    duplicate_rate: float = 0.1,
    shuffle: bool = True,
) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    if start_ms is None:  # three hours ago, on the hour: recent enough for every window
        hour = 3_600_000
        start_ms = int(time.time() * 1000) // hour * hour - 3 * hour
    events: list[dict[str, Any]] = []
    contacts = max(1, int(messages * 0.8))  # some contacts get two messages
    for n in range(messages):
        events.extend(_message_events(rng, campaign_id, n, contacts, start_ms, variants))
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
) -> Iterator[dict[str, Any]]:
    message_id = f"{campaign_id}-m{n:06d}"
    contact = rng.randrange(contacts)
    sent_at = start_ms + n * 50 + rng.randrange(50)
    ev = _ids(message_id)
    rejected = rng.random() < 0.03
    yield {
        "type": "sent",
        "event_id": next(ev),
        "message_id": message_id,
        "occurred_at": sent_at,
        "campaign_id": campaign_id,
        "variant": variants[n % len(variants)] if variants else None,
        "contact_id": f"contact-{contact}",
        "contact_name": f"{FIRST_NAMES[contact % 10]} {LAST_NAMES[contact % 7]}",
        "phone": f"+1555{contact:07d}",
        "outcome": "REJECTED" if rejected else "ACCEPTED",
        "error_code": "21211" if rejected else None,
        "error_description": "Invalid 'To' phone number" if rejected else None,
        "segments": rng.choice((1, 1, 2)),
    }
    carrier = rng.choice(CARRIERS)
    t = sent_at
    for status in ("QUEUED", "SENT"):
        if rng.random() < 0.5:
            t += rng.randrange(10, 500)
            yield _receipt(next(ev), message_id, t, status, carrier)
    roll = rng.random()
    if roll < 0.08:
        return  # no final receipt yet: pending
    t += rng.randrange(500, 20_000)
    final = "DELIVERED" if roll < 0.85 else rng.choice(("UNDELIVERED", "FAILED"))
    yield _receipt(next(ev), message_id, t, final, carrier)
    if rng.random() < 0.05:  # a later receipt supersedes the first terminal one
        superseding = "UNDELIVERED" if final == "DELIVERED" else "DELIVERED"
        yield _receipt(next(ev), message_id, t + rng.randrange(1, 5000), superseding, None)
    if rng.random() < 0.02:  # a late SENT after the terminal one changes nothing
        yield _receipt(next(ev), message_id, t + 10_000, "SENT", carrier)
    if final == "DELIVERED" and rng.random() < 0.3:
        for _ in range(rng.choice((1, 1, 2, 3))):
            t += rng.randrange(1000, 600_000)
            yield {
                "type": "click",
                "event_id": next(ev),
                "message_id": message_id,
                "occurred_at": t,
                "link_id": f"lnk-{message_id}",
                "user_agent": rng.choice(("Mozilla/5.0 (iPhone)", "Mozilla/5.0 (Android)", None)),
            }
    if final == "DELIVERED" and rng.random() < 0.15:
        t += rng.randrange(1000, 900_000)
        yield {
            "type": "reply",
            "event_id": next(ev),
            "message_id": message_id,
            "occurred_at": t,
            "contact_id": f"contact-{contact}",
            "phone": f"+1555{contact:07d}",
            "body": rng.choice(REPLY_BODIES),
        }


def _ids(message_id: str) -> Iterator[str]:
    n = 0
    while True:
        yield f"{message_id}-e{n}"
        n += 1


def _receipt(
    event_id: str, message_id: str, t: int, status: str, carrier: str | None
) -> dict[str, Any]:
    failed = status in ("UNDELIVERED", "FAILED")
    return {
        "type": "delivery",
        "event_id": event_id,
        "message_id": message_id,
        "occurred_at": t,
        "status": status,
        "error_code": "30003" if failed else None,
        "error_description": "Unreachable destination handset" if failed else None,
        "carrier": carrier,
    }
