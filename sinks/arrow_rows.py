"""Plan rows to Arrow columns and Arrow results back to row tuples (chdb's fast path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sinks.plan import InsertPlan
from sinks.sql import column_types

EXPORT_BATCH_ROWS = 10_000

_SIMPLE_TYPES: dict[str, Any] = {
    "String": pa.string(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
}


def arrow_type(clickhouse_type: str) -> Any:
    """The Arrow type a value of ``clickhouse_type`` is sent as (epoch ms for DateTime64(3))."""
    inner = clickhouse_type
    for wrapper in ("LowCardinality(", "Nullable("):
        if inner.startswith(wrapper):
            inner = inner[len(wrapper) : -1]
    if inner.startswith("DateTime64(3"):
        return pa.timestamp("ms", tz="UTC")
    try:
        return _SIMPLE_TYPES[inner]
    except KeyError:
        raise ValueError(f"no Arrow mapping for ClickHouse type {clickhouse_type}") from None


def plan_table(plan: InsertPlan) -> Any:
    """The plan's rows as a typed ``pyarrow.Table`` (one column per plan column).

    ValueError for a table or column without known types; a value its column
    cannot hold raises ``pyarrow.ArrowException`` or ``OverflowError``.
    """
    width = len(plan.columns)
    if any(len(values) != width for values in plan.rows):
        raise ValueError(f"every row of a plan must have {width} values")
    arrays = [
        _array([values[i] for values in plan.rows], arrow_type(clickhouse_type))
        for i, clickhouse_type in enumerate(column_types(plan.table, plan.columns))
    ]
    return pa.Table.from_arrays(arrays, names=list(plan.columns))


def _array(values: list[Any], type_: Any) -> Any:
    if pa.types.is_timestamp(type_):  # ints convert faster as int64, then a zero-copy cast
        return pa.array(values, type=pa.int64()).cast(type_)
    return pa.array(values, type=type_)


def batch_rows(batch: Any) -> Iterator[tuple[Any, ...]]:
    """Rows of a ``pyarrow.RecordBatch`` or ``Table`` as plain Python tuples."""
    return zip(*(column.to_pylist() for column in batch.columns), strict=True)
