"""The bulk restore's pure parts (the reader against a real broker: tests/integration)."""

from __future__ import annotations

import gc
from types import SimpleNamespace

from streams.codecs.state import dumps
from streams.engine.restore import apply_newest, newest_per_key, no_collection


def _record(key: str, value: object) -> SimpleNamespace:
    return SimpleNamespace(key=dumps(key), value=None if value is None else dumps(value))


def test_the_newest_record_of_each_key_wins_and_null_deletes() -> None:
    store = SimpleNamespace(data={"gone": {"v": 0}, "kept": {"v": 0}},
                            _key_partition={"gone": 2, "kept": 2})
    records = [_record("a", {"v": 1}), _record("gone", {"v": 1}), _record("a", {"v": 2}),
               _record("gone", None), _record("b", {"v": 1})]
    newest = newest_per_key(records)
    assert len(newest) == 3
    apply_newest(store, 2, newest)
    assert store.data == {"kept": {"v": 0}, "a": {"v": 2}, "b": {"v": 1}}
    assert store._key_partition == {"kept": 2, "a": 2, "b": 2}


def test_no_collection_inside_and_the_heap_frozen_after() -> None:
    was_enabled = gc.isenabled()
    before = gc.get_freeze_count()
    try:
        with no_collection():
            assert not gc.isenabled()
            made = [{"n": i} for i in range(1000)]
        assert gc.isenabled() == was_enabled
        assert gc.get_freeze_count() >= before + len(made)
    finally:
        gc.unfreeze()


def test_a_lazy_table_keeps_the_changelog_bytes() -> None:
    store = SimpleNamespace(data={}, _key_partition={})
    apply_newest(store, 1, newest_per_key([_record("a", {"v": 1}), _record("b", None)]),
                 decode=False)
    assert store.data == {"a": dumps({"v": 1})} and store._key_partition == {"a": 1}


def test_only_states_without_their_send_are_decoded_for_the_orphan_count() -> None:
    from projections.message import MessageState, apply_event
    from streams.codecs import state as serde
    from streams.codecs.input_avro import parse_json_line

    def state(*lines: str) -> MessageState:
        s = MessageState("m-1")
        for line in lines:
            s = apply_event(s, parse_json_line(line, now_ms=1_800_000_000_000)[1])
        return s

    receipt = ('{"type": "delivery", "event_id": "e-2", "message_id": "m-1", '
               '"occurred_at": 1700000000000, "status": "DELIVERED", "carrier": "att"}')
    send = ('{"type": "sent", "event_id": "e-1", "message_id": "m-1", "campaign_id": "c", '
            '"variant": "A", "contact_id": "k", "contact_name": "Ana", "phone": "+15550000000", '
            '"outcome": "ACCEPTED", "error_code": null, "error_description": null, '
            '"occurred_at": 1699999999000}')
    orphan = serde.state_to_dict(state(receipt))
    whole = serde.state_to_dict(state(send, receipt))
    assert serde.unless_sent(dumps(orphan)) == serde.loads(dumps(orphan))
    assert serde.unless_sent(dumps(whole)) is None
    assert serde.unless_sent(whole) is whole  # decoded values pass as they are
