"""Receipts that never come (domain.md section 3b): ``unknown`` instead of ``pending``.

An accepted message with no terminal receipt ``CA_RECEIPT_TIMEOUT`` after its send
is judged timed out, once, by the worker's sweep (a clock, so not here): the judgement
is folded into the state like an event, under an id no input event can have (ids
never hold ``;``), so a repeated judgement changes nothing and the version grows by
one. A timed-out message counts ``unknown`` until a terminal receipt settles it
(``projections.metrics``); it is never failed, so never retried.
"""

from __future__ import annotations

from dataclasses import replace

from projections.events import SendOutcome
from projections.message import MessageState, terminal_receipt

# In ``MessageState.seen`` once the sweep has judged the message; input ids cannot
# hold ";" (streams/codecs/input_avro.py, NOT_IN_ID).
TIMED_OUT_ID = "receipt;timed-out"

DEFAULT_RECEIPT_TIMEOUT_MS = 72 * 3_600_000


def timed_out(state: MessageState) -> bool:
    """Judged timed out (a terminal receipt still wins over it)."""
    return TIMED_OUT_ID in state.seen


def receipt_deadline(state: MessageState, timeout_ms: int) -> int | None:
    """When the message times out if no terminal receipt comes first; None when it
    cannot (no send yet, rejected, settled, or already judged)."""
    sent = state.sent
    if sent is None or sent.outcome is not SendOutcome.ACCEPTED or TIMED_OUT_ID in state.seen:
        return None
    if terminal_receipt(state) is not None:
        return None
    return sent.occurred_at + timeout_ms


def mark_timed_out(state: MessageState) -> MessageState:
    """The state after the sweep's judgement: unchanged (the same object) unless the
    message is accepted, unsettled and not judged yet."""
    sent = state.sent
    if sent is None or sent.outcome is not SendOutcome.ACCEPTED or TIMED_OUT_ID in state.seen \
            or terminal_receipt(state) is not None:
        return state
    # ``replace`` keeps every other field, whatever fields the state gains
    return replace(state, seen=state.seen | {TIMED_OUT_ID}, version=state.version + 1)
