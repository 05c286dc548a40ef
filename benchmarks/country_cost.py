"""What placing a number in its country costs per `sent` event (issue 22, in-process).

    .venv/bin/python -m benchmarks.country_cost [--events N] [--repeat R]

Times, over N encoded `sent` events of several countries (a third of them +1, some
+44 and +7, whose calling code several regions share), ``decode_event`` as the
worker runs it (the country is derived there) and ``country_of`` alone, both with
a cold and a warm number cache, and prints ns per event (best of R). Compare the
decode figure with the same run on a commit before the country existed (the
`before` of the report). No broker; not part of the tests.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from projections.events import MessageSent, SendOutcome
from streams.codecs import phones
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


def _ns_per(items: list, call: Callable[[object], object], repeat: int,
            before: Callable[[], object] = lambda: None) -> float:
    best = float("inf")
    for _ in range(repeat):
        before()
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
    numbers = sample_phones(args.events)
    data = encoded_sends(numbers)
    cache = getattr(phones, "_shared_code_country", None)
    clear = cache.cache_clear if cache is not None else (lambda: None)
    country_of = getattr(phones, "country_of", None)
    def decode(item: object) -> object:
        return decode_event(item, T0)  # type: ignore[arg-type]

    print(f"{args.events} sent events, best of {args.repeat}")
    print(f"decode_event, cold number cache: {_ns_per(data, decode, args.repeat, clear):8.0f}"
          " ns/event")
    print(f"decode_event, warm number cache: {_ns_per(data, decode, args.repeat):8.0f}"
          " ns/event")
    if country_of is not None:
        print(f"country_of alone, cold cache:    "
              f"{_ns_per(numbers, country_of, args.repeat, clear):8.0f} ns/event")
        print(f"country_of alone, warm cache:    "
              f"{_ns_per(numbers, country_of, args.repeat):8.0f} ns/event")


if __name__ == "__main__":
    main()
