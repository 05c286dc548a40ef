"""Why a message failed, and whether a retry may help (domain.md section 3b).

The failure cause is the error code of whatever made the message failed: the
REJECTED ``sent`` event's, or the winning terminal receipt's (section 2). Codes map
to categories; only ``temporary`` and ``unclassified`` may help on a retry. The
mapping is data (``CATEGORY_BY_CODE``): the gateway codes in use are Twilio's
(https://www.twilio.com/docs/api/errors); a code not listed, or none, is
``unclassified``. docs/failures.md lists them for people.
"""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType

from projections.events import DeliveryStatus, SendOutcome
from projections.message import MessageState


class FailureCategory(Enum):
    INVALID_NUMBER = "invalid_number"
    NOT_MOBILE = "not_mobile"  # a landline
    BLOCKED = "blocked"  # blocked or filtered by the carrier
    OPTED_OUT = "opted_out"
    TEMPORARY = "temporary"
    UNCLASSIFIED = "unclassified"


OPTED_OUT_CODE = "21610"  # "attempt to send to unsubscribed recipient"

CATEGORY_BY_CODE: MappingProxyType[str, FailureCategory] = MappingProxyType({
    "21211": FailureCategory.INVALID_NUMBER,  # invalid 'To' phone number
    "30005": FailureCategory.INVALID_NUMBER,  # unknown destination handset
    "21614": FailureCategory.NOT_MOBILE,  # 'To' number is not a valid mobile number
    "30006": FailureCategory.NOT_MOBILE,  # landline or unreachable carrier
    "30004": FailureCategory.BLOCKED,  # message blocked
    "30007": FailureCategory.BLOCKED,  # message filtered (carrier violation)
    "30034": FailureCategory.BLOCKED,  # message from an unregistered number (A2P 10DLC)
    OPTED_OUT_CODE: FailureCategory.OPTED_OUT,
    "30001": FailureCategory.TEMPORARY,  # queue overflow
    "30003": FailureCategory.TEMPORARY,  # unreachable destination handset
    "30008": FailureCategory.UNCLASSIFIED,  # unknown error
})

RETRYABLE = frozenset({FailureCategory.TEMPORARY, FailureCategory.UNCLASSIFIED})

_FAILED_STATUSES = frozenset({DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED})


def category_of(code: str | None) -> FailureCategory:
    """The category of a gateway error code; a missing or unknown code is unclassified."""
    if code is None:
        return FailureCategory.UNCLASSIFIED
    return CATEGORY_BY_CODE.get(code.strip(), FailureCategory.UNCLASSIFIED)


def is_failed(state: MessageState) -> bool:
    """domain.md section 3 ``failed``: REJECTED, or a current status UNDELIVERED/FAILED."""
    sent = state.sent
    if sent is None:
        return False
    if sent.outcome is SendOutcome.REJECTED:
        return True
    return state.receipt is not None and state.receipt.status in _FAILED_STATUSES


def failure_cause(state: MessageState) -> str | None:
    """The error code that made the message failed; None if it is not failed or the
    failing record carries no code."""
    sent, receipt = state.sent, state.receipt
    if sent is None:
        return None
    if sent.outcome is SendOutcome.REJECTED:
        return sent.error_code
    if receipt is not None and receipt.status in _FAILED_STATUSES:
        return receipt.error_code
    return None


def failure_category(state: MessageState) -> FailureCategory | None:
    """The category of the message's failure cause; None if it is not failed."""
    return category_of(failure_cause(state)) if is_failed(state) else None
