"""JSON records -> Arrow (gateway.convert) and result formats (gateway.output), no processes."""

from __future__ import annotations

import datetime as dt
import decimal
import io

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
