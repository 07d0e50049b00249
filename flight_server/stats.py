"""Per-file column statistics (min/max) and pruning of files against literal constraints.

Statistics are stored in the catalog as JSON values in the column's own domain: numbers
for numeric columns, epoch integers (in the column's unit) for timestamps, days for dates,
text for strings. A missing or null statistic never prunes, so pruning is always safe.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .metadata.base import FileEntry


@dataclass(frozen=True)
class Constraint:
    """``column op literal`` taken from a WHERE clause (see :mod:`flight_server.query.analyze`)."""

    column: str  # lower-cased
    op: str  # = < <= > >= in
    literal: str  # literal text as written (a parameter: its 1-based position)
    kind: str  # DuckDB literal kind (INTEGER, NUMERIC, STRING, ...), a cast type name or PARAMETER
    values: tuple[tuple[str, str], ...] = ()  # op "in": (literal, kind) of each listed value


PARAMETER = "PARAMETER"


def _param_literal(value: Any) -> tuple[str, str] | None:
    """A bound parameter value as (literal text, kind); None when it cannot prune."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value), "INTEGER"
    if isinstance(value, float | decimal.Decimal):
        return str(value), "DOUBLE"
    if isinstance(value, str):
        return value, "STRING"
    if isinstance(value, dt.datetime):
        return value.isoformat(" "), "TIMESTAMP"
    if isinstance(value, dt.date):
        return value.isoformat(), "DATE"
    return None


def bind_params(constraint_sets: list[Sequence[Constraint]] | None, params: Sequence[Any] | None
                ) -> list[list[Constraint]] | None:
    """The constraint sets with parameters replaced by their bound values; a constraint whose
    value is unknown (no parameters, a named one, a type that cannot prune) is left out."""
    if constraint_sets is None:
        return None
    params = list(params) if isinstance(params, list | tuple) else []

    def one(literal: str, kind: str) -> tuple[str, str] | None:
        if kind != PARAMETER:
            return literal, kind
        i = int(literal) - 1
        return _param_literal(params[i]) if 0 <= i < len(params) else None

    out: list[list[Constraint]] = []
    for cset in constraint_sets:
        bound = []
        for c in cset:
            if c.op == "in":
                values = [one(lit, kind) for lit, kind in c.values]
                if all(v is not None for v in values):
                    bound.append(replace(c, values=tuple(values)))
            else:
                v = one(c.literal, c.kind)
                if v is not None:
                    bound.append(replace(c, literal=v[0], kind=v[1]))
        out.append(bound)
    return out


def _stat_array(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date64(t) or pa.types.is_time(t) or pa.types.is_duration(t):
        return col.cast(pa.int64())
    if pa.types.is_date32(t):
        return col.cast(pa.int32())
    if pa.types.is_floating(t):
        if pc.any(pc.is_nan(col)).as_py():
            return None  # NaN sorts above everything in DuckDB: no safe max
        return col
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t):
        return col
    return None


def column_stats(table: pa.Table) -> tuple[dict[str, Any], dict[str, Any]]:
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        arr = _stat_array(col)
        if arr is None or len(arr) == arr.null_count:
            continue
        mm = pc.min_max(arr)
        mn, mx = mm["min"].as_py(), mm["max"].as_py()
        if isinstance(mn, bool):
            mn, mx = int(mn), int(mx)
        mins[name], maxs[name] = mn, mx
    return mins, maxs


def literal_value(literal: str, kind: str, type_: pa.DataType) -> Any:
    """The literal in the statistics domain of a column of ``type_``, or None if unknown."""
    if kind == PARAMETER:  # not bound (bind_params): its value is unknown
        return None
    try:
        if pa.types.is_integer(type_) or pa.types.is_floating(type_):
            if kind in ("STRING", "VARCHAR", "DATE", "TIMESTAMP", "BOOLEAN"):
                return None
            try:
                return int(literal)  # exact: a float loses int64 keys above 2**53
            except ValueError:
                return float(literal)
        if pa.types.is_timestamp(type_):
            if kind not in ("STRING", "VARCHAR", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"):
                return None
            text = literal.strip().replace("T", " ", 1)
            fast = _naive_epoch(text, type_) if type_.tz is None else None
            if fast is not None:
                return fast
            return pa.array([text]).cast(pa.timestamp(type_.unit, type_.tz)).cast(pa.int64())[0].as_py()
        if pa.types.is_date32(type_):
            if kind not in ("STRING", "VARCHAR", "DATE"):
                return None
            text = literal.strip()[:10]
            if _DATE.fullmatch(text):
                try:
                    return (dt.date.fromisoformat(text) - _EPOCH.date()).days
                except ValueError:
                    pass
            return pa.array([text]).cast(pa.date32()).cast(pa.int32())[0].as_py()
        if pa.types.is_string(type_) or pa.types.is_large_string(type_):
            return literal if kind in ("STRING", "VARCHAR") else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return None
    return None


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?")
_EPOCH = dt.datetime(1970, 1, 1)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _naive_epoch(text: str, type_: pa.TimestampType) -> int | None:
    """``text`` (ISO date or date-time, at most microseconds) as an epoch in ``type_``'s unit,
    the value Arrow's cast gives, without building arrays (this runs for every literal of every
    query); None when it is not that plain form or the unit cannot hold it exactly (Arrow decides)."""
    if not _NAIVE.fullmatch(text):
        return None
    try:
        delta = dt.datetime.fromisoformat(text) - _EPOCH
    except ValueError:
        return None
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    per = _PER_SECOND[type_.unit]
    if per >= 1_000_000:
        return micros * (per // 1_000_000)
    step = 1_000_000 // per
    return micros // step if micros % step == 0 else None


def _matches(mn: Any, mx: Any, op: str, v: Any) -> bool:
    try:
        if op == "=":
            return mn <= v <= mx
        if op == "in":
            return any(mn <= x <= mx for x in v)
        if op == ">":
            return mx > v
        if op == ">=":
            return mx >= v
        if op == "<":
            return mn < v
        if op == "<=":
            return mn <= v
    except TypeError:
        return True
    return True


def prune(files: Sequence[FileEntry], schema: pa.Schema, constraint_sets: Iterable[Sequence[Constraint]] | None
          ) -> list[FileEntry]:
    """Files that may hold rows matching any of the constraint sets (None: keep all)."""
    if constraint_sets is None:
        return list(files)
    types = {f.name.lower(): (f.name, f.type) for f in schema}
    compiled: list[list[tuple[str, str, Any]]] = []
    for cset in constraint_sets:
        terms = []
        for c in cset:
            if c.column not in types:
                continue
            name, type_ = types[c.column]
            if c.op == "in":
                v = tuple(literal_value(lit, kind, type_) for lit, kind in c.values)
                if v and None not in v:
                    terms.append((name, "in", v))
                continue
            v = literal_value(c.literal, c.kind, type_)
            if v is not None:
                terms.append((name, c.op, v))
        if not terms:
            return list(files)  # one reference cannot be pruned: keep everything
        compiled.append(terms)
    if not compiled:
        return list(files)
    out = []
    for f in files:
        for terms in compiled:
            ok = True
            for name, op, v in terms:
                mn, mx = f.min_values.get(name), f.max_values.get(name)
                if mn is None or mx is None:
                    continue
                if not _matches(mn, mx, op, v):
                    ok = False
                    break
            if ok:
                out.append(f)
                break
    return out
