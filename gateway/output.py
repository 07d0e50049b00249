"""Query results as HTTP bodies: JSON (default), Arrow IPC stream, CSV or Parquet, streamed.

Every format is produced batch by batch from the Flight reader, so a large result never
sits whole in the gateway's memory. The JSON form is
``{ok, columns: [{name, type}], rows: [[...], ...], row_count, duration_ms}``; it is written
as it streams (``row_count`` and ``duration_ms`` come last). An error after the first byte
cannot change the status code any more: the JSON body then ends with an ``error`` member,
the binary formats end early (the client sees a truncated stream).

JSON values: timestamps and dates as ISO 8601 text, decimals as numbers (integers when
integral), binary as base64, durations as seconds, structs as objects, lists and maps as arrays.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from starlette.responses import Response

from clients import textform
from clients.errors import InvalidRequest, MinioDBError
from clients.flight import translate

log = logging.getLogger("miniodb.gateway")

FORMATS = {
    "json": "application/json",
    "arrow": "application/vnd.apache.arrow.stream",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
_ACCEPT = {
    "application/json": "json",
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.arrow.file": "arrow",
    "application/x-arrow": "arrow",
    "application/arrow": "arrow",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/parquet": "parquet",
    "application/x-parquet": "parquet",
}


def pick_format(query_format: str | None, accept: str | None) -> str:
    """``?format=`` wins; otherwise the first Accept media type we serve (by q order); JSON."""
    if query_format:
        fmt = query_format.strip().lower()
        if fmt not in FORMATS:
            raise InvalidRequest(f"unknown format {query_format!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if accept:
        ranked = []
        for pos, part in enumerate(accept.split(",")):
            media, *params = [p.strip() for p in part.split(";")]
            q = 1.0
            for p in params:
                if p.startswith("q="):
                    try:
                        q = float(p[2:])
                    except ValueError:
                        q = 0.0
            ranked.append((-q, pos, media.lower()))
        for negq, _, media in sorted(ranked):
            if negq < 0 and media in _ACCEPT:
                return _ACCEPT[media]
    return "json"


class _ChunkSink(io.RawIOBase):
    """A write-only file that hands out what was written since the last :meth:`take`."""

    def __init__(self):
        super().__init__()
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def limited(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch], limit: int | None
            ) -> Iterator[pa.RecordBatch]:
    """The batches, cut after ``limit`` rows (``None``: all)."""
    left = limit
    batches = rest if first is None else _chain(first, rest)
    for batch in batches:
        if left is not None:
            if left <= 0:
                return
            if batch.num_rows > left:
                batch = batch.slice(0, left)
            left -= batch.num_rows
        yield batch


def _chain(first, rest):
    yield first
    yield from rest


def reader_batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise translate(exc) from None
        yield batch


_json_default = textform.json_default  # gateway/app.py's JSON bodies too


class JSONResponse(Response):
    """Every JSON body of the gateway (orjson, with the same value rules as query results)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
_OPTS = textform.JSON_OPTIONS


def rows_json(batch: pa.RecordBatch) -> bytes:
    """``[..],[..]`` (rows as JSON arrays, comma separated, no brackets) of one batch."""
    if batch.num_rows == 0:
        return b""
    if batch.num_columns == 0:
        return b",".join([b"[]"] * batch.num_rows)
    rows = list(zip(*[col.to_pylist() for col in batch.columns], strict=True))
    return orjson.dumps(rows, default=_json_default, option=_OPTS)[1:-1]


def columns_json(schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def stream_json(schema: pa.Schema, batches: Iterator[pa.RecordBatch], started: float) -> Iterator[bytes]:
    head = orjson.dumps({"ok": True, "columns": columns_json(schema)})
    yield head[:-1] + b',"rows":['
    count = 0
    sep = b""
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            yield sep + rows_json(batch)
            sep = b","
            count += batch.num_rows
    except Exception as exc:  # noqa: BLE001 - the status line is gone: say it in the body
        err = _stream_error(exc)
        yield b'],"row_count":' + str(count).encode() + b',"error":' + orjson.dumps(err.to_json()) + b"}"
        return
    tail = {"row_count": count, "duration_ms": round((time.perf_counter() - started) * 1000, 3)}
    yield b"]," + orjson.dumps(tail)[1:]


def _stream_error(exc: BaseException) -> MinioDBError:
    err = translate(exc) if not isinstance(exc, MinioDBError) else exc
    if err.http_status >= 500:
        log.warning("query stream failed: %s", err.message)
    return err


def _writer_stream(open_writer: Callable[[_ChunkSink], object], write: Callable[[object, pa.RecordBatch], None],
                   batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _ChunkSink()
    writer = open_writer(sink)
    try:
        for batch in batches:
            write(writer, batch)
            data = sink.take()
            if data:
                yield data
    except Exception as exc:  # noqa: BLE001 - the status is sent: end the body early
        _stream_error(exc)
        raise
    writer.close()
    data = sink.take()
    if data:
        yield data


def stream_arrow(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    return _writer_stream(lambda s: pa.ipc.new_stream(s, schema), lambda w, b: w.write_batch(b), batches)


def stream_csv(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    return _writer_stream(lambda s: pacsv.CSVWriter(s, textform.csv_schema(schema)),
                          lambda w, b: w.write_batch(textform.csv_ready(b)), batches)


def stream_parquet(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    return _writer_stream(lambda s: pq.ParquetWriter(s, schema, compression="zstd"),
                          lambda w, b: w.write_batch(b), batches)


def stream(fmt: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], started: float) -> Iterator[bytes]:
    if fmt == "json":
        return stream_json(schema, batches, started)
    if fmt == "arrow":
        return stream_arrow(schema, batches)
    if fmt == "csv":
        return stream_csv(schema, batches)
    if fmt == "parquet":
        return stream_parquet(schema, batches)
    raise InvalidRequest(f"unknown format {fmt!r}")
