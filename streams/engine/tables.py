"""How every metric stays exact through redelivery, crashes and rebalances.

Faust's guarantee is at-least-once: a worker that dies (SIGKILL, OOM, power)
has usually produced changelog records and output records for input it had not
yet committed, and the next owner of the partition processes that input again.
Its ``exactly_once`` mode is reported broken (shared/design/reliability.md), so
we do not use it. Instead every stage is made *idempotent*, and the only state
written through a changelog is state whose replay is harmless.

The commit order, per input partition (Faust drives steps 5-6). Every stage
takes its events in batches (``streams/engine/inbox.py``), so Faust never acks an
event on its own:

0. A batch first drops the events of partitions a rebalance has taken away
   since they were fetched (their new owner processes them from its committed
   offset); nothing of them is written or acknowledged.
1. ``fold_messages`` reads input records and validates them (bad ones go to
   the dead-letter topic). A record in its message's own partition (the input
   topic has as many partitions as ``message-events``, so Faust's assignor
   gives its partition p to the owner of ``messages`` partition p, and the
   producer keyed it by ``message_id`` with Kafka's default partitioner) goes
   on to step 2 in the same batch; any other is produced to ``message-events``
   keyed by ``message_id`` and folded when it comes back from there.
2. ``fold_messages`` applies the batch's events to their messages' states and
   writes each changed state *once* to the ``messages`` table, with the
   changelog record sent explicitly to the message's own partition
   (``RebuildingTable.put``; Faust would use the batch's last event's) and
   handed straight to the producer client in record batches
   (``pending_to`` an ``Outbox``, streams/engine/outbox.py), not to Faust's
   producer buffer. An ``event_id`` already in the state's ``seen`` set
   changes nothing.
3. ``fold_messages`` produces each touched message's *whole* current
   contribution, with the state's ``version`` (events applied), to
   ``message-updates`` keyed by campaign; it does so even for a duplicate,
   which repairs a hand-off lost in a crash.
4. ``aggregate_campaigns`` keeps, per message, the newest version it applied in
   the ``contributions`` table (changelog), and skips anything not newer. The
   campaign counts, contact activity and windows are *views* of that table
   (``streams/pipeline/views.py``), moved by ``new - old`` in memory.
5. Only after steps 1-4 ran for a whole batch are its events acknowledged;
   Faust flushes the producer (changelogs and outputs), then commits the input
   offsets of acknowledged events, never past one that was not acknowledged
   (``streams/engine/positions.py``: a partition whose commit finds a record missing
   is read again from there). Faust's own flush could return with table
   writes still in its buffer (``streams/engine/patches.py``, fix 3): it no
   longer can, and our tables do not use that buffer. A flush ends when every
   delivery has ended, delivered or not: a record the broker did not take
   stops the worker before any commit (``streams/engine/delivery_guard.py``).
6. On (re)assignment, each table is restored from its changelog (in bulk,
   newest value per key, ``streams/engine/restore.py``; Faust reads any rest), the
   views are rebuilt from the restored ``contributions``, and every owned
   campaign's snapshot is published again.

Why a crash between any two steps loses nothing and doubles nothing:

* Before 5 the input is not committed, so it is processed again: an event's
  second application is a no-op (``seen``), a hand-off's second delivery is a
  version the next stage already has, or the same contribution again.
* A changelog may hold writes for input that was never committed (a crash after
  they were flushed, before 5). Replaying that input meets those writes: the
  fold sees the event ids, the aggregation sees the versions. Both values are
  whole states, not deltas, so "ahead" is just "already done".
* A hand-off lost in a crash (state written, update not) is re-sent by step 3
  when the same event is replayed.
* The views are never written anywhere, so they cannot be half-written: step 6
  recomputes them from the table they are derived from.
* Snapshots on the metrics topic are whole values on a compacted topic: a
  duplicate or a re-publish is harmless; step 6 re-publishes after a crash that
  happened between the last change and its snapshot.

``CA_UNSAFE_DISABLE_REPLAY_PROTECTION=1`` (tests only) switches step 2's dedup
off, so the crash tests can show that their checker catches double counting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import faust
from faust.types import TP

from projections.events import Event
from projections.message import MessageState, apply_event
from streams.codecs.state import dumps, loads
from streams.engine.outbox import Outbox
from streams.engine.restore import no_collection
from streams.settings import unsafe_switch_on

log = logging.getLogger(__name__)

UNSAFE_ENV = "CA_UNSAFE_DISABLE_REPLAY_PROTECTION"


def replay_protection_enabled() -> bool:
    return not unsafe_switch_on(UNSAFE_ENV)


def fold(state: MessageState, event: Event, protected: bool = True) -> MessageState:
    """Step 2. Unprotected, a redelivered event is applied again (tests only)."""
    if not protected and event.event_id in state.seen:
        state = replace(state, seen=state.seen - {event.event_id})
    return apply_event(state, event)


Restored = Callable[[Iterable[Any]], None]


class RebuildingTable(faust.Table):
    """A table that calls ``on_restored(values of the active partitions)`` after
    every recovery (step 6). Values carry their partition as ``"p"``.

    The worker stores each value as the JSON bytes of its changelog record
    (``put``) and decodes it when read (``peek``). Bytes are not tracked by the
    garbage collector: as nested dicts, the values of a few hundred thousand
    messages made every collection walk millions of objects, and the longer
    pauses showed in every record's latency. With ``lazy_restore`` the bulk
    restore (``streams/engine/restore.py``) stores the restored values as bytes too;
    Faust's own restore stores dicts. ``on_restored`` gets either."""

    on_restored: Restored | None = None
    lazy_restore = False
    _pending: list[tuple[int, str, bytes]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._pending = []

    def raw(self, key: str) -> Any:
        """The stored value as stored (bytes, or a dict from Faust's restore), or ``None``."""
        return self.data.get(key)

    def peek(self, key: str) -> Any:
        """The stored value, decoded (``None`` if absent), without Faust's per-read
        sensors."""
        value = self.data.get(key)
        return loads(value) if value.__class__ is bytes else value

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Store ``value`` (the JSON of a dict with the partition as ``"p"``, for the
        views and the restore); its changelog record goes out with ``pending_to``.

        Faust's ``table[key] = value`` takes the partition from the *current*
        event, which in a batch is the last one taken, not the key's own; a
        changelog record in the wrong partition would be restored by the wrong
        worker. Storing is synchronous, so a batch's table and view updates cannot
        interleave with a recovery's rebuild (step 6)."""
        store: Any = self.data
        store.data[key] = value
        store._key_partition[key] = partition
        self._pending.append((partition, key, value))

    def pending_to(self, outbox: Outbox) -> None:
        """Queue the changelog records of the values ``put`` since the last call.

        They go to the caller's outbox (streams/engine/outbox.py, sent as record batches
        straight to the producer client), in the JSON Faust reads back on recovery
        (orjson, which Faust's own JSON codec uses too when installed): Faust's own
        path (``send_changelog``: a pending-message object, its serializer
        registry, its producer buffer, one send per record) cost more than the
        write itself. Faust flushes the producer before every commit (step 5), so
        they are as durable as Faust's own changelog writes (the memory store keeps
        no changelog offsets, so nothing else is skipped)."""
        pending, self._pending = self._pending, []
        topic = self.changelog_topic.get_topic_name()
        for partition, key, value in pending:
            outbox.add(topic, partition, dumps(key), value)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.on_restored is None:
            return
        active = {tp.partition for tp in active_tps}
        store: Any = self.data
        of_key = store._key_partition
        values = [v for k, v in store.data.items() if v is not None and (
            of_key.get(k) if v.__class__ is bytes else v.get("p")) in active]
        log.info("table %s restored: %d keys in partitions %s", self.name, len(values),
                 sorted(active))
        with no_collection():
            self.on_restored(values)


def rebuilding_table(app: faust.App, name: str, on_restored: Restored,
                     lazy_restore: bool = False) -> RebuildingTable:
    """A JSON-valued table (string keys) with a restore hook, registered with ``app``."""
    table = RebuildingTable(app, name=name, default=None, key_type=str,
                            beacon=app.tables.beacon)
    table.on_restored = on_restored
    table.lazy_restore = lazy_restore
    app.tables.add(table)
    return table
