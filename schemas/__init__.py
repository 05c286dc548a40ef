"""Versioned Avro schemas (``<name>.v<N>.avsc``), shipped as package data and parsed once."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

# Avro single-object encoding: this marker, then the schema's CRC-64-AVRO fingerprint.
MAGIC = b"\xc3\x01"


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
        raw = json.loads(entry.read_text("utf-8"))
        parsed = fastavro.parse_schema(copy.deepcopy(raw))
        canonical = to_parsing_canonical_form(parsed)
        # fastavro's hex digest is already the little-endian byte order of the spec
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        plain = fastavro.parse_schema(_strip_logical_types(copy.deepcopy(raw)))
        out.append(SchemaVersion(name, int(version), parsed, plain, fp, fp[::-1]))
    return out


def by_fingerprint(schemas: list[SchemaVersion]) -> dict[bytes, SchemaVersion]:
    """Each version under its fingerprint and under the reversed bytes that earlier
    versions of this project wrote."""
    table = {s.legacy_fingerprint: s for s in schemas}
    table.update({s.fingerprint: s for s in schemas})
    return table


def latest(schemas: list[SchemaVersion], name: str) -> SchemaVersion:
    return max((s for s in schemas if s.name == name), key=lambda s: s.version)


def encode_single_object(schema: SchemaVersion, record: dict[str, Any]) -> bytes:
    """Avro single-object encoding: marker, fingerprint, schemaless body."""
    out = io.BytesIO()
    out.write(MAGIC + schema.fingerprint)
    fastavro.schemaless_writer(out, schema.parsed, record, strict=True)
    return out.getvalue()


def decode_single_object(reader: SchemaVersion, data: bytes,
                         writers: Mapping[bytes, SchemaVersion]) -> dict[str, Any]:
    """The record of a single-object-encoded value, read as ``reader``.

    Its fingerprint picks the writer's version among ``writers``; a record written
    with an older version of the same schema is resolved into ``reader`` (new
    fields take their defaults). Anything else is refused: no marker, an unknown
    fingerprint, or another schema's record.
    """
    writer = writers.get(data[2:10]) if data[:2] == MAGIC else None
    if writer is None or writer.name != reader.name:
        raise ValueError(f"not a {reader.name} record of a known version")
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer.plain, reader.plain)
    if not isinstance(record, dict):
        raise ValueError(f"{reader.name} did not decode to a record")
    return record
