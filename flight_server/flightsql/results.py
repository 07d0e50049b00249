"""Results executed in GetFlightInfo and waiting for their DoGet: :class:`Execution` (one
statement's result, read ahead) and :class:`PendingResults` (the registry: time limit,
streaming results that CancelFlightInfo can interrupt, the outcome of recent tickets).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from clients.protocol import flight_pb2

from .errors import stream_error

PREFETCH_BYTES = 1024 * 1024  # results up to this size are read whole in GetFlightInfo


@dataclass
class Execution:
    """A query executed for a ticket: the first result, and parameter rows still to run.

    :meth:`prefetch` reads the head of the result in GetFlightInfo: a result that ends within
    the limit (the usual small query) is kept as a table, its end is reported at once (the
    query log knows its rows; a cacheable result fills the cache), its cursor goes back to the
    pool, the FlightInfo reports its rows and bytes, and DoGet streams the table from C++ with
    no Python step at all. A longer result keeps the batches read and streams on from there
    (:mod:`.streaming`). A result in memory already (a cache hit) is taken as it is.
    """

    sql: str
    first: Any  # query.engine.QueryResult
    rest: list[list] = field(default_factory=list)
    head: list[pa.RecordBatch] = field(default_factory=list)
    table: pa.Table | None = None  # the whole result, when prefetch reached its end
    nbytes: int = -1  # its Arrow bytes (counted once, by prefetch)

    def prefetch(self, limit_bytes: int) -> None:
        first = self.first
        if first.table is not None:
            self._whole(first.table, first.table.nbytes, None)
            return
        reader = first.source
        size = 0
        try:
            while size <= limit_bytes:  # a few batches at most: small results are one or two
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    head, self.head = self.head, []
                    self._whole(pa.Table.from_batches(head, schema=reader.schema), size, head)
                    return
                self.head.append(batch)
                size += batch.get_total_buffer_size()  # an O(buffers) sum; .nbytes walks the slices
        except BaseException as exc:
            self.head = []
            first.failed(exc)
            first.close()
            if isinstance(exc, Exception):
                raise stream_error(exc) from None
            raise

    def _whole(self, table: pa.Table, nbytes: int, batches: list[pa.RecordBatch] | None) -> None:
        self.table, self.nbytes = table, nbytes
        self.first.complete(table.num_rows, nbytes, batches)
        self.first.close()

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
        # the outcome of recent handles in two generations (the older one is dropped whole when
        # the newer one is full): no per-call eviction, at most ``remember`` handles kept
        self._outcome: dict[str, str] = {}
        self._older: dict[str, str] = {}
        self._remember = max(2, remember)
        self._lock = threading.Lock()
        self._next_expiry = 0.0  # put() sweeps expired results at most about once a second

    def put(self, result: Any) -> str:
        handle = os.urandom(16).hex()
        now = self._clock()
        with self._lock:
            self._items[handle] = (now + self.ttl, result)
            sweep = now >= self._next_expiry
        if sweep:
            self._next_expiry = now + min(1.0, self.ttl)
            self.expire()
        return handle

    def take(self, handle: str) -> Any | None:
        with self._lock:
            item = self._items.pop(handle, None)
        return item[1] if item else None

    def claim(self, handle: str) -> tuple[str | None, Any | None]:
        """(outcome so far, the waiting result or None) of ``handle``, in one step (DoGet)."""
        with self._lock:
            outcome = self._outcome_locked(handle)
            item = self._items.pop(handle, None) if outcome != self.CANCELLED else None
        return outcome, item[1] if item else None

    def outcome(self, handle: str) -> str | None:
        with self._lock:
            return self._outcome_locked(handle)

    def _outcome_locked(self, handle: str) -> str | None:
        found = self._outcome.get(handle)
        return found if found is not None else self._older.get(handle)

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
            before = self._outcome_locked(handle)
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

    def cancel_query(self, query_id: str) -> bool:
        """Cancel the pending or streaming query whose ``system.queries`` id is ``query_id``;
        False if none is (it finished, or it still executes in GetFlightInfo)."""
        with self._lock:
            handles = [h for h, (_, ex) in self._items.items() if _query_id(ex) == query_id]
            handles += [h for h, r in self._running.items() if _query_id(r) == query_id]
        return any([self.cancel(h) == flight_pb2.CANCEL_STATUS_CANCELLED for h in handles])

    def _remember_locked(self, handle: str, outcome: str, keep: bool) -> None:
        if keep and self._outcome_locked(handle) == self.CANCELLED:
            return
        self._outcome[handle] = outcome
        if len(self._outcome) >= self._remember // 2:
            self._older, self._outcome = self._outcome, {}

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


def _query_id(result: Any) -> str | None:
    """The query log id of a pending Execution or a streaming QueryResult."""
    result = getattr(result, "first", result)
    return getattr(getattr(result, "record", None), "query_id", None)
