"""Versioned schema migrations, applied at start-up by every store.

Files ``migrations/NNNN_name.sql`` are applied in version order, each once,
and recorded in ``<database>.schema_migrations`` with a checksum of the file.

Idempotent by construction: create the database and ``schema_migrations`` if missing;
refuse (``StoreConfigurationError``) an applied migration whose checksum changed (add a
new one instead); apply each missing migration, then record it. Every statement must itself
be idempotent (``IF NOT EXISTS``...), so a crash between applying and recording, or two
processes migrating at once, is harmless: the next run applies it again.

``{database}`` in a file is replaced by the allow-listed database name (identifiers
cannot be bound parameters). Statements are separated by a ``;`` at the end of a line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sinks.errors import StoreConfigurationError
from sinks.sql import qualified, validate_identifier

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATIONS_TABLE = "schema_migrations"

_FILE_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_NAME_RE = re.compile(r"[a-z0-9_]+")
_STATEMENT_END_RE = re.compile(r";[ \t]*(?:\n|$)")


class MigrationTarget(Protocol):
    """The two things the runner needs from an engine."""

    def execute(self, sql: str) -> None: ...

    def select_rows(self, sql: str) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def __post_init__(self) -> None:
        if not 0 < self.version < 10_000 or not _NAME_RE.fullmatch(self.name):
            raise StoreConfigurationError(
                f"bad migration version or name: {self.version} {self.name!r}")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        rendered = self.sql.replace("{database}", validate_identifier(database))
        return [s.strip() for s in _STATEMENT_END_RE.split(rendered) if _has_code(s)]


def _has_code(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` in ``directory``, by version; duplicate versions are an error."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.fullmatch(path.name)
        if match is None:
            raise StoreConfigurationError(f"migration file name not NNNN_name.sql: {path.name}")
        version = int(match.group(1))
        if version in migrations:
            raise StoreConfigurationError(f"two migrations with version {version}")
        migrations[version] = Migration(version, match.group(2), path.read_text("utf-8"))
    return [migrations[v] for v in sorted(migrations)]


def apply_migrations(
    target: MigrationTarget,
    database: str,
    migrations: list[Migration] | None = None,
) -> list[int]:
    """Bring ``database`` up to date; returns the versions applied by this call."""
    database = validate_identifier(database)
    table = qualified(database, MIGRATIONS_TABLE)
    target.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    target.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree ORDER BY version"
    )
    applied = {
        int(version): str(checksum)
        for version, checksum in target.select_rows(
            f"SELECT version, any(checksum) FROM {table} GROUP BY version"  # noqa: S608
        )
    }
    done: list[int] = []
    for migration in load_migrations() if migrations is None else migrations:
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise StoreConfigurationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after "
                    "it was applied; add a new migration instead"
                )
            continue
        for statement in migration.statements(database):
            target.execute(statement)
        # Identifiers validated, version an int, name checked by _NAME_RE and the
        # checksum hex: the literals need no escaping.
        target.execute(
            f"INSERT INTO {table} (version, name, checksum) VALUES "  # noqa: S608
            f"({migration.version}, '{migration.name}', '{migration.checksum}')"
        )
        done.append(migration.version)
    return done
