"""How old each campaign's last metric snapshot is, for the worker's gauges.

``publish_metrics`` tells ``SnapshotAges`` which campaigns it published, and a timer
every few seconds which still wait (changed, held back by the throttle, or never
published): never per event. From that:

- ``ages``: seconds since each *active* campaign's last snapshot. Active: changed on
  this worker in the last ``ACTIVE_MS``; a per-campaign series only for those keeps
  the gauge's cardinality to the campaigns that move, not every campaign ever seen;
- ``oldest_pending``: how long the oldest change that no snapshot carries yet has
  waited (to within the timer's period); the throttle holds one at most an emit
  interval, so much longer means a campaign has input but gets no snapshot (alert
  CampaignAnalyticsSnapshotOverdue).
"""

from __future__ import annotations

from collections.abc import Container, Iterable

ACTIVE_MS = 15 * 60_000


class SnapshotAges:
    def __init__(self, active_ms: int = ACTIVE_MS) -> None:
        self.active_ms = active_ms
        self._published: dict[str, int] = {}  # campaign -> its last snapshot (epoch ms)
        self._pending_since: dict[str, int] = {}  # first seen waiting since that snapshot
        self._changed: dict[str, int] = {}  # last seen published or waiting

    def observe(self, published: Iterable[str], waiting: Iterable[str], now_ms: int) -> None:
        """One publish tick: ``published`` went out now, ``waiting`` are still held."""
        for campaign_id in published:
            self._published[campaign_id] = now_ms
            self._changed[campaign_id] = now_ms
            self._pending_since.pop(campaign_id, None)
        for campaign_id in waiting:
            self._pending_since.setdefault(campaign_id, now_ms)
            self._changed[campaign_id] = now_ms

    def ages(self, now_ms: int, known: Container[str] | None = None) -> dict[str, float]:
        """Seconds since the last snapshot of each active campaign (since its first
        waiting change if it never had one). Campaigns idle longer than ``active_ms``,
        or not in ``known`` (this worker's campaigns, after a rebalance), are forgotten."""
        horizon = now_ms - self.active_ms
        for campaign_id in [c for c, at in self._changed.items()
                            if at < horizon or (known is not None and c not in known)]:
            del self._changed[campaign_id]
            self._published.pop(campaign_id, None)
            self._pending_since.pop(campaign_id, None)
        return {c: max(0, now_ms - self._published.get(c, self._pending_since.get(c, now_ms)))
                / 1000 for c in self._changed}

    def oldest_pending(self, now_ms: int) -> float:
        """Seconds the oldest change without a snapshot has waited; 0 if none waits."""
        oldest = min(self._pending_since.values(), default=now_ms)
        return max(0, now_ms - oldest) / 1000
