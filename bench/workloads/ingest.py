"""Ingest, measured like for like: the same client library on both sides, so only the server differs.

* ``ingest`` (narrow table, 4 numeric columns): a ``pyarrow.flight`` DoPut of
  ``CommandStatementIngest`` into the node (durable acknowledgement) vs a ``pyarrow.flight`` DoPut
  of the same batches to a raw server that drains the stream and acks -> ``ingest_vs_raw_flight``.
* ``ingest_adbc``: ADBC ``adbc_ingest`` into the node vs ADBC into the same raw server
  -> ``ingest_adbc_vs_adbc_ceiling`` (information: the ADBC client's own CPU bounds both).
* ``wide_ingest`` (the 16-column lineitem-like table with strings): pyarrow.flight on both
  sides -> ``wide_ingest_vs_raw_flight``. The node's last run stays loaded (flushed) for the
  query workload.

Batches of 250k narrow rows (8 MB) and ~90k wide rows stay under ADBC's 16 MiB message cap.
Every phase runs ``--repeat`` times, interleaved, alternating which side goes first; medians."""

from __future__ import annotations

import time

import adbc_driver_flightsql.dbapi as dbapi
import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol
from clients.protocol import sql_pb2

from .. import data
from ..metrics import Measurement
from ..runner import NARROW, WIDE, Bench, adbc_source

TITLE = "ingest narrow table (4 cols)"
WIDE_TITLE = "ingest wide table (16 cols, strings)"
NODE_PA = "MinIODB · pyarrow.flight DoPut CommandStatementIngest (durable ack)"
RAW_PA = "raw pyarrow.flight server · pyarrow.flight DoPut (drain + ack)"


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
    raw_uri = b.service("raw_flight", "bench.baselines.raw_flight")["uri"]
    raw_client = flight.FlightClient(raw_uri)
    raw_conn = dbapi.connect(raw_uri, autocommit=True)
    try:
        _narrow(b, raw_client, raw_conn)  # its batches are freed before the wide table is built
        _wide(b, raw_client)
    finally:
        raw_client.close()
        raw_conn.close()


def _narrow(b: Bench, raw_client: flight.FlightClient, raw_conn) -> None:
    """The narrow table: pyarrow.flight on both sides, then ADBC on both sides."""
    rows, repeat = b.opts.rows, b.opts.repeat
    batches = list(data.narrow_batches(rows, 250_000, seed=b.opts.seed))
    table = pa.Table.from_batches(batches, schema=data.NARROW_SCHEMA)
    nbytes = table.nbytes
    ours = b.results.add(Measurement("ingest", TITLE, "miniodb", NODE_PA, rows, nbytes,
                                     ratios=["ingest_vs_raw_flight"]))
    raw = b.results.add(Measurement("ingest", TITLE, "raw_flight", RAW_PA, rows, nbytes))
    ours_adbc = b.results.add(Measurement("ingest_adbc", TITLE, "miniodb", "MinIODB · ADBC adbc_ingest (durable ack)",
                                          rows, nbytes, ratios=["ingest_adbc_vs_adbc_ceiling", "ingest_rows_per_s"]))
    raw_adbc = b.results.add(Measurement("ingest_adbc", TITLE, "raw_flight_adbc",
                                         "raw pyarrow.flight server · ADBC adbc_ingest (drain + ack)", rows, nbytes))

    def run_ours() -> None:
        b.reset_table(NARROW)
        started = time.perf_counter()
        acked = b.client.ingest(NARROW, table, mode="create")
        ours.seconds.append(time.perf_counter() - started)
        if acked != rows:
            b.note(f"ingest: the node acknowledged {acked} rows of {rows}")
        b.client.flush(NARROW)  # settle: the next phase does not compete with a background flush

    def run_raw() -> None:
        started = time.perf_counter()
        raw_put(raw_client, ["drain"], batches, data.NARROW_SCHEMA)
        raw.seconds.append(time.perf_counter() - started)

    def run_ours_adbc() -> None:
        b.reset_table(NARROW)
        started = time.perf_counter()
        acked = b.adbc_ingest(NARROW, data.NARROW_SCHEMA, batches, mode="create")
        ours_adbc.seconds.append(time.perf_counter() - started)
        if acked not in (-1, rows):
            b.note(f"ingest: the node acknowledged {acked} rows of {rows} (ADBC)")
        b.client.flush(NARROW)

    def run_raw_adbc() -> None:
        with raw_conn.cursor() as cur:
            source = adbc_source(data.NARROW_SCHEMA, batches)
            started = time.perf_counter()
            cur.adbc_ingest(NARROW, source, mode="create")
            raw_adbc.seconds.append(time.perf_counter() - started)

    # one untimed round first, for every system: connections, allocator pages, page cache
    for fn in (run_ours_adbc, run_raw_adbc, run_raw, run_ours):
        fn()
    for m in (ours, raw, ours_adbc, raw_adbc):
        m.seconds.clear()
    with b.task("ingest", 4 * repeat) as t:
        for i in range(repeat):
            for fn in b.order(i, run_ours, run_raw) + b.order(i, run_ours_adbc, run_raw_adbc):
                fn()
                t.advance()
    b.loaded(NARROW, rows)  # the node's last run left it loaded and flushed
    for m in (ours, raw, ours_adbc, raw_adbc):
        b.report(m)
    b.results.ratio("ingest_vs_raw_flight", ours.rows_per_s, raw.rows_per_s)
    b.results.ratio("ingest_adbc_vs_adbc_ceiling", ours_adbc.rows_per_s, raw_adbc.rows_per_s)
    b.results.ratio("ingest_adbc_client_vs_raw_flight", raw_adbc.rows_per_s, raw.rows_per_s)
    b.results.set("ingest_rows_per_s", ours_adbc.rows_per_s)


def _wide(b: Bench, raw_client: flight.FlightClient) -> None:
    """The 16-column table with strings, pyarrow.flight on both sides."""
    rows, repeat = b.opts.rows, b.opts.repeat
    batches = list(data.wide_batches(rows, seed=b.opts.seed))
    table = pa.Table.from_batches(batches, schema=data.WIDE_SCHEMA)
    nbytes = table.nbytes
    ours = b.results.add(Measurement("wide_ingest", WIDE_TITLE, "miniodb", NODE_PA, rows, nbytes,
                                     ratios=["wide_ingest_vs_raw_flight", "wide_ingest_rows_per_s"]))
    raw = b.results.add(Measurement("wide_ingest", WIDE_TITLE, "raw_flight", RAW_PA, rows, nbytes))

    def run_ours() -> None:
        b.reset_table(WIDE)
        started = time.perf_counter()
        acked = b.client.ingest(WIDE, table, mode="create")
        ours.seconds.append(time.perf_counter() - started)
        if acked != rows:
            b.note(f"wide ingest: the node acknowledged {acked} rows of {rows}")
        b.client.flush(WIDE)

    def run_raw() -> None:
        started = time.perf_counter()
        raw_put(raw_client, ["drain"], batches, data.WIDE_SCHEMA)
        raw.seconds.append(time.perf_counter() - started)

    for fn in (run_ours, run_raw):  # warm-up, not counted (the node's WAL segment files, as for narrow)
        fn()
    ours.seconds.clear()
    raw.seconds.clear()
    with b.task("wide ingest", 2 * repeat) as t:
        for i in range(repeat):
            for fn in b.order(i, run_ours, run_raw):
                fn()
                t.advance()
    b.loaded(WIDE, rows)
    b.report(ours)
    b.report(raw)
    b.results.ratio("wide_ingest_vs_raw_flight", ours.rows_per_s, raw.rows_per_s)
    b.results.set("wide_ingest_rows_per_s", ours.rows_per_s)
