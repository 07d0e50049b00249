"""Errors reach real Flight clients (pyarrow.flight, ADBC) of a real node process with the
right gRPC status and a clean message: no Python traceback, no file path, no source line,
whether a handler raised or the DoGet stream failed mid-way (the server sets
``sys.tracebacklimit = 0``; pyarrow would otherwise append the traceback)."""

from __future__ import annotations

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import protocol
from clients.protocol import sql_pb2
from tests.fixtures.node import NodeProcess

# a result far over the prefetch size (1 MiB) whose rows fail to convert late: the error comes
# from the DoGet stream, after GetFlightInfo succeeded
LATE_FAILURE = ("SELECT CAST(CASE WHEN range > 2500000 THEN 'x' ELSE '1' END AS INT) AS v "
                "FROM range(3000000)")


def assert_clean(message: str) -> None:
    for leak in ("Traceback", '.py"', "line "):
        assert leak not in message, message


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("errors")).start()
    node.client().ingest("err_t", pa.table({"a": list(range(100)), "s": [str(i) for i in range(100)]}))
    yield node
    node.terminate()


@pytest.fixture
def fc(server):
    client = flight.FlightClient(server.flight)
    yield client
    client.close()


def _desc(msg) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(protocol.pack(msg))


def _query(fc, sql: str) -> pa.Table:
    info = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query=sql)))
    return fc.do_get(info.endpoints[0].ticket).read_all()


def _ticket(body: bytes) -> flight.Ticket:
    return flight.Ticket(protocol.pack(sql_pb2.TicketStatementQuery(statement_handle=body)))


@pytest.mark.parametrize(("call", "error"), [
    (lambda fc: _query(fc, "SELEC 1"), pa.ArrowInvalid),  # syntax error
    (lambda fc: _query(fc, "SELECT nope FROM err_t"), pa.ArrowInvalid),  # binder error
    (lambda fc: _query(fc, "SELECT * FROM missing_t"), pa.ArrowKeyError),  # unknown table
    (lambda fc: _query(fc, "DELETE FROM err_t WHERE nope = 1"), pa.ArrowInvalid),  # DML binder error
    (lambda fc: _query(fc, "UPDATE err_t RETURNING *"), pa.ArrowInvalid),  # DML syntax error
    (lambda fc: fc.do_get(flight.Ticket(b"garbage")).read_all(), pa.ArrowInvalid),  # not a command
    (lambda fc: fc.do_get(_ticket(b"{")).read_all(), pa.ArrowInvalid),  # malformed ticket
    (lambda fc: fc.do_get(_ticket(b'{"h": "x"}')).read_all(), pa.ArrowKeyError),  # expired, no SQL
    (lambda fc: fc.do_get(flight.Ticket(protocol.pack(sql_pb2.CommandStatementUpdate(query="SELECT 1"))))
     .read_all(), pa.ArrowNotImplementedError),  # a command DoGet does not take
], ids=["syntax", "binder", "unknown-table", "delete-binder", "update-syntax", "bad-ticket", "malformed-ticket", "expired-ticket",
        "unsupported-command"])
def test_pyarrow_flight_errors_have_the_code_and_no_traceback(fc, call, error):
    with pytest.raises(error) as exc:
        call(fc)
    assert_clean(str(exc.value))
    assert "[miniodb:" in str(exc.value)  # the precise kind travels in the tag


def test_error_in_the_doget_stream_has_the_code_and_no_traceback(fc):
    info = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query=LATE_FAILURE)))  # executes fine
    with pytest.raises(pa.ArrowInvalid, match="Conversion Error") as exc:
        fc.do_get(info.endpoints[0].ticket).read_all()
    assert_clean(str(exc.value))


def _prepared_two_rows(fc, sql: str, values: list) -> flight.FlightInfo:
    body = protocol.pack(sql_pb2.ActionCreatePreparedStatementRequest(query=sql))
    result = next(iter(fc.do_action(flight.Action("CreatePreparedStatement", body))))
    _, prep = protocol.unpack(result.body.to_pybytes())
    handle = prep.prepared_statement_handle
    cmd = sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=handle)
    writer, reader = fc.do_put(_desc(cmd), pa.schema([("p", pa.int64())]))
    writer.write_table(pa.table({"p": values}))
    writer.done_writing()
    bound = sql_pb2.DoPutPreparedStatementResult()
    bound.ParseFromString(reader.read().to_pybytes())
    writer.close()
    if bound.prepared_statement_handle:
        cmd = sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=bound.prepared_statement_handle)
    return fc.get_flight_info(_desc(cmd))  # runs the first row; the second runs in the DoGet stream


def test_not_found_raised_in_the_doget_stream_has_the_code_and_no_traceback(server, fc):
    server.client().ingest("gone_t", pa.table({"a": [1, 2, 3]}))
    info = _prepared_two_rows(fc, "SELECT count(*) AS n FROM gone_t WHERE a > $1", [0, 1])
    _query(fc, "DROP TABLE gone_t")
    with pytest.raises(pa.ArrowKeyError, match="gone_t") as exc:
        fc.do_get(info.endpoints[0].ticket).read_all()
    assert_clean(str(exc.value))


@pytest.mark.parametrize(("sql", "code"), [
    ("SELEC 1", "INVALID_ARGUMENT"),
    ("SELECT * FROM missing_t", "NOT_FOUND"),
    ("SELECT 1/'x'", "INVALID_ARGUMENT"),
    ("DELETE FROM err_t WHERE nope = 1", "INVALID_ARGUMENT"),
    (LATE_FAILURE, "INVALID_ARGUMENT"),
], ids=["syntax", "unknown-table", "binder", "delete", "mid-stream"])
def test_adbc_errors_have_the_code_and_no_traceback(server, sql, code):
    with server.adbc() as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as exc:
            cur.execute(sql)
            cur.fetch_arrow_table()
        assert code in str(exc.value)
        assert_clean(str(exc.value))
        cur.execute("SELECT count(*) FROM err_t")  # the connection still serves
        assert cur.fetchone() == (100,)
