"""Flight SQL protobuf definitions, Any packing, action vocabulary and the SqlInfo/XDBC data."""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2, duration_pb2

from clients import protocol
from clients.proto import FlightSessions_pb2 as fpb
from clients.proto import FlightSql_pb2 as pb
from flight_server.flightsql import sql_info as si
from flight_server.flightsql import xdbc_types

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
        "create_table", "drop_table", "list_tables", "describe_table", "cancel_query",
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


# --------------------------------------------------------------------------------------------
# SqlInfo
# --------------------------------------------------------------------------------------------

EXPECTED_SQL_INFO_SCHEMA = pa.schema(
    [
        pa.field("info_name", pa.uint32(), nullable=False),
        pa.field(
            "value",
            pa.dense_union(
                [
                    pa.field("string_value", pa.string(), nullable=False),
                    pa.field("bool_value", pa.bool_(), nullable=False),
                    pa.field("bigint_value", pa.int64(), nullable=False),
                    pa.field("int32_bitmask", pa.int32(), nullable=False),
                    pa.field("string_list", pa.list_(pa.field("item", pa.string())), nullable=False),
                    pa.field(
                        "int32_to_int32_list_map",
                        pa.map_(
                            pa.field("key", pa.int32(), nullable=False),
                            pa.field("value", pa.list_(pa.field("item", pa.int32()))),
                        ),
                        nullable=False,
                    ),
                ],
                type_codes=[0, 1, 2, 3, 4, 5],
            ),
            nullable=False,
        ),
    ]
)

# Value kind of every SqlInfo id, from the comments of the specification.
_STRING_IDS = {0, 1, 2, 6, 7, 504, 513, 514, 529, 530, 531}
_STRING_LIST_IDS = {508, 509, 510, 511, 512}
_MAP_IDS = {517}
_INT32_IDS = {8, 100, 101, 503, 505, 507, 522, 525, 526, 528, 533, 534, 535, 538, 540, 562, 564}
_INT32_IDS |= {567, 568, 569, 570, 571}
_INT64_IDS = set(range(541, 562)) - {556}


def _expected_code(info_id: int) -> int:
    if info_id in _STRING_IDS:
        return 0
    if info_id in _STRING_LIST_IDS:
        return 4
    if info_id in _MAP_IDS:
        return 5
    if info_id in _INT32_IDS:
        return 3
    if info_id in _INT64_IDS:
        return 2
    return 1


def test_sql_info_schema_is_the_spec_schema():
    assert si.SQL_INFO_SCHEMA.equals(EXPECTED_SQL_INFO_SCHEMA, check_metadata=True)
    table = si.sql_info_table()
    assert table.schema.equals(EXPECTED_SQL_INFO_SCHEMA)
    table.validate(full=True)
    assert si.sql_info_table([]).schema.equals(EXPECTED_SQL_INFO_SCHEMA)
    assert si.sql_info_table([123456]).schema.equals(EXPECTED_SQL_INFO_SCHEMA)


def test_sql_info_members_match_spec_kinds():
    assert si.INT32_IDS == _INT32_IDS
    table = si.sql_info_table()
    value = table.column("value").combine_chunks()
    codes = value.type_codes.to_pylist()
    for info_id, code in zip(table.column("info_name").to_pylist(), codes, strict=True):
        assert code == _expected_code(info_id), info_id


def test_sql_info_is_complete_and_honest():
    all_ids = set(pb.SqlInfo.values())
    # Substrait versions are "null if not supported": omitted rather than null.
    assert set(si.SQL_INFO) == all_ids - {pb.FLIGHT_SQL_SERVER_SUBSTRAIT_MIN_VERSION, pb.FLIGHT_SQL_SERVER_SUBSTRAIT_MAX_VERSION}
    info = {r["info_name"]: r["value"] for r in si.sql_info_table().to_pylist()}
    assert info[pb.FLIGHT_SQL_SERVER_NAME] == "MinIODB"
    assert info[pb.FLIGHT_SQL_SERVER_ARROW_VERSION] == pa.__version__
    assert info[pb.FLIGHT_SQL_SERVER_READ_ONLY] is False
    assert info[pb.FLIGHT_SQL_SERVER_SQL] is True
    assert info[pb.FLIGHT_SQL_SERVER_SUBSTRAIT] is False
    assert info[pb.FLIGHT_SQL_SERVER_TRANSACTION] == pb.SQL_SUPPORTED_TRANSACTION_NONE
    assert info[pb.FLIGHT_SQL_SERVER_CANCEL] is True
    assert info[pb.FLIGHT_SQL_SERVER_BULK_INGESTION] is True
    assert info[pb.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED] is False
    assert info[pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT] == 0
    assert info[pb.SQL_DDL_CATALOG] is False and info[pb.SQL_DDL_SCHEMA] is False
    assert info[pb.SQL_IDENTIFIER_QUOTE_CHAR] == '"'
    assert info[pb.SQL_SUPPORTED_UNIONS] == 0b11
    assert isinstance(info[pb.SQL_SUPPORTS_CONVERT], list)  # map -> list of (key, values)


def test_sql_info_ids_filtering():
    def names(ids):
        return si.sql_info_table(ids).column("info_name").to_pylist()

    assert names(None) == sorted(si.SQL_INFO)
    assert names([]) == sorted(si.SQL_INFO)
    assert names([8]) == [8]
    assert names([2, 0, 1]) == [2, 0, 1]  # request order kept
    assert names([0, 99999, 6, 1, 0]) == [0, 1]  # unknown omitted, duplicates once
    assert si.sql_info_table([99999]).num_rows == 0
    rows = si.sql_info_table([pb.SQL_KEYWORDS, pb.FLIGHT_SQL_SERVER_NAME]).to_pylist()
    assert rows[0]["value"][:3] == ["ALL", "ANALYSE", "ANALYZE"]
    assert rows[1]["value"] == "MinIODB"


def test_sql_info_custom_values_and_tags():
    table = si.sql_info_table(
        info={10001: si.Int32(7), 10002: 7, 10003: "x", 10004: ["a"], 10005: {1: [2, 3]}, 10006: True}
    )
    value = table.column("value").combine_chunks()
    assert value.type_codes.to_pylist() == [3, 2, 0, 4, 5, 1]
    assert [r["value"] for r in table.to_pylist()] == [7, 7, "x", ["a"], [(1, [2, 3])], True]
    # a plain int under a spec-int32 id is still an int32
    assert si.sql_info_table([8], info={8: 2}).column("value").combine_chunks().type_codes.to_pylist() == [3]
    with pytest.raises(TypeError):
        si.sql_info_table(info={10007: 1.5})


def test_sql_info_lists_exist_in_duckdb():
    con = duckdb.connect()
    functions = {r[0].upper() for r in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    special_forms = {"COALESCE", "IFNULL", "EXTRACT", "CURRENT_TIMESTAMP", "CURRENT_TIME", "LOCALTIME", "LOCALTIMESTAMP"}
    con.execute(
        "SELECT coalesce(NULL, 1), ifnull(NULL, 1), extract(year FROM DATE '2020-01-01'), "
        "current_timestamp, current_time, localtime, localtimestamp"
    ).fetchall()
    for info_id in (pb.SQL_NUMERIC_FUNCTIONS, pb.SQL_STRING_FUNCTIONS, pb.SQL_SYSTEM_FUNCTIONS, pb.SQL_DATETIME_FUNCTIONS):
        missing = set(si.SQL_INFO[info_id]) - functions - special_forms
        assert not missing, (info_id, missing)
    reserved = {
        r[0].upper()
        for r in con.execute("SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'").fetchall()
    }
    assert set(si.SQL_INFO[pb.SQL_KEYWORDS]) <= reserved


def test_sql_supports_convert_matches_duckdb_casts():
    duck_type = {
        "BIGINT": "BIGINT", "BINARY": "BLOB", "BIT": "BOOLEAN", "CHAR": "VARCHAR", "DATE": "DATE",
        "DECIMAL": "DECIMAL(18,3)", "FLOAT": "DOUBLE", "INTEGER": "INTEGER", "INTERVAL_DAY_TIME": "INTERVAL",
        "INTERVAL_YEAR_MONTH": "INTERVAL", "LONGVARBINARY": "BLOB", "LONGVARCHAR": "VARCHAR",
        "NUMERIC": "DECIMAL(18,3)", "REAL": "FLOAT", "SMALLINT": "SMALLINT", "TIME": "TIME",
        "TIMESTAMP": "TIMESTAMP", "TINYINT": "TINYINT", "VARBINARY": "BLOB", "VARCHAR": "VARCHAR",
    }  # fmt: skip
    sample = {
        "BIGINT": "1", "BLOB": "'\\x41'::BLOB", "BOOLEAN": "true", "DATE": "DATE '2020-01-02'",
        "DECIMAL(18,3)": "1.5", "DOUBLE": "1.5", "FLOAT": "1.5", "INTEGER": "1", "INTERVAL": "INTERVAL '1 day'",
        "SMALLINT": "1", "TIME": "TIME '01:02:03'", "TIMESTAMP": "TIMESTAMP '2020-01-02 03:04:05'", "TINYINT": "1",
    }  # fmt: skip
    name = {v: k.removeprefix("SQL_CONVERT_") for k, v in pb.SqlSupportsConvert.items()}
    claimed = si.SQL_INFO[pb.SQL_SUPPORTS_CONVERT]
    con = duckdb.connect()
    for src_code, src in name.items():
        src_type = duck_type[src]
        if src_type == "VARCHAR":  # any target is reachable from a suitable string
            assert set(claimed[src_code]) == set(name)
            continue
        works = set()
        for dst_code, dst in name.items():
            try:
                con.execute(f"SELECT CAST(CAST({sample[src_type]} AS {src_type}) AS {duck_type[dst]})").fetchall()
            except duckdb.Error:
                continue
            works.add(dst_code)
        assert set(claimed[src_code]) == works, src


def test_max_table_name_length_matches_paths():
    from flight_server import paths

    n = si.SQL_INFO[pb.SQL_MAX_TABLE_NAME_LENGTH]
    assert paths.is_valid_table_name("a" * n)
    assert not paths.is_valid_table_name("a" * (n + 1))


# --------------------------------------------------------------------------------------------
# XDBC type info
# --------------------------------------------------------------------------------------------

EXPECTED_XDBC_SCHEMA = pa.schema(
    [
        pa.field("type_name", pa.string(), nullable=False),
        pa.field("data_type", pa.int32(), nullable=False),
        pa.field("column_size", pa.int32()),
        pa.field("literal_prefix", pa.string()),
        pa.field("literal_suffix", pa.string()),
        pa.field("create_params", pa.list_(pa.field("item", pa.string(), nullable=False))),
        pa.field("nullable", pa.int32(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("searchable", pa.int32(), nullable=False),
        pa.field("unsigned_attribute", pa.bool_()),
        pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
        pa.field("auto_increment", pa.bool_()),
        pa.field("local_type_name", pa.string()),
        pa.field("minimum_scale", pa.int32()),
        pa.field("maximum_scale", pa.int32()),
        pa.field("sql_data_type", pa.int32(), nullable=False),
        pa.field("datetime_subcode", pa.int32()),
        pa.field("num_prec_radix", pa.int32()),
        pa.field("interval_precision", pa.int32()),
    ]
)


def test_xdbc_type_info_schema_and_rows():
    table = xdbc_types.xdbc_type_info_table()
    assert table.schema.equals(EXPECTED_XDBC_SCHEMA, check_metadata=True)
    table.validate(full=True)
    rows = table.to_pylist()
    assert [(r["data_type"], r["type_name"]) for r in rows] == sorted((r["data_type"], r["type_name"]) for r in rows)
    by_name = {r["type_name"]: r for r in rows}
    assert set(by_name) == {
        "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE", "DECIMAL", "VARCHAR",
        "BLOB", "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "INTERVAL",
    }  # fmt: skip
    codes = {n: r["data_type"] for n, r in by_name.items()}
    assert codes == {
        "BOOLEAN": -7, "TINYINT": -6, "SMALLINT": 5, "INTEGER": 4, "BIGINT": -5, "FLOAT": 7, "DOUBLE": 8,
        "DECIMAL": 3, "VARCHAR": 12, "BLOB": -3, "DATE": 91, "TIME": 92, "TIMESTAMP": 93,
        "TIMESTAMP WITH TIME ZONE": 93, "INTERVAL": 10,
    }  # fmt: skip
    for name in ("DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):
        assert by_name[name]["sql_data_type"] == pb.XDBC_DATETIME
    assert by_name["TIMESTAMP WITH TIME ZONE"]["datetime_subcode"] == pb.XDBC_SUBCODE_TIMESTAMP_WITH_TIMEZONE
    assert by_name["DECIMAL"]["create_params"] == ["precision", "scale"]
    assert by_name["VARCHAR"]["case_sensitive"] is True
    assert all(r["nullable"] == pb.NULLABILITY_NULLABLE for r in rows)
    # literal prefixes/suffixes build valid DuckDB literals of the right type
    con = duckdb.connect()
    samples = {"VARCHAR": "abc", "BLOB": "abc", "DATE": "2024-01-02", "TIME": "01:02:03",
               "TIMESTAMP": "2024-01-02 03:04:05", "TIMESTAMP WITH TIME ZONE": "2024-01-02 03:04:05+00",
               "INTERVAL": "1 day"}  # fmt: skip
    for name, text in samples.items():
        r = by_name[name]
        (typ,) = con.execute(f"SELECT typeof({r['literal_prefix']}{text}{r['literal_suffix']})").fetchone()
        assert typ == name, name


def test_xdbc_type_info_filter():
    assert xdbc_types.xdbc_type_info_table(pb.XDBC_TIMESTAMP).column("type_name").to_pylist() == [
        "TIMESTAMP",
        "TIMESTAMP WITH TIME ZONE",
    ]
    empty = xdbc_types.xdbc_type_info_table(pb.XDBC_WCHAR)
    assert empty.num_rows == 0 and empty.schema.equals(EXPECTED_XDBC_SCHEMA)


# --------------------------------------------------------------------------------------------
# interoperability with real Flight SQL clients
# --------------------------------------------------------------------------------------------


class _SqlInfoServer(flight.FlightServerBase):
    """Just enough of a Flight SQL server to answer GetSqlInfo (and CloseSession)."""

    def __init__(self):
        super().__init__("grpc://127.0.0.1:0")
        self.lock = threading.Lock()
        self.sql_info_requests: list[list[int]] = []
        self.actions: list[str] = []

    def _command(self, data: bytes) -> pb.CommandGetSqlInfo:
        name, cmd = protocol.unpack(data)
        if not isinstance(cmd, pb.CommandGetSqlInfo):
            raise flight.FlightServerError(f"unsupported command {name}")
        return cmd

    def get_flight_info(self, context, descriptor):
        cmd = self._command(descriptor.command)
        with self.lock:
            self.sql_info_requests.append(list(cmd.info))
        table = si.sql_info_table(list(cmd.info))
        endpoint = flight.FlightEndpoint(flight.Ticket(descriptor.command), [])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, -1)

    def do_get(self, context, ticket):
        return flight.RecordBatchStream(si.sql_info_table(list(self._command(ticket.ticket).info)))

    def do_action(self, context, action):
        with self.lock:
            self.actions.append(action.type)
        if action.type == protocol.ACTION_CLOSE_SESSION:
            protocol.decode(fpb.CloseSessionRequest, action.body.to_pybytes())
            return [fpb.CloseSessionResult(status=fpb.CloseSessionResult.CLOSED).SerializeToString()]
        raise flight.FlightServerError(f"unsupported action {action.type}")


@pytest.fixture
def sql_info_server():
    server = _SqlInfoServer()
    try:
        yield server
    finally:
        server.shutdown()


def test_pyarrow_client_reads_spec_schema_over_ipc(sql_info_server):
    client = flight.connect(f"grpc://127.0.0.1:{sql_info_server.port}")
    descriptor = flight.FlightDescriptor.for_command(protocol.pack(pb.CommandGetSqlInfo(info=[0, 517, 508, 8])))
    info = client.get_flight_info(descriptor)
    assert info.schema.equals(EXPECTED_SQL_INFO_SCHEMA)
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema.equals(EXPECTED_SQL_INFO_SCHEMA)
    assert table.column("info_name").to_pylist() == [0, 517, 508, 8]
    client.close()


# ADBC's DB-API layer asks GetSqlInfo([8]) on connect and warns that it cannot disable
# autocommit, because MinIODB (truthfully) reports FLIGHT_SQL_SERVER_TRANSACTION = NONE.
@pytest.mark.filterwarnings("ignore:Cannot disable autocommit")
def test_adbc_get_info_reads_vendor_fields(sql_info_server):
    adbc_dbapi = pytest.importorskip("adbc_driver_flightsql.dbapi")
    conn = adbc_dbapi.connect(f"grpc://127.0.0.1:{sql_info_server.port}")
    try:
        info = conn.adbc_get_info()
    finally:
        conn.close()
    assert info["vendor_name"] == "MinIODB"
    assert info["vendor_version"] == si.SQL_INFO[pb.FLIGHT_SQL_SERVER_VERSION]
    assert info["vendor_arrow_version"] == pa.__version__
    requested = {i for ids in sql_info_server.sql_info_requests for i in ids}
    assert {0, 1, 2, pb.FLIGHT_SQL_SERVER_TRANSACTION} <= requested
    assert sql_info_server.actions == [protocol.ACTION_CLOSE_SESSION]
