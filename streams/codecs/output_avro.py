"""Avro encoding of the metric snapshots published for downstream services.

Readers resolve: a record's fingerprint names the schema version it was written
with, and it is read into the newest version of that schema (new fields take
their defaults), so snapshots written before an upgrade still decode from the
compacted topics (docs/consumers.md).
"""

from __future__ import annotations

from typing import Any

from projections.metrics import (
    BREAKDOWNS,
    RETRY_METRICS,
    WINDOW_METRICS,
    CampaignCounts,
    parse_window_key,
)
from schemas import (
    SchemaVersion,
    by_fingerprint,
    decode_single_object,
    encode_single_object,
    latest,
    load_schemas,
)

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
    *RETRY_METRICS,
)
_BREAKDOWNS = tuple(name for name, _ in BREAKDOWNS)
# A Metrics record (v3): the flat metrics, the breakdowns of the same bag and its
# first attempts (None in a record written before v3).
_METRICS_FIELDS = _METRIC_KEYS + _BREAKDOWNS + ("first_attempts",)

_SCHEMAS = load_schemas()
_SCHEMA = latest(_SCHEMAS, "campaign_metrics")
_WINDOW_SCHEMA = latest(_SCHEMAS, "campaign_windows")
_BY_FINGERPRINT: dict[bytes, SchemaVersion] = by_fingerprint(
    [s for s in _SCHEMAS if s.name in ("campaign_metrics", "campaign_windows")])


def encode_campaign_metrics(summary: dict[str, Any], emitted_at: int) -> bytes:
    """Encode a summary (``projections.metrics.summarize``) as a CampaignMetricsUpdated."""
    record = {
        "campaign_id": summary["campaign_id"],
        "emitted_at": emitted_at,
        "metrics": {key: summary[key] for key in _METRICS_FIELDS},
        "variants": {
            name: {key: values[key] for key in _METRICS_FIELDS}
            for name, values in summary["variants"].items()
        },
        **{name: summary[name] for name in _BREAKDOWNS},  # the campaign's, as in v1
    }
    return encode_single_object(_SCHEMA, record)


def decode_campaign_metrics(data: bytes) -> dict[str, Any]:
    """Back to the summary shape of the CLI: flat metrics, breakdowns, first attempts,
    ``variants`` (each with its breakdowns, empty in a record written with v1, and
    first attempts, None in one written before v3)."""
    record = decode_single_object(_SCHEMA, data, _BY_FINGERPRINT)
    summary: dict[str, Any] = {"campaign_id": record["campaign_id"]}
    summary.update((key, record["metrics"][key]) for key in _METRIC_KEYS)
    summary["first_attempts"] = record["metrics"]["first_attempts"]
    for name in _BREAKDOWNS:
        summary[name] = record[name]
    summary["variants"] = dict(sorted(record["variants"].items()))
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
    return decode_single_object(_WINDOW_SCHEMA, data, _BY_FINGERPRINT)
