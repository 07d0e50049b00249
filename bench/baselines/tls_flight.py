"""The transport's own TLS cost: a raw ``pyarrow.flight`` server holding tables in memory,
served over grpc+tls (with ``--tls-cert-file/--tls-key-file``) or plaintext.

``DoPut`` to path ``[name]`` keeps the batches; ``DoGet`` of ticket ``name`` streams them back.
The ``security`` workload runs one of each, so MinIODB's TLS overhead on export can be read
next to what gRPC's TLS costs a bare Flight transfer on the same machine.

    python -m bench.baselines.tls_flight --ready-file ready.json [--tls-cert-file C --tls-key-file K]
"""

from __future__ import annotations

import threading
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.flight as flight

from . import write_ready


class TableServer(flight.FlightServerBase):
    def __init__(self, location: str, tls_certificates: list | None = None):
        super().__init__(location, tls_certificates=tls_certificates or [])
        self._tables: dict[str, pa.Table] = {}
        self._lock = threading.Lock()

    def do_put(self, context, descriptor, reader, writer):
        name = descriptor.path[0].decode() if descriptor.path else "t"
        table = reader.read_all()
        with self._lock:
            self._tables[name] = table

    def do_get(self, context, ticket):
        with self._lock:
            table = self._tables.get(ticket.ticket.decode())
        if table is None:
            raise flight.FlightServerError("no such table")
        return flight.RecordBatchStream(table)


@click.command()
@click.option("--ready-file", required=True)
@click.option("--tls-cert-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--tls-key-file", type=click.Path(exists=True, dir_okay=False), default=None)
def main(ready_file: str, tls_cert_file: str | None, tls_key_file: str | None) -> None:
    if tls_cert_file and tls_key_file:
        certs = [(Path(tls_cert_file).read_bytes(), Path(tls_key_file).read_bytes())]
        server = TableServer("grpc+tls://127.0.0.1:0", certs)
        uri = f"grpc+tls://127.0.0.1:{server.port}"
    else:
        server = TableServer("grpc://127.0.0.1:0")
        uri = f"grpc://127.0.0.1:{server.port}"
    write_ready(ready_file, {"uri": uri})
    server.serve()


if __name__ == "__main__":
    main()
