"""Which failed messages a retry round requests (domain.md section 3b), as plain values.

Every message failed now whose failure cause may help (``RETRYABLE``) and whose
contact has not opted out (an opt-out reply to any message of the campaign, or a
failure with 21610), once: never a message an earlier round requested, at most
``max_attempts`` per original message (the first of its ``retry_of`` chain), none
sent longer than ``max_age_ms`` ago when that is set. Each gets a ``not_before``
outside quiet hours in its contact's zone (``place``: phone -> (zone, by_default)).
Skipped messages are counted per reason, in the order the reasons are checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from projections.failures import OPTED_OUT_CODE, RETRYABLE, category_of
from projections.quiet_hours import QuietHours, not_before

# Why a failed message is not requested; the first that applies counts.
SKIP_REASONS: tuple[str, ...] = (
    "opted_out",  # its contact opted out (a reply, or a 21610 failure)
    "not_retryable",  # its cause will not change on a retry (invalid, landline, blocked)
    "already_requested",  # an earlier round requested it
    "max_attempts",  # its original message has had CA_RETRY_MAX_ATTEMPTS retries
    "too_old",  # sent longer than CA_RETRY_MAX_AGE ago
)


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """A message of the campaign that is failed now (``projections.failures.is_failed``)."""

    message_id: str
    contact_id: str
    phone: str
    variant: str | None
    sent_at: int  # epoch ms
    cause: str | None  # projections.failures.failure_cause
    retry_of: str | None  # the message this one retried, if it is a retry


@dataclass(frozen=True, slots=True)
class EarlierRequest:
    """A request of an earlier, valid round."""

    message_id: str
    original_message_id: str


@dataclass(frozen=True, slots=True)
class Retry:
    message: FailedMessage
    original_message_id: str
    attempt: int
    not_before: int  # epoch ms
    zone: str
    zone_by_default: bool


@dataclass(frozen=True, slots=True)
class RetrySelection:
    retries: tuple[Retry, ...]
    skipped: dict[str, int]  # every reason of SKIP_REASONS, zeros included
    scheduled_later: int  # retries whose not_before is after now
    placed_by_default: int  # retries whose zone is the default one

    def counts(self) -> dict[str, object]:
        """The answer of the CLI and the API."""
        return {"requested": len(self.retries), "scheduled_later": self.scheduled_later,
                "placed_by_default_zone": self.placed_by_default, "skipped": dict(self.skipped)}


def _root(message_id: str, parent: dict[str, str], requested: dict[str, str]) -> str:
    """The first message of ``message_id``'s retry_of chain (cycles cut where they close)."""
    seen: set[str] = set()
    current = message_id
    while current not in seen:
        seen.add(current)
        if current in requested:
            return requested[current]
        following = parent.get(current)
        if following is None:
            return current
        current = following
    return current


def select_retries(failed: Iterable[FailedMessage], opted_out_contacts: Iterable[str],
                   earlier: Iterable[EarlierRequest], *, now_ms: int,
                   quiet: QuietHours | None, place: Callable[[str], tuple[str, bool]],
                   max_attempts: int = 1, max_age_ms: int | None = None) -> RetrySelection:
    """The round a request at ``now_ms`` makes (docstring of the module)."""
    messages = sorted(failed, key=lambda m: (m.sent_at, m.message_id))
    opted_out = set(opted_out_contacts)
    opted_out.update(m.contact_id for m in messages if (m.cause or "").strip() == OPTED_OUT_CODE)
    requested: dict[str, str] = {}
    attempts: Counter[str] = Counter()
    for request in earlier:
        if request.message_id not in requested:
            requested[request.message_id] = request.original_message_id
            attempts[request.original_message_id] += 1
    parent = {m.message_id: m.retry_of for m in messages if m.retry_of is not None}
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    retries: list[Retry] = []
    for message in messages:
        root = _root(message.message_id, parent, requested)
        if message.contact_id in opted_out:
            reason = "opted_out"
        elif category_of(message.cause) not in RETRYABLE:
            reason = "not_retryable"
        elif message.message_id in requested:
            reason = "already_requested"
        elif attempts[root] >= max_attempts:
            reason = "max_attempts"
        elif max_age_ms is not None and now_ms - message.sent_at > max_age_ms:
            reason = "too_old"
        else:
            attempts[root] += 1
            zone, by_default = place(message.phone)
            at = int(not_before(now, zone, quiet).timestamp() * 1000)
            retries.append(Retry(message, root, attempts[root], max(at, now_ms), zone,
                                 by_default))
            continue
        skipped[reason] += 1
    return RetrySelection(
        retries=tuple(retries), skipped=skipped,
        scheduled_later=sum(1 for r in retries if r.not_before > now_ms),
        placed_by_default=sum(1 for r in retries if r.zone_by_default))
