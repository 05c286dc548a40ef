"""The errors of the sinks, and which engine errors are worth retrying.

``SinkError.retry_after`` is the sink's backpressure signal (style.md #4): a
number pauses the sink and tries again; ``None`` says retrying the same thing
will fail the same way (bad SQL, a value the column cannot hold).
"""

from __future__ import annotations

from projections.errors import CampaignAnalyticsError


class SinkError(CampaignAnalyticsError):
    """A ClickHouse store failed; ``retry_after`` says when trying again makes sense."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreConfigurationError(CampaignAnalyticsError):
    """The store was given something it cannot work with: a bad retention or chdb
    path, a migration file that is misnamed, duplicated or edited after it ran."""


RETRY_AFTER_SECONDS = 1.0

# ClickHouse error names that describe load or a passing condition, not a bad request.
TRANSIENT_ERROR_NAMES: tuple[str, ...] = (
    "TOO_MANY_PARTS",
    "TOO_MANY_SIMULTANEOUS_QUERIES",
    "MEMORY_LIMIT_EXCEEDED",
    "TIMEOUT_EXCEEDED",
    "SOCKET_TIMEOUT",
    "NETWORK_ERROR",
    "ALL_CONNECTION_TRIES_FAILED",
    "TABLE_IS_READ_ONLY",
    "KEEPER_EXCEPTION",
    "CANNOT_OPEN_FILE",  # chdb: directory locked by another process
)


def retry_after_for(message: str) -> float | None:
    """``RETRY_AFTER_SECONDS`` when the engine's message names a transient error."""
    if any(name in message for name in TRANSIENT_ERROR_NAMES):
        return RETRY_AFTER_SECONDS
    return None
