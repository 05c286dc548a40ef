"""LiveState's windows: a tombstone removes one, a record read again below the
tombstone's offset does not bring it back, and none past retention is shown."""

from projections.metrics import CampaignCounts, window_key
from streams.api.live import LiveState
from streams.codecs.output_avro import encode_campaign_window, window_record_key

MINUTE = 60_000
DAY = 86_400_000
NOW = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE


def _record(start: int, sent: int = 1) -> tuple[bytes, bytes]:
    key = window_key(60, start)
    return (window_record_key("c", key),
            encode_campaign_window("c", key, CampaignCounts(total={"sent": sent}), NOW))


def test_a_tombstone_removes_the_window_and_an_older_record_does_not_resurrect_it():
    state = LiveState(window_retention_ms=DAY)
    key, value = _record(NOW - MINUTE)
    state.apply_window(key, value, 10, NOW)
    assert (60, NOW - MINUTE) in state.windows_of("c", NOW)
    state.apply_window(key, None, 11, NOW)
    assert state.windows_of("c", NOW) == {} and state.windows["c"] == {}
    state.apply_window(key, value, 10, NOW)  # read again after a reconnect
    assert state.windows_of("c", NOW) == {}
    _, newer = _record(NOW - MINUTE, sent=2)
    state.apply_window(key, newer, 12, NOW)  # written after the tombstone: a new life
    assert state.windows_of("c", NOW)[(60, NOW - MINUTE)]["counts"]["sent"] == 2


def test_negative_control_without_the_tombstone_the_window_stays():
    state = LiveState(window_retention_ms=DAY)
    key, value = _record(NOW - MINUTE)
    state.apply_window(key, value, 10, NOW)
    state.apply_window(*_record(NOW), 11, NOW)
    assert (60, NOW - MINUTE) in state.windows_of("c", NOW)


def test_a_window_past_retention_is_never_shown_nor_kept():
    state = LiveState(window_retention_ms=DAY)
    old_key, old = _record(NOW - 2 * DAY)
    state.apply_window(old_key, old, 1, NOW)  # already past retention when read
    assert state.windows.get("c", {}) == {}
    key, value = _record(NOW - DAY + MINUTE)
    state.apply_window(key, value, 2, NOW)
    assert list(state.windows_of("c", NOW)) == [(60, NOW - DAY + MINUTE)]
    later = NOW + 2 * MINUTE  # now past retention, its tombstone not yet read
    assert state.windows_of("c", later) == {}
    assert state.prune_windows(later) == 1 and state.windows["c"] == {}


def test_tombstone_offsets_are_forgotten_once_past_retention():
    state = LiveState(window_retention_ms=DAY)
    key, _ = _record(NOW - MINUTE)
    state.apply_window(key, None, 5, NOW)
    assert state.ended == {("c", 60, NOW - MINUTE): 5}
    state.prune_windows(NOW + DAY)
    assert state.ended == {}
    state.apply_window(b"no-separators", None, 6, NOW)
    assert state.rejected == 1
