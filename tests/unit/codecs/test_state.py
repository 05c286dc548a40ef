"""The message-update hand-off: each reader gets its part, old records still read."""

from __future__ import annotations

import json
from dataclasses import asdict

from projections.events import (
    DeliveryStatus,
    MessageSent,
    ReceiptReceived,
    ReplyReceived,
    SendOutcome,
)
from projections.message import MessageState, apply_event
from projections.message_log import message_log_row
from projections.metrics import message_contribution
from streams.codecs import state as serde

T0 = 1_790_000_000_000


def _state() -> MessageState:
    state = MessageState("m-1")
    for event in (
        MessageSent("e1", "m-1", T0, "c-1", "B", "k-1", 'Ann "\\n" Lee\nSecond line',
                    "+15550000001", SendOutcome.ACCEPTED),
        ReceiptReceived("e2", "m-1", T0 + 5_000, DeliveryStatus.DELIVERED, carrier="acme"),
    ):
        state = apply_event(state, event)
    return state


def _decoded(data: bytes) -> tuple[str, int, object]:
    """What the campaign stage reads of an update, its contribution as the object."""
    message_id, version, fields = serde.decode_update_head(data)
    return message_id, version, serde.contribution_from_dict(fields)


def test_each_reader_decodes_its_part_of_the_same_record() -> None:
    state = _state()
    row = message_log_row(state, updated_at=T0 + 9)
    contribution = message_contribution(state)
    assert row is not None and contribution is not None
    data = serde.encode_message_update(state.version, row, contribution)

    assert data.count(b"\n") == 1  # the name's newline is escaped inside the JSON
    assert serde.decode_update_row(data) == (state.version, row)
    assert _decoded(data) == ("m-1", state.version, contribution)
    # the documented form: the dataclasses written as the JSON objects of their fields
    head, body = data.split(b"\n")
    assert json.loads(head) == [state.version, "m-1", asdict(contribution)]
    assert json.loads(body) == asdict(row)


def test_a_record_without_a_contribution() -> None:
    state = _state()
    row = message_log_row(state, updated_at=T0)
    assert row is not None
    data = serde.encode_message_update(7, row, None)
    assert _decoded(data) == ("m-1", 7, None)
    assert serde.decode_update_row(data) == (7, row)


def test_records_of_the_one_object_form_still_decode() -> None:
    """Records written before the two-line form (an upgrade with a backlog)."""
    state = _state()
    row = message_log_row(state, updated_at=T0)
    contribution = message_contribution(state)
    assert row is not None and contribution is not None
    old = json.dumps({"version": 3, "row": asdict(row),
                      "contribution": asdict(contribution)},
                     separators=(",", ":"), ensure_ascii=False).encode()
    assert b"\n" not in old
    assert serde.decode_update_row(old) == (3, row)
    assert _decoded(old) == ("m-1", 3, contribution)


def test_identity_is_read_from_the_head_for_any_message_id() -> None:
    """The message-log sink reads (message id, version) without decoding the row;
    ids with quotes, backslashes, commas, newlines and non-ASCII text included."""
    for message_id in ("m-1", 'm "q", x', "m\\\\", "m\\", "m\n2", "mé✓", '"', ""):
        state = MessageState(message_id)
        state = apply_event(state, MessageSent("e1", message_id, T0, "c", "A", "k", "Ann",
                                               "+15550000001", SendOutcome.ACCEPTED))
        row = message_log_row(state, updated_at=T0)
        assert row is not None
        data = serde.encode_message_update(12, row, message_contribution(state))
        assert serde.update_identity(data) == (message_id, 12)
        assert serde.decode_update_row(data) == (12, row)


def test_identity_of_the_one_object_form() -> None:
    state = _state()
    row = message_log_row(state, updated_at=T0)
    assert row is not None
    old = json.dumps({"version": 3, "row": asdict(row), "contribution": None}).encode()
    assert serde.update_identity(old) == ("m-1", 3)


def test_a_stored_state_is_the_json_of_its_dict_with_its_partition() -> None:
    state = apply_event(_state(), ReplyReceived("e3", "m-1", T0 + 9_000, "k-1",
                                                "+15550000001", "STOP"))
    data = serde.encode_state(state, 3)
    assert json.loads(data) == serde.state_to_dict(state) | {"p": 3}
    assert serde.state_from_dict(serde.as_dict(data)) == state
    assert serde.as_dict(serde.state_to_dict(state)) == serde.state_to_dict(state)


def test_a_stored_state_from_before_retry_of_still_decodes() -> None:
    """States in the `messages` changelog written before `sent.v3` have no
    ``retry_of``: they read as first attempts; a retry's state round-trips."""
    state = _state()
    stored = serde.loads(serde.encode_state(state, 3))
    del stored["sent"]["retry_of"]
    assert serde.state_from_dict(stored) == state
    assert state.sent is not None and state.sent.retry_of is None
    retry = apply_event(MessageState("m-2"), MessageSent(
        "e9", "m-2", T0, "c-1", "B", "k-1", None, "+15550000001", SendOutcome.ACCEPTED,
        retry_of="m-1"))
    assert serde.state_from_dict(serde.loads(serde.encode_state(retry, 0))) == retry


def test_a_message_update_from_before_retry_of_still_decodes() -> None:
    """A hand-off record written before the log row had ``retry_of`` (an upgrade
    with a backlog): its row reads as a first attempt."""
    state = _state()
    row = message_log_row(state, updated_at=T0)
    assert row is not None and row.retry_of is None
    head, body = serde.encode_message_update(4, row, None).split(b"\n")
    old_row = json.loads(body)
    del old_row["retry_of"]
    assert serde.decode_update_row(head + b"\n" + json.dumps(old_row).encode()) == (4, row)
