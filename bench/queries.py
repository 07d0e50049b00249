"""The query workloads: a group-by over the narrow table and TPC-H-style queries over the
wide ``lineitem``-like table. Each runs through ADBC against the node and, side by side, in
DuckDB in-process over the same Parquet files, with the same SQL text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    name: str  # key of the measurement; the ratio metric is f"{name}_vs_duckdb"
    title: str
    table: str  # "narrow" or "wide": which dataset it reads
    sql: str  # with {t} for the table name


GROUPBY = Query("groupby", "GROUP BY k (1000 groups)", "narrow",
                "SELECT k, sum(a), avg(b), count(*) FROM {t} GROUP BY k")

TPCH = (
    Query("tpch_like_q1", "Q1-like grouped aggregate", "wide", """
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty,
       sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty,
       avg(l_extendedprice) AS avg_price,
       avg(l_discount) AS avg_disc,
       count(*) AS count_order
FROM {t}
WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL 90 DAY
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus"""),
    Query("tpch_like_q6", "Q6-like filtered sum", "wide", """
SELECT sum(l_extendedprice * l_discount) AS revenue
FROM {t}
WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01'
  AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24"""),
    Query("tpch_like_topn", "top-N (ORDER BY price LIMIT 100)", "wide", """
SELECT l_orderkey, l_linenumber, l_extendedprice, l_shipdate
FROM {t}
ORDER BY l_extendedprice DESC, l_orderkey, l_linenumber
LIMIT 100"""),
    Query("tpch_like_date_range", "date-range filter (one month of rows)", "wide", """
SELECT l_orderkey, l_partkey, l_quantity, l_extendedprice, l_shipdate, l_shipmode
FROM {t}
WHERE l_shipdate >= DATE '1995-03-01' AND l_shipdate < DATE '1995-04-01'"""),
    Query("tpch_like_high_card_groupby", "high-cardinality GROUP BY l_partkey", "wide", """
SELECT l_partkey, sum(l_quantity) AS qty, sum(l_extendedprice) AS revenue, count(*) AS lines
FROM {t}
GROUP BY l_partkey"""),
)

ALL = (GROUPBY, *TPCH)


def metric_name(q: Query) -> str:
    return f"{q.name}_vs_duckdb"
