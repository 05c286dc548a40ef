"""Snapshots for the output topics: each changed campaign and window at most once per
``CA_EMIT_INTERVAL`` (the views' throttle decides which are due), and a tombstone (the
window's key, value ``None``) for each window the views pruned past its retention, so
compaction removes it from the windows topic."""

from __future__ import annotations

from projections.costs import PriceTable
from projections.metrics import summarize
from streams.codecs.output_avro import (
    encode_campaign_metrics,
    encode_campaign_window,
    window_record_key,
)
from streams.pipeline.views import CampaignViews

Records = list[tuple[bytes, bytes]]
WindowRecords = list[tuple[bytes, bytes | None]]  # a value None is a tombstone


def due_snapshots(views: CampaignViews, now_ms: int,
                  prices: PriceTable | None = None) -> tuple[Records, WindowRecords]:
    """The (key, value) records due now: campaign snapshots (their cost figures from
    ``prices``, CA_PRICES_FILE), then window snapshots and the tombstones of windows
    pruned since the last call."""
    metrics = [(campaign_id.encode(),
                encode_campaign_metrics(summarize(campaign_id, counts, prices), now_ms))
               for campaign_id, counts in views.take_dirty(now_ms)]
    windows: WindowRecords = [(window_record_key(campaign_id, key),
                               encode_campaign_window(campaign_id, key, counts, now_ms))
                              for campaign_id, key, counts in views.take_dirty_windows(now_ms)]
    windows += [(window_record_key(campaign_id, key), None)
                for campaign_id, key in views.take_ended_windows()]
    return metrics, windows
