"""The protocol-overhead reference: a minimal Flight SQL server that only runs DuckDB in memory.

It answers exactly what an ADBC client needs for a query, as directly as an honest server can:

* ``GetSqlInfo`` (the connection asks for it): a handful of ids, dense-union schema of the spec.
* ``CreatePreparedStatement``: the handle is the SQL text itself (nothing is planned or kept),
  ``ClosePreparedStatement``: nothing to free. With ``--prepared unimplemented`` it answers
  UNIMPLEMENTED instead and ADBC falls back to ``CommandStatementQuery`` (slower: one failed
  round trip per query), so the faster mode is the default.
* ``GetFlightInfo(CommandStatementQuery | CommandPreparedStatementQuery)``: runs the SQL on a
  fresh DuckDB cursor, keeps the Arrow result, returns one endpoint whose ticket names it.
* ``DoGet(TicketStatementQuery)``: streams that result.
* ``DoPut`` to path ``[name]``: loads a table (how the bench gives it ``small_table``).
* ``CloseSession``: closed.

No catalog, no storage, no WAL, no auth, no sandbox: the difference to MinIODB on a tiny
query is MinIODB's per-query overhead.

    python -m bench.baselines.minimal_flightsql --ready-file ready.json
"""

from __future__ import annotations

import threading
import uuid

import click
import duckdb
import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol
from clients.protocol import flight_pb2, sql_pb2

from . import write_ready

_UNION = pa.dense_union([
    pa.field("string_value", pa.utf8(), nullable=False),
    pa.field("bool_value", pa.bool_(), nullable=False),
    pa.field("bigint_value", pa.int64(), nullable=False),
    pa.field("int32_bitmask", pa.int32(), nullable=False),
    pa.field("string_list", pa.list_(pa.utf8()), nullable=False),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())), nullable=False),
])
SQL_INFO_SCHEMA = pa.schema([pa.field("info_name", pa.uint32(), nullable=False),
                             pa.field("value", _UNION, nullable=False)])
# id -> (union member, value)
_INFO = {
    0: (0, "minimal-duckdb-flightsql"),  # FLIGHT_SQL_SERVER_NAME
    1: (0, duckdb.__version__),  # FLIGHT_SQL_SERVER_VERSION
    2: (0, pa.__version__),  # FLIGHT_SQL_SERVER_ARROW_VERSION
    3: (1, False),  # FLIGHT_SQL_SERVER_READ_ONLY
    4: (1, True),  # FLIGHT_SQL_SERVER_SQL
    8: (3, 0),  # FLIGHT_SQL_SERVER_TRANSACTION: NONE
    9: (1, False),  # FLIGHT_SQL_SERVER_CANCEL
}


def sql_info_table(ids: list[int]) -> pa.Table:
    ids = [i for i in (ids or sorted(_INFO)) if i in _INFO]
    children: list[list] = [[], [], [], [], [], []]
    types, offsets = [], []
    for i in ids:
        member, value = _INFO[i]
        types.append(member)
        offsets.append(len(children[member]))
        children[member].append(value)
    arrays = [pa.array(vals, type=_UNION.field(m).type) for m, vals in enumerate(children)]
    type_ids = pa.array(types, pa.int8())
    value_offsets = pa.array(offsets, pa.int32())
    value = pa.Array.from_buffers(_UNION, len(ids), [None, type_ids.buffers()[1], value_offsets.buffers()[1]],
                                  children=arrays)
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), value], schema=SQL_INFO_SCHEMA)


class MinimalFlightSqlServer(flight.FlightServerBase):
    def __init__(self, location: str = "grpc://127.0.0.1:0", prepared: bool = True):
        super().__init__(location)
        self.prepared = prepared
        self._db = duckdb.connect(":memory:")
        self._results: dict[bytes, pa.Table] = {}
        self._lock = threading.Lock()

    def _run(self, sql: str, descriptor) -> flight.FlightInfo:
        cur = self._db.cursor()
        try:
            table = cur.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise flight.FlightServerError(str(exc)) from None
        finally:
            cur.close()
        handle = uuid.uuid4().bytes
        with self._lock:
            self._results[handle] = table
        ticket = protocol.pack(sql_pb2.TicketStatementQuery(statement_handle=handle))
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, -1)

    def get_flight_info(self, context, descriptor):
        name, msg = protocol.unpack(descriptor.command)
        if name == "CommandStatementQuery":
            return self._run(msg.query, descriptor)
        if name == "CommandPreparedStatementQuery":
            return self._run(msg.prepared_statement_handle.decode(), descriptor)
        if name == "CommandGetSqlInfo":
            table = sql_info_table(list(msg.info))
            endpoint = flight.FlightEndpoint(descriptor.command, [])
            return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, -1)
        raise NotImplementedError(name)

    def do_get(self, context, ticket):
        name, msg = protocol.unpack(ticket.ticket)
        if name == "TicketStatementQuery":
            with self._lock:
                table = self._results.pop(msg.statement_handle, None)
            if table is None:
                raise flight.FlightServerError("unknown ticket")
            return flight.RecordBatchStream(table)
        if name == "CommandGetSqlInfo":
            return flight.RecordBatchStream(sql_info_table(list(msg.info)))
        raise NotImplementedError(name)

    def do_put(self, context, descriptor, reader, writer):
        name = descriptor.path[0]
        name = name.decode() if isinstance(name, bytes) else name
        data = reader.read_all()
        cur = self._db.cursor()
        try:
            cur.register("__load", data)
            cur.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM __load')
        finally:
            cur.close()
        writer.write(pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=data.num_rows).SerializeToString()))

    def do_action(self, context, action):
        kind = action.type
        if kind == protocol.ACTION_CREATE_PREPARED_STATEMENT and self.prepared:
            _, req = protocol.unpack(action.body.to_pybytes())
            result = sql_pb2.ActionCreatePreparedStatementResult(prepared_statement_handle=req.query.encode())
            return [flight.Result(pa.py_buffer(protocol.pack(result)))]
        if kind == protocol.ACTION_CLOSE_PREPARED_STATEMENT and self.prepared:
            return []
        if kind == protocol.ACTION_CLOSE_SESSION:
            result = flight_pb2.CloseSessionResult(status=flight_pb2.CloseSessionResult.CLOSED)
            return [flight.Result(pa.py_buffer(result.SerializeToString()))]
        raise NotImplementedError(f"action {kind}")


@click.command()
@click.option("--ready-file", required=True)
@click.option("--prepared", type=click.Choice(["minimal", "unimplemented"]), default="minimal",
              show_default=True, help="answer CreatePreparedStatement minimally or with UNIMPLEMENTED")
def main(ready_file: str, prepared: str) -> None:
    server = MinimalFlightSqlServer(prepared=prepared == "minimal")
    write_ready(ready_file, {"uri": f"grpc://127.0.0.1:{server.port}", "prepared": prepared})
    server.serve()


if __name__ == "__main__":
    main()
