"""Crash tests on the real broker: replays, SIGKILLs, rebalances. Metrics stay exact.

The checker is the independent batch recount of ``tests/oracle.py``; the last
test switches the replay protection off and proves the checker then fails.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.cli.admin import group_lag, read_topic
from streams.cli.demo import generate_campaign
from streams.codecs.output_avro import decode_campaign_window
from streams.settings import load_settings
from tests.diagnose import diagnose
from tests.integration.conftest import Deployment, free_port
from tests.oracle import recount, recount_breakdowns, recount_windows
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

KEYS = ("campaign_id", "sent", "delivered", "failed", "pending", "replies",
        "unique_repliers", "opt_outs", "link_clicks", "unique_link_clicks",
        "delivery_rate", "reply_rate", "link_click_rate", "variants",
        "by_error_code", "by_carrier", "time_to_deliver", "time_to_first_click",
        "human_link_clicks", "unique_human_link_clicks", "human_link_click_rate",
        "by_country", "by_failure_category", "by_carrier_outcome")


def _settings(dep: Deployment) -> Any:
    env = dep.env
    return load_settings(kafka_bootstrap=env["CA_KAFKA_BOOTSTRAP"], app_id=env["CA_APP_ID"],
                         topic_prefix=env["CA_TOPIC_PREFIX"],
                         input_topics={k: env["CA_TOPIC_PREFIX"] + v for k, v in
                                       {"sent": "sms.sent", "delivery": "sms.delivery",
                                        "reply": "sms.reply", "click": "sms.click"}.items()})


def _publish(dep: Deployment, events: list[dict], name: str) -> None:
    path = dep.root / name
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    dep.cli("publish", str(path))


def _pick(summary: dict) -> dict:
    return {k: summary[k] for k in KEYS}


def _expected(events: list[dict]) -> dict[str, dict]:
    return {cid: _pick(s | recount_breakdowns(events, cid))
            for cid, s in recount(events).items()}


def _summaries(dep: Deployment, campaigns: list[str]) -> dict[str, dict | None]:
    out = {}
    for cid in campaigns:
        s = dep.summary(cid)
        out[cid] = _pick(s) if s else None
    return out


def _windows(dep: Deployment, campaign_id: str) -> dict[tuple[int, int], dict]:
    latest: dict[bytes, dict] = {}
    settings = _settings(dep)
    for key, value in asyncio.run(read_topic(settings, settings.window_metrics_topic)):
        if key is not None and value is not None:
            latest[key] = decode_campaign_window(value)
    out = {}
    for record in latest.values():
        if record["campaign_id"] != campaign_id:
            continue
        variants = {v: c for v, c in record["variants"].items() if any(c.values())}
        if any(record["counts"].values()) or variants:
            out[(record["window_seconds"], record["window_start"])] = {
                "counts": record["counts"], "variants": variants}
    return out


def _expected_windows(events: list[dict], campaign_id: str) -> dict:
    out = recount_windows(events, campaign_id)
    for w in out.values():
        w["variants"] = {v: c for v, c in w["variants"].items() if any(c.values())}
    return out


def _assert_windows(dep: Deployment, events: list[dict], campaign_id: str) -> None:
    """The published windows equal the recount; a window's snapshot may come up to one
    emit interval after its campaign's (each key has its own), so wait a little."""
    want = _expected_windows(events, campaign_id)
    got: Any = None

    def published() -> bool:
        nonlocal got
        got = _windows(dep, campaign_id)
        return got == want

    wait_until(published, f"{campaign_id}'s windows to equal the recount", 30, 1,
               explain=lambda: f"got: {got}\nwant: {want}")


def _wait_exact(dep: Deployment, events: list[dict], timeout: float = 600) -> None:
    """Until every campaign's summary equals the recount (or fail showing the diff)."""
    expected = _expected(events)
    _wait_caught_up(dep, timeout)  # cheap to poll, unlike the CLI
    got: dict = {}

    def exact() -> bool:
        nonlocal got
        got = _summaries(dep, sorted(expected))
        return got == expected

    def explain() -> str:
        diff = {cid: {k: (got.get(cid) or {}).get(k), "want": v}
                for cid in expected for k, v in expected[cid].items()
                if (got.get(cid) or {}).get(k) != v}
        return (f"metrics differ from the batch recount after catching up "
                f"(group {dep.env['CA_APP_ID']}): {diff}\n"
                f"where, stage by stage:\n{diagnose(_settings(dep), events)}")

    wait_until(exact, "every campaign's summary to equal the batch recount", 120, 2,
               explain=explain)


def _wait_caught_up(dep: Deployment, timeout: float = 300) -> None:
    settings = _settings(dep)
    lag = -1

    def caught_up() -> bool:
        nonlocal lag
        lag = asyncio.run(group_lag(settings))
        return lag == 0

    wait_until(caught_up, "the consumer group to catch up", timeout, 2,
               explain=lambda: f"it still lags by {lag}")


async def _rewind_inputs(settings: Any) -> int:
    """Commit offset 0 for every input partition of the stopped group.

    Unpatched, Faust 0.15.3 never fetched such a partition again (aiokafka's
    seek-to-committed skips a commit of 0); ``streams/engine/patches.py`` fixes it.
    """
    tps = [TopicPartition(t, p) for t in settings.input_topics.values()
           for p in range(settings.partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()
    return len(tps)


def _consumed(worker: Any) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in worker.metrics().splitlines()
               if line.startswith("campaign_analytics_events_consumed_total{"))


def test_consuming_the_same_input_twice_changes_nothing(deployment: Deployment):
    events = generate_campaign("replay", 1500, seed=61)
    _publish(deployment, events, "replay.jsonl")
    worker = deployment.worker().start()
    worker.wait_ready()
    _wait_exact(deployment, events, timeout=300)
    _wait_caught_up(deployment)
    worker.stop()

    assert asyncio.run(_rewind_inputs(_settings(deployment))) == 16
    assert asyncio.run(group_lag(_settings(deployment))) >= len(events)  # really rewound
    again = deployment.worker(worker.web_port).start()
    again.wait_ready()
    wait_until(lambda: _consumed(again) >= len(events),
               "the input to be consumed a second time", 300, 1,
               explain=lambda: f"consumed: {_consumed(again)} of {len(events)}")
    _wait_caught_up(deployment)
    # a snapshot interval or two after the last change
    wait_until(lambda: _summaries(deployment, ["replay"]) == _expected(events),
               "the summary after the replay to equal the recount", 30, 1,
               explain=lambda: f"got: {_summaries(deployment, ['replay'])}\n"
                               f"want: {_expected(events)}")
    _assert_windows(deployment, events, "replay")


def test_workers_killed_and_joining_mid_stream(deployment: Deployment):
    # multi-b: contacts in several countries, failures of every category (issue 22)
    events = generate_campaign("multi-a", 4000, seed=71, previews=0.3) + generate_campaign(
        "multi-b", 3000, seed=72, countries=True) + generate_campaign("multi-c", 1000, seed=73)
    random.Random(7).shuffle(events)
    first, second = deployment.worker().start(), deployment.worker().start()
    first.wait_ready()
    second.wait_ready()
    half = len(events) // 2
    _publish(deployment, events[:half], "first-half.jsonl")
    time.sleep(8)
    second.stop(signal.SIGKILL)  # mid-stream
    _publish(deployment, events[half:], "second-half.jsonl")
    restarted = deployment.worker(second.web_port).start()
    restarted.wait_ready()
    time.sleep(10)
    third = deployment.worker().start()  # joins later
    third.wait_ready()
    _wait_exact(deployment, events, timeout=600)
    for cid in ("multi-a", "multi-b", "multi-c"):
        _assert_windows(deployment, events, cid)


def _kill_loop(dep: Deployment, events: list[dict], kills: int, seed: int,
               mid_work: bool = False) -> tuple[int, Any]:
    """Publish, then SIGKILL and restart the worker ``kills`` times while it works.

    ``mid_work``: each kill comes 0.3-1.5 s after the (re)started worker has begun
    folding events, so before or just after its first commit (every 2.8 s): every
    kill leaves processed, uncommitted input behind. (With plain 2-9 s pauses most
    kills land while the restarted worker still waits for the group to drop its
    killed predecessor, and redelivery rests on the first kill alone.)"""
    rng = random.Random(seed)
    port = free_port()
    worker = dep.worker(port).start()
    worker.wait_ready()
    _publish(dep, events, "messy.jsonl")
    done = 0
    for _ in range(kills):
        if mid_work:
            if not _folding(worker):
                break  # nothing left to fold: the input is done
            time.sleep(rng.uniform(0.3, 1.5))
        else:
            time.sleep(rng.uniform(2.0, 9.0))
        worker.stop(signal.SIGKILL)
        done += 1
        worker = dep.worker(port).start()
        worker.wait_ready()
    return done, worker


def _folding(worker: Any, timeout: float = 90) -> bool:
    """Whether the worker starts folding input within ``timeout`` seconds."""
    try:
        wait_until(lambda: worker.counter("campaign_analytics_events_consumed_total") > 0,
                   "the worker to fold input", timeout, 0.1)
    except AssertionError:
        return False
    return True


def _messy_100k(duplicates: bool) -> list[dict]:
    rate = 0.1 if duplicates else 0.0
    events = generate_campaign("chaos-ab", 20_000, seed=81, duplicate_rate=rate,
                               previews=0.3) + \
        generate_campaign("chaos-solo", 6_000, seed=82, variants=(), duplicate_rate=rate)
    random.Random(8).shuffle(events)
    return events


@pytest.mark.heavy
def test_sigkill_ten_times_during_100k_events_stays_exact(deployment: Deployment):
    events = _messy_100k(duplicates=True)
    assert len(events) >= 100_000
    kills, last = _kill_loop(deployment, events, kills=10, seed=91)
    assert kills == 10
    _wait_exact(deployment, events, timeout=900)
    # the last restart restored its tables through the bulk read (streams/engine/restore.py)
    assert last.counter("campaign_analytics_bulk_restored_records_total") > 0
    for cid in ("chaos-ab", "chaos-solo"):
        _assert_windows(deployment, events, cid)
    print(f"chaos: {len(events)} events, {kills} SIGKILLs, 1 worker: exact")


@pytest.mark.heavy
def test_negative_control_without_replay_protection_the_checker_fails(
        deployment: Deployment):
    """Same kills, protection off (input without duplicates, so any excess can
    only come from redelivery after a crash): the recount must NOT match."""
    deployment.env["CA_UNSAFE_DISABLE_REPLAY_PROTECTION"] = "1"
    events = _messy_100k(duplicates=False)
    _kill_loop(deployment, events, kills=10, seed=91, mid_work=True)
    _wait_caught_up(deployment, timeout=900)
    expected = _expected(events)
    got: dict = {}

    def inflated() -> list[tuple[str, str]]:  # counts only grow: the snapshots settle on it
        nonlocal got
        got = _summaries(deployment, sorted(expected))
        return [(cid, k) for cid in expected for k in ("replies", "link_clicks")
                if got[cid] and got[cid][k] > expected[cid][k]]

    wait_until(inflated, "redelivery to inflate counts", 30, 1,
               explain=lambda: f"got: {got}\nwant: {expected}")
    assert got != expected, "the checker could not tell double counting from exact counts"
