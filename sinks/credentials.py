"""``Credentials``: the user and password the stores send to ClickHouse.

They come from their own settings (``CA_CLICKHOUSE_USER``, ``CA_CLICKHOUSE_PASSWORD``
or ``CA_CLICKHOUSE_PASSWORD_FILE``; ``streams/settings.py``), never from the URL that
error messages and logs name. The password never shows: ``repr`` hides it and
``scrub`` takes it out of any text (an error message from a client library) before
that text is raised or logged. The embedded engine's SQL endpoint asks readers for
the same credentials when a password is set (``sinks/sql_endpoint.py``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REDACTED = "***"


@dataclass(frozen=True)
class Credentials:
    """A ClickHouse user (empty: the server's ``default``) and its password (empty: none)."""

    user: str = ""
    password: str = field(default="", repr=False)

    def __repr__(self) -> str:
        shown = "<set>" if self.password else "<empty>"
        return f"Credentials(user={self.user!r}, password={shown})"

    __str__ = __repr__

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the password replaced by ``***``."""
        return text.replace(self.password, REDACTED) if self.password else text

    def client_options(self) -> dict[str, Any]:
        """clickhouse-connect's ``username``/``password`` arguments (empty: none sent)."""
        options: dict[str, Any] = {}
        if self.user or self.password:
            options["username"] = self.user or "default"
        if self.password:
            options["password"] = self.password
        return options

    def admits(self, headers: Mapping[str, str]) -> bool:
        """Whether an HTTP request's headers carry these credentials, as ClickHouse's
        HTTP interface takes them (``Authorization: Basic``, or ``X-ClickHouse-User``
        and ``X-ClickHouse-Key``); compared in constant time. Without a password
        every request is admitted."""
        if not self.password:
            return True
        user, password = headers.get("X-ClickHouse-User"), headers.get("X-ClickHouse-Key")
        authorization = headers.get("Authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(authorization[6:].strip(), validate=True
                                                     ).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
        if user is None or password is None:
            return False
        expected_user = (self.user or "default").encode()
        user_ok = hmac.compare_digest(user.encode(), expected_user)
        return hmac.compare_digest(password.encode(), self.password.encode()) and user_ok
