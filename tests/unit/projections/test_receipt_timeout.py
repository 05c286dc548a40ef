"""The receipt-timeout judgement as plain values (domain.md 3b): once, a deadline only for
accepted unsettled messages, a terminal receipt wins whatever the order, unknown is
neither pending nor failed and is never retried."""

from __future__ import annotations

from itertools import permutations

from projections.events import DeliveryStatus, MessageSent, ReceiptReceived, SendOutcome
from projections.failures import failure_category, is_failed
from projections.message import MessageState, apply_event
from projections.message_log import MESSAGE_STATUSES, message_log_row
from projections.metrics import message_contribution, metric_view
from projections.receipt_timeout import (
    TIMED_OUT_ID,
    mark_timed_out,
    receipt_deadline,
    timed_out,
)
from sinks.queries import failed_events_query
from sinks.retry_reads import failed_messages
from streams.codecs.input_avro import NOT_IN_ID

T = 1_790_000_000_000
H = 3_600_000


def sent(outcome: SendOutcome = SendOutcome.ACCEPTED) -> MessageSent:
    return MessageSent("e-s", "m1", T, "c1", "A", "k1", "Ann", "+15550000001", outcome,
                       error_code="21211" if outcome is SendOutcome.REJECTED else None)


def receipt(status: DeliveryStatus, at: int = T + 80 * H, event_id: str = "e-r"
            ) -> ReceiptReceived:
    return ReceiptReceived(event_id, "m1", at, status,
                           error_code="30003" if status is DeliveryStatus.FAILED else None)


def state(*events: object) -> MessageState:
    out = MessageState("m1")
    for event in events:
        out = mark_timed_out(out) if event is None else apply_event(out, event)  # type: ignore[arg-type]
    return out


def counts(s: MessageState) -> dict[str, int]:
    contribution = message_contribution(s)
    assert contribution is not None
    return {k: v for k, v in contribution.counts.items()
            if k in ("sent", "pending", "unknown", "delivered", "failed")}


def test_the_id_can_never_be_an_input_events():
    assert NOT_IN_ID.search(TIMED_OUT_ID)


def test_only_an_accepted_unsettled_message_has_a_deadline():
    assert receipt_deadline(state(sent()), 72 * H) == T + 72 * H
    assert receipt_deadline(state(sent(), receipt(DeliveryStatus.QUEUED)), 5) == T + 5
    assert receipt_deadline(state(), 5) is None
    assert receipt_deadline(state(sent(SendOutcome.REJECTED)), 5) is None
    assert receipt_deadline(state(sent(), receipt(DeliveryStatus.DELIVERED)), 5) is None
    assert receipt_deadline(state(sent(), None), 5) is None  # judged already


def test_judged_once_the_version_grows_by_one():
    before = state(sent())
    after = mark_timed_out(before)
    assert timed_out(after) and after.version == before.version + 1
    assert mark_timed_out(after) is after
    no_send = state(receipt(DeliveryStatus.QUEUED))
    assert mark_timed_out(no_send) is no_send


def test_unknown_is_neither_pending_nor_failed_and_never_retried():
    s = state(sent(), receipt(DeliveryStatus.SENT), None)
    assert counts(s) == {"sent": 1, "unknown": 1}
    assert metric_view(message_contribution(s).counts)["unknown"] == 1  # type: ignore[union-attr]
    assert not is_failed(s) and failure_category(s) is None
    row = message_log_row(s, updated_at=T)
    assert row is not None and row.status == "unknown" and "unknown" in MESSAGE_STATUSES
    assert row.failed_at is None and row.error_code is None
    # the retry selection reads failed statuses only, and folds the events without the
    # judgement: an unknown message is not among its failed messages
    sql, _ = failed_events_query("db", "c1")
    assert "'unknown'" not in sql
    events = [("m1", '{"type": "sent", "event_id": "e-s", "message_id": "m1", '
                     f'"occurred_at": {T}, "campaign_id": "c1", "variant": "A", '
                     '"contact_id": "k1", "contact_name": "Ann", "phone": "+15550000001", '
                     '"outcome": "ACCEPTED"}')]
    assert failed_messages(events) == []


def test_a_terminal_receipt_wins_whatever_the_order():
    for status, metric in ((DeliveryStatus.DELIVERED, "delivered"),
                           (DeliveryStatus.FAILED, "failed")):
        for order in permutations([sent(), receipt(status), None]):
            s = state(*order)
            assert counts(s) == {"sent": 1, metric: 1}, order
            row = message_log_row(s, updated_at=T)
            assert row is not None and row.status == metric


def test_a_rejected_message_stays_failed():
    s = state(sent(SendOutcome.REJECTED), None)
    assert counts(s) == {"failed": 1} and not timed_out(s)
