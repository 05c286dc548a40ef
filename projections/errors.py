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
