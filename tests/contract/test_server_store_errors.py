"""ClickHouseServerStore failure modes that need no server (a refused local port)."""

from __future__ import annotations

import socket
from typing import Any

import clickhouse_connect
import pytest

from sinks.errors import SinkError
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


def test_the_store_is_created_without_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating and closing a store makes no client and dials nobody (a listening socket
    gets no connection); the first query makes the client, and against a refused port
    that query fails with a SinkError naming the server."""
    made: list[str] = []
    real_get_client = clickhouse_connect.get_client

    def counting_get_client(**kwargs: Any) -> Any:
        made.append(kwargs["dsn"])
        return real_get_client(**kwargs)

    monkeypatch.setattr(clickhouse_connect, "get_client", counting_get_client)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        ClickHouseServerStore(f"http://127.0.0.1:{port}", "campaign_analytics").close()
        with pytest.raises(BlockingIOError):  # no connection is waiting
            listener.accept()
        # (negative control of the probe: a connection would be waiting)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            listener.setblocking(True)
            listener.settimeout(2)
            listener.accept()[0].close()
    assert made == []

    url = f"http://127.0.0.1:{refused_port()}"
    store = ClickHouseServerStore(url, "campaign_analytics", connect_timeout=2)
    try:
        assert made == []
        with pytest.raises(SinkError, match=f"cannot connect to ClickHouse at {url}"):
            store.count_message_log("any")
    finally:
        store.close()
    assert made == [url]
