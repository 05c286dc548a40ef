"""Readable text for a campaign summary."""

from __future__ import annotations

from typing import Any


def _rate(value: Any) -> str:
    return f"{float(value) * 100:.1f}%"


def format_summary(summary: dict[str, Any]) -> str:
    rows = [("metric", "campaign", *summary["variants"])]
    for key in ("sent", "delivered", "delivery_rate", "failed", "pending", "replies",
                "reply_rate", "unique_repliers", "opt_outs", "link_clicks",
                "unique_link_clicks", "link_click_rate", "retries", "recovered_by_retry"):
        fmt = _rate if key.endswith("_rate") else str
        rows.append((key, fmt(summary.get(key, 0)),
                     *(fmt(v.get(key, 0)) for v in summary["variants"].values())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"Campaign {summary['campaign_id']}"]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths, strict=True))) for r in rows]
    if summary.get("by_error_code"):
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in
                                            sorted(summary["by_error_code"].items())))
    return "\n".join(lines)
