"""TPC-H over a three-node cluster: every table's rows are spread over the three nodes'
ingest, part flushed and part left buffered on every node; all 22 queries sent to one node
equal DuckDB's answers over the same Parquet files (real processes: redis-server, moto_server)."""

from __future__ import annotations

import decimal
import math
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.helpers import wait_for_live_nodes
from tests.fixtures.node import start_all
from tests.fixtures.redis import server_mode_env
from tests.tpch_queries import QUERIES

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")


def _tpchgen() -> str:
    found = shutil.which("tpchgen-cli") or str(Path(sys.executable).with_name("tpchgen-cli"))
    if not Path(found).exists():
        pytest.fail("tpchgen-cli is not installed (pip install '.[test]')")
    return found


def _plain(table: pa.Table) -> pa.Table:
    """Nullable columns, no field metadata, string_view as string (what clients send)."""
    fields = [pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type) for f in table.schema]
    return table.cast(pa.schema(fields))


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, decimal.Decimal) or isinstance(b, decimal.Decimal):
        return a is not None and b is not None and decimal.Decimal(a) == decimal.Decimal(b)
    return a == b


@pytest.fixture(scope="module")
def tpch_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tpch")
    subprocess.run([_tpchgen(), "parquet", "-s", "0.01", "--output-dir", str(out)], check=True,
                   capture_output=True, timeout=120)
    return out


# the fan-out (files placed on every node), the local-read shape (the coordinator reads every file, the
# peers' buffered rows come with their pins) and local-read with the bigger buffers left to fragment calls
SHAPES = {"fan-out": {"COORDINATOR_DISTRIBUTE_MIN_BYTES": "0"},
          "local-read": {"COORDINATOR_DISTRIBUTE_MIN_BYTES": str(1 << 40)},
          "local-read+fragments": {"COORDINATOR_DISTRIBUTE_MIN_BYTES": str(1 << 40),
                                   "COORDINATOR_INLINE_MAX_ROWS": "1000"}}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_tpch_on_three_nodes_equals_duckdb(shape, tpch_dir, node_factory, redis_server, redis_prefix, moto_server,
                                           s3_bucket) -> None:
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, BUFFER_SIZE="100000000",
                          BUFFER_FLUSH_INTERVAL="3600", **SHAPES[shape])
    nodes = start_all([node_factory(env={**env, "MINIODB_SERVER_NODE_ID": f"t{i}"}, name=f"t{i}", start=False)
                       for i in range(3)])
    with nodes[0].client() as c:
        wait_for_live_nodes(c, 3)
    for name in TABLES:
        data = _plain(pq.read_table(tpch_dir / f"{name}.parquet"))
        n = data.num_rows
        cuts = [0, n // 3, 2 * n // 3, n]
        for i, node in enumerate(nodes):
            part = data.slice(cuts[i], cuts[i + 1] - cuts[i])
            half = part.num_rows // 2
            with node.adbc() as conn, conn.cursor() as cur:
                if half:
                    cur.adbc_ingest(name, part.slice(0, half), mode="create_append")
                    with node.client() as cl:
                        cl.flush(name)  # committed
                cur.adbc_ingest(name, part.slice(half), mode="create_append")  # left buffered
    ref = duckdb.connect()
    for name in TABLES:
        ref.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{tpch_dir / (name + '.parquet')}')")
    wrong = []
    with nodes[1].client() as c:
        for q, sql in QUERIES.items():
            want = ref.sql(sql).to_arrow_table()
            got = c.query(sql)
            if got.column_names != want.column_names:
                wrong.append((q, "columns", got.column_names, want.column_names))
                continue
            g, w = got.to_pylist(), want.to_pylist()
            if len(g) != len(w) or not all(_same(r1[k], r2[k]) for r1, r2 in zip(g, w, strict=True) for k in r1):
                wrong.append((q, g[:3], w[:3]))
        stats = c.query("SELECT count(*) AS n FROM system.queries WHERE nodes = 't0,t1,t2'").to_pylist()
    assert not wrong
    assert stats[0]["n"] >= 22  # every query took all three nodes
