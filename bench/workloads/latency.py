"""Small-query latency: ``SELECT count(*)`` of a small table on a warm ADBC connection, vs the
same query against a minimal Flight SQL server that only runs DuckDB in memory.

The minimal server runs in both of its honest modes (prepared statements answered minimally,
or UNIMPLEMENTED so ADBC falls back to CommandStatementQuery); the faster one is the reference.
Each repeat runs ``--latency-queries`` calls per system after a warm-up; p50/p95/p99 are the
medians over the repeats of each repeat's percentiles."""

from __future__ import annotations

import time

import pyarrow.flight as flight

from .. import data
from ..metrics import Measurement
from ..runner import SMALL, Bench
from .ingest import raw_put

TITLE = "small query latency (SELECT count(*))"
WARMUP = 20


def timed_calls(conn, sql: str, n: int) -> list[float]:
    """Seconds per ``execute`` + ``fetch_arrow_table`` of ``sql``, ``n`` times on one cursor."""
    out = []
    with conn.cursor() as cur:
        for _ in range(n):
            started = time.perf_counter()
            cur.execute(sql)
            cur.fetch_arrow_table()
            out.append(time.perf_counter() - started)
    return out


def run(b: Bench) -> None:
    import adbc_driver_flightsql.dbapi as dbapi

    small = data.narrow_table(b.opts.small_rows, seed=b.opts.seed + 1)
    if not b.is_loaded(SMALL):
        b.reset_table(SMALL)
        b.adbc_ingest(SMALL, small.schema, small.to_batches(), mode="create")
        b.client.flush(SMALL)
        b.loaded(SMALL, small.num_rows)
    sql = f"SELECT count(*) FROM {SMALL}"
    n = b.opts.latency_queries
    systems = [("miniodb", "MinIODB · ADBC", b.adbc())]
    extra = []
    for mode in ("minimal", "unimplemented"):
        info = b.service(f"minimal_flightsql_{mode}", "bench.baselines.minimal_flightsql", "--prepared", mode)
        fc = flight.FlightClient(info["uri"])
        raw_put(fc, [SMALL], small.to_batches(), small.schema)
        fc.close()
        conn = dbapi.connect(info["uri"], autocommit=True)
        extra.append(conn)
        label = ("minimal Flight SQL (DuckDB) · prepared statements" if mode == "minimal"
                 else "minimal Flight SQL (DuckDB) · no prepared statements")
        systems.append((f"minimal_flightsql_{mode}", label, conn))
    ms = {key: b.results.add(Measurement("latency", TITLE, key, label, 0, 0,
                                         ratios=["small_query_latency_vs_minimal_flightsql",
                                                 "small_query_p50_ms"] if key == "miniodb" else []))
          for key, label, _ in systems}
    try:
        for _key, _label, conn in systems:
            timed_calls(conn, sql, WARMUP)
        with b.task("small-query latency", len(systems) * b.opts.repeat * n, "queries") as task:
            for i in range(b.opts.repeat):
                order = systems[i % len(systems):] + systems[:i % len(systems)]
                for key, _label, conn in order:
                    samples = timed_calls(conn, sql, n)
                    ms[key].latencies.append(samples)
                    ms[key].seconds.append(sum(samples))
                    task.advance(n)
    finally:
        for conn in extra:
            conn.close()
    for m in ms.values():
        b.report(m)
    ours = ms["miniodb"]
    refs = [m for k, m in ms.items() if k != "miniodb"]
    best = min(refs, key=lambda m: m.latency(50))
    b.results.set("small_query_p50_ms", ours.latency(50) * 1000)
    b.results.set("small_query_p99_ms", ours.latency(99) * 1000)
    b.results.ratio("small_query_latency_vs_minimal_flightsql", ours.latency(50), best.latency(50),
                    reference=best.label)
