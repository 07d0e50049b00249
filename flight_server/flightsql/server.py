"""The Flight SQL server: the raw Flight methods decode the command and dispatch to one
handler per command, named ``<rpc>_<command>`` (``get_flight_info_statement``,
``do_put_statement_ingest``). A command without a handler answers UNIMPLEMENTED naming it.

The handlers live in mixins, one per concern:

* :mod:`.statements`: queries, updates, prepared statements, ingest, cancellation;
* :mod:`.catalog_handlers`: SqlInfo, XDBC types, catalogs/schemas/tables/keys, sessions;

and what they use in modules of their own: :mod:`.results` (results waiting for DoGet),
:mod:`.streaming` (DoGet streams), :mod:`.middleware` (request headers), :mod:`.errors`
(every exception leaves as a clean gRPC status), :mod:`.api` (what handlers need of the node).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol
from clients.errors import InvalidRequest, Unimplemented

from ..coordinator.cluster import ACTIONS as CLUSTER_ACTIONS
from ..coordinator.cluster import FRAGMENT_PREFIX
from .api import NodeAPI
from .catalog_handlers import FIXED_SCHEMAS, CatalogHandlers
from .errors import flight_errors, quiet_tracebacks
from .middleware import HeadersMiddlewareFactory
from .prepared import PreparedStatements
from .results import PendingResults
from .sessions import SessionStore
from .statements import StatementHandlers

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_RPC_NAMES = {"get_flight_info": "GetFlightInfo", "get_schema": "GetSchema", "do_get": "DoGet",
              "do_put": "DoPut", "do_action": "DoAction"}


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


class MinioFlightServer(StatementHandlers, CatalogHandlers, flight.FlightServerBase):
    def __init__(self, location: str, node: NodeAPI, middleware: dict | None = None,
                 tls_certificates: list | None = None, **kwargs):
        quiet_tracebacks()
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
        fixed = FIXED_SCHEMAS.get(name)
        if fixed is not None:
            return flight.SchemaResult(fixed(msg) if callable(fixed) else fixed)
        return flight.SchemaResult(self._handler("get_schema", name, msg)(context, msg))

    @flight_errors
    def do_get(self, context, ticket):
        if ticket.ticket.startswith(FRAGMENT_PREFIX):  # a peer's fragment, signed (coordinator/service.py)
            return flight.RecordBatchStream(self.node.cluster_fragment(ticket.ticket))
        name, msg = self._decode(ticket.ticket, "DoGet")
        return self._handler("do_get", name, msg)(context, msg)

    @flight_errors
    def do_put(self, context, descriptor, reader, writer):
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            self._ingest(context, _path_table(descriptor), reader, writer, "create_append")
            return
        name, msg = self._decode(descriptor.command, "DoPut")
        self._handler("do_put", name, msg)(context, msg, reader, writer)

    @flight_errors
    def do_action(self, context, action):
        kind = action.type
        body = action.body.to_pybytes() if action.body is not None else b""
        if kind in CLUSTER_ACTIONS:  # internal, signed with the cluster credential
            return [flight.Result(pa.py_buffer(orjson.dumps(self.node.cluster_action(kind, body))))]
        if kind in protocol.CUSTOM_ACTIONS:
            try:
                args = protocol.loads(body) if body.strip() else {}
            except (ValueError, orjson.JSONDecodeError) as exc:
                raise InvalidRequest(f"action {kind!r}: body is not valid JSON") from exc
            if not isinstance(args, dict):
                raise InvalidRequest(f"action {kind!r}: body must be a JSON object")
            if kind == protocol.ACTION_CANCEL_QUERY_ID:  # the results live here, not in the node
                return self.do_action_cancel_query_id(context, args)
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

    def shutdown(self):
        """Stop: gRPC lets every in-flight call finish (a streaming query included: the drain),
        then results that no DoGet fetched are closed. ``cancel_all`` interrupts the rest."""
        super().shutdown()
        self.pending.close_all()

    def cancel_all(self) -> None:
        """Interrupt every running query and close every unfetched result."""
        self.pending.close_all()


def _path_table(descriptor) -> str:
    if len(descriptor.path) != 1:
        raise InvalidRequest("a path descriptor names exactly one table")
    raw = descriptor.path[0]
    return raw.decode() if isinstance(raw, bytes) else raw


def _select_all(table: str) -> str:
    return 'SELECT * FROM "' + table.replace('"', '""') + '"'


__all__ = ["MinioFlightServer", "handler_suffix"]
