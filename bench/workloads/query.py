"""Queries: a GROUP BY over the flushed narrow table and TPC-H-style queries over the wide
table, through ADBC (warm: file cache and connection), vs DuckDB in-process over the same
Parquet files with the same SQL. Ratio = MinIODB time / DuckDB time (lower is better).
rows/s here is the table's rows scanned per second of median time."""

from __future__ import annotations

from .. import queries
from ..baselines.duckdb_local import DuckDBLocal
from ..metrics import REGISTRY, Measurement
from ..runner import NARROW, WIDE, Bench


def run(b: Bench) -> None:
    b.ensure_narrow()
    b.ensure_wide()
    tables = {"narrow": NARROW, "wide": WIDE}
    duck = DuckDBLocal()
    try:
        for t in tables.values():
            duck.view(t, b.parquet_files(t))
        with b.task("queries", len(queries.ALL) * 2 * b.opts.repeat) as task:
            for q in queries.ALL:
                _one(b, duck, q, tables[q.table], task)
    finally:
        duck.close()


def _one(b: Bench, duck: DuckDBLocal, q: queries.Query, table: str, task) -> None:
    sql = q.sql.format(t=f'"{table}"')
    rows = b.opts.rows
    metric = "groupby_vs_duckdb" if q is queries.GROUPBY else queries.metric_name(q)
    ours = b.results.add(Measurement(q.name, q.title, "miniodb", "MinIODB · ADBC", rows, 0, ratios=[metric]))
    base = b.results.add(Measurement(q.name, q.title, "duckdb", "DuckDB in-process, same Parquet", rows, 0))

    run_ours, run_duck = b.timed_pair(sql, ours, base, duck)

    got, want = run_ours(), run_duck()  # warm-up, not counted
    ours.seconds.clear()
    base.seconds.clear()
    if got.num_rows != want.num_rows:
        b.note(f"{q.name}: MinIODB returned {got.num_rows} rows, DuckDB {want.num_rows}")
    for i in range(b.opts.repeat):
        for fn in b.order(i, run_ours, run_duck):
            fn()
            task.advance()
    b.report(ours)
    b.report(base)
    if metric in REGISTRY:
        b.results.ratio(metric, ours.median_seconds, base.median_seconds)
