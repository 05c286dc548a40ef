"""What the retry selection (``projections.retries``) reads from ClickHouse.

``message_log.error_code`` is not always the failure cause: the log shows the
highest receipt that carries a code, the cause is the winning terminal receipt's
own (none if it has none; ``projections.failures``). So the failed messages'
``sent`` and ``delivery`` events are read from ``events`` and folded here with the
project's own fold, which also gives each message's ``retry_of``. Opt-out replies
are matched by the fold's rule (``is_opt_out``), not ClickHouse's.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from projections.events import DeliveryStatus, MessageSent, ReceiptReceived, SendOutcome
from projections.failures import failure_cause, is_failed
from projections.message import MessageState, apply_event, is_opt_out
from projections.retries import FailedMessage
from sinks.store import ClickHouseStore


@dataclass(frozen=True, slots=True)
class RetryInputs:
    failed: list[FailedMessage]
    opted_out_by_reply: set[str]  # contact ids


def _event(payload: str) -> MessageSent | ReceiptReceived | None:
    fields = orjson.loads(payload)
    kind = fields.pop("type", None)
    cls: type[MessageSent] | type[ReceiptReceived]
    if kind == "sent":
        cls = MessageSent
        fields["outcome"] = SendOutcome(fields["outcome"])
    elif kind == "delivery":
        cls = ReceiptReceived
        fields["status"] = DeliveryStatus(fields["status"])
    else:
        return None
    known = cls.__dataclass_fields__  # fields of a newer schema this code lacks: dropped
    return cls(**{k: v for k, v in fields.items() if k in known})


def failed_messages(rows: list[tuple[str, str]]) -> list[FailedMessage]:
    """The messages failed after folding their events (``failed_message_events``)."""
    states: dict[str, MessageState] = {}
    for message_id, payload in rows:
        event = _event(payload)
        if event is not None:
            state = states.get(message_id) or MessageState(message_id)
            states[message_id] = apply_event(state, event)
    out = []
    for state in states.values():
        sent = state.sent
        if sent is None or not is_failed(state):
            continue  # the log and the events are written by two sinks: one may lag
        out.append(FailedMessage(
            message_id=state.message_id, contact_id=sent.contact_id, phone=sent.phone,
            variant=sent.variant, sent_at=sent.occurred_at, cause=failure_cause(state),
            retry_of=sent.retry_of))
    return out


def read_retry_inputs(store: ClickHouseStore, campaign_id: str) -> RetryInputs:
    """The campaign's failed messages and the contacts who opted out by a reply."""
    failed = failed_messages(store.failed_message_events(campaign_id))
    opted_out = {contact for contact, body in store.reply_bodies(campaign_id)
                 if is_opt_out(body)}
    return RetryInputs(failed, opted_out)
