"""An independent batch recount of domain.md section 3, straight from JSON-lines dicts.

Written without the projections on purpose: it is the oracle the streaming
results are checked against. Plain loops over the whole event set, no folds.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import crawleruseragents
import phonenumbers

from streams.codecs.user_agents import PREVIEW_AGENTS

OPT_OUT = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit"}
TERMINAL = {"DELIVERED", "UNDELIVERED", "FAILED"}
RANK = {"QUEUED": 0, "SENT": 1, "DELIVERED": 2, "UNDELIVERED": 2, "FAILED": 2}
RECEIPT_TIMEOUT_MS = 72 * 3600 * 1000  # CA_RECEIPT_TIMEOUT's default
PREVIEW_WINDOW_MS = 2000  # CA_PREVIEW_WINDOW_SECONDS's default


def _lost(sent: dict[str, Any], as_of: int | None, timeout_ms: int) -> bool:
    """domain.md 3b: as of ``as_of``, an accepted message without a terminal receipt
    whose send is ``timeout_ms`` or more ago is unknown (never, without ``as_of``)."""
    return as_of is not None and as_of - sent["occurred_at"] >= timeout_ms


def _final_status(receipts: list[dict[str, Any]]) -> dict[str, Any] | None:
    terminal = [r for r in receipts if r["status"] in TERMINAL]
    if not terminal:
        return None
    return max(terminal, key=lambda r: (r["occurred_at"], r["event_id"]))


def _by_message(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Distinct events (first of each event_id) grouped by message."""
    unique: dict[str, dict[str, Any]] = {}
    for e in events:
        unique.setdefault(e["event_id"], e)
    by_message: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in unique.values():
        by_message[e["message_id"]].append(e)
    return by_message


def _first_sent(msg_events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A message's `sent` event (the earliest, then smallest id, if there are several)."""
    sends = [e for e in msg_events if e["type"] == "sent"]
    return min(sends, key=lambda e: (e["occurred_at"], e["event_id"])) if sends else None


BREAKDOWN_KEYS = ("by_error_code", "by_carrier", "time_to_deliver", "time_to_first_click",
                  "by_failure_category")
# domain.md 3b, where: per country / carrier, {sent, delivered, failed}
OUTCOME_KEYS = ("by_country", "by_carrier_outcome")
COST_KEYS = ("currency", "cost", "cost_per_delivered", "cost_per_unique_human_click")
# (currency, default price, {country: price}) per segment, as a prices file says
Prices = tuple[str, Decimal, dict[str, Decimal]]
FIRST_ATTEMPT_KEYS = ("sent", "delivered", "failed", "pending", "replies", "opt_outs",
                      "link_clicks", "unique_link_clicks", "unique_repliers",
                      "human_link_clicks", "unique_human_link_clicks")


def recount(events: list[dict[str, Any]], as_of: int | None = None,
            receipt_timeout_ms: int = RECEIPT_TIMEOUT_MS, *,
            prices: Prices | None = None,
            preview_window_ms: int = PREVIEW_WINDOW_MS) -> dict[str, dict[str, Any]]:
    """Summary per campaign id, in the shape of ``summary --json``: the metrics and
    breakdowns of each campaign and of each of its variants, and their counts over
    first attempts only (``first_attempts``: messages without ``retry_of``).
    ``as_of`` (epoch ms): the instant ``unknown`` is judged at (``_lost``).
    ``prices``: the cost figures (``_costs``); without them they are None.
    ``preview_window_ms``: the human clicks' time rule (``human_clicks``)."""
    by_message = _by_message(events)

    # (campaign, variant, first attempts only?) -> counts
    groups: dict[tuple[str, str | None, bool], dict[str, Any]] = {}

    def group(campaign: str, variant: str | None, first_only: bool) -> dict[str, Any]:
        return groups.setdefault(
            (campaign, variant, first_only),
            {k: 0 for k in ("sent", "delivered", "failed", "pending", "unknown", "replies",
                            "opt_outs", "link_clicks", "retries", "recovered_by_retry",
                            "human_link_clicks")}
            | {"clickers": set(), "repliers": set(), "human_clickers": set()}
            | {k: defaultdict(int) for k in BREAKDOWN_KEYS}
            | {k: defaultdict(_no_outcomes) for k in OUTCOME_KEYS}
            | {"segments": defaultdict(int)},
        )

    for msg_events in by_message.values():
        sent = _first_sent(msg_events)
        if sent is None:
            continue  # counts nowhere until its sent event
        receipts = [e for e in msg_events if e["type"] == "delivery"]
        replies = [e for e in msg_events if e["type"] == "reply"]
        clicks = [e for e in msg_events if e["type"] == "click"]
        variant = sent.get("variant")
        retry = sent.get("retry_of") is not None
        targets = [(sent["campaign_id"], None)] + ([(sent["campaign_id"], variant)]
                                                    if variant else [])
        for g in [group(c, v, False) for c, v in targets] + (
                [] if retry else [group(c, v, True) for c, v in targets]):
            g["retries"] += retry
            if sent["outcome"] == "REJECTED":
                g["failed"] += 1
            else:
                g["sent"] += 1
                final = _final_status(receipts)
                if final is None:
                    g["unknown" if _lost(sent, as_of, receipt_timeout_ms) else "pending"] += 1
                elif final["status"] == "DELIVERED":
                    g["delivered"] += 1
                    g["recovered_by_retry"] += retry
                else:
                    g["failed"] += 1
            g["replies"] += len(replies)
            g["opt_outs"] += sum(1 for r in replies if r["body"].strip().casefold() in OPT_OUT)
            g["link_clicks"] += len(clicks)
            if clicks:
                g["clickers"].add(sent["contact_id"])
            if replies:
                g["repliers"].add(sent["contact_id"])
            human = human_clicks(sent, msg_events, preview_window_ms)
            g["human_link_clicks"] += human
            if human:
                g["human_clickers"].add(sent["contact_id"])
            for name, sub in _breakdown_entries(sent, msg_events):
                g[name][sub] += 1
            for name, sub, outcome in _where_entries(sent, msg_events):
                if outcome is None:
                    g[name][sub] += 1
                else:
                    g[name][sub][outcome] += 1
            if sent["outcome"] != "REJECTED":  # the cost's input: accepted segments
                g["segments"][country(sent["phone"])] += sent.get("segments", 1)

    def view(g: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in g.items() if k not in ("clickers", "repliers", "human_clickers")}
        out.update((k, dict(g[k])) for k in BREAKDOWN_KEYS)
        out["unique_link_clicks"] = len(g["clickers"])
        out["unique_repliers"] = len(g["repliers"])
        sent = out["sent"]
        out["delivery_rate"] = out["delivered"] / sent if sent else 0.0
        out["reply_rate"] = out["replies"] / sent if sent else 0.0
        out["link_click_rate"] = out["unique_link_clicks"] / sent if sent else 0.0
        out["unique_human_link_clicks"] = len(g["human_clickers"])
        out["human_link_click_rate"] = out["unique_human_link_clicks"] / sent if sent else 0.0
        out.update((k, {sub: dict(o) for sub, o in g[k].items()}) for k in OUTCOME_KEYS)
        out.update(_costs(out.pop("segments"), out["delivered"],
                          out.get("unique_human_link_clicks", 0), prices))
        return out

    def first_attempts(campaign: str, variant: str | None) -> dict[str, int]:
        g = view(group(campaign, variant, True))
        return {k: g[k] for k in FIRST_ATTEMPT_KEYS}

    result: dict[str, dict[str, Any]] = {}
    for (campaign, variant, first_only), g in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if variant is None and not first_only:
            result[campaign] = {"campaign_id": campaign, **view(g), "variants": {},
                                "first_attempts": first_attempts(campaign, None)}
    for (campaign, variant, first_only), g in list(groups.items()):
        if variant is not None and not first_only:
            result[campaign]["variants"][variant] = view(g) | {
                "first_attempts": first_attempts(campaign, variant)}
    for summary in result.values():
        summary["variants"] = dict(sorted(summary["variants"].items()))
    return result


def expected_log(events: list[dict[str, Any]], campaign_id: str, as_of: int | None = None,
                 receipt_timeout_ms: int = RECEIPT_TIMEOUT_MS, *,
                 preview_window_ms: int = PREVIEW_WINDOW_MS) -> dict[str, dict[str, Any]]:
    """message_id -> {status, delivered_at, ...} for the campaign's messages (for
    exports); ``as_of`` and ``preview_window_ms`` as in ``recount``."""
    by_message = _by_message(events)
    out: dict[str, dict[str, Any]] = {}
    for message_id, msg_events in by_message.items():
        sent = _first_sent(msg_events)
        if sent is None or sent["campaign_id"] != campaign_id:
            continue
        receipts = [e for e in msg_events if e["type"] == "delivery"]
        if sent["outcome"] == "REJECTED":
            status, delivered_at = "rejected", None
        else:
            final = _final_status(receipts)
            if final is not None:
                status = final["status"].lower()
            elif _lost(sent, as_of, receipt_timeout_ms):
                status = "unknown"
            elif receipts:
                status = max(receipts, key=lambda r: (RANK[r["status"]], r["occurred_at"],
                                                      r["event_id"]))["status"].lower()
            else:
                status = "sent"
            delivered_at = final["occurred_at"] if final and status == "delivered" else None
        out[message_id] = {"phone": sent["phone"], "contact_name": sent.get("contact_name"),
                           "variant": sent.get("variant"), "status": status,
                           "delivered_at": delivered_at, "retry_of": sent.get("retry_of"),
                           "human_click_count": human_clicks(sent, msg_events,
                                                             preview_window_ms)}
    return out


def recount_windows(events: list[dict[str, Any]], campaign_id: str,
                    sizes_s: tuple[int, ...] = (60, 3600)
                    ) -> dict[tuple[int, int], dict[str, Any]]:
    """(window seconds, window start ms) -> {"counts": {...}, "variants": {v: {...}}}.

    A count sits in the window of the event that caused it: sends at the send,
    deliveries and failures at the winning terminal receipt (at the send for a
    REJECTED one), each reply and click at its own time.
    """
    by_message = _by_message(events)
    zero = dict.fromkeys(("sent", "delivered", "failed", "replies", "opt_outs",
                          "link_clicks"), 0)
    out: dict[tuple[int, int], dict[str, Any]] = {}

    def add(at: int, variant: str | None, metric: str) -> None:
        for size in sizes_s:
            start = at - at % (size * 1000)
            w = out.setdefault((size, start), {"counts": dict(zero), "variants": {}})
            w["counts"][metric] += 1
            if variant:
                w["variants"].setdefault(variant, dict(zero))[metric] += 1

    for msg_events in by_message.values():
        sent = _first_sent(msg_events)
        if sent is None or sent["campaign_id"] != campaign_id:
            continue
        variant = sent.get("variant")
        if sent["outcome"] == "REJECTED":
            add(sent["occurred_at"], variant, "failed")
        else:
            add(sent["occurred_at"], variant, "sent")
            final = _final_status([e for e in msg_events if e["type"] == "delivery"])
            if final is not None:
                metric = "delivered" if final["status"] == "DELIVERED" else "failed"
                add(final["occurred_at"], variant, metric)
        for e in msg_events:
            if e["type"] == "reply":
                add(e["occurred_at"], variant, "replies")
                if e["body"].strip().casefold() in OPT_OUT:
                    add(e["occurred_at"], variant, "opt_outs")
            elif e["type"] == "click":
                add(e["occurred_at"], variant, "link_clicks")
    return out


BUCKETS_S = (1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


def _bucket(millis: int) -> str:
    seconds = max(millis, 0) / 1000
    return next((f"le_{b}s" for b in BUCKETS_S if seconds <= b), "gt_86400s")


def _breakdown_entries(sent: dict[str, Any], msg_events: list[dict[str, Any]]
                       ) -> list[tuple[str, str]]:
    """(breakdown, sub-key) pairs one message counts once in: by_error_code (failed
    messages), by_carrier (accepted messages whose receipts name one: the carrier
    of the winning such receipt), time_to_deliver and time_to_first_click."""
    out: list[tuple[str, str]] = []
    receipts = [e for e in msg_events if e["type"] == "delivery"]
    clicks = sorted(e["occurred_at"] for e in msg_events if e["type"] == "click")

    def order(r: dict[str, Any]) -> tuple[int, int, str]:
        return (RANK[r["status"]], r["occurred_at"], r["event_id"])

    if clicks:
        out.append(("time_to_first_click", _bucket(clicks[0] - sent["occurred_at"])))
    if sent["outcome"] == "REJECTED":
        if sent.get("error_code"):
            out.append(("by_error_code", sent["error_code"]))
        return out
    with_carrier = [r for r in receipts if r.get("carrier")]
    if with_carrier:
        out.append(("by_carrier", max(with_carrier, key=order)["carrier"]))
    final = _final_status(receipts)
    if final is None:
        return out
    if final["status"] == "DELIVERED":
        out.append(("time_to_deliver", _bucket(final["occurred_at"] - sent["occurred_at"])))
    else:
        with_error = [r for r in receipts if r.get("error_code")]
        if with_error:
            out.append(("by_error_code", max(with_error, key=order)["error_code"]))
    return out


def automated_agent(user_agent: str | None) -> bool:
    """A known bot or preview fetcher: the maintained list's own matcher, or one of the
    project's preview agents anywhere in it, any case (the same data as
    streams/codecs/user_agents.py, matched here without its regex or its cache). A
    missing or blank user agent is no verdict: the time rule alone judges it."""
    if user_agent is None or not user_agent.strip():
        return False
    lower = user_agent.lower()
    return (crawleruseragents.is_crawler(user_agent)
            or any(agent.lower() in lower for agent in PREVIEW_AGENTS))


def human_clicks(sent: dict[str, Any], msg_events: list[dict[str, Any]],
                 preview_window_ms: int = PREVIEW_WINDOW_MS) -> int:
    """domain.md 3b: the message's clicks that neither an automated agent made nor
    came strictly less than the window away (either side) from the receipt that makes
    the message delivered: the winning terminal receipt, when it is DELIVERED and the
    send was accepted (else no time rule applies)."""
    final = _final_status([e for e in msg_events if e["type"] == "delivery"])
    delivered_at = None
    if sent["outcome"] == "ACCEPTED" and final is not None and final["status"] == "DELIVERED":
        delivered_at = final["occurred_at"]
    n = 0
    for e in msg_events:
        if e["type"] != "click" or automated_agent(e.get("user_agent")):
            continue
        if delivered_at is not None and abs(e["occurred_at"] - delivered_at) < preview_window_ms:
            continue  # a preview fetched as the message landed
        n += 1
    return n


def recount_breakdowns(events: list[dict[str, Any]], campaign_id: str) -> dict[str, dict]:
    """The campaign's breakdowns (``_breakdown_entries``, ``_where_entries``); empty
    ones for a campaign with no sent message."""
    summary = recount(events).get(campaign_id, {})
    return {k: summary.get(k, {}) for k in BREAKDOWN_KEYS + OUTCOME_KEYS}


# --- domain.md 3b: where failures happen, what a result cost ------------------------

# The failure categories of domain.md 3b's codes (Twilio's); 30008, none and any other
# code: unclassified.
CATEGORY_OF_CODE = {
    "21211": "invalid_number", "30005": "invalid_number",
    "21614": "not_mobile", "30006": "not_mobile",
    "30004": "blocked", "30007": "blocked", "30034": "blocked",
    "21610": "opted_out",
    "30001": "temporary", "30003": "temporary",
}


def _no_outcomes() -> dict[str, int]:
    return {"sent": 0, "delivered": 0, "failed": 0}


@functools.cache
def country(phone: str) -> str:
    """The ISO 3166 region ``phonenumbers`` places the whole number in (a full parse,
    every time); ZZ for a number it places nowhere."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return "ZZ"
    return region if region and region != "001" else "ZZ"


def category(code: str | None) -> str:
    return CATEGORY_OF_CODE.get((code or "").strip(), "unclassified")


def _where_entries(sent: dict[str, Any], msg_events: list[dict[str, Any]]
                   ) -> list[tuple[str, str, str | None]]:
    """(breakdown, sub-key, outcome) triples one message counts once in: by_country
    (sent if accepted, then delivered or failed; a REJECTED one failed only),
    by_carrier_outcome (accepted messages whose receipts name a carrier: the winning
    such receipt's) and by_failure_category (failed messages; outcome None: flat), the
    cause being the REJECTED send's code or the winning terminal receipt's."""
    cc = country(sent["phone"])
    if sent["outcome"] == "REJECTED":
        return [("by_country", cc, "failed"),
                ("by_failure_category", category(sent.get("error_code")), None)]
    receipts = [e for e in msg_events if e["type"] == "delivery"]
    with_carrier = [r for r in receipts if r.get("carrier")]
    carrier = max(with_carrier, key=lambda r: (RANK[r["status"]], r["occurred_at"],
                                               r["event_id"]))["carrier"] \
        if with_carrier else None
    out: list[tuple[str, str, str | None]] = [("by_country", cc, "sent")]
    if carrier is not None:
        out.append(("by_carrier_outcome", carrier, "sent"))
    final = _final_status(receipts)
    if final is None:
        return out
    outcome = "delivered" if final["status"] == "DELIVERED" else "failed"
    out.append(("by_country", cc, outcome))
    if carrier is not None:
        out.append(("by_carrier_outcome", carrier, outcome))
    if outcome == "failed":
        out.append(("by_failure_category", category(final.get("error_code")), None))
    return out


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def _costs(segments: dict[str, int], delivered: int, unique_human_clicks: int,
           prices: Prices | None) -> dict[str, Any]:
    """The cost keys: accepted segments per country times its price (else the
    default), exact, then per delivered message and per unique human click; rounded
    half-even to millionths; None without prices or without such results."""
    if prices is None:
        return dict.fromkeys(COST_KEYS)
    currency, default, by_country = prices
    with localcontext(prec=60):
        cost = sum((by_country.get(cc, default) * n for cc, n in segments.items()),
                   Decimal(0))
        return {"currency": currency, "cost": _money(cost),
                "cost_per_delivered": _money(cost / delivered) if delivered else None,
                "cost_per_unique_human_click":
                    _money(cost / unique_human_clicks) if unique_human_clicks else None}
