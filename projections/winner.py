"""The decision to send an A/B campaign's winner (issue 21 item 3), pure: whether a
request may be recorded, and the ``WinnerDecided`` record it becomes
(``schemas/winner_decision.v*.avsc``), carrying the A/B statistics as they stood so
that an auditor can recompute the verdict from the record alone.

A variant the verdict did not declare the winner (``no_winner_yet``, or another
leader) is refused unless forced with a reason; a forced decision says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from projections.errors import CampaignAnalyticsError

MAX_REASON = 2_000


class WinnerRequestError(CampaignAnalyticsError):
    """A request that can never be recorded as it is: no such variant, a force
    without a reason (400)."""


class WinnerRefusedError(CampaignAnalyticsError):
    """The verdict does not support the variant and the request is not forced (409)."""

    def __init__(self, detail: str, verdict: Mapping[str, Any]) -> None:
        super().__init__(detail)
        self.verdict = dict(verdict)


def check_request(ab: Mapping[str, Any], variant: str, reason: str, force: bool) -> bool:
    """Whether the decision is forced; raises when it cannot be recorded."""
    names = [v["variant"] for v in ab["variants"]]
    if variant not in names:
        raise WinnerRequestError(f"campaign has no variant {variant!r} (it has "
                                 f"{', '.join(names) or 'none'})")
    if len(reason) > MAX_REASON:
        raise WinnerRequestError(f"reason must be at most {MAX_REASON} characters")
    if force and not reason.strip():
        raise WinnerRequestError("a forced decision needs a reason")
    verdict = ab["verdict"]
    if verdict["status"] == "winner" and verdict["variant"] == variant:
        return False
    if force:
        return True
    if verdict["status"] == "winner":
        detail = (f"the verdict's winner is {verdict['variant']}, not {variant}; send "
                  "force with a reason to decide otherwise")
    else:
        detail = ("no_winner_yet: " + "; ".join(verdict.get("reasons", []))
                  + " (send force with a reason to decide anyway)")
    raise WinnerRefusedError(detail, verdict)


def decision_record(ab: Mapping[str, Any], campaign_id: str, variant: str, *, reason: str,
                    forced: bool, requested_by: str, decided_at: int, decision_id: str,
                    as_of: str) -> dict[str, Any]:
    """The ``WinnerDecided`` record of a checked request (``check_request``)."""
    verdict = ab["verdict"]
    metric = verdict["metric"]
    against = {c["variant"]: c["metrics"][metric] for c in ab["comparisons"]}
    variants = []
    for entry in ab["variants"]:
        counts, primary = entry["counts"], entry["metrics"][metric]
        compared = against.get(entry["variant"], {})
        interval = primary["interval"] or {}
        av_interval = compared.get("always_valid_interval") or {}
        variants.append({
            "variant": entry["variant"],
            **{k: counts[k] for k in ("sent", "delivered", "failed", "pending", "unknown",
                                      "rejected", "unique_repliers", "unique_link_clicks",
                                      "opt_outs")},
            "successes": primary["successes"], "trials": primary["trials"],
            "rate": primary["rate"], "interval_low": interval.get("low"),
            "interval_high": interval.get("high"), "p_value": compared.get("p_value"),
            "always_valid_p_value": compared.get("always_valid_p_value"),
            "always_valid_interval_low": av_interval.get("low"),
            "always_valid_interval_high": av_interval.get("high"),
        })
    config = ab["config"]
    return {
        "decision_id": decision_id, "campaign_id": campaign_id, "variant": variant,
        "forced": forced, "reason": reason, "requested_by": requested_by,
        "decided_at": decided_at, "statistics_as_of": as_of,
        "verdict_status": verdict["status"], "verdict_variant": verdict.get("variant"),
        "verdict_metric": metric, "verdict_p_value": verdict.get("always_valid_p_value"),
        "verdict_reasons": list(verdict.get("reasons", [])), "always_valid": True,
        "alpha": config["alpha"], "level": config["level"], "control": ab["control"],
        "variants": variants,
        "statistics_json": json.dumps(ab, sort_keys=True, separators=(",", ":")),
    }
