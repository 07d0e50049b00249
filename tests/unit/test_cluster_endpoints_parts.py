"""Which statements get a multi-endpoint FlightInfo, and the endpoint ticket's schema round trip."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flight_server.coordinator.endpoints import conform_to, decode_schema, encode_schema, plain_scan


@pytest.mark.parametrize("sql", [
    "SELECT * FROM t",
    "SELECT id, v * 2 AS w FROM t WHERE id % 3 <> 1",
    "select a, upper(b) from T where ts >= TIMESTAMP '2024-01-01'",
])
def test_plain_scans(sql: str) -> None:
    assert plain_scan(sql)


@pytest.mark.parametrize("sql", [
    "SELECT id FROM t ORDER BY id", "SELECT id FROM t LIMIT 3", "SELECT id FROM t OFFSET 3",
    "SELECT DISTINCT id FROM t", "SELECT count(*) FROM t", "SELECT k, sum(v) FROM t GROUP BY k",
    "SELECT id, row_number() OVER () FROM t", "SELECT * FROM t JOIN u USING (id)", "SELECT * FROM t, u",
    "SELECT * FROM t WHERE id IN (SELECT id FROM u)", "WITH x AS (SELECT * FROM t) SELECT * FROM x",
    "SELECT * FROM t UNION ALL SELECT * FROM t", "SELECT * FROM main.t", "SELECT * FROM read_parquet('x')",
    "SELECT 1", "SELECT * FROM t USING SAMPLE 10%", "not sql at all (", "SELECT * FROM t; SELECT 1",
    "SELECT list(id) FROM t",
])
def test_everything_else_keeps_the_single_endpoint(sql: str) -> None:
    assert not plain_scan(sql)


def test_schema_round_trip_and_conform() -> None:
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("w", pa.float64())])
    assert decode_schema(encode_schema(schema)).equals(schema)
    t = pa.table({"id": pa.array([1, 2], pa.int32()), "w": pa.array([1.5, None], pa.float64())})
    out = conform_to(t, schema)
    assert out.schema.equals(schema) and out.column("id").to_pylist() == [1, 2]
