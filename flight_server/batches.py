"""Exactly-once ingest: a client batch id (header ``x-miniodb-batch-id``, REST ``Idempotency-Key``)
is applied once, on this node and across the cluster, for ``ingest.dedup_window`` seconds.

Where an id lives:

* **In flight on this node**: :attr:`BatchLedger._inflight`. A duplicate that arrives while
  the original is being applied waits for it and answers the same row count; if the
  original fails, one waiter becomes the new owner and applies the batch itself.
* **In the metadata store** (SQLite embedded, Redis in server mode): ``claim_batch`` checks
  and claims the id in one atomic step before any byte is written. A claim is short-lived
  (``ingest.dedup_claim_ttl``) and renewed while the batch is applied, so an owner that dies
  leaves a claim that expires and a retry can proceed; another node finding a live claim
  polls (with backoff, at most ``ingest.dedup_wait`` seconds) and answers the outcome. A
  node restarting takes over the claims of its earlier incarnation at once.
  When the batch is acknowledged its row count is recorded for the window; the flush that
  commits its rows records it again, in the same atomic step as the files.
* **In the WAL**: the batch's segments carry the id and the last one a completion marker
  (see :mod:`flight_server.wal`); replay rebuilds the ids of unflushed batches and ignores a
  batch that never completed, so a retry applies it whole.
* **Recently finished ids** are also kept in memory (bounded) to answer without a round trip.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from clients.errors import InvalidRequest, MinioDBError, Unavailable

from .metadata.base import MetadataStore

log = logging.getLogger("miniodb.batches")

T = TypeVar("T")
MAX_REMEMBERED = 100_000  # finished ids kept in memory (older ones are asked of the store)
MAX_ID_LENGTH = 256
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")  # what a gRPC header or an HTTP header may hold


class _InFlight:
    """One batch being applied on this node; duplicates wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.rows: int | None = None  # None when the original failed

    def settle(self, rows: int | None) -> None:
        self.rows = rows
        self.done.set()


class BatchLedger:
    def __init__(
        self,
        metadata: MetadataStore,
        node_id: str,
        window: float = 86_400.0,
        claim_ttl: float = 10.0,
        wait: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.metadata = metadata
        self.metadata.batch_window = window
        self.node_id = node_id
        self.incarnation = uuid.uuid4().hex
        self.window = window
        self.claim_ttl = claim_ttl
        self.wait = wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._inflight: dict[str, _InFlight] = {}
        self._finished: OrderedDict[str, tuple[int, float]] = OrderedDict()  # id -> (rows, expires)
        self._claims: set[str] = set()  # ids whose store claim this node renews
        self._unrecorded: dict[str, int] = {}  # applied, but the store did not take the record yet
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- the one entry point -------------------------------------------------------------
    def apply(self, batch_id: str, fn: Callable[[], T], rows_of: Callable[[T], int],
              duplicate: Callable[[int], T]) -> T:
        """Run ``fn`` once for ``batch_id``; a duplicate gets ``duplicate(rows of the original)``."""
        if len(batch_id) > MAX_ID_LENGTH or not _PRINTABLE.match(batch_id):
            raise InvalidRequest(f"a batch id must be 1 to {MAX_ID_LENGTH} printable ASCII characters")
        deadline = self._clock() + self.wait
        while True:
            with self._lock:
                rows = self._remembered(batch_id)
                if rows is not None:
                    return duplicate(rows)
                other = self._inflight.get(batch_id)
                if other is None:
                    mine = self._inflight[batch_id] = _InFlight()
            if other is not None:
                if not other.done.wait(max(0.0, deadline - self._clock())):
                    raise Unavailable(f"batch {batch_id!r} is still being applied; retry later",
                                      detail={"batch_id": batch_id})
                if other.rows is not None:
                    return duplicate(other.rows)
                continue  # the original failed: try to become the owner
            outcome: int | None = None
            try:
                result, applied = self._own(batch_id, fn, rows_of, duplicate, deadline)
                outcome = applied
                return result
            finally:
                with self._lock:
                    self._inflight.pop(batch_id, None)
                mine.settle(outcome)

    def _own(self, batch_id: str, fn: Callable[[], T], rows_of: Callable[[T], int],
             duplicate: Callable[[int], T], deadline: float) -> tuple[T, int]:
        delay = 0.05
        while True:
            state, rows, owner = self.metadata.claim_batch(batch_id, self.node_id, self.incarnation, self.claim_ttl)
            if state == "done":
                self.remember(batch_id, rows)
                return duplicate(rows), rows
            if state == "claimed":
                break
            if self._clock() + delay > deadline:  # another node holds a live claim
                raise Unavailable(f"batch {batch_id!r} is being applied by node {owner!r}; retry later",
                                  detail={"batch_id": batch_id, "node": owner})
            self._sleep(delay)
            delay = min(delay * 2, 1.0)
        self._hold(batch_id)
        try:
            result = fn()
        except BaseException:
            self._drop_claim(batch_id, release=True)
            raise
        rows = rows_of(result)
        if self._record(batch_id, rows, "applied"):
            self._drop_claim(batch_id, release=False)
        # else: the rows are durable in the WAL: acknowledge, keep the claim alive and record
        # the id later (the renewer retries; the flush commit records it with the files)
        return result, rows

    def _record(self, batch_id: str, rows: int, what: str) -> bool:
        """Remember a finished batch here and in the store; False (kept as unrecorded, for the
        renewer to retry) when the store could not record it."""
        self.remember(batch_id, rows)
        try:
            self.metadata.finish_batch(batch_id, rows)
            return True
        except MinioDBError as exc:
            log.warning("batch %s %s but not yet recorded in the metadata store: %s", batch_id, what, exc)
            with self._lock:
                self._unrecorded[batch_id] = rows
            return False

    # -- memory --------------------------------------------------------------------------
    def _remembered(self, batch_id: str) -> int | None:
        hit = self._finished.get(batch_id)
        if hit is None:
            return None
        if hit[1] <= self._clock():
            del self._finished[batch_id]
            return None
        return hit[0]

    def remember(self, batch_id: str, rows: int) -> None:
        with self._lock:
            self._finished[batch_id] = (rows, self._clock() + self.window)
            self._finished.move_to_end(batch_id)
            while len(self._finished) > MAX_REMEMBERED:
                self._finished.popitem(last=False)

    def replayed(self, batches: Mapping[str, int]) -> None:
        """Complete batches found in the WAL at start: remembered here and in the store."""
        for batch_id, rows in batches.items():
            if not self._record(batch_id, rows, "replayed"):
                with self._lock:
                    self._claims.add(batch_id)
                self._start_renewer()

    # -- claims --------------------------------------------------------------------------
    def _hold(self, batch_id: str) -> None:
        with self._lock:
            self._claims.add(batch_id)
        self._start_renewer()

    def _drop_claim(self, batch_id: str, release: bool) -> None:
        with self._lock:
            self._claims.discard(batch_id)
        if release:
            try:
                self.metadata.release_batch(batch_id, self.node_id, self.incarnation)
            except MinioDBError as exc:  # the claim expires on its own
                log.warning("could not release the claim of batch %s: %s", batch_id, exc)

    def _start_renewer(self) -> None:
        with self._lock:
            if self._renewer is not None:
                return
            self._renewer = threading.Thread(target=self._renew_loop, name="miniodb-batch-claims", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(max(0.05, self.claim_ttl / 3)):
            self.renew_once()

    def renew_once(self) -> None:
        """Extend every claim this node holds; retry the records the store did not take."""
        with self._lock:
            claims = sorted(self._claims)
            unrecorded = dict(self._unrecorded)
        for batch_id in claims:
            try:
                if batch_id in unrecorded:
                    self.metadata.finish_batch(batch_id, unrecorded[batch_id])
                    with self._lock:
                        self._unrecorded.pop(batch_id, None)
                        self._claims.discard(batch_id)
                elif not self.metadata.renew_batch(batch_id, self.node_id, self.incarnation, self.claim_ttl):
                    log.warning("the claim of batch %s was lost while applying it", batch_id)
            except MinioDBError as exc:
                log.warning("could not renew the claim of batch %s: %s", batch_id, exc)

    def close(self) -> None:
        self._stop.set()


def batch_rows(entries: Iterable) -> dict[str, int]:
    """Batch id -> rows of the buffer entries a flush commits (all of a batch's entries are
    flushed together: they join the buffer in one step)."""
    out: dict[str, int] = {}
    for e in entries:
        if e.batch_id:
            out[e.batch_id] = out.get(e.batch_id, 0) + e.rows
    return out
