"""The failure taxonomy of domain.md section 3b: every gateway code it lists, the
failure cause (REJECTED send or winning terminal receipt) and what a retry may help."""

from __future__ import annotations

from functools import reduce

import pytest

from projections.events import DeliveryStatus, Event, MessageSent, ReceiptReceived, SendOutcome
from projections.failures import (
    CATEGORY_BY_CODE,
    RETRYABLE,
    FailureCategory,
    category_of,
    failure_category,
    failure_cause,
    is_failed,
)
from projections.message import MessageState, apply_event

C = FailureCategory
# Copied from domain.md section 3b, not from the module: the mapping must say the same.
DOMAIN_CODES = {
    "21211": C.INVALID_NUMBER, "30005": C.INVALID_NUMBER,
    "21614": C.NOT_MOBILE, "30006": C.NOT_MOBILE,
    "30004": C.BLOCKED, "30007": C.BLOCKED, "30034": C.BLOCKED,
    "21610": C.OPTED_OUT,
    "30001": C.TEMPORARY, "30003": C.TEMPORARY,
    "30008": C.UNCLASSIFIED,
}


@pytest.mark.parametrize("code", sorted(DOMAIN_CODES))
def test_each_gateway_code_of_the_contract_has_its_category(code: str) -> None:
    assert category_of(code) is DOMAIN_CODES[code]


def test_the_mapping_holds_the_contract_codes_and_nothing_else() -> None:
    assert dict(CATEGORY_BY_CODE) == DOMAIN_CODES


@pytest.mark.parametrize("code", [None, "", "99999", "3000"])
def test_a_missing_or_unknown_code_is_unclassified(code: str | None) -> None:
    assert category_of(code) is C.UNCLASSIFIED


def test_only_temporary_and_unclassified_may_help_on_a_retry() -> None:
    assert {C.TEMPORARY, C.UNCLASSIFIED} == RETRYABLE


def sent(outcome: SendOutcome = SendOutcome.ACCEPTED, code: str | None = None) -> MessageSent:
    return MessageSent("s", "m", 1_000, "c", None, "k", None, "+15550000000", outcome, code)


def receipt(eid: str, at: int, status: DeliveryStatus, code: str | None = None) -> ReceiptReceived:
    return ReceiptReceived(eid, "m", at, status, code)


def state(*events: Event) -> MessageState:
    return reduce(apply_event, events, MessageState("m"))


def test_a_rejected_send_fails_with_its_own_code() -> None:
    s = state(sent(SendOutcome.REJECTED, "21211"),
              receipt("r", 2_000, DeliveryStatus.FAILED, "30003"))
    assert is_failed(s) and failure_cause(s) == "21211"
    assert failure_category(s) is C.INVALID_NUMBER


def test_the_winning_terminal_receipt_gives_the_cause_whatever_the_order() -> None:
    events = [sent(), receipt("r1", 2_000, DeliveryStatus.UNDELIVERED, "30005"),
              receipt("r2", 3_000, DeliveryStatus.FAILED, "30003"),
              receipt("r0", 4_000, DeliveryStatus.SENT)]
    for order in (events, events[::-1], events[1:] + events[:1]):
        s = state(*order)
        assert failure_cause(s) == "30003"
        assert failure_category(s) is C.TEMPORARY


def test_a_winning_failure_without_a_code_is_unclassified() -> None:
    # an earlier receipt's code is not the cause: the later FAILED one without a code is
    s = state(sent(), receipt("r1", 2_000, DeliveryStatus.UNDELIVERED, "30005"),
              receipt("r2", 3_000, DeliveryStatus.FAILED))
    assert failure_cause(s) is None
    assert failure_category(s) is C.UNCLASSIFIED


@pytest.mark.parametrize("events", [
    (),  # no send yet
    (receipt("r", 2_000, DeliveryStatus.FAILED, "30003"),),  # a receipt before its send
    (sent(),),  # pending
    (sent(), receipt("r", 2_000, DeliveryStatus.DELIVERED)),
    # a failure superseded by a later delivery is no longer a failure
    (sent(), receipt("r1", 2_000, DeliveryStatus.FAILED, "30003"),
     receipt("r2", 3_000, DeliveryStatus.DELIVERED)),
])
def test_a_message_that_is_not_failed_has_no_cause(events: tuple[Event, ...]) -> None:
    s = state(*events)
    assert not is_failed(s)
    assert failure_cause(s) is None and failure_category(s) is None


def test_the_documented_table_is_the_mapping() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parents[3] / "docs" / "failures.md"
    rows = [line.split("|")[1:4] for line in doc.read_text().splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    table = {code.strip(): (category.strip(), retry.strip()) for code, category, retry in rows}
    assert table == {code: (cat.value, "yes" if cat in RETRYABLE else "no")
                     for code, cat in CATEGORY_BY_CODE.items()}
