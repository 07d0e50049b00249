"""Result types every client can take: DuckDB types that break a client become ones that do not.

DuckDB exports a few types to Arrow in forms that pandas, Polars, CSV, Parquet or JSON writers
cannot take, or take wrongly:

=====================  =================================  ==================================
DuckDB type            DuckDB's Arrow form                 sent to clients
=====================  =================================  ==================================
INTERVAL               month_day_nano_interval (pandas      duration[us]; a month counts as
                       DateOffset, Polars panics, no CSV)   30 days, as in DuckDB's ``epoch``
UHUGEINT               decimal128(38, 0): values above      string (decimal digits)
                       2**127 come out negative
BIT                    binary (DuckDB's internal bytes)     string of 0s and 1s
TIME WITH TIME ZONE    time64[us], the offset dropped       string ``12:30:00+02``
ENUM                   dictionary<string, uint8>            string
UNION                  sparse_union (no pandas, CSV,        string
                       Parquet, Polars)
BIGNUM (VARINT)        opaque extension over binary         string (decimal digits)
VARIANT                struct of two binaries               string
=====================  =================================  ==================================

These types are replaced wherever they occur, nested in lists, arrays, structs and maps
included. The projection runs in DuckDB (``epoch_us``, ``CAST(... AS VARCHAR)``,
``list_transform``/``struct_pack``) and the int64 microseconds of an interval are relabelled
``duration[us]`` by a lazy Arrow cast of the record batch reader (zero-copy), so no Python
runs per row. Statements without such types pass through untouched. The result schema depends
on the statement's types only, never on its values, so a schema-only answer (GetFlightInfo,
prepare) equals what DoGet streams.

Types kept as DuckDB exports them: HUGEINT and DECIMAL (decimal128), BLOB and GEOMETRY
(binary; GEOMETRY as WKB), UUID and JSON (string), TIMESTAMP_S/MS/NS and TIMESTAMPTZ
(timestamp, ``tz=UTC``), TIME and TIME_NS (time64), LIST/ARRAY/STRUCT/MAP (Arrow nested types).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

AS_TEXT = frozenset({"uhugeint", "bit", "time with time zone", "enum", "union", "bignum", "varint", "variant"})
DURATION = pa.duration("us")
RELABEL = frozenset({"interval", "timestamp with time zone"})  # fixed by an Arrow cast of the reader

Reader = pa.RecordBatchReader


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _map(expr: str, t: Any, depth: int = 0) -> tuple[str, str] | None:
    """``(sql, mapped DuckDB type)`` for a value of DuckDB type ``t``, or ``None`` when it is fine."""
    kind = t.id
    if kind == "interval":
        return f"epoch_us({expr})", "BIGINT"
    if kind in AS_TEXT:
        return f"CAST({expr} AS VARCHAR)", "VARCHAR"
    if kind == "struct":
        kids = [(name, child, _map(f"struct_extract({expr}, {_lit(name)})", child, depth + 1))
                for name, child in t.children]
        if all(m is None for _, _, m in kids):
            return None
        parts = [f"{_q(n)} := {m[0] if m else f'struct_extract({expr}, {_lit(n)})'}" for n, _, m in kids]
        mapped = ", ".join(f"{_q(n)} {m[1] if m else str(c)}" for n, c, m in kids)
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({', '.join(parts)}) END", f"STRUCT({mapped})"
    if kind in ("list", "array"):
        child = dict(t.children)["child"]
        var = f"__x{depth}"
        inner = _map(var, child, depth + 1)
        if inner is None:
            return None
        sql = f"list_transform({expr}, lambda {var}: {inner[0]})"
        if kind == "array":
            size = dict(t.children)["size"]
            return f"CAST({sql} AS {inner[1]}[{size}])", f"{inner[1]}[{size}]"
        return sql, f"{inner[1]}[]"
    if kind == "map":
        kids = dict(t.children)
        var = f"__e{depth}"
        k = _map(f"{var}.key", kids["key"], depth + 1)
        v = _map(f"{var}.value", kids["value"], depth + 1)
        if k is None and v is None:
            return None
        ks, kt = k or (f"{var}.key", str(kids["key"]))
        vs, vt = v or (f"{var}.value", str(kids["value"]))
        return (f"map_from_entries(list_transform(map_entries({expr}), lambda {var}: "
                f"struct_pack(key := {ks}, value := {vs})))", f"MAP({kt}, {vt})")
    return None


def _durations(at: pa.DataType, t: Any) -> pa.DataType:
    """``at`` (the mapped Arrow type) with every int64 that was an INTERVAL as duration[us], and
    every TIMESTAMPTZ labelled ``UTC`` (DuckDB names the session zone ``Etc/UTC``)."""
    kind = t.id
    if kind == "interval":
        return DURATION
    if kind == "timestamp with time zone" and pa.types.is_timestamp(at):
        return pa.timestamp(at.unit, "UTC")
    if kind == "struct" and pa.types.is_struct(at):
        return pa.struct([f.with_type(_durations(f.type, c)) for f, (_, c) in zip(at.fields, t.children,
                                                                                   strict=True)])
    if kind == "list" and (pa.types.is_list(at) or pa.types.is_large_list(at)):
        vf = at.value_field.with_type(_durations(at.value_type, dict(t.children)["child"]))
        return pa.large_list(vf) if pa.types.is_large_list(at) else pa.list_(vf)
    if kind == "array" and pa.types.is_fixed_size_list(at):
        vf = at.value_field.with_type(_durations(at.value_type, dict(t.children)["child"]))
        return pa.list_(vf, at.list_size)
    if kind == "map" and pa.types.is_map(at):
        kids = dict(t.children)
        return pa.map_(at.key_field.with_type(_durations(at.key_type, kids["key"])),
                       at.item_field.with_type(_durations(at.item_type, kids["value"])), at.keys_sorted)
    return at


def _relabelled(t: Any) -> bool:
    if t.id in RELABEL:
        return True
    if t.id in ("struct", "list", "array", "map"):
        return any(_relabelled(c) for _, c in t.children if hasattr(c, "id"))
    return False


def _identity(reader: Reader) -> Reader:
    return reader


def needs_mapping(types: list[Any]) -> bool:
    """Whether a result of these DuckDB types is changed on its way to clients (:func:`project`)."""
    return any(_map("x", t) is not None or _relabelled(t) for t in types)


def project(rel: duckdb.DuckDBPyRelation) -> tuple[duckdb.DuckDBPyRelation, Callable[[Reader], Reader]]:
    """``rel`` with client-safe column types, and the function to apply to its Arrow reader."""
    types = rel.types
    mapped = [_map(f"#{i + 1}", t) for i, t in enumerate(types)]
    if any(m is not None for m in mapped):
        rel = rel.project(", ".join(f"{m[0] if m else f'#{i + 1}'} AS {_q(name)}"
                                    for i, (name, m) in enumerate(zip(rel.columns, mapped, strict=True))))
    if not any(_relabelled(t) for t in types):
        return rel, _identity

    def relabel(reader: Reader) -> Reader:
        schema = reader.schema
        target = pa.schema([f.with_type(_durations(f.type, t)) for f, t in zip(schema, types, strict=True)],
                           metadata=schema.metadata)
        return reader if target == schema else reader.cast(target)

    return rel, relabel
