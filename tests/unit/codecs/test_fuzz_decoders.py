"""Fuzz (hypothesis) of the input decoders: arbitrary bytes and mutated valid encodings
into ``decode_event`` / ``decode_input``, arbitrary text and JSON into
``parse_json_line``. Nothing escapes but ``InvalidEventError`` (issue 19 item 4)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from projections.errors import InvalidEventError
from schemas import MAGIC
from streams.cli.demo import generate_campaign
from streams.codecs import input_avro as codec

NOW = 1_800_000_000_000
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

VALID: list[bytes] = [codec.parse_json_line(json.dumps(e), now_ms=NOW)[2]
                      for e in generate_campaign("fuzz", messages=6, seed=19)]
FINGERPRINTS = sorted(codec.BY_FINGERPRINT)


def decodes_or_rejects(data: bytes) -> None:
    for run in (lambda: codec.decode_event(data, NOW),
                lambda: codec.decode_input(data, None, NOW),
                lambda: codec.decode_input(data, "sent", NOW),
                lambda: codec.decode_event(data)):
        try:
            run()
        except InvalidEventError as exc:
            assert exc.reason and isinstance(exc.reason, str)


def parses_or_rejects(line: str) -> None:
    try:
        kind, event, data = codec.parse_json_line(line, now_ms=NOW)
    except InvalidEventError as exc:
        assert exc.reason and isinstance(exc.reason, str)
    else:  # what it accepts decodes to the same event
        assert codec.decode_event(data, NOW) == event and kind in codec.EVENT_KINDS


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_rejects(data)


@FAST
@given(st.sampled_from(FINGERPRINTS), st.binary(max_size=300))
def test_arbitrary_bodies_behind_a_known_fingerprint(fingerprint: bytes, body: bytes) -> None:
    decodes_or_rejects(MAGIC + fingerprint + body)


@st.composite
def mutated(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "truncate", "append", "fingerprint", "byte"]))
        if how == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif how == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif how == "append":
            data += draw(st.binary(min_size=1, max_size=40))
        elif how == "fingerprint" and len(data) >= 10:
            other = draw(st.one_of(st.sampled_from(FINGERPRINTS),
                                   st.binary(min_size=8, max_size=8)))
            data[2:10] = other
    return bytes(data)


@FAST
@given(mutated())
@example(VALID[0][:11])  # a fingerprint and one byte of body
@example(VALID[0] + b"\x00")  # a byte after the record
def test_mutated_valid_encodings(data: bytes) -> None:
    decodes_or_rejects(data)


@FAST
@given(st.text(max_size=200))
def test_arbitrary_text(line: str) -> None:
    parses_or_rejects(line)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10,
)
FIELDS = sorted({f["name"] for s in codec.CURRENT.values() for f in s.parsed["fields"]})


@st.composite
def event_like(draw: Any) -> str:
    """A JSON object of an event's shape with arbitrary values in its fields."""
    obj: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(
        generate_campaign("fuzz", messages=2, seed=19)))))
    for name in draw(st.lists(st.sampled_from([*FIELDS, "type", "extra"]), max_size=4)):
        if draw(st.booleans()):
            obj[name] = draw(JSON)
        else:
            obj.pop(name, None)
    return json.dumps(obj)


@FAST
@given(st.one_of(JSON.map(json.dumps), event_like()))
@example('{"type": "sent", "occurred_at": "2026-01-01T00:00:00+99:00"}')
@example('{"type": "sent", "occurred_at": 1e400}')
@example('{"type": "sent", "segments": 1e400}')
@example('{"type": "click", "occurred_at": "0001-01-01T00:00:00+01:00"}')
@example(json.dumps({"type": "click", "event_id": "\ud800", "message_id": "m", "link_id": "l",
                     "occurred_at": NOW}))  # a lone surrogate: not encodable as UTF-8
def test_arbitrary_json(line: str) -> None:
    parses_or_rejects(line)
