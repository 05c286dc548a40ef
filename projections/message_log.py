"""The message-log row: one row per message with its latest state.

This is the shape every ClickHouse backend writes and every export reads.
Timestamps are epoch milliseconds (UTC); ``None`` means "not (yet) known".
``version`` grows with every change of the message's state, so a
ReplacingMergeTree keeps the latest row however often a row is replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

from projections.failures import failure_category
from projections.message import (
    PREVIEW_WINDOW_MS,
    MessageState,
    human_click_count,
    message_status,
    terminal_receipt,
)
from projections.receipt_timeout import TIMED_OUT_ID

# Status values of a message in the log (lower case, as the product page shows them).
MESSAGE_STATUSES: tuple[str, ...] = (
    "sent",  # accepted by the carrier hand-off, no receipt yet
    "queued",
    "delivered",
    "undelivered",
    "failed",
    "rejected",  # refused at hand-off (outcome REJECTED)
    "unknown",  # accepted, no terminal receipt CA_RECEIPT_TIMEOUT after its send (3b)
)


@dataclass(frozen=True, slots=True)
class MessageLogRow:
    message_id: str
    campaign_id: str
    variant: str | None
    contact_id: str
    contact_name: str | None
    phone: str
    status: str
    sent_at: int
    delivered_at: int | None
    failed_at: int | None
    error_code: str | None
    error_description: str | None
    carrier: str | None
    segments: int
    click_count: int
    first_click_at: int | None
    last_click_at: int | None
    reply_count: int
    last_reply_at: int | None
    updated_at: int
    version: int
    # domain.md 3b: the message this one retries (None: a first attempt). Last, with a
    # default: rows handed over before it existed still decode.
    retry_of: str | None = None
    # domain.md 3b: of click_count, the clicks judged human (last, with a default, for
    # the same reason).
    human_click_count: int = 0
    # domain.md 3b, where: the phone's ISO 3166 region (ZZ: placed nowhere) and, for a
    # failed message, its failure category (projections/failures.py). Last, defaults.
    country: str = "ZZ"
    failure_category: str | None = None


MESSAGE_LOG_COLUMNS: tuple[str, ...] = tuple(MessageLogRow.__dataclass_fields__)

# domain.md section 4: the CSV export's columns, in this order; then issue 22's, after
# them so that a reader of the first eight by position keeps working. ``cost`` is not
# stored: the export computes it (segments x the country's price, accepted messages,
# empty without CA_PRICES_FILE; sinks/export.py).
CSV_EXPORT_COLUMNS: tuple[str, ...] = (
    "contact_name",
    "phone",
    "variant",
    "status",
    "sent_at",
    "delivered_at",
    "error_code",
    "error_description",
    "human_click_count",
    "country",
    "failure_category",
    "cost",
)


def message_log_row(state: MessageState, updated_at: int, *,
                    preview_window_ms: int = PREVIEW_WINDOW_MS) -> MessageLogRow | None:
    """The log row of a message; None until its `sent` event has arrived.
    ``preview_window_ms``: CA_PREVIEW_WINDOW_SECONDS (``human_click_count``)."""
    sent = state.sent
    status = message_status(state)
    if sent is None or status is None:
        return None
    final = terminal_receipt(state)
    if final is None and status != "rejected" and TIMED_OUT_ID in state.seen:
        status = "unknown"  # judged by the sweep (projections/receipt_timeout.py)
    delivered_at = final.occurred_at if final is not None and status == "delivered" else None
    failed_at: int | None = None
    error_code = error_description = None
    if status == "rejected":
        failed_at = sent.occurred_at
        error_code, error_description = sent.error_code, sent.error_description
    elif status in ("undelivered", "failed"):
        failed_at = final.occurred_at if final is not None else None
        if state.error_receipt is not None:
            error_code = state.error_receipt.error_code
            error_description = state.error_receipt.error_description
    carrier = state.carrier_receipt.carrier if state.carrier_receipt is not None else None
    category = failure_category(state)
    return MessageLogRow(
        message_id=state.message_id,
        campaign_id=sent.campaign_id,
        variant=sent.variant,
        contact_id=sent.contact_id,
        contact_name=sent.contact_name,
        phone=sent.phone,
        status=status,
        sent_at=sent.occurred_at,
        delivered_at=delivered_at,
        failed_at=failed_at,
        error_code=error_code,
        error_description=error_description,
        carrier=carrier,
        segments=sent.segments,
        click_count=state.click_count,
        first_click_at=state.first_click_at,
        last_click_at=state.last_click_at,
        reply_count=state.reply_count,
        last_reply_at=state.last_reply_at,
        updated_at=updated_at,
        version=state.version,
        retry_of=sent.retry_of,
        human_click_count=human_click_count(state, preview_window_ms),
        country=sent.country,
        failure_category=None if category is None else category.value,
    )
