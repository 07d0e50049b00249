"""Flight SQL semantics with raw pyarrow.flight: exactly-once DDL/DML, self-contained tickets
and handles, GetSchema without side effects, batch sizes, errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import protocol
from clients.protocol import sql_pb2
from tests.fixtures.node import NodeProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("protocol")).start()
    yield node
    node.terminate()


@pytest.fixture
def fc(server):
    client = flight.FlightClient(server.flight)
    yield client
    client.close()


def _desc(msg) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(protocol.pack(msg))


def _count(fc, table: str) -> int:
    info = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query=f"SELECT count(*) AS n FROM {table}")))
    return fc.do_get(info.endpoints[0].ticket).read_all().column("n")[0].as_py()


def test_dml_runs_once_in_get_flight_info(fc):
    info = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="CREATE TABLE once_t (a BIGINT)")))
    assert len(info.schema) == 0 and info.total_records == 0  # applied, never fetched
    insert = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="INSERT INTO once_t VALUES (1), (2)")))
    assert insert.total_records == 2
    assert _count(fc, "once_t") == 2
    for _ in range(2):  # fetching the DML ticket (even twice) does not run it again
        assert fc.do_get(insert.endpoints[0].ticket).read_all().num_rows == 0
    assert _count(fc, "once_t") == 2
    schema = fc.get_schema(_desc(sql_pb2.CommandStatementQuery(query="INSERT INTO once_t VALUES (3)"))).schema
    assert len(schema) == 0 and _count(fc, "once_t") == 2  # GetSchema has no side effect
    assert fc.get_schema(_desc(sql_pb2.CommandStatementQuery(query="SELECT a FROM once_t"))).schema.names == ["a"]


def test_query_ticket_is_self_contained(fc):
    info = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="SELECT range AS v FROM range(5)")))
    first = fc.do_get(info.endpoints[0].ticket).read_all()
    again = fc.do_get(info.endpoints[0].ticket).read_all()  # as a node that never saw it would
    assert first.equals(again) and first.column("v").to_pylist() == [0, 1, 2, 3, 4]


def _prepare(fc, sql: str):
    body = protocol.pack(sql_pb2.ActionCreatePreparedStatementRequest(query=sql))
    return protocol.unpack(list(fc.do_action(flight.Action("CreatePreparedStatement", body)))[0].body.to_pybytes())[1]


def _close(fc, handle: bytes) -> None:
    body = protocol.pack(sql_pb2.ActionClosePreparedStatementRequest(prepared_statement_handle=handle))
    list(fc.do_action(flight.Action("ClosePreparedStatement", body)))


def test_prepared_handle_and_parameters_travel_with_the_handle(fc):
    prep = _prepare(fc, "SELECT ? * 2 AS doubled")
    params = pa.ipc.read_schema(pa.py_buffer(prep.parameter_schema))
    assert len(params) == 1
    writer, reader = fc.do_put(_desc(sql_pb2.CommandPreparedStatementQuery(
        prepared_statement_handle=prep.prepared_statement_handle)), pa.schema([("p", pa.int64())]))
    writer.write_table(pa.table({"p": [21, 50]}))  # two rows: two executions, results concatenated
    writer.done_writing()
    bound = protocol.decode(sql_pb2.DoPutPreparedStatementResult, reader.read()).prepared_statement_handle
    writer.close()
    _close(fc, bound)  # the node forgets it; the handle still carries the SQL and the parameters
    info = fc.get_flight_info(_desc(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=bound)))
    assert fc.do_get(info.endpoints[0].ticket).read_all().column("doubled").to_pylist() == [42, 100]


def test_prepared_insert_params_are_typed_by_the_table(fc):
    fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="CREATE TABLE typed_t (id BIGINT, seen TIMESTAMP)")))
    prep = _prepare(fc, "INSERT INTO typed_t (seen, id) VALUES (?, ?)")
    assert len(pa.ipc.read_schema(pa.py_buffer(prep.dataset_schema))) == 0  # an update
    params = pa.ipc.read_schema(pa.py_buffer(prep.parameter_schema))
    assert params.types == [pa.timestamp("us"), pa.int64()]
    _close(fc, prep.prepared_statement_handle)


def test_result_batches_stay_under_the_message_cap(server, fc):
    server.client().ingest("cap_t", pa.table({"s": ["y" * 300_000] * 60}), mode="replace")  # 18 MB
    info = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="SELECT s FROM cap_t")))
    batches = list(fc.do_get(info.endpoints[0].ticket).to_reader())
    assert sum(b.num_rows for b in batches) == 60
    assert max(b.nbytes for b in batches) <= 8 * 1024 * 1024


def test_clean_errors(fc):
    with pytest.raises(pa.ArrowInvalid, match="expected exactly one SQL statement"):
        fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="SELECT 1; SELECT 2")))
    with pytest.raises(pa.ArrowInvalid, match="returns rows"):
        writer, reader = fc.do_put(_desc(sql_pb2.CommandStatementUpdate(query="SELECT 1")), pa.schema([]))
        writer.done_writing()
        reader.read()
        writer.close()
    with pytest.raises(pa.ArrowNotImplementedError, match="DELETE ... USING is not supported"):
        fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="DELETE FROM once_t USING other_t")))
    with pytest.raises(pa.ArrowKeyError, match="catalog 'other' not found"):
        fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(query="CREATE TABLE other.main.x (a INT)")))
    with pytest.raises(pa.ArrowInvalid, match="malformed prepared statement handle"):
        fc.get_flight_info(_desc(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=b"junk")))
    with pytest.raises(pa.ArrowInvalid) as exc:  # a runtime error while rows stream: INVALID_ARGUMENT
        info = fc.get_flight_info(_desc(sql_pb2.CommandStatementQuery(
            query="SELECT CAST(CASE WHEN range > 300000 THEN 'x' ELSE '1' END AS INT) AS v FROM range(400000)")))
        fc.do_get(info.endpoints[0].ticket).read_all()
    assert "Traceback" not in str(exc.value)


def test_result_schema_is_cached_until_the_table_schema_changes(server, fc):
    c = server.client()
    c.ingest("evolve_t", pa.table({"a": [1]}))
    desc = _desc(sql_pb2.CommandStatementQuery(query="SELECT * FROM miniodb.main.evolve_t"))
    assert fc.get_schema(desc).schema.names == ["a"]
    assert fc.get_schema(desc).schema.names == ["a"]  # answered from the schema cache
    c.ingest("evolve_t", pa.table({"a": [2], "b": ["x"]}))  # a new nullable column: a new schema version
    assert fc.get_schema(desc).schema.names == ["a", "b"]
    prep = _prepare(fc, "SELECT * FROM evolve_t")
    assert pa.ipc.read_schema(pa.py_buffer(prep.dataset_schema)).names == ["a", "b"]
    _close(fc, prep.prepared_statement_handle)
