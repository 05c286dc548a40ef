"""Message-log pages from the API's read ahead (streams/api/log_reads.py): a page taken
from a block is the page the store gave when the block was read; a block serves only
while fresh (or, up to twice that, while it is read again), only pages it holds whole,
and reads of one page at once share a read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.api.log_reads import MAX_BLOCKS, LogReads

LOG = [SimpleNamespace(message_id=f"m-{n:03d}") for n in range(250)]  # the store's rows


class Store:
    def __init__(self) -> None:
        self.reads: list[tuple[str | None, int]] = []
        self.stamps = 0

    async def stamp(self) -> object:
        self.stamps += 1
        return self.stamps

    def reader(self, after: str | None) -> Any:
        async def read(n: int) -> list[Any]:
            self.reads.append((after, n))
            await asyncio.sleep(0)
            return [r for r in LOG if after is None or r.message_id > after][:n]
        return read


async def settle() -> None:
    """Let the reads started without a waiter run."""
    for _ in range(5):
        await asyncio.sleep(0)


def ask(reads: LogReads, store: Store, key: tuple[object, ...], after: str | None,
        limit: int) -> Any:
    return reads.page(key, after, limit, store.reader(after), store.stamp)


def ids(rows: list[Any]) -> list[str]:
    return [r.message_id for r in rows]


def expected(after: str | None, limit: int) -> list[str]:
    return [r.message_id for r in LOG if after is None or r.message_id > after][:limit + 1]


def test_pages_inside_a_fresh_block_come_from_it_and_equal_the_store_s() -> None:
    clock = [0.0]
    reads, store = LogReads(1.0, 100, clock=lambda: clock[0]), Store()

    async def walk() -> list[bool]:
        cached, after = [], None
        for _ in range(4):  # pages of 20 down the log, as a reader follows next_cursor
            rows, hit, _ = await ask(reads, store, ("c1", None), after, 20)
            assert ids(rows) == expected(after, 20)
            cached.append(hit)
            after = rows[19].message_id
        return cached

    assert asyncio.run(walk()) == [False, True, True, True]
    assert store.reads == [(None, 100)]  # one read of 100 rows served the four pages
    clock[0] = 2.0  # twice as old as allowed: the page waits for a new read
    assert asyncio.run(walk()) == [False, True, True, True]
    assert store.reads == [(None, 100), (None, 100)]


def test_a_block_past_its_time_answers_while_it_is_read_again() -> None:
    clock = [0.0]
    reads, store = LogReads(1.0, 100, clock=lambda: clock[0]), Store()

    async def main() -> None:
        await ask(reads, store, ("c1", None), None, 20)
        clock[0] = 1.5  # past its time, not twice: answered, and read again meanwhile
        rows, hit, stamp = await ask(reads, store, ("c1", None), None, 20)
        assert hit and stamp == 1 and ids(rows) == expected(None, 20)
        await settle()
        assert store.reads == [(None, 100), (None, 100)]  # read again, nobody waiting
        clock[0] = 2.2  # the first block is too old now; the new one (read at 1.5) is not
        _, hit, stamp = await ask(reads, store, ("c1", None), None, 20)
        assert hit and stamp == 2 and len(store.reads) == 2

    asyncio.run(main())


def test_a_page_the_block_does_not_hold_whole_is_read() -> None:
    reads, store = LogReads(5.0, 50, clock=lambda: 0.0), Store()

    async def main() -> None:
        await ask(reads, store, ("c1", None), None, 20)  # rows 0..49
        # the page after row 39 needs rows 40..60: past the block's end
        rows, hit, _ = await ask(reads, store, ("c1", None), "m-039", 20)
        assert not hit and ids(rows) == expected("m-039", 20)
        # another filter is another key: never served from c1's unfiltered block
        _, hit, _ = await ask(reads, store, ("c1", "failed"), None, 5)
        assert not hit
        # a block read after a cursor does not hold the rows before it
        _, hit, _ = await ask(reads, store, ("c1", None), "m-010", 5)
        assert hit  # inside the first block
        _, hit, _ = await ask(reads, store, ("c1", None), "m-045", 3)
        assert hit  # inside the second block (rows 40..89)

    asyncio.run(main())
    assert store.reads == [(None, 50), ("m-039", 50), (None, 50)]


def test_the_log_s_end_is_served_short() -> None:
    reads, store = LogReads(5.0, 100, clock=lambda: 0.0), Store()

    async def main() -> None:
        await ask(reads, store, ("c1", None), "m-200", 10)  # 49 rows: the end
        rows, hit, _ = await ask(reads, store, ("c1", None), "m-240", 10)
        assert hit and ids(rows) == expected("m-240", 10) and len(rows) == 9

    asyncio.run(main())


def test_the_same_page_asked_at_once_is_read_once() -> None:
    reads, store = LogReads(5.0, 100, clock=lambda: 0.0), Store()

    async def main() -> list[bool]:
        answers = await asyncio.gather(*(ask(reads, store, ("c1", None), None, 10)
                                         for _ in range(5)))
        assert all(ids(rows) == expected(None, 10) for rows, _, _ in answers)
        return [hit for _, hit, _ in answers]

    assert asyncio.run(main()) == [False, True, True, True, True]
    assert store.reads == [(None, 100)]


def test_without_the_read_ahead_every_page_is_its_own_read() -> None:
    """The negative control: CA_PAGE_CACHE_SECONDS=0."""
    reads, store = LogReads(0.0, 100, clock=lambda: 0.0), Store()

    async def main() -> None:
        for _ in range(3):
            rows, hit, _ = await ask(reads, store, ("c1", None), None, 10)
            assert not hit and ids(rows) == expected(None, 10)

    asyncio.run(main())
    assert store.reads == [(None, 11)] * 3


def test_blocks_are_bounded() -> None:
    reads, store = LogReads(60.0, 5, clock=lambda: 0.0), Store()

    async def main() -> None:
        for n in range(MAX_BLOCKS + 10):
            await ask(reads, store, (f"c{n}", None), None, 2)

    asyncio.run(main())
    assert len(reads._blocks) == MAX_BLOCKS


def test_a_page_s_stamp_is_taken_before_its_block_was_read() -> None:
    """The as_of of a page from a block is the one read before the block: a newer one
    could name rows the block does not have."""
    clock = [0.0]
    reads, store = LogReads(1.0, 100, clock=lambda: clock[0]), Store()

    async def main() -> list[object]:
        stamps = []
        for at in (0.0, 0.5, 1.0, 1.2):
            clock[0] = at
            _, _, stamp = await ask(reads, store, ("c1", None), None, 10)
            stamps.append(stamp)
            await settle()
        return stamps

    # at 1.0 the first block answers (past its time) while the second is read
    assert asyncio.run(main()) == [1, 1, 1, 2]  # a stamp per read, none for the hits
    assert store.stamps == 2
