"""The tpch bench workload's own logic: table renaming, answer comparison, metric names."""

from __future__ import annotations

import decimal
import re

import pyarrow as pa
import pytest

from bench.metrics import REGISTRY
from bench.tpch_queries import QUERIES
from bench.workloads.tpch import TABLES, compare, metric_names, node_sql, ordered, scale_tag


def test_node_sql_renames_every_table_consistently():
    for n, sql in QUERIES.items():
        renamed = node_sql(sql)
        for t in TABLES:  # no bare table name is left (column names such as supplier_no stay)
            assert re.search(rf"(?<![\w.]){t}(?!\w)", renamed) is None, (n, t)
        assert renamed.count("bench_tpch_") == len(re.findall(r"(?<![\w.])(" + "|".join(TABLES) + r")(?!\w)", sql))
    assert "supp_nation" in node_sql(QUERIES[7]) and "supplier_no" in node_sql(QUERIES[15])
    assert node_sql("SELECT n_name AS nation FROM nation, region") == \
        "SELECT n_name AS bench_tpch_nation FROM bench_tpch_nation, bench_tpch_region"
    assert node_sql("SELECT l_comment FROM lineitem WHERE p_type LIKE '%Customer%'") == \
        "SELECT l_comment FROM bench_tpch_lineitem WHERE p_type LIKE '%Customer%'"


def test_ordered_follows_order_by():
    assert ordered(QUERIES[1]) and not ordered(QUERIES[6]) and not ordered(QUERIES[14])


def test_compare_answers():
    a = pa.table({"k": ["x", "y"], "v": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.25")],
                                                 pa.decimal128(15, 2))})
    same_floats = pa.table({"k": ["x", "y"], "v": [1.5 * (1 + 1e-9), 2.25]})
    assert compare(a, same_floats, in_order=True) is None
    swapped = a.take([1, 0])
    assert compare(swapped, a, in_order=False) is None
    assert "row 0" in compare(swapped, a, in_order=True)
    assert "rows" in compare(a.slice(0, 1), a, in_order=False)
    assert "columns" in compare(a.select(["k"]), a, in_order=False)
    off = pa.table({"k": ["x", "y"], "v": [1.5, 2.26]})
    assert "row 1" in compare(off, a, in_order=True)
    nulls = pa.table({"k": ["x", None], "v": [None, 2.25]})
    assert compare(nulls, nulls, in_order=False) is None


@pytest.mark.parametrize(("scale", "tag"), [(1, "sf1"), (0.1, "sf0_1"), (10, "sf10"), (0.01, "sf0_01")])
def test_metric_names_carry_the_scale(scale, tag):
    assert scale_tag(scale) == tag
    geo, worst = metric_names(scale)
    assert geo == f"tpch_{tag}_geomean_vs_duckdb" and worst == f"tpch_{tag}_worst_vs_duckdb"
    assert geo in REGISTRY and worst in REGISTRY
    assert (REGISTRY[geo].target == 1.15) == (scale == 1)
