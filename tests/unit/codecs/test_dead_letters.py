"""A dead letter keeps its record whole when the producer takes it, and is cut to fit
when it would not (streams/codecs/dead_letters.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.codecs.dead_letters import KEY_ROOM, OVERHEAD, dead_letter

LIMIT = 1_000_000  # Faust's producer_max_request_size


def _size(key: bytes, value: bytes, headers: dict[str, bytes]) -> int:
    return len(key) + len(value) + sum(len(k) + len(v) for k, v in headers.items())


def test_a_record_that_fits_is_kept_whole_with_its_source() -> None:
    key, value, headers = dead_letter(b"m-1", b"garbage", "not Avro", "sms.click", 3, 42, LIMIT)
    assert (key, value) == (b"m-1", b"garbage")
    assert headers == {"reason": b"not Avro", "source-topic": b"sms.click",
                       "source-partition": b"3", "source-offset": b"42"}


def test_a_record_as_large_as_the_broker_takes_is_cut_to_the_producers_limit() -> None:
    original = bytes(range(256)) * 4_062  # 1,039,872 bytes
    key, value, headers = dead_letter(b"k" * 5_000, original, "not Avro", "sms.click", 0, 7,
                                      LIMIT)
    assert _size(key, value, headers) + OVERHEAD <= LIMIT
    assert key == b"k" * KEY_ROOM
    assert original.startswith(value) and len(value) > 990_000
    assert headers["truncated"] == b"key 5000 bytes, value 1039872 bytes"
    assert headers["source-offset"] == b"7"


@given(st.integers(0, 3_000), st.integers(0, 1_100_000), st.integers(2_000, 1_100_000))
def test_never_over_the_limit_and_always_a_prefix(key_len: int, value_len: int,
                                                  limit: int) -> None:
    key, value = b"k" * key_len, b"v" * value_len
    out_key, out_value, headers = dead_letter(key, value, "r", "t", 1, 2, limit)
    assert _size(out_key, out_value, headers) + OVERHEAD <= limit
    assert key.startswith(out_key) and value.startswith(out_value)
    assert ("truncated" in headers) == ((out_key, out_value) != (key, value))
