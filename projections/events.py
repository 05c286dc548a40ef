"""Input events of domain.md section 1, as frozen value objects.

Decoding (Avro, JSON) lives in ``streams/codecs/input_avro.py``; these types know nothing of it.
Timestamps are epoch milliseconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SendOutcome(StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class DeliveryStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    UNDELIVERED = "UNDELIVERED"
    FAILED = "FAILED"


TERMINAL_STATUSES = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED}
)


@dataclass(frozen=True, slots=True)
class MessageSent:
    event_id: str
    message_id: str
    occurred_at: int
    campaign_id: str
    variant: str | None
    contact_id: str
    contact_name: str | None
    phone: str
    outcome: SendOutcome
    error_code: str | None = None
    error_description: str | None = None
    segments: int = 1
    # domain.md 3b: the message_id this message retries; None for a first attempt.
    retry_of: str | None = None
    # Not in the record: the phone's ISO 3166 region, derived by the input codec when
    # it decodes the event (streams/codecs/phones.py: "ZZ", a number it cannot place).
    country: str = "ZZ"


@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    event_id: str
    message_id: str
    occurred_at: int
    status: DeliveryStatus
    error_code: str | None = None
    error_description: str | None = None
    carrier: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    event_id: str
    message_id: str
    occurred_at: int
    contact_id: str
    phone: str
    body: str


@dataclass(frozen=True, slots=True)
class LinkClicked:
    event_id: str
    message_id: str
    occurred_at: int
    link_id: str
    user_agent: str | None = None
    # domain.md 3b: the user agent is a known bot or link-preview fetcher. Not an input
    # field: judged from ``user_agent`` when the click is decoded
    # (streams/codecs/user_agents.py), so ``projections/`` needs no list of agents.
    automated_agent: bool = False


Event = MessageSent | ReceiptReceived | ReplyReceived | LinkClicked

# The `type` discriminator of the JSON-lines form, per event class.
EVENT_TYPES: dict[type, str] = {
    MessageSent: "sent",
    ReceiptReceived: "delivery",
    ReplyReceived: "reply",
    LinkClicked: "click",
}

# Fields judged at decoding rather than read from the input (``DERIVED_FIELDS``); the
# input fields of each event class are the others, as its Avro schema has them.
DERIVED_FIELDS: frozenset[str] = frozenset({"automated_agent", "country"})
INPUT_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(name for name in vars(cls)["__dataclass_fields__"] if name not in DERIVED_FIELDS)
    for cls in EVENT_TYPES
}
