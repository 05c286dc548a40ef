import json
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.message import MessageState, apply_event
from projections.metrics import message_contribution, parse_window_key
from streams.cli.demo import generate_campaign
from streams.codecs.input_avro import parse_json_line
from streams.pipeline.views import CampaignViews, Throttle
from tests.oracle import recount_windows

NOW = 1_800_000_000_000
RETENTION = 10 * 365 * 86_400_000


def _events(messages, seed):
    return generate_campaign("cw", messages, seed=seed, start_ms=1_700_000_000_000)


def _incremental(lines):
    views = CampaignViews(RETENTION)
    states, current = {}, {}
    for line in lines:
        _, event, _ = parse_json_line(json.dumps(line), now_ms=NOW)
        state = apply_event(states.get(event.message_id, MessageState(event.message_id)), event)
        states[event.message_id] = state
        new = message_contribution(state)
        if new is not None and new != current.get(event.message_id):
            views.move(current.get(event.message_id), new)
            current[event.message_id] = new
    return views, current


def _window_view(views, campaign_id):
    out = {}
    for key, counts in views.windows.get(campaign_id, {}).items():
        out[parse_window_key(key)] = {
            "counts": {m: counts.total.get(m, 0) for m in
                       ("sent", "delivered", "failed", "replies", "opt_outs", "link_clicks")},
            "variants": {v: {m: bag.get(m, 0) for m in
                             ("sent", "delivered", "failed", "replies", "opt_outs",
                              "link_clicks")}
                         for v, bag in counts.variants.items()},
        }
    return out


def _expected_windows(lines):
    expected = recount_windows(lines, "cw")
    for w in expected.values():  # the views drop variants whose counts are all zero
        w["variants"] = {v: c for v, c in w["variants"].items() if any(c.values())}
    return expected


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(0, 1000))
def test_windows_equal_a_windowed_recount_in_any_order(messages, seed):
    lines = _events(messages, seed)
    random.Random(seed).shuffle(lines)
    views, _ = _incremental(lines)
    assert _window_view(views, "cw") == _expected_windows(lines)


def test_superseding_receipt_moves_the_count_between_windows():
    base = {"message_id": "m", "campaign_id": "cw", "variant": "A", "contact_id": "k",
            "phone": "+15550000001", "outcome": "ACCEPTED"}
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000
    lines = [
        {"type": "sent", "event_id": "s", "occurred_at": t0, **base},
        {"type": "delivery", "event_id": "d", "message_id": "m", "occurred_at": t0 + 30_000,
         "status": "DELIVERED"},
    ]
    views, _ = _incremental(lines)
    assert views.windows["cw"][f"60s@{t0}"].total == {"sent": 1, "delivered": 1}
    lines.append({"type": "delivery", "event_id": "u", "message_id": "m",
                  "occurred_at": t0 + 90_000, "status": "UNDELIVERED"})
    views, _ = _incremental(lines)
    assert views.windows["cw"][f"60s@{t0}"].total == {"sent": 1}
    assert views.windows["cw"][f"60s@{t0 + 60_000}"].total == {"failed": 1}
    assert views.windows["cw"][f"3600s@{t0}"].total == {"sent": 1, "failed": 1}


def test_rebuild_from_contributions_equals_incremental_views():
    lines = _events(150, 3)
    random.Random(1).shuffle(lines)
    views, current = _incremental(lines)
    rebuilt = CampaignViews(RETENTION)
    rebuilt.rebuild(current.values())
    assert rebuilt.counts == views.counts
    assert rebuilt.contacts == views.contacts
    assert rebuilt.windows == views.windows
    assert [cid for cid, _ in rebuilt.take_dirty(0)] == ["cw"]


def test_old_windows_are_neither_published_nor_kept():
    views, _ = _incremental(_events(20, 4))
    newest = max(parse_window_key(k)[1] for k in views.windows["cw"])
    now = newest + RETENTION - 30 * 60_000  # only the last half hour stays in retention
    published = views.take_dirty_windows(now)
    assert published and all(parse_window_key(k)[1] >= now - RETENTION
                             for _, k, _ in published)
    assert views.prune_windows(now) > 0
    assert all(parse_window_key(k)[1] >= now - RETENTION for k in views.windows["cw"])


def test_state_round_trips_through_its_table_form():
    from streams.codecs import state as serde

    lines = _events(40, 9)
    states = {}
    for line in lines:
        _, event, _ = parse_json_line(json.dumps(line), now_ms=NOW)
        states[event.message_id] = apply_event(
            states.get(event.message_id, MessageState(event.message_id)), event)
    for state in states.values():
        stored = json.loads(json.dumps(serde.state_to_dict(state) | {"p": 3}))
        assert serde.state_from_dict(stored) == state


def _contributions(seed: int, messages: int) -> list:
    lines = _events(messages, seed) + generate_campaign(
        "solo", messages // 2 + 1, seed=seed + 1, variants=(), start_ms=1_700_000_000_000)
    random.Random(seed).shuffle(lines)
    states: dict = {}
    for line in lines:
        _, event, _ = parse_json_line(json.dumps(line), now_ms=NOW)
        states[event.message_id] = apply_event(
            states.get(event.message_id, MessageState(event.message_id)), event)
    return [c for s in states.values() if (c := message_contribution(s)) is not None]


def _moved_one_by_one(contributions) -> CampaignViews:
    views = CampaignViews(RETENTION)
    for c in contributions:
        views.move(None, c)
    return views


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 120), st.integers(0, 1000))
def test_the_one_pass_rebuild_equals_moving_each_contribution(messages, seed):
    contributions = _contributions(seed, messages)
    rebuilt = CampaignViews(RETENTION)
    rebuilt.rebuild(contributions)
    reference = _moved_one_by_one(contributions)
    assert (rebuilt.counts, rebuilt.contacts, rebuilt.windows) == (
        reference.counts, reference.contacts, reference.windows)


def test_negative_control_the_rebuild_check_sees_one_missing_click():
    contributions = _contributions(5, 200)
    clicked = next(i for i, c in enumerate(contributions) if c.clicked)
    rebuilt = CampaignViews(RETENTION)
    rebuilt.rebuild(contributions[:clicked] + contributions[clicked + 1:])
    reference = _moved_one_by_one(contributions)
    assert rebuilt.counts != reference.counts


def test_a_rebuild_from_stored_dicts_equals_one_from_contributions():
    """What a recovery does: the views from the table's JSON values, fields read
    straight from the dicts."""
    from streams.codecs import state as serde

    contributions = _contributions(9, 300)
    stored = [serde.loads(serde.dumps(c)) for c in contributions]
    from_dicts = CampaignViews(RETENTION)
    from_dicts.rebuild_fields(serde.contribution_fields_of(d) for d in stored)
    reference = _moved_one_by_one(contributions)
    assert (from_dicts.counts, from_dicts.contacts, from_dicts.windows) == (
        reference.counts, reference.contacts, reference.windows)


def test_each_key_is_let_out_at_most_once_per_interval_and_as_soon_as_due():
    throttle: Throttle[str] = Throttle(1000)
    dirty = {"a", "b"}
    assert throttle.take(dirty, 10_000) == ["a", "b"] and not dirty
    dirty |= {"a", "c"}  # a changed again right away; c for the first time
    assert throttle.take(dirty, 10_050) == ["c"]
    assert throttle.take(dirty, 10_999) == [] and dirty == {"a"}  # held back, kept
    assert throttle.take(dirty, 11_000) == ["a"] and not dirty  # due exactly then
    dirty.add("b")  # b's last was at 10_000: due at once
    assert throttle.take(dirty, 11_001) == ["b"]
    # what is remembered is only what can still hold a key back
    assert set(throttle._last) == {"a", "b", "c"}
    throttle.take(set(), 12_000)
    assert set(throttle._last) == {"b"}


def test_a_campaign_changing_all_the_time_gets_one_snapshot_per_interval():
    views = CampaignViews(RETENTION, emit_interval_ms=1000)
    states: dict = {}
    current: dict = {}
    emitted: list[int] = []
    now = 1_000_000
    for line in _events(60, 2):  # a change every 50 ms, a look every 50 ms
        _, event, _ = parse_json_line(json.dumps(line), now_ms=NOW)
        state = apply_event(states.get(event.message_id, MessageState(event.message_id)),
                            event)
        states[event.message_id] = state
        new = message_contribution(state)
        if new is not None and new != current.get(event.message_id):
            views.move(current.get(event.message_id), new)
            current[event.message_id] = new
        now += 50
        emitted += [now for _ in views.take_dirty(now)]
    gaps = [b - a for a, b in zip(emitted, emitted[1:], strict=False)]
    assert len(emitted) > 5 and all(gap == 1000 for gap in gaps), gaps


def _changes(seed: int, messages: int) -> tuple[list, list]:
    """Every change of contribution in arrival order (as fields) and the final ones;
    one message is sent again under another campaign and contact (a data error)."""
    from projections.metrics import contribution_fields

    lines = _events(messages, seed)
    random.Random(seed).shuffle(lines)
    states: dict = {}
    current: dict = {}
    changes = []
    for line in lines:
        _, event, _ = parse_json_line(json.dumps(line), now_ms=NOW)
        states[event.message_id] = apply_event(
            states.get(event.message_id, MessageState(event.message_id)), event)
        new = message_contribution(states[event.message_id])
        old = current.get(event.message_id)
        if new != old:
            changes.append((old and contribution_fields(old), new and contribution_fields(new)))
            current[event.message_id] = new
    message_id, last = next(iter(current.items()))
    moved = replace(last, campaign_id="elsewhere", contact_id="someone-else")
    changes.append((contribution_fields(last), contribution_fields(moved)))
    current[message_id] = moved
    return changes, [c for c in current.values() if c is not None]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 80), st.integers(0, 1000), st.integers(1, 50))
def test_moving_batches_of_changes_equals_a_rebuild_of_the_final_contributions(
        messages, seed, chunk):
    changes, final = _changes(seed, messages)
    moved = CampaignViews(RETENTION)
    for start in range(0, len(changes), chunk):
        moved.move_all(changes[start:start + chunk])
    rebuilt = CampaignViews(RETENTION)
    rebuilt.rebuild(final)
    assert _nonempty(moved) == _nonempty(rebuilt)


def _nonempty(views: CampaignViews) -> tuple:
    """The views without campaigns left with nothing (kept, with empty counts, so that
    their snapshot says so)."""
    return ({c: v for c, v in views.counts.items() if v.total or v.variants}, views.contacts,
            {c: w for c, w in views.windows.items() if w})


def test_negative_control_the_batch_check_sees_one_change_left_out():
    changes, final = _changes(3, 150)
    dropped = next(i for i, (old, new) in enumerate(changes) if old is not None
                   and new is not None and new[4] and not old[4])  # a first click
    moved = CampaignViews(RETENTION)
    moved.move_all(changes[:dropped] + changes[dropped + 1:])
    rebuilt = CampaignViews(RETENTION)
    rebuilt.rebuild(final)
    assert _nonempty(moved)[0] != _nonempty(rebuilt)[0]


def test_pruned_windows_are_reported_for_tombstoning_exactly_once():
    views, _ = _incremental(_events(20, 4))
    newest = max(parse_window_key(k)[1] for k in views.windows["cw"])
    now = newest + RETENTION - 30 * 60_000
    old = {("cw", k) for k in views.windows["cw"] if parse_window_key(k)[1] < now - RETENTION}
    assert old and views.take_ended_windows() == []  # nothing pruned yet
    assert views.prune_windows(now) == len(old)
    ended = views.take_ended_windows()
    assert sorted(ended) == sorted(old)
    assert views.prune_windows(now) == 0 and views.take_ended_windows() == []  # once
    assert not {k for _, k in ended} & set(views.windows["cw"])
    assert all(parse_window_key(k)[1] >= now - RETENTION
               for _, k, _ in views.take_dirty_windows(now))


def test_windows_a_rebuild_brings_back_past_retention_are_pruned_again_not_published():
    lines = _events(20, 4)
    views, current = _incremental(lines)
    newest = max(parse_window_key(k)[1] for k in views.windows["cw"])
    now = newest + RETENTION - 30 * 60_000
    views.prune_windows(now)
    first = views.take_ended_windows()
    restored = CampaignViews(RETENTION)  # a restart: the contributions table restored
    restored.rebuild(current.values())
    published = restored.take_dirty_windows(now)
    assert all(parse_window_key(k)[1] >= now - RETENTION for _, k, _ in published)
    restored.prune_windows(now)
    assert sorted(restored.take_ended_windows()) == sorted(first)


def test_negative_control_without_the_tombstone_the_key_stays_on_the_topic():
    """Compaction keeps a key's newest value: unless a tombstone follows the last
    snapshot of a window, the window stays on the topic for ever."""
    from streams.pipeline.publish import due_snapshots

    views, _ = _incremental(_events(20, 4))
    newest = max(parse_window_key(k)[1] for k in views.windows["cw"])
    topic: dict[bytes, bytes | None] = {}
    _, snapshots = due_snapshots(views, newest)  # everything within retention then
    topic.update(snapshots)
    now = newest + RETENTION - 30 * 60_000
    views.prune_windows(now)
    ended = views.take_ended_windows()  # dropped: these tombstones never go out
    _, later = due_snapshots(views, now)
    topic.update(later)
    compacted = {k for k, v in topic.items() if v is not None}
    assert ended and all(f"cw|{k.replace('s@', '|')}".encode() in compacted for _, k in ended)
