"""The project's one base exception, with a subclass per package."""

from __future__ import annotations


class CampaignAnalyticsError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidEventError(CampaignAnalyticsError):
    """An input record that does not decode, fails its schema or breaks a rule.

    ``reason`` is short and safe to log (no phone numbers, no message bodies).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SinkError(CampaignAnalyticsError):
    """A ClickHouse store failed; ``retry_after`` says when trying again makes sense."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(CampaignAnalyticsError):
    """A setting has a value the system cannot work with."""
