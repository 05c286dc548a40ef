"""Settings: each declared once, read from the environment, and the README's table
generated from the declarations (a README that differs fails here)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from streams.settings import (
    SETTINGS,
    ConfigurationError,
    Settings,
    load_settings,
    main,
    markdown_table,
    readme_table,
    settings_of,
    with_table,
)

README = Path(__file__).resolve().parents[3] / "README.md"


def table_problems(readme: str) -> list[str]:
    """Rows of the README's settings table that the declarations do not generate, and
    generated rows the README lacks."""
    have, want = readme_table(readme).splitlines(), markdown_table().splitlines()
    return ([f"README has {row}" for row in have if row not in want]
            + [f"README lacks {row}" for row in want if row not in have]
            + ([] if have == want or set(have) != set(want) else ["rows out of order"]))


def test_the_readme_table_is_the_generated_one() -> None:
    problems = table_problems(README.read_text(encoding="utf-8"))
    assert not problems, ("README.md's settings table is stale; run "
                          "`.venv/bin/python -m streams.settings --update-readme README.md`:\n"
                          + "\n".join(problems))


def test_negative_control_a_readme_with_one_default_changed_fails() -> None:
    readme = README.read_text(encoding="utf-8")
    row = "| `CA_PARTITIONS` | `4` |"
    assert readme.count(row) == 1
    changed = readme.replace(row, "| `CA_PARTITIONS` | `8` |")
    problems = table_problems(changed)
    assert len(problems) == 2 and all("CA_PARTITIONS" in p for p in problems), problems
    assert table_problems(with_table(changed)) == []  # what --update-readme writes
    swapped = readme.replace("`CA_AB_CONTROL`", "`CA_TMP`").replace(
        "`CA_AB_SPLIT`", "`CA_AB_CONTROL`").replace("`CA_TMP`", "`CA_AB_SPLIT`")
    assert table_problems(swapped)  # a doc or default under the wrong variable
    with pytest.raises(ConfigurationError, match="settings table"):
        table_problems(readme.replace("<!-- end of the settings table -->", ""))


def test_the_markdown_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table()


def test_every_field_is_a_setting_but_the_derived_input_topics() -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    declared = [f.name for f in dataclasses.fields(Settings) if "setting" in f.metadata]
    assert [n for n in names if n not in declared] == ["input_topics"]
    assert len({s.env for s in SETTINGS}) == len(SETTINGS) == len(declared)
    for spec in SETTINGS:
        assert spec.env.startswith("CA_") and spec.doc
        assert "|" not in spec.doc and "\n" not in spec.doc  # one table row each


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CA_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_the_defaults_are_what_an_empty_environment_reads() -> None:
    read = load_settings()
    assert dataclasses.replace(read, input_topics={}) == Settings()
    assert read.input_topics["sent"] == "sms.sent"
    defaults = Settings()
    assert (defaults.kafka_bootstrap, defaults.partitions, defaults.chdb_path,
            defaults.window_sizes_s, defaults.sink_in_worker, defaults.ab_split) == (
        "127.0.0.1:9092", 4, Path(".state/chdb"), (60, 3600), True, {})
    assert Settings().ab_split is not defaults.ab_split  # a dict default is not shared


@pytest.mark.usefixtures("clean_env")
def test_values_come_from_the_environment_and_overrides_win(
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CA_DATA_DIR": "/srv/ca", "CA_TOPIC_PREFIX": "t1-", "CA_SINK_CHILD": "off",
           "CA_WINDOWS": "3600, 60,60", "CA_AB_SPLIT": "A=2, B=1", "CA_GC_GEN0": "0"}
    read = settings_of(env)
    assert read.chdb_path == Path("/srv/ca/chdb")  # follows CA_DATA_DIR unless set
    assert read.input_topics["click"] == "t1-sms.click"
    assert (read.sink_child, read.window_sizes_s, read.ab_split, read.gc_gen0_threshold) == (
        False, (60, 3600), {"A": 2.0, "B": 1.0}, 0)
    assert settings_of({**env, "CA_CHDB_PATH": "/elsewhere"}).chdb_path == Path("/elsewhere")
    assert "CA_DATA_DIR" not in os.environ  # settings_of changes nothing here
    monkeypatch.setenv("CA_WEB_PORT", "7001")
    assert load_settings().web_port == 7001
    assert load_settings(web_port=7002, log_level=None).web_port == 7002


def test_ttl_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CA_CLICKHOUSE_TTL_DAYS", raising=False)
    monkeypatch.delenv("CA_CLICKHOUSE_EVENTS_TTL_DAYS", raising=False)
    settings = load_settings()
    assert (settings.clickhouse_ttl_days, settings.clickhouse_events_ttl_days) == (0, 90)
    monkeypatch.setenv("CA_CLICKHOUSE_TTL_DAYS", "400")
    monkeypatch.setenv("CA_CLICKHOUSE_EVENTS_TTL_DAYS", "0")
    settings = load_settings()
    assert (settings.clickhouse_ttl_days, settings.clickhouse_events_ttl_days) == (400, 0)
    monkeypatch.setenv("CA_CLICKHOUSE_TTL_DAYS", "-3")
    with pytest.raises(ConfigurationError, match="TTL_DAYS"):
        load_settings()


# Settings whose parser accepts any text.
_FREE_TEXT = {"CA_KAFKA_BOOTSTRAP", "CA_APP_ID", "CA_TOPIC_PREFIX", "CA_DATA_DIR",
              "CA_CLICKHOUSE_URL", "CA_CLICKHOUSE_DATABASE", "CA_CHDB_PATH", "CA_WEB_HOST",
              "CA_SINK_IN_WORKER", "CA_SINK_CHILD", "CA_LOG_LEVEL", "CA_API_HOST",
              "CA_API_TOKEN", "CA_SQL_HOST", "CA_AB_METRIC", "CA_AB_CONTROL",
              "CA_CLICKHOUSE_USER", "CA_CLICKHOUSE_PASSWORD", "CA_CLICKHOUSE_PASSWORD_FILE",
              "CA_KAFKA_USERNAME", "CA_KAFKA_PASSWORD", "CA_KAFKA_PASSWORD_FILE",
              "CA_KAFKA_SSL_CAFILE", "CA_KAFKA_SSL_CERTFILE", "CA_KAFKA_SSL_KEYFILE",
              "CA_SCHEMA_REGISTRY_USER", "CA_SCHEMA_REGISTRY_PASSWORD",
              "CA_SCHEMA_REGISTRY_PASSWORD_FILE", "CA_SCHEMA_REGISTRY_CAFILE",
              "CA_PRICES_FILE"}  # a path, checked when read (tests/unit/codecs/test_prices.py)


@pytest.mark.parametrize("env", sorted({s.env for s in SETTINGS} - _FREE_TEXT))
def test_a_bad_value_is_a_configuration_error_naming_its_variable(env: str) -> None:
    with pytest.raises(ConfigurationError, match=env):
        settings_of({env: "nope"})


@pytest.mark.parametrize(("env", "value", "message"), [
    ("CA_PARTITIONS", "0", "CA_PARTITIONS must be >= 1, got '0'"),
    ("CA_STANDBY_REPLICAS", "-1", "CA_STANDBY_REPLICAS must be >= 0, got '-1'"),
    ("CA_EMIT_INTERVAL", "0", "CA_EMIT_INTERVAL must be > 0, got '0'"),
    ("CA_BULK_RESTORE_SECONDS", "-1", "CA_BULK_RESTORE_SECONDS must be >= 0, got '-1'"),
    ("CA_API_PORT", "x", "CA_API_PORT must be an integer, got 'x'"),
    ("CA_SESSION_TIMEOUT", "x", "CA_SESSION_TIMEOUT must be a number, got 'x'"),
    ("CA_CLICKHOUSE_TTL_DAYS", "1.5", "CA_CLICKHOUSE_TTL_DAYS must be whole days, got '1.5'"),
    ("CA_AB_ALPHA", "1", "CA_AB_ALPHA must be within (0, 1), got 1"),
    ("CA_WINDOWS", "0", "CA_WINDOWS needs at least one positive size; got '0'"),
    ("CA_WINDOWS", "1m", "CA_WINDOWS must be seconds, e.g. 60,3600; got '1m'"),
    ("CA_AB_SPLIT", "A=50,B", "CA_AB_SPLIT must look like A=50,B=50 (positive weights); "
                              "got 'A=50,B'"),
])
def test_the_messages_of_bad_values(env: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_of({env: value})
    assert str(caught.value) == message


def test_the_registry_login_from_a_password_or_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "registry.password"
    secret.write_text("from-file\n", encoding="utf-8")
    assert settings_of({"CA_SCHEMA_REGISTRY_USER": "key", "CA_SCHEMA_REGISTRY_PASSWORD_FILE":
                        str(secret)}).schema_registry_login() == ("key", "from-file")
    assert settings_of({"CA_SCHEMA_REGISTRY_USER": "key", "CA_SCHEMA_REGISTRY_PASSWORD":
                        "plain"}).schema_registry_login() == ("key", "plain")
    assert settings_of({}).schema_registry_login() == ("", "")  # control: none
    with pytest.raises(ConfigurationError, match="not both"):
        settings_of({"CA_SCHEMA_REGISTRY_PASSWORD": "plain",
                     "CA_SCHEMA_REGISTRY_PASSWORD_FILE": str(secret)})
    secret.write_text("", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="CA_SCHEMA_REGISTRY_PASSWORD_FILE: .* is empty"):
        settings_of({"CA_SCHEMA_REGISTRY_PASSWORD_FILE": str(secret)}).schema_registry_login()
