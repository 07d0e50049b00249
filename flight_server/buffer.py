"""Per-table in-memory buffers of WAL-committed rows, and the flush policy.

Rows enter a buffer only after their WAL segment is durable, and leave it only after the
Parquet file holding them is committed to the catalog. While a flush runs, its rows stay
visible (``flushing``), so a query never misses or double-counts a row: the swap from
"buffered" to "committed" happens under the table's commit lock together with the manifest
update (see :mod:`flight_server.persist`). The flush life cycle is four methods of
:class:`BufferManager` (take_for_flush, put_back, mark_committed, discard_dropped) that keep
the invariants under the manager's one lock; nothing outside this module edits a buffer.
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


@dataclass(frozen=True, eq=False)
class FlushBatch:
    """Rows taken out of a table buffer by :meth:`BufferManager.take_for_flush`. They stay
    visible to queries until the batch is settled: committed, put back or discarded."""

    buffer: TableBuffer
    entries: tuple[BufferEntry, ...]
    schema: pa.Schema

    @property
    def name(self) -> str:
        return self.buffer.name

    @property
    def table_id(self) -> str:
        return self.buffer.table_id

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.entries]

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.entries)


class TableBuffer:
    """The rows of one table incarnation: *pending* (appended, not yet taken by a flush) and
    *flushing* (taken by the one flush in progress). Changed only through
    :class:`BufferManager`, under its lock; the row and byte totals are kept as running sums,
    so the flush policy checked after every ingest is O(1)."""

    def __init__(self, name: str, table_id: str, schema: pa.Schema):
        self.name = name
        self.table_id = table_id
        self.schema = schema
        self.version = 0  # bumped on every change; keys the cached snapshot
        self._pending: list[BufferEntry] = []
        self._flushing: FlushBatch | None = None
        self._pending_rows = self._pending_bytes = 0
        self._flushing_rows = self._flushing_bytes = 0
        self._snapshot: tuple[int, pa.Table | None] | None = None

    def __repr__(self) -> str:
        return f"TableBuffer({self.name!r}, rows={self.rows}, flushing={self.flushing_rows})"

    # -- read (any thread; a consistent view needs the manager's lock) -------------------
    @property
    def entries(self) -> tuple[BufferEntry, ...]:
        """Pending entries, oldest first (a copy)."""
        return tuple(self._pending)

    @property
    def flushing(self) -> tuple[BufferEntry, ...]:
        """Entries of the flush in progress (a copy)."""
        return self._flushing.entries if self._flushing is not None else ()

    @property
    def rows(self) -> int:
        return self._pending_rows + self._flushing_rows

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    @property
    def flushing_rows(self) -> int:
        return self._flushing_rows

    @property
    def nbytes(self) -> int:
        return self._pending_bytes + self._flushing_bytes

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def seqs(self) -> list[int]:
        """WAL sequences of every row held (flushing and pending)."""
        return [e.seq for e in (*self.flushing, *self._pending)]

    def oldest(self) -> float | None:
        return self._pending[0].created_at if self._pending else None

    def visible(self) -> pa.Table | None:
        """All buffered rows (flushing ones included) with the current schema; cached."""
        snap = self._snapshot
        if snap is not None and snap[0] == self.version:
            return snap[1]
        parts = [conform(e.data, self.schema) for e in (*self.flushing, *self._pending)]
        table = pa.concat_tables(parts) if parts else None
        self._snapshot = (self.version, table)
        return table

    # -- changes (BufferManager only, under its lock) -------------------------------------
    def _append(self, entry: BufferEntry) -> None:
        self._pending.append(entry)
        self._pending_rows += entry.rows
        self._pending_bytes += entry.nbytes
        self.version += 1

    def _take(self) -> FlushBatch | None:
        if self._flushing is not None or not self._pending:
            return None
        batch = FlushBatch(self, tuple(self._pending), self.schema)
        self._flushing = batch
        self._flushing_rows, self._flushing_bytes = self._pending_rows, self._pending_bytes
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self.version += 1
        return batch

    def _settle_upto(self, batch: FlushBatch, seq: int) -> list[BufferEntry]:
        """End ``batch``: entries numbered ``seq`` or less leave, the others are pending again."""
        if self._flushing is not batch:
            return []
        gone = [e for e in batch.entries if e.seq <= seq]
        back = [e for e in batch.entries if e.seq > seq]
        self._pending[:0] = back
        self._pending_rows += sum(e.rows for e in back)
        self._pending_bytes += sum(e.nbytes for e in back)
        self._flushing = None
        self._flushing_rows = self._flushing_bytes = 0
        self.version += 1
        return gone

    def _settle(self, batch: FlushBatch, put_back: bool) -> bool:
        """End ``batch``: its rows leave the buffer, or go back in front of the pending ones."""
        if self._flushing is not batch:
            return False
        if put_back:
            self._pending[:0] = batch.entries
            self._pending_rows += self._flushing_rows
            self._pending_bytes += self._flushing_bytes
        self._flushing = None
        self._flushing_rows = self._flushing_bytes = 0
        self.version += 1
        return True


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
            buf._append(entry)
            self.changed.notify_all()
            return buf

    # -- the flush life cycle ----------------------------------------------------------
    # A flush takes the pending rows (they stay visible as "flushing"), writes and commits
    # them, then settles the batch exactly once: mark_committed under the table's commit
    # lock together with the manifest commit, put_back when anything failed, or
    # discard_dropped when the catalog confirmed the table is gone. Only those two ends
    # drop rows from memory; the WAL segments go with them (persist.py).
    def take_for_flush(self, name: str) -> FlushBatch | None:
        """The table's pending rows as a batch, or None (nothing pending, or a flush of the
        table is already in progress)."""
        with self._lock:
            buf = self._buffers.get(name)
            return buf._take() if buf is not None else None

    def put_back(self, batch: FlushBatch) -> None:
        """The flush failed: the rows are pending again, ahead of rows that arrived since."""
        with self._lock:
            batch.buffer._settle(batch, put_back=True)
            self.changed.notify_all()

    def mark_committed(self, batch: FlushBatch) -> None:
        """The rows are in a committed file: they leave the buffer. Call it under
        :meth:`commit_lock` together with the manifest commit."""
        with self._lock:
            batch.buffer._settle(batch, put_back=False)
            self.changed.notify_all()

    def settle_committed_elsewhere(self, batch: FlushBatch, seq: int) -> list[BufferEntry]:
        """The metadata store's watermark says this node's rows up to ``seq`` are in a committed
        file already (another node adopted them from the mirrored WAL): those leave the buffer,
        the rest are pending again. Returns the entries that left. Call it under
        :meth:`commit_lock`."""
        with self._lock:
            gone = batch.buffer._settle_upto(batch, seq)
            self.changed.notify_all()
            return gone

    def discard_dropped(self, batch: FlushBatch) -> None:
        """The catalog confirmed the table was dropped or replaced: the rows must never return."""
        with self._lock:
            batch.buffer._settle(batch, put_back=False)
            self.changed.notify_all()

    def remove(self, name: str) -> TableBuffer | None:
        with self._lock:
            self._limits.pop(name, None)
            buf = self._buffers.pop(name, None)
            self.changed.notify_all()
            return buf

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._buffers)

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
                if not buf.pending_rows:
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

    def streaming(self, name: str) -> bool:
        """A DoPut stream is writing into the table now."""
        with self._lock:
            return bool(self._streams.get(name))

    def wait_capacity(self, name: str, timeout: float) -> bool:
        with self._lock:
            return self.changed.wait_for(lambda: not self.over_capacity(name), timeout=timeout)
