"""Write-ahead log: one Arrow IPC segment per committed ingest chunk.

A segment is written to ``pending-{uuid}.tmp`` and fsynced; it is then *published*: given the
next sequence number and renamed to ``{seq:020d}.arrow``, with the directory fsynced, all
before the ingest is acknowledged (policy ``always``). A crash leaves a segment either
complete or absent (stray ``.tmp`` files were never acknowledged and are removed at start).

The sequence number is taken at publish time, not when the segment is opened, and the
caller publishes under the lock that also appends the rows to the buffer: sequence order is
buffer order. A flush that persists a table's buffered rows up to sequence S therefore
covers every published segment of that table numbered S or lower, and the watermark S can
never hide a segment that joined the buffer later (concurrent DoPuts on one table). Each segment's schema metadata names the table, the table incarnation
(``table_id``), its sequence number and the optional client batch id.

A batch with an id is all-or-nothing (see :mod:`flight_server.batches`): its segments are
marked ``miniodb.batch_part`` and the last one ends with an empty record batch whose custom
metadata ``miniodb.batch_rows`` is the batch's row count (the completion marker). Replay
applies such segments only when the marker is there and the counts add up.

Sequence numbers only grow, across restarts too: the highest sequence ever removed is kept
in ``seq.floor``, so a new segment never reuses the number of a persisted one. The catalog
stores, per node and table incarnation, the highest sequence persisted (the watermark);
replay skips every segment at or below it, so a crash between the catalog commit and the
segment removal never applies rows twice.

Segments are recycled, as database WALs do: a persisted segment is not unlinked but renamed
to ``free-{uuid}.wal`` (up to ``wal.recycle_bytes`` in all), and the next segment overwrites
such a file from the start and cuts it to its length before the fsync. Overwriting blocks
that are already allocated (and usually still in the page cache) costs the kernel about half
of what a fresh file does: no block allocation, no new page-cache pages, and fdatasync has no
allocation to journal. Free files are never read; a crash while one is being overwritten
leaves a ``pending-*.tmp`` that is removed at start like any other unacknowledged segment.
A segment whose rows the buffer spilled (:meth:`WriteAheadLog.map_segment`, a memory-mapped
read that a query may still hold) is never recycled: ``remove(seqs, mapped=...)`` unlinks it
(an unlinked file stays valid under its mappings; an overwritten one would not).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

_SUFFIX = ".arrow"
_FREE = "free-"
_FREE_SUFFIX = ".wal"
_FLOOR = "seq.floor"
META_TABLE = b"miniodb.table"
META_TABLE_ID = b"miniodb.table_id"
META_BATCH_ID = b"miniodb.batch_id"
META_BATCH_PART = b"miniodb.batch_part"  # segment of an all-or-nothing batch (needs the marker)
META_BATCH_ROWS = b"miniodb.batch_rows"  # completion marker: custom metadata of the last record batch
EARLY_SYNC_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Segment:
    seq: int
    path: Path
    table: str
    table_id: str
    rows: int
    size: int
    batch_id: str = ""
    batch_part: bool = False  # one of the segments of an all-or-nothing batch
    batch_rows: int | None = None  # the completion marker: the whole batch's rows


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """One segment being written: batches go to the page cache as they arrive (so the final
    fsync has little left to do), and :meth:`commit` makes the segment durable and visible
    to replay (fsync, rename, fsync of the directory)."""

    def __init__(self, wal: WriteAheadLog, table: str, table_id: str, schema: pa.Schema, batch_id: str,
                 atomic: bool = False):
        self.wal = wal
        self.table, self.table_id, self.batch_id = table, table_id, batch_id
        self.tmp = wal.dir / f"pending-{uuid.uuid4().hex}.tmp"
        meta = dict(schema.metadata or {})
        meta.update({META_TABLE: table.encode(), META_TABLE_ID: table_id.encode(),
                     META_BATCH_ID: batch_id.encode()})
        if atomic:
            meta[META_BATCH_PART] = b"1"
        self._schema = schema
        self.batch_rows: int | None = None
        self.published = False
        self._recycled = wal._take_free(self.tmp)
        if self._recycled:  # overwrite in place: no O_TRUNC, the length is set in sync()
            self._sink = pa.OSFile(os.open(self.tmp, os.O_WRONLY), "w")
        else:
            self._sink = pa.OSFile(str(self.tmp), "wb")
        try:
            self._writer = pa.ipc.new_stream(self._sink, schema.with_metadata(meta))
        except BaseException:  # e.g. a full disk: leave no pending file behind
            self._sink.close()
            self.tmp.unlink(missing_ok=True)
            raise
        self.rows = 0
        self._unsynced = 0
        self._failed: BaseException | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            self._writer.write_batch(batch)
            self.rows += batch.num_rows
            self._unsynced += batch.nbytes
            if self.wal.sync and self._unsynced >= EARLY_SYNC_BYTES:
                # write back while the stream goes on, so the final fsync only has the tail left
                os.fdatasync(self._sink.fileno())
                self._unsynced = 0
        except BaseException as exc:
            self._failed = exc  # a half-written segment must never be synced and published
            raise

    def mark_complete(self, batch_rows: int) -> None:
        """Write the completion marker of an all-or-nothing batch (its last segment)."""
        self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=self._schema),
                                 custom_metadata={META_BATCH_ROWS: str(int(batch_rows)).encode()})
        self.batch_rows = batch_rows

    def sync(self) -> None:
        """Finish the stream and make its bytes durable (still invisible to replay)."""
        if self._failed is not None:
            raise self._failed
        self._writer.close()
        self._sink.flush()
        if self._recycled:
            os.ftruncate(self._sink.fileno(), self._sink.tell())  # drop the old contents' tail
        if self.wal.sync:
            os.fsync(self._sink.fileno())
        self._sink.close()

    def publish(self) -> Segment:
        """Number the synced segment and rename it into place. Call it under the lock that
        orders buffer appends (see the module docstring), then :meth:`durable` outside it."""
        size = self.tmp.stat().st_size
        seq, self._generation = self.wal._publish(self.tmp, size)
        self.published = True
        self._segment = Segment(seq, self.wal._path(seq), self.table, self.table_id, self.rows, size, self.batch_id,
                                batch_rows=self.batch_rows)
        if self.wal.on_published is not None:  # e.g. start the mirror upload while durable() syncs
            self.wal.on_published(self._segment)
        return self._segment

    def durable(self) -> None:
        """Wait until the rename is on disk (directory fsync, shared by concurrent writers)."""
        self.wal._sync_dir_upto(self._generation)
        if self.wal.on_durable is not None:  # e.g. the object-store mirror (wal_mirror.py)
            self.wal.on_durable(self._segment)

    def commit(self) -> Segment:
        self.sync()
        segment = self.publish()
        self.durable()
        return segment

    def abort(self) -> None:
        try:
            self._writer.close()
        except (pa.ArrowException, OSError):
            pass
        try:
            self._sink.close()
        except (pa.ArrowException, OSError):
            pass
        self.tmp.unlink(missing_ok=True)


def _count_rows(reader: pa.ipc.RecordBatchStreamReader) -> tuple[int, int | None]:
    """Rows of a segment, and the completion marker of an all-or-nothing batch if it has one."""
    rows, marker = 0, None
    while True:
        try:
            batch, custom = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            return rows, marker
        rows += batch.num_rows
        if custom is not None and META_BATCH_ROWS in custom:
            marker = int(custom[META_BATCH_ROWS])


_WAL_KEYS = {META_TABLE, META_TABLE_ID, META_BATCH_ID, META_BATCH_PART, b"miniodb.seq"}


def _user_data(table: pa.Table) -> pa.Table:
    """A segment's rows with the WAL's own schema metadata removed."""
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k not in _WAL_KEYS}
    return table.replace_schema_metadata(meta or None)


def parse_segment(seq: int, raw: bytes) -> tuple[Segment, pa.Table]:
    """A segment's description and rows from its bytes (e.g. a copy in the object store);
    ``path`` is empty. Raises ``pa.ArrowInvalid``/``OSError`` for a torn segment."""
    reader = pa.ipc.open_stream(pa.py_buffer(raw))
    meta = reader.schema.metadata or {}
    parts, marker = [], None
    while True:
        try:
            batch, custom = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            break
        parts.append(batch)
        if custom is not None and META_BATCH_ROWS in custom:
            marker = int(custom[META_BATCH_ROWS])
    data = pa.Table.from_batches(parts, schema=reader.schema)
    seg = Segment(seq, Path(), meta.get(META_TABLE, b"").decode(), meta.get(META_TABLE_ID, b"").decode(),
                  data.num_rows, len(raw), meta.get(META_BATCH_ID, b"").decode(),
                  batch_part=META_BATCH_PART in meta, batch_rows=marker)
    return seg, _user_data(data)


class WriteAheadLog:
    def __init__(self, directory: str | Path, sync: bool = True, recycle_bytes: int = 0):
        self.dir = Path(directory)
        self.sync = sync
        self.recycle_bytes = recycle_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        # hooks: a segment was published (under the caller's lock: must not block), a published
        # segment is on disk (called before the acknowledgement, may raise to fail it), and
        # segments were removed (persisted or abandoned)
        self.on_published: Callable[[Segment], None] | None = None
        self.on_durable: Callable[[Segment], None] | None = None
        self.on_removed: Callable[[list[int]], None] | None = None
        self.fault: Callable[[str], None] = lambda step: None  # crash point (flight_server/faults.py)
        self._lock = threading.Lock()
        self._dir_sync = threading.Lock()
        self._renamed = 0  # renames made so far
        self._synced = 0  # renames covered by a finished directory fsync
        self._bytes = 0
        self._sizes: dict[int, int] = {}
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # never acknowledged
        self._free: list[tuple[int, Path]] = []  # recycled segment files, (size, path)
        self._free_bytes = 0
        for path in sorted(self.dir.glob(f"{_FREE}*{_FREE_SUFFIX}")):
            self._add_free(path, path.stat().st_size)
        floor = self._read_floor()
        existing = [self._seq_of(p) for p in self.dir.glob(f"*{_SUFFIX}")]
        self._next = max([floor, *existing]) + 1
        self._floor = floor

    # -- paths -------------------------------------------------------------------------
    @staticmethod
    def _seq_of(path: Path) -> int:
        return int(path.name[: -len(_SUFFIX)])

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:020d}{_SUFFIX}"

    def segment_path(self, seq: int) -> Path:
        """Where segment ``seq`` lives (a restored copy may be placed there before replay)."""
        return self._path(seq)

    def _read_floor(self) -> int:
        try:
            return int((self.dir / _FLOOR).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_floor(self, value: int) -> None:
        tmp = self.dir / (_FLOOR + ".tmp")
        with open(tmp, "w") as f:
            f.write(str(value))
            f.flush()
            if self.sync:
                os.fsync(f.fileno())
        os.replace(tmp, self.dir / _FLOOR)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def free_bytes(self) -> int:
        """Bytes held in recycled segment files, waiting to be overwritten."""
        return self._free_bytes

    # -- recycling ---------------------------------------------------------------------
    def _add_free(self, path: Path, size: int) -> None:
        """Keep ``path`` (already named free-*) for reuse, or delete it if the pool is full."""
        with self._lock:
            if size and self._free_bytes + size <= self.recycle_bytes:
                self._free.append((size, path))
                self._free_bytes += size
                return
        path.unlink(missing_ok=True)

    def _take_free(self, target: Path) -> bool:
        """Rename the largest recycled file to ``target``; False when there is none."""
        while True:
            with self._lock:
                if not self._free:
                    return False
                best = max(range(len(self._free)), key=lambda i: self._free[i][0])
                size, path = self._free.pop(best)
                self._free_bytes -= size
            try:
                os.replace(path, target)
                return True
            except FileNotFoundError:
                continue  # removed behind our back: try the next one

    def _retire(self, path: Path, size: int) -> None:
        if self.recycle_bytes <= 0:
            path.unlink(missing_ok=True)
            return
        free = self.dir / f"{_FREE}{uuid.uuid4().hex}{_FREE_SUFFIX}"
        try:
            os.replace(path, free)
        except FileNotFoundError:
            return
        self._add_free(free, size)

    # -- write -------------------------------------------------------------------------
    def open_segment(self, table: str, table_id: str, schema: pa.Schema, batch_id: str = "",
                     atomic: bool = False) -> SegmentWriter:
        """A segment to stream batches into; durable only after :meth:`SegmentWriter.commit`."""
        return SegmentWriter(self, table, table_id, schema, batch_id, atomic)

    def append(self, table: str, table_id: str, data: pa.Table, batch_id: str = "") -> Segment:
        """Durably write ``data`` as one segment; returns it once it survives a crash."""
        writer = self.open_segment(table, table_id, data.schema, batch_id)
        try:
            for batch in data.to_batches():
                writer.write(batch)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def _publish(self, tmp: Path, size: int) -> tuple[int, int]:
        with self._lock:
            seq = self._next
            self._next += 1
            os.replace(tmp, self._path(seq))
            self._sizes[seq] = size
            self._bytes += size
            self._renamed += 1
            return seq, self._renamed

    def _sync_dir_upto(self, generation: int) -> None:
        """Group commit of renames: one directory fsync covers every rename made before it
        started, so concurrent small ingests share it instead of queueing one each."""
        if not self.sync:
            return
        with self._dir_sync:
            if self._synced >= generation:
                return
            with self._lock:
                target = self._renamed
            _fsync_dir(self.dir)
            self._synced = target

    # -- read --------------------------------------------------------------------------
    def segments(self) -> list[Segment]:
        """Every complete segment, in sequence order (for replay at start)."""
        out = []
        for path in sorted(self.dir.glob(f"*{_SUFFIX}")):
            try:
                with pa.memory_map(str(path)) as src:
                    reader = pa.ipc.open_stream(src)
                    meta = reader.schema.metadata or {}
                    rows, marker = _count_rows(reader)
            except (pa.ArrowInvalid, OSError):
                continue  # unreadable: not acknowledged (the rename is the commit point)
            seq = self._seq_of(path)
            size = path.stat().st_size
            with self._lock:
                if seq not in self._sizes:
                    self._sizes[seq] = size
                    self._bytes += size
            out.append(Segment(seq, path, meta.get(META_TABLE, b"").decode(), meta.get(META_TABLE_ID, b"").decode(),
                               rows, size, meta.get(META_BATCH_ID, b"").decode(),
                               batch_part=META_BATCH_PART in meta, batch_rows=marker))
        return out

    @staticmethod
    def read(segment: Segment) -> pa.Table:
        with pa.OSFile(str(segment.path), "rb") as src:
            table = pa.ipc.open_stream(src).read_all()
        return _user_data(table)

    def map_segment(self, seq: int) -> pa.Table:
        """Segment ``seq``'s rows as a zero-copy read of its memory-mapped file (the mapping
        lives as long as the table's buffers), without the completion marker's empty batch.
        Raises ``OSError``/``pa.ArrowInvalid`` when the segment is missing or unreadable.
        Its file must then be removed with ``mapped`` (never recycled)."""
        with pa.memory_map(str(self._path(seq))) as src:
            reader = pa.ipc.open_stream(src)
            table = pa.Table.from_batches([b for b in reader if b.num_rows], schema=reader.schema)
        return _user_data(table)

    # -- truncate ----------------------------------------------------------------------
    def remove(self, seqs: Iterable[int], mapped: Iterable[int] = ()) -> None:
        """Drop persisted (or abandoned) segments; the floor keeps their numbers retired.
        ``mapped``: those of ``seqs`` that may be memory-mapped (spilled buffer entries): they
        are unlinked, never recycled, so a query holding their rows still reads them."""
        seqs = sorted(set(seqs))
        mapped = set(mapped)
        if not seqs:
            return
        with self._lock:
            if seqs[-1] > self._floor:
                self._floor = seqs[-1]
                self._write_floor(self._floor)
        for i, seq in enumerate(seqs):
            with self._lock:
                size = self._sizes.pop(seq, 0)
                self._bytes -= size
            if seq in mapped:
                self._path(seq).unlink(missing_ok=True)
            else:
                self._retire(self._path(seq), size)
            if i == 0:
                self.fault("wal_remove")
        if self.sync:
            _fsync_dir(self.dir)
        if self.on_removed is not None:
            self.on_removed(seqs)

    def raise_floor(self, value: int) -> None:
        """Number new segments above ``value`` (e.g. a watermark left by a lost disk's WAL)."""
        with self._lock:
            if value > self._floor:
                self._floor = value
                self._write_floor(value)
            self._next = max(self._next, value + 1)
