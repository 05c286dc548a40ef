"""Windows that end (issue 19 item 5), on the real broker: with a retention of
0.004 days (345.6 s), a window already past it when its events arrive is never
published and gets a tombstone; a window published while within retention gets a
tombstone after its snapshot once it passes retention; the API's ``/timeseries``
shows neither once they are past retention, and keeps the recent window."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from projections.metrics import window_key
from streams.cli.admin import read_topic
from streams.codecs.output_avro import window_record_key
from tests.integration.conftest import Deployment, free_port
from tests.integration.test_api import TOKEN, Api
from tests.integration.test_pipeline import _write

pytestmark = pytest.mark.integration

RETENTION_MS = 345_600  # CA_WINDOW_RETENTION_DAYS=0.004 (fractional days parse)


def _sent(i: int, at: int) -> dict[str, object]:
    return {"type": "sent", "event_id": f"s{i}", "message_id": f"m{i}",
            "campaign_id": "camp-old", "variant": "A", "contact_id": f"k{i}",
            "phone": f"+1555000100{i}", "outcome": "ACCEPTED", "occurred_at": at}


def test_windows_past_retention_get_a_tombstone_and_leave_the_api(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path)
    deployment.env["CA_WINDOW_RETENTION_DAYS"] = "0.004"
    deployment.env["CA_API_TOKEN"] = TOKEN
    settings = deployment.settings()
    assert int(settings.window_retention_days * 86_400_000) == RETENTION_MS
    api: Api | None = None
    try:
        worker = deployment.worker().start()
        worker.wait_ready()
        now = int(time.time() * 1000)
        old_at, ending_at, recent_at = now - 3_600_000, now - RETENTION_MS + 75_000, now
        deployment.cli("publish", str(_write(tmp_path / "events.jsonl", [
            _sent(1, old_at), _sent(2, ending_at), _sent(3, recent_at)])))
        old, ending, recent = (window_key(60, at - at % 60_000)
                               for at in (old_at, ending_at, recent_at))
        key_of = {window_record_key("camp-old", k): k for k in (old, ending, recent)}
        api = Api(deployment, free_port(), tmp_path / "api.log")

        def points() -> set[str]:
            series = api.json("/api/v1/campaigns/camp-old/timeseries?window=60")
            return {p["start"] for p in series["points"]}

        def iso(key: str) -> str:
            from streams.api.timefmt import iso as fmt
            return fmt(int(key.partition("s@")[2]))

        api.wait(lambda: api.get("/api/v1/campaigns/camp-old")[0] == 200, "the campaign")
        shown = api.wait(lambda: (p := points()) >= {iso(ending), iso(recent)} and p,
                         "the ending and the recent window", timeout=60)
        assert iso(old) not in shown  # past retention on arrival: never published

        def topic() -> list[tuple[str, bytes | None]]:
            records = asyncio.run(read_topic(settings, settings.window_metrics_topic))
            return [(key_of[k], v) for k, v in records if k in key_of]

        def ended() -> list[tuple[str, bytes | None]] | None:
            records = topic()
            tombstoned = {k for k, v in records if v is None}
            return records if {old, ending} <= tombstoned else None

        records = api.wait(ended, "tombstones of the old and the ending window", timeout=150)
        of = {k: [v for key, v in records if key == k] for k in (old, ending, recent)}
        assert of[old] and all(v is None for v in of[old])  # no snapshot, only tombstones
        assert of[old] == [None]  # one tombstone: the window was pruned once
        assert of[ending][0] is not None and of[ending][-1] is None  # snapshot, then end
        assert of[ending].count(None) == 1
        assert of[recent] and None not in of[recent]  # within retention: kept
        assert iso(ending) not in points() and iso(old) not in points()
        assert iso(recent) in points()

        # a restart restores the contributions, so the ended windows come back in the
        # views: they are pruned (tombstoned) again, never published again
        worker.stop()
        before = len(of[recent])
        deployment.worker().start().wait_ready()
        api.wait(lambda: sum(k == recent for k, _ in topic()) > before,
                 "the restarted worker's snapshot of the recent window", timeout=120)
        time.sleep(3)  # six emit intervals: the restored views pruned and published
        records = topic()
        for k in (old, ending):
            values = [v for key, v in records if key == k]
            assert all(v is None for v in values[values.index(None):]), k
            assert values.count(None) >= 2, k  # the restored window was tombstoned again
        assert iso(ending) not in points() and iso(recent) in points()
    finally:
        if api is not None:
            api.stop()
        deployment.close()
