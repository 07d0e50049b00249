"""Selective queries: a point lookup and a one-day time range, through ADBC on a warm connection
(one cursor, as an application or service issuing lookups keeps it), interleaved with DuckDB
in-process over the node's own Parquet files.

* **point**: TPC-H ``lineitem`` (``tpchgen-cli`` at ``--scale``, 6M rows at 1) loaded through ADBC
  in three parts, flushed after each (three files or more); ``SELECT count(*) ... WHERE
  l_orderkey = <key>`` with a different key (literal in the SQL text) every call, keys drawn
  from the data (a few absent ones too). The table declares ``sort_key`` and
  ``bloom_filter_columns`` on ``l_orderkey``, as a user who looks rows up by id would.
* **time range**: a year of events (``EVENT_ROWS`` rows at scale 1, timestamps in random order, three
  parts, one flush each), ``count(*), sum(value)`` over one day (a different day every call).
  The table declares ``sort_key = 'ts'``.

Named results: ``point_query_p50_ms``, ``point_query_vs_duckdb``, ``time_range_query_p50_ms``
and ``time_range_query_vs_duckdb`` (p50 over all calls of MinIODB / p50 of DuckDB's), and
``new_text_query_floor_ms``: the same ADBC client against the minimal Flight SQL server with a
new trivial text every call (what the protocol alone costs a lookup whose literal changes).
For information, ``point_query_bound_*`` and ``time_range_query_bound_*``: the same lookups with
the literals bound as parameters on one ADBC cursor (ADBC prepares once, then binds each call:
no ClosePreparedStatement + CreatePreparedStatement per call), against the same parameterised
statement in DuckDB in-process.
Answers are compared on the warm-up call of every shape.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..baselines.duckdb_local import DuckDBLocal
from ..metrics import Measurement
from ..runner import Bench
from . import tpch

LINEITEM = "bench_sel_lineitem"
EVENTS = "bench_sel_events"
TABLES = (LINEITEM, EVENTS)
PARTS = 3
EVENT_ROWS = 3_000_000  # at --scale 1 (fewer below: a tiny run stays tiny)
CALLS = 30  # calls per system per repeat
YEAR = 2025
EVENTS_SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("device_id", pa.int64()), ("kind", pa.string()),
                           ("value", pa.float64())])
_KINDS = pa.array(["click", "view", "scroll", "buy", "error"])


def event_batches(rows: int, seed: int, batch_rows: int = 250_000):
    """A year of events with timestamps in random order (seeded, vectorised)."""
    start = int(dt.datetime(YEAR, 1, 1).timestamp()) * 1_000_000
    span = 365 * 86_400 * 1_000_000
    for offset in range(0, rows, batch_rows):
        n = min(batch_rows, rows - offset)
        rng = np.random.default_rng((seed, offset))
        yield pa.RecordBatch.from_arrays([
            pa.array(start + rng.integers(0, span, n), pa.int64()).cast(pa.timestamp("us")),
            pa.array(rng.integers(0, 100_000, n)),
            _KINDS.take(pa.array(rng.integers(0, len(_KINDS), n))),
            pa.array(rng.random(n) * 100.0),
        ], schema=EVENTS_SCHEMA)


def _load_parts(b: Bench, name: str, schema: pa.Schema, batches, total: int, properties: dict) -> None:
    """``batches`` into ``name`` in :data:`PARTS` parts, flushing after each (one file or more each)."""
    b.reset_table(name)
    b.client.create_table(name, schema, config={"properties": properties})
    per_part = -(-total // PARTS)
    pending: list[pa.RecordBatch] = []
    rows = 0

    def send() -> None:
        if pending:
            b.adbc_ingest(name, schema, list(pending), mode="append")
            b.client.flush(name)
            pending.clear()

    with b.task(f"load {name}", total, "rows") as task:
        for batch in batches:
            pending.append(batch)
            rows += batch.num_rows
            task.advance(batch.num_rows)
            if rows >= per_part:
                send()
                rows = 0
        send()
    b.loaded(name, total)


def _load_lineitem(b: Bench) -> pa.Array:
    """Load lineitem; returns its distinct order keys (to draw lookups from)."""
    src = tpch.generate(b, b.opts.scale) / "lineitem.parquet"
    schema = tpch._plain_schema(pq.ParquetFile(src).schema_arrow)
    rows = pq.ParquetFile(src).metadata.num_rows

    class _Quiet:
        def advance(self, n: int = 1) -> None:
            pass

    _load_parts(b, LINEITEM, schema, tpch._batches(src, schema, _Quiet()), rows,
                {"sort_key": "l_orderkey", "bloom_filter_columns": "l_orderkey"})
    return pq.read_table(src, columns=["l_orderkey"]).column(0).unique()


def _interleaved(b: Bench, key: str, title: str, ours_label: str, base_label: str, calls: list,
                 run_ours, run_duck, **detail) -> None:
    """Warm-up + compare on the first call, then ``--repeat`` x :data:`CALLS` calls, each run by
    MinIODB and DuckDB in alternating order; sets ``{key}_p50_ms`` and ``{key}_vs_duckdb``."""
    ours = b.results.add(Measurement(key, title, "miniodb", ours_label, ratios=[f"{key}_p50_ms", f"{key}_vs_duckdb"]))
    base = b.results.add(Measurement(key, title, "duckdb", base_label))
    problem = tpch.compare(run_ours(calls[0]), run_duck(calls[0]), in_order=True)
    if problem:
        b.note(f"{title}: MinIODB's answer differs from DuckDB's: {problem}")
    run_ours(calls[1]), run_duck(calls[1])  # noqa: B018 - second warm-up
    with b.task(title, 2 * b.opts.repeat * CALLS, "queries") as task:
        for r in range(b.opts.repeat):
            lat_o, lat_d = [], []
            for i in range(CALLS):
                call = calls[(r * CALLS + i) % len(calls)]
                for system in b.order(r + i, "o", "d"):
                    started = time.perf_counter()
                    (run_ours if system == "o" else run_duck)(call)
                    (lat_o if system == "o" else lat_d).append(time.perf_counter() - started)
                task.advance(2)
            ours.latencies.append(lat_o)
            base.latencies.append(lat_d)
            ours.seconds.append(sum(lat_o))
            base.seconds.append(sum(lat_d))
    b.report(ours)
    b.report(base)
    p50_o, p50_d = ours.latency(50), base.latency(50)
    b.results.set(f"{key}_p50_ms", p50_o * 1000, **detail)
    b.results.ratio(f"{key}_vs_duckdb", p50_o, p50_d, duckdb_p50_ms=round(p50_d * 1000, 3))
    ours.note = base.note = f"MinIODB / DuckDB p50 = {p50_o / p50_d:.2f}x" + ("; WRONG ANSWER" if problem else "")


def _shape(b: Bench, duck: DuckDBLocal, key: str, title: str, sqls: list[str]) -> None:
    """A new text every call (its literal changes) on one ADBC cursor, as the floor is measured
    (a new cursor per call adds the ADBC driver's own statement set-up and release, 1.5-4 ms
    per call on this machine, none of it the server's)."""
    with b.adbc().cursor() as cur:
        def run_ours(sql: str) -> pa.Table:
            cur.execute(sql)
            return cur.fetch_arrow_table()

        _interleaved(b, key, title, "MinIODB · ADBC (warm connection, one cursor)",
                     "DuckDB in-process, the node's Parquet files", sqls, run_ours, duck.query,
                     files=len(b.parquet_files(_table(sqls[0]))), scale=b.opts.scale)


def _bound(b: Bench, duck: DuckDBLocal, key: str, title: str, sql: str, values: list[tuple]) -> None:
    """The same lookups with their literals bound as parameters, on one ADBC cursor (so ADBC
    prepares once and binds each call), against the same statement in DuckDB in-process."""
    with b.adbc().cursor() as cur:
        def run_ours(params: tuple) -> pa.Table:
            cur.execute(sql, params)
            return cur.fetch_arrow_table()

        _interleaved(b, key, title, "MinIODB · ADBC, bound parameters (one cursor)",
                     "DuckDB in-process, bound parameters", values, run_ours,
                     lambda params: duck.db.sql(sql, params=list(params)).to_arrow_table())


def _protocol_floor(b: Bench) -> None:
    """The same ADBC client against the minimal Flight SQL server, a new text every call:
    the floor under ``point_query_p50_ms`` that no server behind this protocol goes below."""
    import adbc_driver_flightsql.dbapi as dbapi

    info = b.service("minimal_flightsql_minimal", "bench.baselines.minimal_flightsql", "--prepared", "minimal")
    m = b.results.add(Measurement("new_text_floor", "trivial query, new text every call", "minimal_flightsql",
                                  "minimal Flight SQL (DuckDB) · ADBC, new text each call",
                                  ratios=["new_text_query_floor_ms"]))
    with dbapi.connect(info["uri"], autocommit=True) as conn, conn.cursor() as cur:
        for r in range(b.opts.repeat + 1):
            lat = []
            for i in range(CALLS):
                k = r * CALLS + i + 1
                started = time.perf_counter()
                cur.execute(f"SELECT {k} AS k WHERE {k} > 0")
                cur.fetch_arrow_table()
                lat.append(time.perf_counter() - started)
            if r:  # the first round warms the connection up
                m.latencies.append(lat)
                m.seconds.append(sum(lat))
    b.report(m)
    b.results.set("new_text_query_floor_ms", m.latency(50) * 1000)


def _table(sql: str) -> str:
    return LINEITEM if LINEITEM in sql else EVENTS


def run(b: Bench) -> None:
    rng = np.random.default_rng(b.opts.seed)
    keys = _load_lineitem(b)
    picked = keys.take(pa.array(rng.integers(0, len(keys), 4 * CALLS))).to_pylist()
    top = int(pc.max(keys).as_py())
    picked[::10] = rng.integers(1, top, len(picked[::10])).tolist()  # mostly absent (TPC-H keys are sparse)
    point_sqls = [f"SELECT count(*) FROM {LINEITEM} WHERE l_orderkey = {k}" for k in picked]
    events = max(10_000, int(EVENT_ROWS * min(1.0, b.opts.scale)))
    _load_parts(b, EVENTS, EVENTS_SCHEMA, event_batches(events, b.opts.seed), events,
                {"sort_key": "ts", "time_column": "ts"})
    days = [dt.date(YEAR, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 364, 4 * CALLS)]
    range_sqls = [f"SELECT count(*), sum(value) FROM {EVENTS} WHERE ts >= TIMESTAMP '{d}' "
                  f"AND ts < TIMESTAMP '{d + dt.timedelta(days=1)}'" for d in days]
    duck = DuckDBLocal()
    try:
        for t in TABLES:
            duck.view(t, b.parquet_files(t))
        _shape(b, duck, "point_query", "point lookup (lineitem, l_orderkey = k)", point_sqls)
        _shape(b, duck, "time_range_query", "one day of a year of events", range_sqls)
        _bound(b, duck, "point_query_bound", "point lookup, key bound as a parameter",
               f"SELECT count(*) FROM {LINEITEM} WHERE l_orderkey = ?", [(k,) for k in picked])
        _bound(b, duck, "time_range_query_bound", "one day, bounds bound as parameters",
               f"SELECT count(*), sum(value) FROM {EVENTS} WHERE ts >= ? AND ts < ?",
               [(dt.datetime.combine(d, dt.time()), dt.datetime.combine(d + dt.timedelta(days=1), dt.time()))
                for d in days])
        _protocol_floor(b)
    finally:
        duck.close()
