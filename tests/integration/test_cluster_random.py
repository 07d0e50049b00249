"""Random aggregate queries (hypothesis) agree between a three-node cluster and one DuckDB
over the same rows: spread over the nodes' ingest, part flushed, part buffered."""

from __future__ import annotations

import decimal
import math

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.helpers import wait_for_live_nodes
from tests.fixtures.node import start_all
from tests.fixtures.redis import server_mode_env

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

AGGREGATES = ["count(*)", "count(x)", "sum(x)", "min(x)", "max(x)", "sum(y)", "min(y)", "max(s)", "avg(x)",
              "avg(y)", "stddev_samp(y)", "var_pop(x)", "count(DISTINCT g)", "count(DISTINCT s)",
              "bool_and(x > 0)", "bool_or(y < 0)", "sum(x) + max(g)", "count(*) FILTER (WHERE x > 10)"]
FILTERS = ["", "WHERE x > 10", "WHERE g IN (1, 3)", "WHERE s LIKE 'a%'", "WHERE y < 0 OR x IS NULL"]


def data(n: int = 3000) -> pa.Table:
    return pa.table({
        "g": pa.array([i % 5 for i in range(n)], pa.int32()),
        "x": pa.array([None if i % 7 == 0 else (i * 37) % 101 - 20 for i in range(n)], pa.int64()),
        "y": pa.array([((i * 13) % 97) / 7.0 - 5 for i in range(n)], pa.float64()),
        "s": pa.array([["ab", "ac", "b", "c", None][i % 5] + str(i % 3) if i % 5 != 4 else None for i in range(n)]),
    })


def close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, decimal.Decimal) or isinstance(b, decimal.Decimal):
        return a is not None and b is not None and decimal.Decimal(a) == decimal.Decimal(b)
    return a == b


@pytest.fixture
def loaded(node_factory, redis_server, redis_prefix, moto_server, s3_bucket):
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, BUFFER_SIZE="100000000",
                          BUFFER_FLUSH_INTERVAL="3600")
    nodes = start_all([node_factory(env={**env, "MINIODB_SERVER_NODE_ID": f"h{i}"}, name=f"h{i}", start=False)
                       for i in range(3)])
    table = data()
    with nodes[0].client() as c:
        wait_for_live_nodes(c, 3)
    for i, node in enumerate(nodes):
        part = table.slice(1000 * i, 1000)
        with node.client() as cl:
            cl.ingest("h", part.slice(0, 600))
            cl.flush("h")
            cl.ingest("h", part.slice(600))
    ref = duckdb.connect()
    ref.register("h", table)
    return nodes, ref


def test_random_aggregates_agree_with_duckdb(loaded) -> None:
    nodes, ref = loaded
    client = nodes[2].client()

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(aggs=st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4, unique=True),
           grouped=st.booleans(), where=st.sampled_from(FILTERS), having=st.booleans())
    def check(aggs, grouped, where, having) -> None:
        cols = ", ".join(f"{a} AS a{i}" for i, a in enumerate(aggs))
        if grouped:
            sql = f"SELECT g, {cols} FROM h {where} GROUP BY g"
            sql += " HAVING count(*) > 100" if having else ""
            sql += " ORDER BY g"
        else:
            sql = f"SELECT {cols} FROM h {where}"
        want = ref.sql(sql).to_arrow_table()
        got = client.query(sql)
        assert got.column_names == want.column_names, sql
        g, w = got.to_pylist(), want.to_pylist()
        assert len(g) == len(w) and all(close(r1[k], r2[k]) for r1, r2 in zip(g, w, strict=True) for k in r1), (
            sql, g, w)

    try:
        check()
    finally:
        client.close()
