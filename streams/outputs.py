"""Avro encoding of the metric snapshots published for downstream services."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from projections.metrics import WINDOW_METRICS, CampaignCounts, parse_window_key
from schemas import MAGIC, latest, load_schemas

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
    out = io.BytesIO()
    out.write(MAGIC + _SCHEMA.fingerprint)
    fastavro.schemaless_writer(out, _SCHEMA.parsed, record, strict=True)
    return out.getvalue()


def decode_campaign_metrics(data: bytes) -> dict[str, Any]:
    """Back to the summary shape of the CLI: flat metrics, ``variants``, breakdowns."""
    if data[:2] != MAGIC or data[2:10] != _SCHEMA.fingerprint:
        raise ValueError("not a CampaignMetricsUpdated v1 record")
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), _SCHEMA.plain, _SCHEMA.plain)
    assert isinstance(record, dict)  # noqa: S101 - a record schema decodes to a dict
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
    out = io.BytesIO()
    out.write(MAGIC + _WINDOW_SCHEMA.fingerprint)
    fastavro.schemaless_writer(out, _WINDOW_SCHEMA.parsed, record, strict=True)
    return out.getvalue()


def decode_campaign_window(data: bytes) -> dict[str, Any]:
    if data[:2] != MAGIC or data[2:10] != _WINDOW_SCHEMA.fingerprint:
        raise ValueError("not a CampaignWindowUpdated v1 record")
    record = fastavro.schemaless_reader(
        io.BytesIO(data[10:]), _WINDOW_SCHEMA.plain, _WINDOW_SCHEMA.plain
    )
    assert isinstance(record, dict)  # noqa: S101 - a record schema decodes to a dict
    return record
