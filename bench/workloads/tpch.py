"""TPC-H: the 22 queries over real data, through ADBC against the node, vs DuckDB in-process.

Data: ``tpchgen-cli parquet -s <--scale>`` (all eight tables). Every table is loaded into the
node through ADBC ``adbc_ingest`` (batches well under ADBC's 16 MiB message cap) and flushed;
the load is timed once, for information. DuckDB reads the tpchgen Parquet files themselves.

The node's tables are named ``bench_tpch_<table>`` (so a ``--uri`` node's own ``lineitem`` is
never touched); the very same rewritten SQL runs on both sides. Each query: one warm-up per
system (answers compared there: in order when the query has ORDER BY, as a multiset
otherwise, floats with a relative tolerance), then ``--repeat`` timed runs, the systems
alternating first; ratio = MinIODB median / DuckDB median. Named results:
``tpch_sf<scale>_geomean_vs_duckdb`` (geometric mean of the 22 ratios) and
``..._worst_vs_duckdb``; the per-query ratios are in the measurements (and the geomean's
detail). At a scale other than 1 the names carry the scale (``tpch_sf0_1_...``) and no target.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..baselines.duckdb_local import DuckDBLocal
from ..metrics import LOWER, REGISTRY, Measurement, define
from ..runner import TPCH_TABLES, Bench
from ..tpch_queries import QUERIES

TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
PREFIX = "bench_tpch_"
NODE_TABLES = TPCH_TABLES
MAX_BATCH_BYTES = 8 << 20  # half of ADBC's 16 MiB gRPC message cap
_NAME = re.compile(r"(?<![\w.])(" + "|".join(TABLES) + r")(?!\w)")
_ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
REL_TOL = 1e-6


def scale_tag(scale: float) -> str:
    """``sf1`` at scale 1, ``sf0_1`` at 0.1, ``sf10`` at 10."""
    return "sf" + f"{scale:g}".replace(".", "_")


def metric_names(scale: float) -> tuple[str, str]:
    tag = scale_tag(scale)
    geo, worst = f"tpch_{tag}_geomean_vs_duckdb", f"tpch_{tag}_worst_vs_duckdb"
    if geo not in REGISTRY:  # scale 1 is declared in bench.metrics, with its targets
        define(geo, "x", LOWER, f"TPC-H {tag.upper()}: geometric mean over the 22 queries of "
                                "ADBC time / DuckDB in-process time (tpchgen Parquet); no target at this scale")
        define(worst, "x", LOWER, f"TPC-H {tag.upper()}: the worst of the 22 per-query ratios")
    return geo, worst


def node_sql(sql: str) -> str:
    """The query over the node's table names (aliases equal to a table name follow along)."""
    return _NAME.sub(lambda m: PREFIX + m.group(1), sql)


def ordered(sql: str) -> bool:
    return bool(_ORDER_BY.search(sql))


# -- answers ---------------------------------------------------------------------------------
def _norm(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def _same_value(a, b) -> bool:
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-9)
    return a == b


def _sort_key(row: tuple) -> tuple:
    def one(v):
        v = _norm(v)
        if v is None:
            return (0, "")
        if isinstance(v, float):
            return (1, round(v, 4))
        if isinstance(v, int | dt.date | dt.datetime):
            return (1, v) if isinstance(v, int) else (2, v.isoformat())
        return (3, str(v))
    return tuple(one(v) for v in row)


def _rows(t: pa.Table) -> list[tuple]:
    cols = [c.to_pylist() for c in t.columns]
    return list(zip(*cols, strict=True)) if cols else []


def compare(got: pa.Table, want: pa.Table, in_order: bool) -> str | None:
    """None when the answers match; otherwise what differs."""
    if got.num_columns != want.num_columns:
        return f"{got.num_columns} columns, DuckDB {want.num_columns}"
    if got.num_rows != want.num_rows:
        return f"{got.num_rows} rows, DuckDB {want.num_rows}"
    g, w = _rows(got), _rows(want)
    if not in_order:
        g, w = sorted(g, key=_sort_key), sorted(w, key=_sort_key)
    for i, (a, b) in enumerate(zip(g, w, strict=True)):
        if len(a) != len(b) or not all(_same_value(x, y) for x, y in zip(a, b, strict=True)):
            return f"row {i}: {a!r} != DuckDB {b!r}"
    return None


# -- data ------------------------------------------------------------------------------------
def tpchgen() -> str:
    here = Path(sys.executable).parent / "tpchgen-cli"
    tool = str(here) if here.exists() else shutil.which("tpchgen-cli")
    if tool is None:
        raise RuntimeError("tpchgen-cli is not installed (pip install 'miniodb[bench]')")
    return tool


def generate(b: Bench, scale: float) -> Path:
    out = b.workdir / f"tpch-{scale_tag(scale)}"
    if not all((out / f"{t}.parquet").exists() for t in TABLES):
        b.log(f"generating TPC-H data at scale {scale:g} (tpchgen-cli)")
        proc = subprocess.run([tpchgen(), "parquet", "-s", f"{scale:g}", "--output-dir", str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"tpchgen-cli failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """string_view (tpchgen's strings) as plain string; no Parquet field-id metadata."""
    return pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type, f.nullable)
                      for f in schema])


def _batches(path: Path, schema: pa.Schema, task):
    f = pq.ParquetFile(path)
    for batch in f.iter_batches(batch_size=65_536):
        batch = pa.RecordBatch.from_arrays([c.cast(t.type) for c, t in zip(batch.columns, schema, strict=True)],
                                           schema=schema)
        pieces = max(1, math.ceil(batch.nbytes / MAX_BATCH_BYTES))
        step = math.ceil(batch.num_rows / pieces)
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)
        task.advance(batch.num_rows)


def load(b: Bench, src: Path, scale: float) -> None:
    """Every table into the node (ADBC), then flushed; one measurement for the whole load."""
    rows = sum(pq.ParquetFile(src / f"{t}.parquet").metadata.num_rows for t in TABLES)
    for name in NODE_TABLES:
        b.reset_table(name)
    started = time.perf_counter()
    with b.task(f"load TPC-H {scale_tag(scale)}", rows, "rows") as task:
        for t in TABLES:
            path = src / f"{t}.parquet"
            schema = _plain_schema(pq.ParquetFile(path).schema_arrow)
            b.adbc_ingest(PREFIX + t, schema, _batches(path, schema, task), mode="create")
    for name in NODE_TABLES:
        b.client.flush(name)
    seconds = time.perf_counter() - started
    for name in NODE_TABLES:
        b.loaded(name, 0)
    m = b.results.add(Measurement(f"tpch_{scale_tag(scale)}_load", f"TPC-H {scale_tag(scale).upper()}: load 8 tables",
                                  "miniodb", "MinIODB · ADBC adbc_ingest + flush", rows, 0, [seconds],
                                  note="one run"))
    b.report(m)


# -- the run ---------------------------------------------------------------------------------
def run(b: Bench) -> None:
    scale = b.opts.scale
    tag = scale_tag(scale)
    geo_name, worst_name = metric_names(scale)
    src = generate(b, scale)
    load(b, src, scale)
    duck = DuckDBLocal()
    ratios: dict[str, float] = {}
    wrong: list[str] = []
    try:
        for t in TABLES:
            duck.view(PREFIX + t, [str(src / f"{t}.parquet")])
        with b.task(f"TPC-H {tag} queries", len(QUERIES) * 2 * b.opts.repeat) as task:
            for n in sorted(QUERIES):
                ratio, problem = _one(b, duck, n, tag, task)
                if problem:
                    wrong.append(f"Q{n}: {problem}")
                if ratio is not None:
                    ratios[f"Q{n}"] = ratio
    finally:
        duck.close()
    for w in wrong:
        b.note(f"TPC-H {tag} wrong answer from MinIODB: {w}")
    detail = {"scale": scale, "queries": len(ratios), "wrong_answers": len(wrong),
              "per_query": {k: round(v, 3) for k, v in ratios.items()}}
    if len(ratios) == len(QUERIES):
        geo = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
        worst = max(ratios, key=ratios.get)
        b.results.set(geo_name, geo, **detail)
        b.results.set(worst_name, ratios[worst], scale=scale, query=worst)
    else:
        b.results.unavailable(geo_name, f"only {len(ratios)} of {len(QUERIES)} queries measured")
        b.results.unavailable(worst_name, f"only {len(ratios)} of {len(QUERIES)} queries measured")
    if wrong:
        raise RuntimeError(f"{len(wrong)} TPC-H answers differ from DuckDB's: {'; '.join(wrong)[:500]}")


def _one(b: Bench, duck: DuckDBLocal, n: int, tag: str, task) -> tuple[float | None, str | None]:
    sql = node_sql(QUERIES[n])
    title = f"TPC-H {tag.upper()} Q{n}"
    ours = b.results.add(Measurement(f"tpch_{tag}_q{n}", title, "miniodb", "MinIODB · ADBC"))
    base = b.results.add(Measurement(f"tpch_{tag}_q{n}", title, "duckdb", "DuckDB in-process, tpchgen Parquet"))

    run_ours, run_duck = b.timed_pair(sql, ours, base, duck)

    if n % 2:  # warm-up (not counted), whichever went first last time goes second
        got, want = run_ours(), run_duck()
    else:
        want, got = run_duck(), run_ours()
    ours.seconds.clear()
    base.seconds.clear()
    problem = compare(got, want, ordered(sql))
    for i in range(b.opts.repeat):
        for fn in b.order(i + n, run_ours, run_duck):
            fn()
            task.advance()
    a, d = ours.median_seconds, base.median_seconds
    ratio = a / d if a and d else None
    if ratio is not None:
        ours.note = base.note = f"MinIODB / DuckDB = {ratio:.2f}x" + ("" if problem is None else "; WRONG ANSWER")
    b.log(f"{title}: MinIODB {a * 1000:,.1f} ms, DuckDB {d * 1000:,.1f} ms, ratio {ratio:.2f}x"
          + ("" if problem is None else f" [red]wrong: {problem}"))
    return ratio, problem
