"""The worker's seat in its data directory (streams/engine/membership.py): the lock and the
recorded member id. The removal from the group itself is tested on the real broker in
tests/integration/test_membership.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.engine.membership import DirectoryInUseError, Seat


def test_a_second_worker_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = Seat(tmp_path, "g")
    first.claim()
    try:
        with pytest.raises(DirectoryInUseError, match="in use by another worker"):
            Seat(tmp_path, "g").claim()
    finally:
        first.release()
    again = Seat(tmp_path, "g")
    again.claim()  # free once released
    again.release()


def test_eviction_needs_the_lock(tmp_path: Path) -> None:
    seat = Seat(tmp_path, "g")
    seat.remember("someone")
    with pytest.raises(RuntimeError, match="claim"):
        asyncio.run(seat.evict_previous("127.0.0.1:1"))


def test_the_member_id_is_written_whole_and_read_back(tmp_path: Path) -> None:
    seat = Seat(tmp_path, "g")
    assert seat.previous_member() is None
    seat.remember("m-1")
    seat.remember("")  # nothing to record
    assert Seat(tmp_path, "g").previous_member() == "m-1"
    seat.remember("m-2")
    assert Seat(tmp_path, "g").previous_member() == "m-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group-member"]
