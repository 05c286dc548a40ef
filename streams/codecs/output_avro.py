"""Avro encoding of the metric snapshots published for downstream services.

Readers resolve: a record's fingerprint names the schema version it was written
with, and it is read into the newest version of that schema (new fields take
their defaults), so snapshots written before an upgrade still decode from the
compacted topics (docs/consumers.md).
"""

from __future__ import annotations

from typing import Any

from projections.metrics import WINDOW_METRICS, CampaignCounts, parse_window_key
from schemas import (
    SchemaVersion,
    by_fingerprint,
    decode_single_object,
    encode_single_object,
    latest,
    load_schemas,
)

_SCHEMAS = load_schemas()
_SCHEMA = latest(_SCHEMAS, "campaign_metrics")
_WINDOW_SCHEMA = latest(_SCHEMAS, "campaign_windows")
_BY_FINGERPRINT: dict[bytes, SchemaVersion] = by_fingerprint(
    [s for s in _SCHEMAS if s.name in ("campaign_metrics", "campaign_windows")])


_NO_DEFAULT = object()


def _fields(record_schema: dict[str, Any]) -> dict[str, Any]:
    """A record schema's fields, name -> default (``_NO_DEFAULT`` when it has none)."""
    return {f["name"]: f.get("default", _NO_DEFAULT) for f in record_schema["fields"]}


_TOP_FIELDS = _fields(_SCHEMA.parsed)
_METRICS_SCHEMA = next(f["type"] for f in _SCHEMA.parsed["fields"] if f["name"] == "metrics")
# A Metrics record (v4): the flat metrics, the breakdowns of the same bag, its first
# attempts (None in a record written before v3) and its cost figures; taken from the
# schema itself, so the record and the summary keys cannot drift apart.
_METRICS_FIELDS = _fields(_METRICS_SCHEMA)
_FIRST_ATTEMPT_FIELDS = _fields(next(
    t for t in _METRICS_SCHEMA["fields"] if t["name"] == "first_attempts")["type"][1])
# The campaign's own breakdowns at the top level, as in v1.
_TOP_BREAKDOWNS = tuple(k for k in _TOP_FIELDS
                        if k not in ("campaign_id", "emitted_at", "metrics", "variants"))
_METRIC_KEYS = tuple(k for k in _METRICS_FIELDS if k != "first_attempts")


def _take(values: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The schema's fields of ``values``; a key the summary lacks takes its schema
    default (a summary from before a metric existed still encodes; a field without
    a default stays required: KeyError)."""
    out = {}
    for key, default in fields.items():
        if key in values:
            out[key] = values[key]
        elif default is _NO_DEFAULT:
            raise KeyError(key)
        else:
            out[key] = default
    return out


def _metrics_record(values: dict[str, Any]) -> dict[str, Any]:
    record = _take(values, _METRICS_FIELDS)
    first = record["first_attempts"]
    if first is not None:
        record["first_attempts"] = _take(first, _FIRST_ATTEMPT_FIELDS)
    return record


def encode_campaign_metrics(summary: dict[str, Any], emitted_at: int) -> bytes:
    """Encode a summary (``projections.metrics.summarize``) as a CampaignMetricsUpdated."""
    record = {
        "campaign_id": summary["campaign_id"],
        "emitted_at": emitted_at,
        "metrics": _metrics_record(summary),
        "variants": {name: _metrics_record(values)
                     for name, values in summary["variants"].items()},
        **{name: summary[name] for name in _TOP_BREAKDOWNS},  # the campaign's, as in v1
    }
    return encode_single_object(_SCHEMA, record)


def decode_campaign_metrics(data: bytes) -> dict[str, Any]:
    """Back to the summary shape of the CLI: flat metrics, breakdowns, first attempts,
    cost figures, ``variants`` (each the same); a record written with an older version
    gets the newer fields' defaults (e.g. empty variant breakdowns before v2, first
    attempts None before v3, unknown 0 and cost None before v4)."""
    record = decode_single_object(_SCHEMA, data, _BY_FINGERPRINT)
    summary: dict[str, Any] = {"campaign_id": record["campaign_id"]}
    summary.update((key, record["metrics"][key]) for key in _METRIC_KEYS)
    summary["first_attempts"] = record["metrics"]["first_attempts"]
    for name in _TOP_BREAKDOWNS:
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
