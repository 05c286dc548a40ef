"""Avro at the edge: encode and decode input events, and read the JSON-lines form.

Wire format: Avro single-object encoding (``C3 01`` + the writer schema's 8-byte
CRC-64-AVRO fingerprint, little endian + the schemaless body). The fingerprint
names the writer's schema version, so a record written with an older version is
decoded by schema resolution into the current one (new fields take defaults).

Schemas are parsed once, when this module is imported. Every failure is raised
as ``InvalidEventError`` with a reason that is safe to log.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import fastavro

from projections.errors import InvalidEventError
from projections.events import (
    EVENT_TYPES,
    INPUT_FIELDS,
    DeliveryStatus,
    Event,
    LinkClicked,
    MessageSent,
    ReceiptReceived,
    ReplyReceived,
    SendOutcome,
)
from schemas import (
    CONFLUENT,
    FRAMING,
    MAGIC,
    SchemaVersion,
    by_fingerprint,
    confluent_writer,
    latest,
    load_schemas,
)
from streams.codecs.phones import country_of
from streams.codecs.user_agents import is_automated_agent

EVENT_KINDS: tuple[str, ...] = ("sent", "delivery", "reply", "click")

# Bad-input rules of domain.md section 5.
MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 4096
MIN_OCCURRED_AT = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_MS = 7 * 24 * 3600 * 1000
# ``now_ms`` for a record already judged (the fold's own forwards on message-events):
# no occurred_at is that far ahead, so the far-future rule passes it.
ALREADY_JUDGED_MS = 2**62


def broker_time_ms(timestamp_ms: float | None) -> int | None:
    """The ``now_ms`` that judges an input record: its own broker timestamp (Kafka
    record timestamp, ms), so a replay judges it the same; ``None`` (the wall clock)
    for a record without one (Kafka gives -1; a time before 2000 is no clock either)."""
    if timestamp_ms is None or timestamp_ms < MIN_OCCURRED_AT:
        return None
    return round(timestamp_ms)


_ALL_SCHEMAS = [s for s in load_schemas() if s.name in EVENT_KINDS]
CURRENT: dict[str, SchemaVersion] = {kind: latest(_ALL_SCHEMAS, kind) for kind in EVENT_KINDS}
BY_FINGERPRINT: dict[bytes, SchemaVersion] = by_fingerprint(_ALL_SCHEMAS)

KIND_OF_CLASS: dict[type, str] = EVENT_TYPES


def event_to_record(event: Event) -> dict[str, Any]:
    record: dict[str, Any] = {name: getattr(event, name) for name in INPUT_FIELDS[type(event)]}
    for key in ("outcome", "status"):
        if key in record:
            record[key] = record[key].value
    return record


def _defaults(schema: SchemaVersion) -> dict[str, Any]:
    return {f["name"]: f["default"] for f in schema.parsed["fields"] if "default" in f}


_DEFAULTS: dict[bytes, dict[str, Any]] = {s.fingerprint: _defaults(s) for s in _ALL_SCHEMAS}


def encode_record(
    kind: str, record: Mapping[str, Any], schema: SchemaVersion | None = None
) -> bytes:
    """Single-object-encode a record with the current (or the given) schema version.
    A field the record lacks takes its schema default (a record built for an older
    version still encodes); an unknown field or a missing required one is refused."""
    schema = schema or CURRENT[kind]
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(schema.fingerprint)
    try:
        fastavro.schemaless_writer(out, schema.parsed, _DEFAULTS[schema.fingerprint] | dict(record),
                                   strict=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidEventError(f"{kind} record does not match its schema: {exc}") from exc
    return out.getvalue()


def encode_event(event: Event) -> bytes:
    return encode_record(KIND_OF_CLASS[type(event)], event_to_record(event))


def _confluent_writer(data: bytes) -> SchemaVersion:
    """The writer schema of a Confluent-framed input record (its id's, ``FRAMING``:
    the fold and the events sink resolve a batch's ids before they decode it)."""
    if data is None or len(data) < 5 or data[0] != CONFLUENT:
        raise InvalidEventError("not an Avro single-object-encoded record")
    schema_id = int.from_bytes(data[1:5], "big")
    schema = confluent_writer(schema_id)
    if schema is None:
        raise InvalidEventError(
            f"schema id {schema_id}: the schema registry has no Avro schema under it"
            if FRAMING.lookup is not None else
            f"Confluent-framed (schema id {schema_id}) but no schema registry is set "
            "(CA_SCHEMA_REGISTRY_URL)")
    if schema.name not in CURRENT:
        raise InvalidEventError(f"schema id {schema_id} is not an input event's schema")
    return schema


def decode_event(data: bytes, now_ms: int | None = None) -> Event:
    """Decode one event, single-object-encoded or Confluent-framed (told apart by the
    first byte), and check domain.md's bad-input rules.

    ``now_ms``: what "the future" is judged against: the record's broker timestamp
    (``broker_time_ms``) for a consumed record; ``None``: the wall clock."""
    if data is not None and data[:2] == MAGIC and len(data) >= 10:
        start = 10
        found = BY_FINGERPRINT.get(data[2:10])
        if found is None:
            raise InvalidEventError(f"unknown schema fingerprint {data[2:10].hex()}")
        schema = found
    else:
        start = 5
        schema = _confluent_writer(data)
    body = io.BytesIO(data[start:])
    try:
        record = fastavro.schemaless_reader(body, schema.plain, CURRENT[schema.name].plain)
    except Exception as exc:  # fastavro raises many kinds on corrupt bytes
        reason = f"{schema.name} record does not decode: {type(exc).__name__}"
        raise InvalidEventError(reason) from exc
    # Bytes after the record are not part of any event (and would let a record of any
    # size through: valid events are small, their fields bounded).
    if body.tell() != len(data) - start:
        raise InvalidEventError(
            f"{schema.name} record has {len(data) - start - body.tell()} bytes after its end")
    if not isinstance(record, dict):
        raise InvalidEventError(f"{schema.name} record is not a record")
    return record_to_event(schema.name, record, now_ms)


def decode_input(data: bytes, topic_kind: str | None,
                 now_ms: int | None = None) -> tuple[Event, str]:
    """The rule for an input record, shared by the fold and the events sink: it decodes
    (``decode_event``, judged at ``now_ms``: both pass the record's broker timestamp,
    ``broker_time_ms``) and is of the kind its topic carries (``None``: any kind). The
    event and its kind, or ``InvalidEventError``."""
    event = decode_event(data, now_ms)
    kind = EVENT_TYPES[type(event)]
    if topic_kind is not None and kind != topic_kind:
        raise InvalidEventError(f"a {kind} record on the {topic_kind} topic")
    return event, kind


def _text(record: Mapping[str, Any], name: str, *, required: bool, limit: int) -> str | None:
    value = record.get(name)
    if value is None:
        if required:
            raise InvalidEventError(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise InvalidEventError(f"{name} must be a string")
    if required and not value.strip():
        raise InvalidEventError(f"{name} is empty")
    if len(value) > limit:
        raise InvalidEventError(f"{name} is longer than {limit} characters")
    return value


# An id is a name, never markup or a statement: no control characters (C0, DEL, C1)
# and none of the characters that quote or end SQL (ids are written with parameters
# everywhere; a record whose ids look like an injection is rejected all the same).
NOT_IN_ID = re.compile(r"[\x00-\x1f\x7f-\x9f'\";\\`]")


def _id(record: Mapping[str, Any], name: str) -> str:
    value = _text(record, name, required=True, limit=MAX_ID_LENGTH)
    assert value is not None  # noqa: S101 - required=True never returns None
    return _id_characters(name, value)


def _id_characters(name: str, value: str) -> str:
    found = NOT_IN_ID.search(value)
    if found is not None:
        char = found.group()
        what = repr(char) if char.isprintable() else "a control character"
        raise InvalidEventError(f"{name} has {what}, not allowed in an id")
    return value


def _opt(record: Mapping[str, Any], name: str) -> str | None:
    return _text(record, name, required=False, limit=MAX_TEXT_LENGTH)


def _occurred_at(record: Mapping[str, Any], now_ms: int | None) -> int:
    value = record.get("occurred_at")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError("occurred_at must be epoch milliseconds")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if value < MIN_OCCURRED_AT:
        raise InvalidEventError("occurred_at is before 2000-01-01")
    if value > now + MAX_FUTURE_SKEW_MS:
        raise InvalidEventError("occurred_at is more than 7 days in the future")
    return value


def _enum(enum_type: type[SendOutcome] | type[DeliveryStatus], value: Any, name: str) -> Any:
    try:
        return enum_type(value)
    except ValueError as exc:
        raise InvalidEventError(f"{name} has unknown value {str(value)[:32]!r}") from exc


_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _phone(record: Mapping[str, Any]) -> str:
    value = _id(record, "phone")
    if not _PHONE.match(value):
        raise InvalidEventError("phone is not E.164")
    return value


def _sent(r: Mapping[str, Any], now: int | None) -> MessageSent:
    segments = r.get("segments", 1)
    if isinstance(segments, bool) or not isinstance(segments, int) or not 1 <= segments <= 100:
        raise InvalidEventError("segments must be an integer from 1 to 100")
    phone = _phone(r)
    return MessageSent(
        event_id=_id(r, "event_id"),
        message_id=_id(r, "message_id"),
        occurred_at=_occurred_at(r, now),
        campaign_id=_id(r, "campaign_id"),
        variant=_id_characters("variant", _text(r, "variant", required=False,
                                                  limit=MAX_ID_LENGTH) or "") or None,
        contact_id=_id(r, "contact_id"),
        contact_name=_opt(r, "contact_name"),
        phone=phone,
        outcome=_enum(SendOutcome, r.get("outcome"), "outcome"),
        error_code=_text(r, "error_code", required=False, limit=MAX_ID_LENGTH),
        error_description=_opt(r, "error_description"),
        segments=segments,
        retry_of=_retry_of(r),
        country=country_of(phone),  # issue 22, derived once here (cached per number)
    )


def _retry_of(r: Mapping[str, Any]) -> str | None:
    # An id like message_id when present. Empty is refused rather than read as
    # "no retry": either guess would misplace the message in the A/B statistics.
    if r.get("retry_of") is None:
        return None
    value = _id(r, "retry_of")
    if value == r.get("message_id"):
        raise InvalidEventError("retry_of names the message itself")
    return value


def _delivery(r: Mapping[str, Any], now: int | None) -> ReceiptReceived:
    return ReceiptReceived(
        event_id=_id(r, "event_id"),
        message_id=_id(r, "message_id"),
        occurred_at=_occurred_at(r, now),
        status=_enum(DeliveryStatus, r.get("status"), "status"),
        error_code=_text(r, "error_code", required=False, limit=MAX_ID_LENGTH),
        error_description=_opt(r, "error_description"),
        carrier=_text(r, "carrier", required=False, limit=MAX_ID_LENGTH),
    )


def _reply(r: Mapping[str, Any], now: int | None) -> ReplyReceived:
    body = _text(r, "body", required=False, limit=MAX_TEXT_LENGTH)
    if body is None:
        raise InvalidEventError("body is missing")
    return ReplyReceived(
        event_id=_id(r, "event_id"),
        message_id=_id(r, "message_id"),
        occurred_at=_occurred_at(r, now),
        contact_id=_id(r, "contact_id"),
        phone=_phone(r),
        body=body,
    )


def _click(r: Mapping[str, Any], now: int | None) -> LinkClicked:
    user_agent = _opt(r, "user_agent")
    return LinkClicked(
        event_id=_id(r, "event_id"),
        message_id=_id(r, "message_id"),
        occurred_at=_occurred_at(r, now),
        link_id=_id(r, "link_id"),
        user_agent=user_agent,
        automated_agent=is_automated_agent(user_agent),  # domain.md 3b, judged once here
    )


_BUILDERS: dict[str, Callable[[Mapping[str, Any], int | None], Event]] = {
    "sent": _sent,
    "delivery": _delivery,
    "reply": _reply,
    "click": _click,
}


def record_to_event(kind: str, record: Mapping[str, Any], now_ms: int | None = None) -> Event:
    return _BUILDERS[kind](record, now_ms)


# --- the JSON-lines form -----------------------------------------------------------


def _json_timestamp(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidEventError("occurred_at must be ISO-8601 with offset or epoch millis")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidEventError("occurred_at is not ISO-8601") from exc
        if parsed.tzinfo is None:
            raise InvalidEventError("occurred_at has no UTC offset")
        return int(parsed.timestamp() * 1000)
    raise InvalidEventError("occurred_at must be ISO-8601 with offset or epoch millis")


def parse_json_line(line: str, now_ms: int | None = None) -> tuple[str, Event, bytes]:
    """One JSON-lines event: validated against its schema and the rules.

    Returns (kind, event, Avro bytes ready to publish).
    """
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidEventError(f"not valid JSON ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise InvalidEventError("a line must be a JSON object")
    kind = obj.pop("type", None)
    if kind not in EVENT_KINDS:
        raise InvalidEventError(f"type must be one of {', '.join(EVENT_KINDS)}")
    if "occurred_at" in obj:
        obj["occurred_at"] = _json_timestamp(obj["occurred_at"])
    fields = {f["name"] for f in CURRENT[kind].parsed["fields"]}
    unknown = sorted(set(obj) - fields)
    if unknown:
        raise InvalidEventError(f"unknown field(s) for {kind}: {', '.join(unknown)[:200]}")
    event = record_to_event(kind, obj, now_ms)
    data = encode_event(event)
    return kind, event, data

