import pyarrow as pa
import pytest

from clients.errors import InvalidRequest
from flight_server.schema import conform, detect_time_column, evolve, normalize_schema


def test_new_column_added_nullable():
    base = pa.schema([("a", pa.int64())])
    out = evolve(base, pa.schema([("a", pa.int64()), ("b", pa.string())]))
    assert out.names == ["a", "b"] and out.field("b").nullable


def test_int_widens_to_float_both_ways():
    base = pa.schema([("a", pa.int64())])
    assert evolve(base, pa.schema([("a", pa.float64())])).field("a").type == pa.float64()
    fbase = pa.schema([("a", pa.float64())])
    assert evolve(fbase, pa.schema([("a", pa.int32())])) is fbase


def test_conflict_names_column():
    base = pa.schema([("a", pa.int64()), ("s", pa.string())])
    with pytest.raises(InvalidRequest, match="'s'"):
        evolve(base, pa.schema([("s", pa.int64())]))
    with pytest.raises(InvalidRequest, match="'a'"):
        evolve(base, pa.schema([("a", pa.string())]))


def test_case_insensitive_duplicates_rejected():
    with pytest.raises(InvalidRequest, match="duplicate"):
        normalize_schema(pa.schema([("A", pa.int64()), ("a", pa.int64())]))


def test_normalize_plain_types():
    s = normalize_schema(pa.schema([("d", pa.dictionary(pa.int32(), pa.string())), ("l", pa.large_string())]))
    assert s.field("d").type == pa.string() and s.field("l").type == pa.string()


def test_conform_fills_and_casts():
    target = pa.schema([("a", pa.float64()), ("b", pa.string())])
    out = conform(pa.table({"A": pa.array([1, 2], pa.int64())}), target)
    assert out.schema == target
    assert out.column("a").to_pylist() == [1.0, 2.0] and out.column("b").null_count == 2


def test_time_column_detection():
    s = pa.schema([("x", pa.int64()), ("ts", pa.timestamp("us")), ("timestamp", pa.timestamp("ms"))])
    assert detect_time_column(s) == "timestamp"
    assert detect_time_column(pa.schema([("x", pa.int64())])) is None
