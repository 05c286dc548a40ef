"""A realistic, messy A/B campaign as JSON-lines events (for the demo and tests).

Messy on purpose: events shuffled (receipts and clicks before their sends),
duplicate deliveries of the same event, intermediate QUEUED/SENT receipts,
terminal receipts superseded by later ones, REJECTED sends, contacts that get
several messages, clicks, replies and STOP replies; with ``retry_rate``, retries
(``retry_of``) of failed messages, which may fail again, be delivered, clicked,
replied to.
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
    retry_rate: float = 0.0,
) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    if start_ms is None:  # three hours ago, on the hour: recent enough for every window
        hour = 3_600_000
        start_ms = int(time.time() * 1000) // hour * hour - 3 * hour
    events: list[dict[str, Any]] = []
    contacts = max(1, int(messages * 0.8))  # some contacts get two messages
    for n in range(messages):
        events.extend(_message_events(rng, campaign_id, n, contacts, start_ms, variants))
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
