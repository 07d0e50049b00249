"""Tiny-query latency on a warm ADBC connection, vs a minimal Flight SQL server that only runs
DuckDB in memory: ``SELECT count(*)`` of a small table and ``SELECT 1`` (the protocol alone).

The minimal server runs in both of its honest modes (prepared statements answered minimally,
or UNIMPLEMENTED so ADBC falls back to CommandStatementQuery); the faster one is the reference.
Each repeat runs ``--latency-queries`` calls per system and query after a warm-up, the systems
interleaved (the order rotates per repeat); p50/p95/p99 are the medians over the repeats of
each repeat's percentiles. The same ADBC client library talks to every system.

Per ``cursor.execute()`` + fetch, ADBC sends ``GetFlightInfo(CommandPreparedStatementQuery)``
and ``DoGet``; it prepares (``CreatePreparedStatement``) only when the cursor's SQL changes.
"""

from __future__ import annotations

import time

import pyarrow.flight as flight

from .. import data
from ..metrics import Measurement
from ..runner import SMALL, Bench
from .ingest import raw_put

WARMUP = 20
# (workload, title, SQL, p50 metric, p99 metric or None, ratio metric)
QUERIES = (
    ("latency", "small query latency (SELECT count(*))", f"SELECT count(*) FROM {SMALL}",
     "small_query_p50_ms", "small_query_p99_ms", "small_query_latency_vs_minimal_flightsql"),
    ("latency_select_1", "protocol latency (SELECT 1)", "SELECT 1",
     "select_1_p50_ms", "select_1_p99_ms", "select_1_vs_minimal_flightsql"),
)


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
    try:
        for workload, title, sql, p50, p99, ratio in QUERIES:
            _measure(b, systems, workload, title, sql, n, p50, p99, ratio)
    finally:
        for conn in extra:
            conn.close()


def _measure(b: Bench, systems: list, workload: str, title: str, sql: str, n: int,
             p50: str, p99: str, ratio: str) -> None:
    ms = {key: b.results.add(Measurement(workload, title, key, label, 0, 0,
                                         ratios=[ratio, p50] if key == "miniodb" else []))
          for key, label, _ in systems}
    for _key, _label, conn in systems:
        timed_calls(conn, sql, WARMUP)
    with b.task(title, len(systems) * b.opts.repeat * n, "queries") as task:
        for i in range(b.opts.repeat):
            order = systems[i % len(systems):] + systems[:i % len(systems)]
            for key, _label, conn in order:
                samples = timed_calls(conn, sql, n)
                ms[key].latencies.append(samples)
                ms[key].seconds.append(sum(samples))
                task.advance(n)
    for m in ms.values():
        b.report(m)
    ours = ms["miniodb"]
    best = min((m for k, m in ms.items() if k != "miniodb"), key=lambda m: m.latency(50))
    b.results.set(p50, ours.latency(50) * 1000)
    b.results.set(p99, ours.latency(99) * 1000)
    b.results.ratio(ratio, ours.latency(50), best.latency(50), reference=best.label)
