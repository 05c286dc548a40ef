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
    # The store's disk full or not writable: passes once someone frees or fixes it.
    # Never "refused for good": the sink would dead-letter every row of the batch.
    "NOT_ENOUGH_SPACE",
    "CANNOT_WRITE_TO_FILE_DESCRIPTOR",
    "CANNOT_FSYNC",
    "CANNOT_CREATE_DIRECTORY",
    "CANNOT_TRUNCATE_FILE",
    "CANNOT_ALLOCATE_MEMORY",
)

# The same conditions as the engine quotes the operating system (errno 28, 122, 30,
# 13), when its message carries only that; with the prefix, so that a value quoted
# in a refusal cannot pass for one.
TRANSIENT_OS_ERRORS: tuple[str, ...] = tuple(f"strerror: {text}" for text in (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
))


def retry_after_for(message: str) -> float | None:
    """``RETRY_AFTER_SECONDS`` when the engine's message names a transient error."""
    if any(name in message for name in TRANSIENT_ERROR_NAMES + TRANSIENT_OS_ERRORS):
        return RETRY_AFTER_SECONDS
    return None
