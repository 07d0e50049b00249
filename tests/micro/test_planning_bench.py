"""Query planning as a DoGet/GetFlightInfo runs it (``Node.query`` up to the Arrow reader:
classify, analyse the SQL, resolve the table to its pruned files + buffer, bind the views,
open the reader) for a simple SELECT, without reading the result."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bench.data import narrow_batch

from .stack import ingest, start_node

FILES = 20


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = start_node(tmp_path_factory.mktemp("planning"), **{"wal.sync": "none"})
    for i in range(FILES):  # FILES committed Parquet files + a buffered tail
        ingest(n, "t", pa.Table.from_batches([narrow_batch(i * 10_000, 10_000)]))
        n.flush("t")
    ingest(n, "t", pa.Table.from_batches([narrow_batch(FILES * 10_000, 1_000)]))
    yield n
    n.stop()


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM t",
    "SELECT k, sum(a) FROM t WHERE k < 10 AND b > 0.5 GROUP BY k",
])
def test_plan_select(benchmark, node, sql):
    def plan():
        result = node.query(sql)
        result.close()
        return result

    result = benchmark(plan)
    assert result.stats["files_total"] == FILES
