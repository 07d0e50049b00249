"""Arrow values as text, shared by the REST gateway and the ``miniodb sql`` command.

JSON: timestamps and dates as ISO 8601 text, decimals as numbers (integers when integral),
binary as base64, durations as seconds, UUIDs as text. CSV cannot hold nested or binary
values: list, struct and map columns become JSON text and binary columns base64 text, so
every result type can be written as CSV.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid

import orjson
import pyarrow as pa

JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_default(obj):
    """orjson ``default=`` for the values ``to_pylist()`` gives and orjson does not know."""
    if isinstance(obj, decimal.Decimal):  # e.g. sum() of an integer column (DuckDB HUGEINT -> decimal)
        if obj.is_finite() and obj == obj.to_integral_value() and -(2**63) <= obj < 2**64:
            return int(obj)
        return float(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID | set | frozenset):
        return str(obj) if isinstance(obj, uuid.UUID) else list(obj)
    return str(obj)


def _as_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _as_text(t.value_type)
    return pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or (
        pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t))


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """The schema :func:`csv_ready` batches have."""
    return pa.schema([pa.field(f.name, pa.string()) if _as_text(f.type) else f for f in schema])


def _text_column(col) -> pa.Array:
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = t.value_type
    if not pa.types.is_nested(t):  # binary: base64
        return pa.array([None if v is None else base64.b64encode(v).decode("ascii") for v in col.to_pylist()],
                        pa.string())
    return pa.array([None if v is None else orjson.dumps(v, default=json_default, option=JSON_OPTIONS).decode()
                     for v in col.to_pylist()], pa.string())


def csv_ready(data: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """``data`` with nested columns as JSON text and binary columns as base64 text."""
    if not any(_as_text(f.type) for f in data.schema):
        return data
    cols = [_text_column(c) if _as_text(c.type) else c for c in data.columns]
    cls = pa.RecordBatch if isinstance(data, pa.RecordBatch) else pa.Table
    return cls.from_arrays(cols, names=data.schema.names)
