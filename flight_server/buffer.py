"""Per-table in-memory buffers of WAL-committed rows, and the flush policy.

Rows enter a buffer only after their WAL segment is durable, and leave it only after the
Parquet file holding them is committed to the catalog. While a flush runs, its rows stay
visible (``flushing``), so a query never misses or double-counts a row: the swap from
"buffered" to "committed" happens under the table's commit lock together with the manifest
update (see :mod:`flight_server.persist`). The flush life cycle is four methods of
:class:`BufferManager` (take_for_flush, put_back, mark_committed, discard_dropped) that keep
the invariants under the manager's one lock; nothing outside this module edits a buffer.

Spilling: every buffered row is durable in its own WAL segment already, so memory is the only
reason to make a writer wait. When a table's in-memory bytes reach the capacity bound
(``2 x max_bytes``), :meth:`BufferManager.make_room` replaces the data of its oldest pending
entries by a zero-copy memory-mapped read of their segments, up to ``max_spill_bytes`` spilled
in all (0: writers wait for the flusher). A spilled entry reads like any other (``entry.data``);
the heap accounting (``nbytes``, ``total_bytes``, the capacity bound) leaves it out, and its
segment is unlinked, never recycled, once persisted (``mapped`` in ``WriteAheadLog.remove``):
an unlinked file stays valid under a mapping a query may still hold. A flush takes a prefix of
about ``max_bytes`` of the pending entries, so it touches at most that much mapped data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pyarrow as pa

from .schema import conform, widest


@dataclass(frozen=True)
class BufferEntry:
    seq: int  # WAL segment sequence
    data: pa.Table
    created_at: float
    batch_id: str = ""
    spilled: bool = False  # data is a memory-mapped read of the entry's WAL segment
    rows: int = field(init=False)
    nbytes: int = field(init=False)  # the data's size, spilled or not

    def __post_init__(self) -> None:
        # computed once: Table.nbytes walks every buffer, and the flush policy sums these often
        object.__setattr__(self, "rows", self.data.num_rows)
        object.__setattr__(self, "nbytes", self.data.nbytes)


def _sums(entries) -> tuple[int, int, int]:
    """(rows, heap bytes, spilled bytes) of ``entries``."""
    spilled = sum(e.nbytes for e in entries if e.spilled)
    return sum(e.rows for e in entries), sum(e.nbytes for e in entries) - spilled, spilled


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

    @property
    def spilled_seqs(self) -> list[int]:  # unlink their segments, never recycle them
        return [e.seq for e in self.entries if e.spilled]


class TableBuffer:
    """The rows of one table incarnation: *pending* (appended, not yet taken by a flush) and
    *flushing* (taken by the one flush in progress). Changed only through
    :class:`BufferManager`, under its lock; the row and byte totals are kept as running sums
    (heap and spilled bytes apart), so the flush policy checked after every ingest is O(1)."""

    def __init__(self, name: str, table_id: str, schema: pa.Schema):
        self.name = name
        self.table_id = table_id
        self.schema = schema
        self.version = 0  # bumped on every change; keys the cached snapshot
        self._pending: list[BufferEntry] = []
        self._flushing: FlushBatch | None = None
        self._pending_rows = self._pending_bytes = self._pending_spilled = 0
        self._flushing_rows = self._flushing_bytes = self._flushing_spilled = 0
        self._snapshot: tuple[int, pa.Table | None] | None = None
        self._unspillable: set[int] = set()  # seqs whose segment did not map to the same rows

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
        """Bytes held in memory (spilled entries are not counted)."""
        return self._pending_bytes + self._flushing_bytes

    @property
    def spilled_bytes(self) -> int:
        """Bytes of spilled entries (memory-mapped WAL segments)."""
        return self._pending_spilled + self._flushing_spilled

    @property
    def pending_bytes(self) -> int:
        """Data bytes of the pending rows, spilled or not (the flush policy's measure)."""
        return self._pending_bytes + self._pending_spilled

    def seqs(self) -> list[int]:
        """WAL sequences of every row held (flushing and pending)."""
        return [e.seq for e in (*self.flushing, *self._pending)]

    def spilled_seqs(self) -> list[int]:
        """WAL sequences of the spilled entries (flushing and pending)."""
        return [e.seq for e in (*self.flushing, *self._pending) if e.spilled]

    def last_seq(self) -> int | None:
        """The newest entry's WAL sequence (pending, else flushing)."""
        newest = self._pending or self.flushing
        return newest[-1].seq if newest else None

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
    def _changed(self) -> None:
        self.version += 1
        self._snapshot = None  # do not keep rows (or mapped segments) that left alive

    def _add_pending(self, entries, front: bool = False) -> None:
        rows, heap, spilled = _sums(entries)
        if front:
            self._pending[:0] = entries
        else:
            self._pending.extend(entries)
        self._pending_rows += rows
        self._pending_bytes += heap
        self._pending_spilled += spilled

    def _append(self, entry: BufferEntry) -> None:
        self._add_pending([entry])
        self._changed()

    def _take(self, max_bytes: int) -> FlushBatch | None:
        """The oldest pending entries, at most ``max_bytes`` of data (at least one entry)."""
        if self._flushing is not None or not self._pending:
            return None
        n, size = 1, self._pending[0].nbytes
        while n < len(self._pending) and size + self._pending[n].nbytes <= max_bytes:
            size += self._pending[n].nbytes
            n += 1
        taken, rest = self._pending[:n], self._pending[n:]
        batch = FlushBatch(self, tuple(taken), self.schema)
        self._flushing = batch
        self._flushing_rows, self._flushing_bytes, self._flushing_spilled = _sums(taken)
        self._pending = rest
        self._pending_rows -= self._flushing_rows
        self._pending_bytes -= self._flushing_bytes
        self._pending_spilled -= self._flushing_spilled
        self._changed()
        return batch

    def _end_flush(self) -> None:
        self._flushing = None
        self._flushing_rows = self._flushing_bytes = self._flushing_spilled = 0
        self._changed()

    def _settle_upto(self, batch: FlushBatch, seq: int) -> list[BufferEntry]:
        """End ``batch``: entries numbered ``seq`` or less leave, the others are pending again."""
        if self._flushing is not batch:
            return []
        gone = [e for e in batch.entries if e.seq <= seq]
        self._add_pending([e for e in batch.entries if e.seq > seq], front=True)
        self._end_flush()
        return gone

    def _settle(self, batch: FlushBatch, put_back: bool) -> bool:
        """End ``batch``: its rows leave the buffer, or go back in front of the pending ones."""
        if self._flushing is not batch:
            return False
        if put_back:
            self._add_pending(batch.entries, front=True)
        self._end_flush()
        return True

    def _spill_candidate(self) -> BufferEntry | None:
        """The oldest pending entry still in memory that may be spilled."""
        for e in self._pending:
            if not e.spilled and e.seq not in self._unspillable:
                return e
        return None

    def _spill(self, entry: BufferEntry, mapped: pa.Table | None) -> bool:
        """Replace pending ``entry`` by its spilled twin reading ``mapped``; False (and the
        entry stays in memory for good) when the mapping does not hold the same rows."""
        try:
            i = self._pending.index(entry)
        except ValueError:
            return False  # taken by a flush (or gone) meanwhile
        if mapped is None or mapped.num_rows != entry.rows or not mapped.schema.equals(
                entry.data.schema, check_metadata=True):
            self._unspillable.add(entry.seq)
            return False
        twin = replace(entry, data=mapped, spilled=True)
        self._pending[i] = twin
        self._pending_bytes -= entry.nbytes
        self._pending_spilled += twin.nbytes
        self._changed()
        return True


class BufferManager:
    """All table buffers of this node, with backpressure, spilling and the size/age flush policy.

    ``max_bytes``: in-memory bytes per table before a flush is due (twice that is the capacity
    bound of :meth:`over_capacity`, and the most one flush takes is about that much);
    ``max_spill_bytes``: spilled bytes allowed in all tables (0: no spilling);
    ``spill_source``: a WAL segment's rows, memory-mapped, by sequence (raises ``OSError`` or
    ``pa.ArrowInvalid`` when it cannot).
    """

    def __init__(
        self,
        default_rows: int,
        default_interval: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        max_spill_bytes: int = 0,
        spill_source: Callable[[int], pa.Table] | None = None,
    ):
        self.default_rows = default_rows
        self.default_interval = default_interval
        self.max_bytes = max_bytes
        self.max_spill_bytes = max_spill_bytes if spill_source is not None else 0
        self._spill_source = spill_source
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
                wider = widest(buf.schema, schema)
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
        """The table's oldest pending rows as a batch of about ``max_bytes`` at most (at least
        one entry; entries are in WAL sequence order, so the batch is a prefix: its highest
        sequence covers exactly its entries), or None (nothing pending, or a flush of the table
        is already in progress)."""
        with self._lock:
            buf = self._buffers.get(name)
            return buf._take(self.max_bytes) if buf is not None else None

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
        """Bytes buffered in memory (spilled entries are not counted)."""
        with self._lock:
            return sum(b.nbytes for b in self._buffers.values())

    def spilled_bytes(self) -> int:
        """Bytes of buffered rows read from memory-mapped WAL segments."""
        with self._lock:
            return sum(b.spilled_bytes for b in self._buffers.values())

    def last_seq(self, name: str) -> int | None:
        """The WAL sequence of the table's newest buffered row (None: nothing buffered)."""
        with self._lock:
            buf = self._buffers.get(name)
            return buf.last_seq() if buf is not None else None

    def due(self) -> list[str]:
        """Tables whose pending rows reached their size limit or age limit.

        While a DoPut stream is writing into a table, its size and age limits wait for the
        stream to end (a burst is acknowledged at WAL speed, not at Parquet-encoding speed).
        So does the byte limit while spilling keeps memory bounded instead: the rows spill
        (the table is under the capacity bound) and under half of ``max_spill_bytes`` are
        spilled in all; past that a long stream is flushed as it goes.
        """
        now = self._clock()
        out = []
        with self._lock:
            spill_room = self.max_spill_bytes > 0 and 2 * self.spilled_bytes() < self.max_spill_bytes
            for name, buf in self._buffers.items():
                if not buf.pending_rows:
                    continue
                streaming = bool(self._streams.get(name))
                if buf.pending_bytes >= self.max_bytes and not (
                        streaming and spill_room and buf.nbytes < 2 * self.max_bytes):
                    out.append(name)
                    continue
                if streaming:
                    continue
                rows, interval = self.limits(name)
                oldest = buf.oldest()
                if buf.pending_rows >= rows or (oldest is not None and now - oldest >= interval):
                    out.append(name)
        return out

    def over_capacity(self, name: str) -> bool:
        """Too much unflushed data of one table in memory (the flusher is behind)."""
        with self._lock:
            buf = self._buffers.get(name)
            return buf is not None and buf.nbytes >= 2 * self.max_bytes

    def make_room(self, name: str) -> bool:
        """Spill the table's oldest pending entries (mapped outside the lock, swapped under it)
        until it is under the capacity bound; False when it stays over it (spilling off, the
        spill bound reached, nothing left to spill): the writer then waits (:meth:`wait_capacity`)."""
        while True:
            with self._lock:
                buf = self._buffers.get(name)
                if buf is None or buf.nbytes < 2 * self.max_bytes:
                    return True
                entry = buf._spill_candidate() if self.max_spill_bytes > 0 else None
                if entry is None or self.spilled_bytes() + entry.nbytes > self.max_spill_bytes:
                    return False
            try:
                mapped = self._spill_source(entry.seq)
            except (OSError, pa.ArrowException):
                mapped = None
            with self._lock:
                if self._buffers.get(name) is buf:  # not dropped meanwhile
                    buf._spill(entry, mapped)
                self.changed.notify_all()

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
        """Wait until the table is under the capacity bound (a flush ended, or spilling is
        possible again); False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.make_room(name):
            with self._lock:
                if (left := deadline - time.monotonic()) <= 0:
                    return False
                if self.over_capacity(name):  # woken by any change (a flush settled, rows dropped)
                    self.changed.wait(timeout=min(left, 1.0))
        return True
