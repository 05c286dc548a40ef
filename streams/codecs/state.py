"""Plain-dict (JSON) forms of states and contributions kept in Faust tables and
internal topics. Pure data mapping; the dict shapes are the changelog format.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from projections.events import (
    DeliveryStatus,
    MessageSent,
    ReceiptReceived,
    SendOutcome,
)
from projections.message import MessageState
from projections.message_log import MessageLogRow
from projections.metrics import (
    ContributionFields,
    MessageContribution,
)
from streams.codecs.phones import country_of


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, shallow (``dataclasses.asdict`` deep-copies
    every value and was most of the worker's CPU time). Values are immutable."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _sent_to(sent: MessageSent | None) -> dict[str, Any] | None:
    return None if sent is None else _fields(sent) | {"outcome": sent.outcome.value}


def _sent_from(data: dict[str, Any] | None) -> MessageSent | None:
    if data is None:
        return None
    values = data | {"outcome": SendOutcome(data["outcome"])}
    if "country" not in data:  # stored before issue 22: derived as the decoder does
        values["country"] = country_of(data["phone"])
    return MessageSent(**values)


def _receipt_to(receipt: ReceiptReceived | None) -> dict[str, Any] | None:
    return None if receipt is None else _fields(receipt) | {"status": receipt.status.value}


def _receipt_from(data: dict[str, Any] | None) -> ReceiptReceived | None:
    if data is None:
        return None
    return ReceiptReceived(**(data | {"status": DeliveryStatus(data["status"])}))


_RECEIPTS = ("receipt", "error_receipt", "carrier_receipt")


def state_to_dict(state: MessageState) -> dict[str, Any]:
    data: dict[str, Any] = {
        name: getattr(state, name) for name in MessageState.__dataclass_fields__
    }
    data["seen"] = sorted(state.seen)
    data["replies"] = [list(reply) for reply in state.replies]
    data["clicks"] = [list(click) for click in state.clicks]
    data["sent"] = _sent_to(state.sent)
    for name in _RECEIPTS:
        data[name] = _receipt_to(getattr(state, name))
    return data


def _sorted_set(value: Any) -> list[Any]:
    if isinstance(value, frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_state(state: MessageState, partition: int) -> bytes:
    """The stored and changelogged form of a state: the JSON of ``state_to_dict``
    plus its partition as ``"p"``. orjson writes the dataclasses (and their enums)
    itself, as the objects ``state_to_dict`` builds (a test holds the two equal)."""
    body = orjson.dumps(state, default=_sorted_set, option=_KEYS)
    return b"%s,\"p\":%d}" % (body[:-1], partition)


def as_dict(value: dict[str, Any] | bytes) -> dict[str, Any]:
    """A stored table value as a dict: the worker stores JSON bytes, Faust's own
    restore dicts."""
    return loads(value) if value.__class__ is bytes else value  # type: ignore[return-value]


def state_from_dict(data: dict[str, Any]) -> MessageState:
    values = dict(data)
    values.pop("p", None)  # the partition the worker keeps beside the state
    values["seen"] = frozenset(data["seen"])
    values["replies"] = tuple((at, opt_out) for at, opt_out in data["replies"])
    values["clicks"] = _clicks_from(data["clicks"])
    values["sent"] = _sent_from(data["sent"])
    for name in _RECEIPTS:
        values[name] = _receipt_from(data[name])
    return MessageState(**values)


def _clicks_from(stored: list[Any]) -> tuple[tuple[int, bool], ...]:
    """A state's clicks as ``(occurred_at, automated_agent)``. A state stored before
    issue 22 has bare times (sorted): their user agents were not kept, so they read as
    not automated by agent, judged by the time rule alone."""
    return tuple((c, False) if c.__class__ is int else (c[0], c[1]) for c in stored)


def contribution_from_dict(data: dict[str, Any] | None) -> MessageContribution | None:
    return None if data is None else MessageContribution(**data)


def contribution_fields_of(data: dict[str, Any]) -> ContributionFields:
    """The views' fields of a stored contribution dict, without building the object."""
    return (data["campaign_id"], data["variant"], data["contact_id"], data["counts"],
            data["clicked"], data["replied"], data["windows"])


_KEYS = orjson.OPT_NON_STR_KEYS  # int keys become strings, as with ``json``


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: the worker encodes a state, a changelog record and
    an update per message change; ``json`` spent 10 % of its CPU there)."""
    return orjson.dumps(value, option=_KEYS)


loads = orjson.loads

_NO_SEND = b'"sent":null'


def unless_sent(value: dict[str, Any] | bytes) -> dict[str, Any] | None:
    """A stored message state, or ``None`` if it certainly has its ``sent`` event: JSON
    bytes are decoded only if ``"sent":null`` occurs in them (``dumps`` writes no
    spaces), so a restore's orphan count decodes only the few candidates."""
    if isinstance(value, bytes):
        return loads(value) if _NO_SEND in value else None
    return value


def encode_message_update(
    version: int, row: MessageLogRow, contribution: MessageContribution | None
) -> bytes:
    """The record the message stage hands to the campaign stage and the sink: two
    JSON documents on two lines, ``[version, message_id, contribution]`` and the
    row, so that each reader parses only its own part (JSON text has no raw
    newline)."""
    # orjson writes a dataclass as the object of its fields, as ``_fields`` gives them
    return dumps([version, row.message_id, contribution]) + b"\n" + dumps(row)


def _split(data: bytes) -> tuple[bytes, bytes] | None:
    cut = data.find(b"\n")
    return None if cut < 0 else (data[:cut], data[cut + 1:])


_HEAD = re.compile(rb'\[(\d+),("(?:[^"\\]|\\.)*")')


def update_identity(data: bytes) -> tuple[str, int]:
    """(message id, version) of an update, read from the start of its first line
    without decoding the rest (the message-log sink keeps only each message's
    newest update of a batch and decodes the rows of those alone)."""
    head = _HEAD.match(data)
    if head is None:  # the one-object form, or not an update at all
        version, row = decode_update_row(data)
        return row.message_id, version
    return loads(head.group(2)), int(head.group(1))


def decode_update_row(data: bytes) -> tuple[int, MessageLogRow]:
    """What the message-log sink needs of an update: version and row."""
    parts = _split(data)
    if parts is None:  # written before the two-line form: one JSON object
        payload = loads(data)
        return payload["version"], MessageLogRow(**payload["row"])
    head, row = parts
    return int(head[1:head.index(b",")]), MessageLogRow(**loads(row))


def decode_update_head(data: bytes) -> tuple[str, int, dict[str, Any] | None]:
    """What the campaign stage needs of an update: message id, version and the
    contribution as the dict of its fields (the form the ``contributions`` table
    stores as it is; ``contribution_from_dict`` makes it the object)."""
    parts = _split(data)
    if parts is None:  # written before the two-line form: one JSON object
        payload = loads(data)
        return payload["row"]["message_id"], payload["version"], payload["contribution"]
    version, message_id, contribution = loads(parts[0])
    return message_id, version, contribution
