"""Contender b, naive Faust: what a Faust user writes first.

One agent per input topic, one event at a time: decode, then update a
per-campaign table of counts by event type (``counts["<campaign>:<type>"] += 1``).
Receipts, clicks and replies carry no campaign, so a second table remembers each
message's campaign from its send (events seen before their send count under
"unknown": no dedup, no ordering, no status; it does much less than ours).
Every table write is a changelog record, as in any Faust table.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust

from benchmarks.contenders.common import FirstEvent, group, settings, workdir
from streams.codecs.input_avro import decode_event
from streams.engine import patches as faust_fixes

RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                       "value_serializer": "raw"}


def create_app() -> faust.App:
    cfg = settings()
    faust_fixes.install()  # a bug fix for faust-streaming 0.15.3, not a speed-up
    port = int(os.environ.get("BENCH_WEB_PORT", "6099"))
    app = faust.App(
        group(),
        broker=[f"kafka://{host}" for host in cfg.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=str(workdir() / "faust"),
        web_port=port,
        topic_partitions=cfg.partitions,
        consumer_auto_offset_reset="earliest",
        key_serializer="json",  # table keys are str; the input topics stay raw
    )
    counts = app.Table("counts", default=int)
    campaign_of = app.Table("campaign-of")
    mark = FirstEvent()

    def counting_agent(kind: str) -> Callable[[faust.StreamT], AsyncIterator[None]]:
        async def count(stream: faust.StreamT) -> AsyncIterator[None]:
            async for value in stream:
                mark()
                event = decode_event(value)
                campaign = getattr(event, "campaign_id", None)
                if campaign is not None:
                    campaign_of[event.message_id] = campaign
                else:
                    campaign = campaign_of.get(event.message_id) or "unknown"
                counts[f"{campaign}:{kind}"] += 1
                yield None
        count.__name__ = f"count_{kind}"
        return count

    for kind, topic_name in cfg.input_topics.items():
        app.agent(app.topic(topic_name, **RAW), name=f"count-{kind}")(counting_agent(kind))
    return app


def main() -> None:
    from faust import Worker

    Worker(create_app(), loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
