"""Selective queries on a real node: point lookups, IN lists and one-day time ranges over a
table with a declared layout (``sort_key``, ``bloom_filter_columns``) answer exactly what DuckDB
answers over the same rows, the files keep their sort order across flushes, and a one-day range
skips the other files before DuckDB opens them (literals and bound parameters alike)."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from clients import errors
from tests.fixtures.layout import assert_files_sorted

SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("id", pa.int64()), ("v", pa.float64())])
START = dt.datetime(2025, 1, 1)
DAYS_PER_PART = 10


def _part(i: int, n: int = 3000) -> pa.Table:
    """Rows of days [10 i, 10 i + 10), in random order; ids random (so unsorted) and unique."""
    rng = np.random.default_rng(i)
    us = rng.integers(0, DAYS_PER_PART * 86_400_000_000, n) + (START - dt.datetime(1970, 1, 1)).days * 86_400_000_000
    us += i * DAYS_PER_PART * 86_400_000_000
    ids = rng.choice(10_000_000, n, replace=False) * 3 + i  # unique across parts too
    return pa.table([pa.array(us).cast(pa.timestamp("us")), pa.array(ids), pa.array(rng.random(n))], schema=SCHEMA)


def _same(got: pa.Table, want: pa.Table) -> None:
    g, w = got.to_pylist(), want.to_pylist()
    assert len(g) == len(w)
    for a, b in zip(g, w, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float) and isinstance(b[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-9), (k, a, b)
            else:
                assert a[k] == b[k], (k, a, b)


def test_point_lookups_and_time_ranges_answer_like_duckdb_and_prune_files(node):
    parts = [_part(i) for i in range(3)]
    rows = pa.concat_tables(parts)
    duck = duckdb.connect()
    duck.register("ev", rows)
    with node.adbc() as conn, node.client() as c:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE ev (ts TIMESTAMP, id BIGINT, v DOUBLE) "
                        "WITH (sort_key = 'ts', bloom_filter_columns = 'id')")
            for part in parts:
                cur.adbc_ingest("ev", part, mode="append")
                c.flush("ev")
        assert len(assert_files_sorted(node, "ev")) == 3

        ids = rows.column("id").to_pylist()
        present, absent = ids[::997][:6], [ids[5] + 1, ids[100] + 1, -7, 10**12]
        for k in present + absent:
            sql = f"SELECT count(*) AS n, sum(v) AS s FROM ev WHERE id = {k}"
            _same(c.query(sql), duck.sql(sql).to_arrow_table())
        sql = f"SELECT id, v FROM ev WHERE id IN ({present[0]}, {present[3]}, {absent[0]}) ORDER BY id"
        _same(c.query(sql), duck.sql(sql).to_arrow_table())

        day = START + dt.timedelta(days=14)
        sql = (f"SELECT count(*) AS n, sum(v) AS s, min(ts) AS lo, max(ts) AS hi FROM ev "
               f"WHERE ts >= TIMESTAMP '{day}' AND ts < TIMESTAMP '{day + dt.timedelta(days=1)}'")
        want = duck.sql(sql).to_arrow_table()
        assert want.column("n")[0].as_py() > 0
        _same(c.query(sql), want)
        assert c.last_stats()["files-pruned"] == "2"  # only the file of days 10..19 was opened

        params = sql.replace(f"TIMESTAMP '{day}'", "?").replace(f"TIMESTAMP '{day + dt.timedelta(days=1)}'", "?")
        _same(c.query(params, [day, day + dt.timedelta(days=1)]), want)
        assert c.last_stats()["files-pruned"] == "2"
        with conn.cursor() as cur:
            cur.execute(params, parameters=(day, day + dt.timedelta(days=1)))
            _same(cur.fetch_arrow_table(), want)


def test_the_sort_key_holds_across_flushes_whichever_way_it_was_declared(node):
    with node.client() as c:
        c.create_table("byid", SCHEMA, config={"properties": {"sort_key": "id,ts", "bloom_filter_columns": "id"}})
        for i in range(3):
            c.ingest("byid", _part(i, 500))
            c.flush("byid")
        assert len(assert_files_sorted(node, "byid")) == 3
        assert c.describe("byid")["config"]["properties"]["sort_key"] == "id,ts"
        with pytest.raises(errors.InvalidRequest, match="not a column"):
            c.execute("CREATE TABLE bad (a BIGINT) WITH (sort_key = 'b')")
        with pytest.raises(errors.InvalidRequest, match="not a column"):
            c.create_table("bad", SCHEMA, config={"properties": {"bloom_filter_columns": "nope"}})
        assert [t["name"] for t in c.tables()] == ["byid"]
        with pytest.raises(errors.InvalidRequest, match="column list"):
            c.execute("CREATE TABLE bad WITH (sort_key = 'id') AS SELECT * FROM byid")
