"""A restarted worker takes its place in the consumer group at once.

A SIGKILLed worker cannot leave its group, and every join waits until its session
times out. So each worker keeps a *seat* in its data directory: an exclusive lock
held for its life (a second worker on the directory stops with
``DirectoryInUseError``) and its group member id (``group-member``), which the next
worker on the directory asks the group coordinator to remove (``LeaveGroup`` on
its behalf) before it joins. Never a question of exactness, only of how soon a
restart gets going: every failure here is logged and the worker waits for the
session timeout as before. Why: docs/faust-hardening.md#membership.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import faust
from aiokafka import AIOKafkaClient
from aiokafka.client import ConnectionGroup
from aiokafka.errors import UnknownMemberIdError, for_code
from aiokafka.protocol.group import LeaveGroupRequest

from streams.engine.errors import DirectoryInUseError

log = logging.getLogger(__name__)

MEMBER_FILE = "group-member"
LOCK_FILE = "worker.lock"


class Seat:
    """One worker's data directory: its lock and the member id it last joined with."""

    def __init__(self, directory: Path, group: str) -> None:
        self.directory = directory
        self.group = group
        self._lock: IO[str] | None = None
        self._written: str | None = None

    @property
    def member_file(self) -> Path:
        return self.directory / MEMBER_FILE

    def claim(self) -> None:
        """Take the directory's lock for this process's life, or raise ``DirectoryInUseError``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / LOCK_FILE, "a+")  # noqa: SIM115  # held until exit
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DirectoryInUseError(
                f"{self.directory} is in use by another worker (its lock "
                f"{self.directory / LOCK_FILE} is held); give each worker its own "
                "--web-port or CA_DATA_DIR") from None
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None

    def previous_member(self) -> str | None:
        try:
            member = self.member_file.read_text().strip()
        except FileNotFoundError:
            return None
        return member or None

    def remember(self, member_id: str) -> None:
        """Write ``member_id`` (atomically, and only when it changed)."""
        if not member_id or member_id == self._written:
            return
        partial = self.member_file.with_suffix(".partial")
        partial.write_text(member_id)
        os.replace(partial, self.member_file)
        self._written = member_id

    async def evict_previous(self, bootstrap: str, timeout: float = 5.0,
                             client_options: Mapping[str, Any] | None = None) -> str | None:
        """Remove the member id left by this directory's previous worker from the group.

        Only with the lock held (so that worker is gone). Returns what happened, for
        the log and the tests: ``"removed"``, ``"unknown"`` (it had left or timed out
        already), ``None`` (no id on record) or the error's name."""
        if self._lock is None:
            raise RuntimeError("evict_previous needs the directory's lock (claim() first)")
        member = self.previous_member()
        if member is None:
            return None
        try:
            leaving = leave_group(bootstrap, self.group, member, **(client_options or {}))
            outcome = await asyncio.wait_for(leaving, timeout)
        except Exception as exc:  # any failure only means waiting for the session timeout
            log.warning("could not remove this directory's previous group member from %s "
                        "(%s: %s); the group waits for its session to time out",
                        self.group, type(exc).__name__, exc)
            return type(exc).__name__
        log.info("previous group member of this directory in %s: %s", self.group, outcome)
        return outcome


async def leave_group(bootstrap: str, group: str, member_id: str, **client_options: Any) -> str:
    """Send the group coordinator a ``LeaveGroup`` for ``member_id`` (``client_options``:
    aiokafka's security arguments)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, **client_options)
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(0, group)  # 0: a consumer group
        response = await client.send(node, LeaveGroupRequest(group, member_id),
                                      group=ConnectionGroup.COORDINATION)
    finally:
        await client.close()
    code = response.error_code
    if code == 0:
        return "removed"
    if code == UnknownMemberIdError.errno:
        return "unknown"
    return str(for_code(code).__name__)


def member_id_of(app: faust.App) -> str | None:
    """The group member id of the app's Kafka consumer (aiokafka's coordinator)."""
    consumer: Any = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    return getattr(coordinator, "member_id", None)


def install(app: faust.App, seat: Seat) -> None:
    """Write the app's member id into ``seat`` after every assignment."""

    async def _record(sender: Any, assigned: Any, **kwargs: Any) -> None:
        member = member_id_of(app)
        if member:
            try:
                seat.remember(member)
            except OSError as exc:  # the next restart then waits for the session timeout
                log.warning("could not record the group member id in %s: %s",
                            seat.member_file, exc)

    app.on_partitions_assigned.connect(_record)  # type: ignore[arg-type]
