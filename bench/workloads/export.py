"""Export: ``SELECT *`` of the narrow table through ADBC ``fetch_arrow_table`` vs a raw
``pyarrow.flight`` DoGet of the same rows from a server that holds them in memory."""

from __future__ import annotations

import time

import pyarrow.flight as flight

from .. import data
from ..metrics import Measurement
from ..runner import NARROW, Bench
from .ingest import raw_put

TITLE = "export narrow table (SELECT *)"


def run(b: Bench) -> None:
    b.ensure_narrow()
    rows, repeat = b.opts.rows, b.opts.repeat
    table = data.narrow_table(rows, seed=b.opts.seed)
    nbytes = table.nbytes
    raw_client = flight.FlightClient(b.service("raw_flight", "bench.baselines.raw_flight")["uri"])
    raw_put(raw_client, ["keep", NARROW], table.to_batches(), table.schema)
    del table
    ours = b.results.add(Measurement("export", TITLE, "miniodb", "MinIODB · ADBC fetch_arrow_table",
                                     rows, nbytes, ratios=["export_vs_raw_flight", "export_rows_per_s"]))
    raw = b.results.add(Measurement("export", TITLE, "raw_flight", "raw pyarrow.flight DoGet", rows, nbytes))
    sql = f'SELECT * FROM "{NARROW}"'

    def run_ours() -> None:
        started = time.perf_counter()
        got = b.adbc_query(sql)
        ours.seconds.append(time.perf_counter() - started)
        if got.num_rows != rows:
            b.note(f"export: MinIODB returned {got.num_rows} rows, expected {rows}")

    def run_raw() -> None:
        started = time.perf_counter()
        raw_client.do_get(flight.Ticket(NARROW.encode())).read_all()
        raw.seconds.append(time.perf_counter() - started)

    try:
        run_ours()  # warm-up (file cache, connection), not counted
        run_raw()
        ours.seconds.clear()
        raw.seconds.clear()
        with b.task("export", 2 * repeat) as t:
            for i in range(repeat):
                for fn in b.order(i, run_ours, run_raw):
                    fn()
                    t.advance()
    finally:
        raw_client.close()
    b.report(ours)
    b.report(raw)
    b.results.set("export_rows_per_s", ours.rows_per_s)
    b.results.ratio("export_vs_raw_flight", ours.rows_per_s, raw.rows_per_s)
