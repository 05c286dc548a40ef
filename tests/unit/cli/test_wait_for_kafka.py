"""A worker started before its broker waits for it (issue 19 item 3b): ``wait_for_kafka``
keeps trying, says what it waits for, and returns once the broker answers. The
integration test with a real broker: tests/integration/test_broker_faults.py."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.cli.admin import wait_for_kafka


def test_it_waits_through_failures_and_says_for_what(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def probe(bootstrap: str) -> None:
        calls.append(bootstrap)
        if len(calls) <= 3:
            raise KafkaConnectionError(f"Unable to bootstrap from {bootstrap}")

    with caplog.at_level(logging.WARNING, "streams.cli.admin"):
        failed = asyncio.run(wait_for_kafka("10.0.0.9:9092", interval=0.01, say_every=60,
                                            probe=probe))

    assert failed == 3 and len(calls) == 4
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("waiting for Kafka at 10.0.0.9:9092 (KafkaConnectionError: ")
    assert len(lines) == 2  # said once per say_every, and once when the broker answers
    assert "answers, after 3 failed attempt(s)" in lines[1]


def test_a_broker_that_answers_at_once_is_not_waited_for(
        caplog: pytest.LogCaptureFixture) -> None:
    async def probe(bootstrap: str) -> None:
        return None

    with caplog.at_level(logging.WARNING, "streams.cli.admin"):
        assert asyncio.run(wait_for_kafka("h:1", probe=probe)) == 0
    assert caplog.records == []


def test_nothing_listening_it_keeps_waiting(caplog: pytest.LogCaptureFixture) -> None:
    """The real probe against a refused port: neither an exception nor a return."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connecting is refused

    async def bounded() -> None:
        await asyncio.wait_for(wait_for_kafka(f"127.0.0.1:{port}", interval=0.2), 3)

    with caplog.at_level(logging.WARNING), pytest.raises(TimeoutError):
        asyncio.run(bounded())
    ours = [r.getMessage() for r in caplog.records if r.name == "streams.cli.admin"]
    assert len(ours) == 1 and f"waiting for Kafka at 127.0.0.1:{port}" in ours[0]
    assert not [r for r in caplog.records if r.name.startswith("aiokafka")]  # quieted
