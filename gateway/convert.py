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

Fast path (:func:`write_body_to_arrow`): a batch body of flat records is parsed by Arrow's
JSON reader in C++ (without the GIL, so the gateway's threads convert in parallel) straight
into columns. It accepts only what it converts exactly as the path above would (same
columns, order, types and values); anything else (nested payload values, timestamp-looking
strings, NaN/Infinity literals, ambiguous key order, any error) takes the path above, which
gives the answer or the precise 400. A body nested deeper than that shape never reaches
Arrow's reader, whose inference recurses once per level (a hostile body would exhaust the
stack and take the process down): :func:`_shallow` checks the depth first.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

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


def write_body_to_arrow(raw: bytes, now_us: int | None = None) -> tuple[str, pa.Table]:
    """``(table, Arrow table)`` of a write body (single record or batch); bad input raises
    ``InvalidRequest``. Large batch bodies take the fast path (module docstring)."""
    if len(raw) >= FAST_PATH_MIN_BYTES:
        fast = _fast_batch(raw, now_us)
        if fast is not None:
            return fast
    table, records = split_write_body(parse_json(raw))
    return table, records_to_arrow(records, now_us)


FAST_PATH_MIN_BYTES = 4096  # below this, orjson + columns is as fast as the JSON reader
_BOM = b"\xef\xbb\xbf"
_FIRST_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"')
_TS_AS_STRING = pa.schema([pa.field("records", pa.list_(pa.struct([pa.field("timestamp", pa.string())])))])
_FAST_TYPES = frozenset({pa.bool_(), pa.int64(), pa.float64(), pa.string()})
_INT64_LIMIT = 2.0**63
FAST_PATH_MAX_BYTES = 16 * 1024 * 1024
_FAST_DEPTH = 4  # {body: [records: {record: {payload: scalars
_STRUCTURE = bytes(c for c in range(256) if c not in b'{}[]"')  # bytes to drop when measuring depth
_LISTS_AS_OBJECTS = bytes.maketrans(b"[]", b"{}")
_STRING = re.compile(rb'"[^"]*"')


def _shallow(raw: bytes, limit: int) -> bool:
    """Whether ``raw`` is balanced JSON structure nested at most ``limit`` deep, brackets inside
    strings not counted. Bytes operations only (C loops, no per-byte Python): escaped
    backslashes and quotes are dropped, then everything but brackets and quotes; adjacent
    quotes go in pairs (which never changes whether a bracket is inside a string), strings
    still holding brackets go whole, and each pass over ``{}`` removes one level."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = raw.translate(None, _STRUCTURE).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = _STRING.sub(b"", skeleton)
        if b'"' in skeleton:
            return False
    skeleton = skeleton.translate(_LISTS_AS_OBJECTS)
    for _ in range(limit):
        skeleton = skeleton.replace(b"{}", b"")
        if not skeleton:
            return True
    return False


def _fast_batch(raw: bytes, now_us: int | None) -> tuple[str, pa.Table] | None:
    """The fast path; None when the body needs the orjson path (see the module docstring)."""
    if raw.startswith(_BOM) or len(raw) > FAST_PATH_MAX_BYTES:
        return None  # orjson refuses a BOM; Arrow skips it
    if not _shallow(raw, _FAST_DEPTH):
        return None  # nested payload values, or a hostile body (Arrow's reader recurses on depth)
    if not raw.isascii():
        try:
            raw.decode()  # Arrow does not validate UTF-8; orjson does (400 on bad bytes)
        except UnicodeDecodeError:
            return None
    # Arrow infers timestamp[s] from ISO 8601 strings: read the record timestamps as text
    # (when the body sends strings there) so they are parsed by the same rule as below
    schema = _TS_AS_STRING if _FIRST_TIMESTAMP.search(raw) else None
    try:
        parsed = pajson.read_json(
            pa.py_buffer(raw),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(raw) + 64),
            parse_options=pajson.ParseOptions(explicit_schema=schema,
                                              newlines_in_values=b"\n" in raw or b"\r" in raw))
    except (pa.ArrowException, ValueError, OverflowError):
        return None
    if parsed.num_rows != 1 or sorted(parsed.column_names) != ["records", "table"]:
        return None
    name = parsed.column("table")
    records = parsed.column("records")
    if (name.type != pa.string() or name.null_count or records.null_count or records.num_chunks != 1
            or not pa.types.is_list(records.type) or not pa.types.is_struct(records.type.value_type)):
        return None
    table = name[0].as_py()
    items = records.chunk(0).flatten()
    n = len(items)
    if not table or n == 0 or items.null_count:
        return None
    fields = {f.name: i for i, f in enumerate(items.type)}
    if "payload" not in fields or not set(fields) <= RECORD_KEYS:
        return None
    columns = items.flatten()
    payload = columns[fields["payload"]]
    if not pa.types.is_struct(payload.type) or payload.null_count:
        return None
    ids = _fast_ids(columns[fields["id"]] if "id" in fields else None, n)
    stamps = _fast_timestamps(columns[fields["timestamp"]] if "timestamp" in fields else None, n, now_us)
    keys = _fast_payload_keys(payload)
    if ids is None or stamps is None or keys is None:
        return None
    names, arrays = ["id", "timestamp"], [ids, stamps]
    for col, arr in zip(keys, payload.flatten(), strict=True):
        if arr.type == pa.null():
            continue  # all null: left out, as in records_to_arrow
        if arr.type not in _FAST_TYPES or (arr.type == pa.float64() and not _plain_floats(arr)):
            return None
        names.append(col)
        arrays.append(arr)
    return table, pa.Table.from_arrays(arrays, names=names)


def _fast_payload_keys(payload: pa.StructArray) -> list[str] | None:
    """Column names in records_to_arrow's order, or None when that order is not certain.

    Arrow orders the struct's fields by first appearance, so the first record's keys come
    first. Those with a value in row 0 are certainly the first record's; a key null in row 0
    may be the first record's (explicit null) or a later one: when the keys after the last
    one valid in row 0 are already sorted, both readings give the same order."""
    keys = [f.name for f in payload.type]
    last_valid = -1
    for i, child in enumerate(payload.flatten()):
        if child[0].is_valid:
            last_valid = i
    tail = keys[last_valid + 1:]
    if tail != sorted(tail):
        return None
    out = []
    seen = {"id", "timestamp"}
    for key in keys:
        col = RENAME_PREFIX + key if key.lower() in RESERVED else key
        if not key or col.lower() in seen:
            return None  # the orjson path names the problem
        seen.add(col.lower())
        out.append(col)
    return out


def _plain_floats(arr: pa.Array) -> bool:
    """Finite (JSON has no NaN/Infinity; Arrow's reader takes them) and not an integer that
    overflowed int64 (the orjson path refuses those in an integer column)."""
    if arr.null_count == len(arr):
        return True
    if not pc.all(pc.is_finite(arr)).as_py():
        return False
    return pc.max(pc.abs(arr)).as_py() < _INT64_LIMIT


def _fast_ids(arr: pa.Array | None, n: int) -> pa.Array | None:
    if arr is None or arr.type == pa.null():
        return _generated_ids(n)
    if arr.type == pa.int64():
        arr = pc.cast(arr, pa.string())
    elif arr.type != pa.string():
        return None
    if arr.null_count:
        arr = pc.coalesce(arr, _generated_ids(n))
    return arr


def _fast_timestamps(arr: pa.Array | None, n: int, now_us: int | None) -> pa.Array | None:
    now = time.time_ns() // 1000 if now_us is None else now_us
    if arr is None or arr.type == pa.null():
        return pa.array([now] * n, pa.int64()).cast(TIMESTAMP_TYPE)
    if arr.type == pa.string():
        out = _parse_rfc3339(arr)
    elif arr.type == pa.int64() or (arr.type == pa.float64() and _plain_floats(arr)):
        out = _epoch_ms_array(arr)
    else:
        return None
    if out is None:
        return None
    if out.null_count:
        out = pc.fill_null(out, pa.scalar(now, pa.int64()).cast(TIMESTAMP_TYPE))
    return out


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
    return _epoch_ms_array(ms)


def _epoch_ms_array(ms: pa.Array) -> pa.Array | None:
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
