"""sinks/retry_reads.py: the failed messages folded from the events table's payloads,
with the failure cause of projections.failures, where message_log.error_code differs."""

from __future__ import annotations

from projections.events import DeliveryStatus, MessageSent, ReceiptReceived, SendOutcome
from projections.message import MessageState, apply_event
from projections.message_log import message_log_row
from sinks.plan import event_payload
from sinks.retry_reads import failed_messages


def _sent(mid: str, outcome: SendOutcome = SendOutcome.ACCEPTED,
          code: str | None = None) -> MessageSent:
    return MessageSent(f"s-{mid}", mid, 1_000, "camp", "A", f"c-{mid}", None, "+15551234567",
                       outcome, code)


def _receipt(mid: str, n: int, status: DeliveryStatus, at: int,
             code: str | None = None) -> ReceiptReceived:
    return ReceiptReceived(f"d-{mid}-{n}", mid, at, status, code)


def test_the_cause_is_the_winning_receipts_code_not_the_logs():
    # a FAILED receipt with 21610, then a later UNDELIVERED one without a code: the log
    # shows 21610, the cause is none (unclassified, retryable), the contact not opted out
    events = [_sent("m"), _receipt("m", 1, DeliveryStatus.FAILED, 2_000, "21610"),
              _receipt("m", 2, DeliveryStatus.UNDELIVERED, 3_000)]
    state = MessageState("m")
    for event in events:
        state = apply_event(state, event)
    row = message_log_row(state, 0)
    assert row is not None and row.error_code == "21610"  # the control: the log differs
    (got,) = failed_messages([("m", event_payload(e)) for e in reversed(events)])
    assert got.cause is None and got.contact_id == "c-m" and got.retry_of is None


def test_rejected_delivered_and_unsent_messages():
    rows = [("r", event_payload(_sent("r", SendOutcome.REJECTED, "21211"))),
            ("d", event_payload(_sent("d"))),
            ("d", event_payload(_receipt("d", 1, DeliveryStatus.DELIVERED, 5))),
            ("x", event_payload(_receipt("x", 1, DeliveryStatus.FAILED, 5, "30003")))]
    (got,) = failed_messages(rows)
    assert (got.message_id, got.cause) == ("r", "21211")
