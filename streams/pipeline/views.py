"""Campaign views derived from the contributions table (in memory, never changelogged).

A campaign's counts, its contacts' activity (for unique repliers and clickers)
and its windowed counts are all functions of the campaign's messages' current
contributions. The worker keeps them as views: moved by ``new - old`` as
contributions change, and rebuilt from the contributions table whenever
partitions are (re)assigned. So they can never disagree with the table, whatever
a crash left half-written (see ``streams/engine/tables.py``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from projections.metrics import (
    CampaignCounts,
    Change,
    ContactActivity,
    ContributionFields,
    MessageContribution,
    aggregate_fields,
    apply_changes,
    contribution_fields,
    parse_window_key,
)

K = TypeVar("K", bound=Hashable)


class Throttle(Generic[K]):
    """Lets each changed key out at most once per ``interval_ms``, and as soon as that
    allows: a key let out at ``t`` is due again at ``t + interval_ms``, not at the next
    tick of a fixed timer (which waited up to a whole interval more, and ran late
    whenever the event loop was busy)."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self._last: dict[K, int] = {}  # keys let out less than an interval ago

    def take(self, dirty: set[K], now_ms: int) -> list[K]:
        """The keys of ``dirty`` that are due (removed from it), in order; the others
        stay in ``dirty`` until they are."""
        horizon = now_ms - self.interval_ms
        last = self._last
        for key in [k for k, at in last.items() if at <= horizon]:
            del last[key]  # long enough ago: no longer holds anything back
        due = sorted(k for k in dirty if k not in last)  # type: ignore[type-var]
        for key in due:
            dirty.discard(key)
            last[key] = now_ms
        return due


class CampaignViews:
    def __init__(self, window_retention_ms: int, emit_interval_ms: int = 0) -> None:
        self.window_retention_ms = window_retention_ms
        self._emitted: Throttle[str] = Throttle(emit_interval_ms)
        self._emitted_windows: Throttle[tuple[str, str]] = Throttle(emit_interval_ms)
        self.counts: dict[str, CampaignCounts] = {}
        self.contacts: dict[tuple[str, str], ContactActivity] = {}
        self.windows: dict[str, dict[str, CampaignCounts]] = {}
        self._dirty: set[str] = set()
        self._dirty_windows: set[tuple[str, str]] = set()
        self._ended_windows: list[tuple[str, str]] = []  # pruned, their tombstones not out

    def move(self, old: MessageContribution | None, new: MessageContribution | None) -> None:
        """Apply one message's change of contribution to its campaign's views."""
        self.move_all([(None if old is None else contribution_fields(old),
                        None if new is None else contribution_fields(new))])

    def move_all(self, changes: Iterable[Change]) -> None:
        """Apply a batch of messages' contribution changes (as fields), summed per
        campaign, contact and window first (``projections.metrics.apply_changes``)."""
        counts, contacts, windows = apply_changes(self.counts, self.contacts, self.windows,
                                                  changes)
        self.counts.update(counts)
        self._dirty.update(counts)
        for contact, activity in contacts.items():
            if activity is None:
                self.contacts.pop(contact, None)
            else:
                self.contacts[contact] = activity
        for (campaign_id, key), moved in windows.items():
            in_campaign = self.windows.setdefault(campaign_id, {})
            if moved is None:
                in_campaign.pop(key, None)
            else:
                in_campaign[key] = moved
        self._dirty_windows.update(windows)

    def rebuild(self, contributions: Iterable[MessageContribution]) -> None:
        """Forget everything and recompute from the given (current) contributions."""
        self.rebuild_fields(map(contribution_fields, contributions))

    def rebuild_fields(self, contributions: Iterable[ContributionFields]) -> None:
        """``rebuild`` from contributions' fields (a recovery reads them from stored dicts)."""
        self.counts, self.contacts, self.windows = aggregate_fields(contributions)
        # publish every campaign and window once after a rebalance: a change held back
        # by the throttle (or not yet published when a worker died) is not lost
        self._dirty = set(self.counts)
        self._dirty_windows = {(cid, key) for cid, windows in self.windows.items()
                               for key in windows}

    def take_dirty(self, now_ms: int) -> list[tuple[str, CampaignCounts]]:
        """Changed campaigns whose last snapshot is at least the emit interval old."""
        due = self._emitted.take(self._dirty, now_ms)
        return [(cid, self.counts.get(cid, CampaignCounts())) for cid in due]

    def waiting_campaigns(self) -> frozenset[str]:
        """Changed campaigns that no snapshot has carried yet (read-only copy)."""
        return frozenset(self._dirty)

    def take_dirty_windows(self, now_ms: int) -> list[tuple[str, str, CampaignCounts]]:
        """Changed windows (empty counts for a window that emptied), within retention,
        likewise at most once per emit interval each."""
        dirty = self._emitted_windows.take(self._dirty_windows, now_ms)
        horizon = now_ms - self.window_retention_ms
        out = []
        for campaign_id, key in dirty:
            if parse_window_key(key)[1] < horizon:
                continue
            counts = self.windows.get(campaign_id, {}).get(key, CampaignCounts())
            out.append((campaign_id, key, counts))
        return out

    def prune_windows(self, now_ms: int) -> int:
        """Drop windows older than the retention; returns how many were dropped. Each
        dropped window is reported once by ``take_ended_windows`` (for its tombstone);
        so is one that a rebuild (or a late event) brought back and this drops again."""
        horizon = now_ms - self.window_retention_ms
        dropped = 0
        ended = self._ended_windows
        for campaign_id, windows in self.windows.items():
            old = [key for key in windows if parse_window_key(key)[1] < horizon]
            for key in old:
                del windows[key]
                ended.append((campaign_id, key))
            dropped += len(old)
        return dropped

    def take_ended_windows(self) -> list[tuple[str, str]]:
        """The (campaign, window key) pairs pruned since the last call, in order."""
        ended, self._ended_windows = self._ended_windows, []
        return ended
