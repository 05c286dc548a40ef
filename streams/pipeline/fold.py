"""Steps 1-3 (pipeline/__init__.py): input records into message states, and each touched
message's contribution handed on to the aggregation, keyed by campaign."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from projections.errors import InvalidEventError
from projections.events import Event
from projections.message import PREVIEW_WINDOW_MS, MessageState, apply_event
from projections.message_log import message_log_row
from projections.metrics import message_contribution
from projections.receipt_timeout import DEFAULT_RECEIPT_TIMEOUT_MS, mark_timed_out
from streams.codecs import state as codec
from streams.codecs.input_avro import (
    ALREADY_JUDGED_MS,
    broker_time_ms,
    decode_event,
    decode_input,
)
from streams.codecs.routing import message_partition
from streams.pipeline.deadlines import ReceiptDeadlines
from streams.settings import unsafe_switch_on

log = logging.getLogger(__name__)

UNSAFE_ENV = "CA_UNSAFE_DISABLE_REPLAY_PROTECTION"

# The value of a receipt-timeout record on ``message-events`` (then the message id): the
# sweep's judgement, folded like an event (projections/receipt_timeout.py). Forwarded
# input records are Avro single-object encoded, so they never start with it.
TIMEOUT_RECORD = b"receipt-timeout\n"


def timeout_record(key: str) -> bytes:
    return TIMEOUT_RECORD + key.encode()


def replay_protection_enabled() -> bool:
    return not unsafe_switch_on(UNSAFE_ENV)


def fold(state: MessageState, event: Event, protected: bool = True) -> MessageState:
    """Step 2 for one event. Unprotected, a redelivered event is applied again (tests
    only: the crash tests' negative control)."""
    if not protected and event.event_id in state.seen:
        state = replace(state, seen=state.seen - {event.event_id})
    return apply_event(state, event)


def held_events(state: MessageState) -> int:
    """Events waiting for their message's `sent` event (orphans, for now)."""
    return len(state.seen) if state.sent is None else 0


class Record(Protocol):
    """What the stage reads of a Kafka record (a Faust ``Message`` has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float


def record_time_ms(record: Record) -> int | None:
    """The record's broker timestamp in ms (Faust gives seconds), which the far-future
    rule judges against, as the events sink does with the same record."""
    timestamp = record.timestamp
    return broker_time_ms(None if timestamp is None else timestamp * 1000.0)


class MessageTable(Protocol):
    def raw(self, key: str) -> Any: ...

    def put(self, partition: int, key: str, value: bytes) -> None: ...


@dataclass(slots=True)
class FoldEffects:
    """What a batch asks of the world beyond the table: records to produce, dead
    letters, the accepted input events (for the events sink) and counters."""

    forwards: list[tuple[bytes, bytes]] = field(default_factory=list)  # message-events
    updates: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # partition, key, value
    dead_letters: list[tuple[Record, str]] = field(default_factory=list)
    accepted: list[tuple[Record, Event]] = field(default_factory=list)
    consumed: Counter[tuple[str, str]] = field(default_factory=Counter)
    ages: list[float] = field(default_factory=list)  # seconds from input to fold
    duplicates: int = 0
    orphans: int = 0  # change in events held for a missing send
    errors: int = 0


class FoldStage:
    """Folds batches of input and ``message-events`` records into the ``messages``
    table; the Faust agent sends what ``handle`` returns, then the engine commits."""

    def __init__(self, table: MessageTable, *, kind_of_topic: Mapping[str, str],
                 message_events_topic: str, window_sizes_s: Iterable[int],
                 state_cache_size: int, protected: bool = True,
                 receipt_timeout_ms: int = DEFAULT_RECEIPT_TIMEOUT_MS,
                 preview_window_ms: int = PREVIEW_WINDOW_MS) -> None:
        self.table = table
        self.kind_of_topic = dict(kind_of_topic)
        self.message_events_topic = message_events_topic
        self.window_sizes_s = tuple(window_sizes_s)
        self.state_cache_size = state_cache_size
        self.protected = protected
        self.preview_window_ms = preview_window_ms  # human clicks' time rule (domain.md 3b)
        # Decoded states of recently written messages, beside the table's bytes:
        # decoding a stored state again cost more than folding an event into it. An
        # entry counts only while the table holds the very bytes it was made from
        # (the same object in memory; equal bytes read back from a DiskStore), so
        # values a recovery restored are decoded afresh unless they are those bytes.
        self._cache: dict[str, tuple[bytes, MessageState]] = {}
        # unsettled messages by receipt deadline (pipeline/deadlines.py)
        self.deadlines = ReceiptDeadlines(receipt_timeout_ms)

    def handle(self, records: Iterable[Record], homes: Mapping[str, int | None],
               updates_partitions: int, now_ms: int, now_s: float) -> FoldEffects:
        """``homes``: per input topic, its partition count if it equals
        ``message-events``' (a record there is in its message's own partition when
        the key's default partition is its own), else ``None`` (forward everything).
        ``updates_partitions``: partitions of ``message-updates``."""
        out = FoldEffects()
        # per message: its state now, whether the batch changed it, its partition,
        # its state before the batch
        touched: dict[str, tuple[MessageState, bool, int, MessageState]] = {}
        for record in records:
            try:
                event: Event | None
                if record.topic == self.message_events_topic:
                    value = record.value or b""
                    if value.startswith(TIMEOUT_RECORD):  # the sweep's judgement
                        event, key = None, value[len(TIMEOUT_RECORD):].decode(errors="replace")
                    else:
                        # valid when forwarded: judged then, against its input record's time
                        event = decode_event(value, ALREADY_JUDGED_MS)
                else:
                    # Step 1: validate; fold here only in the message's own partition
                    admitted = self._admit(record, homes, out, now_s)
                    if admitted is None:
                        continue
                    event = admitted
                if event is not None:
                    key = event.message_id
                if key in touched:
                    state, changed, _, before = touched[key]
                else:
                    state = before = self._stored(key)
                    changed = False
                # Step 2: an event id already seen changes nothing
                new = mark_timed_out(state) if event is None else \
                    fold(state, event, self.protected)
                out.duplicates += new is state and event is not None
                touched[key] = (new, changed or new is not state, record.partition, before)
            except InvalidEventError as exc:  # forwarded records were valid; never crash
                out.dead_letters.append((record, exc.reason))
        for key, (state, changed, partition, before) in touched.items():
            try:
                if changed:  # Step 2: one table write per message per batch
                    value = codec.encode_state(state, partition)
                    self.table.put(partition, key, value)
                    self._remember(key, value, state)
                    self.deadlines.note(key, state, partition)
                    out.orphans += held_events(state) - held_events(before)
                # Step 3: the whole contribution, even for a duplicate (it repairs a
                # hand-off lost in a crash)
                row = message_log_row(state, updated_at=now_ms,
                                      preview_window_ms=self.preview_window_ms)
                if row is not None:
                    contribution = message_contribution(
                        state, self.window_sizes_s, preview_window_ms=self.preview_window_ms)
                    campaign_key = row.campaign_id.encode()
                    out.updates.append((
                        message_partition(campaign_key, updates_partitions), campaign_key,
                        codec.encode_message_update(state.version, row, contribution)))
            except Exception:
                out.errors += 1
                log.exception("fold failed for a message in partition %s", partition)
        return out

    def receipt_timeouts(self, now_ms: int) -> list[tuple[int, bytes, bytes]]:
        """(partition, key, value) of the timeout records to send to ``message-events``
        for the messages whose receipt deadline is ``now_ms`` or earlier (each once;
        ``now_ms``: the sweep's clock, set by the tests)."""
        return [(partition, key.encode(), timeout_record(key))
                for partition, key in self.deadlines.due(now_ms)]

    def timeouts_unsent(self, records: Iterable[tuple[int, bytes, bytes]], now_ms: int) -> None:
        """The records of ``receipt_timeouts`` could not be sent: due again at once."""
        self.deadlines.again(((p, key.decode()) for p, key, _ in records), now_ms)

    def _admit(self, record: Record, homes: Mapping[str, int | None], out: FoldEffects,
               now_s: float) -> Event | None:
        topic = record.topic
        try:
            event, kind = decode_input(record.value or b"", self.kind_of_topic.get(topic, "?"),
                                       record_time_ms(record))
        except InvalidEventError as exc:
            out.consumed[topic, "invalid"] += 1
            out.dead_letters.append((record, exc.reason))
            return None
        out.consumed[topic, kind] += 1
        out.accepted.append((record, event))
        key = event.message_id.encode()
        partitions = homes.get(topic)
        if partitions is None or record.partition != message_partition(key, partitions):
            out.forwards.append((key, record.value or b""))
            return None
        out.ages.append(max(now_s - record.timestamp, 0.0))
        return event

    def _stored(self, key: str) -> MessageState:
        stored = self.table.raw(key)
        if stored is None:
            return MessageState(key)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stored:  # `is` first: bytes compare identity
            return hit[1]
        return codec.state_from_dict(codec.as_dict(stored))

    def _remember(self, key: str, value: bytes, state: MessageState) -> None:
        if len(self._cache) >= self.state_cache_size:
            self._cache.clear()
        self._cache[key] = (value, state)
