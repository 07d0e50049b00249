"""Ingest: ADBC ``adbc_ingest`` of ``--rows`` narrow rows (durable acknowledgement) vs a raw
``pyarrow.flight`` DoPut of the same batches to a server that drains the stream and acks.
Batches of 250k rows (8 MB) stay under ADBC's 16 MiB message cap."""

from __future__ import annotations

import time

import adbc_driver_flightsql.dbapi as dbapi
import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol
from clients.protocol import sql_pb2

from .. import data
from ..metrics import Measurement
from ..runner import NARROW, Bench, adbc_source

TITLE = "ingest narrow table (4 cols)"


def raw_put(client: flight.FlightClient, path: list[str], batches, schema) -> int:
    """DoPut ``batches`` to ``path``; returns the rows the server acknowledged."""
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(*path), schema)
    for b in batches:
        writer.write_batch(b)
    writer.done_writing()
    ack = reader.read()
    writer.close()
    return 0 if ack is None else protocol.decode(sql_pb2.DoPutUpdateResult, ack).record_count


def run(b: Bench) -> None:
    rows, repeat = b.opts.rows, b.opts.repeat
    batches = list(data.narrow_batches(rows, 250_000, seed=b.opts.seed))
    batches_table = pa.Table.from_batches(batches, schema=data.NARROW_SCHEMA)
    nbytes = sum(x.nbytes for x in batches)
    ours = b.results.add(Measurement("ingest", TITLE, "miniodb", "MinIODB · ADBC adbc_ingest (durable ack)",
                                     rows, nbytes, ratios=["ingest_vs_raw_flight", "ingest_rows_per_s"]))
    raw = b.results.add(Measurement("ingest", TITLE, "raw_flight", "raw pyarrow.flight DoPut (drain + ack)",
                                    rows, nbytes))
    raw_uri = b.service("raw_flight", "bench.baselines.raw_flight")["uri"]
    raw_client = flight.FlightClient(raw_uri)
    # diagnostic: the same ADBC client against the drain server (how much of the gap is the client)
    raw_adbc = b.results.add(Measurement("ingest", TITLE, "raw_flight_adbc",
                                         "raw pyarrow.flight server, ADBC client (diagnostic)", rows, nbytes))
    raw_conn = dbapi.connect(raw_uri, autocommit=True)
    # diagnostic: the node with a pyarrow.flight client (the same Flight SQL ingest command)
    ours_pa = b.results.add(Measurement("ingest", TITLE, "miniodb_pyarrow",
                                        "MinIODB · pyarrow.flight CommandStatementIngest (durable ack, diagnostic)",
                                        rows, nbytes))

    def run_ours() -> None:
        b.reset_table(NARROW)
        started = time.perf_counter()
        acked = b.adbc_ingest(NARROW, data.NARROW_SCHEMA, batches, mode="create")
        ours.seconds.append(time.perf_counter() - started)
        if acked not in (-1, rows):
            b.note(f"ingest: the node acknowledged {acked} rows of {rows}")
        b.client.flush(NARROW)  # settle: the next phase does not compete with a background flush

    def run_raw() -> None:
        started = time.perf_counter()
        raw_put(raw_client, ["drain"], batches, data.NARROW_SCHEMA)
        raw.seconds.append(time.perf_counter() - started)

    def run_ours_pyarrow() -> None:
        b.reset_table(NARROW)
        started = time.perf_counter()
        b.client.ingest(NARROW, batches_table, mode="create")
        ours_pa.seconds.append(time.perf_counter() - started)
        b.client.flush(NARROW)

    def run_raw_adbc() -> None:
        with raw_conn.cursor() as cur:
            source = adbc_source(data.NARROW_SCHEMA, batches)
            started = time.perf_counter()
            cur.adbc_ingest(NARROW, source, mode="create")
            raw_adbc.seconds.append(time.perf_counter() - started)

    try:
        # one untimed round first, for every system: connections, allocator pages, page cache
        for fn in (run_ours_pyarrow, run_ours, run_raw, run_raw_adbc):
            fn()
        for m in (ours, raw, raw_adbc, ours_pa):
            m.seconds.clear()
        with b.task("ingest", 4 * repeat) as t:
            for i in range(repeat):
                for fn in b.order(i, run_ours, run_raw) + [run_raw_adbc, run_ours_pyarrow]:
                    fn()
                    t.advance()
    finally:
        raw_client.close()
        raw_conn.close()
    b.loaded(NARROW, rows)
    for m in (ours, raw, raw_adbc, ours_pa):
        b.report(m)
    b.results.set("ingest_rows_per_s", ours.rows_per_s)
    b.results.ratio("ingest_vs_raw_flight", ours.rows_per_s, raw.rows_per_s)
    b.results.ratio("ingest_adbc_client_vs_raw_flight", raw_adbc.rows_per_s, raw.rows_per_s)
    b.results.ratio("ingest_pyarrow_vs_raw_flight", ours_pa.rows_per_s, raw.rows_per_s)
