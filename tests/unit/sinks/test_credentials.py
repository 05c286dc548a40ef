"""ClickHouse credentials (issue 19 item 2): read from their own settings, the password
file included, and never shown: not in ``repr``, error messages, tracebacks or logs.

``leaks`` is the checker: every captured log record formatted as a handler would
(message, arguments, traceback with its causes); its negative control is a formatter
that leaks on purpose.
"""

from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from sinks import Credentials, open_reader, open_store
from sinks.errors import SinkError
from sinks.retention import Retention
from sinks.server_store import ClickHouseServerStore
from streams.settings import ConfigurationError, Settings, settings_of

SECRET = "s3cr3t-Pa55word"  # noqa: S105 - a test password


def leaks(records: list[logging.LogRecord], secret: str,
          formatter: logging.Formatter | None = None) -> list[str]:
    """The formatted records (tracebacks included) that contain ``secret``."""
    fmt = formatter or logging.Formatter("%(levelname)s %(name)s %(message)s")
    return [text for r in records if secret in (text := fmt.format(r))]


def test_password_from_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of({"CA_CLICKHOUSE_USER": "ca", "CA_CLICKHOUSE_PASSWORD": SECRET})
    assert Credentials(*settings.clickhouse_login()) == Credentials("ca", SECRET)


def test_password_from_a_file_one_trailing_newline_dropped(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")
    settings = settings_of({"CA_CLICKHOUSE_PASSWORD_FILE": str(path),
                            "CA_CLICKHOUSE_PASSWORD": ""})
    assert Credentials(*settings.clickhouse_login()) == Credentials("", SECRET)
    path.write_text(SECRET + " \r\n")  # only the newline goes: a space may be the password's
    assert Credentials(*settings.clickhouse_login()).password == SECRET + " "


def test_password_and_file_together_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(SECRET)
    with pytest.raises(ConfigurationError, match="not both") as caught:
        settings_of({"CA_CLICKHOUSE_PASSWORD_FILE": str(path), "CA_CLICKHOUSE_PASSWORD": SECRET})
    assert SECRET not in str(caught.value)


def test_bad_password_file_names_the_file_only(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    settings = settings_of({"CA_CLICKHOUSE_PASSWORD_FILE": str(missing),
                            "CA_CLICKHOUSE_PASSWORD": ""})
    with pytest.raises(ConfigurationError, match=f"cannot read {missing}"):
        Credentials(*settings.clickhouse_login())
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        settings_of({"CA_CLICKHOUSE_PASSWORD_FILE": str(empty),
                     "CA_CLICKHOUSE_PASSWORD": ""}).clickhouse_login()


def test_sink_command_exits_2_on_a_bad_password_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from streams import cli

    monkeypatch.setenv("CA_CLICKHOUSE_PASSWORD_FILE", str(tmp_path / "nope"))
    monkeypatch.delenv("CA_CLICKHOUSE_PASSWORD", raising=False)
    assert cli.main(["sink"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CA_CLICKHOUSE_PASSWORD_FILE: cannot read")
    assert err.count("\n") == 1


def test_repr_hides_the_password_and_the_api_token() -> None:
    settings = settings_of({"CA_CLICKHOUSE_PASSWORD": SECRET, "CA_API_TOKEN": "tok-" + SECRET})
    credentials = Credentials(*settings.clickhouse_login())
    for text in (repr(settings), str(settings), repr(credentials), str(credentials)):
        assert SECRET not in text
    assert "password=<set>" in repr(credentials)
    # negative control: the dataclass's own repr would show both
    assert SECRET in repr(vars(settings))


def test_credentials_go_to_clickhouse_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def get_client(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise OperationalError(f"refused for user default with password {SECRET}")

    monkeypatch.setattr("clickhouse_connect.get_client", get_client)
    store = open_reader("http://clickhouse:8123", "db", sql_host="127.0.0.1", sql_port=1,
                        credentials=Credentials("ca", SECRET))
    with pytest.raises(SinkError) as caught:
        store.as_of()
    assert (seen["username"], seen["password"]) == ("ca", SECRET)
    assert seen["dsn"] == "http://clickhouse:8123"
    # the client's message named the password: scrubbed, and not chained as a cause
    assert SECRET not in str(caught.value) and "***" in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))
    assert caught.value.retry_after is not None  # still transient


def test_no_credentials_send_none(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def get_client(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise OperationalError("refused")

    monkeypatch.setattr("clickhouse_connect.get_client", get_client)
    store = open_store("http://clickhouse:8123", "db", Path("unused"), retention=Retention())
    with pytest.raises(SinkError):
        store.as_of()
    assert "username" not in seen and "password" not in seen


def test_unreachable_server_error_has_no_password() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://ca:{SECRET}@127.0.0.1:{port}"  # even a URL that carries one
    store = ClickHouseServerStore(url, "db", connect_timeout=2,
                                  credentials=Credentials("ca", SECRET))
    with pytest.raises(SinkError) as caught:
        store.count_message_log("c")
    store.close()
    assert SECRET not in str(caught.value)
    assert f"http://127.0.0.1:{port}" in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def failing_store_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
                       ) -> tuple[list[logging.LogRecord], Settings]:
    """What the sinks and the API log when the store fails with the password in the
    client's message: a retried call's warning and a restarted sink's traceback."""
    def get_client(**kwargs: Any) -> Any:
        raise OperationalError(f"HTTPDriver url http://default:{SECRET}@host:8123 refused")

    monkeypatch.setattr("clickhouse_connect.get_client", get_client)
    settings = settings_of({"CA_CLICKHOUSE_URL": "http://host:8123",
                            "CA_CLICKHOUSE_PASSWORD": SECRET})
    store = open_store(settings.clickhouse_url, "db", Path("unused"), retention=Retention(),
                       credentials=Credentials(*settings.clickhouse_login()))
    log = logging.getLogger("streams.sink_runtime.runner")
    with caplog.at_level(logging.INFO):
        try:
            store.migrate()
        except SinkError as exc:
            log.warning("%s: ClickHouse call failed (%s); retrying in %.1fs", "sink", exc, 1.0)
            log.exception("%s stopped; restarting it in %.0f s", "sink", 5.0)
        log.info("settings %r, credentials %s", settings,
                 Credentials(*settings.clickhouse_login()))
    return caplog.records, settings


def test_logs_never_carry_the_password(monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    records, _ = failing_store_logs(monkeypatch, caplog)
    assert len(records) == 3 and records[1].exc_info is not None
    assert leaks(records, SECRET) == []


def test_negative_control_a_leaking_formatter_is_caught(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    records, settings = failing_store_logs(monkeypatch, caplog)

    class Leaky(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return super().format(record) + f" env={vars(settings)}"

    assert len(leaks(records, SECRET, Leaky("%(message)s"))) == 3
