import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.errors import InvalidEventError
from projections.events import (
    DeliveryStatus,
    LinkClicked,
    MessageSent,
    ReceiptReceived,
    ReplyReceived,
    SendOutcome,
)
from streams.cli.demo import generate_campaign
from streams.codecs import input_avro as codec

NOW = 1_800_000_000_000


def _sent(**overrides):
    line = {
        "type": "sent", "event_id": "e1", "message_id": "m1",
        "occurred_at": "2026-11-27T08:00:00+01:00", "campaign_id": "c1", "variant": "A",
        "contact_id": "k1", "contact_name": "Zoë, \"Z\"", "phone": "+15551234567",
        "outcome": "ACCEPTED", "segments": 2,
    }
    line.update(overrides)
    return json.dumps(line)


def test_json_line_round_trips_through_avro():
    kind, event, data = codec.parse_json_line(_sent(), now_ms=NOW)
    assert kind == "sent"
    assert event.occurred_at == 1_795_762_800_000  # 07:00Z
    assert data[:2] == b"\xc3\x01"
    assert codec.decode_event(data, now_ms=NOW) == event


def test_every_demo_event_round_trips():
    for line in generate_campaign(messages=300):
        _, event, data = codec.parse_json_line(json.dumps(line), now_ms=NOW)
        assert codec.decode_event(data, now_ms=NOW) == event


@pytest.mark.parametrize("version", [1, 2])
def test_record_written_with_old_schema_reads_with_current(version):
    old = next(s for s in codec.BY_FINGERPRINT.values()
               if s.name == "sent" and s.version == version)
    assert codec.CURRENT["sent"].version == 3
    _, event, _ = codec.parse_json_line(_sent(segments=3), now_ms=NOW)
    record = codec.event_to_record(event)
    del record["retry_of"]  # v1 and v2 have no retry_of
    if version == 1:
        del record["segments"]  # v1 has no segments
    data = codec.encode_record("sent", record, old)
    decoded = codec.decode_event(data, now_ms=NOW)
    assert decoded.segments == (1 if version == 1 else 3)  # the v2 default
    assert decoded.retry_of is None  # the v3 default: a first attempt
    assert decoded.message_id == "m1"


def test_retry_of_round_trips_through_json_and_avro():
    _, event, data = codec.parse_json_line(_sent(message_id="m2", retry_of="m1"), now_ms=NOW)
    assert event.retry_of == "m1"
    assert codec.decode_event(data, now_ms=NOW) == event
    _, first, _ = codec.parse_json_line(_sent(retry_of=None), now_ms=NOW)
    assert first.retry_of is None


def test_a_record_built_for_an_older_version_encodes_with_the_defaults():
    record = codec.event_to_record(codec.parse_json_line(_sent(), now_ms=NOW)[1])
    del record["retry_of"]
    assert codec.decode_event(codec.encode_record("sent", record), now_ms=NOW).retry_of is None
    with pytest.raises(InvalidEventError, match="more fields"):
        codec.encode_record("sent", record | {"surprise": 1})
    del record["phone"]  # required: no default to take
    with pytest.raises(InvalidEventError, match="phone"):
        codec.encode_record("sent", record)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1]", "JSON object"),
        (json.dumps({"type": "bogus"}), "type must be"),
        (_sent(event_id=""), "event_id is empty"),
        (_sent(message_id="   "), "message_id is empty"),
        (_sent(outcome="MAYBE"), "outcome has unknown value"),
        (_sent(phone="555-1234"), "not E.164"),
        (_sent(occurred_at="2099-01-01T00:00:00Z"), "future"),
        (_sent(occurred_at="2026-01-01T00:00:00"), "no UTC offset"),
        (_sent(contact_name="x" * 5000), "longer than"),
        (_sent(surprise=1), "unknown field"),
        (_sent(segments=0), "segments"),
        (_sent(event_id="e\u00001"), "event_id has a control character"),
        (_sent(contact_id="k\n1"), "contact_id has a control character"),
        (_sent(campaign_id="c\u00851"), "campaign_id has a control character"),
        (_sent(message_id="m1'); DROP TABLE events; --"), "message_id has \"'\""),
        (_sent(variant="A; DELETE FROM message_log"), "variant has ';'"),
        (_sent(retry_of=""), "retry_of is empty"),
        (_sent(retry_of="  "), "retry_of is empty"),
        (_sent(retry_of="m\n0"), "retry_of has a control character"),
        (_sent(retry_of="m0'--"), "retry_of has \"'\""),
        (_sent(retry_of="x" * 300), "retry_of is longer than"),
        (_sent(retry_of="m1"), "retry_of names the message itself"),
        (_sent(retry_of=7), "retry_of must be a string"),
    ],
)
def test_bad_lines_are_rejected_with_a_reason(line, reason):
    with pytest.raises(InvalidEventError) as info:
        codec.parse_json_line(line, now_ms=NOW)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "data", [b"", b"plain text", b"\xc3\x01" + b"\x00" * 8 + b"x", b"\xc3\x01" + b"\xff" * 20]
)
def test_undecodable_bytes_raise_invalid_event(data):
    with pytest.raises(InvalidEventError):
        codec.decode_event(data, now_ms=NOW)


def test_truncated_record_raises_invalid_event():
    _, _, data = codec.parse_json_line(_sent(), now_ms=NOW)
    with pytest.raises(InvalidEventError, match="does not decode"):
        codec.decode_event(data[:-5], now_ms=NOW)


def test_bytes_after_the_record_raise_invalid_event():
    _, _, data = codec.parse_json_line(_sent(), now_ms=NOW)
    assert codec.decode_event(data, now_ms=NOW).message_id == "m1"
    with pytest.raises(InvalidEventError, match="has 1000000 bytes after its end"):
        codec.decode_event(data + b"\x00" * 1_000_000, now_ms=NOW)


texts = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
ids = texts.filter(lambda s: not codec.NOT_IN_ID.search(s))
times = st.integers(min_value=codec.MIN_OCCURRED_AT, max_value=NOW)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.builds(MessageSent, event_id=ids, message_id=ids, occurred_at=times,
                  campaign_id=ids, variant=st.none() | ids, contact_id=ids,
                  contact_name=st.none() | texts, phone=st.just("+447700900123"),
                  outcome=st.sampled_from(SendOutcome), error_code=st.none() | texts,
                  error_description=st.none() | st.text(),
                  segments=st.integers(min_value=1, max_value=100),
                  retry_of=st.none() | ids).filter(lambda e: e.retry_of != e.message_id),
        st.builds(ReceiptReceived, event_id=ids, message_id=ids, occurred_at=times,
                  status=st.sampled_from(DeliveryStatus),
                  error_code=st.none() | texts, error_description=st.none() | st.text(),
                  carrier=st.none() | texts),
        st.builds(ReplyReceived, event_id=ids, message_id=ids, occurred_at=times,
                  contact_id=ids, phone=st.just("+447700900123"), body=st.text()),
        st.builds(LinkClicked, event_id=ids, message_id=ids, occurred_at=times,
                  link_id=ids, user_agent=st.none() | st.text()),
    )
)
def test_avro_round_trip_property(event):
    assert codec.decode_event(codec.encode_event(event), now_ms=NOW) == event


def _spec_fingerprint(canonical: str) -> bytes:
    """CRC-64-AVRO exactly as the Avro specification gives it, little-endian."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in canonical.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def test_fingerprints_are_written_in_the_specifications_byte_order():
    from fastavro.schema import to_parsing_canonical_form

    from schemas import load_schemas

    for schema in load_schemas():
        want = _spec_fingerprint(to_parsing_canonical_form(schema.parsed))
        assert schema.fingerprint == want, schema.name
        assert schema.legacy_fingerprint == want[::-1] != want  # the negative control
    _, _, data = codec.parse_json_line(_sent(), now_ms=NOW)
    assert data[2:10] == codec.CURRENT["sent"].fingerprint


def test_records_written_with_the_old_reversed_fingerprint_still_decode():
    _, event, data = codec.parse_json_line(_sent(), now_ms=NOW)
    legacy = data[:2] + data[2:10][::-1] + data[10:]
    assert codec.decode_event(legacy, now_ms=NOW) == event
    with pytest.raises(InvalidEventError):
        codec.decode_event(data[:2] + bytes(8) + data[10:], now_ms=NOW)
