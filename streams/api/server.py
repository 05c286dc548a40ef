"""``campaign-analytics api``: the API service's process (follower + aiohttp site)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from sinks import Credentials, open_reader
from streams.api.app import create_api
from streams.api.live import LiveState, MetricsFollower
from streams.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, port: int, started: asyncio.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM; a port that cannot be bound raises ``OSError``."""
    state = LiveState(window_retention_ms=int(settings.window_retention_days * 86_400_000))
    follower = MetricsFollower(settings, state)
    store = open_reader(settings.clickhouse_url, settings.clickhouse_database,
                        sql_host=settings.sql_host, sql_port=settings.sql_port,
                        credentials=Credentials(*settings.clickhouse_login()))
    app = create_api(settings, state, store, follower)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    following = asyncio.ensure_future(follower.run())
    try:
        site = web.TCPSite(runner, settings.api_host, port)
        await site.start()
        print(f"API at http://{settings.api_host}:{port}/api/v1/campaigns "
              f"(OpenAPI: /api/v1/openapi.json)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await runner.cleanup()
        await asyncio.to_thread(store.close)
