"""The hardening of faust-streaming 0.15.3 the worker runs on, behind two entry points.

``harden(app, ...)`` (once, by the composition root) applies everything a Faust app
needs: the fixes of Faust's bugs, the bulk inboxes, the strict commit positions, the
bulk restore, the delivery guard and the commit watchdog; it first checks the
installed faust-streaming is the one this code was written for. ``harden_process``
(once per worker or sink process) tunes the garbage collector and keeps the
worker's seat in its consumer group. The engine knows nothing about campaigns; it
is the only code that touches other libraries' private attributes (ruff ``SLF``).
What each piece fixes and why: docs/faust-hardening.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

import faust

from streams.engine import (
    commit_watchdog,
    delivery_guard,
    freeze_guard,
    gc_tuning,
    log_repeats,
    membership,
    patches,
)
from streams.engine import inbox as inboxes_
from streams.engine import lag as lag_
from streams.engine import restore as restore_
from streams.engine.errors import EngineError, UnsupportedFaustVersionError
from streams.engine.gc_tuning import collect_when_quiet
from streams.engine.inbox import Inbox
from streams.engine.membership import Seat
from streams.engine.outbox import Outbox, partition_count, producer_client
from streams.engine.positions import positions_of
from streams.engine.tables import RebuildingTable, rebuilding_table
from streams.telemetry import Telemetry

__all__ = [
    "FAUST_VERSION", "Engine", "EngineError", "Inbox", "Outbox", "RebuildingTable", "Seat",
    "UnsupportedFaustVersionError", "check_faust_version", "collect_when_quiet", "harden",
    "harden_process", "rebuilding_table",
]

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"  # the faust-streaming every patch here was written and tested for


def installed_faust_version() -> str | None:
    try:
        return metadata.version("faust-streaming")
    except metadata.PackageNotFoundError:
        return None


def check_faust_version() -> None:
    """Raise ``UnsupportedFaustVersionError`` unless faust-streaming ``FAUST_VERSION`` is
    installed: the patches replace its private methods, which change between releases."""
    installed = installed_faust_version()
    if installed != FAUST_VERSION:
        raise UnsupportedFaustVersionError(installed, FAUST_VERSION)


class Engine:
    """What ``harden`` installed on one app, and the calls its stages make."""

    def __init__(self, app: faust.App, inboxes: dict[str, Inbox],
                 guard: delivery_guard.DeliveryGuard | None) -> None:
        self.app = app
        self.inboxes = inboxes
        self.guard = guard

    def outbox(self) -> Outbox:
        """An outbox on the app's producer client, its deliveries watched by the guard."""
        app = self.app
        return Outbox(lambda: producer_client(app),
                      self.guard.done if self.guard is not None else None)

    async def partition_count(self, topic: str) -> int:
        """``topic``'s partitions, from the producer's metadata (fetched if missing)."""
        return await partition_count(self.app, topic)


def harden(app: faust.App, *, telemetry: Telemetry, bootstrap: str,
           inputs: Mapping[str, Iterable[faust.TopicT]], batch_max: int,
           batch_seconds: float, fetch_max_wait_ms: int,
           bulk_restore_seconds: float,
           client_options: Mapping[str, Any] | None = None) -> Engine:
    """Apply every piece of hardening to ``app``; call once, after its topics and tables
    are declared and before it starts.

    ``inputs``: per stage name, the topics its inbox reads (``Engine.inboxes[name]``,
    batches of at most ``batch_max`` records gathered for ``batch_seconds``).
    ``bootstrap``: the brokers the bulk restore reads from (``host:port,...``), with
    ``client_options`` (aiokafka's security arguments, streams/kafka_security.py);
    ``bulk_restore_seconds`` 0 leaves restoring to Faust. Raises
    ``UnsupportedFaustVersionError`` before touching anything on another Faust."""
    check_faust_version()
    patches.install()
    app.fetch_max_wait_ms = fetch_max_wait_ms  # type: ignore[attr-defined]  # patches, fix 6
    guard = _guard_deliveries(app)
    if bulk_restore_seconds > 0:
        def restored(records: Mapping[str, int], seconds: float) -> None:
            for table, n in records.items():
                telemetry.restored_records.labels(table).inc(n)
            telemetry.restore_seconds.observe(seconds)

        # Faust's recovery gives up on a step that takes longer than its broker
        # request timeout (90 s): stay well inside it.
        restore_.install(app, restore_.BulkRestore(
            bootstrap, min(bulk_restore_seconds, app.conf.broker_request_timeout / 2),
            restored, client_options))
    inboxes = {name: Inbox(app, topics, batch_max, batch_seconds)
               for name, topics in inputs.items()}
    inboxes_.install(app, inboxes.values())
    positions_of(app.consumer).on_reread = lambda reason: telemetry.rereads.labels(reason).inc()
    commit_watchdog.install(app, telemetry)
    lag_.install(app, telemetry)
    return Engine(app, inboxes, guard)


def _guard_deliveries(app: faust.App) -> delivery_guard.DeliveryGuard | None:
    if not delivery_guard.guard_enabled():
        log.warning("%s is set: failed deliveries are ignored (tests only)",
                    delivery_guard.UNSAFE_ENV)
        return None
    guard = delivery_guard.DeliveryGuard()
    guard.install(app.producer)
    return guard


def harden_process(telemetry: Telemetry, gc_gen0_threshold: int, *,
                   app: faust.App | None = None, seat: Seat | None = None) -> None:
    """Process-wide pieces, once per long-running process (worker or sink), after the
    app is made: GC timing and tuning (``gc_gen0_threshold`` 0 keeps CPython's), and,
    for a worker's ``app``, recording its group member id in its claimed ``seat`` and
    stopping it if it was frozen past its session (streams/engine/freeze_guard.py); the
    Kafka clients' repeated warnings once per window (streams/engine/log_repeats.py)."""
    if app is not None and seat is not None:
        membership.install(app, seat)
        freeze_guard.install(app.producer, app.conf.broker_session_timeout,
                             app.conf.broker_heartbeat_interval)
    gc_tuning.install(telemetry, gc_gen0_threshold)
    log_repeats.install()
