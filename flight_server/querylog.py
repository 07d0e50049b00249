"""Recent queries of this node (a bounded ring) and the statistics every query reports.

Each statement executed for a client gets a :class:`QueryRecord`: who ran it (the API key's
principal, never the key), the SQL, the kind, and its statistics — files scanned and pruned,
bytes read from the object store, result cache hit, time to execute, and, once the result
has been streamed, rows and Arrow bytes returned and the total duration. ``system.queries``
shows the ring (:mod:`flight_server.query.system`).

Where the statistics travel (Flight SQL; the REST gateway copies them as ``X-MinIODB-*``):

* GetFlightInfo (the statement executes there) answers with response headers
  ``x-miniodb-query-id``, ``-cache-hit``, ``-files-scanned``, ``-files-pruned``,
  ``-bytes-read`` and ``-duration-ms`` (execution); a cache hit also knows ``-rows`` and
  ``-bytes`` up front.
* DoGet ends with gRPC *trailers* carrying all of them with the final ``-rows``, ``-bytes``
  and ``-duration-ms`` (execution plus streaming).

Whoever reads a result reports its end (``QueryResult.complete``: rows, bytes), and the record
finishes there. The Flight server knows a small result's size once it has read it whole in
GetFlightInfo (no Python step per batch afterwards), and counts a streamed one in the step it
takes per batch anyway (:mod:`flight_server.flightsql.streaming`). In-process consumers
(INSERT ... SELECT) read ``QueryResult.reader``: :func:`track` counts as the batches pass.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

log = logging.getLogger("miniodb.querylog")

HEADER_PREFIX = "x-miniodb-"
DEFAULT_CAPACITY = 1000
RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"


@dataclass(eq=False)
class QueryRecord:
    query_id: str
    node_id: str
    principal: str
    sql: str
    kind: str
    started_at: float  # epoch seconds
    params: int = 0
    status: str = RUNNING
    cache_hit: bool = False
    files_total: int = 0
    files_scanned: int = 0
    files_pruned: int = 0
    bytes_read: int = 0
    buffer_rows: int = 0
    execute_ms: float | None = None
    duration_ms: float | None = None
    rows: int | None = None
    bytes: int | None = None
    error_code: str = ""
    nodes: tuple[str, ...] = ()  # a distributed query: the nodes that took part
    missing_nodes: tuple[str, ...] = ()  # ... and those whose buffered rows are missing from the answer
    missing_rows: int | None = 0  # None: unknown
    _t0: float = field(default=0.0, repr=False)
    _hooks: list[Callable[[QueryRecord], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- lifecycle -----------------------------------------------------------------------
    def executed(self, stats: dict, cache_hit: bool, rows: int | None = None, nbytes: int | None = None) -> None:
        self.cache_hit = cache_hit
        self.files_total = int(stats.get("files_total", 0) or 0)
        self.files_scanned = int(stats.get("files_scanned", 0) or 0)
        self.files_pruned = int(stats.get("files_pruned", 0) or 0)
        self.bytes_read = int(stats.get("bytes_fetched", 0) or 0)
        self.buffer_rows = int(stats.get("buffer_rows", 0) or 0)
        self.nodes = tuple(stats.get("nodes") or ())
        self.missing_nodes = tuple(stats.get("missing_nodes") or ())
        missing = stats.get("missing_rows", 0)
        self.missing_rows = int(missing) if missing is not None else None
        self.execute_ms = (time.perf_counter() - self._t0) * 1000
        if rows is not None:
            self.rows, self.bytes = rows, nbytes

    def on_end(self, hook: Callable[[QueryRecord], None]) -> None:
        """Call ``hook(record)`` when the result has been streamed to its end."""
        with self._lock:
            done = self.status == FINISHED
            if not done:
                self._hooks.append(hook)
        if done:
            _run(hook, self)

    def finish(self, rows: int, nbytes: int) -> None:
        with self._lock:
            if self.status != RUNNING:
                return
            self.rows, self.bytes = rows, nbytes
            self.duration_ms = (time.perf_counter() - self._t0) * 1000
            self.status = FINISHED
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            _run(hook, self)

    def fail(self, code: str) -> None:
        with self._lock:
            if self.status != RUNNING:
                return
            # interrupted by a cancel (CancelFlightInfo, cancel_query): cancelled, not failed
            self.status, self.error_code = (CANCELLED if code == "cancelled" else FAILED), code
            self.duration_ms = (time.perf_counter() - self._t0) * 1000
            self._hooks = []

    def closed(self) -> None:
        """The result was released before its end (cancelled, or the client stopped reading)."""
        with self._lock:
            if self.status != RUNNING:
                return
            self.status = CANCELLED
            self.duration_ms = (time.perf_counter() - self._t0) * 1000
            self._hooks = []

    # -- wire form -----------------------------------------------------------------------
    def header_items(self) -> list[tuple[str, str]]:
        """Statistics as ``x-miniodb-*`` headers (after execution; rows once known)."""
        if self.execute_ms is None and self.status == RUNNING:
            return []
        p = HEADER_PREFIX
        out = [(p + "query-id", self.query_id), (p + "cache-hit", "true" if self.cache_hit else "false"),
               (p + "files-scanned", str(self.files_scanned)), (p + "files-pruned", str(self.files_pruned)),
               (p + "bytes-read", str(self.bytes_read))]
        if self.nodes:
            out.append((p + "nodes", ",".join(self.nodes)))
        if self.missing_nodes:  # an incomplete answer is never silent
            out.append((p + "missing-nodes", ",".join(self.missing_nodes)))
            if self.missing_rows is not None:  # unknown when a node could not even be asked
                out.append((p + "missing-rows", str(self.missing_rows)))
        if self.rows is not None:
            out += [(p + "rows", str(self.rows)), (p + "bytes", str(self.bytes))]
        total = self.duration_ms if self.duration_ms is not None else self.execute_ms
        if total is not None:
            out.append((p + "duration-ms", f"{total:.3f}"))
        if self.error_code:
            out.append((p + "error-code", self.error_code))
        return out


def _run(hook: Callable[[QueryRecord], None], record: QueryRecord) -> None:
    try:
        hook(record)
    except Exception:  # noqa: BLE001 - a statistics hook never breaks a query
        log.exception("query end hook failed")


class QueryLog:
    """The bounded ring of recent queries (oldest dropped first)."""

    def __init__(self, node_id: str, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.time):
        self.node_id = node_id
        self.capacity = capacity
        self._clock = clock
        self._ring: deque[QueryRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def start(self, sql: str, kind: str, principal: str = "", params: int = 0) -> QueryRecord:
        rec = QueryRecord(os.urandom(8).hex(), self.node_id, principal, sql, kind, self._clock(), params=params,
                          _t0=time.perf_counter())
        with self._lock:
            self._ring.append(rec)
        return rec

    def records(self) -> list[QueryRecord]:
        with self._lock:
            return list(self._ring)

    def find(self, query_id: str) -> QueryRecord | None:
        with self._lock:
            return next((r for r in reversed(self._ring) if r.query_id == query_id), None)


def track(reader: pa.RecordBatchReader, record: QueryRecord,
          collect: Callable[[list[pa.RecordBatch]], None] | None = None,
          collect_limit: int = 0, code_of: Callable[[BaseException], str] | None = None) -> pa.RecordBatchReader:
    """``reader`` with rows and bytes counted; at its end the record finishes.

    With ``collect``, the batches (references, no copies) are also kept while their total
    stays under ``collect_limit`` bytes and handed to ``collect`` at the end (the result
    cache fill); a larger result is simply not kept.
    """
    schema = reader.schema

    def batches() -> Iterator[pa.RecordBatch]:
        rows = nbytes = 0
        kept: list[pa.RecordBatch] | None = [] if collect is not None else None
        try:
            for batch in reader:
                rows += batch.num_rows
                size = batch.nbytes
                nbytes += size
                if kept is not None:
                    if nbytes <= collect_limit:
                        kept.append(batch)
                    else:
                        kept = None
                yield batch
        except GeneratorExit:
            raise
        except BaseException as exc:
            record.fail(code_of(exc) if code_of is not None else getattr(exc, "code", None) or "internal")
            raise
        if kept is not None and collect is not None:
            try:
                collect(kept)
            except Exception:  # noqa: BLE001 - the cache is an optimisation
                log.exception("result cache fill failed")
        record.finish(rows, nbytes)

    return pa.RecordBatchReader.from_batches(schema, batches())


def add_headers(context: Any, result: Any) -> None:
    """Send ``result``'s statistics so far as response headers of the call (GetFlightInfo)."""
    record = getattr(result, "record", None)
    if record is None or context is None:
        return
    for k, v in record.header_items():
        context.add_header(k, v)


def add_trailers(context: Any, result: Any) -> None:
    """At the end of ``result``'s stream, send its statistics as gRPC trailers of the call."""
    record = getattr(result, "record", None)
    if record is None or context is None:
        return

    def send(rec: QueryRecord) -> None:
        for k, v in rec.header_items():
            context.add_trailer(k, v)

    record.on_end(send)
