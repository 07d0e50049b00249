"""The Flight SQL server: raw Flight methods decode the command and dispatch to one handler
per command, named ``<rpc>_<command>`` (``get_flight_info_statement``,
``do_put_statement_ingest``). A command without a handler answers UNIMPLEMENTED naming it.

Statements: a SELECT executes once, in GetFlightInfo (errors surface there); its DoGet streams
the C++ record batch reader. Tickets are self-contained (SQL + bound parameters), so a DoGet
that reaches another node, or arrives after the result expired, runs the query there. DDL/DML
(CREATE/DROP TABLE, INSERT) runs eagerly and exactly once wherever it arrives (GetFlightInfo,
DoPut, prepared execution); its ticket only answers an empty stream.

Handlers reach the node only through the :class:`NodeAPI` protocol (query, ingest, updates,
tables, actions), so this module holds protocol logic and no storage logic.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol
from clients.errors import Cancelled, InvalidRequest, MinioDBError, NotFound, Unimplemented
from clients.protocol import flight_pb2, sql_pb2

from ..auth import HEADER_METHODS
from ..dml import is_update, param_rows, parameter_schema
from ..querylog import add_headers, add_trailers
from ..statements import classify, refuse
from . import metadata_commands as md
from .errors import flight_errors, install_quiet_tracebacks, stream_error, to_flight
from .prepared import (
    PreparedStatement,
    PreparedStatements,
    decode_params,
    encode_params,
    parse_handle,
    require,
)
from .sessions import COOKIE, SessionStore
from .sql_info import SQL_INFO_SCHEMA, XDBC_TYPE_INFO_SCHEMA, sql_info_table, xdbc_type_info_table

log = logging.getLogger("miniodb.flightsql")

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_RPC_NAMES = {"get_flight_info": "GetFlightInfo", "get_schema": "GetSchema", "do_get": "DoGet",
              "do_put": "DoPut", "do_action": "DoAction"}
_EMPTY_SCHEMA = pa.schema([])
_TXN = "transactions are not supported: every statement commits on its own"
MAX_STREAM_BATCH_BYTES = 8 * 1024 * 1024  # gRPC clients (ADBC, JDBC) refuse messages over 16 MiB
PREFETCH_BYTES = 1024 * 1024  # results up to this size are read whole in GetFlightInfo


@functools.lru_cache(maxsize=256)
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
    def query_schema(self, sql: str, params: Any = None) -> pa.Schema: ...
    def execute_update(self, sql: str, params: pa.Table | None = None) -> int: ...
    def ingest(self, table: str, reader: Any, schema: pa.Schema, mode: str, batch_id: str = "") -> Any: ...
    def sql_tables(self) -> list[md.SqlTable]: ...
    def action(self, name: str, body: dict) -> Any: ...


class HeadersMiddleware(flight.ServerMiddleware):
    def __init__(self, headers: dict):
        self.headers = headers


class HeadersMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Makes the incoming call headers readable by handlers (``context.get_middleware``)."""

    def start_call(self, info, headers):
        if info.method not in HEADER_METHODS:
            return None  # no handler of this call reads headers: no per-call Python upcalls
        return HeadersMiddleware(headers)


def header(context: flight.ServerCallContext, name: str) -> str:
    """A request header of the call: every middleware of this server keeps them as
    ``.headers`` (one middleware per call, so one Python upcall less per RPC)."""
    mw = context.get_middleware("call") or context.get_middleware("headers")
    if mw is None:
        return ""
    values = mw.headers.get(name) or mw.headers.get(name.lower()) or []
    return values[0] if values else ""


@dataclass
class Execution:
    """A query executed for a ticket: the first result, and parameter rows still to run.

    :meth:`prefetch` reads the head of the result in GetFlightInfo: a result that ends within
    the limit (the usual small query) is kept as a table, its cursor goes back to the pool at
    once, the FlightInfo reports its rows and bytes, and DoGet streams it from C++ without a
    Python step per batch. A longer result keeps the batches read and streams on from there.
    """

    sql: str
    first: Any  # QueryResult
    rest: list[list] = field(default_factory=list)
    head: list[pa.RecordBatch] = field(default_factory=list)
    table: pa.Table | None = None  # the whole result, when prefetch reached its end

    def prefetch(self, limit_bytes: int) -> None:
        reader = self.first.reader
        size = 0
        try:
            while size <= limit_bytes:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    self.table = pa.Table.from_batches(self.head, schema=reader.schema)
                    self.head = []
                    self.first.close()
                    return
                self.head.append(batch)
                size += batch.nbytes
        except BaseException as exc:
            self.first.close()
            if isinstance(exc, Exception):
                raise stream_error(exc) from None
            raise

    def close(self) -> None:
        self.head = []
        self.first.close()


class PendingResults:
    """Results executed in GetFlightInfo, waiting for their DoGet (with a time limit), the
    results being streamed (so CancelFlightInfo can interrupt them) and the recent outcome of
    each handle (a cancelled ticket is never run again)."""

    CANCELLED, FINISHED = "cancelled", "finished"

    def __init__(self, ttl: float = 120.0, clock: Callable[[], float] = time.monotonic, remember: int = 10_000):
        self.ttl = ttl
        self._clock = clock
        self._items: dict[str, tuple[float, Any]] = {}
        self._running: dict[str, Any] = {}
        self._outcome: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
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

    def outcome(self, handle: str) -> str | None:
        with self._lock:
            return self._outcome.get(handle)

    def running(self, handle: str, result: Any) -> None:
        """``result`` is streaming for ``handle`` (interruptible)."""
        with self._lock:
            self._running[handle] = result

    def finished(self, handle: str) -> None:
        with self._lock:
            self._running.pop(handle, None)
            self._remember_locked(handle, self.FINISHED, keep=True)

    def cancel(self, handle: str) -> int | None:
        """Cancel a pending or streaming query; the CancelStatus, or None if unknown here."""
        with self._lock:
            item = self._items.pop(handle, None)
            result = self._running.get(handle)
            before = self._outcome.get(handle)
            if item is None and result is None:
                if before == self.CANCELLED:
                    return flight_pb2.CANCEL_STATUS_CANCELLED
                return flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE if before else None
            self._remember_locked(handle, self.CANCELLED, keep=False)
        if item is not None:
            item[1].close()
        if result is not None:
            result.interrupt()
        return flight_pb2.CANCEL_STATUS_CANCELLED

    def _remember_locked(self, handle: str, outcome: str, keep: bool) -> None:
        if keep and self._outcome.get(handle) == self.CANCELLED:
            return
        self._outcome[handle] = outcome
        self._outcome.move_to_end(handle)
        while len(self._outcome) > self._remember:
            self._outcome.popitem(last=False)

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
            running = list(self._running.values())
        for r in results:
            r.close()
        for r in running:
            r.interrupt()


def stream_result(result: Any, on_done: Callable[[], None] = lambda: None) -> flight.FlightDataStream:
    """Stream a QueryResult: the C++ reader does the work; resources are released at the end."""
    return _stream(Execution("", result), lambda *_: None, on_done)


def _sliced(batch: pa.RecordBatch, max_bytes: int):
    """``batch``, sliced (zero-copy) under ``max_bytes`` when it is larger."""
    size = batch.nbytes
    if size <= max_bytes or batch.num_rows <= 1:
        yield batch
        return
    step = max(1, batch.num_rows * max_bytes // size)
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step)


def _batches_of(reader: pa.RecordBatchReader, max_bytes: int):
    """The reader's batches, a batch over ``max_bytes`` sliced (zero-copy) under it."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        yield from _sliced(batch, max_bytes)


def _stream(execution: Execution, run: Callable[[str, list], Any], on_done: Callable[[], None],
            on_result: Callable[[Any], None] = lambda r: None,
            max_bytes: int = MAX_STREAM_BATCH_BYTES) -> flight.FlightDataStream:
    """Stream a query's result(s). One Python step per batch (never per row): it keeps every
    message under the clients' 16 MiB cap whatever the row width, and a query that fails or
    is cancelled mid-stream ends with the right status (CANCELLED, INVALID_ARGUMENT ...)."""
    schema = execution.first.schema
    closed = threading.Event()

    def cleanup() -> None:
        if not closed.is_set():
            closed.set()
            execution.close()
            on_done()

    def gen():
        try:
            head, execution.head = execution.head, []
            for batch in head:
                yield from _sliced(batch, max_bytes)
            del head
            yield from _batches_of(execution.first.reader, max_bytes)
            execution.first.close()
            for row in execution.rest:
                result = run(execution.sql, row)
                try:
                    on_result(result)
                    reader = result.reader
                    yield from _batches_of(reader if reader.schema.equals(schema) else reader.cast(schema),
                                           max_bytes)
                finally:
                    result.close()
        except GeneratorExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - the edge: nothing leaves untranslated
            raise to_flight(stream_error(exc) if not isinstance(exc, MinioDBError) else exc) from None
        finally:
            cleanup()

    g = gen()
    weakref.finalize(g, cleanup)  # a stream never started still releases its result
    return flight.GeneratorStream(schema, g)


def _empty_stream() -> flight.FlightDataStream:
    return flight.GeneratorStream(_EMPTY_SCHEMA, iter(()))


def _serialize(schema: pa.Schema | None) -> bytes:
    return schema.serialize().to_pybytes() if schema is not None else b""


def _check_txn(cmd: Any) -> None:
    if cmd.HasField("transaction_id") and cmd.transaction_id:
        raise Unimplemented(_TXN)


class MinioFlightServer(flight.FlightServerBase):
    def __init__(self, location: str, node: NodeAPI, middleware: dict | None = None,
                 tls_certificates: list | None = None, **kwargs):
        install_quiet_tracebacks()
        mw = dict(middleware or {})
        if "call" not in mw:  # the node's call middleware keeps the headers itself
            mw["headers"] = HeadersMiddlewareFactory()
        super().__init__(location, middleware=mw, tls_certificates=tls_certificates or [], **kwargs)
        self.node = node
        self.pending = PendingResults()
        self.prepared = PreparedStatements()
        self.sessions = SessionStore(self._schema_names)

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
            raise Unimplemented(f"{name} is not supported by {_RPC_NAMES.get(rpc, rpc)}")
        return fn

    @flight_errors
    def get_flight_info(self, context, descriptor):
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            return self._execute(context, _select_all(_path_table(descriptor)), None, descriptor)
        name, msg = self._decode(descriptor.command, "GetFlightInfo")
        return self._handler("get_flight_info", name, msg)(context, msg, descriptor)

    @flight_errors
    def get_schema(self, context, descriptor):
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            return flight.SchemaResult(self.node.query_schema(_select_all(_path_table(descriptor))))
        name, msg = self._decode(descriptor.command, "GetSchema")
        fixed = _FIXED_SCHEMAS.get(name)
        if fixed is not None:
            return flight.SchemaResult(fixed(msg) if callable(fixed) else fixed)
        return flight.SchemaResult(self._handler("get_schema", name, msg)(context, msg))

    @flight_errors
    def do_get(self, context, ticket):
        name, msg = self._decode(ticket.ticket, "DoGet")
        return self._handler("do_get", name, msg)(context, msg)

    @flight_errors
    def do_put(self, context, descriptor, reader, writer):
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            table = _path_table(descriptor)
            result = self.node.ingest(table, _batches(reader, context), reader.schema, "create_append",
                                      batch_id=header(context, protocol.BATCH_ID_HEADER))
            _drain(reader)
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
            if fn is None or msg is None:
                raise Unimplemented(f"action {kind} is not supported")
            return fn(context, msg)
        if kind in protocol.FLIGHT_ACTIONS:
            fn = getattr(self, f"do_action_{_CAMEL.sub('_', kind).lower()}", None)
            if fn is None:
                raise Unimplemented(f"action {kind} is not supported")
            try:
                request = protocol.decode(protocol.ACTION_REQUESTS[kind], body)
            except ValueError as exc:
                raise InvalidRequest(f"action {kind}: {exc}") from exc
            return fn(context, request)
        raise Unimplemented(f"unknown action {kind!r}")

    def list_actions(self, context):
        return [(name, "MinIODB action") for name in sorted(protocol.CUSTOM_ACTIONS)] + [
            (name, "Flight SQL action") for name in sorted(protocol.FLIGHT_SQL_ACTIONS | protocol.FLIGHT_ACTIONS)
        ]

    def list_flights(self, context, criteria):
        for t in self.node.action(protocol.ACTION_LIST_TABLES, {}).get("tables", []):
            desc = flight.FlightDescriptor.for_path(t["name"])
            yield flight.FlightInfo(pa.schema([]), desc, [], -1, -1)

    # -- statements ----------------------------------------------------------------------
    def _execute(self, context, sql: str, params: pa.Table | None, descriptor) -> flight.FlightInfo:
        """Run a statement for GetFlightInfo: a query executes (first parameter row) and waits
        for its DoGet; DDL/DML is applied now and answers an empty result."""
        sql = md.strip_catalog(sql)
        kind, _ = classify(sql)
        if is_update(kind):
            count = self.node.execute_update(sql, params)
            ticket = protocol.pack(sql_pb2.TicketStatementQuery(statement_handle=orjson.dumps({"done": count})))
            return flight.FlightInfo(_EMPTY_SCHEMA, descriptor, [flight.FlightEndpoint(ticket, [])], count, -1)
        rows = param_rows(params) or [None]
        first = self.node.query(sql, rows[0])
        execution = Execution(sql, first, rows[1:])
        if not execution.rest:
            execution.prefetch(PREFETCH_BYTES)
        add_headers(context, first)  # x-miniodb-* statistics of the execution (rows too when complete)
        handle = self.pending.put(execution)
        body: dict[str, Any] = {"h": handle, "q": sql}
        if params is not None and params.num_rows:
            body["p"] = encode_params(params)
        ticket = protocol.pack(sql_pb2.TicketStatementQuery(statement_handle=orjson.dumps(body)))
        table = execution.table
        return flight.FlightInfo(first.schema, descriptor, [flight.FlightEndpoint(ticket, [])],
                                 table.num_rows if table is not None else -1,
                                 table.nbytes if table is not None else -1)

    def get_flight_info_statement(self, context, cmd, descriptor):
        _check_txn(cmd)
        return self._execute(context, cmd.query, None, descriptor)

    def get_schema_statement(self, context, cmd) -> pa.Schema:
        _check_txn(cmd)
        return self._dataset_schema(md.strip_catalog(cmd.query), raise_errors=True) or _EMPTY_SCHEMA

    def do_get_statement(self, context, ticket):
        try:
            body = orjson.loads(ticket.statement_handle)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("malformed statement ticket") from exc
        if not isinstance(body, dict):
            raise InvalidRequest("malformed statement ticket")
        if "done" in body:
            return _empty_stream()  # DDL/DML: applied when the FlightInfo was made
        handle = str(body.get("h", ""))
        if self.pending.outcome(handle) == PendingResults.CANCELLED:
            raise Cancelled("query cancelled")
        execution = self.pending.take(handle)
        if execution is None:
            if not isinstance(body.get("q"), str):
                raise NotFound("statement ticket expired or unknown")
            # ticket taken on another node (load balancer) or expired: run it here
            params = decode_params(body["p"]) if isinstance(body.get("p"), str) else None
            rows = param_rows(params) or [None]
            execution = Execution(body["q"], self.node.query(body["q"], rows[0]), rows[1:])
        add_trailers(context, execution.first)  # x-miniodb-* statistics (rows, bytes, ...) at the end
        if execution.table is not None:  # complete already: C++ streams it, nothing to interrupt
            self.pending.finished(handle)
            return flight.RecordBatchStream(execution.table)
        self.pending.running(handle, execution.first)
        return _stream(execution, self.node.query, lambda: self.pending.finished(handle),
                       lambda result: self.pending.running(handle, result))

    def do_put_statement_update(self, context, cmd, reader, writer):
        _check_txn(cmd)
        count = self._update(md.strip_catalog(cmd.query), None)
        writer.write(pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=count).SerializeToString()))

    def _update(self, sql: str, params: pa.Table | None) -> int:
        kind, _ = classify(sql)
        if not is_update(kind):
            refuse(kind)
            raise InvalidRequest(f"{kind} returns rows; execute it as a query (CommandStatementQuery), "
                                 "not as an update")
        return self.node.execute_update(sql, params)

    def do_put_statement_ingest(self, context, cmd, reader, writer):
        _check_txn(cmd)
        if cmd.temporary:
            raise InvalidRequest("temporary tables are not supported")
        if cmd.HasField("catalog") and cmd.catalog and cmd.catalog.lower() != md.CATALOG:
            raise NotFound(f"catalog {cmd.catalog!r} not found; MinIODB has one catalog, {md.CATALOG!r}")
        if cmd.HasField("schema") and cmd.schema and cmd.schema.lower() != md.DEFAULT_SCHEMA:
            raise InvalidRequest(f"tables are written in schema {md.DEFAULT_SCHEMA!r}, not {cmd.schema!r}")
        result = self.node.ingest(cmd.table, _batches(reader, context), reader.schema, ingest_mode(cmd),
                                  batch_id=header(context, protocol.BATCH_ID_HEADER))
        _drain(reader)
        writer.write(pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=result.rows).SerializeToString()))

    # -- prepared statements -------------------------------------------------------------
    def _dataset_schema(self, sql: str, param_count: int = 0, raise_errors: bool = False) -> pa.Schema | None:
        """Result schema without reading data (empty for DDL/DML); None if unknown."""
        kind, stmt = classify(sql)
        if is_update(kind):
            return _EMPTY_SCHEMA
        refuse(kind)
        count = param_count or len(stmt.named_parameters)
        try:
            return self.node.query_schema(sql, [None] * count if count else None)
        except InvalidRequest:
            if count and not raise_errors:
                return None  # depends on the parameter values; the execution reports the schema
            raise

    def do_action_create_prepared_statement(self, context, req):
        _check_txn(req)
        sql = md.strip_catalog(req.query)
        kind, stmt = classify(sql)
        count = len(stmt.named_parameters)
        update = is_update(kind)
        dataset = self._dataset_schema(sql, count)
        params = parameter_schema(self.node, sql, count) if update else pa.schema(
            [pa.field(f"${i + 1}", pa.null()) for i in range(count)])
        prepared = self.prepared.add(PreparedStatement(
            self.prepared.new_id(), sql, kind, update, count, dataset, params))
        result = sql_pb2.ActionCreatePreparedStatementResult(
            prepared_statement_handle=prepared.handle(), dataset_schema=_serialize(dataset),
            parameter_schema=_serialize(params))
        return [flight.Result(pa.py_buffer(protocol.pack(result)))]

    def do_action_close_prepared_statement(self, context, req):
        self.prepared.close(parse_handle(req.prepared_statement_handle).id)
        return []

    def _prepared(self, raw: bytes) -> PreparedStatement:
        handle = parse_handle(raw)
        stmt = self.prepared.get(handle)
        if stmt is None:
            # prepared on another node, or expired here: prepare it again from the handle
            kind, parsed = classify(handle.sql)
            update = is_update(kind)
            if not update:
                refuse(kind)
            count = len(parsed.named_parameters)
            stmt = self.prepared.add(PreparedStatement(handle.id, handle.sql, kind, update, count, None,
                                                       pa.schema([]), params=handle.params))
        return require(stmt)

    def get_flight_info_prepared_statement(self, context, cmd, descriptor):
        stmt = self._prepared(cmd.prepared_statement_handle)
        if stmt.param_count and (stmt.params is None or not stmt.params.num_rows):
            raise InvalidRequest(f"the statement has {stmt.param_count} parameter(s); bind them first")
        return self._execute(context, stmt.sql, stmt.params if stmt.param_count else None, descriptor)

    def get_schema_prepared_statement(self, context, cmd) -> pa.Schema:
        stmt = self._prepared(cmd.prepared_statement_handle)
        if stmt.dataset_schema is None:
            stmt.dataset_schema = self._dataset_schema(stmt.sql, stmt.param_count, raise_errors=True)
        return stmt.dataset_schema

    def do_put_prepared_statement(self, context, cmd, reader, writer):
        """Bind parameters (one row per execution) to a prepared statement."""
        stmt = self._prepared(cmd.prepared_statement_handle)
        params = _read_params(reader, stmt)
        stmt.params = params if params.num_rows else None
        result = sql_pb2.DoPutPreparedStatementResult(prepared_statement_handle=stmt.handle())
        writer.write(pa.py_buffer(result.SerializeToString()))

    def do_put_prepared_statement_update(self, context, cmd, reader, writer):
        stmt = self._prepared(cmd.prepared_statement_handle)
        params = _read_params(reader, stmt)
        if not params.num_rows:
            params = stmt.params
        if not stmt.is_update:
            raise InvalidRequest(f"{stmt.kind} returns rows; execute it as a query "
                                 "(GetFlightInfo with CommandPreparedStatementQuery), not as an update")
        count = self.node.execute_update(stmt.sql, params if stmt.param_count else None)
        writer.write(pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=count).SerializeToString()))

    def do_action_begin_transaction(self, context, req):
        raise Unimplemented(_TXN)

    def do_action_end_transaction(self, context, req):
        raise Unimplemented(_TXN)

    def do_action_begin_savepoint(self, context, req):
        raise Unimplemented(_TXN)

    def do_action_end_savepoint(self, context, req):
        raise Unimplemented(_TXN)

    # -- cancellation --------------------------------------------------------------------
    def _cancel(self, info: flight_pb2.FlightInfo) -> int:
        statuses = []
        for endpoint in info.endpoint:
            try:
                name, msg = protocol.unpack(endpoint.ticket.ticket)
                body = orjson.loads(msg.statement_handle) if name == "TicketStatementQuery" else None
            except (ValueError, orjson.JSONDecodeError):
                body = None
            if not isinstance(body, dict):
                statuses.append(flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE)
                continue
            if "done" in body:
                statuses.append(flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE)
                continue
            statuses.append(self.pending.cancel(str(body.get("h", ""))))
        known = [s for s in statuses if s is not None]
        if not known:
            raise NotFound("no such query on this node (it finished, expired or ran elsewhere)")
        if flight_pb2.CANCEL_STATUS_CANCELLED in known:
            return flight_pb2.CANCEL_STATUS_CANCELLED
        return flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE

    def do_action_cancel_flight_info(self, context, req):
        result = flight_pb2.CancelFlightInfoResult(status=self._cancel(req.info))
        return [flight.Result(pa.py_buffer(result.SerializeToString()))]

    def do_action_cancel_query(self, context, req):
        info = protocol.decode(flight_pb2.FlightInfo, req.info)
        status = self._cancel(info)
        legacy = {flight_pb2.CANCEL_STATUS_CANCELLED: sql_pb2.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED,
                  flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE:
                      sql_pb2.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE}
        result = sql_pb2.ActionCancelQueryResult(result=legacy[status])
        return [flight.Result(pa.py_buffer(protocol.pack(result)))]

    # -- sessions ------------------------------------------------------------------------
    def _session_keys(self, context) -> tuple[str, str]:
        return self.sessions.keys(header(context, "cookie"), context.peer())

    def _schema_names(self) -> list[str]:
        return md.schema_names(self.node.sql_tables())

    def do_action_set_session_options(self, context, req):
        result, new_id = self.sessions.set(self._session_keys(context), req)
        if new_id:
            context.add_header("set-cookie", f"{COOKIE}={new_id}")
        return [flight.Result(pa.py_buffer(result.SerializeToString()))]

    def do_action_get_session_options(self, context, req):
        return [flight.Result(pa.py_buffer(self.sessions.get(self._session_keys(context)).SerializeToString()))]

    def do_action_close_session(self, context, req):
        return [flight.Result(pa.py_buffer(self.sessions.close(self._session_keys(context)).SerializeToString()))]

    # -- metadata ------------------------------------------------------------------------
    def _metadata_info(self, cmd, descriptor, table: pa.Table) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(protocol.pack(cmd), [])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, -1)

    def get_flight_info_sql_info(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, sql_info_table(list(cmd.info)))

    def do_get_sql_info(self, context, cmd):
        return flight.RecordBatchStream(sql_info_table(list(cmd.info)))

    def get_flight_info_xdbc_type_info(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, _xdbc(cmd))

    def do_get_xdbc_type_info(self, context, cmd):
        return flight.RecordBatchStream(_xdbc(cmd))

    def get_flight_info_catalogs(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.catalogs_table())

    def do_get_catalogs(self, context, cmd):
        return flight.RecordBatchStream(md.catalogs_table())

    def _db_schemas(self, cmd) -> pa.Table:
        return md.db_schemas_table(self.node.sql_tables(), _opt(cmd, "catalog"),
                                   _opt(cmd, "db_schema_filter_pattern"))

    def get_flight_info_db_schemas(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, self._db_schemas(cmd))

    def do_get_db_schemas(self, context, cmd):
        return flight.RecordBatchStream(self._db_schemas(cmd))

    def _tables(self, cmd) -> pa.Table:
        return md.tables_table(self.node.sql_tables(), _opt(cmd, "catalog"), _opt(cmd, "db_schema_filter_pattern"),
                               _opt(cmd, "table_name_filter_pattern"), list(cmd.table_types), cmd.include_schema)

    def get_flight_info_tables(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, self._tables(cmd))

    def do_get_tables(self, context, cmd):
        return flight.RecordBatchStream(self._tables(cmd))

    def get_flight_info_table_types(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.table_types_table(self.node.sql_tables()))

    def do_get_table_types(self, context, cmd):
        return flight.RecordBatchStream(md.table_types_table(self.node.sql_tables()))

    def get_flight_info_primary_keys(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.primary_keys_table())

    def do_get_primary_keys(self, context, cmd):
        return flight.RecordBatchStream(md.primary_keys_table())

    def get_flight_info_exported_keys(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.keys_table())

    def do_get_exported_keys(self, context, cmd):
        return flight.RecordBatchStream(md.keys_table())

    def get_flight_info_imported_keys(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.keys_table())

    def do_get_imported_keys(self, context, cmd):
        return flight.RecordBatchStream(md.keys_table())

    def get_flight_info_cross_reference(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.keys_table())

    def do_get_cross_reference(self, context, cmd):
        return flight.RecordBatchStream(md.keys_table())

    def shutdown(self):
        self.pending.close_all()
        super().shutdown()


def _opt(cmd: Any, name: str) -> str | None:
    return getattr(cmd, name) if cmd.HasField(name) else None


def _xdbc(cmd: Any) -> pa.Table:
    return xdbc_type_info_table(cmd.data_type if cmd.HasField("data_type") else None)


#: GetSchema answers that need no execution.
_FIXED_SCHEMAS: dict[str, Any] = {
    "CommandGetSqlInfo": SQL_INFO_SCHEMA,
    "CommandGetXdbcTypeInfo": XDBC_TYPE_INFO_SCHEMA,
    "CommandGetCatalogs": md.CATALOGS_SCHEMA,
    "CommandGetDbSchemas": md.DB_SCHEMAS_SCHEMA,
    "CommandGetTables": lambda cmd: md.TABLES_WITH_SCHEMA_SCHEMA if cmd.include_schema else md.TABLES_SCHEMA,
    "CommandGetTableTypes": md.TABLE_TYPES_SCHEMA,
    "CommandGetPrimaryKeys": md.PRIMARY_KEYS_SCHEMA,
    "CommandGetExportedKeys": md.KEYS_SCHEMA,
    "CommandGetImportedKeys": md.KEYS_SCHEMA,
    "CommandGetCrossReference": md.KEYS_SCHEMA,
}


def _read_params(reader, stmt: PreparedStatement) -> pa.Table:
    params = reader.read_all()
    if params.num_rows and params.num_columns != stmt.param_count:
        raise InvalidRequest(f"the statement has {stmt.param_count} parameter(s), "
                             f"got {params.num_columns} column(s) of values")
    return params


def _path_table(descriptor) -> str:
    if len(descriptor.path) != 1:
        raise InvalidRequest("a path descriptor names exactly one table")
    raw = descriptor.path[0]
    return raw.decode() if isinstance(raw, bytes) else raw


def _select_all(table: str) -> str:
    return 'SELECT * FROM "' + table.replace('"', '""') + '"'


def _batches(reader, context=None):
    """Batches of a DoPut stream (one Python step per batch, never per row). A client that went
    away ends the stream as if it had finished: the cancelled call tells them apart, so a cut
    stream is never applied as a whole batch."""
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            if context is not None and context.is_cancelled():
                raise flight.FlightCancelledError("the client cancelled the DoPut stream") from None
            return
        if chunk.data is not None:
            yield chunk.data
        elif chunk.app_metadata is not None and chunk.app_metadata.to_pybytes() == protocol.ABORT_UPLOAD:
            raise Cancelled("the client aborted the upload (its input failed)")


def _drain(reader) -> None:
    """Read what is left of a DoPut stream (a duplicate batch id returns before reading it):
    answering before the client finished writing can lose the PutResult on the client side."""
    for _ in _batches(reader):
        pass


__all__ = ["MinioFlightServer", "NotFound", "PendingResults", "stream_result"]
