"""JSON records -> Arrow (gateway.convert) and result formats (gateway.output), no processes."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from unittest import mock

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.errors import InvalidRequest
from gateway import convert, output

NOW = 1_700_000_000_000_000


def table(records):
    return convert.records_to_arrow(records, now_us=NOW)


def test_columns_types_and_order():
    t = table([{"id": "a", "timestamp": 1_000, "payload": {"z": 1, "b": True, "f": 1.5, "s": "x", "o": {"k": [1]}}},
               {"payload": {"z": 2, "late": "new", "a": None}}])
    assert t.column_names == ["id", "timestamp", "z", "b", "f", "s", "o", "late"]  # 'a': all null, left out
    assert t.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert [t.schema.field(c).type for c in ("z", "b", "f", "s", "o")] == [
        pa.int64(), pa.bool_(), pa.float64(), pa.string(), pa.string()]
    assert t.column("timestamp").cast(pa.int64()).to_pylist() == [1_000_000, NOW]
    assert orjson.loads(t.column("o")[0].as_py()) == {"k": [1]}
    assert t.column("late").to_pylist() == [None, "new"]
    ids = t.column("id").to_pylist()
    assert ids[0] == "a" and ids[1] and ids[1] != "a"


def test_int_and_float_mix_is_float():
    t = table([{"payload": {"v": 1}}, {"payload": {"v": 2.5}}, {"payload": {"v": None}}])
    assert t.schema.field("v").type == pa.float64() and t.column("v").to_pylist() == [1.0, 2.5, None]


def test_ints_with_nulls_stay_int64():
    t = table([{"payload": {"v": 1}}, {"payload": {"v": None}}, {"payload": {}}])
    assert t.schema.field("v").type == pa.int64() and t.column("v").to_pylist() == [1, None, None]


def test_reserved_payload_keys_are_renamed():
    t = table([{"id": "rec", "payload": {"id": 7, "TIMESTAMP": "t"}}])
    assert t.column("id").to_pylist() == ["rec"]
    assert t.column("payload_id").to_pylist() == [7] and t.column("payload_TIMESTAMP").to_pylist() == ["t"]


@pytest.mark.parametrize("records, mention", [
    ([{"payload": {"v": 1}}, {"payload": {"v": "x"}}], "'v'"),
    ([{"payload": {"v": True}}, {"payload": {"v": 1}}], "'v'"),
    ([{"payload": {"v": 1.5}}, {"payload": {"v": False}}], "'v'"),
    ([{"payload": {"v": {"a": 1}}}, {"payload": {"v": "x"}}], "'v'"),
    ([{"payload": {"v": 2**63}}], "'v'"),
    ([{"payload": {"a": 1, "A": 2}}], "'A'"),
    ([{"payload": {"id": 1, "payload_id": 2}}], "payload_id"),
    ([{"payload": {"": 1}}], "empty"),
    ([{"payload": {}}, {"payload": 5}], "record 1"),
    ([{"payload": {}}, {}], "record 1"),
    ([{"payload": {}}, 3], "record 1"),
    ([{"payload": {}, "other": 1}], "other"),
    ([{"payload": {}, "id": {"x": 1}}], "record 0"),
    ([{"payload": {}}, {"payload": {}, "timestamp": "noon"}], "record 1"),
    ([{"payload": {}}, {"payload": {}, "timestamp": True}], "record 1"),
    ([{"payload": {}, "timestamp": 10**18}], "record 0"),
    ([{"payload": {}, "timestamp": "2024-01-01T00:00:00Z"}, {"payload": {}, "timestamp": "bad"}], "record 1"),
])
def test_bad_records_name_the_field_or_record(records, mention):
    with pytest.raises(InvalidRequest) as err:
        table(records)
    assert mention in err.value.message


def test_timestamps_mixed_forms():
    t = table([{"payload": {}, "timestamp": "2024-01-01T00:00:00Z"}, {"payload": {}, "timestamp": 1_704_067_200_000},
               {"payload": {}, "timestamp": "2024-01-01T01:00:00+01:00"}, {"payload": {}, "timestamp": 1.5},
               {"payload": {}, "timestamp": "2024-01-01T00:00:00"}, {"payload": {}}])
    us = t.column("timestamp").cast(pa.int64()).to_pylist()
    assert us == [1_704_067_200_000_000] * 3 + [1_500, 1_704_067_200_000_000, NOW]


def test_split_write_body():
    assert convert.split_write_body({"table": "t", "payload": {"a": 1}, "id": "x"}) == (
        "t", [{"payload": {"a": 1}, "id": "x"}])
    assert convert.split_write_body({"table": "t", "records": [{"payload": {}}]}) == ("t", [{"payload": {}}])
    for bad in ([], {"payload": {}}, {"table": 5, "payload": {}}, {"table": "t"}, {"table": "t", "records": {}},
                {"table": "t", "records": []}, {"table": "t", "records": [], "payload": {}},
                {"table": "t", "payload": {}, "x": 1}):
        with pytest.raises(InvalidRequest):
            convert.split_write_body(bad)
    with pytest.raises(InvalidRequest, match="malformed JSON"):
        convert.parse_json(b"{")


json_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
                        st.dictionaries(st.text(max_size=3), st.integers(-1000, 1000), max_size=2),
                        st.lists(st.integers(-1000, 1000), max_size=2))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "id"]), json_values, max_size=4),
                min_size=1, max_size=6))
def test_any_batch_converts_or_is_a_clean_400(payloads):
    records = orjson.loads(orjson.dumps([{"payload": p} for p in payloads]))
    try:
        t = table(records)
    except InvalidRequest as exc:
        assert exc.message and "Traceback" not in exc.message
        return
    assert t.num_rows == len(payloads)
    for key, col in (("a", "a"), ("b", "b"), ("c", "c"), ("id", "payload_id")):
        values = [p.get(key) for p in payloads]
        if all(v is None for v in values):
            assert col not in t.column_names
            continue
        got = t.column(col).to_pylist()
        for v, g in zip(values, got, strict=True):
            if isinstance(v, dict | list):
                assert orjson.loads(g) == v
            else:
                assert g == v


# -- the fast path (Arrow's JSON reader) gives exactly what the orjson path gives -----------------

def _deterministic_ids(n):
    return pa.array([f"gen-{i}" for i in range(n)], pa.string())


def _both(raw: bytes):
    """(fast result or None, orjson-path result or the InvalidRequest it raised)."""
    with mock.patch.object(convert, "_generated_ids", _deterministic_ids):
        fast = convert._fast_batch(raw, NOW)
        try:
            table_name, records = convert.split_write_body(convert.parse_json(raw))
            slow = (table_name, convert.records_to_arrow(records, now_us=NOW))
        except InvalidRequest as exc:
            slow = exc
    return fast, slow


def _assert_same(raw: bytes) -> bool:
    """The fast path either steps aside or matches the orjson path column for column; the
    public entry point answers like the orjson path either way. True if the fast path took it."""
    fast, slow = _both(raw)
    if fast is not None:
        assert not isinstance(slow, InvalidRequest), f"fast path accepted what the orjson path refuses: {slow}"
        assert fast[0] == slow[0]
        assert fast[1].schema == slow[1].schema, (fast[1].schema, slow[1].schema)
        assert fast[1].equals(slow[1]), (fast[1].to_pylist(), slow[1].to_pylist())
    with mock.patch.object(convert, "_generated_ids", _deterministic_ids):
        if isinstance(slow, InvalidRequest):
            with pytest.raises(InvalidRequest) as err:
                convert.write_body_to_arrow(raw + b" " * convert.FAST_PATH_MIN_BYTES, now_us=NOW)
            assert err.value.message == slow.message
        else:
            got = convert.write_body_to_arrow(raw + b" " * convert.FAST_PATH_MIN_BYTES, now_us=NOW)
            assert got[0] == slow[0] and got[1].equals(slow[1])
    return fast is not None


def _body(records, table="t") -> bytes:
    return json.dumps({"table": table, "records": records}, ensure_ascii=False).encode()  # any int size


def test_fast_path_takes_a_plain_batch():
    records = [{"id": f"r{i}", "timestamp": f"2024-01-01T00:00:{i % 60:02d}.5Z",
                "payload": {"user": i, "event": "view", "value": i / 3, "ok": i % 2 == 0, "none": None}}
               for i in range(200)]
    assert _assert_same(_body(records))
    # epoch milliseconds, integer ids, generated ids, a missing timestamp
    assert _assert_same(_body([{"id": i, "timestamp": 1_704_067_200_000 + i, "payload": {"v": i}} for i in range(50)]))
    assert _assert_same(_body([{"timestamp": 1_704_067_200_000.5, "payload": {"v": 1.5}}, {"payload": {"v": 2}}]))
    # pretty-printed (newlines between tokens)
    assert _assert_same(orjson.dumps({"table": "t", "records": records[:5]}, option=orjson.OPT_INDENT_2))


@pytest.mark.parametrize("raw", [
    b'{"table":"t","records":[{"payload":{"a":NaN}}]}',  # not JSON: orjson refuses, Arrow would not
    b'{"table":"t","records":[{"payload":{"a":-Infinity}}]}',
    b'\xef\xbb\xbf{"table":"t","records":[{"payload":{"a":1}}]}',  # BOM
    b'{"table":"t","records":[{"payload":{"a":"x\xff"}}]}',  # invalid UTF-8
    b'{"table":"t","records":[{"payload":{"a":9223372036854775808}}]}',  # int64 overflow: 400
    b'{"table":"t","records":[{"payload":{"a":1}}]} {"table":"t","records":[]}',  # two documents
    b'{"table":"t","records":[{"payload":{"a":1,"a":2}}]}',  # duplicate key: the last one wins
    b'{"table":"t","records":[{"payload":{"a":1}}],"table":"u"}',
    b'{"table":"t","records":[{"payload":{"d":"2024-01-01"}},{"payload":{"d":"2024-01-02T00:00:00Z"}}]}',
    b'{"table":"t","records":[{"payload":{"a":{"b":1}}},{"payload":{"a":[1]}}]}',
    b'{"table":"t","records":[{"payload":{"a":1}},{"payload":{"a":"x"}}]}',
    b'{"table":"t","records":[{"payload":{"a":1}},{"payload":null}]}',
    b'{"table":"t","records":[{"payload":{"a":1}},{"other":1,"payload":{}}]}',
    b'{"table":"t","records":[{"payload":{"a":1,"A":2}}]}',
    b'{"table":"t","records":[{"payload":{"id":1,"payload_id":2}}]}',
    b'{"table":"t","records":[{"id":1.5,"payload":{}}]}',
    b'{"table":"t","records":[{"timestamp":"noon","payload":{}}]}',
    b'{"table":"t","records":[{"timestamp":1e300,"payload":{}}]}',
    b'{"table":"t","records":[{"timestamp":true,"payload":{}}]}',
    b'{"table":"t","records":[{"timestamp":"2024-01-01T00:00:00Z","payload":{}},{"timestamp":5,"payload":{}}]}',
    b'{"table":"t","records":[]}',
    b'{"table":"","records":[{"payload":{}}]}',
    b'{"table":5,"records":[{"payload":{}}]}',
    b'{"table":"t","records":[1]}',
    b'{"table":"t","records":[{"payload":{}}],"x":1}',
    b'{"table":"t","payload":{"a":1}}',
    b'[1, 2]',
    b'{"table":"t","records":[{"payload":{"b":1}},{"payload":{"z":1,"a":1}}]}',  # late keys: sorted
    b'{"table":"t","records":[{"payload":{"b":1,"z":null}},{"payload":{"a":1}}]}',  # explicit null first
    b'{"table":"t","records":[{"payload":{"b":null}},{"payload":{"a":1,"b":2}}]}',
    b'{"table":"t","records":[{"payload":{"id":7,"Timestamp":"x","v":1}}]}',
])
def test_fast_path_steps_aside_or_matches(raw):
    _assert_same(raw)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "2024-01-01", "2024-01-01T00:00:00Z", "12", "é", "true"]),
    st.dictionaries(st.sampled_from(["k"]), st.integers(0, 3), max_size=1), st.lists(st.integers(0, 3), max_size=1))
record_ids = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.sampled_from(["a", "b", "2024-01-01"]),
                       st.floats(allow_nan=False, allow_infinity=False))
record_times = st.one_of(st.none(), st.integers(-(10**14), 10**14), st.floats(-1e13, 1e13),
                         st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.250+02:00",
                                          "2024-01-01T00:00:00", "noon"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries(
    {"payload": st.dictionaries(st.sampled_from(["a", "b", "c", "z", "id", "B"]), json_scalars, max_size=4)},
    optional={"id": record_ids, "timestamp": record_times}), min_size=1, max_size=6))
def test_fast_path_equals_the_orjson_path(records):
    _assert_same(_body(records))


@pytest.mark.parametrize("raw, depth", [
    (b"{}", 1), (b'{"a":[1,{"b":2}]}', 3), (b'{"a":"[[[{{{"}', 1), (b'{"a":"x\\"[[[["}', 1),
    (b'{"a":"x\\\\"}', 1), (b'{"a":"}}}}}}","b":[[[[[]]]]]}', 6), (b'{"a":"[","b":"]","c":[[1]]}', 3),
    (b'{"a":"\\\\\\"[["}', 1), (b'[{"a":[{}]},{"b":{"c":{}}}]', 4),
])
def test_shallow_measures_depth_outside_strings(raw, depth):
    assert convert._shallow(raw, depth) and not convert._shallow(raw, depth - 1)


@pytest.mark.parametrize("raw", [b'{"a":1', b'{"a":1}}', b'{"a":"x}', b"]]][[[", b'{"a":"x\\\\"}}'])
def test_shallow_refuses_unbalanced_structure(raw):
    assert not convert._shallow(raw, 100)


@pytest.mark.parametrize("opener, closer", [(b"[", b"]"), (b'{"x":', b"}")])
def test_deeply_nested_body_is_a_clean_400(opener, closer):
    """Arrow's JSON reader would exhaust the stack on such a body: it never gets it."""
    depth = 200_000
    raw = b'{"table":"t","records":[{"payload":{"a":' + opener * depth + b"1" + closer * depth + b"}}]}"
    assert convert._fast_batch(raw, NOW) is None
    with pytest.raises(InvalidRequest):
        convert.write_body_to_arrow(raw)


typed_values = {
    "int": st.integers(-(2**63), 2**63 - 1), "float": st.floats(allow_nan=False, allow_infinity=False),
    "num": st.one_of(st.integers(-(2**53), 2**53), st.floats(-1e300, 1e300)), "bool": st.booleans(),
    "str": st.text(max_size=4)}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fast_path_equals_the_orjson_path_on_flat_records(data):
    """Records the fast path takes (one JSON type per key, nulls and missing keys anywhere)."""
    kinds = data.draw(st.dictionaries(st.sampled_from(["a", "b", "c", "z", "id", "Timestamp"]),
                                      st.sampled_from(sorted(typed_values)), min_size=1, max_size=5))
    payload = st.fixed_dictionaries({}, optional={k: st.one_of(st.none(), typed_values[v]) for k, v in kinds.items()})
    ids = data.draw(st.sampled_from([st.none(), st.integers(0, 10**12), st.text(max_size=3)]))
    times = data.draw(st.sampled_from([st.none(), st.integers(0, 2 * 10**12),
                                       st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+01:00"])]))
    records = data.draw(st.lists(st.fixed_dictionaries({"payload": payload}, optional={"id": ids, "timestamp": times}),
                                 min_size=1, max_size=8))
    _assert_same(_body(records))


def test_pick_format():
    assert output.pick_format(None, None) == "json"
    assert output.pick_format("CSV", "application/json") == "csv"
    assert output.pick_format(None, "text/csv;q=0.5, application/vnd.apache.parquet") == "parquet"
    assert output.pick_format(None, "text/html, */*") == "json"
    assert output.pick_format(None, "application/vnd.apache.arrow.stream") == "arrow"
    with pytest.raises(InvalidRequest):
        output.pick_format("xml", None)


def test_json_stream_values_and_limit():
    batch = pa.record_batch({
        "ts": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None], pa.timestamp("us", tz="UTC")),
        "d": pa.array([decimal.Decimal("190"), decimal.Decimal("1.5")], pa.decimal128(10, 1)),
        "b": pa.array([b"\x00\x01", None], pa.binary()),
        "l": pa.array([[1, 2], None], pa.list_(pa.int64())),
    })
    chunks = output.stream_json(batch.schema, output.limited(None, iter([batch, batch]), 3), 0.0)
    doc = orjson.loads(b"".join(chunks))
    assert doc["row_count"] == 3 and len(doc["rows"]) == 3
    assert doc["rows"][0] == ["2024-01-01T00:00:00+00:00", 190, "AAE=", [1, 2]]
    assert doc["rows"][1][1] == 1.5 and doc["columns"][0] == {"name": "ts", "type": "timestamp[us, tz=UTC]"}


def test_binary_streams_parse_back():
    batch = pa.record_batch({"i": [1, 2, 3], "s": ["a", None, "c"], "st": [{"x": 1}, None, {"x": 3}]})
    arrow = b"".join(output.stream("arrow", batch.schema, iter([batch, batch]), 0.0))
    assert pa.ipc.open_stream(arrow).read_all().num_rows == 6
    parquet = b"".join(output.stream("parquet", batch.schema, iter([batch, batch]), 0.0))
    assert pq.read_table(io.BytesIO(parquet)).column("i").to_pylist() == [1, 2, 3, 1, 2, 3]
    csv = b"".join(output.stream("csv", batch.schema, iter([batch]), 0.0)).decode()
    assert csv.splitlines()[0] == '"i","s","st"' and '"{""x"":1}"' in csv
