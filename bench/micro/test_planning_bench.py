"""Query planning: ``QueryEngine.execute`` up to the Arrow reader (classify, analyse the SQL,
resolve the table to its pruned files + buffer, bind the views, open the reader) for a simple
SELECT, without reading the result."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bench.data import narrow_batch
from flight_server.query.engine import QueryEngine
from flight_server.query.resolve import TableResolver

from ._stack import make_stack

FILES = 20


@pytest.fixture(scope="module")
def planner(tmp_path_factory):
    root = tmp_path_factory.mktemp("planning")
    stack = make_stack(root, sync=False)
    first = narrow_batch(0, 10_000)
    info = stack.create("t", first.schema)
    for i in range(FILES):  # FILES committed Parquet files + a buffered tail
        stack.buffer(info, pa.Table.from_batches([narrow_batch(i * 10_000, 10_000)]))
        stack.flusher.flush_table("t")
    stack.buffer(info, pa.Table.from_batches([narrow_batch(FILES * 10_000, 1_000)]))
    engine = QueryEngine([str(root / "objects"), str(root / "cache")])
    resolver = TableResolver(stack.catalog, stack.buffers, stack.file_cache, engine)
    yield engine, resolver
    resolver.close()
    engine.close()
    stack.close()


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM t",
    "SELECT k, sum(a) FROM t WHERE k < 10 AND b > 0.5 GROUP BY k",
])
def test_plan_select(benchmark, planner, sql):
    engine, resolver = planner

    def plan():
        result = engine.execute(sql, None, resolver)
        result.close()
        return result

    result = benchmark(plan)
    assert result.stats["files_total"] == FILES
