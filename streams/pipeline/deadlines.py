"""The receipt-timeout sweep's index (domain.md 3b, projections/receipt_timeout.py): the
unsettled messages of this worker's ``messages`` partitions by deadline, so a tick
costs a look at the heap's top, never a scan of the table.

The fold notes each message it changes; a recovery rebuilds the index from the
restored values (step 6), decoding only the states whose bytes show no terminal
receipt and no judgement. ``due`` takes out what is past its deadline: the worker
sends each a timeout record on ``message-events``, and the fold applies it like any
event (a record lost in a crash is sent again after the rebuild; one sent twice, or by
two workers around a rebalance, changes nothing the second time).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from projections.message import MessageState
from projections.receipt_timeout import TIMED_OUT_ID, receipt_deadline
from streams.codecs import state as codec

# The stored bytes of a state holding one of these has a terminal receipt (its winning
# receipt is then terminal too), or is judged already: no deadline, not decoded.
_SETTLED = (b'"status":"DELIVERED"', b'"status":"UNDELIVERED"', b'"status":"FAILED"',
            codec.dumps(TIMED_OUT_ID), b'"sent":null')


class ReceiptDeadlines:
    """Per unsettled message: its deadline and ``messages`` partition."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self._at: dict[str, tuple[int, int]] = {}  # key -> (deadline, partition)
        # (deadline, key); an entry whose deadline is no longer _at's is stale, dropped
        # when it comes up, or all at once when stale ones outnumber live ones
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._at)

    def note(self, key: str, state: MessageState, partition: int) -> None:
        """The fold changed ``key``'s state (in ``partition``)."""
        deadline = receipt_deadline(state, self.timeout_ms)
        at = self._at
        if deadline is None:
            if at:
                at.pop(key, None)
            return
        known = at.get(key)
        if known is not None and known[0] == deadline:
            return
        at[key] = (deadline, partition)
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(at) + 1024:
            self._heap = [(d, k) for k, (d, _) in at.items()]
            heapq.heapify(self._heap)

    def due(self, now_ms: int) -> list[tuple[int, str]]:
        """(partition, key) of every message whose deadline is ``now_ms`` or earlier,
        taken out of the index."""
        heap, at = self._heap, self._at
        out: list[tuple[int, str]] = []
        while heap and heap[0][0] <= now_ms:
            deadline, key = heapq.heappop(heap)
            known = at.get(key)
            if known is not None and known[0] == deadline:
                del at[key]
                out.append((known[1], key))
        return out

    def again(self, entries: Iterable[tuple[int, str]], now_ms: int) -> None:
        """Put back what ``due`` gave (its records were not sent), due at ``now_ms``,
        unless the fold noted the message meanwhile."""
        for partition, key in entries:
            if key not in self._at:
                self._at[key] = (now_ms, partition)
                heapq.heappush(self._heap, (now_ms, key))

    def rebuild(self, values: Iterable[Any]) -> None:
        """Start again from a recovery's restored values (bytes, or Faust's dicts)."""
        self._at, self._heap = {}, []
        settled = _SETTLED
        for value in values:
            if value is None:
                continue
            if value.__class__ is bytes and any(mark in value for mark in settled):
                continue
            data = codec.as_dict(value)
            state = codec.state_from_dict(data)
            self.note(state.message_id, state, data["p"])
