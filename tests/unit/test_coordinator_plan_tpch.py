"""All 22 TPC-H queries through the distributed planner: fragments over random disjoint parts of
each table (one part empty), merged, must equal DuckDB over the whole tables. Data from
`tpchgen-cli` (a test dependency) at a small scale factor, generated once per session."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_server.coordinator.plan import plan
from tests.tpch_queries import QUERIES
from tests.unit.test_coordinator_plan import _ordered, assert_same, run_plan, run_single

TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")

# Shapes the planner picks (a change here is a deliberate planner change, not noise).
EXPECTED_SHAPES = {1: "aggregate", 6: "aggregate"}


def _tpchgen() -> str | None:
    here = Path(sys.executable).parent / "tpchgen-cli"
    return str(here) if here.exists() else shutil.which("tpchgen-cli")


def _plain(table: pa.Table) -> pa.Table:
    fields = [pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type) for f in table.schema]
    return table.cast(pa.schema(fields))


@pytest.fixture(scope="session")
def tpch(tmp_path_factory) -> dict[str, pa.Table]:
    tool = _tpchgen()
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tpchgen-cli is not installed")
        pytest.skip("tpchgen-cli is not installed")
    out = tmp_path_factory.mktemp("tpch")
    subprocess.run([tool, "parquet", "-s", "0.01", "-o", str(out)], check=True, capture_output=True)
    return {name: _plain(pq.read_table(out / f"{name}.parquet")) for name in TABLES}


@pytest.mark.parametrize("number", sorted(QUERIES))
def test_tpch_query_matches_single_node(tpch, number):
    sql = QUERIES[number]
    p = plan(sql, {name: t.schema for name, t in tpch.items()})
    assert p.shape in ("aggregate", "topn", "rows"), p.explain
    if number in EXPECTED_SHAPES:
        assert p.shape == EXPECTED_SHAPES[number], p.explain
    want = run_single(sql, tpch)
    got = run_plan(p, tpch, random.Random(number))
    assert_same(got, want, _ordered(sql))


def test_tpch_rows_fragments_push_filters_and_projections(tpch):
    p = plan(QUERIES[3], {name: t.schema for name, t in tpch.items()})
    frags = {f.table: f.sql for f in p.fragments}
    assert "BUILDING" in frags["customer"]
    assert "l_comment" not in frags["lineitem"] and "l_shipdate" in frags["lineitem"]


def test_star_in_exists_reads_no_extra_columns(tpch):
    p = plan(QUERIES[21], {name: t.schema for name, t in tpch.items()})
    frags = {f.table: f.sql for f in p.fragments}
    assert "l_comment" not in frags["lineitem"] and "o_comment" not in frags["orders"]
