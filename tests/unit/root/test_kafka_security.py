"""streams/kafka_security.py: the security arguments every Kafka client gets from the
settings, the password kept out of reprs and messages, and the credentials check's
quiet cases (the refused and TLS cases run on the real broker:
tests/integration/test_security.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

import faust
import pytest

from streams.kafka_security import (
    check_credentials,
    client_options,
    faust_credentials,
    password,
)
from streams.settings import ConfigurationError, settings_of

SECRET = "s3cret-pw"  # noqa: S105 - a test value
SASL = {"CA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CA_KAFKA_USERNAME": "worker"}


def test_plaintext_by_default() -> None:
    settings = settings_of({})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_sasl_with_the_password_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(f"{SECRET}\nignored second line\n")
    settings = settings_of(SASL | {"CA_KAFKA_PASSWORD_FILE": str(path)})
    assert client_options(settings) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker", "sasl_plain_password": SECRET}
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("worker", SECRET)
    assert credentials.ssl_context is None


def test_sasl_ssl_gets_a_verifying_tls_context() -> None:
    settings = settings_of(SASL | {"CA_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
                                   "CA_KAFKA_PASSWORD": SECRET})
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = faust_credentials(settings)
    assert credentials.protocol.value == "SASL_SSL"  # Faust's own choice, from the context


def test_the_password_is_in_no_repr(tmp_path: Path) -> None:
    settings = settings_of(SASL | {"CA_KAFKA_PASSWORD": SECRET})
    assert SECRET not in repr(settings)
    assert SECRET not in repr(faust_credentials(settings))
    # negative control: the value is there, only hidden
    assert password(settings) == SECRET


@pytest.mark.parametrize("env, says", [
    ({}, "needs CA_KAFKA_USERNAME and CA_KAFKA_PASSWORD"),
    ({"CA_KAFKA_PASSWORD_FILE": "/nonexistent/pw"}, "CA_KAFKA_PASSWORD_FILE: cannot read"),
    ({"CA_KAFKA_PASSWORD": SECRET, "CA_KAFKA_PASSWORD_FILE": "/x"}, "not both"),
    ({"CA_KAFKA_SECURITY_PROTOCOL": "SASL"}, "CA_KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"CA_KAFKA_SASL_MECHANISM": "GSSAPI"}, "CA_KAFKA_SASL_MECHANISM must be one of"),
    ({"CA_KAFKA_SECURITY_PROTOCOL": "SSL", "CA_KAFKA_SSL_CAFILE": "/nonexistent/ca.crt"},
     "cannot load the TLS files"),
])
def test_bad_security_settings_are_configuration_errors(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        client_options(settings_of(SASL | env))
    assert SECRET not in str(caught.value)


def test_the_check_passes_plaintext_and_an_unreachable_broker_quietly(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connecting is refused
    caplog.set_level(logging.DEBUG)
    asyncio.run(check_credentials(settings_of({"CA_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"})))
    # unreachable: left to the command's own error (exit 4, "unreachable")
    asyncio.run(check_credentials(settings_of(SASL | {
        "CA_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "CA_KAFKA_PASSWORD": SECRET})))
    assert SECRET not in caplog.text


def test_the_apps_changelogs_take_replication_and_min_insync_from_settings(
        tmp_path: Path) -> None:
    from streams.app import create_app

    settings = settings_of({"CA_TOPIC_REPLICATION_FACTOR": "3",
                            "CA_TOPIC_MIN_INSYNC_REPLICAS": "2",
                            "CA_DATA_DIR": str(tmp_path / "state")})
    app = create_app(settings)
    assert app.conf.topic_replication_factor == 3  # what Faust creates its topics with
    for name in ("messages", "contributions"):
        assert app.tables[name].changelog_topic.config == {"min.insync.replicas": "2"}
    # negative control: the defaults fit one broker
    default = create_app(settings_of({"CA_DATA_DIR": str(tmp_path / "state")}))
    assert default.conf.topic_replication_factor == 1
    assert default.tables["messages"].changelog_topic.config == {"min.insync.replicas": "1"}


def test_replication_follows_the_cluster_unless_set() -> None:
    auto = settings_of({})
    assert [auto.replication(b) for b in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]
    # set: the settings win whatever the cluster (min.insync follows a set replication)
    assert settings_of({"CA_TOPIC_REPLICATION_FACTOR": "2"}).replication(5) == (2, 1)
    assert settings_of({"CA_TOPIC_REPLICATION_FACTOR": "3",
                        "CA_TOPIC_MIN_INSYNC_REPLICAS": "3"}).replication(1) == (3, 3)
