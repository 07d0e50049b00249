"""The Flight SQL server: raw Flight methods decode the command and dispatch to one handler
per command, named ``<rpc>_<command>`` (``get_flight_info_statement``,
``do_put_statement_ingest``). A command without a handler answers UNIMPLEMENTED naming it.

Handlers reach the node only through the :class:`NodeAPI` protocol (query, ingest, tables,
actions), so this module holds protocol logic and no storage logic.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol
from clients.errors import InvalidRequest, NotFound, Unimplemented
from clients.protocol import sql_pb2

from .errors import flight_errors, install_quiet_tracebacks
from .sql_info import sql_info_table

log = logging.getLogger("miniodb.flightsql")

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def handler_suffix(message_name: str) -> str:
    """``CommandStatementQuery`` -> ``statement``; ``CommandGetSqlInfo`` -> ``sql_info``."""
    name = message_name
    for prefix in ("Command", "Ticket"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.endswith("Query"):
        name = name[: -len("Query")]
    snake = _CAMEL.sub("_", name).lower()
    return snake[len("get_"):] if snake.startswith("get_") else snake


# ADBC ingest modes <- TableDefinitionOptions
_TDO = sql_pb2.CommandStatementIngest.TableDefinitionOptions


def ingest_mode(cmd: Any) -> str:
    if not cmd.HasField("table_definition_options"):
        return "create_append"
    opts = cmd.table_definition_options
    create = opts.if_not_exist == _TDO.TABLE_NOT_EXIST_OPTION_CREATE
    if opts.if_exists == _TDO.TABLE_EXISTS_OPTION_REPLACE:
        return "replace"
    if opts.if_exists == _TDO.TABLE_EXISTS_OPTION_APPEND:
        return "create_append" if create else "append"
    if opts.if_exists == _TDO.TABLE_EXISTS_OPTION_FAIL:
        return "create" if create else "append"
    return "create_append" if create else "append"


class NodeAPI(Protocol):
    node_id: str

    def query(self, sql: str, params: Any = None) -> Any: ...
    def ingest(self, table: str, reader: Any, schema: pa.Schema, mode: str, batch_id: str = "") -> Any: ...
    def action(self, name: str, body: dict) -> Any: ...


class HeadersMiddleware(flight.ServerMiddleware):
    def __init__(self, headers: dict):
        self.headers = headers


class HeadersMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Makes the incoming call headers readable by handlers (``context.get_middleware``)."""

    def start_call(self, info, headers):
        return HeadersMiddleware(headers)


def header(context: flight.ServerCallContext, name: str) -> str:
    mw = context.get_middleware("headers")
    if mw is None:
        return ""
    values = mw.headers.get(name) or mw.headers.get(name.lower()) or []
    return values[0] if values else ""


class PendingResults:
    """Results executed in GetFlightInfo, waiting for their DoGet (with a time limit)."""

    def __init__(self, ttl: float = 120.0, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._items: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def put(self, result: Any) -> str:
        handle = uuid.uuid4().hex
        with self._lock:
            self._items[handle] = (self._clock() + self.ttl, result)
        self.expire()
        return handle

    def take(self, handle: str) -> Any | None:
        with self._lock:
            item = self._items.pop(handle, None)
        return item[1] if item else None

    def expire(self) -> None:
        now = self._clock()
        with self._lock:
            dead = [h for h, (exp, _) in self._items.items() if exp < now]
            results = [self._items.pop(h)[1] for h in dead]
        for r in results:
            r.close()

    def close_all(self) -> None:
        with self._lock:
            results = [r for _, r in self._items.values()]
            self._items.clear()
        for r in results:
            r.close()


def stream_result(result: Any) -> flight.FlightDataStream:
    """Stream a QueryResult: the C++ reader does the work; resources are released at the end."""

    def gen():
        try:
            yield result.reader
        finally:
            result.close()

    return flight.GeneratorStream(result.schema, gen())


class MinioFlightServer(flight.FlightServerBase):
    def __init__(self, location: str, node: NodeAPI, middleware: dict | None = None,
                 tls_certificates: list | None = None, **kwargs):
        install_quiet_tracebacks()
        mw = {"headers": HeadersMiddlewareFactory()}
        mw.update(middleware or {})
        super().__init__(location, middleware=mw, tls_certificates=tls_certificates or [], **kwargs)
        self.node = node
        self.pending = PendingResults()

    # -- dispatch ----------------------------------------------------------------------
    def _decode(self, data: bytes, what: str) -> tuple[str, Any]:
        try:
            name, msg = protocol.unpack(data)
        except ValueError as exc:
            raise InvalidRequest(f"{what}: not a Flight SQL command ({exc})") from exc
        return name, msg

    def _handler(self, rpc: str, name: str, msg: Any) -> Callable:
        fn = getattr(self, f"{rpc}_{handler_suffix(name)}", None)
        if fn is None or msg is None:
            raise Unimplemented(f"{name} is not supported by {rpc}")
        return fn

    @flight_errors
    def get_flight_info(self, context, descriptor):
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            table = _path_table(descriptor)
            return self._statement_info(context, f'SELECT * FROM "{table}"', descriptor)
        name, msg = self._decode(descriptor.command, "GetFlightInfo")
        return self._handler("get_flight_info", name, msg)(context, msg, descriptor)

    @flight_errors
    def get_schema(self, context, descriptor):
        info = self.get_flight_info(context, descriptor)
        return flight.SchemaResult(info.schema)

    @flight_errors
    def do_get(self, context, ticket):
        name, msg = self._decode(ticket.ticket, "DoGet")
        if name == "TicketStatementQuery":
            return self.do_get_statement(context, msg)
        return self._handler("do_get", name, msg)(context, msg)

    @flight_errors
    def do_put(self, context, descriptor, reader, writer):
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            table = _path_table(descriptor)
            result = self.node.ingest(table, _batches(reader), reader.schema, "create_append",
                                      batch_id=header(context, protocol.BATCH_ID_HEADER))
            writer.write(pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=result.rows).SerializeToString()))
            return
        name, msg = self._decode(descriptor.command, "DoPut")
        self._handler("do_put", name, msg)(context, msg, reader, writer)

    @flight_errors
    def do_action(self, context, action):
        kind = action.type
        body = action.body.to_pybytes() if action.body is not None else b""
        if kind in protocol.CUSTOM_ACTIONS:
            try:
                args = protocol.loads(body) if body.strip() else {}
            except (ValueError, orjson.JSONDecodeError) as exc:
                raise InvalidRequest(f"action {kind!r}: body is not valid JSON") from exc
            if not isinstance(args, dict):
                raise InvalidRequest(f"action {kind!r}: body must be a JSON object")
            result = self.node.action(kind, args)
            return [flight.Result(pa.py_buffer(protocol.dumps(result)))]
        if kind in protocol.FLIGHT_SQL_ACTIONS:
            name, msg = self._decode(body, kind)
            fn = getattr(self, f"do_action_{_CAMEL.sub('_', kind).lower()}", None)
            if fn is None:
                raise Unimplemented(f"action {kind} is not supported")
            return fn(context, msg)
        if kind in protocol.FLIGHT_ACTIONS:
            fn = getattr(self, f"do_action_{_CAMEL.sub('_', kind).lower()}", None)
            if fn is None:
                raise Unimplemented(f"action {kind} is not supported")
            return fn(context, protocol.decode(protocol.ACTION_REQUESTS[kind], body))
        raise Unimplemented(f"unknown action {kind!r}")

    def list_actions(self, context):
        return [(name, "MinIODB action") for name in sorted(protocol.CUSTOM_ACTIONS)] + [
            (name, "Flight SQL action") for name in sorted(protocol.FLIGHT_SQL_ACTIONS)
        ]

    def list_flights(self, context, criteria):
        for t in self.node.action(protocol.ACTION_LIST_TABLES, {}).get("tables", []):
            desc = flight.FlightDescriptor.for_path(t["name"])
            yield flight.FlightInfo(pa.schema([]), desc, [], -1, -1)

    # -- statements ----------------------------------------------------------------------
    def _statement_info(self, context, sql: str, descriptor, params: Any = None) -> flight.FlightInfo:
        result = self.node.query(sql, params)
        handle = self.pending.put(result)
        ticket = protocol.pack(sql_pb2.TicketStatementQuery(
            statement_handle=orjson.dumps({"h": handle, "q": sql})))
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(result.schema, descriptor, [endpoint], -1, -1)

    def get_flight_info_statement(self, context, cmd, descriptor):
        return self._statement_info(context, cmd.query, descriptor)

    def do_get_statement(self, context, ticket):
        try:
            handle = orjson.loads(ticket.statement_handle)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("malformed statement ticket") from exc
        result = self.pending.take(handle.get("h", "")) if isinstance(handle, dict) else None
        if result is None:
            if not isinstance(handle, dict) or "q" not in handle:
                raise NotFound("statement ticket expired or unknown")
            # ticket taken on another node (load balancer) or expired: run it here
            result = self.node.query(handle["q"], handle.get("p"))
        return stream_result(result)

    def do_put_statement_ingest(self, context, cmd, reader, writer):
        if cmd.temporary:
            raise InvalidRequest("temporary tables are not supported")
        if cmd.catalog or (cmd.schema and cmd.schema not in ("main", "")):
            raise InvalidRequest("MinIODB has one catalog and one schema; do not set catalog or db_schema")
        result = self.node.ingest(cmd.table, _batches(reader), reader.schema, ingest_mode(cmd),
                                  batch_id=header(context, protocol.BATCH_ID_HEADER))
        writer.write(pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=result.rows).SerializeToString()))

    # -- metadata ------------------------------------------------------------------------
    def get_flight_info_sql_info(self, context, cmd, descriptor):
        table = sql_info_table(list(cmd.info))
        endpoint = flight.FlightEndpoint(protocol.pack(cmd), [])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, -1)

    def do_get_sql_info(self, context, cmd):
        return flight.RecordBatchStream(sql_info_table(list(cmd.info)))

    def shutdown(self):
        self.pending.close_all()
        super().shutdown()


def _path_table(descriptor) -> str:
    if len(descriptor.path) != 1:
        raise InvalidRequest("a path descriptor names exactly one table")
    raw = descriptor.path[0]
    return raw.decode() if isinstance(raw, bytes) else raw


def _batches(reader):
    """Batches of a DoPut stream (one Python step per batch, never per row)."""
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        if chunk.data is not None:
            yield chunk.data


__all__ = ["MinioFlightServer", "NotFound"]
