"""Flight SQL handlers for statements: queries, updates, prepared statements, bulk ingest,
cancellation and the (refused) transactions.

A SELECT executes once, in GetFlightInfo (errors surface there); its DoGet streams the result
(:mod:`.streaming`). Tickets are self-contained (SQL + bound parameters), so a DoGet that
reaches another node, or arrives after the result expired, runs the query there. DDL/DML
(CREATE/DROP TABLE, INSERT) runs eagerly and exactly once wherever it arrives (GetFlightInfo,
DoPut, prepared execution); its ticket only answers an empty stream.

Each handler analyses the client's SQL once (:func:`flight_server.query.statement.statement`:
kind, parameters, tables, digest) and hands that analysis down to the node's query path.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol
from clients.errors import Cancelled, InvalidRequest, NotFound, Unimplemented
from clients.protocol import flight_pb2, sql_pb2

from ..coordinator.cluster import cancellable
from ..dml import param_rows, parameter_schema
from ..query.statement import Statement, as_of, refuse, statement
from ..querylog import add_headers, add_trailers
from . import metadata_commands as md
from .api import EMPTY_SCHEMA, TXN, NodeAPI, check_txn, serialize
from .middleware import header
from .prepared import (
    PreparedStatement,
    PreparedStatements,
    decode_params,
    encode_params,
    parse_handle,
    require,
)
from .results import PREFETCH_BYTES, Execution, PendingResults
from .sessions import AS_OF_VERSION, MULTI_ENDPOINT
from .streaming import empty_stream, stream_execution

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


def update_result(count: int) -> pa.Buffer:
    return pa.py_buffer(sql_pb2.DoPutUpdateResult(record_count=count).SerializeToString())


class StatementHandlers:
    """Mixin of :class:`~.server.MinioFlightServer`: the statement commands."""

    node: NodeAPI
    pending: PendingResults
    prepared: PreparedStatements

    # -- statements ----------------------------------------------------------------------
    def _execute(self, context, text: str, params: pa.Table | None, descriptor) -> flight.FlightInfo:
        """Run a statement for GetFlightInfo: a query executes (first parameter row) and waits
        for its DoGet; DDL/DML is applied now and answers an empty result."""
        st = statement(text)
        if st.kind == "SELECT":  # session option miniodb.as_of_version: time travel for every table
            as_of_version = self.sessions.options(self._session_keys(context)).get(AS_OF_VERSION)
            if as_of_version is not None:
                st = as_of(st, as_of_version)
        if st.is_update:
            count = self.node.execute_update(st.sql, params)
            ticket = protocol.pack(sql_pb2.TicketStatementQuery(statement_handle=orjson.dumps({"done": count})))
            return flight.FlightInfo(EMPTY_SCHEMA, descriptor, [flight.FlightEndpoint(ticket, [])], count, -1)
        if params is None and st.kind == "SELECT":
            multi = self._multi_endpoint(context, st, descriptor)
            if multi is not None:
                return multi
        rows = param_rows(params) or [None]
        with cancellable(context):  # a distributed query stops its peers when the client gives up
            first = self.node.query(st, rows[0])
        execution = Execution(st.sql, first, rows[1:])
        if not execution.rest:
            execution.prefetch(PREFETCH_BYTES)
        add_headers(context, first)  # x-miniodb-* statistics of the execution (rows too when complete)
        handle = self.pending.put(execution)
        body: dict[str, Any] = {"h": handle, "q": st.sql}
        if params is not None and params.num_rows:
            body["p"] = encode_params(params)
        ticket = protocol.pack(sql_pb2.TicketStatementQuery(statement_handle=orjson.dumps(body)))
        table = execution.table
        return flight.FlightInfo(first.schema, descriptor, [flight.FlightEndpoint(ticket, [])],
                                 table.num_rows if table is not None else -1, execution.nbytes)

    def _multi_endpoint(self, context, st: Statement, descriptor) -> flight.FlightInfo | None:
        """Opt-in: a plain scan as one endpoint per node holding data (coordinator/endpoints.py)."""
        def requested() -> bool | None:  # asked only in a cluster (a SELECT on one node skips the lookup)
            return self.sessions.options(self._session_keys(context)).get(MULTI_ENDPOINT)

        with cancellable(context):
            found = self.node.query_endpoints(st, requested)
        if found is None:
            return None
        schema, endpoints = found
        eps = [flight.FlightEndpoint(ticket, [location] if location else []) for location, ticket in endpoints]
        return flight.FlightInfo(schema, descriptor, eps, -1, -1)

    def get_flight_info_statement(self, context, cmd, descriptor):
        check_txn(cmd)
        return self._execute(context, cmd.query, None, descriptor)

    def get_schema_statement(self, context, cmd) -> pa.Schema:
        check_txn(cmd)
        return self._dataset_schema(statement(cmd.query), raise_errors=True) or EMPTY_SCHEMA

    def do_get_statement(self, context, ticket):
        try:
            body = orjson.loads(ticket.statement_handle)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("malformed statement ticket") from exc
        if not isinstance(body, dict):
            raise InvalidRequest("malformed statement ticket")
        if "done" in body:
            return empty_stream()  # DDL/DML: applied when the FlightInfo was made
        handle = str(body.get("h", ""))
        outcome, execution = self.pending.claim(handle)
        if outcome == PendingResults.CANCELLED:
            raise Cancelled("query cancelled")
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
        return stream_execution(execution, self.node.query, lambda: self.pending.finished(handle),
                                lambda result: self.pending.running(handle, result))

    def do_put_statement_update(self, context, cmd, reader, writer):
        check_txn(cmd)
        st = statement(cmd.query)
        if not st.is_update:
            refuse(st.kind)
            raise InvalidRequest(f"{st.kind} returns rows; execute it as a query (CommandStatementQuery), "
                                 "not as an update")
        writer.write(update_result(self.node.execute_update(st.sql, None)))

    def do_put_statement_ingest(self, context, cmd, reader, writer):
        check_txn(cmd)
        if cmd.temporary:
            raise InvalidRequest("temporary tables are not supported")
        if cmd.HasField("catalog") and cmd.catalog and cmd.catalog.lower() != md.CATALOG:
            raise NotFound(f"catalog {cmd.catalog!r} not found; MinIODB has one catalog, {md.CATALOG!r}")
        if cmd.HasField("schema") and cmd.schema and cmd.schema.lower() != md.DEFAULT_SCHEMA:
            raise InvalidRequest(f"tables are written in schema {md.DEFAULT_SCHEMA!r}, not {cmd.schema!r}")
        self._ingest(context, cmd.table, reader, writer, ingest_mode(cmd))

    def _ingest(self, context, table: str, reader, writer, mode: str) -> None:
        result = self.node.ingest(table, batches(reader, context), reader.schema, mode,
                                  batch_id=header(context, protocol.BATCH_ID_HEADER))
        drain(reader)
        writer.write(update_result(result.rows))

    # -- prepared statements -------------------------------------------------------------
    def _dataset_schema(self, st: Statement, param_count: int = 0, raise_errors: bool = False) -> pa.Schema | None:
        """Result schema without reading data (empty for DDL/DML); None if unknown."""
        if st.is_update:
            return EMPTY_SCHEMA
        refuse(st.kind)
        count = param_count or st.param_count
        try:
            return self.node.query_schema(st, [None] * count if count else None)
        except InvalidRequest:
            if count and not raise_errors:
                return None  # depends on the parameter values; the execution reports the schema
            raise

    def do_action_create_prepared_statement(self, context, req):
        check_txn(req)
        st = statement(req.query)
        count = st.param_count
        dataset = self._dataset_schema(st, count)
        params = parameter_schema(self.node, st.sql, count) if st.is_update else pa.schema(
            [pa.field(f"${i + 1}", pa.null()) for i in range(count)])
        prepared = self.prepared.add(PreparedStatement(
            self.prepared.new_id(), st.sql, st.kind, st.is_update, count, dataset, params))
        result = sql_pb2.ActionCreatePreparedStatementResult(
            prepared_statement_handle=prepared.handle(), dataset_schema=serialize(dataset),
            parameter_schema=serialize(params))
        return [flight.Result(pa.py_buffer(protocol.pack(result)))]

    def do_action_close_prepared_statement(self, context, req):
        self.prepared.close(parse_handle(req.prepared_statement_handle).id)
        return []

    def _prepared(self, raw: bytes) -> PreparedStatement:
        handle = parse_handle(raw)
        stmt = self.prepared.get(handle)
        if stmt is None:
            # prepared on another node, or expired here: prepare it again from the handle
            st = statement(handle.sql)
            if not st.is_update:
                refuse(st.kind)
            stmt = self.prepared.add(PreparedStatement(handle.id, handle.sql, st.kind, st.is_update,
                                                       st.param_count, None, pa.schema([]), params=handle.params))
        return require(stmt)

    def get_flight_info_prepared_statement(self, context, cmd, descriptor):
        stmt = self._prepared(cmd.prepared_statement_handle)
        if stmt.param_count and (stmt.params is None or not stmt.params.num_rows):
            raise InvalidRequest(f"the statement has {stmt.param_count} parameter(s); bind them first")
        return self._execute(context, stmt.sql, stmt.params if stmt.param_count else None, descriptor)

    def get_schema_prepared_statement(self, context, cmd) -> pa.Schema:
        stmt = self._prepared(cmd.prepared_statement_handle)
        if stmt.dataset_schema is None:
            stmt.dataset_schema = self._dataset_schema(statement(stmt.sql), stmt.param_count, raise_errors=True)
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
        writer.write(update_result(self.node.execute_update(stmt.sql, params if stmt.param_count else None)))

    # -- transactions: none ----------------------------------------------------------------
    def do_action_begin_transaction(self, context, req):
        raise Unimplemented(TXN)

    def do_action_end_transaction(self, context, req):
        raise Unimplemented(TXN)

    def do_action_begin_savepoint(self, context, req):
        raise Unimplemented(TXN)

    def do_action_end_savepoint(self, context, req):
        raise Unimplemented(TXN)

    # -- cancellation --------------------------------------------------------------------
    def _cancel(self, info: flight_pb2.FlightInfo) -> int:
        statuses = []
        for endpoint in info.endpoint:
            try:
                name, msg = protocol.unpack(endpoint.ticket.ticket)
                body = orjson.loads(msg.statement_handle) if name == "TicketStatementQuery" else None
            except (ValueError, orjson.JSONDecodeError):
                body = None
            if not isinstance(body, dict) or "done" in body:
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

    def do_action_cancel_query_id(self, context, args: dict):
        """``cancel_query {"query_id"}``: stop a running query named by its ``system.queries`` id."""
        query_id = args.get("query_id")
        if not isinstance(query_id, str) or not query_id:
            raise InvalidRequest("cancel_query needs 'query_id' (a query id of system.queries)")
        if not self.pending.cancel_query(query_id):
            raise NotFound(f"no running query {query_id!r} on this node (it finished, or it is still "
                           "executing before its first result)")
        return [flight.Result(pa.py_buffer(protocol.dumps({"query_id": query_id, "cancelled": True})))]

    def do_action_cancel_query(self, context, req):
        info = protocol.decode(flight_pb2.FlightInfo, req.info)
        status = self._cancel(info)
        legacy = {flight_pb2.CANCEL_STATUS_CANCELLED: sql_pb2.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED,
                  flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE:
                      sql_pb2.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE}
        result = sql_pb2.ActionCancelQueryResult(result=legacy[status])
        return [flight.Result(pa.py_buffer(protocol.pack(result)))]


def _read_params(reader, stmt: PreparedStatement) -> pa.Table:
    params = reader.read_all()
    if params.num_rows and params.num_columns != stmt.param_count:
        raise InvalidRequest(f"the statement has {stmt.param_count} parameter(s), "
                             f"got {params.num_columns} column(s) of values")
    return params


def batches(reader, context=None):
    """Batches of a DoPut stream (one Python step per batch, never per row). A client that went
    away ends the stream as if it had finished: the cancelled call tells them apart, so a cut
    stream is never applied as a whole batch. A client whose own input failed says so with an
    ``ABORT_UPLOAD`` message (pyarrow's Flight client cannot cancel a DoPut)."""
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


def drain(reader) -> None:
    """Read what is left of a DoPut stream (a duplicate batch id returns before reading it):
    answering before the client finished writing can lose the PutResult on the client side."""
    for _ in batches(reader):
        pass
