"""Wire-level vocabulary shared by the MinIODB node and its clients.

* Flight SQL commands travel as a serialized ``google.protobuf.Any`` (type URL
  ``type.googleapis.com/arrow.flight.protocol.sql.<Message>``) in ``FlightDescriptor.cmd``,
  ``Ticket.ticket`` and ``Action.body``; :func:`pack` / :func:`unpack` convert both ways.
* Some payloads are *bare* serialized messages, never wrapped in ``Any``:
  ``DoPutUpdateResult`` / ``DoPutPreparedStatementResult`` in ``PutResult.app_metadata``, and
  the bodies/results of the core Flight actions ``CancelFlightInfo``, ``SetSessionOptions``,
  ``GetSessionOptions`` and ``CloseSession``. Use ``msg.SerializeToString()`` and
  :func:`decode` for those.
* MinIODB's own actions carry JSON bodies: :func:`dumps` / :func:`loads`.

This module depends only on protobuf, orjson and the generated ``clients.proto`` modules:
nothing from ``flight_server`` or ``gateway``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Final, TypeVar

import orjson
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from clients.proto import FlightSessions_pb2 as flight_pb2
from clients.proto import FlightSql_pb2 as sql_pb2

__all__ = [
    "ACTION_BEGIN_SAVEPOINT",
    "ACTION_BEGIN_TRANSACTION",
    "ACTION_BACKUP_METADATA",
    "ACTION_CANCEL_FLIGHT_INFO",
    "ACTION_CANCEL_QUERY",
    "ACTION_CLOSE_PREPARED_STATEMENT",
    "ACTION_CLOSE_SESSION",
    "ACTION_CREATE_PREPARED_STATEMENT",
    "ACTION_CREATE_PREPARED_SUBSTRAIT_PLAN",
    "ACTION_CREATE_TABLE",
    "ACTION_DESCRIBE_TABLE",
    "ACTION_CANCEL_QUERY_ID",
    "ACTION_COMPACT",
    "ACTION_DROP_TABLE",
    "ACTION_END_SAVEPOINT",
    "ACTION_END_TRANSACTION",
    "ACTION_FLUSH",
    "ACTION_GET_SESSION_OPTIONS",
    "ACTION_HEALTH",
    "ACTION_LIST_BACKUPS",
    "ACTION_LIST_TABLES",
    "ACTION_RESTORE_METADATA",
    "ACTION_RESTORE_TABLE",
    "ACTION_SET_SESSION_OPTIONS",
    "ACTION_STATUS",
    "ACTION_VACUUM",
    "ACTION_REQUESTS",
    "ABORT_UPLOAD",
    "BATCH_ID_HEADER",
    "COMMANDS",
    "CUSTOM_ACTIONS",
    "FLIGHT_ACTIONS",
    "FLIGHT_MESSAGES",
    "FLIGHT_SQL_ACTIONS",
    "FLIGHT_SQL_PACKAGE",
    "FLIGHT_SQL_TYPE_URL_PREFIX",
    "FLIGHT_PACKAGE",
    "FLIGHT_TYPE_URL_PREFIX",
    "TYPE_URL_PREFIX",
    "decode",
    "dumps",
    "flight_pb2",
    "loads",
    "pack",
    "sql_pb2",
    "type_url",
    "unpack",
]

M = TypeVar("M", bound=Message)

# --------------------------------------------------------------------------------------------
# Type URLs
# --------------------------------------------------------------------------------------------

TYPE_URL_PREFIX: Final = "type.googleapis.com/"
FLIGHT_SQL_PACKAGE: Final = "arrow.flight.protocol.sql"
FLIGHT_PACKAGE: Final = "arrow.flight.protocol"
#: ``type.googleapis.com/arrow.flight.protocol.sql.`` + short message name.
FLIGHT_SQL_TYPE_URL_PREFIX: Final = f"{TYPE_URL_PREFIX}{FLIGHT_SQL_PACKAGE}."
#: ``type.googleapis.com/arrow.flight.protocol.`` + short message name.
FLIGHT_TYPE_URL_PREFIX: Final = f"{TYPE_URL_PREFIX}{FLIGHT_PACKAGE}."


def _top_level_messages(module: Any) -> dict[str, type[Message]]:
    return {name: getattr(module, name) for name in module.DESCRIPTOR.message_types_by_name}


#: Every top-level Flight SQL message by short name: the commands (``CommandStatementQuery``,
#: ``CommandGetTables``, ``CommandStatementIngest`` ...), the ticket (``TicketStatementQuery``),
#: the action requests/results (``ActionCreatePreparedStatementRequest`` ...) and the DoPut
#: results. Derived from the generated descriptor, so it can never miss a message.
COMMANDS: Final[Mapping[str, type[Message]]] = _top_level_messages(sql_pb2)

#: The core Flight messages of ``FlightSessions.proto`` (session options, CancelFlightInfo,
#: FlightInfo ...), by short name.
FLIGHT_MESSAGES: Final[Mapping[str, type[Message]]] = _top_level_messages(flight_pb2)

_BY_FULL_NAME: Final[dict[str, type[Message]]] = {
    cls.DESCRIPTOR.full_name: cls for cls in (*COMMANDS.values(), *FLIGHT_MESSAGES.values())
}


def type_url(msg_or_cls: Message | type[Message]) -> str:
    """The ``google.protobuf.Any`` type URL of a message (instance or class)."""
    return TYPE_URL_PREFIX + msg_or_cls.DESCRIPTOR.full_name


# --------------------------------------------------------------------------------------------
# Any packing
# --------------------------------------------------------------------------------------------


def pack(msg: Message) -> bytes:
    """Serialize ``msg`` wrapped in a ``google.protobuf.Any`` (the Flight SQL command form)."""
    if not isinstance(msg, Message):
        raise TypeError(f"pack() expects a protobuf message, got {type(msg).__name__}")
    wrapper = any_pb2.Any()
    wrapper.Pack(msg, type_url_prefix=TYPE_URL_PREFIX)
    return wrapper.SerializeToString()


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        raise TypeError("protobuf payloads are bytes, not str")
    # bytearray, memoryview, pyarrow.Buffer and anything else with the buffer protocol.
    return bytes(memoryview(data))


def unpack(data: Any) -> tuple[str, Message | None]:
    """Decode a serialized ``google.protobuf.Any``.

    Returns ``(short_name, message)`` - e.g. ``("CommandStatementQuery", <message>)`` - when the
    wrapped type is a known Flight SQL / Flight message, and ``(short_name, None)`` for any
    other type URL (the caller decides whether that is an error). Raises :class:`ValueError`
    when ``data`` is not an ``Any`` at all or the payload of a known type does not decode.
    """
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(_as_bytes(data))
    except DecodeError as exc:
        raise ValueError(f"not a serialized google.protobuf.Any: {exc}") from None
    if not wrapper.type_url:
        raise ValueError("not a serialized google.protobuf.Any: empty type_url")
    full_name = wrapper.type_url.rsplit("/", 1)[-1]
    short_name = full_name.rsplit(".", 1)[-1]
    cls = _BY_FULL_NAME.get(full_name)
    if cls is None:
        return short_name, None
    msg = cls()
    try:
        msg.ParseFromString(wrapper.value)
    except DecodeError as exc:
        raise ValueError(f"malformed {full_name}: {exc}") from None
    return short_name, msg


def decode(cls: type[M], data: Any) -> M:
    """Parse a *bare* (not ``Any``-wrapped) serialized message of type ``cls``.

    For ``PutResult.app_metadata`` (``DoPutUpdateResult``) and the bodies of the core Flight
    actions (``SetSessionOptionsRequest``, ``CancelFlightInfoRequest`` ...). Raises
    :class:`ValueError` on malformed input.
    """
    msg = cls()
    try:
        msg.ParseFromString(_as_bytes(data))
    except DecodeError as exc:
        raise ValueError(f"malformed {cls.DESCRIPTOR.full_name}: {exc}") from None
    return msg


# --------------------------------------------------------------------------------------------
# Action names
# --------------------------------------------------------------------------------------------

# Flight SQL actions: body and result are Any-wrapped Flight SQL messages.
ACTION_CREATE_PREPARED_STATEMENT: Final = "CreatePreparedStatement"
ACTION_CREATE_PREPARED_SUBSTRAIT_PLAN: Final = "CreatePreparedSubstraitPlan"
ACTION_CLOSE_PREPARED_STATEMENT: Final = "ClosePreparedStatement"
ACTION_BEGIN_TRANSACTION: Final = "BeginTransaction"
ACTION_END_TRANSACTION: Final = "EndTransaction"
ACTION_BEGIN_SAVEPOINT: Final = "BeginSavepoint"
ACTION_END_SAVEPOINT: Final = "EndSavepoint"
ACTION_CANCEL_QUERY: Final = "CancelQuery"  # deprecated since Arrow 13: CancelFlightInfo

# Core Flight actions: body and result are *bare* serialized arrow.flight.protocol messages.
ACTION_CANCEL_FLIGHT_INFO: Final = "CancelFlightInfo"
ACTION_SET_SESSION_OPTIONS: Final = "SetSessionOptions"
ACTION_GET_SESSION_OPTIONS: Final = "GetSessionOptions"
ACTION_CLOSE_SESSION: Final = "CloseSession"

# MinIODB custom actions: JSON bodies and results (see dumps/loads).
ACTION_FLUSH: Final = "flush"
ACTION_BACKUP_METADATA: Final = "backup_metadata"
ACTION_RESTORE_METADATA: Final = "restore_metadata"
ACTION_LIST_BACKUPS: Final = "list_backups"
ACTION_HEALTH: Final = "health"
ACTION_STATUS: Final = "status"
ACTION_CREATE_TABLE: Final = "create_table"
ACTION_DROP_TABLE: Final = "drop_table"
ACTION_LIST_TABLES: Final = "list_tables"
ACTION_DESCRIBE_TABLE: Final = "describe_table"
ACTION_CANCEL_QUERY_ID: Final = "cancel_query"  # {"query_id"}: a query of system.queries, on this node
ACTION_COMPACT: Final = "compact"  # {"table"?}: one compaction pass now; {"results": [...]}
ACTION_VACUUM: Final = "vacuum"  # {"table"?}: trim version logs, delete unreferenced objects now
ACTION_RESTORE_TABLE: Final = "restore_table"  # {"table", "version"}: the table as it was at that version

FLIGHT_SQL_ACTIONS: Final = frozenset(
    {
        ACTION_CREATE_PREPARED_STATEMENT,
        ACTION_CREATE_PREPARED_SUBSTRAIT_PLAN,
        ACTION_CLOSE_PREPARED_STATEMENT,
        ACTION_BEGIN_TRANSACTION,
        ACTION_END_TRANSACTION,
        ACTION_BEGIN_SAVEPOINT,
        ACTION_END_SAVEPOINT,
        ACTION_CANCEL_QUERY,
    }
)
FLIGHT_ACTIONS: Final = frozenset(
    {
        ACTION_CANCEL_FLIGHT_INFO,
        ACTION_SET_SESSION_OPTIONS,
        ACTION_GET_SESSION_OPTIONS,
        ACTION_CLOSE_SESSION,
    }
)
CUSTOM_ACTIONS: Final = frozenset(
    {
        ACTION_FLUSH,
        ACTION_BACKUP_METADATA,
        ACTION_RESTORE_METADATA,
        ACTION_LIST_BACKUPS,
        ACTION_HEALTH,
        ACTION_STATUS,
        ACTION_CREATE_TABLE,
        ACTION_DROP_TABLE,
        ACTION_LIST_TABLES,
        ACTION_DESCRIBE_TABLE,
        ACTION_CANCEL_QUERY_ID,
        ACTION_COMPACT,
        ACTION_VACUUM,
        ACTION_RESTORE_TABLE,
    }
)

#: Request message of every standard action. Flight SQL actions (``FLIGHT_SQL_ACTIONS``) wrap it
#: in ``Any`` (:func:`pack` / :func:`unpack`); core Flight actions (``FLIGHT_ACTIONS``) send it
#: bare (``SerializeToString`` / :func:`decode`).
ACTION_REQUESTS: Final[Mapping[str, type[Message]]] = {
    ACTION_CREATE_PREPARED_STATEMENT: sql_pb2.ActionCreatePreparedStatementRequest,
    ACTION_CREATE_PREPARED_SUBSTRAIT_PLAN: sql_pb2.ActionCreatePreparedSubstraitPlanRequest,
    ACTION_CLOSE_PREPARED_STATEMENT: sql_pb2.ActionClosePreparedStatementRequest,
    ACTION_BEGIN_TRANSACTION: sql_pb2.ActionBeginTransactionRequest,
    ACTION_END_TRANSACTION: sql_pb2.ActionEndTransactionRequest,
    ACTION_BEGIN_SAVEPOINT: sql_pb2.ActionBeginSavepointRequest,
    ACTION_END_SAVEPOINT: sql_pb2.ActionEndSavepointRequest,
    ACTION_CANCEL_QUERY: sql_pb2.ActionCancelQueryRequest,
    ACTION_CANCEL_FLIGHT_INFO: flight_pb2.CancelFlightInfoRequest,
    ACTION_SET_SESSION_OPTIONS: flight_pb2.SetSessionOptionsRequest,
    ACTION_GET_SESSION_OPTIONS: flight_pb2.GetSessionOptionsRequest,
    ACTION_CLOSE_SESSION: flight_pb2.CloseSessionRequest,
}

# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------

#: Idempotency key of an ingest (DoPut) call: a retried batch with the same id is applied once.
BATCH_ID_HEADER: Final = "x-miniodb-batch-id"

#: ``app_metadata`` of a data-less DoPut message: the client's input failed mid-upload, so the
#: node must fail the DoPut and commit nothing of it (pyarrow's Flight client cannot cancel a
#: call, and closing the writer ends the stream as cleanly as a finished upload).
ABORT_UPLOAD: Final = b"miniodb:abort-upload"

# --------------------------------------------------------------------------------------------
# JSON bodies of custom actions
# --------------------------------------------------------------------------------------------

_JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Serialize an action body/result to UTF-8 JSON bytes.

    Besides what orjson handles natively (dataclasses, datetimes, UUIDs, numpy arrays), Decimals
    become strings, sets become lists, bytes become base64 strings and timedeltas seconds.
    """
    return orjson.dumps(obj, default=_json_default, option=_JSON_OPTIONS)


def loads(data: Any) -> Any:
    """Parse a JSON action body/result; an empty body means ``{}`` (an action without
    parameters). Accepts bytes, str, memoryview or a ``pyarrow.Buffer``. Raises
    :class:`ValueError` (``orjson.JSONDecodeError`` is a subclass) on invalid JSON."""
    if data is None:
        return {}
    if not isinstance(data, bytes | bytearray | memoryview | str):
        data = memoryview(data)
    if len(data) == 0 or (isinstance(data, str | bytes | bytearray) and not data.strip()):
        return {}
    return orjson.loads(data)
