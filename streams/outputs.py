"""Avro encoding of the metric snapshots published for downstream services."""

from __future__ import annotations

from typing import Any

from projections.metrics import WINDOW_METRICS, CampaignCounts, parse_window_key
from schemas import decode_single_object, encode_single_object, latest, load_schemas

_METRIC_KEYS = (
    "sent",
    "delivered",
    "failed",
    "pending",
    "replies",
    "unique_repliers",
    "opt_outs",
    "link_clicks",
    "unique_link_clicks",
    "delivery_rate",
    "reply_rate",
    "link_click_rate",
)
_BREAKDOWNS = ("by_error_code", "by_carrier", "time_to_deliver", "time_to_first_click")

_SCHEMAS = load_schemas()
_SCHEMA = latest(_SCHEMAS, "campaign_metrics")
_WINDOW_SCHEMA = latest(_SCHEMAS, "campaign_windows")


def encode_campaign_metrics(summary: dict[str, Any], emitted_at: int) -> bytes:
    """Encode a summary (``projections.metrics.summarize``) as a CampaignMetricsUpdated."""
    record = {
        "campaign_id": summary["campaign_id"],
        "emitted_at": emitted_at,
        "metrics": {key: summary[key] for key in _METRIC_KEYS},
        "variants": {
            name: {key: values[key] for key in _METRIC_KEYS}
            for name, values in summary["variants"].items()
        },
        **{name: summary[name] for name in _BREAKDOWNS},
    }
    return encode_single_object(_SCHEMA, record)


def decode_campaign_metrics(data: bytes) -> dict[str, Any]:
    """Back to the summary shape of the CLI: flat metrics, ``variants``, breakdowns."""
    record = decode_single_object(_SCHEMA, data)
    summary: dict[str, Any] = {"campaign_id": record["campaign_id"], **record["metrics"]}
    summary["variants"] = dict(sorted(record["variants"].items()))
    for name in _BREAKDOWNS:
        summary[name] = record[name]
    summary["emitted_at"] = record["emitted_at"]
    return summary


def window_record_key(campaign_id: str, window_key: str) -> bytes:
    size, start = parse_window_key(window_key)
    return f"{campaign_id}|{size}|{start}".encode()


def encode_campaign_window(
    campaign_id: str, window_key: str, counts: CampaignCounts, emitted_at: int
) -> bytes:
    size, start = parse_window_key(window_key)
    record = {
        "campaign_id": campaign_id,
        "window_seconds": size,
        "window_start": start,
        "emitted_at": emitted_at,
        "counts": {m: counts.total.get(m, 0) for m in WINDOW_METRICS},
        "variants": {
            name: {m: bag.get(m, 0) for m in WINDOW_METRICS}
            for name, bag in sorted(counts.variants.items())
        },
    }
    return encode_single_object(_WINDOW_SCHEMA, record)


def decode_campaign_window(data: bytes) -> dict[str, Any]:
    return decode_single_object(_WINDOW_SCHEMA, data)
