"""Per-table in-memory buffers of WAL-committed rows, and the flush policy.

Rows enter a buffer only after their WAL segment is durable, and leave it only after the
Parquet file holding them is committed to the catalog. While a flush runs, its rows stay
visible (``flushing``), so a query never misses or double-counts a row: the swap from
"buffered" to "committed" happens under the table lock together with the manifest update
(see :mod:`flight_server.persist`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from clients.errors import InvalidRequest

from .schema import conform, evolve


@dataclass(frozen=True)
class BufferEntry:
    seq: int  # WAL segment sequence
    data: pa.Table
    created_at: float
    batch_id: str = ""
    rows: int = field(init=False)
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        # computed once: Table.nbytes walks every buffer, and the flush policy sums these often
        object.__setattr__(self, "rows", self.data.num_rows)
        object.__setattr__(self, "nbytes", self.data.nbytes)


def _totals(entries: list[BufferEntry], cached: tuple | None) -> tuple:
    """``(entries, counted, rows, bytes)``: the sums of ``entries``, carried on from
    ``cached`` when it is the same list (entry lists only grow by ``append`` or are
    replaced whole), so the flush policy checked after every ingest stays O(1)."""
    n = len(entries)
    if cached is not None and cached[0] is entries and cached[1] <= n:
        _, start, rows, nbytes = cached
    else:
        start, rows, nbytes = 0, 0, 0
    for i in range(start, n):
        e = entries[i]
        rows += e.rows
        nbytes += e.nbytes
    return entries, n, rows, nbytes


@dataclass
class TableBuffer:
    name: str
    table_id: str
    schema: pa.Schema
    entries: list[BufferEntry] = field(default_factory=list)
    flushing: list[BufferEntry] = field(default_factory=list)
    version: int = 0  # bumped on every change; keys the cached snapshot
    _snapshot: tuple[int, pa.Table | None] | None = None
    _sums: dict[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    def _sum(self, which: str) -> tuple:
        entries = self.entries if which == "entries" else self.flushing
        sums = _totals(entries, self._sums.get(which))
        self._sums[which] = sums
        return sums

    def __setattr__(self, key, value) -> None:
        if key in ("entries", "flushing") and "_sums" in self.__dict__:
            self._sums.pop(key, None)  # a new list: count it afresh (and let the old one go)
        object.__setattr__(self, key, value)

    @property
    def rows(self) -> int:
        return self._sum("entries")[2] + self._sum("flushing")[2]

    @property
    def pending_rows(self) -> int:
        return self._sum("entries")[2]

    @property
    def nbytes(self) -> int:
        return self._sum("entries")[3] + self._sum("flushing")[3]

    @property
    def pending_bytes(self) -> int:
        return self._sum("entries")[3]

    def oldest(self) -> float | None:
        return self.entries[0].created_at if self.entries else None

    def visible(self) -> pa.Table | None:
        """All buffered rows (flushing ones included) with the current schema; cached."""
        snap = self._snapshot
        if snap is not None and snap[0] == self.version:
            return snap[1]
        parts = [conform(e.data, self.schema) for e in (*self.flushing, *self.entries)]
        table = pa.concat_tables(parts) if parts else None
        self._snapshot = (self.version, table)
        return table


def _widest(current: pa.Schema, incoming: pa.Schema) -> pa.Schema:
    """The buffer's schema after an append with ``incoming``. A DoPut that resolved the table
    before a concurrent writer evolved it appends with the older, narrower schema: the buffer
    keeps the wider one, or the other writer's new columns would be cut off its buffered rows
    (queries and the flush conform every entry to the buffer's schema)."""
    try:
        return evolve(current, incoming)
    except InvalidRequest:
        return incoming


class BufferManager:
    """All table buffers of this node, with backpressure and the size/age flush policy."""

    def __init__(
        self,
        default_rows: int,
        default_interval: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.default_rows = default_rows
        self.default_interval = default_interval
        self.max_bytes = max_bytes
        self._clock = clock
        self._buffers: dict[str, TableBuffer] = {}
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)  # notified on append and after flushes
        self._limits: dict[str, tuple[int, float]] = {}
        self._commit_locks: dict[str, threading.Lock] = {}
        self._streams: dict[str, int] = {}  # table -> DoPut streams writing into it now

    def commit_lock(self, name: str) -> threading.Lock:
        """Held while a flush swaps rows from the buffer to the manifest, and while a query
        takes its (files, buffer) snapshot of the table: no row is ever seen twice or missed."""
        with self._lock:
            return self._commit_locks.setdefault(name, threading.Lock())

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def now(self) -> float:
        return self._clock()

    def set_limits(self, name: str, rows: int | None, interval: float | None) -> None:
        with self._lock:
            self._limits[name] = (rows or self.default_rows, interval or self.default_interval)

    def limits(self, name: str) -> tuple[int, float]:
        return self._limits.get(name, (self.default_rows, self.default_interval))

    def get(self, name: str) -> TableBuffer | None:
        with self._lock:
            return self._buffers.get(name)

    def ensure(self, name: str, table_id: str, schema: pa.Schema) -> TableBuffer:
        """The buffer of the current incarnation; a stale one (dropped table) is discarded."""
        with self._lock:
            buf = self._buffers.get(name)
            if buf is None or buf.table_id != table_id:
                buf = TableBuffer(name, table_id, schema)
                self._buffers[name] = buf
            elif not buf.schema.equals(schema):
                wider = _widest(buf.schema, schema)
                if wider is not buf.schema:
                    buf.schema = wider
                    buf.version += 1
            return buf

    def append(self, name: str, table_id: str, schema: pa.Schema, entry: BufferEntry) -> TableBuffer:
        with self._lock:
            buf = self.ensure(name, table_id, schema)
            buf.entries.append(entry)
            buf.version += 1
            self.changed.notify_all()
            return buf

    def remove(self, name: str) -> TableBuffer | None:
        with self._lock:
            self._limits.pop(name, None)
            buf = self._buffers.pop(name, None)
            self.changed.notify_all()
            return buf

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._buffers)

    def total_rows(self) -> int:
        with self._lock:
            return sum(b.rows for b in self._buffers.values())

    def total_bytes(self) -> int:
        with self._lock:
            return sum(b.nbytes for b in self._buffers.values())

    def due(self) -> list[str]:
        """Tables whose pending rows reached their size limit or age limit.

        While a DoPut stream is writing into a table, its size and age limits wait for the
        stream to end (a burst is acknowledged at WAL speed, not at Parquet-encoding speed);
        the byte limit does not wait, so memory stays bounded during long streams.
        """
        now = self._clock()
        out = []
        with self._lock:
            for name, buf in self._buffers.items():
                if not buf.entries:
                    continue
                if buf.pending_bytes >= self.max_bytes:
                    out.append(name)
                    continue
                if self._streams.get(name):
                    continue
                rows, interval = self.limits(name)
                oldest = buf.oldest()
                if buf.pending_rows >= rows or (oldest is not None and now - oldest >= interval):
                    out.append(name)
        return out

    def over_capacity(self, name: str) -> bool:
        """Backpressure: too much unflushed data in one table (the flusher is behind)."""
        with self._lock:
            buf = self._buffers.get(name)
            return buf is not None and buf.nbytes >= 2 * self.max_bytes

    # -- streams -----------------------------------------------------------------------
    def stream_started(self, name: str) -> None:
        with self._lock:
            self._streams[name] = self._streams.get(name, 0) + 1

    def stream_finished(self, name: str) -> None:
        with self._lock:
            n = self._streams.get(name, 0) - 1
            if n > 0:
                self._streams[name] = n
            else:
                self._streams.pop(name, None)
            self.changed.notify_all()

    def wait_capacity(self, name: str, timeout: float) -> bool:
        with self._lock:
            return self.changed.wait_for(lambda: not self.over_capacity(name), timeout=timeout)
