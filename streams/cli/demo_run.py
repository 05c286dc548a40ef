"""The demo: publish a messy A/B campaign, then show its summary as it updates."""

from __future__ import annotations

import asyncio
import json
import time

from streams.cli.admin import latest_summaries
from streams.cli.demo import generate_campaign
from streams.cli.format import format_summary
from streams.cli.publish import publish_lines
from streams.settings import Settings

WAIT_NOTICE_S = 20


WAVES = 30
# Issue 22's numbers in the demo (streams/cli/demo.py): contacts in several countries
# (and numbers no one can place), link previews as messages land, receipts that never
# come (unknown once CA_RECEIPT_TIMEOUT has passed: deploy/run-demo.sh sets 1h, the
# campaign was sent 3 h ago) and a few messages sent in the last minute (pending).
DEMO_PREVIEWS, DEMO_LOST_RECEIPTS, DEMO_RECENT = 0.35, 0.06, 0.04


async def _publish(settings: Settings, lines: list[str], messages: int, spread: float) -> None:
    """All at once, or in waves over ``spread`` seconds, so a page shows it arrive."""
    waves = WAVES if spread > 0 else 1
    size = -(-len(lines) // waves)
    published = 0
    for start in range(0, len(lines), size):
        if start:
            await asyncio.sleep(spread / waves)
        published += (await publish_lines(settings, lines[start:start + size])).published
    print(f"published {published} events of {messages} messages "
          f"(duplicates, receipts before sends, superseding receipts, clicks, link previews, "
          f"replies, lost receipts, several countries)", flush=True)


async def run_demo(
    settings: Settings, campaign_id: str, messages: int, interval: float, once: bool,
    spread: float = 0.0,
) -> int:
    events = generate_campaign(campaign_id, messages, countries=True, previews=DEMO_PREVIEWS,
                               lost_receipts=DEMO_LOST_RECEIPTS, recent=DEMO_RECENT)
    lines = [json.dumps(e, ensure_ascii=False) for e in events]
    if spread > 0:
        print(f"publishing {len(lines)} events of {messages} messages over {spread:g} s",
              flush=True)
        publishing = asyncio.create_task(_publish(settings, lines, messages, spread))
    else:
        await _publish(settings, lines, messages, spread)
        publishing = None
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
        if publishing is not None and publishing.done():
            await publishing  # its error, if any, is the demo's
            publishing = None
        if once and stable >= 3 and publishing is None:
            return 0
        await asyncio.sleep(interval)
