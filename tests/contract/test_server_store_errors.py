"""ClickHouseServerStore failure modes that need no server (a refused local port)."""

from __future__ import annotations

import socket

import pytest

from projections.errors import SinkError
from sinks.server_store import ClickHouseServerStore


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connecting is refused


def test_an_unreachable_server_is_a_retryable_sink_error_without_the_password() -> None:
    url = f"http://alice:s3cret-pw@127.0.0.1:{refused_port()}"
    store = ClickHouseServerStore(url, "campaign_analytics", connect_timeout=2)
    try:
        with pytest.raises(SinkError) as caught:
            store.count_message_log("any")
    finally:
        store.close()
    assert caught.value.retry_after == 1.0
    assert "s3cret-pw" not in str(caught.value)
    assert "alice" not in str(caught.value)
    assert caught.value.__cause__ is not None


def test_the_store_is_created_without_connecting() -> None:
    store = ClickHouseServerStore(f"http://127.0.0.1:{refused_port()}", "campaign_analytics")
    store.close()
