"""Settings, read from environment variables (every one has a documented default).

| variable | default | meaning |
|---|---|---|
| ``CA_KAFKA_BOOTSTRAP`` | ``127.0.0.1:9092`` | Kafka bootstrap servers (comma separated) |
| ``CA_APP_ID`` | ``campaign-analytics`` | Faust app id = consumer group and internal topic prefix |
| ``CA_TOPIC_PREFIX`` | (empty) | prefix for every topic name (tests use a unique one) |
| ``CA_PARTITIONS`` | ``4`` | partitions of the topics this system creates |
| ``CA_DATA_DIR`` | ``.state`` | local state of workers and the embedded ClickHouse |
| ``CA_CLICKHOUSE_URL`` | (empty) | ClickHouse server URL (``http://host:8123``); |
|  |  | empty = the embedded chdb engine |
| ``CA_CLICKHOUSE_DATABASE`` | ``campaign_analytics`` | ClickHouse database |
| ``CA_CHDB_PATH`` | ``$CA_DATA_DIR/chdb`` | directory of the embedded engine's files |
| ``CA_CLICKHOUSE_TTL_DAYS`` | ``0`` | days ``message_log``, ``replies`` and ``link_clicks`` |
|  |  | rows are kept after their event time; 0 = forever |
| ``CA_CLICKHOUSE_EVENTS_TTL_DAYS`` | ``90`` | days the raw audit ``events`` are kept; 0 = forever |
| ``CA_WEB_HOST`` | ``127.0.0.1`` | address the worker's web server (``/metrics``) binds |
| ``CA_WEB_PORT`` | ``6066`` | port of the worker's web server (``--web-port`` wins) |
| ``CA_EMIT_INTERVAL`` | ``1.0`` | least seconds between two snapshots of one campaign |
| ``CA_SINK_IN_WORKER`` | ``1`` | run the ClickHouse sink inside each worker (0: run |
|   |   | ``campaign-analytics sink`` as its own process instead) |
| ``CA_SINK_CHILD`` | ``1`` | with ``CA_SINK_IN_WORKER=1``: in a child process the worker |
|   |   | starts, restarts and stops (0: in the worker's event loop); |
|   |   | see ``streams/sink_runtime/process.py`` |
| ``CA_SINK_BATCH_ROWS`` | ``5000`` | rows per ClickHouse insert (at most) |
| ``CA_SINK_BATCH_SECONDS`` | ``1.0`` | longest a row waits before its batch is inserted |
| ``CA_WINDOWS`` | ``60,3600`` | sizes (seconds) of the event-time tumbling windows |
| ``CA_WINDOW_RETENTION_DAYS`` | ``30`` | windows older than this are no longer kept or published |
| ``CA_BATCH_MAX`` | ``10000`` | most events an agent takes into one batch |
| ``CA_BATCH_SECONDS`` | ``0.02`` | longest an agent waits to fill a batch |
| ``CA_STATE_CACHE`` | ``200000`` | decoded message states kept beside the table (memory vs CPU) |
| ``CA_PRODUCER_LINGER_MS`` | ``5`` | longest the producer waits to fill a request |
| ``CA_FETCH_MAX_WAIT_MS`` | ``100`` | longest the broker holds a fetch with nothing new (Faust: |
|   |   | 1500); see fix 6 in ``streams/engine/patches.py`` |
| ``CA_PRODUCER_REQUEST_TIMEOUT`` | ``60`` | seconds a record may take to be delivered; one that |
|   |   | fails stops the worker (``streams/engine/delivery_guard.py``) |
| ``CA_SESSION_TIMEOUT`` | ``10`` | seconds before the group gives a dead worker's partitions away |
| ``CA_BULK_RESTORE_SECONDS`` | ``45`` | longest a recovery reads table changelogs in bulk before |
|   |   | Faust's own restore reads the rest (0: Faust's only); |
|   |   | see ``streams/engine/restore.py`` |
| ``CA_STANDBY_REPLICAS`` | ``0`` | workers that keep a standby copy of each table partition |
|   |   | (Faust reads their changelogs record by record all the time; |
|   |   | a takeover restores in bulk instead, ``streams/engine/restore.py``) |
| ``CA_GC_GEN0`` | ``200000`` | allocations between two young garbage collections (0: |
|   |   | CPython's 700); see ``streams/engine/gc_tuning.py`` |
| ``CA_LOG_LEVEL`` | ``info`` | log level of the worker |
| ``CA_API_HOST`` | ``127.0.0.1`` | address the API service (``campaign-analytics api``) binds |
| ``CA_API_PORT`` | ``8080`` | port of the API service (``--port`` wins) |
| ``CA_API_TOKEN`` | (empty) | when set, every ``/api`` route needs ``Authorization: Bearer`` it |
| ``CA_SQL_HOST`` | ``127.0.0.1`` | address of the embedded engine's read-only SQL endpoint |
| ``CA_SQL_PORT`` | ``8124`` | its port (ClickHouse HTTP interface; served by the engine's owner) |
| ``CA_AB_ALPHA`` | ``0.05`` | significance level of the A/B verdict (always-valid test) |
| ``CA_AB_LEVEL`` | ``0.95`` | confidence level of the A/B intervals |
| ``CA_AB_METRIC`` | ``click_rate`` | the metric the A/B verdict is on (``delivery_rate``, |
|   |   | ``unique_reply_rate``, ``click_rate``) |
| ``CA_AB_CONTROL`` | (empty) | the control variant; empty = the first variant by name |
| ``CA_AB_SPLIT`` | (empty) | planned split for the sample-ratio check, e.g. ``A=50,B=50``; |
|   |   | empty = even |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from projections.errors import ConfigurationError

# Names of the input topics (domain.md section 1), before CA_TOPIC_PREFIX.
INPUT_TOPICS: dict[str, str] = {
    "sent": "sms.sent",
    "delivery": "sms.delivery",
    "reply": "sms.reply",
    "click": "sms.click",
}


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _float(name: str, default: str, least: float, strict: bool) -> float:
    raw = _env(name, default)
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc
    if value < least or (strict and value == least):
        raise ConfigurationError(f"{name} must be {'>' if strict else '>='} {least:g}, "
                                 f"got {raw!r}")
    return value


def _positive_float(name: str, default: str) -> float:
    return _float(name, default, 0.0, strict=True)


def _non_negative_float(name: str, default: str) -> float:
    return _float(name, default, 0.0, strict=False)


def unsafe_switch_on(name: str) -> bool:
    """Whether a tests-only ``CA_UNSAFE_*`` switch is on (``1``, ``true`` or ``yes``)."""
    return os.environ.get(name, "") in ("1", "true", "yes")


def _positive_int(name: str, default: str) -> int:
    return _int(name, default, minimum=1)


def _non_negative_int(name: str, default: str) -> int:
    return _int(name, default, minimum=0)


def _int(name: str, default: str, minimum: int) -> int:
    raw = _env(name, default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _days(name: str, default: str) -> int:
    raw = _env(name, default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be whole days, got {raw!r}") from exc
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0 (0 = keep forever), got {raw!r}")
    return value


def _window_sizes(raw: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError as exc:
        raise ConfigurationError(f"CA_WINDOWS must be seconds, e.g. 60,3600; got {raw!r}") from exc
    if not sizes or sizes[0] <= 0:
        raise ConfigurationError(f"CA_WINDOWS needs at least one positive size; got {raw!r}")
    return sizes


def _fraction(name: str, default: str) -> float:
    value = _positive_float(name, default)
    if value >= 1:
        raise ConfigurationError(f"{name} must be within (0, 1), got {value:g}")
    return value


def _split(raw: str) -> dict[str, float]:
    """``A=50,B=50`` -> ``{"A": 50.0, "B": 50.0}`` (weights, any positive scale)."""
    split: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, weight = part.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or value <= 0:
            raise ConfigurationError(
                f"CA_AB_SPLIT must look like A=50,B=50 (positive weights); got {raw!r}")
        split[name.strip()] = value
    return split


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    app_id: str = "campaign-analytics"
    topic_prefix: str = ""
    partitions: int = 4
    data_dir: Path = Path(".state")
    clickhouse_url: str = ""
    clickhouse_database: str = "campaign_analytics"
    chdb_path: Path = Path(".state/chdb")
    clickhouse_ttl_days: int = 0
    clickhouse_events_ttl_days: int = 90
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    emit_interval: float = 1.0
    sink_in_worker: bool = True
    sink_child: bool = True
    sink_batch_rows: int = 5000
    sink_batch_seconds: float = 1.0
    batch_max: int = 10000
    batch_seconds: float = 0.02
    producer_linger_ms: int = 5
    fetch_max_wait_ms: int = 100
    producer_request_timeout: float = 60.0
    state_cache_size: int = 200_000
    session_timeout: float = 10.0
    bulk_restore_seconds: float = 45.0
    standby_replicas: int = 0
    gc_gen0_threshold: int = 200_000
    window_sizes_s: tuple[int, ...] = (60, 3600)
    window_retention_days: float = 30.0
    log_level: str = "info"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token: str = ""
    sql_host: str = "127.0.0.1"
    sql_port: int = 8124
    ab_alpha: float = 0.05
    ab_level: float = 0.95
    ab_metric: str = "click_rate"
    ab_control: str = ""
    ab_split: dict[str, float] = field(default_factory=dict)
    input_topics: dict[str, str] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

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
    def dead_letter_topic(self) -> str:
        return self.topic("campaign-analytics.dead-letter")

    @property
    def window_metrics_topic(self) -> str:
        return self.topic("campaign-analytics.campaign-windows")

    @property
    def campaign_metrics_topic(self) -> str:
        return self.topic("campaign-analytics.campaign-metrics")


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings a process started with ``env`` on top of this one's would read
    (benchmarks and tests start such processes)."""
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; keyword overrides (e.g. from CLI flags) win."""
    data_dir = Path(_env("CA_DATA_DIR", ".state"))
    prefix = _env("CA_TOPIC_PREFIX", "")
    values: dict[str, object] = {
        "kafka_bootstrap": _env("CA_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        "app_id": _env("CA_APP_ID", "campaign-analytics"),
        "topic_prefix": prefix,
        "partitions": _positive_int("CA_PARTITIONS", "4"),
        "data_dir": data_dir,
        "clickhouse_url": _env("CA_CLICKHOUSE_URL", ""),
        "clickhouse_database": _env("CA_CLICKHOUSE_DATABASE", "campaign_analytics"),
        "chdb_path": Path(_env("CA_CHDB_PATH", str(data_dir / "chdb"))),
        "clickhouse_ttl_days": _days("CA_CLICKHOUSE_TTL_DAYS", "0"),
        "clickhouse_events_ttl_days": _days("CA_CLICKHOUSE_EVENTS_TTL_DAYS", "90"),
        "web_host": _env("CA_WEB_HOST", "127.0.0.1"),
        "web_port": _positive_int("CA_WEB_PORT", "6066"),
        "emit_interval": _positive_float("CA_EMIT_INTERVAL", "1.0"),
        "sink_in_worker": _env("CA_SINK_IN_WORKER", "1") not in ("0", "false", "no", "off"),
        "sink_child": _env("CA_SINK_CHILD", "1") not in ("0", "false", "no", "off"),
        "sink_batch_rows": _positive_int("CA_SINK_BATCH_ROWS", "5000"),
        "sink_batch_seconds": _positive_float("CA_SINK_BATCH_SECONDS", "1.0"),
        "batch_max": _positive_int("CA_BATCH_MAX", "10000"),
        "batch_seconds": _positive_float("CA_BATCH_SECONDS", "0.02"),
        "producer_linger_ms": _positive_int("CA_PRODUCER_LINGER_MS", "5"),
        "fetch_max_wait_ms": _positive_int("CA_FETCH_MAX_WAIT_MS", "100"),
        "producer_request_timeout": _positive_float("CA_PRODUCER_REQUEST_TIMEOUT", "60"),
        "state_cache_size": _positive_int("CA_STATE_CACHE", "200000"),
        "session_timeout": _positive_float("CA_SESSION_TIMEOUT", "10"),
        "bulk_restore_seconds": _non_negative_float("CA_BULK_RESTORE_SECONDS", "45"),
        "standby_replicas": _non_negative_int("CA_STANDBY_REPLICAS", "0"),
        "gc_gen0_threshold": _non_negative_int("CA_GC_GEN0", "200000"),
        "window_sizes_s": _window_sizes(_env("CA_WINDOWS", "60,3600")),
        "window_retention_days": _positive_float("CA_WINDOW_RETENTION_DAYS", "30"),
        "log_level": _env("CA_LOG_LEVEL", "info"),
        "api_host": _env("CA_API_HOST", "127.0.0.1"),
        "api_port": _positive_int("CA_API_PORT", "8080"),
        "api_token": _env("CA_API_TOKEN", ""),
        "sql_host": _env("CA_SQL_HOST", "127.0.0.1"),
        "sql_port": _positive_int("CA_SQL_PORT", "8124"),
        "ab_alpha": _fraction("CA_AB_ALPHA", "0.05"),
        "ab_level": _fraction("CA_AB_LEVEL", "0.95"),
        "ab_metric": _env("CA_AB_METRIC", "click_rate"),
        "ab_control": _env("CA_AB_CONTROL", ""),
        "ab_split": _split(_env("CA_AB_SPLIT", "")),
        "input_topics": {kind: prefix + name for kind, name in INPUT_TOPICS.items()},
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]
