"""Tiny queries (the latency path): ``SELECT 1``, a count over a small table and a parameterised
point query return what DuckDB returns over the same rows, through ADBC and raw pyarrow.flight;
prepared statements are prepared once, executed with new parameters again and again, closed."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import protocol
from clients.protocol import sql_pb2
from tests.fixtures.node import NodeProcess

TABLE = "tiny_t"
POINT = f"SELECT id, name, v FROM {TABLE} WHERE id = ?"


def _rows(start: int, n: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i % 97}" for i in ids],
                     "v": pa.array([i * 0.5 for i in ids], pa.float64())})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("tiny")).start()
    client = node.client()
    client.ingest(TABLE, _rows(0, 600), mode="create")
    client.flush(TABLE)
    client.ingest(TABLE, _rows(600, 400), mode="append")  # still in the buffer: both sources answer
    yield node
    node.terminate()


@pytest.fixture(scope="module")
def reference():
    db = duckdb.connect(":memory:")
    data = pa.concat_tables([_rows(0, 600), _rows(600, 400)])
    db.register("__rows", data)
    db.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM __rows")

    def run(sql: str, params: list | None = None) -> pa.Table:
        return db.sql(sql, params=params).to_arrow_table()

    yield run
    db.close()


def _same(ours: pa.Table, theirs: pa.Table) -> None:
    assert ours.schema.names == theirs.schema.names
    assert ours.schema.types == theirs.schema.types
    assert ours.to_pylist() == theirs.to_pylist()


def _desc(msg) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(protocol.pack(msg))


def _fetch(fc: flight.FlightClient, desc: flight.FlightDescriptor) -> pa.Table:
    info = fc.get_flight_info(desc)
    assert len(info.endpoints) == 1
    return fc.do_get(info.endpoints[0].ticket).read_all()


def _prepare(fc: flight.FlightClient, sql: str):
    body = protocol.pack(sql_pb2.ActionCreatePreparedStatementRequest(query=sql))
    return protocol.unpack(list(fc.do_action(flight.Action("CreatePreparedStatement", body)))[0].body.to_pybytes())[1]


def _bind(fc: flight.FlightClient, handle: bytes, params: pa.Table) -> bytes:
    writer, reader = fc.do_put(_desc(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=handle)),
                               params.schema)
    writer.write_table(params)
    writer.done_writing()
    bound = protocol.decode(sql_pb2.DoPutPreparedStatementResult, reader.read()).prepared_statement_handle
    writer.close()
    return bound or handle


def _close(fc: flight.FlightClient, handle: bytes) -> None:
    body = protocol.pack(sql_pb2.ActionClosePreparedStatementRequest(prepared_statement_handle=handle))
    list(fc.do_action(flight.Action("ClosePreparedStatement", body)))


@pytest.mark.parametrize("sql", ["SELECT 1", f"SELECT count(*) FROM {TABLE}",
                                 f"SELECT count(*) AS n, sum(v) AS s FROM {TABLE} WHERE id >= 590"])
def test_tiny_queries_through_adbc_match_duckdb(server, reference, sql):
    with server.adbc() as conn, conn.cursor() as cur:
        for _ in range(3):  # the cursor keeps its prepared statement: executed again, same answer
            cur.execute(sql)
            _same(cur.fetch_arrow_table(), reference(sql))


def test_point_query_with_new_parameters_on_one_adbc_cursor(server, reference):
    with server.adbc() as conn, conn.cursor() as cur:
        for key in (42, 599, 600, 999, 5000, 42):  # flushed, buffered, absent, and again the first
            cur.execute(POINT, (key,))
            _same(cur.fetch_arrow_table(), reference(POINT, [key]))


def test_tiny_queries_through_pyarrow_flight_match_duckdb(server, reference):
    fc = flight.FlightClient(server.flight)
    try:
        for sql in ("SELECT 1", f"SELECT count(*) FROM {TABLE}"):
            _same(_fetch(fc, _desc(sql_pb2.CommandStatementQuery(query=sql))), reference(sql))
            prep = _prepare(fc, sql)  # the prepared statement's schema is the result's schema
            assert pa.ipc.read_schema(pa.py_buffer(prep.dataset_schema)) == reference(sql).schema
            desc = _desc(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=prep.prepared_statement_handle))
            for _ in range(2):
                _same(_fetch(fc, desc), reference(sql))
            _close(fc, prep.prepared_statement_handle)
    finally:
        fc.close()


def test_prepared_point_query_reused_with_new_parameters_then_closed(server, reference):
    fc = flight.FlightClient(server.flight)
    try:
        prep = _prepare(fc, POINT)
        handle = prep.prepared_statement_handle
        assert len(pa.ipc.read_schema(pa.py_buffer(prep.parameter_schema))) == 1
        with pytest.raises(pa.ArrowInvalid, match="bind them first"):  # INVALID_ARGUMENT
            _fetch(fc, _desc(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=handle)))
        bound = None
        for key in (7, 650, 5000, 7):
            bound = _bind(fc, handle, pa.table({"p": pa.array([key], pa.int64())}))
            for raw in (handle, bound):  # the node's statement and the self-contained handle agree
                ours = _fetch(fc, _desc(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=raw)))
                _same(ours, reference(POINT, [key]))
        _close(fc, handle)
        # closed on the node: the handle the bind returned still carries the SQL and the last values
        ours = _fetch(fc, _desc(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=bound)))
        _same(ours, reference(POINT, [7]))
    finally:
        fc.close()
