"""Ingest: validate -> WAL (fsync) -> buffer -> acknowledge; replay at start; drop.

A DoPut is applied in chunks of ``wal.chunk_bytes``: each chunk is one WAL segment, durable
before it joins the buffer. A stream smaller than one chunk (the common case) is therefore
all-or-nothing; a larger stream commits chunk by chunk so the node never holds an
unbounded stream in memory. Schema checks happen before the first byte is written.

A DoPut with a batch id is applied exactly once (:mod:`flight_server.batches`) and is
all-or-nothing at any size: its chunks are made durable as they arrive but join the WAL and
the buffer together at the end (so such a batch is held in memory until its last byte).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from clients.errors import AlreadyExists, InvalidRequest, MinioDBError, NotFound, Unavailable

from .batches import BatchLedger
from .buffer import BufferEntry, BufferManager
from .catalog import Catalog, check_table_name
from .metadata.base import TableConfig, TableInfo
from .schema import conform, conform_batch, evolve, normalize_schema
from .storage.base import ObjectStore
from .wal import Segment, SegmentWriter, WriteAheadLog

log = logging.getLogger("miniodb.ingest")

MODES = ("create", "append", "replace", "create_append")


@dataclass(frozen=True)
class IngestResult:
    table: str
    rows: int
    bytes: int
    duplicate: bool = False


class Ingestor:
    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        store: ObjectStore,
        wal: WriteAheadLog,
        buffers: BufferManager,
        chunk_bytes: int,
        auto_create: bool = True,
        on_appended: Callable[[str], None] | None = None,
        on_dropped: Callable[[str, list[str]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        backpressure_timeout: float = 300.0,
        retire_objects: Callable[[str, list[str]], None] | None = None,
        ledger: BatchLedger | None = None,
    ):
        self.node_id = node_id
        self.catalog = catalog
        self.store = store
        self.wal = wal
        self.buffers = buffers
        self.chunk_bytes = chunk_bytes
        self.auto_create = auto_create
        self.on_appended = on_appended or (lambda name: None)
        self.on_dropped = on_dropped or (lambda name, keys: None)
        # objects of a dropped table: deleted now, or kept while a metadata backup lists them
        self.retire_objects = retire_objects or (lambda name, keys: self.store.delete_many(keys))
        self._clock = clock
        self.backpressure_timeout = backpressure_timeout
        self._live: dict[str, str] = {}  # table -> table_id this node may append to
        self._ddl_locks: dict[str, threading.Lock] = {}
        self._ddl_guard = threading.Lock()
        # exactly-once batch ids (batches.py); the node passes one built from its settings
        self.ledger = ledger or BatchLedger(catalog.metadata, node_id)
        self.unreplayed: dict[str, int] = {}  # "table (table_id)" -> WAL segments kept at replay (unknown table)
        self.rows_total = 0
        self.bytes_total = 0

    def _ddl_lock(self, name: str) -> threading.Lock:
        with self._ddl_guard:
            return self._ddl_locks.setdefault(name.lower(), threading.Lock())

    # -- tables ------------------------------------------------------------------------
    def create_table(self, name: str, schema: pa.Schema, config: TableConfig | None = None,
                     if_not_exists: bool = False) -> TableInfo:
        with self._ddl_lock(name):
            info = self.catalog.create(name, schema, config, if_not_exists=if_not_exists)
            self._activate(info)
            return info

    def _activate(self, info: TableInfo) -> None:
        self._live[info.name] = info.table_id
        self.buffers.set_limits(info.name, info.config.buffer_size, info.config.flush_interval_seconds)

    def drop_table(self, name: str, if_exists: bool = False) -> bool:
        check_table_name(name)
        with self._ddl_lock(name):
            try:
                self._drop_locked(name)
            except NotFound:
                if if_exists:
                    return False
                raise
            return True

    def _drop_locked(self, name: str) -> None:
        files = self.catalog.drop(name)
        self._forget(name)
        keys = [f.key for f in files]
        self.retire_objects(name, keys)
        self.on_dropped(name, keys)

    def _forget(self, name: str) -> None:
        """Drop this node's buffer and WAL segments of a table (its rows must never return)."""
        with self.buffers.lock:
            self._live.pop(name, None)
            buf = self.buffers.remove(name)
        if buf is not None:
            self.wal.remove(buf.seqs(), mapped=buf.spilled_seqs())

    def resolve_for_write(self, name: str, schema: pa.Schema, mode: str) -> TableInfo:
        """The table to write ``schema`` data into, created/replaced/evolved as ``mode`` says."""
        return self._resolve(name, schema, mode)[0]

    def _resolve(self, name: str, schema: pa.Schema, mode: str) -> tuple[TableInfo, bool]:
        """:meth:`resolve_for_write`, and whether this call created the table."""
        if mode not in MODES:
            raise InvalidRequest(f"unknown ingest mode {mode!r}; use one of {', '.join(MODES)}")
        check_table_name(name)
        if mode in ("append", "create_append"):
            with self._ddl_lock(name):
                info = self.catalog.find(name)
                if info is not None and schema.equals(info.schema):
                    # the table's own schema (the common case): valid as it is, nothing to evolve
                    self._activate(info)
                    return info, False
        incoming = normalize_schema(schema)
        with self._ddl_lock(name):
            info = self.catalog.find(name)
            if mode == "create" and info is not None:
                raise AlreadyExists(f"table {name!r} already exists (mode 'create')", detail={"table": name})
            if mode == "append" and info is None:
                raise NotFound(f"table {name!r} not found (mode 'append' does not create tables)",
                               detail={"table": name})
            if mode == "create_append" and info is None and not self.auto_create:
                raise NotFound(f"table {name!r} not found and automatic table creation is disabled",
                               detail={"table": name})
            existed = info is not None
            if mode == "replace" and info is not None:
                self._drop_locked(name)
                info = None
            if info is None:
                info = self.catalog.create(name, incoming)
                self._activate(info)
                return info, not existed  # a failed replace keeps its (empty) new table
            new_schema = evolve(info.schema, incoming)
            if not new_schema.equals(info.schema):
                if info.config.properties.get("auto_evolve", "true").lower() == "false":
                    raise InvalidRequest(f"table {name!r} does not accept schema changes (auto_evolve=false)")
                info = self.catalog.update_schema(info, new_schema)
                log.info("table %s schema evolved to version %d", name, info.schema_version)
            self._activate(info)
            return info, False

    # -- ingest ------------------------------------------------------------------------
    def ingest(self, name: str, batches: Iterable[pa.RecordBatch] | pa.Table, schema: pa.Schema,
               mode: str = "create_append", batch_id: str = "") -> IngestResult:
        if not batch_id:
            return self._ingest(name, batches, schema, mode, "")
        return self.ledger.apply(batch_id, lambda: self._ingest(name, batches, schema, mode, batch_id),
                                 lambda result: result.rows,
                                 lambda rows: IngestResult(name, rows, 0, duplicate=True))

    def _ingest(self, name: str, batches: Iterable[pa.RecordBatch] | pa.Table, schema: pa.Schema,
                mode: str, batch_id: str) -> IngestResult:
        info, created = self._resolve(name, schema, mode)
        try:
            return self._write(info, batches, batch_id)
        except BaseException:
            if created:
                self._undo_create(info)
            raise

    def _undo_create(self, info: TableInfo) -> None:
        """A stream that created its table failed before any of its rows were acknowledged: the
        table goes too, so a failed load leaves nothing behind. Kept when anything else wrote
        into it meanwhile (rows buffered or committed, or another stream still writing)."""
        with self._ddl_lock(info.name):
            current = self.catalog.find(info.name)
            buf = self.buffers.get(info.name)
            if current is None or current.table_id != info.table_id or (buf is not None and buf.rows):
                return
            if self.buffers.streaming(info.name):
                return
            manifest = self.catalog.manifest(info.name)
            if manifest is not None and manifest.files:
                return
            try:
                self._drop_locked(info.name)
                log.info("table %s removed: the load that created it failed", info.name)
            except MinioDBError as exc:  # an empty table left behind costs nothing but its name
                log.warning("table %s created by a failed load was not removed: %s", info.name, exc)

    def _write(self, info: TableInfo, batches: Iterable[pa.RecordBatch] | pa.Table,
               batch_id: str) -> IngestResult:
        if isinstance(batches, pa.Table):
            batches = batches.to_batches()
        target = self._current_schema(info)
        # Batches stream into the open WAL segment on a writer thread as they arrive (so disk
        # writes overlap the network); a full chunk is made durable (fsync) and handed to the
        # buffer on that same thread, in order, while the next chunk arrives. The thread is
        # started with the second batch: a one-batch stream (the common small DoPut) writes and
        # commits on the calling thread, with no thread start and no hand-off.
        # A batch with an id is all-or-nothing: its chunks are synced but published (numbered,
        # renamed, appended to the buffer) together at the end, the last one carrying the
        # completion marker (see wal.py); a full chunk is sealed once the next batch arrives.
        committer: ThreadPoolExecutor | None = None
        futures: list[Future] = []
        atomic = bool(batch_id)

        def submit(fn, *args) -> None:
            if committer is not None:
                futures.append(committer.submit(fn, *args))
                return
            done: Future = Future()
            try:
                done.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - raised below, as from the writer thread
                done.set_exception(exc)
            futures.append(done)

        writer = None
        held: tuple | None = None  # atomic: the last full chunk, not sealed until more data comes
        opened: list[SegmentWriter] = []
        pending: list[pa.RecordBatch] = []
        size = total = seen = 0
        self.buffers.stream_started(info.name)
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                seen += 1
                if seen == 2:
                    committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miniodb-wal")
                batch = conform_batch(batch, target)
                if writer is None:
                    if held is not None:
                        submit(self._seal, *held)
                        held = None
                    self._wait_for_capacity(info.name)
                    writer = self.wal.open_segment(info.name, info.table_id, target, batch_id, atomic)
                    opened.append(writer)
                submit(writer.write, batch)
                pending.append(batch)
                size += batch.nbytes
                total += batch.num_rows
                if size >= self.chunk_bytes:
                    if atomic:
                        held = (writer, pending, target)
                    else:
                        submit(self._commit_chunk, info, writer, pending, target, batch_id)
                    writer, pending, size = None, [], 0
            if atomic:
                if writer is not None:
                    held = (writer, pending, target)
                if held is not None:
                    submit(held[0].mark_complete, total)
                    submit(self._seal, *held)
            elif writer is not None:
                submit(self._commit_chunk, info, writer, pending, target, batch_id)
            writer = None
        except BaseException:
            if writer is not None:
                writer.abort()
            if atomic:
                self._abort_all(committer, opened)
            raise
        finally:
            if committer is not None:
                committer.shutdown(wait=True)
            self.buffers.stream_finished(info.name)
            self.on_appended(info.name)
        rows = nbytes = 0
        sealed = []
        try:
            for f in futures:
                done = f.result()  # the first failed write or chunk raises here
                if isinstance(done, tuple) and len(done) == 2 and isinstance(done[0], SegmentWriter):
                    sealed.append(done)
                elif done is not None:
                    rows += done[0]
                    nbytes += done[1]
            if atomic and sealed:
                rows, nbytes = self._publish_batch(info, sealed, target, batch_id)
        except BaseException:
            if atomic:
                self._abort_all(None, opened)
            raise
        return IngestResult(info.name, rows, nbytes)

    @staticmethod
    def _abort_all(committer: ThreadPoolExecutor | None, writers: list[SegmentWriter]) -> None:
        if committer is not None:
            committer.shutdown(wait=True)  # no write may still be running into a file we remove
        for w in writers:
            if not w.published:
                w.abort()

    @staticmethod
    def _seal(writer: SegmentWriter, batches: list[pa.RecordBatch], schema: pa.Schema) -> tuple:
        """A chunk of an all-or-nothing batch: durable as a pending file, not yet published."""
        writer.sync()
        return writer, pa.Table.from_batches(batches, schema=schema)

    def _publish_batch(self, info: TableInfo, sealed: list[tuple], schema: pa.Schema,
                       batch_id: str) -> tuple[int, int]:
        """Number, rename and buffer every chunk of an all-or-nothing batch in one step (the
        last carries the completion marker, so a crash between the renames applies none)."""
        segments = []
        with self.buffers.lock:  # sequence order == buffer order (see wal.py)
            if self._live.get(info.name) != info.table_id:
                raise NotFound(f"table {info.name!r} was dropped during the ingest", detail={"table": info.name})
            try:
                for writer, _ in sealed:
                    segments.append(writer.publish())
            except BaseException:
                self.wal.remove([seg.seq for seg in segments])  # no marker: never applied
                raise
            now = self._clock()
            for seg, (_, data) in zip(segments, sealed, strict=True):
                self.buffers.append(info.name, info.table_id, schema, BufferEntry(seg.seq, data, now, batch_id))
        sealed[-1][0].durable()  # one directory fsync covers every rename before it
        self.buffers.make_room(info.name)
        rows = sum(data.num_rows for _, data in sealed)
        nbytes = sum(data.nbytes for _, data in sealed)
        self.rows_total += rows
        self.bytes_total += nbytes
        self.on_appended(info.name)
        return rows, nbytes

    def _wait_for_capacity(self, name: str) -> None:
        """Before a new chunk: spill buffered rows to their WAL segments, or wait for the flusher."""
        if self.buffers.over_capacity(name) and not self.buffers.make_room(name):
            self.on_appended(name)  # make sure the flusher is on it
            if not self.buffers.wait_capacity(name, self.backpressure_timeout):
                raise Unavailable(f"table {name!r} has too much unflushed data; flushes are failing")

    def _commit_chunk(self, info: TableInfo, writer: SegmentWriter, batches: list[pa.RecordBatch],
                      schema: pa.Schema, batch_id: str) -> tuple[int, int]:
        try:
            writer.sync()
        except BaseException:
            writer.abort()
            raise
        data = pa.Table.from_batches(batches, schema=schema)
        with self.buffers.lock:  # sequence order == buffer order (see wal.py)
            if self._live.get(info.name) != info.table_id:
                writer.abort()
                raise NotFound(f"table {info.name!r} was dropped during the ingest", detail={"table": info.name})
            segment = writer.publish()
            self.buffers.append(info.name, info.table_id, schema,
                                BufferEntry(segment.seq, data, self._clock(), batch_id))
        writer.durable()  # before the acknowledgement; outside the lock so others can share it
        self.buffers.make_room(info.name)  # past the capacity bound: spill the oldest rows to their segments
        self.rows_total += data.num_rows
        self.bytes_total += data.nbytes
        self.on_appended(info.name)
        return data.num_rows, data.nbytes

    def _current_schema(self, info: TableInfo) -> pa.Schema:
        buf = self.buffers.get(info.name)
        if buf is not None and buf.table_id == info.table_id and len(buf.schema) > len(info.schema):
            # another writer evolved the table after we resolved it: keep the widest
            return evolve(buf.schema, info.schema)
        latest = self.catalog.find(info.name)
        return latest.schema if latest is not None and latest.table_id == info.table_id else info.schema

    # -- start -------------------------------------------------------------------------
    def load_tables(self) -> None:
        for info in self.catalog.list():
            self._activate(info)

    def reload_tables(self) -> None:
        """After a metadata restore: the tables this node may append to are the restored ones
        (swapped in one step, so an ingest in flight never sees an empty map)."""
        tables = self.catalog.list()
        with self.buffers.lock:
            self._live.clear()
            self._live.update({t.name: t.table_id for t in tables})
        for info in tables:
            self._activate(info)

    def replay(self, watermark: Callable[[str, str], int]) -> int:
        """Re-buffer WAL segments not yet persisted; drop those of dropped or persisted tables
        and those of all-or-nothing batches that never completed (a retry applies them whole)."""
        replayed = 0
        stale = []
        segments = self.wal.segments()
        complete = complete_batches(segments)
        finished: dict[str, int] = {}
        unknown: dict[str, list[int]] = {}
        for seg in segments:
            info = self.catalog.find(seg.table) if seg.table else None
            if info is None or info.table_id != seg.table_id:
                if not seg.table or self.catalog.metadata.was_dropped(seg.table_id):
                    stale.append(seg.seq)  # a confirmed drop: these rows must never return
                else:  # the metadata store does not know the table: keep the rows for a restore
                    unknown.setdefault(f"{seg.table} ({seg.table_id})", []).append(seg.seq)
                continue
            if seg.seq <= watermark(seg.table, seg.table_id):
                stale.append(seg.seq)
                continue
            if seg.batch_part and seg.batch_id not in complete:
                log.warning("WAL segment %d holds part of batch %s that never completed: ignored",
                            seg.seq, seg.batch_id)
                stale.append(seg.seq)
                continue
            data = conform(self.wal.read(seg), info.schema)
            self._activate(info)
            self.buffers.append(info.name, info.table_id, info.schema,
                                BufferEntry(seg.seq, data, self._clock(), seg.batch_id))
            self.buffers.make_room(info.name)  # a long WAL replays into memory-mapped segments
            if seg.batch_id:
                finished[seg.batch_id] = finished.get(seg.batch_id, 0) + data.num_rows
            replayed += data.num_rows
        self.wal.remove(stale)
        self.ledger.replayed(finished)
        for table, seqs in unknown.items():
            log.error("WAL segments %s of table %s are kept, not replayed: the metadata store does not know "
                      "the table and has no record of its drop (was it restored empty, or is this node "
                      "pointed at another deployment?). Restore the metadata (miniodb restore) and restart.",
                      seqs, table)
        self.unreplayed = {table: len(seqs) for table, seqs in unknown.items()}
        return replayed


def complete_batches(segments: list[Segment]) -> set[str]:
    """Ids of all-or-nothing batches whose segments are all there: the completion marker is
    present and the rows add up to it."""
    rows: dict[str, int] = {}
    marker: dict[str, int] = {}
    for seg in segments:
        if seg.batch_part:
            rows[seg.batch_id] = rows.get(seg.batch_id, 0) + seg.rows
            if seg.batch_rows is not None:
                marker[seg.batch_id] = seg.batch_rows
    return {b for b, n in marker.items() if rows.get(b) == n}
