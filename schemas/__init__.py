"""Versioned Avro schemas (``<name>.v<N>.avsc``), shipped as package data and parsed once."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

# Avro single-object encoding: this marker, then the schema's CRC-64-AVRO fingerprint.
MAGIC = b"\xc3\x01"
# The Confluent wire format: this byte, the writer schema's registry id (4 bytes, big
# endian), the Avro body (docs/consumers.md).
CONFLUENT = 0


@dataclass(frozen=True)
class SchemaVersion:
    name: str  # e.g. "sent"
    version: int
    parsed: Any  # fastavro's parsed schema (for writing)
    plain: Any  # the same without logical types (for reading: timestamps stay ints)
    fingerprint: bytes  # 8 bytes, little endian, as single-object encoding writes it
    # The same bytes reversed: what versions before the fix wrote, still on the
    # topics (compacted ones keep them for ever), so readers accept both.
    legacy_fingerprint: bytes


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def load_schemas() -> list[SchemaVersion]:
    """Every schema file of this package, parsed."""
    out = []
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".avsc"):
            continue
        name, _, version = entry.name.removesuffix(".avsc").partition(".v")
        out.append(parse_version(name, int(version), json.loads(entry.read_text("utf-8"))))
    return out


def parse_version(name: str, version: int, raw: Any) -> SchemaVersion:
    """One schema (its JSON, as loaded), parsed and fingerprinted."""
    parsed = fastavro.parse_schema(copy.deepcopy(raw))
    canonical = to_parsing_canonical_form(parsed)
    # fastavro's hex digest is already the little-endian byte order of the spec
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    plain = fastavro.parse_schema(_strip_logical_types(copy.deepcopy(raw)))
    return SchemaVersion(name, version, parsed, plain, fp, fp[::-1])


class WriterUnavailableError(ValueError):
    """A Confluent-framed record's writer schema could not be asked of the registry: a
    ValueError to readers that skip undecodable records (the API's live reader); a
    command says so in one line, exit 4 (streams/cli/main.py)."""


@dataclass
class Framing:
    """The process's Confluent wire format, filled by ``streams.codecs.registry``.

    ``frames``: fingerprint -> the 5-byte prefix of a version registered by this process
    (its records are written so; every other one in the single-object encoding).
    ``writers``: registry id -> its writer schema (``None``: the registry has no such id).
    ``lookup``: asks the registry for an id missing from ``writers`` (``None``: no
    registry is configured)."""

    frames: dict[bytes, bytes] = field(default_factory=dict)
    writers: dict[int, SchemaVersion | None] = field(default_factory=dict)
    lookup: Callable[[int], SchemaVersion | None] | None = None


FRAMING = Framing()


def confluent_writer(schema_id: int) -> SchemaVersion | None:
    """The writer schema of a registry id: cached, else asked of the registry (which may
    raise when it cannot be reached); ``None`` when unknown or no registry is set."""
    if schema_id in FRAMING.writers:
        return FRAMING.writers[schema_id]
    return FRAMING.lookup(schema_id) if FRAMING.lookup is not None else None


def by_fingerprint(schemas: list[SchemaVersion]) -> dict[bytes, SchemaVersion]:
    """Each version under its fingerprint and under the reversed bytes that earlier
    versions of this project wrote."""
    table = {s.legacy_fingerprint: s for s in schemas}
    table.update({s.fingerprint: s for s in schemas})
    return table


def latest(schemas: list[SchemaVersion], name: str) -> SchemaVersion:
    return max((s for s in schemas if s.name == name), key=lambda s: s.version)


def encode_single_object(schema: SchemaVersion, record: dict[str, Any]) -> bytes:
    """Avro single-object encoding: marker, fingerprint, schemaless body; or the
    Confluent wire format when this process registered the version (``FRAMING``)."""
    out = io.BytesIO()
    out.write(FRAMING.frames.get(schema.fingerprint) or MAGIC + schema.fingerprint)
    fastavro.schemaless_writer(out, schema.parsed, record, strict=True)
    return out.getvalue()


def decode_single_object(reader: SchemaVersion, data: bytes,
                         writers: Mapping[bytes, SchemaVersion]) -> dict[str, Any]:
    """The record of a single-object-encoded (or Confluent-framed) value, read as ``reader``.

    Its fingerprint picks the writer's version among ``writers`` (a Confluent id: the
    registry's schema, ``confluent_writer``); a record written with an older version
    of the same schema is resolved into ``reader`` (new fields take their defaults).
    Anything else is refused: no marker, an unknown fingerprint or id, or another
    schema's record.
    """
    if data[:2] == MAGIC:
        writer, start = writers.get(data[2:10]), 10
    elif len(data) >= 5 and data[0] == CONFLUENT:
        try:
            writer, start = confluent_writer(int.from_bytes(data[1:5], "big")), 5
        except Exception as exc:  # the registry could not be asked
            raise WriterUnavailableError(
                f"the writer schema of a {reader.name} record: {exc}") from exc
    else:
        writer, start = None, 0
    if writer is None or writer.name != reader.name:
        raise ValueError(f"not a {reader.name} record of a known version")
    record = fastavro.schemaless_reader(io.BytesIO(data[start:]), writer.plain, reader.plain)
    if not isinstance(record, dict):
        raise ValueError(f"{reader.name} did not decode to a record")
    return record
