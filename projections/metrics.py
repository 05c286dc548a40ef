"""Campaign metrics (domain.md section 3) as sums of per-message contributions.

A message contributes a small bag of counts (``sent``, ``delivered``, ...,
``error_code:<code>``, ``time_to_deliver:<bucket>``); a campaign's counts are
the sum of its messages' current contributions. When a message's state changes,
the aggregate moves by ``new - old``, so a superseded receipt stops counting.

Unique repliers and unique link clickers are counted by ``contact_id``, which a
sum over messages cannot give: ``ContactActivity`` keeps, per (campaign,
contact), how many of the contact's messages were clicked / replied, per
variant; a contact counts once while that number is above zero. Retries: at
``RETRY_PREFIX``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from projections.costs import SEGMENTS_PREFIX, PriceTable, cost_figures
from projections.events import DeliveryStatus, ReceiptReceived, SendOutcome
from projections.failures import FailureCategory, category_of, failure_cause
from projections.message import (
    PREVIEW_WINDOW_MS,
    MessageState,
    human_click_count,
    terminal_receipt,
)
from projections.receipt_timeout import TIMED_OUT_ID

Counts = Mapping[str, int]

# Fixed histogram buckets (upper bounds in seconds; the last bucket is open), so
# histograms from different partitions and workers add up.
DURATION_BUCKETS_S: tuple[int, ...] = (1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)

# domain.md 3b: clicks neither a bot's nor a preview's (projections.message.human_click_count)
HUMAN_CLICKS = "human_link_clicks"
BASE_METRICS: tuple[str, ...] = (
    "sent",
    "delivered",
    "failed",
    "pending",
    "replies",
    "opt_outs",
    "link_clicks",
    HUMAN_CLICKS,
)
UNIQUE_METRICS: tuple[str, ...] = (
    "unique_link_clicks", "unique_repliers", "unique_human_link_clicks")
# Retries (domain.md 3b) count like any message, and a retry also puts its base
# counts again under "retry:<metric>" (and 1 under "retries"), so the first attempts
# the A/B statistics read are <metric> - retry:<metric>; for the uniques,
# retry:unique_* counts the contacts counted only through retry messages (they
# cannot be subtracted). Messages that are not retries pay nothing for this.
RETRY_PREFIX = "retry:"
RETRIES = "retries"
RETRY_METRICS: tuple[str, ...] = ("retries", "recovered_by_retry")
# The counts of first attempts only (the A/B statistics' input), per summary bag.
FIRST_ATTEMPT_METRICS: tuple[str, ...] = BASE_METRICS + UNIQUE_METRICS
_RETRY_KEYS: tuple[tuple[str, str], ...] = tuple(
    (name, RETRY_PREFIX + name) for name in BASE_METRICS)


def duration_bucket(millis: int) -> str:
    seconds = max(millis, 0) / 1000
    for bound in DURATION_BUCKETS_S:
        if seconds <= bound:
            return f"le_{bound}s"
    return "gt_86400s"


# Counts kept per event-time window (uniques and breakdowns are campaign-wide only).
WINDOW_METRICS: tuple[str, ...] = (
    "sent", "delivered", "failed", "replies", "opt_outs", "link_clicks"
)
DEFAULT_WINDOWS_S: tuple[int, ...] = (60, 3600)


def window_key(size_s: int, start_ms: int) -> str:
    return f"{size_s}s@{start_ms}"


def parse_window_key(key: str) -> tuple[int, int]:
    size, _, start = key.partition("s@")
    return int(size), int(start)


@dataclass(frozen=True, slots=True)
class MessageContribution:
    campaign_id: str
    variant: str | None
    contact_id: str
    counts: Counts
    clicked: bool
    replied: bool
    # Window key -> counts this message puts in that tumbling window. A count sits
    # in the window of the event that caused it (sent at, delivered/failed at, each
    # reply and click), so a superseding receipt moves it between windows.
    windows: Mapping[str, Counts] = field(default_factory=dict)


def _windowed(
    windows: dict[str, dict[str, int]], sizes_s: tuple[int, ...], at: int, metric: str, n: int
) -> None:
    for size in sizes_s:
        step = size * 1000
        bag = windows.setdefault(window_key(size, at - at % step), {})
        bag[metric] = bag.get(metric, 0) + n


def message_contribution(
    state: MessageState, window_sizes_s: tuple[int, ...] = DEFAULT_WINDOWS_S, *,
    preview_window_ms: int = PREVIEW_WINDOW_MS,
) -> MessageContribution | None:
    """What one message adds to its campaign's metrics; None until its `sent` event.
    ``preview_window_ms``: CA_PREVIEW_WINDOW_SECONDS (the human clicks' time rule)."""
    sent = state.sent
    if sent is None:
        return None
    counts: dict[str, int] = {}
    windows: dict[str, dict[str, int]] = {}
    accepted = sent.outcome is SendOutcome.ACCEPTED
    final = terminal_receipt(state)
    if accepted:
        counts["sent"] = 1
        _windowed(windows, window_sizes_s, sent.occurred_at, "sent", 1)
        if final is None:  # domain.md 3b: unknown once the sweep judged it timed out
            counts["unknown" if TIMED_OUT_ID in state.seen else "pending"] = 1
        elif final.status is DeliveryStatus.DELIVERED:
            counts["delivered"] = 1
            _windowed(windows, window_sizes_s, final.occurred_at, "delivered", 1)
            bucket = duration_bucket(final.occurred_at - sent.occurred_at)
            counts[f"time_to_deliver:{bucket}"] = 1
        else:
            counts["failed"] = 1
            _windowed(windows, window_sizes_s, final.occurred_at, "failed", 1)
        if state.carrier_receipt is not None:
            counts[f"carrier:{state.carrier_receipt.carrier}"] = 1
    else:
        counts["failed"] = 1
        _windowed(windows, window_sizes_s, sent.occurred_at, "failed", 1)
    for at, opt_out in state.replies:
        _windowed(windows, window_sizes_s, at, "replies", 1)
        if opt_out:
            _windowed(windows, window_sizes_s, at, "opt_outs", 1)
    for at, _ in state.clicks:
        _windowed(windows, window_sizes_s, at, "link_clicks", 1)
    where_counts(state, final, accepted, counts)
    if "failed" in counts:
        code = _error_code(state)
        if code is not None:
            counts[f"error_code:{code}"] = 1
    if state.reply_count:
        counts["replies"] = state.reply_count
    if state.opt_out_count:
        counts["opt_outs"] = state.opt_out_count
    if state.click_count:
        counts["link_clicks"] = state.click_count
        assert state.first_click_at is not None  # noqa: S101 - set with click_count
        bucket = duration_bucket(state.first_click_at - sent.occurred_at)
        counts[f"time_to_first_click:{bucket}"] = 1
        human = human_click_count(state, preview_window_ms)
        if human:  # its presence also marks the contact a human clicker (apply_changes)
            counts[HUMAN_CLICKS] = human
    if sent.retry_of is not None:
        counts[RETRIES] = 1
        for name, retry_name in _RETRY_KEYS:
            n = counts.get(name)
            if n:
                counts[retry_name] = n
    return MessageContribution(
        campaign_id=sent.campaign_id,
        variant=sent.variant,
        contact_id=sent.contact_id,
        counts=counts,
        clicked=state.click_count > 0,
        replied=state.reply_count > 0,
        windows=windows,
    )


def _error_code(state: MessageState) -> str | None:
    sent = state.sent
    if sent is not None and sent.outcome is SendOutcome.REJECTED:
        return sent.error_code
    if state.error_receipt is not None:
        return state.error_receipt.error_code
    return None


# domain.md 3b, where failures happen and what a result cost: per country
# "country:<CC>:sent|delivered|failed" (CC: the sent event's, derived from the phone by
# the input codec) and "segments:<CC>" (accepted messages only: the cost's input); for
# failed messages "failure_category:<category>" (projections/failures.py, the retries'
# mapping, of the REJECTED send's or the winning terminal receipt's code); and for
# accepted messages whose receipts name a carrier, "carrier_outcome:<carrier>:sent|
# delivered|failed" (the carrier of ``carrier_receipt``, as "carrier:<carrier>").
COUNTRY_PREFIX, CATEGORY_PREFIX, CARRIER_OUTCOME_PREFIX = (
    "country:", "failure_category:", "carrier_outcome:")
OUTCOMES: tuple[str, ...] = ("sent", "delivered", "failed")
_CATEGORY_KEYS: dict[FailureCategory, str] = {
    c: CATEGORY_PREFIX + c.value for c in FailureCategory}
# The keys of a country (sent, delivered, failed, segments) or a carrier (sent,
# delivered, failed), made once: a message's contribution is remade on every event.
_COUNTRY_KEYS: dict[str, tuple[str, str, str, str]] = {}
_CARRIER_KEYS: dict[str, tuple[str, str, str]] = {}
_MAX_CARRIER_KEYS = 4096  # carriers are free text: a bounded cache


def _country_keys(country: str) -> tuple[str, str, str, str]:
    keys = _COUNTRY_KEYS.get(country)
    if keys is None:
        keys = _COUNTRY_KEYS[country] = (
            f"{COUNTRY_PREFIX}{country}:sent", f"{COUNTRY_PREFIX}{country}:delivered",
            f"{COUNTRY_PREFIX}{country}:failed", SEGMENTS_PREFIX + country)
    return keys


def _carrier_keys(carrier: str) -> tuple[str, str, str]:
    keys = _CARRIER_KEYS.get(carrier)
    if keys is None:
        if len(_CARRIER_KEYS) >= _MAX_CARRIER_KEYS:
            _CARRIER_KEYS.clear()
        keys = _CARRIER_KEYS[carrier] = (
            f"{CARRIER_OUTCOME_PREFIX}{carrier}:sent",
            f"{CARRIER_OUTCOME_PREFIX}{carrier}:delivered",
            f"{CARRIER_OUTCOME_PREFIX}{carrier}:failed")
    return keys


def where_counts(state: MessageState, final: ReceiptReceived | None, accepted: bool,
                 counts: dict[str, int]) -> None:
    """The country, failure-category, carrier-outcome and segment counts of a message
    that has its `sent` event (``final``: its terminal receipt)."""
    sent = state.sent
    assert sent is not None  # noqa: S101 - message_contribution returned before
    sent_key, delivered_key, failed_key, segments_key = _country_keys(sent.country)
    if not accepted:
        counts[failed_key] = 1
        counts[_CATEGORY_KEYS[category_of(sent.error_code)]] = 1
        return
    counts[sent_key] = 1
    counts[segments_key] = sent.segments
    carrier = state.carrier_receipt
    carrier_keys = None if carrier is None or carrier.carrier is None \
        else _carrier_keys(carrier.carrier)
    if carrier_keys is not None:
        counts[carrier_keys[0]] = 1
    if final is None:
        return
    if final.status is DeliveryStatus.DELIVERED:
        counts[delivered_key] = 1
        if carrier_keys is not None:
            counts[carrier_keys[1]] = 1
        return
    counts[failed_key] = 1
    counts[_CATEGORY_KEYS[category_of(failure_cause(state))]] = 1
    if carrier_keys is not None:
        counts[carrier_keys[2]] = 1


def add_counts(base: Counts, delta: Counts, sign: int = 1) -> dict[str, int]:
    out = dict(base)
    for key, value in delta.items():
        total = out.get(key, 0) + sign * value
        if total:
            out[key] = total
        else:
            out.pop(key, None)
    return out


@dataclass(frozen=True, slots=True)
class ContactActivity:
    """Per (campaign, contact): first-attempt and retry messages with clicks /
    replies, by variant key."""

    clicked: Mapping[str, int] = field(default_factory=dict)
    replied: Mapping[str, int] = field(default_factory=dict)
    retry_clicked: Mapping[str, int] = field(default_factory=dict)
    retry_replied: Mapping[str, int] = field(default_factory=dict)
    # ... with human clicks (domain.md 3b: unique_human_link_clicks)
    human_clicked: Mapping[str, int] = field(default_factory=dict)
    retry_human_clicked: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CampaignCounts:
    """A campaign's counts: ``total`` and one bag per named variant."""

    total: Counts = field(default_factory=dict)
    variants: Mapping[str, Counts] = field(default_factory=dict)


def _variant_key(variant: str | None) -> str:
    # Messages without a variant count in the total only; "" never names a variant.
    return variant or ""


def _groups(variants: set[str]) -> set[str]:
    """The groups ("*" = total, else a variant) of a contact active in ``variants``."""
    return {"*"} | {g for g in variants if g} if variants else set()


_NO_GROUPS: frozenset[str] = frozenset()
_UNIQUE_KEYS: tuple[str, ...] = UNIQUE_METRICS + tuple(RETRY_PREFIX + m for m in UNIQUE_METRICS)


def _uniques(activity: ContactActivity) -> dict[str, set[str]]:
    """Which groups this contact counts in, per unique metric (first attempts and
    retries alike) and per ``retry:`` unique metric (through retries only)."""
    out: dict[str, set[str]] = {}
    for metric, first, retry in (
        ("unique_link_clicks", activity.clicked, activity.retry_clicked),
        ("unique_repliers", activity.replied, activity.retry_replied),
        ("unique_human_link_clicks", activity.human_clicked, activity.retry_human_clicked),
    ):
        groups = {variant for variant, n in first.items() if n > 0}
        if not retry:
            out[metric] = _groups(groups)
            continue
        retried = {variant for variant, n in retry.items() if n > 0}
        out[metric] = _groups(groups | retried)
        out[RETRY_PREFIX + metric] = _groups(retried) - _groups(groups)
    return out


def metric_view(counts: Counts) -> dict[str, float | int]:
    """The summary's metric keys (with rates as fractions 0..1) from a bag of counts."""
    view: dict[str, float | int] = {
        name: counts.get(name, 0) for name in BASE_METRICS + UNIQUE_METRICS
    }
    view["unknown"] = counts.get("unknown", 0)  # accepted, no receipt in time (3b)
    view["retries"] = counts.get(RETRIES, 0)
    view["recovered_by_retry"] = counts.get(RETRY_PREFIX + "delivered", 0)
    sent = view["sent"]
    view["delivery_rate"] = view["delivered"] / sent if sent else 0.0
    view["reply_rate"] = view["replies"] / sent if sent else 0.0
    view["link_click_rate"] = view["unique_link_clicks"] / sent if sent else 0.0
    view["human_link_click_rate"] = view["unique_human_link_clicks"] / sent if sent else 0.0
    return view


# Summary key -> the prefix of its sub-counts in a bag of counts.
BREAKDOWNS: tuple[tuple[str, str], ...] = (
    ("by_error_code", "error_code"),
    ("by_carrier", "carrier"),
    ("time_to_deliver", "time_to_deliver"),
    ("time_to_first_click", "time_to_first_click"),
    ("by_failure_category", CATEGORY_PREFIX[:-1]),
)
_BREAKDOWN_OF_PREFIX: dict[str, str] = {prefix: name for name, prefix in BREAKDOWNS}


def breakdowns(counts: Counts) -> dict[str, dict[str, int]]:
    """Every breakdown of ``BREAKDOWNS`` from a bag of counts, in one pass over it
    (a snapshot takes them for the campaign and for each of its variants)."""
    out: dict[str, dict[str, int]] = {name: {} for name, _ in BREAKDOWNS}
    for key, n in counts.items():
        prefix, colon, sub = key.partition(":")
        name = _BREAKDOWN_OF_PREFIX.get(prefix) if colon else None
        if name is not None:
            out[name][sub] = n
    return out


# Summary key -> the prefix of its sub-counts, each a {sent, delivered, failed} record.
OUTCOME_BREAKDOWNS: tuple[tuple[str, str], ...] = (
    ("by_country", COUNTRY_PREFIX), ("by_carrier_outcome", CARRIER_OUTCOME_PREFIX))


def outcome_breakdowns(counts: Counts) -> dict[str, dict[str, dict[str, int]]]:
    """``by_country`` and ``by_carrier_outcome`` from a bag of counts: per country
    (carrier), its sent, delivered and failed messages (zeros included)."""
    out: dict[str, dict[str, dict[str, int]]] = {name: {} for name, _ in OUTCOME_BREAKDOWNS}
    for name, prefix in OUTCOME_BREAKDOWNS:
        into = out[name]
        for key, n in counts.items():
            if key.startswith(prefix):
                # a carrier may hold a colon; the outcome is after the last one
                sub, _, outcome = key[len(prefix):].rpartition(":")
                record = into.get(sub)
                if record is None:
                    record = into[sub] = dict.fromkeys(OUTCOMES, 0)
                record[outcome] = n
    return out


def first_attempts(counts: Counts) -> dict[str, int]:
    """The counts of a bag's first attempts only (retry messages left out)."""
    return {name: counts.get(name, 0) - counts.get(RETRY_PREFIX + name, 0)
            for name in FIRST_ATTEMPT_METRICS}


def _bag_summary(counts: Counts, prices: PriceTable | None = None) -> dict[str, object]:
    return {**metric_view(counts), **breakdowns(counts), **outcome_breakdowns(counts),
            **cost_figures(counts, prices, delivered=counts.get("delivered", 0),
                           unique_human_clicks=counts.get("unique_human_link_clicks", 0)),
            "first_attempts": first_attempts(counts)}


def summarize(campaign_id: str, campaign: CampaignCounts,
              prices: PriceTable | None = None) -> dict[str, object]:
    """The campaign summary of the CLI and the metrics topic: the metrics,
    breakdowns and first-attempt counts of the campaign, and the same for each
    variant (its bag holds the same prefixed sub-counts as the total). ``prices``
    (CA_PRICES_FILE): the cost figures; without them they are None."""
    summary: dict[str, object] = {"campaign_id": campaign_id,
                                  **_bag_summary(campaign.total, prices)}
    summary["variants"] = {
        name: _bag_summary(counts, prices) for name, counts in sorted(campaign.variants.items())
    }
    return summary


# The fields of a contribution that the views sum: campaign_id, variant, contact_id,
# counts, clicked, replied, windows (a tuple, so a recovery need not build a
# MessageContribution per stored message).
ContributionFields = tuple[str, str | None, str, Counts, bool, bool, Mapping[str, Counts]]


def contribution_fields(c: MessageContribution) -> ContributionFields:
    return (c.campaign_id, c.variant, c.contact_id, c.counts, c.clicked, c.replied, c.windows)


Change = tuple[ContributionFields | None, ContributionFields | None]


def _bump_signed(bag: dict[str, int], delta: Counts, sign: int) -> None:
    for key, value in delta.items():
        bag[key] = bag.get(key, 0) + sign * value


K = TypeVar("K")


def _bag(bags: dict[K, dict[str, int]], key: K) -> dict[str, int]:
    """``bags[key]``, a new empty one if missing (``setdefault`` would build an empty
    dict on every call)."""
    bag = bags.get(key)
    if bag is None:
        bag = bags[key] = {}
    return bag


def _counts_plus(base: CampaignCounts, total: Mapping[str, int],
                 variants: Mapping[str, Mapping[str, int]]) -> CampaignCounts:
    moved = {name: bag for name in base.variants.keys() | variants.keys()
             if (bag := add_counts(base.variants.get(name, {}), variants.get(name, {})))}
    return CampaignCounts(total=add_counts(base.total, total), variants=moved)


# What a batch of changes moves: campaign counts, contact activity (None: none
# left), window counts per (campaign, window key) (None: the window is empty).
Moved = tuple[
    dict[str, CampaignCounts],
    dict[tuple[str, str], ContactActivity | None],
    dict[tuple[str, str], CampaignCounts | None],
]


def apply_changes(
    counts: Mapping[str, CampaignCounts],
    contacts: Mapping[tuple[str, str], ContactActivity],
    windows: Mapping[str, Mapping[str, CampaignCounts]],
    changes: Iterable[Change],
) -> Moved:
    """The views' entries that a batch of messages' contribution changes (old, new)
    moves, and their new values. Each change takes ``old`` out of, and puts ``new``
    into, its campaign's counts, its contact's activity (unique clickers and
    repliers follow from it) and its windows; the changes are summed first and
    applied once per campaign, contact and window, so a campaign's counts are
    copied once per batch, not once per message. Every campaign and window a
    change touches is in the result, moved or not, and every contact whose clicks
    or replies it touches (None: no activity left)."""
    total: dict[str, dict[str, int]] = {}
    by_variant: dict[str, dict[str, dict[str, int]]] = {}
    clicks: dict[tuple[str, str], dict[str, int]] = {}
    replies: dict[tuple[str, str], dict[str, int]] = {}
    retry_clicks: dict[tuple[str, str], dict[str, int]] = {}
    retry_replies: dict[tuple[str, str], dict[str, int]] = {}
    human: dict[tuple[str, str], dict[str, int]] = {}
    retry_human: dict[tuple[str, str], dict[str, int]] = {}
    in_windows: dict[tuple[str, str], tuple[dict[str, int], dict[str, dict[str, int]]]] = {}
    for old, new in changes:
        # Each side counts where its own fields say: two different sends for one
        # message (a data error) still count in one place only.
        for sign, contrib in ((-1, old), (1, new)):
            if contrib is None:
                continue
            campaign, variant, contact_id, own, clicked, replied, own_windows = contrib
            key = _variant_key(variant)
            bag = total.get(campaign)
            if bag is None:
                bag = total[campaign] = {}
                by_variant[campaign] = {}
            _bump_signed(bag, own, sign)
            if key:
                _bump_signed(_bag(by_variant[campaign], key), own, sign)
            if clicked:
                bag = _bag(retry_clicks if RETRIES in own else clicks, (campaign, contact_id))
                bag[key] = bag.get(key, 0) + sign
                if HUMAN_CLICKS in own:
                    bag = _bag(retry_human if RETRIES in own else human, (campaign, contact_id))
                    bag[key] = bag.get(key, 0) + sign
            if replied:
                bag = _bag(retry_replies if RETRIES in own else replies, (campaign, contact_id))
                bag[key] = bag.get(key, 0) + sign
            for window, delta in own_windows.items():
                entry = in_windows.get((campaign, window))
                if entry is None:
                    entry = in_windows[campaign, window] = ({}, {})
                _bump_signed(entry[0], delta, sign)
                if key:
                    _bump_signed(_bag(entry[1], key), delta, sign)
    moved_contacts: dict[tuple[str, str], ContactActivity | None] = {}
    touched = clicks.keys() | replies.keys()
    if retry_clicks or retry_replies:
        touched |= retry_clicks.keys() | retry_replies.keys()
    for contact in touched:
        before = contacts.get(contact, ContactActivity())
        after = ContactActivity(
            clicked=add_counts(before.clicked, clicks.get(contact, {})),
            replied=add_counts(before.replied, replies.get(contact, {})),
            retry_clicked=add_counts(before.retry_clicked, retry_clicks[contact])
            if contact in retry_clicks else before.retry_clicked,
            retry_replied=add_counts(before.retry_replied, retry_replies[contact])
            if contact in retry_replies else before.retry_replied,
            human_clicked=add_counts(before.human_clicked, human[contact])
            if contact in human else before.human_clicked,
            retry_human_clicked=add_counts(before.retry_human_clicked, retry_human[contact])
            if contact in retry_human else before.retry_human_clicked)
        # (human clicks are clicks: their contacts are in ``touched``, and kept by it)
        moved_contacts[contact] = after if (after.clicked or after.replied or after.retry_clicked
                                            or after.retry_replied) else None
        was, now = _uniques(before), _uniques(after)
        campaign = contact[0]
        for metric in _UNIQUE_KEYS:
            for group in was.get(metric, _NO_GROUPS) ^ now.get(metric, _NO_GROUPS):
                sign = 1 if group in now.get(metric, _NO_GROUPS) else -1
                bag = total[campaign] if group == "*" else _bag(by_variant[campaign], group)
                bag[metric] = bag.get(metric, 0) + sign
    moved_counts = {campaign: _counts_plus(counts.get(campaign, CampaignCounts()), delta,
                                           by_variant[campaign])
                    for campaign, delta in total.items()}
    moved_windows: dict[tuple[str, str], CampaignCounts | None] = {}
    for (campaign, window), (delta, variant_deltas) in in_windows.items():
        base = windows.get(campaign, {}).get(window, CampaignCounts())
        after_window = _counts_plus(base, delta, variant_deltas)
        moved_windows[campaign, window] = \
            after_window if after_window.total or after_window.variants else None
    return moved_counts, moved_contacts, moved_windows


# Campaign counts, contact activity, window counts per campaign (streams/pipeline/views.py).
Aggregates = tuple[
    dict[str, CampaignCounts],
    dict[tuple[str, str], ContactActivity],
    dict[str, dict[str, CampaignCounts]],
]


def aggregate_fields(contributions: Iterable[ContributionFields]) -> Aggregates:
    """Campaign counts, contact activity (only contacts with some) and window counts
    of a set of current contributions: ``apply_changes`` of ``None -> c`` for each,
    from nothing, in one batch (a recovery rebuilds the views of a million messages
    at once)."""
    counts, moved_contacts, moved_windows = apply_changes(
        {}, {}, {}, ((None, c) for c in contributions))
    windows: dict[str, dict[str, CampaignCounts]] = {}
    for (campaign, window), moved in moved_windows.items():
        kept = windows.setdefault(campaign, {})
        if moved is not None:
            kept[window] = moved
    contacts = {c: a for c, a in moved_contacts.items() if a is not None}
    return counts, contacts, windows
