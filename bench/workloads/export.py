"""Export, measured like for like: ``SELECT *`` of the flushed narrow table.

* ``export``: a ``pyarrow.flight`` client on both sides - the node's GetFlightInfo + DoGet of
  ``SELECT * FROM t`` vs a raw ``pyarrow.flight`` DoGet of the same rows from a server that holds
  them in memory -> ``export_vs_raw_flight``.
* ``export_adbc``: ADBC ``fetch_arrow_table`` of the same query against the same raw pyarrow
  baseline -> ``export_adbc_vs_raw_flight`` (information: includes the ADBC client's cost)."""

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
    ours = b.results.add(Measurement("export", TITLE, "miniodb",
                                     "MinIODB · pyarrow.flight GetFlightInfo + DoGet", rows, nbytes,
                                     ratios=["export_vs_raw_flight"]))
    raw = b.results.add(Measurement("export", TITLE, "raw_flight", "raw pyarrow.flight server · pyarrow.flight DoGet",
                                    rows, nbytes))
    ours_adbc = b.results.add(Measurement("export_adbc", TITLE, "miniodb", "MinIODB · ADBC fetch_arrow_table",
                                          rows, nbytes, ratios=["export_adbc_vs_raw_flight", "export_rows_per_s"]))
    sql = f'SELECT * FROM "{NARROW}"'

    def check(who: str, got: int) -> None:
        if got != rows:
            b.note(f"export: MinIODB returned {got} rows through {who}, expected {rows}")

    def run_ours() -> None:
        started = time.perf_counter()
        got = b.client.query(sql)
        ours.seconds.append(time.perf_counter() - started)
        check("pyarrow.flight", got.num_rows)

    def run_ours_adbc() -> None:
        started = time.perf_counter()
        got = b.adbc_query(sql)
        ours_adbc.seconds.append(time.perf_counter() - started)
        check("ADBC", got.num_rows)

    def run_raw() -> None:
        started = time.perf_counter()
        raw_client.do_get(flight.Ticket(NARROW.encode())).read_all()
        raw.seconds.append(time.perf_counter() - started)

    try:
        for fn in (run_ours, run_ours_adbc, run_raw):  # warm-up (file cache, connections), not counted
            fn()
        for m in (ours, raw, ours_adbc):
            m.seconds.clear()
        with b.task("export", 3 * repeat) as t:
            for i in range(repeat):
                for fn in b.order(i, run_ours, run_raw) + [run_ours_adbc]:
                    fn()
                    t.advance()
    finally:
        raw_client.close()
    for m in (ours, raw, ours_adbc):
        b.report(m)
    b.results.ratio("export_vs_raw_flight", ours.rows_per_s, raw.rows_per_s)
    b.results.ratio("export_adbc_vs_raw_flight", ours_adbc.rows_per_s, raw.rows_per_s)
    b.results.set("export_rows_per_s", ours_adbc.rows_per_s)
