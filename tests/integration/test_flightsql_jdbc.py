"""The Arrow Flight SQL JDBC driver's call sequence, replayed with raw ``pyarrow.flight``.

What the driver does (``ArrowFlightSqlClientHandler`` / ``ArrowFlightMetaImpl``):

* connect: ``SetSessionOptions`` with ``catalog`` when the URL names one (an UNIMPLEMENTED
  answer is fatal), ``GetSqlInfo`` for ``DatabaseMetaData``;
* every statement is prepared (``CreatePreparedStatement``); an empty ``dataset_schema`` sends
  it down the update path (``DoPut(CommandPreparedStatementUpdate)`` -> ``DoPutUpdateResult``),
  otherwise ``GetFlightInfo(CommandPreparedStatementQuery)`` + ``DoGet`` per endpoint;
  parameters are bound with ``DoPut(CommandPreparedStatementQuery)`` first; then
  ``ClosePreparedStatement``;
* ``getTables`` -> ``GetTables``; ``getColumns`` -> ``GetTables(include_schema=true)``;
  ``getCatalogs``/``getSchemas``/``getTableTypes``/``getPrimaryKeys``/``getImportedKeys``/
  ``getExportedKeys``/``getCrossReference``/``getTypeInfo`` -> the matching commands;
* close: ``CloseSession``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import protocol
from clients.protocol import flight_pb2, sql_pb2
from flight_server.flightsql import metadata_commands as md
from flight_server.flightsql.sql_info import SQL_INFO_SCHEMA
from flight_server.flightsql.xdbc_types import XDBC_TYPE_INFO_SCHEMA
from tests.fixtures.node import NodeProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("jdbc")).start()
    yield node
    node.terminate()


class Jdbc:
    """The driver's RPCs, one method per JDBC call."""

    def __init__(self, uri: str):
        self.client = flight.FlightClient(uri)

    def _action(self, name: str, body: bytes) -> list[bytes]:
        return [r.body.to_pybytes() for r in self.client.do_action(flight.Action(name, body))]

    def _info(self, msg) -> flight.FlightInfo:
        return self.client.get_flight_info(flight.FlightDescriptor.for_command(protocol.pack(msg)))

    def _fetch(self, info: flight.FlightInfo) -> pa.Table:
        tables = [self.client.do_get(ep.ticket).read_all() for ep in info.endpoints]
        for t in tables:
            assert t.schema.equals(info.schema), "every endpoint has the FlightInfo's schema"
        return pa.concat_tables(tables) if tables else info.schema.empty_table()

    def set_catalog(self, catalog: str) -> flight_pb2.SetSessionOptionsResult:
        req = flight_pb2.SetSessionOptionsRequest()
        req.session_options["catalog"].string_value = catalog
        body = self._action("SetSessionOptions", req.SerializeToString())
        return protocol.decode(flight_pb2.SetSessionOptionsResult, body[0])

    def sql_info(self, ids: list[int]) -> pa.Table:
        info = self._info(sql_pb2.CommandGetSqlInfo(info=ids))
        return self._fetch(info)

    def execute(self, sql: str, params: pa.Table | None = None) -> pa.Table | int:
        """Statement.execute / PreparedStatement.execute: a result set or an update count."""
        prep = protocol.unpack(self._action(
            "CreatePreparedStatement",
            protocol.pack(sql_pb2.ActionCreatePreparedStatementRequest(query=sql)))[0])[1]
        handle = prep.prepared_statement_handle
        dataset = pa.ipc.read_schema(pa.py_buffer(prep.dataset_schema))
        try:
            if len(dataset) == 0:  # StatementType.UPDATE
                desc = flight.FlightDescriptor.for_command(protocol.pack(
                    sql_pb2.CommandPreparedStatementUpdate(prepared_statement_handle=handle)))
                schema = params.schema if params is not None else pa.schema([])
                writer, reader = self.client.do_put(desc, schema)
                if params is not None:
                    writer.write_table(params)
                writer.done_writing()
                result = protocol.decode(sql_pb2.DoPutUpdateResult, reader.read())
                writer.close()
                return result.record_count
            if params is not None:
                desc = flight.FlightDescriptor.for_command(protocol.pack(
                    sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=handle)))
                writer, reader = self.client.do_put(desc, params.schema)
                writer.write_table(params)
                writer.done_writing()
                put = protocol.decode(sql_pb2.DoPutPreparedStatementResult, reader.read())
                writer.close()
                if put.HasField("prepared_statement_handle"):
                    handle = put.prepared_statement_handle
            info = self._info(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=handle))
            return self._fetch(info)
        finally:
            self._action("ClosePreparedStatement", protocol.pack(
                sql_pb2.ActionClosePreparedStatementRequest(prepared_statement_handle=handle)))

    def metadata(self, msg) -> pa.Table:
        info = self._info(msg)
        table = self._fetch(info)
        assert info.total_records == table.num_rows  # row counts reported where known
        return table

    def close_session(self) -> int:
        body = self._action("CloseSession", flight_pb2.CloseSessionRequest().SerializeToString())
        return protocol.decode(flight_pb2.CloseSessionResult, body[0]).status


def test_jdbc_session_and_statements(server):
    jdbc = Jdbc(server.flight)
    assert not jdbc.set_catalog("miniodb").errors  # jdbc:arrow-flight-sql://...?catalog=miniodb
    info = jdbc.sql_info([sql_pb2.FLIGHT_SQL_SERVER_NAME, sql_pb2.SQL_IDENTIFIER_QUOTE_CHAR])
    assert info.schema.equals(SQL_INFO_SCHEMA)
    assert info.column("value").to_pylist() == ["MinIODB", '"']

    assert jdbc.execute("CREATE TABLE jdbc_t (id BIGINT, name VARCHAR, price DOUBLE)") == 0
    assert jdbc.execute("INSERT INTO jdbc_t VALUES (1, 'a', 1.5), (2, 'b', 2.5)") == 2
    rows = pa.table({"id": pa.array([3, 4], pa.int64()), "name": ["c", "d"], "price": [3.5, None]})
    assert jdbc.execute("INSERT INTO jdbc_t VALUES (?, ?, ?)", rows) == 2  # executeBatch
    result = jdbc.execute("SELECT id, name FROM jdbc_t WHERE price > ? ORDER BY id",
                          pa.table({"p": [2.0]}))
    assert result.to_pylist() == [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    assert jdbc.execute("SELECT count(*) AS n FROM jdbc_t").to_pylist() == [{"n": 4}]
    assert jdbc.execute("DROP TABLE jdbc_t") == 0
    with pytest.raises(pa.ArrowKeyError, match="jdbc_t"):  # NOT_FOUND, at prepare time
        jdbc.execute("SELECT * FROM jdbc_t")
    assert jdbc.close_session() == flight_pb2.CloseSessionResult.CLOSED


def test_jdbc_database_metadata(server):
    server.client().ingest("jdbc_meta", pa.table({"k": [1], "v": ["x"]}), mode="replace")
    jdbc = Jdbc(server.flight)
    catalogs = jdbc.metadata(sql_pb2.CommandGetCatalogs())
    assert catalogs.schema.equals(md.CATALOGS_SCHEMA) and catalogs.column(0).to_pylist() == ["miniodb"]
    schemas = jdbc.metadata(sql_pb2.CommandGetDbSchemas(catalog="miniodb", db_schema_filter_pattern="%"))
    assert schemas.schema.equals(md.DB_SCHEMAS_SCHEMA)
    assert "main" in schemas.column("db_schema_name").to_pylist()

    tables = jdbc.metadata(sql_pb2.CommandGetTables(catalog="miniodb", db_schema_filter_pattern="main",
                                                    table_name_filter_pattern="jdbc%", table_types=["TABLE"]))
    assert tables.schema.equals(md.TABLES_SCHEMA)
    assert tables.column("table_name").to_pylist() == ["jdbc_meta"]
    columns = jdbc.metadata(sql_pb2.CommandGetTables(table_name_filter_pattern="jdbc\\_meta", include_schema=True))
    assert columns.schema.equals(md.TABLES_WITH_SCHEMA_SCHEMA)
    table_schema = pa.ipc.read_schema(pa.py_buffer(columns.column("table_schema")[0].as_py()))
    assert table_schema.names == ["k", "v"] and table_schema.field("v").type == pa.string()
    assert jdbc.metadata(sql_pb2.CommandGetTables(catalog="other")).num_rows == 0
    assert jdbc.metadata(sql_pb2.CommandGetTables(table_types=["VIEW"])).num_rows == 0

    types = jdbc.metadata(sql_pb2.CommandGetTableTypes())
    assert types.schema.equals(md.TABLE_TYPES_SCHEMA) and types.column(0).to_pylist() == ["TABLE"]
    keys = jdbc.metadata(sql_pb2.CommandGetPrimaryKeys(table="jdbc_meta"))
    assert keys.num_rows == 0 and keys.schema.equals(md.PRIMARY_KEYS_SCHEMA)
    for msg in (sql_pb2.CommandGetExportedKeys(table="jdbc_meta"), sql_pb2.CommandGetImportedKeys(table="jdbc_meta"),
                sql_pb2.CommandGetCrossReference(pk_table="jdbc_meta", fk_table="jdbc_meta")):
        empty = jdbc.metadata(msg)
        assert empty.num_rows == 0 and empty.schema.equals(md.KEYS_SCHEMA)
    type_info = jdbc.metadata(sql_pb2.CommandGetXdbcTypeInfo())
    assert type_info.schema.equals(XDBC_TYPE_INFO_SCHEMA) and "BIGINT" in type_info.column("type_name").to_pylist()
    only = jdbc.metadata(sql_pb2.CommandGetXdbcTypeInfo(data_type=sql_pb2.XDBC_BIGINT))
    assert only.column("type_name").to_pylist() == ["BIGINT"]


def test_jdbc_session_options_errors_are_results(server):
    jdbc = Jdbc(server.flight)
    result = jdbc.set_catalog("elsewhere")
    assert result.errors["catalog"].value == flight_pb2.SetSessionOptionsResult.INVALID_VALUE
    req = flight_pb2.SetSessionOptionsRequest()
    req.session_options["schema"].string_value = "main"
    req.session_options["bogus"].bool_value = True
    result = protocol.decode(flight_pb2.SetSessionOptionsResult,
                             jdbc._action("SetSessionOptions", req.SerializeToString())[0])
    assert set(result.errors) == {"bogus"}
    assert result.errors["bogus"].value == flight_pb2.SetSessionOptionsResult.INVALID_NAME
    got = protocol.decode(flight_pb2.GetSessionOptionsResult,
                          jdbc._action("GetSessionOptions", flight_pb2.GetSessionOptionsRequest().SerializeToString())[0])
    assert got.session_options["catalog"].string_value == "miniodb"
    assert got.session_options["schema"].string_value == "main"


def test_unknown_commands_answer_unimplemented_by_name(server):
    client = flight.FlightClient(server.flight)
    desc = flight.FlightDescriptor.for_command(protocol.pack(sql_pb2.CommandStatementSubstraitPlan()))
    with pytest.raises(pa.ArrowNotImplementedError, match="CommandStatementSubstraitPlan"):
        client.get_flight_info(desc)
    with pytest.raises(pa.ArrowNotImplementedError, match="transactions are not supported"):
        list(client.do_action(flight.Action("BeginTransaction",
                                            protocol.pack(sql_pb2.ActionBeginTransactionRequest()))))
