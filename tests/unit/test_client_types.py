"""The engine's result types (flight_server/query/client_types.py), in process."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from flight_server.query.engine import QueryEngine


@pytest.fixture(scope="module")
def engine():
    e = QueryEngine([])
    yield e
    e.close()


def run(engine, sql: str, params=None, schema_only: bool = False) -> pa.Table:
    result = engine.execute(sql, params, lambda name, sets: None, schema_only=schema_only)
    try:
        return result.reader.read_all()
    finally:
        result.close()


@pytest.mark.parametrize(("sql", "arrow_type", "value"), [
    ("SELECT INTERVAL 90 MINUTE AS c", pa.duration("us"), dt.timedelta(minutes=90)),
    ("SELECT INTERVAL 1 DAY * ? AS c", pa.duration("us"), dt.timedelta(days=3)),
    ("SELECT 340282366920938463463374607431768211455::UHUGEINT AS c", pa.string(), str(2**128 - 1)),
    ("SELECT '10101'::BIT AS c", pa.string(), "10101"),
    ("SELECT '12:30:00+02'::TIMETZ AS c", pa.string(), "12:30:00+02"),
    ("SELECT 'b'::ENUM('a', 'b') AS c", pa.string(), "b"),
    ("SELECT union_value(s := 'x')::UNION(i INTEGER, s VARCHAR) AS c", pa.string(), "x"),
    ("SELECT 5::BIGNUM AS c", pa.string(), "5"),
    ("SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' AS c", pa.timestamp("us", tz="UTC"),
     dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
    ("SELECT 7::HUGEINT AS c", pa.decimal128(38, 0), 7),
    ("SELECT [1, 2] AS c", pa.list_(pa.field("l", pa.int32())), [1, 2]),
])
def test_mapped_types_and_values(engine, sql, arrow_type, value):
    params = [3] if "?" in sql else None
    table = run(engine, sql, params)
    assert table.schema.field("c").type == arrow_type
    assert table.column("c").to_pylist() == [value]
    assert run(engine, sql, params, schema_only=True).schema == table.schema


def test_nested_values_keep_nulls_and_structure(engine):
    sql = ("SELECT CASE WHEN i = 0 THEN {'d': INTERVAL 1 DAY, 'e': 'a'::ENUM('a')} END AS s, "
           "CASE WHEN i = 0 THEN [INTERVAL 1 HOUR, NULL] END AS l, "
           "CASE WHEN i = 0 THEN MAP {'k': INTERVAL 2 DAY} END AS m FROM range(2) t(i) ORDER BY i")
    table = run(engine, sql)
    assert table.schema.field("s").type == pa.struct([("d", pa.duration("us")), ("e", pa.string())])
    assert table.to_pylist() == [
        {"s": {"d": dt.timedelta(days=1), "e": "a"}, "l": [dt.timedelta(hours=1), None],
         "m": [("k", dt.timedelta(days=2))]},
        {"s": None, "l": None, "m": None},
    ]
    assert run(engine, sql, schema_only=True).schema == table.schema


def test_duplicate_names_and_untouched_statements(engine):
    table = run(engine, "SELECT INTERVAL 1 DAY AS a, 2 AS a")
    assert table.column_names == ["a", "a"] and table.schema.field(0).type == pa.duration("us")
    assert table.column(1).to_pylist() == [2]
    plain = run(engine, "SELECT 1 AS x, 'y' AS y")
    assert plain.schema == pa.schema([("x", pa.int32()), ("y", pa.string())])


def test_request_cursors_see_the_engines_settings(engine):
    """Requests run on cursors: the engine's time zone and footer cache must be theirs too (a
    plain SET is the connection's own: cursors saw the machine's zone and no footer cache)."""
    cur, _ = engine._cursors.take()
    try:
        got = cur.execute("SELECT current_setting('TimeZone'), current_setting('parquet_metadata_cache')").fetchone()
    finally:
        cur.close()
    assert got == ("UTC", True)
