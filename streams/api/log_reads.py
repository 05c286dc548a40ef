"""Message-log pages from a short-lived read ahead (``CA_PAGE_CACHE_SECONDS``,
``CA_PAGE_READ_ROWS``).

A page of the log costs the store about as much CPU for 1,000 rows as for 101: under
``FINAL`` it reads whole granules (8,192 rows) of every part either way
(docs/performance.md, load). So on a miss the API reads ``read_rows`` rows after the
cursor, keeps them as a block, and answers the next pages a reader asks for (their
cursors fall inside it) from it: for ``seconds``, and up to twice that while a new read
of it is under way (no request waits on a busy store for a page it had a moment ago).
A block holds every row of its key range as the store had it when read: a page taken
from it is the page the store gave then. Reads of one page at once share one store
read. A page's ``as_of`` is the one read just before its block, so it never claims
rows the block does not have.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from projections.message_log import MessageLogRow

MAX_BLOCKS = 64  # blocks kept at most (a block of 1,000 rows is ~1 MB); oldest go first
# A block past its time but younger than this many times it still answers while a new
# read of the same rows is under way (no request waits on a busy store for a page it
# had a moment ago); older, a page waits for the read.
STALE_FACTOR = 2

Key = tuple[object, ...]  # the campaign and the page's filters
Read = Callable[[int], Awaitable[list[MessageLogRow]]]
Stamp = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Block:
    at: float  # when the read started: the block is never younger than it says
    after: str | None  # the read's cursor; None: from the campaign's first row
    ids: list[str]
    rows: list[MessageLogRow]
    to_end: bool  # the read found fewer rows than it asked: nothing lies beyond
    stamp: object  # what ``stamp()`` gave just before the read (the page's as_of)

    def page(self, after: str | None, want: int) -> list[MessageLogRow] | None:
        """The ``want`` rows after ``after`` (fewer at the log's end), if this block
        holds them all."""
        if self.after is not None and (after is None or after < self.after):
            return None  # the block starts after the page does
        start = 0 if after is None else bisect_right(self.ids, after)
        rows = self.rows[start:start + want]
        return rows if len(rows) == want or self.to_end else None


def _retrieved(read: asyncio.Future[Block]) -> None:
    """A read nobody waits for: its failure is the next request's to meet."""
    if not read.cancelled():
        read.exception()


class LogReads:
    """The read-ahead blocks of one API process (bounded by ``MAX_BLOCKS``)."""

    def __init__(self, seconds: float, read_rows: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.read_rows = read_rows
        self.clock = clock
        self._blocks: OrderedDict[tuple[Key, str | None, float], Block] = OrderedDict()
        self._reading: dict[tuple[Key, str | None, int], asyncio.Future[Block]] = {}
        self.hits = 0
        self.reads = 0

    def _fresh(self, key: Key, after: str | None, want: int, seconds: float
               ) -> Block | None:
        horizon = self.clock() - seconds
        for (block_key, _, at), block in reversed(self._blocks.items()):  # newest first
            if block_key == key and at > horizon and block.page(after, want) is not None:
                return block
        return None

    def _start(self, key: Key, after: str | None, asked: int, read: Read, stamp: Stamp
               ) -> tuple[asyncio.Future[Block], bool]:
        """The read of ``asked`` rows after ``after`` under way, started if none is;
        whether it was under way already."""
        pending = self._reading.get((key, after, asked))
        if pending is not None:
            return pending, True
        pending = asyncio.ensure_future(self._read(key, after, asked, read, stamp))
        self._reading[key, after, asked] = pending
        pending.add_done_callback(lambda _: self._reading.pop((key, after, asked), None))
        return pending, False

    async def page(self, key: Key, after: str | None, limit: int, read: Read, stamp: Stamp
                   ) -> tuple[list[MessageLogRow], bool, object]:
        """``limit + 1`` rows after ``after`` (fewer at the end), whether they came from
        a block (or another request's read), and the stamp of their read. ``read(n)``
        asks the store for ``n`` rows after ``after``; ``stamp()`` is awaited just
        before (the as_of of a page: taken before its rows, it never overstates them)."""
        want = limit + 1
        if self.seconds <= 0:
            stamped = await stamp()
            return await read(want), False, stamped
        if (block := self._fresh(key, after, want, self.seconds)) is not None:
            self.hits += 1
            return block.page(after, want) or [], True, block.stamp
        asked = max(want, self.read_rows)
        if (block := self._fresh(key, after, want, STALE_FACTOR * self.seconds)) is not None:
            # past its time but not twice: answered from it while a new read is made
            pending, _ = self._start(key, after, asked, read, stamp)
            pending.add_done_callback(_retrieved)
            self.hits += 1
            return block.page(after, want) or [], True, block.stamp
        pending, shared = self._start(key, after, asked, read, stamp)  # shared: wait for it
        block = await asyncio.shield(pending)
        self.hits += shared
        rows = block.page(after, want)
        return (rows if rows is not None else block.rows[:want]), shared, block.stamp

    async def _read(self, key: Key, after: str | None, asked: int, read: Read,
                    stamp: Stamp) -> Block:
        at = self.clock()
        stamped = await stamp()
        rows = await read(asked)
        self.reads += 1
        block = Block(at, after, [r.message_id for r in rows], rows, len(rows) < asked,
                      stamped)
        horizon = self.clock() - self.seconds
        for stale in [k for k in self._blocks if k[2] <= horizon]:
            del self._blocks[stale]
        self._blocks[key, after, at] = block
        while len(self._blocks) > MAX_BLOCKS:
            self._blocks.popitem(last=False)
        return block
