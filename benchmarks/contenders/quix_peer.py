"""Contender c, the peer: the campaign aggregation written with Quix Streams.

Written the way the Quix Streams docs show it: an ``Application``, one
``StreamingDataFrame`` per input topic merged with ``concat``, a custom
``Deserializer`` (our Avro codec), a stateful ``apply`` keyed by the record key
(message_id) that dedups by event_id and keeps the message's status, then
``group_by("campaign_id")`` (a repartition topic) and a stateful ``apply`` that
keeps per-campaign counts. State is Quix's default: RocksDB with changelog
topics, at-least-once.

The aggregation is the core of ours (per-message dedup, terminal status by
receipt order, replies, opt-outs, clicks, unique clickers; per-campaign counts),
without ours' variants, windows, breakdowns, metric snapshots or ClickHouse.
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application, State
from quixstreams.models.serializers import Deserializer

from benchmarks.contenders.common import FirstEvent, group, settings, workdir
from projections.events import LinkClicked, MessageSent, ReceiptReceived, ReplyReceived
from projections.message import is_opt_out
from streams.codecs.input_avro import decode_event

TERMINAL = ("DELIVERED", "UNDELIVERED", "FAILED")

mark = FirstEvent()


class AvroEvent(Deserializer):
    """Our single-object Avro records as flat dicts."""

    def __call__(self, value: bytes, ctx: Any) -> dict[str, Any]:
        event = decode_event(value)
        row: dict[str, Any] = {"event_id": event.event_id, "message_id": event.message_id,
                               "at": event.occurred_at}
        if isinstance(event, MessageSent):
            row |= {"type": "sent", "campaign_id": event.campaign_id,
                    "accepted": event.outcome.value == "ACCEPTED"}
        elif isinstance(event, ReceiptReceived):
            row |= {"type": "delivery", "status": event.status.value}
        elif isinstance(event, ReplyReceived):
            row |= {"type": "reply",
                    "opt_out": is_opt_out(event.body)}
        elif isinstance(event, LinkClicked):
            row |= {"type": "click"}
        return row


def contribution(m: dict[str, Any]) -> dict[str, int]:
    """What one message adds to its campaign's counts (nothing before its send)."""
    if m.get("campaign_id") is None:
        return {}
    out: dict[str, int] = {}
    final = m.get("final")
    if m["accepted"]:
        out["sent"] = 1
        if final is None:
            out["pending"] = 1
        elif final[2] == "DELIVERED":
            out["delivered"] = 1
        else:
            out["failed"] = 1
    else:
        out["failed"] = 1
    for name in ("replies", "opt_outs", "link_clicks"):
        if m.get(name):
            out[name] = m[name]
    if m.get("link_clicks"):
        out["unique_link_clicks"] = 1
    return out


def fold_message(row: dict[str, Any], state: State) -> dict[str, Any] | None:
    """Per message (the record key): dedup, fold, and the change of its contribution."""
    mark()
    m: dict[str, Any] = state.get("m") or {"seen": []}
    if row["event_id"] in m["seen"]:
        return None  # a duplicate
    before = contribution(m)
    m["seen"].append(row["event_id"])
    kind = row["type"]
    if kind == "sent":
        m["campaign_id"] = row["campaign_id"]
        m["accepted"] = row["accepted"]
    elif kind == "delivery":
        if row["status"] in TERMINAL:
            candidate = [row["at"], row["event_id"], row["status"]]
            if m.get("final") is None or candidate > m["final"]:
                m["final"] = candidate
    elif kind == "reply":
        m["replies"] = m.get("replies", 0) + 1
        m["opt_outs"] = m.get("opt_outs", 0) + int(row["opt_out"])
    else:
        m["link_clicks"] = m.get("link_clicks", 0) + 1
    state.set("m", m)
    after = contribution(m)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in before.keys() | after.keys()}
    delta = {k: v for k, v in delta.items() if v}
    if not delta:
        return None
    return {"campaign_id": m["campaign_id"], "delta": delta}


def add_to_campaign(update: dict[str, Any], state: State) -> dict[str, int]:
    counts: dict[str, int] = state.get("counts") or {}
    for name, n in update["delta"].items():
        counts[name] = counts.get(name, 0) + n
    state.set("counts", counts)
    return counts


def main() -> None:
    cfg = settings()
    app = Application(
        broker_address=cfg.kafka_bootstrap,
        consumer_group=group(),
        auto_offset_reset="earliest",
        state_dir=str(workdir() / "quix-state"),
        loglevel="WARNING",
    )
    frames = [
        app.dataframe(app.topic(name, key_deserializer="str", value_deserializer=AvroEvent()))
        for name in cfg.input_topics.values()
    ]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(fold_message, stateful=True)
    sdf = sdf.filter(lambda update: update is not None)
    sdf = sdf.group_by("campaign_id", name="by-campaign")
    sdf = sdf.apply(add_to_campaign, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
