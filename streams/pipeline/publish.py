"""Snapshots for the output topics: each changed campaign and window at most once per
``CA_EMIT_INTERVAL`` (the views' throttle decides which are due)."""

from __future__ import annotations

from projections.metrics import summarize
from streams.codecs.output_avro import (
    encode_campaign_metrics,
    encode_campaign_window,
    window_record_key,
)
from streams.pipeline.views import CampaignViews

Records = list[tuple[bytes, bytes]]


def due_snapshots(views: CampaignViews, now_ms: int) -> tuple[Records, Records]:
    """The (key, value) records due now: campaign snapshots, then window snapshots."""
    metrics = [(campaign_id.encode(), encode_campaign_metrics(summarize(campaign_id, counts),
                                                               now_ms))
               for campaign_id, counts in views.take_dirty(now_ms)]
    windows = [(window_record_key(campaign_id, key),
                encode_campaign_window(campaign_id, key, counts, now_ms))
               for campaign_id, key, counts in views.take_dirty_windows(now_ms)]
    return metrics, windows
