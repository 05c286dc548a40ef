"""What judging a click's user agent costs per `click` event (issue 22, in-process).

    .venv/bin/python -m benchmarks.user_agent_cost [--events N] [--repeat R]

Times, over N encoded `click` events whose user agents repeat as real traffic's do
(a few dozen browser builds and preview fetchers, some clicks without one),
``decode_event`` as the worker runs it (the verdict is judged there), the same with
the verdict switched off (the difference is its cost), ``is_automated_agent`` alone
from its cache, and the list's own match for user agents never seen before (every
one new: what the cache saves); then ``human_click_count`` on a delivered message
with three clicks (the fold's share). Prints ns per event, best of R. No broker; not
part of the tests.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from projections.events import (
    DeliveryStatus,
    LinkClicked,
    MessageSent,
    ReceiptReceived,
    SendOutcome,
)
from projections.message import MessageState, apply_event, human_click_count
from streams.codecs import input_avro, user_agents
from streams.codecs.input_avro import decode_event, encode_event

T0 = 1_800_000_000_000
PEOPLE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS {v}_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/{v}.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android {v}; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/12{v}.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android {v}; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/2{v}.0 Chrome/117.0.0.0 Mobile Safari/537.36",
)
PREVIEWS = ("WhatsApp/2.23.{v}.0 A", "facebookexternalhit/1.1", "TelegramBot (like TwitterBot)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "WhatsApp/2")


def agents(n: int, seed: int = 7) -> list[str | None]:
    """Mostly people (a dozen builds each), a fifth previews, a tenth without one."""
    rnd = random.Random(seed)
    out: list[str | None] = []
    for _ in range(n):
        roll = rnd.random()
        pool = None if roll < 0.1 else PREVIEWS if roll < 0.3 else PEOPLE
        out.append(None if pool is None else rnd.choice(pool).format(v=rnd.randrange(12, 24)))
    return out


def _ns_per(items: list[Any], call: Callable[[Any], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for item in items:
            call(item)
        best = min(best, (time.perf_counter_ns() - start) / len(items))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    uas = agents(args.events)
    data = [encode_event(LinkClicked(f"e{i}", f"m{i}", T0, "l", ua)) for i, ua in enumerate(uas)]

    def decode(item: bytes) -> object:
        return decode_event(item, T0)

    print(f"{args.events} click events, {len(set(uas))} distinct user agents, "
          f"best of {args.repeat}")
    with_verdict = _ns_per(data, decode, args.repeat)
    judge = input_avro.is_automated_agent
    input_avro.is_automated_agent = lambda ua: False  # type: ignore[assignment]
    try:
        without = _ns_per(data, decode, args.repeat)
    finally:
        input_avro.is_automated_agent = judge
    print(f"decode_event with the verdict:      {with_verdict:8.0f} ns/event")
    print(f"decode_event without it:            {without:8.0f} ns/event "
          f"(the verdict: {with_verdict - without:+.0f})")
    print(f"is_automated_agent, cached:         "
          f"{_ns_per(uas, user_agents.is_automated_agent, args.repeat):8.0f} ns/event")
    fresh = [f"{ua} build/{i}" for i, ua in enumerate(u for u in uas[:2_000] if u)]
    print(f"is_automated_agent, every one new:  "
          f"{_ns_per(fresh, user_agents.is_automated_agent, 1):8.0f} ns/event")
    state = MessageState("m")
    for event in (MessageSent("s", "m", T0, "c", "A", "k", None, "+15550000000",
                              SendOutcome.ACCEPTED),
                  ReceiptReceived("d", "m", T0 + 5_000, DeliveryStatus.DELIVERED),
                  LinkClicked("c1", "m", T0 + 5_500, "l", None, False),
                  LinkClicked("c2", "m", T0 + 60_000, "l", "x", False),
                  LinkClicked("c3", "m", T0 + 60_100, "l", "WhatsApp/2", True)):
        state = apply_event(state, event)
    states = [state] * args.events
    print(f"human_click_count, 3 clicks:        "
          f"{_ns_per(states, human_click_count, args.repeat):8.0f} ns/message update")


if __name__ == "__main__":
    main()
