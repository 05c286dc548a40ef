"""A restarted worker removes its SIGKILLed predecessor from the group
(streams/engine/membership.py), on the real broker: the group's member list, read from
the coordinator, says whether the dead member is still holding the rebalance up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from streams.engine.membership import Seat
from tests.integration.conftest import CLI, new_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

# A member that joins, writes its member id into the seat, and then hangs until it
# is SIGKILLed: it never leaves the group. Session timeout 60 s, so only a removal
# (not the timeout) can take it out of the group within the test.
MEMBER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from aiokafka import AIOKafkaConsumer
    from streams.engine.membership import Seat

    async def main(bootstrap, topic, group, directory):
        seat = Seat(Path(directory), group)
        seat.claim()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                    session_timeout_ms=60000, heartbeat_interval_ms=3000)
        await consumer.start()
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        seat.remember(consumer._coordinator.member_id)
        print("joined", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:]))
""")


async def _topic(bootstrap: str) -> str:
    return await new_topic(bootstrap, f"seat-{uuid.uuid4().hex[:8]}")


async def _members(bootstrap: str, group: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (entry,) = described.groups
    return [member[0] for member in entry[5]]  # (member_id, client_id, host, ...)


def _killed_member(bootstrap: str, topic: str, group: str, directory: Path) -> str:
    """Start a member on ``directory``, wait until it has joined, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", MEMBER, bootstrap, topic, group,
                             str(directory)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "joined"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
    member = Seat(directory, group).previous_member()
    assert member
    return member


@pytest.mark.parametrize("evict", [True, False], ids=["evicted", "negative-control"])
def test_a_restart_removes_its_killed_predecessor(kafka_bootstrap: str, tmp_path: Path,
                                                  evict: bool) -> None:
    group = f"seat-{uuid.uuid4().hex[:8]}"
    topic = asyncio.run(_topic(kafka_bootstrap))
    dead = _killed_member(kafka_bootstrap, topic, group, tmp_path)
    assert asyncio.run(_members(kafka_bootstrap, group)) == [dead]  # still seated

    seat = Seat(tmp_path, group)
    seat.claim()  # free again: its holder is dead
    try:
        if evict:
            assert asyncio.run(seat.evict_previous(kafka_bootstrap)) == "removed"
            # the negative control skips this: the dead member keeps its seat
        members = asyncio.run(_members(kafka_bootstrap, group))
        assert (dead in members) is not evict
        if evict:  # and a second attempt finds nobody to remove
            assert asyncio.run(seat.evict_previous(kafka_bootstrap)) == "unknown"
    finally:
        seat.release()


def test_the_new_member_joins_once_the_dead_one_is_removed(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    group = f"seat-{uuid.uuid4().hex[:8]}"
    topic = asyncio.run(_topic(kafka_bootstrap))
    dead = _killed_member(kafka_bootstrap, topic, group, tmp_path)
    seat = Seat(tmp_path, group)
    seat.claim()

    async def join() -> str:
        assert await seat.evict_previous(kafka_bootstrap) == "removed"
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                    session_timeout_ms=60000)
        await consumer.start()
        try:
            # with the dead member seated this waits for its 60 s session timeout
            async with asyncio.timeout(30):
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=200)
            return str(consumer._coordinator.member_id)
        finally:
            await consumer.stop()

    try:
        assert asyncio.run(join()) != dead
    finally:
        seat.release()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL],
                         ids=["terminated", "negative-control-killed"])
def test_a_terminated_sink_process_leaves_its_groups(deployment: Any, sig: int) -> None:
    """The worker's sink child gets SIGTERM when the worker dies (streams/sink_runtime/process.py):
    it stops its consumers, which leave their groups, so the restarted worker's sinks do
    not wait for the session timeout. A SIGKILLed one stays seated."""
    from streams.cli.admin import ensure_topics

    settings = deployment.settings()
    asyncio.run(ensure_topics(settings))
    groups = [f"{settings.app_id}-clickhouse-sink", f"{settings.app_id}-clickhouse-events-sink"]
    proc = subprocess.Popen([*CLI, "sink"], env=deployment.env, cwd=deployment.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def joined() -> bool:
            if proc.poll() is not None:
                pytest.fail("the sink process exited")
            return [len(asyncio.run(_members(kafka(deployment), g))) for g in groups] == [1, 1]

        wait_until(joined, "the sinks to join their groups", 90, 0.5)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seated = [len(asyncio.run(_members(kafka(deployment), g))) for g in groups]
    assert seated == ([0, 0] if sig == signal.SIGTERM else [1, 1])
    if sig == signal.SIGTERM:
        assert proc.returncode == 0


def kafka(deployment: Any) -> str:
    return str(deployment.env["CA_KAFKA_BOOTSTRAP"])
