"""Table schema rules: normalising incoming Arrow schemas, evolution, conforming data, and
schemas given as JSON (``schema_from_json``).

Evolution allowed on ingest:

* a column the table lacks is added as nullable;
* an integer column receiving floats widens to float64; a narrower integer widens to the
  wider one; string/large_string/string_view interchange; a timestamp of another unit or
  zone converts to the table's;
* every other difference is rejected with ``InvalidRequest`` naming the column, before any
  byte is written.
"""

from __future__ import annotations

import base64
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clients.errors import InvalidRequest

TIME_COLUMN_NAMES = ("timestamp", "time", "ts", "event_time", "created_at")


def _normalize_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _normalize_type(t.value_type)
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_null(t):
        return pa.string()  # an all-null column of unknown type: store as text
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(_normalize_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_normalize_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _normalize_type(f.type), True) for f in t])
    return t


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """The schema a table gets when created from ``schema``: plain types, nullable, no metadata."""
    seen: dict[str, str] = {}
    fields = []
    for f in schema:
        if not f.name:
            raise InvalidRequest("column names must not be empty")
        low = f.name.lower()
        if low in seen:
            raise InvalidRequest(f"duplicate column name {f.name!r} (column names are case-insensitive)")
        seen[low] = f.name
        fields.append(pa.field(f.name, _normalize_type(f.type), nullable=True))
    return pa.schema(fields)


def detect_time_column(schema: pa.Schema) -> str | None:
    temporal = [f.name for f in schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
    for name in TIME_COLUMN_NAMES:
        for col in temporal:
            if col.lower() == name:
                return col
    return temporal[0] if temporal else None


def _merge_type(column: str, current: pa.DataType, incoming: pa.DataType) -> pa.DataType:
    incoming = _normalize_type(incoming)
    if current.equals(incoming):
        return current
    if pa.types.is_integer(current) and pa.types.is_floating(incoming):
        return pa.float64()
    if pa.types.is_floating(current) and (pa.types.is_integer(incoming) or pa.types.is_floating(incoming)):
        return current if current.bit_width >= getattr(incoming, "bit_width", 0) else pa.float64()
    if pa.types.is_integer(current) and pa.types.is_integer(incoming):
        if pa.types.is_signed_integer(current) == pa.types.is_signed_integer(incoming):
            return current if current.bit_width >= incoming.bit_width else incoming
        return pa.int64() if max(current.bit_width, incoming.bit_width) < 64 else _conflict(column, current, incoming)
    if pa.types.is_timestamp(current) and pa.types.is_timestamp(incoming):
        return current
    if pa.types.is_date(current) and pa.types.is_date(incoming):
        return current
    return _conflict(column, current, incoming)


def _conflict(column: str, current: pa.DataType, incoming: pa.DataType):
    raise InvalidRequest(
        f"schema conflict on column {column!r}: table has {current}, data has {incoming}"
        " (allowed: new nullable columns, int->float and integer widening)",
        detail={"column": column},
    )


def evolve(table_schema: pa.Schema, incoming: pa.Schema) -> pa.Schema:
    """The table schema after accepting data of ``incoming`` (unchanged if compatible)."""
    by_lower = {f.name.lower(): i for i, f in enumerate(table_schema)}
    fields = list(table_schema)
    seen = set()
    for f in incoming:
        low = f.name.lower()
        if low in seen:
            raise InvalidRequest(f"duplicate column name {f.name!r} in data (names are case-insensitive)")
        seen.add(low)
        i = by_lower.get(low)
        if i is None:
            fields.append(pa.field(f.name, _normalize_type(f.type), nullable=True))
            by_lower[low] = len(fields) - 1
            continue
        cur = fields[i]
        merged = _merge_type(cur.name, cur.type, f.type)
        if not merged.equals(cur.type):
            fields[i] = pa.field(cur.name, merged, nullable=cur.nullable)
    for f in table_schema:
        if not f.nullable and f.name.lower() not in seen:
            raise InvalidRequest(f"column {f.name!r} is NOT NULL and missing from the data", detail={"column": f.name})
    out = pa.schema(fields)
    return table_schema if out.equals(table_schema) else out


def widest(current: pa.Schema, incoming: pa.Schema) -> pa.Schema:
    """A table buffer's schema after an append with ``incoming``. A DoPut that resolved the table
    before a concurrent writer evolved it appends with the older, narrower schema: the buffer
    keeps the wider one, or the other writer's new columns would be cut off its buffered rows
    (queries and the flush conform every entry to the buffer's schema)."""
    try:
        return evolve(current, incoming)
    except InvalidRequest:
        return incoming


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` with exactly ``schema``'s columns (added as nulls, cast, reordered); no copy if equal."""
    if data.schema.equals(schema, check_metadata=False):
        return data.replace_schema_metadata(None) if data.schema.metadata else data
    lower = {name.lower(): i for i, name in enumerate(data.column_names)}
    columns = []
    for f in schema:
        i = lower.get(f.name.lower())
        if i is None:
            columns.append(pa.nulls(data.num_rows, f.type))
            continue
        col = data.column(i)
        if not col.type.equals(f.type):
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            try:
                col = pc.cast(col, f.type, safe=not (pa.types.is_timestamp(f.type) or pa.types.is_floating(f.type)))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidRequest(f"column {f.name!r}: cannot convert {col.type} to {f.type}: {exc}",
                                     detail={"column": f.name}) from exc
        if not f.nullable and col.null_count:
            raise InvalidRequest(f"column {f.name!r} is NOT NULL but the data has nulls", detail={"column": f.name})
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """:func:`conform` for one record batch (no copy when the schema already matches)."""
    if batch.schema.equals(schema, check_metadata=False):
        return batch if not batch.schema.metadata else batch.replace_schema_metadata(None)
    return conform(pa.Table.from_batches([batch]), schema).combine_chunks().to_batches()[0]


# -- JSON schema specs (the create_table action) ---------------------------------------
_SIMPLE_TYPES = {
    "bool": pa.bool_(), "boolean": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(),
    "int64": pa.int64(), "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(),
    "uint64": pa.uint64(), "float32": pa.float32(), "float": pa.float32(), "float64": pa.float64(),
    "double": pa.float64(), "string": pa.string(), "utf8": pa.string(), "binary": pa.binary(),
    "date32": pa.date32(), "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp[us]": pa.timestamp("us"), "timestamp[ms]": pa.timestamp("ms"), "timestamp[ns]": pa.timestamp("ns"),
    "timestamp[s]": pa.timestamp("s"), "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    "timestamp[ms, tz=UTC]": pa.timestamp("ms", tz="UTC"), "timestamp[ns, tz=UTC]": pa.timestamp("ns", tz="UTC"),
}


def schema_from_json(spec: Any) -> pa.Schema:
    """A schema from ``[{name, type, nullable?}]`` (pyarrow type names) or base64 Arrow IPC."""
    if isinstance(spec, str):
        try:
            return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(spec)))
        except (ValueError, OSError, pa.ArrowException) as exc:  # garbage bytes: OSError "Invalid IPC stream"
            raise InvalidRequest("schema: not a base64 Arrow IPC schema") from exc
    if not isinstance(spec, list) or not spec:
        raise InvalidRequest("schema must be a non-empty list of {name, type} objects")
    fields = []
    for col in spec:
        if not isinstance(col, dict) or "name" not in col or "type" not in col:
            raise InvalidRequest("each schema column needs 'name' and 'type'")
        t = _SIMPLE_TYPES.get(str(col["type"]).strip().lower()) or _SIMPLE_TYPES.get(str(col["type"]).strip())
        if t is None:
            raise InvalidRequest(f"column {col['name']!r}: unknown type {col['type']!r}; "
                                 f"use one of {', '.join(sorted(_SIMPLE_TYPES))}")
        fields.append(pa.field(str(col["name"]), t, nullable=bool(col.get("nullable", True))))
    return pa.schema(fields)
