"""The round validity rule of docs/consumers.md as streams/api/retries.py applies it
when it reads a campaign's partition: a round is valid iff no record of the campaign
lies between its base offset and its first record."""

from __future__ import annotations

from typing import Any

from streams.api.retries import _History


def _rec(round_id: str, base: int, size: int = 1, message: str = "m") -> dict[str, Any]:
    return {"round_id": round_id, "round_base_offset": base, "round_size": size,
            "message_id": message}


def test_the_first_round_after_its_base_wins_and_a_late_one_loses():
    history = _History("c")
    history.add(0, _rec("a", 0, 2, "m1"))
    history.add(1, _rec("b", 0, 1, "m2"))  # selected before a was written: loses
    history.add(2, _rec("a", 0, 2, "m3"))
    history.add(7, _rec("c", 3, 1, "m4"))  # read up to 3 (other campaigns' records after)
    assert [r.records[0]["round_id"] for r in history.valid()] == ["a", "c"]
    assert [r["message_id"] for r in history.rounds["a"].records] == ["m1", "m3"]
    late = _History("c")
    late.add(4, _rec("x", 4))
    late.add(5, _rec("y", 5))  # had read x: valid
    late.add(6, _rec("z", 5))  # had not read y: invalid
    assert {r.records[0]["round_id"] for r in late.valid()} == {"x", "y"}
