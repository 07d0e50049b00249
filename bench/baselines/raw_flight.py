"""The transfer ceiling: a raw ``pyarrow.flight`` server that only receives and returns batches.

* ``DoPut`` to path ``["drain"]`` (or any other descriptor, e.g. ADBC's ``CommandStatementIngest``)
  reads the whole stream, discards it and acknowledges with the row count (a bare
  ``DoPutUpdateResult``, as a Flight SQL server would).
* ``DoPut`` to path ``["keep", name]`` keeps the batches in memory under ``name``.
* ``DoGet`` of ticket ``name`` streams the kept batches back as they were received.

No validation, no WAL, no buffer, no SQL: whatever MinIODB does beyond this is its overhead.

    python -m bench.baselines.raw_flight --ready-file ready.json
"""

from __future__ import annotations

import threading

import click
import pyarrow as pa
import pyarrow.flight as flight

from clients.protocol import sql_pb2

from . import write_ready


class RawFlightServer(flight.FlightServerBase):
    def __init__(self, location: str = "grpc://127.0.0.1:0"):
        super().__init__(location)
        self._tables: dict[str, pa.Table] = {}
        self._lock = threading.Lock()

    def do_put(self, context, descriptor, reader, writer):
        path = [p.decode() if isinstance(p, bytes) else p for p in (descriptor.path or [])]
        if path and path[0] == "keep" and len(path) == 2:
            table = reader.read_all()
            with self._lock:
                self._tables[path[1]] = table
            rows = table.num_rows
        else:
            rows = 0
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                if chunk.data is not None:
                    rows += chunk.data.num_rows
        writer.write(pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=rows).SerializeToString()))

    def do_get(self, context, ticket):
        name = ticket.ticket.decode()
        with self._lock:
            table = self._tables.get(name)
        if table is None:
            raise flight.FlightServerError(f"no table {name!r}")
        return flight.RecordBatchStream(table)


@click.command()
@click.option("--ready-file", required=True)
def main(ready_file: str) -> None:
    server = RawFlightServer()
    write_ready(ready_file, {"uri": f"grpc://127.0.0.1:{server.port}"})
    server.serve()


if __name__ == "__main__":
    main()
