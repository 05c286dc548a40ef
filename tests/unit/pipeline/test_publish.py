"""``due_snapshots``: window snapshots within retention, and a tombstone (key, ``None``)
for each window pruned past it, once."""

import json

from projections.message import MessageState, apply_event
from projections.metrics import message_contribution, window_key
from streams.codecs.input_avro import parse_json_line
from streams.codecs.output_avro import decode_campaign_window, window_record_key
from streams.pipeline.publish import due_snapshots
from streams.pipeline.views import CampaignViews

HOUR = 3_600_000
DAY = 86_400_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR


def _views(retention_ms: int, sent_at: list[int]) -> CampaignViews:
    views = CampaignViews(retention_ms)
    for i, at in enumerate(sent_at):
        line = {"type": "sent", "event_id": f"s{i}", "message_id": f"m{i}", "campaign_id": "c",
                "variant": "A", "contact_id": f"k{i}", "phone": f"+1555000000{i}",
                "outcome": "ACCEPTED", "occurred_at": at}
        _, event, _ = parse_json_line(json.dumps(line), now_ms=T0 + 10 * DAY)
        views.move(None, message_contribution(apply_event(MessageState(event.message_id),
                                                          event)))
    return views


def test_a_pruned_window_gets_one_tombstone_and_no_snapshot():
    views = _views(DAY, [T0, T0 + 2 * DAY])
    now = T0 + 2 * DAY + 1_000
    views.prune_windows(now)
    _, windows = due_snapshots(views, now)
    tombstones = [key for key, value in windows if value is None]
    assert sorted(tombstones) == sorted([window_record_key("c", window_key(60, T0)),
                                         window_record_key("c", window_key(3600, T0))])
    snapshots = {key: decode_campaign_window(value) for key, value in windows
                 if value is not None}
    assert set(snapshots) == {window_record_key("c", window_key(s, T0 + 2 * DAY))
                              for s in (60, 3600)}
    assert not set(tombstones) & set(snapshots)
    views.prune_windows(now + 1_000)
    assert due_snapshots(views, now + 1_000)[1] == []  # once


def test_tombstones_keys_match_the_snapshot_keys_they_end():
    views = _views(DAY, [T0])
    _, first = due_snapshots(views, T0 + 1_000)
    assert first and all(value is not None for _, value in first)
    later = T0 + DAY + HOUR
    views.prune_windows(later)
    _, second = due_snapshots(views, later)
    assert sorted(second) == sorted((key, None) for key, _ in first)
