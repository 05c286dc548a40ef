"""The demo: publish a messy A/B campaign, then show its summary as it updates."""

from __future__ import annotations

import asyncio
import json
import time

from streams.cli_format import format_summary
from streams.demo import generate_campaign
from streams.kafka_admin import latest_summaries
from streams.publisher import publish_lines
from streams.settings import Settings

WAIT_NOTICE_S = 20


async def run_demo(
    settings: Settings, campaign_id: str, messages: int, interval: float, once: bool
) -> int:
    events = generate_campaign(campaign_id, messages)
    lines = [json.dumps(e, ensure_ascii=False) for e in events]
    report = await publish_lines(settings, lines)
    print(f"published {report.published} events of {messages} messages "
          f"(duplicates, receipts before sends, superseding receipts, clicks, replies)")
    print(f"worker metrics: http://{settings.web_host}:{settings.web_port}/metrics")
    previous = None
    stable = 0
    started = time.monotonic()
    reminded = 0
    while True:
        summary = (await latest_summaries(settings)).get(campaign_id)
        waited = int(time.monotonic() - started)
        if summary is None and previous is None and waited >= reminded + WAIT_NOTICE_S:
            reminded = waited
            print(f"no summary of {campaign_id} yet after {waited} s; the worker's log "
                  f"says what it is doing", flush=True)
        if summary is not None:
            summary.pop("emitted_at", None)
            if summary != previous:
                print()
                print(format_summary(summary), flush=True)
                previous, stable = summary, 0
            else:
                stable += 1
        if once and stable >= 3:
            return 0
        await asyncio.sleep(interval)
