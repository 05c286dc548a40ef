"""FoldStage without a broker: validation, home partitions, duplicates, orphans, the
hand-off of whole contributions, and replay protection's negative control."""

from __future__ import annotations

from typing import Any

from streams.codecs import state as codec
from streams.codecs.routing import message_partition
from streams.pipeline.fold import FoldEffects, FoldStage
from tests.unit.pipeline.stage_doubles import (
    KIND_OF_TOPIC,
    MESSAGE_EVENTS,
    Rec,
    Table,
    input_record,
)

P = 4  # partitions of the inputs and of message-events
U = 3  # partitions of message-updates
T = 1_790_000_000_000


def sent(message_id: str = "m1", event_id: str = "e-sent", at: int = T) -> dict[str, Any]:
    return {"type": "sent", "event_id": event_id, "occurred_at": at, "campaign_id": "c1",
            "variant": "A", "message_id": message_id, "contact_id": "k1",
            "contact_name": "Ann", "phone": "+15550000001", "outcome": "ACCEPTED"}


def delivered(message_id: str = "m1", event_id: str = "e-dlr", at: int = T + 1000
              ) -> dict[str, Any]:
    return {"type": "delivery", "event_id": event_id, "occurred_at": at,
            "message_id": message_id, "status": "DELIVERED"}


def click(message_id: str = "m1", event_id: str = "e-click", at: int = T + 5000
          ) -> dict[str, Any]:
    return {"type": "click", "event_id": event_id, "occurred_at": at, "message_id": message_id,
            "link_id": "l1", "user_agent": "Mozilla/5.0"}


def stage(table: Table | None = None, protected: bool = True) -> FoldStage:
    return FoldStage(table if table is not None else Table(), kind_of_topic=KIND_OF_TOPIC,
                     message_events_topic=MESSAGE_EVENTS, window_sizes_s=(60, 3600),
                     state_cache_size=100, protected=protected)


def handle(s: FoldStage, records: list[Rec], homes: int | None = P) -> FoldEffects:
    return s.handle(records, {topic: homes for topic in KIND_OF_TOPIC}, U, T + 10_000, 0.0)


def stored(table: Table, key: str = "m1") -> Any:
    return codec.state_from_dict(codec.as_dict(table.data[key]))


def test_records_in_their_own_partition_are_folded_and_handed_on_by_campaign():
    table = Table()
    effects = handle(stage(table), [input_record(sent(), P), input_record(delivered(), P)])
    assert effects.forwards == [] and effects.dead_letters == []
    assert table.puts == [(message_partition(b"m1", P), "m1")]  # one write per message
    state = stored(table)
    assert state.sent is not None and state.receipt is not None and state.version == 2
    [(partition, key, value)] = effects.updates
    assert key == b"c1" and partition == message_partition(b"c1", U)
    message_id, version, contribution = codec.decode_update_head(value)
    assert (message_id, version) == ("m1", 2)
    assert contribution is not None and contribution["counts"]["delivered"] == 1
    assert effects.consumed == {("sms.sent", "sent"): 1, ("sms.delivery", "delivery"): 1}
    assert [event.event_id for _, event in effects.accepted] == ["e-sent", "e-dlr"]


def test_records_elsewhere_are_forwarded_keyed_by_message_and_folded_when_back():
    s, table = stage(), Table()
    s.table = table
    away = input_record(sent(), P, own_partition=False)
    effects = handle(s, [away])
    assert effects.forwards == [(b"m1", away.value)] and table.puts == []
    assert effects.updates == [] and [e.event_id for _, e in effects.accepted] == ["e-sent"]
    # an input topic whose partitions differ from message-events' forwards everything
    assert handle(stage(), [input_record(sent(), P)], homes=None).forwards
    back = Rec(MESSAGE_EVENTS, message_partition(b"m1", P), 0, b"m1", away.value)
    effects = handle(s, [back])
    assert table.puts and stored(table).sent is not None and len(effects.updates) == 1
    assert effects.accepted == []  # the events sink had it when it was first read


def test_duplicates_change_nothing_but_still_repair_the_hand_off():
    table = Table()
    s = stage(table)
    first = handle(s, [input_record(sent(), P), input_record(sent(), P)])
    assert first.duplicates == 1 and len(table.puts) == 1
    again = handle(s, [input_record(sent(), P, offset=7)])  # a redelivery, later batch
    assert again.duplicates == 1 and len(table.puts) == 1  # no write
    assert len(again.updates) == 1  # the same contribution again: a lost hand-off repaired
    assert codec.decode_update_head(again.updates[0][2])[:2] == ("m1", 1)


def test_orphans_are_held_until_their_send_arrives():
    table = Table()
    s = stage(table)
    early = handle(s, [input_record(delivered(), P), input_record(click(), P)])
    assert early.orphans == 2 and early.updates == []  # no send: nothing to hand on
    late = handle(s, [input_record(sent(), P)])
    assert late.orphans == -2
    [(_, _, value)] = late.updates
    assert codec.decode_update_head(value)[1] == 3  # all three events applied


def test_bad_records_are_dead_lettered_and_the_rest_folded():
    good = input_record(sent(), P)
    garbage = Rec("sms.sent", 0, 1, b"x", b"\x01\x02 not avro")  # first byte 0: Confluent
    wrong_topic = Rec("sms.delivery", good.partition, 2, good.key, good.value)
    effects = handle(stage(), [garbage, good, wrong_topic])
    reasons = [reason for _, reason in effects.dead_letters]
    assert reasons == ["not an Avro single-object-encoded record",
                       "a sent record on the delivery topic"]
    assert effects.consumed == {("sms.sent", "invalid"): 1, ("sms.sent", "sent"): 1,
                                ("sms.delivery", "invalid"): 1}
    assert len(effects.updates) == 1


def test_without_replay_protection_a_redelivered_click_counts_twice():
    # negative control: the dedup in the fold is what keeps a replay harmless
    def clicks(protected: bool) -> int:
        s, table = stage(protected=protected), Table()
        s.table = table
        handle(s, [input_record(sent(), P), input_record(delivered(), P),
                   input_record(click(), P)])
        handle(s, [input_record(click(), P, offset=9)])  # the same click, redelivered
        return stored(table).click_count

    assert clicks(protected=True) == 1
    assert clicks(protected=False) == 2


def test_a_restored_value_is_decoded_afresh_not_taken_from_the_cache():
    table = Table()
    s = stage(table)
    handle(s, [input_record(sent(), P)])
    # a recovery replaces the stored bytes with an older state (no send yet)
    table.data["m1"] = codec.encode_state(codec.state_from_dict(
        {**codec.state_to_dict(stored(table)), "sent": None, "seen": [], "version": 0}), 0)
    effects = handle(s, [input_record(delivered(), P)])
    assert stored(table).sent is None and effects.updates == []


def test_the_preview_window_is_the_stages_and_the_verdict_crosses_message_events():
    """CA_PREVIEW_WINDOW_SECONDS reaches the hand-off (contribution and log row), and a
    click forwarded through message-events is judged by its user agent again there."""
    preview = click(at=T + 4_000) | {"event_id": "e-preview", "user_agent": "WhatsApp/2"}
    person = click(at=T + 4_000)  # 3 s after the receipt at T + 1000
    for window_ms, human in ((2_000, 1), (5_000, 0)):
        s = FoldStage(Table(), kind_of_topic=KIND_OF_TOPIC, message_events_topic=MESSAGE_EVENTS,
                      window_sizes_s=(60,), state_cache_size=10, preview_window_ms=window_ms)
        away = input_record(preview, P, own_partition=False)
        handle(s, [input_record(sent(), P), input_record(delivered(), P),
                   input_record(person, P), away])
        back = Rec(MESSAGE_EVENTS, message_partition(b"m1", P), 0, b"m1", away.value)
        [(_, _, value)] = handle(s, [back]).updates
        _, _, contribution = codec.decode_update_head(value)
        assert contribution is not None and contribution["counts"]["link_clicks"] == 2
        assert contribution["counts"].get("human_link_clicks", 0) == human
        assert codec.decode_update_row(value)[1].human_click_count == human
