"""Kafka client security from the settings, for every client of the project.

``client_options`` are the keyword arguments an aiokafka client (consumer, producer,
admin, bare client) takes for the settings' security protocol, SASL mechanism, user
and TLS trust; ``faust_credentials`` is the same for the Faust app. ``check_credentials``
authenticates once before a command starts its clients: aiokafka logs a refused login
and keeps trying (Faust for ever), so a wrong password would otherwise be a hang, not
an error. The password is read here, when a client is built, and is never put in a
message, a log record or a repr. docs/security.md says how to run secured.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from projections.errors import CampaignAnalyticsError
from streams.settings import ConfigurationError, Settings

_REFUSED = (SaslAuthenticationFailed, AuthenticationFailedError,
            AuthenticationMethodNotSupported, UnsupportedSaslMechanismError)


class KafkaAuthenticationError(CampaignAnalyticsError):
    """Kafka refused this process's credentials, or its TLS certificate check failed."""


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def password(settings: Settings) -> str:
    """CA_KAFKA_PASSWORD, else CA_KAFKA_PASSWORD_FILE's first line."""
    path = settings.kafka_password_file
    if path is None:
        return settings.kafka_password
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"CA_KAFKA_PASSWORD_FILE: cannot read {path}: "
                                 f"{reason}") from None
    return lines[0].strip() if lines else ""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (CA file, optional client certificate)."""
    if not uses_tls(settings):
        return None
    cafile, certfile, keyfile = (None if p is None else str(p) for p in (
        settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile))
    try:
        return create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"CA_KAFKA_SSL_*: cannot load the TLS files "
                                 f"({cafile or 'system CAs'}): {exc}") from exc


def client_options(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments of aiokafka's clients for ``settings``."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_tls(settings):
        options["ssl_context"] = ssl_context(settings)
    if uses_sasl(settings):
        secret = password(settings)
        if not settings.kafka_username or not secret:
            raise ConfigurationError(
                f"CA_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
                "CA_KAFKA_USERNAME and CA_KAFKA_PASSWORD (or CA_KAFKA_PASSWORD_FILE)")
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_username,
                       sasl_plain_password=secret)
    return options


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for ``settings`` (None: PLAINTEXT)."""
    import faust

    if uses_sasl(settings):
        options = client_options(settings)
        return faust.SASLCredentials(
            username=options["sasl_plain_username"], password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"], ssl_context=options.get("ssl_context"))
    if uses_tls(settings):
        return faust.SSLCredentials(ssl_context(settings))
    return None


def describe(settings: Settings) -> str:
    """Who this process is on Kafka, for messages (never the password)."""
    if uses_sasl(settings):
        return (f"user {settings.kafka_username!r} ({settings.kafka_sasl_mechanism} over "
                f"{settings.kafka_security_protocol})")
    return settings.kafka_security_protocol


async def check_credentials(settings: Settings, timeout: float = 15.0) -> None:
    """Log in to the first bootstrap server that answers, once; raise
    ``KafkaAuthenticationError`` if it refuses the credentials or TLS fails. A server
    that does not answer is left to the command's own error (unreachable, exit 4)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    options = client_options(settings)
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(
                host, int(port), request_timeout_ms=int(timeout * 1000), **options), timeout)
        except _REFUSED as exc:
            raise KafkaAuthenticationError(
                f"Kafka at {server} refused {describe(settings)}: {exc}") from None
        except ssl.SSLError as exc:  # e.g. a certificate the CA file does not vouch for
            raise KafkaAuthenticationError(
                f"TLS with Kafka at {server} failed ({describe(settings)}, CA file "
                f"{settings.kafka_ssl_cafile or 'system CAs'}): "
                f"{exc.reason or exc}") from None
        except (OSError, TimeoutError, ValueError, KafkaError):
            continue
        conn.close()
        return


def metadata_probe(settings: Settings) -> Callable[[str], Awaitable[None]]:
    """A metadata request with the settings' security, for ``wait_for_kafka``; a
    refused login raises ``KafkaAuthenticationError``, which that wait does not retry."""

    async def probe(bootstrap: str) -> None:
        await check_credentials(settings)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                    **client_options(settings))
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    return probe
