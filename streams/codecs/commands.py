"""Avro encoding of the command records this system writes for the sending service
(``campaign-analytics.retry-requests``: ``schemas/retry_request.v*.avsc``;
``campaign-analytics.winner-decisions``: ``schemas/winner_decision.v*.avsc``), in the
single-object encoding of every other topic (docs/consumers.md)."""

from __future__ import annotations

from typing import Any

from schemas import (
    SchemaVersion,
    by_fingerprint,
    decode_single_object,
    encode_single_object,
    latest,
    load_schemas,
)

_SCHEMAS = load_schemas()
_RETRY = latest(_SCHEMAS, "retry_request")
_BY_FINGERPRINT: dict[bytes, SchemaVersion] = by_fingerprint(
    [s for s in _SCHEMAS if s.name == "retry_request"])
_WINNER = latest(_SCHEMAS, "winner_decision")
_WINNER_BY_FINGERPRINT = by_fingerprint([s for s in _SCHEMAS if s.name == "winner_decision"])


def encode_retry_request(record: dict[str, Any]) -> bytes:
    """A RetryRequested record (its fields as in the schema; timestamps in epoch ms)."""
    return encode_single_object(_RETRY, record)


def decode_retry_request(data: bytes) -> dict[str, Any]:
    """A RetryRequested record of any known version; ValueError for anything else."""
    return decode_single_object(_RETRY, data, _BY_FINGERPRINT)


def encode_winner_decision(record: dict[str, Any]) -> bytes:
    """A WinnerDecided record (``projections.winner.decision_record``)."""
    return encode_single_object(_WINNER, record)


def decode_winner_decision(data: bytes) -> dict[str, Any]:
    """A WinnerDecided record of any known version; ValueError for anything else."""
    return decode_single_object(_WINNER, data, _WINNER_BY_FINGERPRINT)
