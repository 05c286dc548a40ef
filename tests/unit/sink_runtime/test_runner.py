"""The sinks' plans from Kafka records (decode + ``sinks.plan``): pure, no broker."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from projections.message import MessageState, apply_event
from projections.message_log import message_log_row
from streams.cli.demo import generate_campaign
from streams.codecs import state as serde
from streams.codecs.input_avro import parse_json_line
from streams.sink_runtime.runner import plan_message_events, plan_message_updates


def record(offset: int, value: bytes, topic: str = "t") -> Any:
    return SimpleNamespace(topic=topic, partition=3, offset=offset, value=value, timestamp=-1)


KINDS = {f"in.{kind}": kind for kind in ("sent", "delivery", "reply", "click")}


def test_events_plan_keeps_one_row_per_record_and_skips_invalid_ones() -> None:
    events = generate_campaign("c", messages=20, seed=4)
    records = [record(i, parse_json_line(json.dumps(e))[2], f"in.{e['type']}")
               for i, e in enumerate(events)]
    records.append(record(len(records), b"\xc3\x01not-avro", "in.sent"))
    sent = next(r for r in records if r.topic == "in.sent")
    records.append(record(len(records), sent.value, "in.reply"))  # dead-lettered by the worker

    plans = {p.table: p for p in plan_message_events(records, "t-3-0-99", KINDS)}

    assert len(plans["events"].rows) == len(events)
    assert [r[-3:] for r in plans["events"].rows] == [
        (f"in.{e['type']}", 3, i) for i, e in enumerate(events)]
    assert len(plans["replies"].rows) == sum(e["type"] == "reply" for e in events)
    assert len(plans["link_clicks"].rows) == sum(e["type"] == "click" for e in events)


def test_message_updates_plan_keeps_the_newest_version_of_each_message() -> None:
    events = [parse_json_line(json.dumps(e))[1] for e in generate_campaign("c", 30, seed=2)]
    records, states = [], {}
    for event in events:
        state = states[event.message_id] = apply_event(
            states.get(event.message_id, MessageState(event.message_id)), event)
        row = message_log_row(state, updated_at=1)
        if row is not None:
            records.append(record(len(records), serde.encode_message_update(
                state.version, row, None)))

    (plan,) = plan_message_updates(records[::-1], None)  # order does not matter

    newest = {s.message_id: s.version for s in states.values() if s.sent is not None}
    version = plan.columns.index("version")
    assert {r[0]: r[version] for r in plan.rows} == newest


def test_events_the_fold_decoded_give_the_same_plan() -> None:
    """The events sink takes the fold's decoded events where it has them
    (``DecodedEvents``) and decodes the rest: the same rows either way."""
    from streams.codecs.input_avro import decode_event
    from streams.sink_runtime.runner import DecodedEvents

    events = generate_campaign("c", messages=20, seed=4)
    records = [record(i, parse_json_line(json.dumps(e))[2], f"in.{e['type']}")
               for i, e in enumerate(events)]
    records.append(record(len(records), b"\xc3\x01not-avro", "in.sent"))
    shared = DecodedEvents(capacity=10)
    assert shared.take("in.sent", 3, 0) is None
    with shared.reading():
        for r in records[::2][:-1]:  # half of them, the invalid one never
            shared.offer(r.topic, r.partition, r.offset, decode_event(r.value))
        assert len(shared._events) == 10  # bounded: the oldest went first
        taken: list[int] = []

        def take(topic: str, partition: int, offset: int) -> Any:
            event = shared.take(topic, partition, offset)
            if event is not None:
                taken.append(offset)
            return event

        with_cache = plan_message_events(records, "t", KINDS, take)
    assert len(taken) == 10 and shared._events == {}
    assert [(p.table, p.rows) for p in with_cache] == [
        (p.table, p.rows) for p in plan_message_events(records, "t", KINDS)]


def test_nothing_is_kept_while_no_events_sink_reads() -> None:
    from streams.sink_runtime.runner import DecodedEvents

    shared = DecodedEvents()
    event = parse_json_line(json.dumps(generate_campaign("c", 1)[0]))[1]
    shared.offer("in.sent", 0, 1, event)
    assert shared.take("in.sent", 0, 1) is None


def test_a_cancelled_run_sinks_waits_for_each_sink_to_stop(monkeypatch: Any) -> None:
    """Cancelled (SIGTERM), run_sinks returns only once every sink has finished its
    cleanup (its consumer leaving its group), however fast the row reporter stops."""
    import asyncio
    import contextlib

    from streams.sink_runtime import runner

    stopped: list[str] = []

    class SlowToStop:
        name = "slow"

        def __init__(self, settings: Any, telemetry: Any) -> None:
            pass

        async def run(self) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.2)  # a consumer leaving its group: a round trip
                stopped.append(type(self).__name__)

    class Owner:
        @contextlib.asynccontextmanager
        async def hold(self, settings: Any, telemetry: Any) -> Any:
            yield None

    async def reporter(store: Any, telemetry: Any) -> None:
        await asyncio.Event().wait()  # cancelled at once

    monkeypatch.setattr(runner, "ClickHouseSink", type("A", (SlowToStop,), {}))
    monkeypatch.setattr(runner, "ClickHouseEventsSink", type("B", (SlowToStop,), {}))
    monkeypatch.setattr(runner, "_OWNER", Owner())
    monkeypatch.setattr(runner, "report_stored_rows", reporter)

    async def scenario() -> None:
        task = asyncio.ensure_future(runner.run_sinks(Any, Any))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert sorted(stopped) == ["A", "B"]  # before run_sinks returned

    asyncio.run(scenario())
