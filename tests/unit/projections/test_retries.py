"""The retry selection (projections/retries.py) on plain values: every skip reason,
one retry per message, rounds, attempts along retry_of chains, the age limit, and
not_before from quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.quiet_hours import QuietHours
from projections.retries import SKIP_REASONS, EarlierRequest, FailedMessage, select_retries

NOON = int(datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
QUIET = QuietHours.parse("21:00-09:00")


def _msg(mid: str, cause: str | None = "30003", contact: str | None = None,
         retry_of: str | None = None, sent_at: int = NOON - 3_600_000,
         phone: str = "+33612345678") -> FailedMessage:
    return FailedMessage(mid, contact or f"c-{mid}", phone, "A", sent_at, cause, retry_of)


def _place(phone: str) -> tuple[str, bool]:
    return {"+33612345678": ("Europe/Paris", False),
            "+81312345678": ("Asia/Tokyo", False)}.get(phone, ("UTC", True))


def _select(failed, opted=(), earlier=(), **kw):
    return select_retries(failed, opted, earlier, now_ms=kw.pop("now_ms", NOON), quiet=QUIET,
                          place=_place, **kw)


def test_every_reason_counts_and_only_retryable_messages_of_contacts_still_in_are_requested():
    failed = [
        _msg("temp", "30003"), _msg("none", None), _msg("unknown", "99999"),
        _msg("unclassified", "30008"),
        _msg("invalid", "21211"), _msg("landline", "30006"), _msg("blocked", "30034"),
        _msg("optout-code", "21610", contact="x"), _msg("same-contact", "30001", contact="x"),
        _msg("replied-stop", "30003", contact="y"),
    ]
    got = _select(failed, opted={"y"})
    assert sorted(r.message.message_id for r in got.retries) == [
        "none", "temp", "unclassified", "unknown"]
    assert got.skipped == {"opted_out": 3, "not_retryable": 3, "already_requested": 0,
                           "max_attempts": 0, "too_old": 0}
    assert list(got.skipped) == list(SKIP_REASONS)
    assert all(r.attempt == 1 and r.original_message_id == r.message.message_id
               for r in got.retries)


def test_an_earlier_round_is_never_requested_again_and_attempts_follow_the_chain():
    failed = [_msg("o1"), _msg("r1", retry_of="o1", sent_at=NOON - 60_000), _msg("o2")]
    earlier = [EarlierRequest("o1", "o1")]
    got = _select(failed, earlier=earlier)
    assert [r.message.message_id for r in got.retries] == ["o2"]
    assert got.skipped["already_requested"] == 1 and got.skipped["max_attempts"] == 1
    two = _select(failed, earlier=earlier, max_attempts=2)
    assert [(r.message.message_id, r.original_message_id, r.attempt)
            for r in two.retries] == [("o2", "o2", 1), ("r1", "o1", 2)]
    # a retry not requested here (sent by hand): its chain still counts from o1
    alone = _select([_msg("o1"), _msg("r1", retry_of="o1", sent_at=NOON - 60_000)],
                    max_attempts=2)
    assert [(r.message.message_id, r.attempt) for r in alone.retries] == [("o1", 1), ("r1", 2)]
    assert _select(failed, earlier=[EarlierRequest("o1", "o1")] * 2).skipped[
        "already_requested"] == 1  # a repeated record is one request


def test_the_age_limit_applies_only_when_set():
    old = _msg("old", sent_at=NOON - 10 * 86_400_000)
    assert len(_select([old]).retries) == 1
    got = _select([old], max_age_ms=86_400_000)
    assert not got.retries and got.skipped["too_old"] == 1


def test_not_before_is_the_end_of_quiet_hours_where_the_contact_is():
    tokyo = _msg("tokyo", phone="+81312345678")  # 21:00 in Tokyo at 12:00 UTC: quiet
    paris = _msg("paris")  # 14:00 in Paris: now
    nowhere = _msg("nowhere", phone="+999")  # placed by default (UTC): 12:00, now
    got = _select([tokyo, paris, nowhere])
    by_id = {r.message.message_id: r for r in got.retries}
    assert by_id["paris"].not_before == NOON and by_id["nowhere"].not_before == NOON
    assert by_id["tokyo"].not_before == int(
        datetime(2026, 6, 2, 0, 0, tzinfo=UTC).timestamp() * 1000)  # 09:00 JST
    assert (got.scheduled_later, got.placed_by_default) == (1, 1)
    assert by_id["nowhere"].zone == "UTC" and by_id["nowhere"].zone_by_default
    counts = got.counts()
    assert counts["requested"] == 3 and counts["scheduled_later"] == 1


def test_the_selection_does_not_depend_on_input_order():
    failed = [_msg("a"), _msg("b", retry_of="a", sent_at=NOON - 1), _msg("c", "21211")]
    one = _select(failed, max_attempts=2)
    two = _select(list(reversed(failed)), max_attempts=2)
    assert one == two
