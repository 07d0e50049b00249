"""Every DuckDB result type through every output a user reads: ADBC (Arrow, pandas), Polars,
REST (json, csv, arrow, parquet) and the CLI (table, csv, json, parquet), against a real node.

The node maps the types clients cannot take (flight_server/query/client_types.py); here each
output must answer without an error (never a 500, never a traceback), the schema a client
gets from prepare equals the one DoGet streams, and the mapped values are the right ones.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from tests.fixtures.node import NodeProcess

REPO = Path(__file__).resolve().parents[2]

# (name, DuckDB expression); every column also holds a NULL in its second row
TYPES = [
    ("interval", "INTERVAL 90 MINUTE"),
    ("interval_months", "INTERVAL 1 MONTH + INTERVAL 3 DAY"),
    ("ts_difference", "TIMESTAMP '2024-01-02 03:00' - TIMESTAMP '2024-01-01 00:00'"),
    ("hugeint", "170141183460469231731687303715884105727::HUGEINT"),
    ("uhugeint", "340282366920938463463374607431768211455::UHUGEINT"),
    ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID"),
    ("bit", "'10101'::BIT"),
    ("timetz", "'12:30:00+02'::TIMETZ"),
    ("time", "'12:30:00'::TIME"),
    ("enum", "'b'::ENUM('a', 'b')"),
    ("union", "union_value(i := 1)::UNION(i INTEGER, s VARCHAR)"),
    ("map", "MAP {'a': 1}"),
    ("map_of_intervals", "MAP {'a': INTERVAL 1 DAY}"),
    ("list", "[1, 2]"),
    ("nested_lists", "[[1], [2, 3]]"),
    ("struct", "{'x': 1, 'y': 'z'}"),
    ("nested_interval", "[{'a': [1], 'b': {'c': INTERVAL 1 DAY, 'e': 'b'::ENUM('a', 'b')}}]"),
    ("array", "[1, 2]::INTEGER[2]"),
    ("array_of_intervals", "[INTERVAL 1 DAY, INTERVAL 2 HOUR]::INTERVAL[2]"),
    ("blob", "'\\xAA\\xBB'::BLOB"),
    ("timestamp_ns", "'2024-01-01 00:00:00.123456789'::TIMESTAMP_NS"),
    ("timestamp_s", "'2024-01-01 00:00:00'::TIMESTAMP_S"),
    ("timestamptz", "'2024-01-01 00:00:00+00'::TIMESTAMPTZ"),
    ("decimal38", "12345678901234567890.123456789::DECIMAL(38, 10)"),
    ("bignum", "12345678901234567890123456789012345678901234567890::BIGNUM"),
    ("json", "'{\"a\": 1}'::JSON"),
    ("variant", "{'a': [1, 2]}::VARIANT"),
    ("date", "DATE '2024-01-01'"),
    ("ubigint", "18446744073709551615::UBIGINT"),
    ("float", "1.5::FLOAT"),
]
IDS = [name for name, _ in TYPES]


def sql_of(expr: str) -> str:
    return f"SELECT CASE WHEN i = 0 THEN {expr} END AS c FROM range(2) AS t(i) ORDER BY i"


def all_types_sql() -> str:
    cols = ", ".join(f"CASE WHEN i = 0 THEN {expr} END AS {name}" for name, expr in TYPES)
    return f"SELECT {cols} FROM range(2) AS t(i) ORDER BY i"


def client_safe(t: pa.DataType) -> bool:
    """No Arrow type that pandas, Polars, CSV or Parquet cannot take; time zones spelled UTC."""
    if pa.types.is_interval(t) or pa.types.is_union(t) or pa.types.is_dictionary(t):
        return False
    if isinstance(t, pa.ExtensionType):
        return False
    if pa.types.is_timestamp(t) and t.tz is not None:
        return t.tz == "UTC"
    return all(client_safe(t.field(i).type) for i in range(t.num_fields))


@pytest.fixture(scope="module")
def types_node(tmp_path_factory):
    n = NodeProcess(tmp_path_factory.mktemp("types") / "node")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def adbc(types_node):
    with types_node.adbc() as conn:
        yield conn


@pytest.fixture(scope="module")
def http(types_node):
    with httpx.Client(base_url=types_node.rest + "/api/v1", timeout=60.0) as c:
        yield c


@pytest.mark.parametrize("expr", [e for _, e in TYPES], ids=IDS)
def test_adbc_pandas_polars(types_node, adbc, expr):
    sql = sql_of(expr)
    with adbc.cursor() as cur:
        prepared = cur.adbc_execute_schema(sql)  # schema only
        cur.execute(sql)
        table = cur.fetch_arrow_table()
        assert table.num_rows == 2
        assert client_safe(table.schema.field("c").type), table.schema
        assert prepared == table.schema  # schema-only (prepare / GetSchema) and DoGet agree
        assert types_node.client().flight_info(sql).schema == table.schema  # GetFlightInfo too
        cur.execute(sql)
        df = cur.fetch_df()
    assert len(df) == 2 and df["c"].isna().tolist() == [False, True]
    frame = pl.from_arrow(table)
    assert frame.height == 2 and frame["c"].null_count() == 1
    assert pl.read_database(sql, adbc).height == 2


@pytest.mark.parametrize("expr", [e for _, e in TYPES], ids=IDS)
def test_rest_every_format(http, expr):
    sql = sql_of(expr)
    r = http.post("/query", params={"format": "json"}, json={"sql": sql})
    assert r.status_code == 200, r.text
    body = orjson.loads(r.content)
    assert "error" not in body and body["row_count"] == 2 and body["rows"][1] == [None]
    r = http.post("/query", params={"format": "csv"}, json={"sql": sql})
    assert r.status_code == 200, r.text
    csv = pacsv.read_csv(io.BytesIO(r.content), parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                         convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert csv.num_rows == 2 and csv.column("c").null_count == 1
    r = http.post("/query", params={"format": "arrow"}, json={"sql": sql})
    assert r.status_code == 200, r.text
    arrow = ipc.open_stream(r.content).read_all()
    assert arrow.num_rows == 2 and client_safe(arrow.schema.field("c").type)
    r = http.post("/query", params={"format": "parquet"}, json={"sql": sql})
    assert r.status_code == 200, r.text
    assert pq.read_table(io.BytesIO(r.content)).num_rows == 2


def _cli(node, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "clients.cli", "--uri", node.flight, *args], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r


def test_cli_every_format_over_all_types(types_node, tmp_path):
    sql = all_types_sql()
    table = _cli(types_node, "sql", sql, "--format", "table").stdout
    assert "MonthDayNano" not in table
    rows = [json.loads(line) for line in _cli(types_node, "sql", sql, "--format", "json").stdout.splitlines()]
    assert len(rows) == 2 and set(rows[0]) == set(IDS) and all(v is None for v in rows[1].values())
    assert rows[0]["interval"] == 5400 and rows[0]["bit"] == "10101"  # durations as seconds, as REST does
    csv = pacsv.read_csv(io.BytesIO(_cli(types_node, "sql", sql, "--format", "csv").stdout.encode()))
    assert csv.num_rows == 2 and csv.column_names == IDS
    out = tmp_path / "all.parquet"
    _cli(types_node, "sql", sql, "--format", "parquet", "--output", str(out))
    written = pq.read_table(out)
    assert written.num_rows == 2 and written.column_names == IDS


def test_mapped_values(adbc):
    with adbc.cursor() as cur:
        cur.execute(all_types_sql())
        row = cur.fetch_arrow_table().slice(0, 1).to_pylist()[0]
    assert row["interval"] == dt.timedelta(minutes=90)
    assert row["interval_months"] == dt.timedelta(days=33)  # a month counts as 30 days (DuckDB's epoch())
    assert row["ts_difference"] == dt.timedelta(days=1, hours=3)
    assert row["uhugeint"] == str(2**128 - 1)  # not the -1 of DuckDB's decimal128 form
    assert row["bit"] == "10101" and row["timetz"] == "12:30:00+02" and row["enum"] == "b"
    assert row["nested_interval"] == [{"a": [1], "b": {"c": dt.timedelta(days=1), "e": "b"}}]
    assert row["map_of_intervals"] == [("a", dt.timedelta(days=1))]
    assert row["array_of_intervals"] == [dt.timedelta(days=1), dt.timedelta(hours=2)]
    assert row["bignum"] == "12345678901234567890123456789012345678901234567890"
    assert row["timestamptz"] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def test_ingested_utc_and_durations_come_back_as_ingested(types_node, adbc):
    data = pa.table({"ts": pa.array([0, 1_000_000], pa.timestamp("us", tz="UTC")),
                     "took": pa.array([1_500_000, None], pa.duration("us")),
                     "wait_ms": pa.array([2_000, 5], pa.duration("ms"))})
    with adbc.cursor() as cur:
        cur.adbc_ingest("typed_events", data, mode="create_append")
        cur.execute("SELECT ts, took, ts + took AS done, now() - ts AS age FROM typed_events ORDER BY ts")
        result = cur.fetch_arrow_table()
    assert result.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert result.schema.field("done").type == pa.timestamp("us", tz="UTC")
    assert result.schema.field("took").type == pa.duration("us")
    assert result.schema.field("age").type == pa.duration("us")
    assert result.column("took").to_pylist() == data.column("took").to_pylist()
    types_node.client().action("flush", {"table": "typed_events"})  # Parquet keeps durations as int64
    with adbc.cursor() as cur:
        cur.execute("SELECT ts, took, wait_ms FROM typed_events ORDER BY ts")
        flushed = cur.fetch_arrow_table()
    assert flushed.select(["ts", "took"]) == result.select(["ts", "took"])
    assert flushed.column("wait_ms").to_pylist() == data.column("wait_ms").to_pylist()
    assert adbc.adbc_get_table_schema("typed_events").field("ts").type == pa.timestamp("us", tz="UTC")
    described = types_node.client().action("describe_table", {"name": "typed_events"})
    assert {"name": "ts", "type": "timestamp[us, tz=UTC]", "nullable": True} in described["schema"]


def test_declared_columns_store_the_types_results_have(types_node, adbc):
    with adbc.cursor() as cur:
        cur.execute("CREATE TABLE spans (took INTERVAL, at_utc TIMESTAMPTZ, flags BIT)")
        cur.execute("INSERT INTO spans VALUES (INTERVAL 2 HOUR, TIMESTAMPTZ '2024-01-01 00:00:00+00', '101')")
    types_node.client().action("flush", {"table": "spans"})
    with adbc.cursor() as cur:
        cur.execute("SELECT * FROM spans")
        result = cur.fetch_arrow_table()
    assert result.schema.field("took").type == pa.duration("us")
    assert result.schema.field("at_utc").type == pa.timestamp("us", tz="UTC")
    assert result.to_pylist() == [{"took": dt.timedelta(hours=2), "at_utc": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                   "flags": "101"}]
