"""Settings: environment variables, each declared once.

Every setting is one ``setting(...)`` field of ``Settings``: its variable, the text an
unset variable reads as, the parser that turns text into the typed value (a bad value
is a ``ConfigurationError`` naming the variable) and a one-line doc. The field's
default is that text parsed; ``load_settings`` reads the environment through the same
parsers; the README's Settings table is generated from the fields
(``python -m streams.settings --markdown`` prints it, ``--update-readme README.md``
rewrites it) and ``tests/unit/root/test_settings.py`` fails when the README differs.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

from projections.errors import CampaignAnalyticsError

T = TypeVar("T")

# Names of the input topics (domain.md section 1), before CA_TOPIC_PREFIX.
INPUT_TOPICS: dict[str, str] = {
    "sent": "sms.sent",
    "delivery": "sms.delivery",
    "reply": "sms.reply",
    "click": "sms.click",
}


class ConfigurationError(CampaignAnalyticsError):
    """A setting (or a command's argument) has a value the system cannot work with."""


def unsafe_switch_on(name: str) -> bool:
    """Whether a tests-only ``CA_UNSAFE_*`` switch is on (``1``, ``true`` or ``yes``)."""
    return os.environ.get(name, "") in ("1", "true", "yes")


# --- parsers: (variable, text) -> value, or a ConfigurationError naming the variable ---


def _text(name: str, raw: str) -> str:
    return raw


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _optional_path(name: str, raw: str) -> Path | None:
    return Path(raw) if raw else None


def _switch(name: str, raw: str) -> bool:
    return raw not in ("0", "false", "no", "off")


def _float(name: str, raw: str, least: float, strict: bool) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc
    if value < least or (strict and value == least):
        raise ConfigurationError(f"{name} must be {'>' if strict else '>='} {least:g}, "
                                 f"got {raw!r}")
    return value


def _positive_float(name: str, raw: str) -> float:
    return _float(name, raw, 0.0, strict=True)


def _non_negative_float(name: str, raw: str) -> float:
    return _float(name, raw, 0.0, strict=False)


def _int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _positive_int(name: str, raw: str) -> int:
    return _int(name, raw, minimum=1)


def _non_negative_int(name: str, raw: str) -> int:
    return _int(name, raw, minimum=0)


def _optional_positive_int(name: str, raw: str) -> int | None:
    return _positive_int(name, raw) if raw.strip() else None


def _days(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be whole days, got {raw!r}") from exc
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0 (0 = keep forever), got {raw!r}")
    return value


def _window_sizes(name: str, raw: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be seconds, e.g. 60,3600; got {raw!r}") from exc
    if not sizes or sizes[0] <= 0:
        raise ConfigurationError(f"{name} needs at least one positive size; got {raw!r}")
    return sizes


def _fraction(name: str, raw: str) -> float:
    value = _positive_float(name, raw)
    if value >= 1:
        raise ConfigurationError(f"{name} must be within (0, 1), got {value:g}")
    return value


def _split(name: str, raw: str) -> dict[str, float]:
    """``A=50,B=50`` -> ``{"A": 50.0, "B": 50.0}`` (weights, any positive scale)."""
    split: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        variant, sep, weight = part.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not variant.strip() or value <= 0:
            raise ConfigurationError(
                f"{name} must look like A=50,B=50 (positive weights); got {raw!r}")
        split[variant.strip()] = value
    return split


def _table_store(name: str, raw: str) -> str:
    if raw.lower() not in ("memory", "rocksdb"):
        raise ConfigurationError(f"{name} must be memory or rocksdb; got {raw!r}")
    return raw.lower()


def _one_of(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw.upper() not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return raw.upper()


def _ab_clicks(name: str, raw: str) -> str:
    if raw.strip().lower() not in ("human", "raw"):
        raise ConfigurationError(f"{name} must be human or raw; got {raw!r}")
    return raw.strip().lower()


def _kafka_protocol(name: str, raw: str) -> str:
    return _one_of(name, raw, ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))


def _sasl_mechanism(name: str, raw: str) -> str:
    return _one_of(name, raw, ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"))


def _optional_seconds(name: str, raw: str) -> float | None:
    return _positive_float(name, raw) if raw.strip() else None


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(name: str, raw: str) -> float:
    """Seconds from ``72h``, ``30m``, ``1.5d``, ``500ms``, ``90s`` or bare seconds (``90``);
    more than zero."""
    text = raw.strip().lower()
    number, scale = text, 1.0
    for unit in ("ms", "s", "m", "h", "d"):  # "ms" before "s" and "m"
        if text.endswith(unit):
            number, scale = text[:-len(unit)], _DURATION_UNITS[unit]
            break
    try:
        value = float(number) * scale
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name} must be a duration above zero such as 72h, 30m, "
                                 f"90s, 500ms or 1.5d, got {raw!r}")
    return value


def _time_zone(name: str, raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"{name} must be an IANA time zone (e.g. Europe/Paris), "
                                 f"got {raw!r}") from None
    return raw


def _http_url(name: str, raw: str) -> str:
    """Empty (off), or an http(s) URL."""
    if raw and not raw.startswith(("https://", "http://")):
        raise ConfigurationError(f"{name} must be an http(s) URL or empty; got {raw!r}")
    return raw


def _password(password: str, path: Path | None, name: str) -> str:
    """``password``, or the text of the file at ``path`` (setting ``name``) less one
    trailing newline; a missing, unreadable or empty file is a ``ConfigurationError``
    naming the file only."""
    if path is None:
        return password
    try:
        password = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"{name}: cannot read {path}: {reason}") from None
    password = password.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigurationError(f"{name}: {path} is empty")
    return password


def _url_template(name: str, raw: str) -> str:
    """Empty (off), or an http(s) URL with ``{contact_id}`` and no other placeholder."""
    if not raw:
        return raw
    from string import Formatter

    try:
        fields = {f for _, f, _, _ in Formatter().parse(raw) if f is not None}
    except ValueError:
        fields = set()
    if fields != {"contact_id"} or not raw.startswith(("https://", "http://")):
        raise ConfigurationError(f"{name} must be an http(s) URL with {{contact_id}} and no "
                                 f"other placeholder, or empty; got {raw!r}")
    return raw


def _quiet_hours(name: str, raw: str) -> str:
    """``HH:MM-HH:MM`` or ``off``/empty, checked here; ``QuietHours.parse`` reads it."""
    from datetime import time

    start, sep, end = raw.partition("-")
    if raw.strip().lower() in ("", "off"):
        return raw
    try:
        if sep and time.fromisoformat(start.strip()) != time.fromisoformat(end.strip()):
            return raw
    except ValueError:
        pass
    raise ConfigurationError(f"{name} must be HH:MM-HH:MM (two different times) or off, "
                             f"got {raw!r}")


def _under_data_dir(texts: Mapping[str, str]) -> str:
    return str(Path(texts["CA_DATA_DIR"]) / "chdb")


# --- the declaration ----------------------------------------------------------------


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: its name, default text, parser and one-line doc."""

    env: str
    default: str  # the text an unset variable reads as (and the README shows)
    parse: Callable[[str, str], T]
    doc: str  # Markdown, one line: it is a row of the README's table
    # A default computed from the texts of the settings declared before it; ``default``
    # then only describes it (CA_CHDB_PATH follows CA_DATA_DIR).
    derive: Callable[[Mapping[str, str]], str] | None = None

    def text(self, env: Mapping[str, str], earlier: Mapping[str, str]) -> str:
        """The variable's text in ``env``, else its default (``earlier``: the texts
        of the settings declared before it)."""
        raw = env.get(self.env)
        if raw is not None:
            return raw
        return self.derive(earlier) if self.derive is not None else self.default


_SETTING = "setting"
_DEFAULT_TEXTS: dict[str, str] = {}  # variable -> its default text, in declaration order


def setting(env: str, default: str, parse: Callable[[str, str], T], doc: str, *,
            derive: Callable[[Mapping[str, str]], str] | None = None,
            secret: bool = False) -> T:
    """A ``Settings`` field read from ``env``; its default is the default text parsed.
    A ``secret`` one (a password, a token) is left out of ``repr(settings)``."""
    spec = Setting(env, default, parse, doc, derive)
    text = _DEFAULT_TEXTS[env] = spec.text({}, _DEFAULT_TEXTS)
    value = parse(env, text)
    if isinstance(value, dict | list | set):
        return field(default_factory=lambda: copy.copy(value), metadata={_SETTING: spec},
                     repr=not secret)
    return field(default=value, metadata={_SETTING: spec}, repr=not secret)


@dataclass(frozen=True)
class Settings:
    """Every setting, typed; ``load_settings`` reads them from the environment."""

    kafka_bootstrap: str = setting(
        "CA_KAFKA_BOOTSTRAP", "127.0.0.1:9092", _text,
        "Kafka bootstrap servers (comma separated)")
    kafka_security_protocol: str = setting(
        "CA_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", _kafka_protocol,
        "how every Kafka client of the project connects: `PLAINTEXT`, `SSL`, "
        "`SASL_PLAINTEXT` or `SASL_SSL` (docs/security.md)")
    kafka_sasl_mechanism: str = setting(
        "CA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", _sasl_mechanism,
        "SASL mechanism with `SASL_*`: `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`")
    kafka_username: str = setting(
        "CA_KAFKA_USERNAME", "", _text,
        "SASL user (the Kafka principal `User:<name>` the ACLs name)")
    kafka_password: str = setting(
        "CA_KAFKA_PASSWORD", "", _text,
        "that user's password; never logged. Prefer `CA_KAFKA_PASSWORD_FILE`; setting "
        "both is an error", secret=True)
    kafka_password_file: Path | None = setting(
        "CA_KAFKA_PASSWORD_FILE", "", _optional_path,
        "a file holding that password (its first line)")
    kafka_ssl_cafile: Path | None = setting(
        "CA_KAFKA_SSL_CAFILE", "", _optional_path,
        "with `SSL`/`SASL_SSL`: PEM file of the CA(s) the brokers' certificates are checked "
        "against (empty: the system's)")
    kafka_ssl_certfile: Path | None = setting(
        "CA_KAFKA_SSL_CERTFILE", "", _optional_path,
        "with `SSL`/`SASL_SSL`: this client's certificate (PEM), when the brokers ask for one")
    kafka_ssl_keyfile: Path | None = setting(
        "CA_KAFKA_SSL_KEYFILE", "", _optional_path,
        "the private key (PEM) of `CA_KAFKA_SSL_CERTFILE`")
    topic_replication_factor: int | None = setting(
        "CA_TOPIC_REPLICATION_FACTOR", "", _optional_positive_int,
        "replicas of every topic this system creates (inputs, internal, changelogs, "
        "outputs, dead letters, commands); empty: 3, or as many brokers as answer when "
        "fewer (1 on one broker). An existing topic with fewer is refused at start")
    topic_min_insync_replicas: int | None = setting(
        "CA_TOPIC_MIN_INSYNC_REPLICAS", "", _optional_positive_int,
        "`min.insync.replicas` of those topics (producers use acks=all); empty: the "
        "replication less one, at least 1 (2 with 3 replicas). An existing topic with "
        "fewer, or more than its replicas, is refused at start")
    app_id: str = setting(
        "CA_APP_ID", "campaign-analytics", _text,
        "Faust app id: the consumer group and the prefix of internal topics")
    topic_prefix: str = setting(
        "CA_TOPIC_PREFIX", "", _text,
        "prefix of every topic name (tests use a unique one)")
    partitions: int = setting(
        "CA_PARTITIONS", "4", _positive_int,
        "partitions of the topics this system creates")
    data_dir: Path = setting(
        "CA_DATA_DIR", ".state", _path,
        "local state: the workers' directories and the embedded ClickHouse files")
    schema_registry_url: str = setting(
        "CA_SCHEMA_REGISTRY_URL", "", _http_url,
        "a schema registry's Confluent-compatible API (`make registry-up`: "
        "`http://127.0.0.1:8081/apis/ccompat/v7`): the metric, window and command topics "
        "are then written in the Confluent wire format, their schemas registered there "
        "(docs/consumers.md); empty: Avro single-object encoding, no registry")
    schema_registry_user: str = setting(
        "CA_SCHEMA_REGISTRY_USER", "", _text,
        "user for the registry's HTTP basic authentication (empty: none), e.g. an API key")
    schema_registry_password: str = setting(
        "CA_SCHEMA_REGISTRY_PASSWORD", "", _text,
        "that user's password; never logged. Prefer `CA_SCHEMA_REGISTRY_PASSWORD_FILE`; "
        "setting both is an error", secret=True)
    schema_registry_password_file: Path | None = setting(
        "CA_SCHEMA_REGISTRY_PASSWORD_FILE", "", _optional_path,
        "a file holding that password (one trailing newline ignored)")
    schema_registry_cafile: Path | None = setting(
        "CA_SCHEMA_REGISTRY_CAFILE", "", _optional_path,
        "with an `https` registry: PEM file of the CA(s) its certificate is checked "
        "against (empty: the system's)")
    clickhouse_url: str = setting(
        "CA_CLICKHOUSE_URL", "", _text,
        "a ClickHouse server (`http://host:8123`); empty = the embedded chdb engine in "
        "`CA_CHDB_PATH`")
    clickhouse_database: str = setting(
        "CA_CLICKHOUSE_DATABASE", "campaign_analytics", _text,
        "ClickHouse database")
    clickhouse_user: str = setting(
        "CA_CLICKHOUSE_USER", "", _text,
        "user the sinks, the API and the CLI give the ClickHouse server (empty: `default`) "
        "and the embedded engine's SQL endpoint asks its readers for")
    clickhouse_password: str = setting(
        "CA_CLICKHOUSE_PASSWORD", "", _text,
        "that user's password (empty: none; the SQL endpoint then asks for none); never "
        "logged. Prefer `CA_CLICKHOUSE_PASSWORD_FILE`; setting both is an error",
        secret=True)
    clickhouse_password_file: Path | None = setting(
        "CA_CLICKHOUSE_PASSWORD_FILE", "", _optional_path,
        "a file holding that password (one trailing newline ignored), e.g. a Docker secret")
    chdb_path: Path = setting(
        "CA_CHDB_PATH", "$CA_DATA_DIR/chdb", _path,
        "directory of the embedded engine's files", derive=_under_data_dir)
    clickhouse_ttl_days: int = setting(
        "CA_CLICKHOUSE_TTL_DAYS", "0", _days,
        "days `message_log`, `replies` and `link_clicks` rows are kept after their event "
        "time (0 = forever)")
    clickhouse_events_ttl_days: int = setting(
        "CA_CLICKHOUSE_EVENTS_TTL_DAYS", "90", _days,
        "days the raw audit `events` are kept (0 = forever)")
    web_host: str = setting(
        "CA_WEB_HOST", "127.0.0.1", _text,
        "address the worker's web server (`/metrics`) binds")
    web_port: int = setting(
        "CA_WEB_PORT", "6066", _positive_int,
        "port of the worker's web server and `/metrics` (`--web-port` wins)")
    emit_interval: float = setting(
        "CA_EMIT_INTERVAL", "1.0", _positive_float,
        "at most one metrics snapshot per campaign (and per window) per this many seconds; "
        "a changed campaign gets its next one as soon as this long has passed since its last")
    sink_in_worker: bool = setting(
        "CA_SINK_IN_WORKER", "1", _switch,
        "the worker runs the ClickHouse sinks (`0`, `false`, `no` or `off`: it does not; "
        "run `campaign-analytics sink`)")
    sink_child: bool = setting(
        "CA_SINK_CHILD", "1", _switch,
        "with `CA_SINK_IN_WORKER=1`: the sinks run in a child process the worker starts, "
        "restarts and stops, whose metrics its `/metrics` includes (0: in the worker's "
        "event loop; `streams/sink_runtime/process.py`)")
    sink_batch_rows: int = setting(
        "CA_SINK_BATCH_ROWS", "5000", _positive_int,
        "rows per ClickHouse insert (at most)")
    sink_batch_seconds: float = setting(
        "CA_SINK_BATCH_SECONDS", "1.0", _positive_float,
        "longest a row waits before its batch is inserted (seconds)")
    batch_max: int = setting(
        "CA_BATCH_MAX", "10000", _positive_int,
        "most records a stage takes into one batch; a batch writes each touched message "
        "once, so larger batches coalesce more under load, but a full one holds the event "
        "loop for ~3 s, and snapshots wait that long while a backlog drains")
    batch_seconds: float = setting(
        "CA_BATCH_SECONDS", "0.02", _positive_float,
        "longest a stage waits to fill a batch (seconds)")
    producer_linger_ms: int = setting(
        "CA_PRODUCER_LINGER_MS", "5", _positive_int,
        "longest the producer waits to fill a request (ms)")
    fetch_max_wait_ms: int = setting(
        "CA_FETCH_MAX_WAIT_MS", "100", _positive_int,
        "longest the broker holds a fetch that finds nothing new (ms); Faust's 1,500 made "
        "a stage wait for records already in the log behind a fetch of idle partitions "
        "(fix 6 in `streams/engine/patches.py`)")
    producer_request_timeout: float = setting(
        "CA_PRODUCER_REQUEST_TIMEOUT", "60", _positive_float,
        "seconds a produced record may take to be delivered; one that is not stops the "
        "worker at once (exit 70), so no commit covers its input "
        "(`streams/engine/delivery_guard.py`)")
    table_store: str = setting(
        "CA_TABLE_STORE", "rocksdb", _table_store,
        "where the worker keeps its tables' values: `rocksdb` (files under the worker's "
        "directory, wiped and restored from the changelog at every start; memory stays "
        "flat as messages accumulate) or `memory` (a dict, as before: memory grows "
        "with every message; `streams/engine/disk_store.py`)")
    state_cache_size: int = setting(
        "CA_STATE_CACHE", "0", _non_negative_int,
        "decoded message states kept beside the table (memory against CPU; ~1.4 KB "
        "each); 0: 200,000 with `CA_TABLE_STORE=memory`, 20,000 with `rocksdb` (the "
        "worker's memory then stays flat; a state not cached is read back and decoded)")
    session_timeout: float = setting(
        "CA_SESSION_TIMEOUT", "10", _positive_float,
        "seconds before the group gives a dead worker's partitions away")
    bulk_restore_seconds: float = setting(
        "CA_BULK_RESTORE_SECONDS", "45", _non_negative_float,
        "on (re)assignment, the tables' changelogs are read in bulk (newest value per key) "
        "for up to this many seconds before Faust's own one-by-one restore reads the rest "
        "(0: Faust's restore only; `streams/engine/restore.py`)")
    standby_replicas: int = setting(
        "CA_STANDBY_REPLICAS", "0", _non_negative_int,
        "workers keeping a standby copy of each table partition; standbys cost Faust's "
        "one-by-one changelog reading all the time, and a takeover restores in bulk anyway")
    gc_gen0_threshold: int = setting(
        "CA_GC_GEN0", "200000", _non_negative_int,
        "allocations between two young garbage collections of the worker (0: CPython's "
        "700); the start-up heap is frozen and collections run right after a publish "
        "(`streams/engine/gc_tuning.py`)")
    window_sizes_s: tuple[int, ...] = setting(
        "CA_WINDOWS", "60,3600", _window_sizes,
        "sizes (seconds) of the event-time tumbling windows")
    window_retention_days: float = setting(
        "CA_WINDOW_RETENTION_DAYS", "30", _positive_float,
        "windows older than this many days are no longer kept or published: each gets a "
        "tombstone on the windows topic and the API stops showing it (fractional days "
        "allowed)")
    log_level: str = setting(
        "CA_LOG_LEVEL", "info", _text,
        "log level of the worker")
    api_host: str = setting(
        "CA_API_HOST", "127.0.0.1", _text,
        "address `campaign-analytics api` binds")
    api_port: int = setting(
        "CA_API_PORT", "8080", _positive_int,
        "port of `campaign-analytics api` (`--port` wins)")
    api_token: str = setting(
        "CA_API_TOKEN", "", _text,
        "when set, every `/api` route needs `Authorization: Bearer <token>`", secret=True)
    page_cache_seconds: float = setting(
        "CA_PAGE_CACHE_SECONDS", "1", _non_negative_float,
        "the API answers message-log pages from a read ahead of the store at most this "
        "old (0: every page is its own store read; `streams/api/log_reads.py`)")
    page_read_rows: int = setting(
        "CA_PAGE_READ_ROWS", "1000", _positive_int,
        "rows of the message log the API reads at once when a page misses; the next "
        "pages come from that read (a page of 100 costs the store about as much)")
    sql_host: str = setting(
        "CA_SQL_HOST", "127.0.0.1", _text,
        "address of the embedded engine's read-only SQL endpoint, served by the process "
        "running the sinks and read by `export`, the API and `sql` (unused with "
        "`CA_CLICKHOUSE_URL`)")
    sql_port: int = setting(
        "CA_SQL_PORT", "8124", _positive_int,
        "port of that SQL endpoint (ClickHouse's HTTP interface)")
    ab_alpha: float = setting(
        "CA_AB_ALPHA", "0.05", _fraction,
        "significance level of the A/B verdict (always-valid test)")
    ab_level: float = setting(
        "CA_AB_LEVEL", "0.95", _fraction,
        "confidence level of the A/B intervals")
    ab_metric: str = setting(
        "CA_AB_METRIC", "click_rate", _text,
        "the metric the A/B verdict is on (`delivery_rate`, `unique_reply_rate` or "
        "`click_rate`, whose clicks `CA_AB_CLICKS` picks)")
    ab_control: str = setting(
        "CA_AB_CONTROL", "", _text,
        "the control variant (empty: the first variant by name)")
    ab_split: dict[str, float] = setting(
        "CA_AB_SPLIT", "", _split,
        "planned split for the sample-ratio check, e.g. `A=50,B=50` (empty: even)")
    ab_clicks: str = setting(
        "CA_AB_CLICKS", "human", _ab_clicks,
        "which clicks drive the A/B verdict when it is on clicks: `human` "
        "(`human_click_rate`: neither bots nor link previews, domain.md 3b) or `raw` "
        "(`click_rate`: every click); the statistics show both")
    preview_window_seconds: float = setting(
        "CA_PREVIEW_WINDOW_SECONDS", "2", _non_negative_float,
        "a click less than this many seconds, either side, from the receipt that made its "
        "message delivered is a link preview, not a person (domain.md 3b; 0: judged by "
        "user agent alone)")
    retry_max_attempts: int = setting(
        "CA_RETRY_MAX_ATTEMPTS", "1", _positive_int,
        "retries at most per original message, over its whole `retry_of` chain "
        "(`campaign-analytics retry`, `POST .../retries`)")
    retry_max_age: float | None = setting(
        "CA_RETRY_MAX_AGE", "", _optional_seconds,
        "seconds after its send a failed message may still be retried (empty: no limit)")
    receipt_timeout: float = setting(
        "CA_RECEIPT_TIMEOUT", "72h", _duration,
        "an accepted message with no terminal receipt this long after its send counts as "
        "`unknown`, no longer `pending` (`72h`, `30m`, `90s`, `500ms`, `1.5d` or seconds); a "
        "late receipt settles it")
    quiet_hours: str = setting(
        "CA_QUIET_HOURS", "21:00-09:00", _quiet_hours,
        "local hours no retry may be sent in, `HH:MM-HH:MM` (may wrap midnight), or `off`")
    default_time_zone: str = setting(
        "CA_DEFAULT_TIME_ZONE", "UTC", _time_zone,
        "the zone of a contact whose number gives no single one (quiet hours of retries)")
    conversation_url_template: str = setting(
        "CA_CONVERSATION_URL_TEMPLATE", "", _url_template,
        "link to a contact's conversation in the messaging platform, e.g. "
        "`https://app.example/conversations/{contact_id}` (the id URL-encoded); the API's "
        "replies and per-contact clicks carry it as `conversation_url` (empty: no links)")
    prices_file: Path | None = setting(
        "CA_PRICES_FILE", "", _optional_path,
        "CSV of the price of a message segment per country, with a default price and one "
        "currency (docs/prices.md); the summaries' `cost`, `cost_per_delivered` and "
        "`cost_per_unique_human_click` (empty: no prices, those figures are null)")
    # Not a variable: the input topics under ``topic_prefix`` (``load_settings``).
    input_topics: dict[str, str] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def replication(self, brokers: int) -> tuple[int, int]:
        """(replicas, min.insync.replicas) of the topics created on a cluster of
        ``brokers``: the settings, else min(3, brokers) and one less, at least 1."""
        replicas = self.topic_replication_factor or min(3, max(1, brokers))
        return replicas, self.topic_min_insync_replicas or max(1, replicas - 1)

    def clickhouse_login(self) -> tuple[str, str]:
        """The ClickHouse user and password (``sinks.Credentials(*login)``); the password
        file is read now (a missing, unreadable or empty file is a ``ConfigurationError``
        naming the file only)."""
        return self.clickhouse_user, _password(
            self.clickhouse_password, self.clickhouse_password_file,
            "CA_CLICKHOUSE_PASSWORD_FILE")

    def schema_registry_login(self) -> tuple[str, str]:
        """The registry's basic-authentication user and password, read as
        ``clickhouse_login`` reads its own."""
        return self.schema_registry_user, _password(
            self.schema_registry_password, self.schema_registry_password_file,
            "CA_SCHEMA_REGISTRY_PASSWORD_FILE")

    @property
    def worker_dir(self) -> Path:
        """One worker's own directory (Faust's datadir, its lock and group seat)."""
        return self.data_dir / f"worker-{self.web_port}"

    @property
    def message_events_topic(self) -> str:
        """Internal: input events re-keyed by message_id (Faust prefixes nothing here)."""
        return f"{self.app_id}-message-events"

    @property
    def message_updates_topic(self) -> str:
        """Internal: message versions keyed by campaign_id."""
        return f"{self.app_id}-message-updates"

    @property
    def internal_topics(self) -> tuple[str, str]:
        return (self.message_events_topic, self.message_updates_topic)

    @property
    def changelog_topics(self) -> tuple[str, str]:
        """Faust's changelogs of the worker's tables (``messages`` and ``contributions``,
        streams/app.py): ``<app_id>-<table>-changelog``."""
        return (f"{self.app_id}-messages-changelog", f"{self.app_id}-contributions-changelog")

    @property
    def dead_letter_topic(self) -> str:
        return self.topic("campaign-analytics.dead-letter")

    @property
    def window_metrics_topic(self) -> str:
        return self.topic("campaign-analytics.campaign-windows")

    @property
    def campaign_metrics_topic(self) -> str:
        return self.topic("campaign-analytics.campaign-metrics")

    @property
    def retry_requests_topic(self) -> str:
        """Commands to the sending service: failed messages to send again, keyed by
        campaign (docs/consumers.md)."""
        return self.topic("campaign-analytics.retry-requests")

    @property
    def winner_decisions_topic(self) -> str:
        """Commands to the sending service: the A/B variant to send to the rest of the
        audience, one per campaign, keyed by campaign (docs/consumers.md)."""
        return self.topic("campaign-analytics.winner-decisions")


# Every setting, in declaration order (the README's table is in this order).
SETTINGS: tuple[Setting[Any], ...] = tuple(
    f.metadata[_SETTING] for f in fields(Settings) if _SETTING in f.metadata)


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings a process started with ``env`` on top of this one's would read
    (benchmarks and tests start such processes)."""
    return _read({**os.environ, **env}, {})


def load_settings(**overrides: object) -> Settings:
    """Read the environment; keyword overrides (e.g. from CLI flags) win."""
    return _read(os.environ, overrides)


def _read(env: Mapping[str, str], overrides: Mapping[str, object]) -> Settings:
    texts: dict[str, str] = {}
    values: dict[str, Any] = {}
    for f in fields(Settings):
        spec: Setting[Any] | None = f.metadata.get(_SETTING)
        if spec is not None:
            text = texts[spec.env] = spec.text(env, texts)
            values[f.name] = spec.parse(spec.env, text)
    if values["clickhouse_password"] and values["clickhouse_password_file"] is not None:
        raise ConfigurationError("set CA_CLICKHOUSE_PASSWORD or CA_CLICKHOUSE_PASSWORD_FILE, "
                                 "not both")
    if values["kafka_password"] and values["kafka_password_file"] is not None:
        raise ConfigurationError("set CA_KAFKA_PASSWORD or CA_KAFKA_PASSWORD_FILE, not both")
    if values["schema_registry_password"] and values["schema_registry_password_file"] is not None:
        raise ConfigurationError("set CA_SCHEMA_REGISTRY_PASSWORD or "
                                 "CA_SCHEMA_REGISTRY_PASSWORD_FILE, not both")
    prefix = values["topic_prefix"]
    values["input_topics"] = {kind: prefix + name for kind, name in INPUT_TOPICS.items()}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


# --- the README's table -----------------------------------------------------------

README_BEGIN = "<!-- settings table: generated by python -m streams.settings --markdown -->"
README_END = "<!-- end of the settings table -->"


def markdown_table() -> str:
    """The README's Settings table: one row per setting, in declaration order."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in SETTINGS:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        rows.append(f"| `{spec.env}` | {default} | {spec.doc} |")
    return "\n".join(rows) + "\n"


def _table_span(readme: str) -> tuple[int, int]:
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise ConfigurationError(f"no settings table: the README needs the lines "
                                 f"{README_BEGIN!r} and {README_END!r}")
    return begin + len(README_BEGIN) + 1, end


def readme_table(readme: str) -> str:
    """The table between the README's markers."""
    begin, end = _table_span(readme)
    return readme[begin:end]


def with_table(readme: str) -> str:
    """``readme`` with the generated table between its markers."""
    begin, end = _table_span(readme)
    return readme[:begin] + markdown_table() + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.settings",
                                     description="The settings table of the README.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the table")
    what.add_argument("--update-readme", metavar="README", type=Path,
                      help="rewrite the table between the markers of this file")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    else:
        args.update_readme.write_text(with_table(args.update_readme.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
