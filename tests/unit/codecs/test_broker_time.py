"""The far-future rule (domain.md section 5) judges a consumed record against its own
broker timestamp, not the wall clock, so a replay judges it the same: in the fold
(Faust gives the timestamp in seconds) and in the events sink (aiokafka gives ms),
which judge every record alike."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from projections.errors import InvalidEventError
from streams.codecs import input_avro as codec
from streams.pipeline import fold as fold_module
from streams.pipeline.fold import FoldStage
from streams.sink_runtime import runner
from streams.sink_runtime.runner import plan_message_events
from tests.unit.pipeline.stage_doubles import INPUT_TOPICS, KIND_OF_TOPIC, MESSAGE_EVENTS, Rec

DAY = 24 * 3600 * 1000
SKEW = codec.MAX_FUTURE_SKEW_MS
PAST = 1_700_000_000_123  # a broker time long gone (2023), ms not a multiple of 1000
LATER = 4_100_000_000_321  # a broker time far ahead of any wall clock now (2099)


def sent(event_id: str, occurred_at: int) -> bytes:
    line = {"type": "sent", "event_id": event_id, "message_id": f"m-{event_id}",
            "occurred_at": occurred_at, "campaign_id": "c1", "contact_id": "k1",
            "phone": "+15550000001", "outcome": "ACCEPTED"}
    return codec.parse_json_line(json.dumps(line), now_ms=occurred_at)[2]


# (event id, broker time ms, occurred_at, accepted)
CASES = [
    ("ahead-of-broker", PAST, PAST + 8 * DAY, False),  # within the wall clock's week
    ("ahead-of-wall", LATER, LATER + DAY, True),  # years ahead of the wall clock
    ("edge", PAST, PAST + SKEW, True),
    ("past-edge", PAST, PAST + SKEW + 1, False),
    ("edge-later", LATER, LATER + SKEW, True),
    ("past-edge-later", LATER, LATER + SKEW + 1, False),
]


def fold_judges(cases: list[tuple[str, int, int, bool]]) -> dict[str, bool]:
    stage = FoldStage(_Table(), kind_of_topic=KIND_OF_TOPIC,
                      message_events_topic=MESSAGE_EVENTS, window_sizes_s=(60,),
                      state_cache_size=10)
    records = [Rec(INPUT_TOPICS["sent"], 0, i, None, sent(eid, at), timestamp=ts / 1000.0)
               for i, (eid, ts, at, _) in enumerate(cases)]
    effects = stage.handle(records, {t: None for t in KIND_OF_TOPIC}, 1, 0, 0.0)
    rejected = {record.offset for record, _ in effects.dead_letters}
    assert all("future" in reason for _, reason in effects.dead_letters)
    return {eid: i not in rejected for i, (eid, _, _, _) in enumerate(cases)}


def sink_judges(cases: list[tuple[str, int, int, bool]]) -> dict[str, bool]:
    records = [SimpleNamespace(topic=INPUT_TOPICS["sent"], partition=0, offset=i,
                               value=sent(eid, at), timestamp=ts)
               for i, (eid, ts, at, _) in enumerate(cases)]
    plans = {p.table: p for p in plan_message_events(records, None, KIND_OF_TOPIC)}
    kept = {row[-1] for row in plans["events"].rows} if "events" in plans else set()
    return {eid: i in kept for i, (eid, _, _, _) in enumerate(cases)}


class _Table:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.data[key] = value


EXPECTED = {eid: accepted for eid, _, _, accepted in CASES}


@pytest.mark.parametrize("wall_ms", [PAST - 400 * DAY, 1_796_000_000_000, LATER + 400 * DAY])
def test_fold_and_sink_judge_by_the_broker_time_whatever_the_wall_clock(
        monkeypatch: pytest.MonkeyPatch, wall_ms: int) -> None:
    monkeypatch.setattr(codec.time, "time", lambda: wall_ms / 1000)
    assert fold_judges(CASES) == EXPECTED
    assert sink_judges(CASES) == EXPECTED


def test_decode_input_judges_at_the_time_given() -> None:
    data = sent("x", PAST + 8 * DAY)
    with pytest.raises(InvalidEventError, match="future"):
        codec.decode_input(data, "sent", now_ms=PAST)
    assert codec.decode_input(data, "sent", now_ms=PAST + DAY)[1] == "sent"


def test_a_record_without_a_broker_time_is_judged_by_the_wall_clock() -> None:
    assert codec.broker_time_ms(-1) is None and codec.broker_time_ms(None) is None
    assert codec.broker_time_ms(0) is None
    assert codec.broker_time_ms(PAST / 1000.0 * 1000.0) == PAST


def test_negative_control_the_wall_clock_judges_a_replay_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The old behaviour (every record judged at the wall clock) fails the expectations
    above: both tests would fail under it."""
    monkeypatch.setattr(fold_module, "broker_time_ms", lambda timestamp: None)
    monkeypatch.setattr(runner, "broker_time_ms", lambda timestamp: None)
    monkeypatch.setattr(codec.time, "time", lambda: 1_796_000_000)  # late 2026
    for judged in (fold_judges(CASES), sink_judges(CASES)):
        assert judged != EXPECTED
        assert judged["ahead-of-broker"] and not judged["ahead-of-wall"]
