"""Python client of a MinIODB node, over ``pyarrow.flight`` (Flight SQL commands + actions).

    >>> from clients.flight import Client
    >>> c = Client("grpc://localhost:8080")
    >>> c.ingest("trips", table)                  # pyarrow Table/RecordBatchReader, pandas, Polars
    >>> c.query("SELECT count(*) FROM trips")     # -> pyarrow.Table
    >>> c.to_pandas("SELECT * FROM trips LIMIT 10")
    >>> c.to_polars("SELECT * FROM trips WHERE city = ? AND fare > ?", ["Oslo", 10.0])
    >>> c.execute("INSERT INTO trips (city, fare) VALUES (?, ?)", [("Oslo", 12.5), ("Rome", 9.0)])

Parameters (``?``) go through a server-side prepared statement (``prepare()``): one row is a
list/tuple, several rows (executemany) a list of tuples or Arrow/pandas/Polars data.
Every error arrives as a :mod:`clients.errors` class, whatever the transport said.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from . import errors, protocol
from .address import normalize_uri
from .protocol import sql_pb2

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # split client batches well under gRPC's 16 MiB default

_TDO = sql_pb2.CommandStatementIngest.TableDefinitionOptions
INGEST_MODES = {
    "create": (_TDO.TABLE_NOT_EXIST_OPTION_CREATE, _TDO.TABLE_EXISTS_OPTION_FAIL),
    "append": (_TDO.TABLE_NOT_EXIST_OPTION_FAIL, _TDO.TABLE_EXISTS_OPTION_APPEND),
    "replace": (_TDO.TABLE_NOT_EXIST_OPTION_CREATE, _TDO.TABLE_EXISTS_OPTION_REPLACE),
    "create_append": (_TDO.TABLE_NOT_EXIST_OPTION_CREATE, _TDO.TABLE_EXISTS_OPTION_APPEND),
}

_GRPC_BY_FLIGHT = {
    flight.FlightUnauthenticatedError: errors.Unauthenticated,
    flight.FlightUnauthorizedError: errors.PermissionDenied,
    flight.FlightUnavailableError: errors.Unavailable,
    flight.FlightCancelledError: errors.Cancelled,
    flight.FlightTimedOutError: errors.Unavailable,
    flight.FlightInternalError: errors.Internal,
}


def translate(exc: BaseException) -> errors.MinioDBError:
    """A Flight/Arrow exception as the matching :mod:`clients.errors` class."""
    if isinstance(exc, errors.MinioDBError):
        return exc
    text = str(exc)
    fallback: type[errors.MinioDBError] = errors.Internal
    for cls, mapped in _GRPC_BY_FLIGHT.items():
        if isinstance(exc, cls):
            fallback = mapped
            break
    else:
        if isinstance(exc, pa.ArrowKeyError):
            fallback = errors.NotFound
        elif isinstance(exc, pa.ArrowNotImplementedError):
            fallback = errors.Unimplemented
        elif isinstance(exc, pa.ArrowInvalid | pa.ArrowTypeError):
            fallback = errors.InvalidRequest
        elif isinstance(exc, pa.ArrowCancelled):
            fallback = errors.Cancelled
    err = errors.parse(text, fallback)
    if "[miniodb:" not in text and fallback is errors.Unavailable:
        err = errors.Unavailable(f"node unavailable: {err.message}")
    return err


def to_arrow(data: Any) -> pa.Table | pa.RecordBatchReader:
    """pyarrow Table/RecordBatch/RecordBatchReader, pandas or Polars DataFrame -> Arrow."""
    if isinstance(data, pa.Table | pa.RecordBatchReader):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    mod = type(data).__module__.split(".")[0]
    if mod == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if mod == "polars":
        return data.to_arrow()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    raise errors.InvalidRequest(f"cannot ingest a {type(data).__name__}; give Arrow, pandas or Polars data")


def split_batches(batches, max_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[pa.RecordBatch]:
    """Re-slice batches so each stays under ``max_bytes`` (zero-copy slices)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        size = batch.nbytes
        if size <= max_bytes:
            yield batch
            continue
        rows = max(1, batch.num_rows * max_bytes // size)
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def to_params(params: Any) -> pa.Table:
    """Bind parameters as an Arrow table, one row per execution.

    A list/tuple of values is one row; a list of lists/tuples is several rows; a dict is one
    row (its values, in order); Arrow, pandas and Polars data are taken as they are.
    """
    if isinstance(params, pa.Table):
        return params
    if isinstance(params, pa.RecordBatch):
        return pa.Table.from_batches([params])
    if isinstance(params, dict):
        params = list(params.values())
    if isinstance(params, list | tuple):
        rows = list(params)
        if rows and all(isinstance(r, list | tuple) for r in rows):
            width = len(rows[0])
            if any(len(r) != width for r in rows):
                raise errors.InvalidRequest("every parameter row needs the same number of values")
            return pa.table({f"${i + 1}": pa.array([r[i] for r in rows]) for i in range(width)})
        return pa.table({f"${i + 1}": pa.array([v]) for i, v in enumerate(rows)})
    arrow = to_arrow(params)
    return arrow if isinstance(arrow, pa.Table) else arrow.read_all()


def _command(msg) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(protocol.pack(msg))


def _close_quietly(writer) -> None:
    try:
        writer.close()
    except (flight.FlightError, pa.ArrowException):
        pass


def _abort(writer) -> None:
    """End a DoPut so the node fails it and commits nothing (see ``protocol.ABORT_UPLOAD``)."""
    try:
        writer.write_metadata(pa.py_buffer(protocol.ABORT_UPLOAD))
    except (flight.FlightError, pa.ArrowException):
        pass  # the node already failed the call: nothing of it commits either
    _close_quietly(writer)


class PreparedStatement:
    """A prepared statement on the node: bind parameters, execute as a query or an update."""

    def __init__(self, client: Client, result: Any):
        self._client = client
        self.handle: bytes = result.prepared_statement_handle
        self.dataset_schema = pa.ipc.read_schema(pa.py_buffer(result.dataset_schema)) \
            if result.dataset_schema else None
        self.parameter_schema = pa.ipc.read_schema(pa.py_buffer(result.parameter_schema)) \
            if result.parameter_schema else None

    @property
    def is_update(self) -> bool:
        """DDL/DML: the node reports an empty dataset schema."""
        return self.dataset_schema is not None and len(self.dataset_schema) == 0

    def bind(self, params: Any) -> None:
        table = to_params(params)
        desc = _command(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=self.handle))
        meta = self._client._put(desc, table.schema, [table])
        if meta is not None and len(meta):
            result = protocol.decode(sql_pb2.DoPutPreparedStatementResult, meta)
            if result.HasField("prepared_statement_handle"):
                self.handle = result.prepared_statement_handle

    def flight_info(self, params: Any = None) -> flight.FlightInfo:
        if params is not None:
            self.bind(params)
        c = self._client
        desc = _command(sql_pb2.CommandPreparedStatementQuery(prepared_statement_handle=self.handle))
        return c._call(c._client.get_flight_info, desc, c._options())

    def query(self, params: Any = None) -> pa.Table:
        c = self._client
        return c._call(c._read(self.flight_info(params)).read_all)

    def execute_update(self, params: Any = None) -> int:
        desc = _command(sql_pb2.CommandPreparedStatementUpdate(prepared_statement_handle=self.handle))
        return self._client._put_update(desc, to_params(params) if params is not None else None)

    def close(self) -> None:
        c = self._client
        req = sql_pb2.ActionClosePreparedStatementRequest(prepared_statement_handle=self.handle)
        c._call(lambda: list(c._client.do_action(
            flight.Action(protocol.ACTION_CLOSE_PREPARED_STATEMENT, protocol.pack(req)), c._options())))

    def __enter__(self) -> PreparedStatement:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        except errors.MinioDBError:
            pass


STATS_PREFIX = "x-miniodb-"


class _StatsMiddleware(flight.ClientMiddleware):
    def __init__(self, owner: _StatsRecorder):
        self.owner = owner

    def received_headers(self, headers):
        self.owner.record(headers)


class _StatsRecorder(flight.ClientMiddlewareFactory):
    """Keeps the ``x-miniodb-*`` query statistics the node sent (GetFlightInfo headers, DoGet
    trailers) for the latest query made on each thread."""

    def __init__(self):
        self._by_thread: dict[int, dict[str, str]] = {}

    def start_call(self, info):
        if info.method == flight.FlightMethod.GET_FLIGHT_INFO:
            self._by_thread[threading.get_ident()] = {}
        return _StatsMiddleware(self)

    def record(self, headers) -> None:
        stats = {}
        for k, v in headers.items():
            if k.startswith(STATS_PREFIX):
                value = v[-1] if isinstance(v, list | tuple) else v
                stats[k[len(STATS_PREFIX):]] = value.decode() if isinstance(value, bytes) else str(value)
        if stats:
            self._by_thread.setdefault(threading.get_ident(), {}).update(stats)

    def last(self) -> dict[str, str]:
        return dict(self._by_thread.get(threading.get_ident(), {}))


def stats_http_headers(stats: dict[str, str]) -> dict[str, str]:
    """Query statistics as HTTP headers: ``cache-hit`` -> ``X-MinIODB-Cache-Hit``."""
    return {"X-MinIODB-" + "-".join(p.capitalize() for p in k.split("-")): v for k, v in stats.items()}


class Client:
    def __init__(self, uri: str = "grpc://localhost:8080", *, username: str | None = None,
                 password: str | None = None, token: str | None = None, tls_root_certs: bytes | None = None,
                 disable_server_verification: bool = False, timeout: float | None = None):
        self.uri = uri = normalize_uri(uri)
        kwargs: dict[str, Any] = {}
        if tls_root_certs:
            kwargs["tls_root_certs"] = tls_root_certs
        if disable_server_verification:
            kwargs["disable_server_verification"] = True
        self._stats = _StatsRecorder()
        try:
            self._client = flight.FlightClient(uri, middleware=[self._stats], **kwargs)
        except (pa.ArrowInvalid, flight.FlightError) as exc:
            raise translate(exc) from exc
        self._headers: list[tuple[bytes, bytes]] = []
        if token:
            self._headers.append((b"authorization", f"Bearer {token}".encode()))
        elif password is not None:
            basic = base64.b64encode(f"{username or ''}:{password}".encode()).decode()
            self._headers.append((b"authorization", f"Basic {basic}".encode()))
        self.timeout = timeout

    def last_stats(self) -> dict[str, str]:
        """Statistics of the latest query made on this thread (``rows``, ``bytes``, ``cache-hit``,
        ``files-scanned``, ``files-pruned``, ``bytes-read``, ``duration-ms``, ``query-id``);
        ``rows``/``bytes`` arrive with the end of the result stream (or at once on a cache hit)."""
        return self._stats.last()

    def _options(self, extra: list[tuple[bytes, bytes]] | None = None) -> flight.FlightCallOptions:
        return flight.FlightCallOptions(headers=self._headers + (extra or []), timeout=self.timeout)

    def _call(self, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            # OSError: a result stream that failed mid-way (the status text carries the tag)
            raise translate(exc) from None

    # -- queries -------------------------------------------------------------------------
    def flight_info(self, sql: str, params: Any = None) -> flight.FlightInfo:
        """Execute ``sql`` (with ``params``: as a prepared statement) and describe its result."""
        if params is None:
            return self._call(self._client.get_flight_info, _command(sql_pb2.CommandStatementQuery(query=sql)),
                              self._options())
        with self.prepare(sql) as stmt:
            return stmt.flight_info(params)

    def prepare(self, sql: str) -> PreparedStatement:
        """A server-side prepared statement (close it, or use it as a context manager)."""
        req = sql_pb2.ActionCreatePreparedStatementRequest(query=sql)
        results = self._call(lambda: list(self._client.do_action(
            flight.Action(protocol.ACTION_CREATE_PREPARED_STATEMENT, protocol.pack(req)), self._options())))
        if not results:
            raise errors.Internal("the node answered CreatePreparedStatement with no result")
        _, msg = protocol.unpack(results[0].body.to_pybytes())
        if not isinstance(msg, sql_pb2.ActionCreatePreparedStatementResult):
            raise errors.Internal("unexpected CreatePreparedStatement result")
        return PreparedStatement(self, msg)

    def _read(self, info: flight.FlightInfo) -> pa.RecordBatchReader:
        readers = [self._call(self._client.do_get, ep.ticket, self._options()) for ep in info.endpoints]
        if len(readers) == 1:
            return self._call(readers[0].to_reader)

        def batches():
            for r in readers:
                yield from self._call(r.to_reader)

        return pa.RecordBatchReader.from_batches(info.schema, batches())

    def read(self, info: flight.FlightInfo) -> pa.RecordBatchReader:
        """Stream the result described by ``info`` (from :meth:`flight_info`)."""
        return self._read(info)

    def query_reader(self, sql: str, params: Any = None) -> pa.RecordBatchReader:
        """Stream the result of ``sql``; ``params`` bind its ``?`` placeholders (one row: a
        list/tuple; several rows: a list of tuples or Arrow/pandas/Polars data, results
        concatenated)."""
        return self._read(self.flight_info(sql, params))

    def query(self, sql: str, params: Any = None) -> pa.Table:
        return self._call(self.query_reader(sql, params).read_all)

    def to_pandas(self, sql: str, params: Any = None):
        return self.query(sql, params).to_pandas()

    def to_polars(self, sql: str, params: Any = None):
        import polars as pl

        return pl.from_arrow(self.query(sql, params))

    def cancel(self, info: flight.FlightInfo) -> int:
        """CancelFlightInfo: stop the query behind ``info``; a ``flight_pb2.CancelStatus``."""
        req = protocol.flight_pb2.CancelFlightInfoRequest(
            info=protocol.flight_pb2.FlightInfo.FromString(info.serialize()))
        results = self._call(lambda: list(self._client.do_action(
            flight.Action(protocol.ACTION_CANCEL_FLIGHT_INFO, req.SerializeToString()), self._options())))
        if not results:
            raise errors.Internal("the node answered CancelFlightInfo with no result")
        return protocol.decode(protocol.flight_pb2.CancelFlightInfoResult, results[0].body.to_pybytes()).status

    def cancel_query(self, query_id: str) -> dict:
        """Stop the running query ``query_id`` (a ``system.queries`` id) on the node it runs on;
        :class:`~clients.errors.NotFound` when it is not running there."""
        return self.action(protocol.ACTION_CANCEL_QUERY_ID, {"query_id": query_id})

    def execute(self, sql: str, params: Any = None) -> int:
        """Run DDL/DML (CREATE/DROP TABLE, INSERT); with ``params``, once per row. Rows affected."""
        if params is None:
            return self._put_update(_command(sql_pb2.CommandStatementUpdate(query=sql)), None)
        with self.prepare(sql) as stmt:
            return stmt.execute_update(params)

    def _put_update(self, desc: flight.FlightDescriptor, params: pa.Table | None) -> int:
        schema = params.schema if params is not None else pa.schema([])
        meta = self._put(desc, schema, [params] if params is not None else [])
        if meta is None:
            raise errors.Internal("the node sent no update result")
        return protocol.decode(sql_pb2.DoPutUpdateResult, meta).record_count

    def _put(self, desc: flight.FlightDescriptor, schema: pa.Schema, data, extra_headers=None,
             progress: Callable[[int], None] | None = None):
        """One DoPut: send ``data`` (tables or batches), finish, return the node's metadata reply.

        If reading ``data`` fails, the upload is aborted (the node fails the DoPut and keeps
        nothing of it) and the input's error is raised, as a :mod:`clients.errors` class when
        it came from Arrow or Flight, else as it was."""
        writer, reader = self._call(self._client.do_put, desc, schema, self._options(extra_headers))
        items = iter(data)
        try:
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except BaseException as exc:
                    _abort(writer)
                    if isinstance(exc, flight.FlightError | pa.ArrowException):
                        raise translate(exc) from exc
                    raise
                if isinstance(item, pa.Table):
                    writer.write_table(item)
                else:
                    writer.write_batch(item)
                if progress:
                    progress(item.num_rows)
            writer.done_writing()
            meta = reader.read()
        except (flight.FlightError, pa.ArrowException) as exc:
            _close_quietly(writer)  # the node failed the call: its status is the error
            raise translate(exc) from None
        self._call(writer.close)
        return meta

    # -- ingest --------------------------------------------------------------------------
    def ingest(self, table: str, data: Any, mode: str = "create_append", batch_id: str | None = None,
               progress: Callable[[int], None] | None = None) -> int:
        """Write ``data`` into ``table``; returns the rows the node acknowledged (durable)."""
        if mode not in INGEST_MODES:
            raise errors.InvalidRequest(f"unknown mode {mode!r}; use one of {', '.join(INGEST_MODES)}")
        arrow = to_arrow(data)
        schema = arrow.schema
        batches = arrow.to_batches() if isinstance(arrow, pa.Table) else arrow
        not_exist, exists = INGEST_MODES[mode]
        cmd = sql_pb2.CommandStatementIngest(table=table, table_definition_options=_TDO(
            if_not_exist=not_exist, if_exists=exists))
        desc = flight.FlightDescriptor.for_command(protocol.pack(cmd))
        extra = [(protocol.BATCH_ID_HEADER.encode(), batch_id.encode())] if batch_id else []
        meta = self._put(desc, schema, split_batches(batches), extra, progress)
        if meta is None:
            raise errors.Internal("the node sent no acknowledgement")
        return protocol.decode(sql_pb2.DoPutUpdateResult, meta).record_count

    # -- actions -------------------------------------------------------------------------
    def action(self, name: str, body: dict | None = None) -> Any:
        results = self._call(lambda: list(self._client.do_action(
            flight.Action(name, protocol.dumps(body or {})), self._options())))
        if not results:
            return None
        return protocol.loads(results[0].body.to_pybytes())

    def tables(self, pattern: str | None = None) -> list[dict]:
        return self.action(protocol.ACTION_LIST_TABLES, {"pattern": pattern} if pattern else {})["tables"]

    def describe(self, table: str) -> dict:
        return self.action(protocol.ACTION_DESCRIBE_TABLE, {"name": table})

    def table_schema(self, table: str) -> pa.Schema | None:
        """The Arrow schema of ``table``, or None if there is no such table."""
        try:
            d = self.describe(table)
        except errors.NotFound:
            return None
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(d["schema_ipc"])))

    def create_table(self, name: str, schema: pa.Schema, config: dict | None = None,
                     if_not_exists: bool = False) -> dict:
        body = {"name": name, "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
                "config": config or {}, "if_not_exists": if_not_exists}
        return self.action(protocol.ACTION_CREATE_TABLE, body)

    def drop_table(self, name: str, if_exists: bool = False) -> bool:
        return self.action(protocol.ACTION_DROP_TABLE, {"name": name, "if_exists": if_exists})["dropped"]

    def flush(self, table: str | None = None) -> dict:
        return self.action(protocol.ACTION_FLUSH, {"table": table} if table else {})

    def compact(self, table: str | None = None) -> dict:
        """One compaction pass now over ``table`` (or every table): ``{"results": [...]}``."""
        return self.action(protocol.ACTION_COMPACT, {"table": table} if table else {})

    def health(self) -> dict:
        return self.action(protocol.ACTION_HEALTH)

    def status(self) -> dict:
        return self.action(protocol.ACTION_STATUS)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
