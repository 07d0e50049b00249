"""JSON records -> one Arrow table, column by column (no per-record model objects).

A write body is ``{table, id?, timestamp?, payload}`` (one record) or
``{table, records: [{id?, timestamp?, payload}, ...]}`` (a batch). The Arrow table has:

* ``id`` (string): the record id; a missing id gets a generated unique one
  (``<random hex>-<index>``); a number is stored as its decimal text.
* ``timestamp`` (``timestamp[us, tz=UTC]``): an RFC 3339 string (a missing zone means UTC)
  or epoch milliseconds (integer or fractional); missing or null means the time of the
  request.
* one column per payload key (first record's keys first, then the others sorted). The JSON
  type of a key decides the column type: boolean -> bool, integers -> int64, numbers with a
  fraction (or integers mixed with them) -> float64, string -> string, object/array -> JSON
  text (string). A key whose values are all null is left out (no type to give it; the node
  fills it with nulls if the table has it). Mixed JSON types of one key in one batch are a
  type conflict (``InvalidRequest`` naming the field). Types across batches are checked by
  the node against the table schema (same rule: 400 naming the column).
* a payload key named ``id`` or ``timestamp`` (any case) never overwrites the record's own
  columns: it is stored as ``payload_id`` / ``payload_timestamp`` (the ``payload_`` prefix
  is added to the key as written).

Everything here works one column at a time: one list comprehension per key to gather its
values, one ``set(map(type, ...))`` to check their JSON types, one ``pa.array`` to convert.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from clients.errors import InvalidRequest

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
RESERVED = ("id", "timestamp")
RENAME_PREFIX = "payload_"
RECORD_KEYS = frozenset({"id", "timestamp", "payload"})
SINGLE_KEYS = frozenset({"table", "id", "timestamp", "payload"})

_NONE = type(None)
_JSON_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from None


def split_write_body(body: Any) -> tuple[str, list]:
    """``(table, records)`` of a single-record or batch write body (validated shape)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object: {table, payload} or {table, records: [...]}")
    table = body.get("table")
    if not isinstance(table, str) or not table:
        raise InvalidRequest("'table' is required and must be a non-empty string")
    if "records" in body:
        extra = set(body) - {"table", "records"}
        if extra:
            raise InvalidRequest(f"unknown key(s) {_names(extra)} in a batch body; use {{table, records}}")
        records = body["records"]
        if not isinstance(records, list):
            raise InvalidRequest("'records' must be an array of {id?, timestamp?, payload} objects")
        if not records:
            raise InvalidRequest("'records' is empty: nothing to write")
        return table, records
    extra = set(body) - SINGLE_KEYS
    if extra:
        raise InvalidRequest(f"unknown key(s) {_names(extra)}; a record is {{table, id?, timestamp?, payload}}")
    if "payload" not in body:
        raise InvalidRequest("'payload' is required (or 'records' for a batch)")
    record = {k: v for k, v in body.items() if k != "table"}
    return table, [record]


def _names(keys) -> str:
    return ", ".join(repr(k) for k in sorted(keys, key=str))


def records_to_arrow(records: list, now_us: int | None = None) -> pa.Table:
    """Validate ``records`` and build the Arrow table (see the module docstring)."""
    n = len(records)
    if set(map(type, records)) != {dict}:
        i = next(i for i, r in enumerate(records) if type(r) is not dict)
        raise InvalidRequest(f"record {i} is not an object", detail={"record": i})
    extra = set().union(*records) - RECORD_KEYS
    if extra:
        raise InvalidRequest(f"unknown record key(s) {_names(extra)}; a record is {{id?, timestamp?, payload}}"
                             " (put fields inside 'payload')")
    payloads = [r.get("payload") for r in records]
    if set(map(type, payloads)) != {dict}:
        i = next(i for i, p in enumerate(payloads) if type(p) is not dict)
        what = "missing" if "payload" not in records[i] else "not an object"
        raise InvalidRequest(f"record {i}: 'payload' is {what}", detail={"record": i})

    names = ["id", "timestamp"]
    arrays = [_ids(records, n), _timestamps(records, n, now_us)]
    for key, out in _payload_keys(payloads):
        values = [p.get(key) for p in payloads]
        arr = _column(out, values)
        if arr is not None:
            names.append(out)
            arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=names)


def _payload_keys(payloads: list[dict]) -> list[tuple[str, str]]:
    """``(payload key, column name)`` in column order, with reserved names renamed."""
    first = list(payloads[0])
    rest = set().union(*payloads[1:]) - set(first) if len(payloads) > 1 else set()
    keys = first + sorted(rest)
    out = []
    seen: dict[str, str] = {"id": "id", "timestamp": "timestamp"}
    for key in keys:
        if not key:
            raise InvalidRequest("payload keys must not be empty")
        col = RENAME_PREFIX + key if key.lower() in RESERVED else key
        low = col.lower()
        if low in seen:
            raise InvalidRequest(
                f"payload field {key!r} collides with field {seen[low]!r} (column names are case-insensitive;"
                f" payload keys 'id' and 'timestamp' are stored as 'payload_id' and 'payload_timestamp')",
                detail={"field": key})
        seen[low] = key
        out.append((key, col))
    return out


def _column(field: str, values: list) -> pa.Array | None:
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    if not kinds:
        return None
    if len(kinds) == 1:
        kind = next(iter(kinds))
        typ = _SIMPLE.get(kind)
        if typ is not None:
            try:
                return _int64_array(values) if kind is int else pa.array(values, typ)
            except (OverflowError, pa.ArrowInvalid) as exc:
                raise InvalidRequest(f"field {field!r}: {_short(exc)} (integers must fit in 64 bits)",
                                     detail={"field": field}) from None
        if kind is dict or kind is list:
            return _json_text(values)
    elif kinds == {int, float}:
        try:
            return pa.array(values, pa.float64())
        except (OverflowError, pa.ArrowInvalid) as exc:
            raise InvalidRequest(f"field {field!r}: {_short(exc)}", detail={"field": field}) from None
    elif kinds == {dict, list}:
        return _json_text(values)
    found = ", ".join(sorted({_JSON_NAMES.get(k, k.__name__) for k in kinds}))
    raise InvalidRequest(f"type conflict in field {field!r}: the batch mixes {found} values",
                         detail={"field": field})


_SIMPLE = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


def _int64_array(values: list) -> pa.Array:
    """``pa.array(values, pa.int64())`` is slow on Python ints in pyarrow 26; numpy/inference are not."""
    try:
        return pa.array(np.fromiter(values, np.int64, len(values)))
    except TypeError:  # nulls among the ints
        arr = pa.array(values)
        return arr if arr.type == pa.int64() else arr.cast(pa.int64())


def _json_text(values: list) -> pa.Array:
    dumps = orjson.dumps
    return pa.array([None if v is None else dumps(v).decode() for v in values], pa.string())


def _short(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]


def _ids(records: list, n: int) -> pa.Array:
    values = [r.get("id") for r in records]
    kinds = set(map(type, values))
    if kinds == {_NONE}:
        return _generated_ids(n)
    kinds.discard(_NONE)
    if kinds - {str, int}:
        i = next(i for i, v in enumerate(values) if v is not None and type(v) not in (str, int))
        raise InvalidRequest(f"record {i}: 'id' must be a string (or an integer)", detail={"record": i})
    if kinds == {str}:
        arr = pa.array(values, pa.string())
    else:
        arr = pa.array([v if v is None or type(v) is str else str(v) for v in values], pa.string())
    if arr.null_count:
        arr = pc.coalesce(arr, _generated_ids(n))
    return arr


def _generated_ids(n: int) -> pa.Array:
    prefix = os.urandom(12).hex() + "-"
    idx = pc.cast(pa.array(range(n), pa.int64()), pa.string())
    return pc.binary_join_element_wise(prefix, idx, "")


def _timestamps(records: list, n: int, now_us: int | None) -> pa.Array:
    now = time.time_ns() // 1000 if now_us is None else now_us
    values = [r.get("timestamp") for r in records]
    kinds = set(map(type, values))
    if kinds == {_NONE}:
        return pa.array([now] * n, pa.int64()).cast(TIMESTAMP_TYPE)
    kinds.discard(_NONE)
    if bool in kinds or kinds - {str, int, float}:
        i = next(i for i, v in enumerate(values) if v is not None and (type(v) not in (str, int, float)))
        raise InvalidRequest(f"record {i}: 'timestamp' must be an RFC 3339 string or epoch milliseconds",
                             detail={"record": i})
    arr = None
    if kinds == {str}:
        arr = _parse_rfc3339(pa.array(values, pa.string()))
    elif kinds <= {int, float}:
        arr = _from_epoch_ms(values)
    if arr is None:  # mixed forms, or a bad value somewhere: value by value (names the record)
        us = [_one_timestamp(i, v) for i, v in enumerate(values)]
        arr = pa.array(us, pa.int64()).cast(TIMESTAMP_TYPE)
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(now, pa.int64()).cast(TIMESTAMP_TYPE))
    return arr


def _parse_rfc3339(arr: pa.Array) -> pa.Array | None:
    try:
        return pc.cast(arr, TIMESTAMP_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:  # no zone offset: UTC
        return pc.assume_timezone(pc.cast(arr, pa.timestamp("us")), "UTC")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z


def _from_epoch_ms(values: list) -> pa.Array | None:
    try:
        ms = pa.array(values, pa.float64()) if float in set(map(type, values)) else _int64_array(values)
    except (OverflowError, pa.ArrowInvalid):
        return None
    lo, hi = pc.min_max(ms).values()
    if lo.is_valid and (lo.as_py() < _MIN_MS or hi.as_py() > _MAX_MS):
        return None
    us = pc.multiply(ms, 1000)
    if pa.types.is_floating(us.type):
        us = pc.cast(pc.round(us), pa.int64())
    return pc.cast(us, TIMESTAMP_TYPE)


def _one_timestamp(i: int, v: Any) -> int | None:
    if v is None:
        return None
    if type(v) is str:
        arr = _parse_rfc3339(pa.array([v], pa.string()))
    else:
        arr = _from_epoch_ms([v])
    if arr is None:
        _raise_bad_timestamp_at(i, v)
    return arr.cast(pa.int64())[0].as_py()


def _raise_bad_timestamp_at(i: int, v: Any) -> None:
    shown = v if len(repr(v)) < 60 else repr(v)[:57] + "..."
    raise InvalidRequest(f"record {i}: invalid timestamp {shown!r}; use RFC 3339 (2024-01-31T12:00:00Z)"
                         " or epoch milliseconds", detail={"record": i})
