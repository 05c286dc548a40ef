"""Readable text for a campaign summary."""

from __future__ import annotations

from typing import Any


def _rate(value: Any) -> str:
    return f"{float(value) * 100:.1f}%"


# domain.md 3b: shown when the worker has prices (CA_PRICES_FILE); "-" for a figure
# without a divisor.
_COSTS = ("cost", "cost_per_delivered", "cost_per_unique_human_click")


def _money(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def format_summary(summary: dict[str, Any]) -> str:
    rows = [("metric", "campaign", *summary["variants"])]
    for key in ("sent", "delivered", "delivery_rate", "failed", "pending", "unknown",
                "replies", "reply_rate", "unique_repliers", "opt_outs", "link_clicks",
                "unique_link_clicks", "link_click_rate", "human_link_clicks",
                "unique_human_link_clicks", "human_link_click_rate", "retries",
                "recovered_by_retry", *(_COSTS if summary.get("currency") else ())):
        fmt = _rate if key.endswith("_rate") else _money if key in _COSTS else str
        rows.append((key, fmt(summary.get(key, 0)),
                     *(fmt(v.get(key, 0)) for v in summary["variants"].values())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"Campaign {summary['campaign_id']}"]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths, strict=True))) for r in rows]
    if summary.get("currency"):
        lines.append(f"costs in {summary['currency']}")
    if summary.get("by_error_code"):
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in
                                            sorted(summary["by_error_code"].items())))
    for name, title in (("by_failure_category", "failure categories"),
                        ("by_country", "sent by country")):
        if summary.get(name):
            top = sorted(summary[name].items(), key=lambda kv: (
                -(kv[1]["sent"] if isinstance(kv[1], dict) else kv[1]), kv[0]))
            lines.append(f"{title}: " + ", ".join(
                f"{k}={v['sent'] if isinstance(v, dict) else v}" for k, v in top))
    return "\n".join(lines)
