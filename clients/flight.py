"""Python client of a MinIODB node, over ``pyarrow.flight`` (Flight SQL commands + actions).

    >>> from clients.flight import Client
    >>> c = Client("grpc://localhost:8080")
    >>> c.ingest("trips", table)                  # pyarrow Table/RecordBatchReader, pandas, Polars
    >>> c.query("SELECT count(*) FROM trips")     # -> pyarrow.Table
    >>> c.to_pandas("SELECT * FROM trips LIMIT 10")

Every error arrives as a :mod:`clients.errors` class, whatever the transport said.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from . import errors, protocol
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


class Client:
    def __init__(self, uri: str = "grpc://localhost:8080", *, username: str | None = None,
                 password: str | None = None, token: str | None = None, tls_root_certs: bytes | None = None,
                 disable_server_verification: bool = False, timeout: float | None = None):
        self.uri = uri
        kwargs: dict[str, Any] = {}
        if tls_root_certs:
            kwargs["tls_root_certs"] = tls_root_certs
        if disable_server_verification:
            kwargs["disable_server_verification"] = True
        try:
            self._client = flight.FlightClient(uri, **kwargs)
        except (pa.ArrowInvalid, flight.FlightError) as exc:
            raise translate(exc) from exc
        self._headers: list[tuple[bytes, bytes]] = []
        if token:
            self._headers.append((b"authorization", f"Bearer {token}".encode()))
        elif password is not None:
            basic = base64.b64encode(f"{username or ''}:{password}".encode()).decode()
            self._headers.append((b"authorization", f"Basic {basic}".encode()))
        self.timeout = timeout

    def _options(self, extra: list[tuple[bytes, bytes]] | None = None) -> flight.FlightCallOptions:
        return flight.FlightCallOptions(headers=self._headers + (extra or []), timeout=self.timeout)

    def _call(self, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (flight.FlightError, pa.ArrowException) as exc:
            raise translate(exc) from None

    # -- queries -------------------------------------------------------------------------
    def flight_info(self, sql: str) -> flight.FlightInfo:
        desc = flight.FlightDescriptor.for_command(protocol.pack(sql_pb2.CommandStatementQuery(query=sql)))
        return self._call(self._client.get_flight_info, desc, self._options())

    def query_reader(self, sql: str) -> pa.RecordBatchReader:
        info = self.flight_info(sql)
        readers = [self._call(self._client.do_get, ep.ticket, self._options()) for ep in info.endpoints]
        if len(readers) == 1:
            return self._call(readers[0].to_reader)

        def batches():
            for r in readers:
                yield from self._call(r.to_reader)

        return pa.RecordBatchReader.from_batches(info.schema, batches())

    def query(self, sql: str) -> pa.Table:
        return self._call(self.query_reader(sql).read_all)

    def to_pandas(self, sql: str):
        return self.query(sql).to_pandas()

    def to_polars(self, sql: str):
        import polars as pl

        return pl.from_arrow(self.query(sql))

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
        writer, reader = self._call(self._client.do_put, desc, schema, self._options(extra))
        try:
            for batch in split_batches(batches):
                writer.write_batch(batch)
                if progress:
                    progress(batch.num_rows)
            writer.done_writing()
            meta = reader.read()
        except (flight.FlightError, pa.ArrowException) as exc:
            try:
                writer.close()
            except (flight.FlightError, pa.ArrowException):
                pass
            raise translate(exc) from None
        self._call(writer.close)
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

    def create_table(self, name: str, schema: pa.Schema, config: dict | None = None,
                     if_not_exists: bool = False) -> dict:
        body = {"name": name, "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
                "config": config or {}, "if_not_exists": if_not_exists}
        return self.action(protocol.ACTION_CREATE_TABLE, body)

    def drop_table(self, name: str, if_exists: bool = False) -> bool:
        return self.action(protocol.ACTION_DROP_TABLE, {"name": name, "if_exists": if_exists})["dropped"]

    def flush(self, table: str | None = None) -> dict:
        return self.action(protocol.ACTION_FLUSH, {"table": table} if table else {})

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
