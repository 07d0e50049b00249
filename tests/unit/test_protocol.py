"""Flight SQL protobuf definitions, Any packing and the action vocabulary (SqlInfo/XDBC data:
test_sql_info.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from google.protobuf import any_pb2, duration_pb2

from clients import protocol
from clients.proto import FlightSessions_pb2 as fpb
from clients.proto import FlightSql_pb2 as pb

# --------------------------------------------------------------------------------------------
# helpers: hand-rolled protobuf wire encoding (independent of the generated code)
# --------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any(full_name: str, payload: bytes) -> bytes:
    return _len_field(1, f"type.googleapis.com/{full_name}".encode()) + _len_field(2, payload)


# --------------------------------------------------------------------------------------------
# generated modules
# --------------------------------------------------------------------------------------------


def test_generated_modules_import_as_package():
    assert pb.DESCRIPTOR.package == "arrow.flight.protocol.sql"
    assert fpb.DESCRIPTOR.package == "arrow.flight.protocol"
    assert pb.CommandStatementQuery.DESCRIPTOR.full_name == "arrow.flight.protocol.sql.CommandStatementQuery"
    assert fpb.CancelFlightInfoRequest.DESCRIPTOR.full_name == "arrow.flight.protocol.CancelFlightInfoRequest"


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        (pb.CommandGetSqlInfo, "info", 1),
        (pb.CommandGetXdbcTypeInfo, "data_type", 1),
        (pb.CommandGetDbSchemas, "db_schema_filter_pattern", 2),
        (pb.CommandGetTables, "table_types", 4),
        (pb.CommandGetTables, "include_schema", 5),
        (pb.CommandGetPrimaryKeys, "table", 3),
        (pb.CommandGetCrossReference, "fk_table", 6),
        (pb.ActionCreatePreparedStatementRequest, "transaction_id", 2),
        (pb.ActionCreatePreparedStatementResult, "parameter_schema", 3),
        (pb.ActionCreatePreparedSubstraitPlanRequest, "plan", 1),
        (pb.ActionBeginSavepointRequest, "name", 2),
        (pb.ActionEndTransactionRequest, "action", 2),
        (pb.CommandStatementSubstraitPlan, "plan", 1),
        (pb.TicketStatementQuery, "statement_handle", 1),
        (pb.CommandStatementIngest, "table_definition_options", 1),
        (pb.CommandStatementIngest, "table", 2),
        (pb.CommandStatementIngest, "schema", 3),
        (pb.CommandStatementIngest, "catalog", 4),
        (pb.CommandStatementIngest, "temporary", 5),
        (pb.CommandStatementIngest, "transaction_id", 6),
        (pb.CommandStatementIngest, "options", 1000),
        (pb.DoPutUpdateResult, "record_count", 1),
        (pb.DoPutPreparedStatementResult, "prepared_statement_handle", 1),
        (pb.ActionCancelQueryRequest, "info", 1),
        (fpb.FlightInfo, "app_metadata", 7),
        (fpb.FlightEndpoint, "expiration_time", 3),
        (fpb.SessionOptionValue, "string_list_value", 5),
        (fpb.SetSessionOptionsRequest, "session_options", 1),
        (fpb.CloseSessionResult, "status", 1),
    ],
)
def test_field_numbers_follow_spec(message, field, number):
    assert message.DESCRIPTOR.fields_by_name[field].number == number


def test_enum_values_follow_spec():
    assert pb.FLIGHT_SQL_SERVER_BULK_INGESTION == 10
    assert pb.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED == 11
    assert pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT == 100
    assert pb.SQL_STORED_FUNCTIONS_USING_CALL_SYNTAX_SUPPORTED == 576
    assert len(pb.SqlInfo.keys()) == 12 + 2 + 77
    assert pb.XDBC_WVARCHAR == -9 and pb.XDBC_TIMESTAMP == 93
    assert pb.XDBC_SUBCODE_INTERVAL_MINUTE_TO_SECOND == 113
    Opts = pb.CommandStatementIngest.TableDefinitionOptions
    assert Opts.TABLE_NOT_EXIST_OPTION_FAIL == 2
    assert Opts.TABLE_EXISTS_OPTION_REPLACE == 3
    assert pb.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE == 3
    assert fpb.CANCEL_STATUS_CANCELLING == 2
    assert fpb.SetSessionOptionsResult.INVALID_VALUE == 2


# --------------------------------------------------------------------------------------------
# byte compatibility
# --------------------------------------------------------------------------------------------


def test_statement_query_bytes_match_hand_encoding():
    inner = _len_field(1, b"select 1")
    assert inner == b"\x0a\x08select 1"
    expected = _any("arrow.flight.protocol.sql.CommandStatementQuery", inner)
    assert protocol.pack(pb.CommandStatementQuery(query="select 1")) == expected
    assert protocol.unpack(expected) == ("CommandStatementQuery", pb.CommandStatementQuery(query="select 1"))


def test_more_wire_spot_checks():
    # repeated uint32 is packed in proto3
    info = pb.CommandGetSqlInfo(info=[0, 1, 2, 300])
    assert info.SerializeToString() == b"\x0a\x05\x00\x01\x02" + _varint(300)
    # DoPutUpdateResult travels bare in PutResult.app_metadata
    assert pb.DoPutUpdateResult(record_count=5).SerializeToString() == b"\x08\x05"
    # proto3 `optional` fields are serialized even when empty
    assert pb.CommandStatementQuery(query="q", transaction_id=b"").SerializeToString() == b"\x0a\x01q\x12\x00"
    # the ingest `options` map lives at field 1000
    ingest = pb.CommandStatementIngest(table="t", options={"k": "v"})
    entry = _len_field(1, b"k") + _len_field(2, b"v")
    assert ingest.SerializeToString() == _len_field(2, b"t") + _len_field(1000, entry)
    # SessionOptionValue.int64_value is sfixed64 (wire type 1), not a varint
    assert fpb.SessionOptionValue(int64_value=1).SerializeToString() == b"\x19" + (1).to_bytes(8, "little")


# --------------------------------------------------------------------------------------------
# pack / unpack / decode
# --------------------------------------------------------------------------------------------

_EXAMPLES = [
    pb.CommandStatementQuery(query="SELECT * FROM t WHERE x = ?", transaction_id=b"tx"),
    pb.CommandStatementUpdate(query="DELETE FROM t"),
    pb.CommandGetSqlInfo(info=[0, 1, 2, 8]),
    pb.CommandGetSqlInfo(),
    pb.CommandGetTables(catalog="", db_schema_filter_pattern="ma%", table_types=["TABLE"], include_schema=True),
    pb.CommandGetXdbcTypeInfo(data_type=pb.XDBC_VARCHAR),
    pb.CommandGetCrossReference(pk_table="a", fk_table="b", fk_db_schema="main"),
    pb.CommandPreparedStatementQuery(prepared_statement_handle=b"\x00\xffhandle"),
    pb.TicketStatementQuery(statement_handle=b"ticket"),
    pb.ActionCreatePreparedStatementRequest(query="select 1"),
    pb.ActionCreatePreparedStatementResult(prepared_statement_handle=b"h", dataset_schema=b"s"),
    pb.ActionCreatePreparedSubstraitPlanRequest(plan=pb.SubstraitPlan(plan=b"p", version="0.12.0")),
    pb.ActionEndSavepointRequest(savepoint_id=b"s", action=pb.ActionEndSavepointRequest.END_SAVEPOINT_RELEASE),
    pb.CommandStatementIngest(
        table_definition_options=pb.CommandStatementIngest.TableDefinitionOptions(
            if_not_exist=pb.CommandStatementIngest.TableDefinitionOptions.TABLE_NOT_EXIST_OPTION_CREATE,
            if_exists=pb.CommandStatementIngest.TableDefinitionOptions.TABLE_EXISTS_OPTION_APPEND,
        ),
        table="events",
        schema="main",
        options={"partition": "day"},
    ),
    fpb.CancelFlightInfoRequest(info=fpb.FlightInfo(schema=b"x", total_records=-1, total_bytes=-1)),
    fpb.SetSessionOptionsRequest(session_options={"catalog": fpb.SessionOptionValue(string_value="memory")}),
]


@pytest.mark.parametrize("msg", _EXAMPLES, ids=lambda m: m.DESCRIPTOR.name)
def test_pack_unpack_round_trip(msg):
    data = protocol.pack(msg)
    wrapper = any_pb2.Any.FromString(data)
    assert wrapper.type_url == protocol.type_url(msg)
    name, decoded = protocol.unpack(data)
    assert name == msg.DESCRIPTOR.name
    assert type(decoded) is type(msg)
    assert decoded == msg


def test_every_command_round_trips_and_url_prefix():
    for name, cls in protocol.COMMANDS.items():
        data = protocol.pack(cls())
        assert any_pb2.Any.FromString(data).type_url == protocol.FLIGHT_SQL_TYPE_URL_PREFIX + name
        assert protocol.unpack(data) == (name, cls())


def test_unpack_accepts_buffers():
    data = protocol.pack(pb.CommandGetCatalogs())
    for variant in (bytearray(data), memoryview(data), pa.py_buffer(data)):
        assert protocol.unpack(variant) == ("CommandGetCatalogs", pb.CommandGetCatalogs())


def test_unpack_unknown_type():
    wrapper = any_pb2.Any()
    wrapper.Pack(duration_pb2.Duration(seconds=3))
    assert protocol.unpack(wrapper.SerializeToString()) == ("Duration", None)
    # A foreign package with a Flight SQL short name is not decoded as ours.
    foreign = _any("evil.pkg.CommandStatementQuery", _len_field(1, b"select 1"))
    assert protocol.unpack(foreign) == ("CommandStatementQuery", None)
    # A type this server does not know in our own package.
    assert protocol.unpack(_any("arrow.flight.protocol.sql.CommandFromTheFuture", b"")) == (
        "CommandFromTheFuture",
        None,
    )


@pytest.mark.parametrize("data", [b"", b"\xff\xff\xff", b"\x08\x05", _len_field(2, b"only a value")])
def test_unpack_rejects_non_any(data):
    with pytest.raises(ValueError):
        protocol.unpack(data)


def test_unpack_rejects_malformed_known_payload():
    bad = _any("arrow.flight.protocol.sql.CommandStatementQuery", b"\x0a\x10short")
    with pytest.raises(ValueError, match="CommandStatementQuery"):
        protocol.unpack(bad)


def test_pack_rejects_non_messages():
    with pytest.raises(TypeError):
        protocol.pack(b"not a message")  # type: ignore[arg-type]


def test_decode_bare_messages():
    assert protocol.decode(pb.DoPutUpdateResult, b"\x08\x05").record_count == 5
    req = fpb.SetSessionOptionsRequest(session_options={"schema": fpb.SessionOptionValue(string_value="main")})
    assert protocol.decode(fpb.SetSessionOptionsRequest, req.SerializeToString()) == req
    with pytest.raises(ValueError):
        protocol.decode(pb.DoPutUpdateResult, b"\xff")


def test_commands_cover_the_protocol():
    required = {
        "CommandGetSqlInfo", "CommandGetXdbcTypeInfo", "CommandGetCatalogs", "CommandGetDbSchemas",
        "CommandGetTables", "CommandGetTableTypes", "CommandGetPrimaryKeys", "CommandGetExportedKeys",
        "CommandGetImportedKeys", "CommandGetCrossReference", "ActionCreatePreparedStatementRequest",
        "SubstraitPlan", "ActionCreatePreparedSubstraitPlanRequest", "ActionCreatePreparedStatementResult",
        "ActionClosePreparedStatementRequest", "ActionBeginTransactionRequest", "ActionBeginTransactionResult",
        "ActionBeginSavepointRequest", "ActionBeginSavepointResult", "ActionEndTransactionRequest",
        "ActionEndSavepointRequest", "CommandStatementQuery", "CommandStatementSubstraitPlan",
        "TicketStatementQuery", "CommandPreparedStatementQuery", "CommandStatementUpdate",
        "CommandPreparedStatementUpdate", "CommandStatementIngest", "DoPutUpdateResult",
        "DoPutPreparedStatementResult", "ActionCancelQueryRequest", "ActionCancelQueryResult",
    }  # fmt: skip
    assert set(protocol.COMMANDS) == required
    assert {
        "SetSessionOptionsRequest", "SetSessionOptionsResult", "GetSessionOptionsRequest",
        "GetSessionOptionsResult", "CloseSessionRequest", "CloseSessionResult", "SessionOptionValue",
        "CancelFlightInfoRequest", "CancelFlightInfoResult", "FlightInfo",
    } <= set(protocol.FLIGHT_MESSAGES)  # fmt: skip


# --------------------------------------------------------------------------------------------
# constants and JSON helpers
# --------------------------------------------------------------------------------------------


def test_action_names():
    assert protocol.FLIGHT_SQL_TYPE_URL_PREFIX == "type.googleapis.com/arrow.flight.protocol.sql."
    assert protocol.BATCH_ID_HEADER == "x-miniodb-batch-id"
    assert protocol.CUSTOM_ACTIONS == {
        "flush", "backup_metadata", "restore_metadata", "list_backups", "health", "status",
        "create_table", "drop_table", "list_tables", "describe_table", "cancel_query", "compact",
        "vacuum", "restore_table",
    }  # fmt: skip
    assert protocol.FLIGHT_SQL_ACTIONS == {
        "CreatePreparedStatement", "ClosePreparedStatement", "CancelQuery", "BeginTransaction",
        "EndTransaction", "CreatePreparedSubstraitPlan", "BeginSavepoint", "EndSavepoint",
    }  # fmt: skip
    assert protocol.FLIGHT_ACTIONS == {"SetSessionOptions", "GetSessionOptions", "CloseSession", "CancelFlightInfo"}
    assert set(protocol.ACTION_REQUESTS) == protocol.FLIGHT_SQL_ACTIONS | protocol.FLIGHT_ACTIONS
    assert not (protocol.CUSTOM_ACTIONS & (protocol.FLIGHT_SQL_ACTIONS | protocol.FLIGHT_ACTIONS))


def test_json_helpers():
    import datetime as dt
    import decimal

    body = {"table": "events", "n": 3, "ok": True, "tags": ["a"], "none": None}
    data = protocol.dumps(body)
    assert isinstance(data, bytes)
    assert protocol.loads(data) == body
    assert protocol.loads(data.decode()) == body
    assert protocol.loads(memoryview(data)) == body
    assert protocol.loads(pa.py_buffer(data)) == body
    assert protocol.loads(b"") == {} and protocol.loads(None) == {} and protocol.loads(b"  \n") == {}
    extra = protocol.loads(
        protocol.dumps({"d": decimal.Decimal("1.50"), "b": b"\x00\x01", "t": dt.date(2024, 1, 2), 5: "int key"})
    )
    assert extra == {"d": "1.50", "b": "AAE=", "t": "2024-01-02", "5": "int key"}
    with pytest.raises(ValueError):
        protocol.loads(b"{not json")
    with pytest.raises(TypeError):
        protocol.dumps(object())
