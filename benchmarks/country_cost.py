"""What placing a number in its country costs per `sent` event (issue 22, in-process).

    .venv/bin/python -m benchmarks.country_cost [--events N] [--repeat R]

Times, over N encoded `sent` events of several countries (a third of them +1, some
+44 and +7, whose calling code several regions share), ``decode_event`` as the
worker runs it, before (``country_of`` replaced by a constant, as the decoder was
without countries) and after (the country derived), with a cold and a warm number
cache, and ``country_of`` alone; then ``message_contribution`` of those messages with
a receipt each, without and with the where-counts (``metrics.where_counts``: country,
category, carrier outcome, segments), remade on every event of a message. Prints ns
per event (best of R, the variants interleaved so a busy machine slows them alike).
No broker; not part of the tests.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from projections import metrics
from projections.events import DeliveryStatus, Event, MessageSent, ReceiptReceived, SendOutcome
from projections.message import MessageState, apply_event
from streams.codecs import input_avro, phones
from streams.codecs.input_avro import decode_event, encode_event

T0 = 1_800_000_000_000
# Calling code -> national number lengths; +1, +44 and +7 are shared codes.
MIX = (("1", 10), ("1", 10), ("1", 10), ("44", 10), ("7", 10), ("49", 11), ("33", 9),
       ("91", 10), ("55", 11), ("34", 9), ("81", 10), ("61", 9))


def sample_phones(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        code, length = rnd.choice(MIX)
        first = rnd.choice("23456789")
        out.append("+" + code + first + "".join(rnd.choice("0123456789")
                                                for _ in range(length - 1)))
    return out


def encoded_sends(phone_numbers: list[str]) -> list[bytes]:
    return [encode_event(MessageSent(f"e{i}", f"m{i}", T0, "c", "A", f"k{i}", None, phone,
                                     SendOutcome.ACCEPTED))
            for i, phone in enumerate(phone_numbers)]


def _ns_per(items: list[Any], call: Callable[[Any], object],
            before: Callable[[], object] = lambda: None) -> float:
    before()
    start = time.perf_counter_ns()
    for item in items:
        call(item)
    return (time.perf_counter_ns() - start) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    numbers = sample_phones(args.events)
    data = encoded_sends(numbers)
    clear = phones.clear_country_cache
    derive = input_avro.country_of

    def decode(item: bytes) -> Event:
        return decode_event(item, T0)

    def constant(phone: str) -> str:
        return phones.UNPLACED

    def with_country(on: bool) -> None:
        input_avro.country_of = derive if on else constant

    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name, on, cold in (("decode, before (no country)", False, False),
                               ("decode, after, cold number cache", True, True),
                               ("decode, after, warm number cache", True, False)):
            with_country(on)
            runs.setdefault(name, []).append(
                _ns_per(data, decode, clear if cold else (lambda: None)))
        with_country(True)
        runs.setdefault("country_of alone, cold cache", []).append(
            _ns_per(numbers, phones.country_of, clear))
        runs.setdefault("country_of alone, warm cache", []).append(
            _ns_per(numbers, phones.country_of))
    states = [apply_event(apply_event(MessageState(f"m{i}"), decode(item)), ReceiptReceived(
        f"r{i}", f"m{i}", T0 + 5_000, (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)[i % 5 == 0],
        "30003" if i % 5 == 0 else None, None, ("att", "vodafone", None)[i % 3]))
        for i, item in enumerate(data)]
    where = metrics.where_counts

    def no_where(*_: object) -> None:
        return None

    for _ in range(args.repeat):
        for name, fn in (("contribution, before (no where)", no_where),
                         ("contribution, after", where)):
            metrics.where_counts = fn  # type: ignore[assignment]
            runs.setdefault(name, []).append(_ns_per(states, metrics.message_contribution))
    metrics.where_counts = where
    shared = sum(1 for n in numbers if n.startswith(("+1", "+44", "+7")))
    print(f"{args.events} sent events ({shared} of a shared calling code), best of "
          f"{args.repeat}")
    for name, figures in runs.items():
        print(f"{name:34s} {min(figures):8.0f} ns/event")


if __name__ == "__main__":
    main()
