"""Compaction: merge a table's small Parquet files, one day partition at a time, into files of
about ``compaction.target_file_bytes``.

Who: one compactor per table across the cluster. A pass over a table first takes the lease
``compaction:{table}`` in the metadata store (Redis: ``SET NX PX``; SQLite: a row with an
expiry; see ``MetadataStore.acquire_lease``) and renews it from a keeper thread while it
works; a node that dies stops renewing and the lease expires (the same node, restarted,
takes its earlier incarnation's lease over at once). A node that finds the lease taken skips
the table (outcome ``busy``). The lease saves duplicate work; correctness does not
depend on it (see the swap below).

What: files of one day partition (the ``date=YYYY-MM-DD`` of the object key: files of
different days never merge) that are smaller than half the target and were committed at least
``compaction.min_file_age_seconds`` ago. A partition is compacted once it holds
``compaction.min_files`` such files; they are packed, in key order, into groups of at most the
target size, and each group of two or more files becomes one new file.

Why the age and ``wal_seq = 0``: a coordinator pins each peer's buffer and then reads the
manifest; it leaves out node X's files with ``wal_seq`` above X's pinned watermark, because
their rows are still in the pin (coordinator.py ``snapshot``). A merged file mixes the rows
of many commits, so it carries ``wal_seq = 0`` (always read) and ``node_id`` of the compactor.
That is exact as long as no merged input was committed after a running query pinned its
buffers and before it read the manifest; the pin-to-snapshot gap is milliseconds, and only
files committed ``min_file_age_seconds`` (default 60) ago are merged. A query that read the
manifest before the swap keeps reading the old files, which stay in the object store.

Swap: one strict commit per partition (``commit_files(add=merged, remove=inputs,
strict=True)``): it replaces exactly the files that were read, or raises ``FilesChanged``
because a DML rewrite or retention removed one meanwhile. Then the work is dropped (the new,
never committed objects are deleted) and the pass starts again from a fresh manifest, at most
``RETRIES`` times; a later pass retries the rest. Retention removes whole expired files and
compaction merges only files of one day, so whoever commits second retries, and the merged
file keeps the newest ``created_at`` of its inputs (retention by commit age stays right).
The replaced objects are not deleted here: that is the vacuum's job, after a grace period for
running queries. Commits whose outcome this node does not know (``Catalog.hide``) are never
merged, since their rows are back in the buffer; another node's are covered by the age rule
(its next flush settles them within seconds).

Memory: input row groups stream through ``ParquetFile.iter_batches`` into a ``ParquetWriter``
one output row group at a time, unless the table has a ``sort_key`` property: a sorted file
needs its rows at once, so memory is then one output file. Every write goes through
:func:`_write_file` (the table's write entry point).

Crash points (flight_server/faults.py): ``compaction_uploaded`` (merged objects uploaded, not
committed: they are never referenced and the manifest is unchanged) and
``compaction_committed`` (right after the swap: the new files replace the old ones).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clients.errors import Internal, MinioDBError, NotFound

from .cache import FileCache
from .catalog import Catalog
from .config import CompactionSettings
from .layout import layout_of
from .leases import LeaseKeeper, acquire_lease
from .metadata.base import FileEntry, FilesChanged, TableInfo
from .paths import data_file_day, data_file_key
from .periodic import Periodic
from .persist import ROW_GROUP_ROWS, lower_thread_priority, parquet_options, write_table_file
from .schema import conform_batch
from .stats import column_stats
from .storage.base import ObjectStore

log = logging.getLogger("miniodb.compaction")

LEASE_TTL = 30.0  # seconds; renewed every third of it while a pass runs
RETRIES = 3  # fresh attempts of a pass after FilesChanged
READ_BATCH_ROWS = 65_536


@dataclass
class CompactionResult:
    """What one pass did to one table. ``outcome``: compacted | nothing | busy | conflict | error."""

    table: str
    outcome: str = "nothing"
    files_before: int = 0
    files_after: int = 0
    merged_files: int = 0  # input files replaced
    written_files: int = 0
    bytes_before: int = 0  # Parquet bytes of the merged inputs
    bytes_after: int = 0  # Parquet bytes of the files that replaced them
    rows: int = 0
    young_files: int = 0  # small files left alone: younger than min_file_age_seconds
    seconds: float = 0.0
    error: str = ""
    new_keys: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def plan_merges(files: Iterable[FileEntry], settings: CompactionSettings, now: float
                ) -> tuple[dict[dt.date, list[list[FileEntry]]], int]:
    """Groups of files to merge per day partition (see the module doc), and the number of
    small files skipped because they are younger than ``min_file_age_seconds``."""
    target = settings.target_file_bytes
    small: dict[dt.date, list[FileEntry]] = {}
    young = 0
    for f in files:
        day = data_file_day(f.key)
        if day is None or f.size >= target // 2:
            continue
        if f.created_at > now - settings.min_file_age_seconds:
            young += 1
            continue
        small.setdefault(day, []).append(f)
    plan: dict[dt.date, list[list[FileEntry]]] = {}
    for day, group in sorted(small.items()):
        if len(group) < settings.min_files:
            continue
        bins: list[list[FileEntry]] = []
        cur: list[FileEntry] = []
        size = 0
        for f in sorted(group, key=lambda e: e.key):
            if cur and size + f.size > target:
                bins.append(cur)
                cur, size = [], 0
            cur.append(f)
            size += f.size
        bins.append(cur)
        bins = [b for b in bins if len(b) >= 2]
        if bins:
            plan[day] = bins
    return plan, young


def _write_file(data: pa.RecordBatchReader, path: Path, info: TableInfo) -> None:
    """THE write of a table file by compaction: a table with a layout (sort key, bloom filters)
    is read whole (one output file) and written by :func:`persist.write_table_file`, which sorts
    it; any other is streamed one row group at a time with the same writer options
    (:func:`persist.parquet_options`), so memory stays at about one row group."""
    schema = info.schema
    layout = layout_of(info.config.properties, schema)
    if layout.sort_key or layout.bloom_filter_columns:
        write_table_file(data.read_all(), path, info)
        return
    writer: pq.ParquetWriter | None = None
    buf: list[pa.RecordBatch] = []
    rows = 0

    def write(table: pa.Table) -> None:
        nonlocal writer
        if writer is None:
            writer = pq.ParquetWriter(path, schema, **parquet_options(table, schema))
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    try:
        for batch in data:
            buf.append(batch)
            rows += batch.num_rows
            if rows >= ROW_GROUP_ROWS:
                table = pa.Table.from_batches(buf, schema)
                full = rows - rows % ROW_GROUP_ROWS
                write(table.slice(0, full))
                rest = table.slice(full)
                buf, rows = rest.to_batches(), rest.num_rows
        if rows or writer is None:
            write(pa.Table.from_batches(buf, schema))
    finally:
        if writer is not None:
            writer.close()


class _Stats:
    """Min/max of the merged file, gathered batch by batch as the rows stream through."""

    def __init__(self):
        self.mins: dict = {}
        self.maxs: dict = {}
        self.unsafe: set[str] = set()  # a batch had values but no statistic (NaN): none for the file
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        mins, maxs = column_stats(pa.Table.from_batches([batch]))
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            if name not in mins:
                if col.null_count < len(col):
                    self.unsafe.add(name)
                continue
            if name not in self.mins or mins[name] < self.mins[name]:
                self.mins[name] = mins[name]
            if name not in self.maxs or maxs[name] > self.maxs[name]:
                self.maxs[name] = maxs[name]

    def result(self) -> tuple[dict, dict]:
        keep = lambda d: {k: v for k, v in d.items() if k not in self.unsafe}  # noqa: E731
        return keep(self.mins), keep(self.maxs)


class Abandoned(MinioDBError):
    """The pass stops before its commit (the lease expired, or the node is stopping): its
    uncommitted work is dropped."""


class Compactor:
    """Compacts tables on demand (:meth:`run`) and, once started, every ``interval_seconds``."""

    def __init__(self, node_id: str, catalog: Catalog, store: ObjectStore, file_cache: FileCache,
                 settings: CompactionSettings, tmp_dir: str | Path, clock: Callable[[], float] = time.time,
                 faults: Callable[[str], None] | None = None,
                 on_result: Callable[[CompactionResult], None] | None = None):
        self.node_id = node_id
        self.catalog = catalog
        self.metadata = catalog.metadata
        self.store = store
        self.file_cache = file_cache
        self.settings = settings
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.faults = faults or (lambda step: None)
        self.on_result = on_result or (lambda r: None)
        self.owner = f"{node_id}:{uuid.uuid4().hex}"  # this incarnation, as a lease holder
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}  # one pass per table in this process
        self._loop = Periodic("miniodb-compaction", "compaction pass", self.run,
                              lambda: self.settings.interval_seconds,
                              setup=lower_thread_priority, stop_timeout=30)  # background: ingest and queries first
        self._stop = self._loop.stopped

    # -- passes ----------------------------------------------------------------------------
    def run(self, table: str | None = None) -> list[CompactionResult]:
        """One pass over ``table`` (NotFound if missing) or over every table."""
        if table is not None:
            names = [self.catalog.get(table).name]
        else:
            names = [t.name for t in self.catalog.list()]
        return [self.compact_table(name) for name in names]

    def compact_table(self, name: str) -> CompactionResult:
        started = time.perf_counter()
        result = CompactionResult(name)
        lease = f"compaction:{name}"
        local = self._lock_for(name)
        if not local.acquire(blocking=False):
            result.outcome, result.error = "busy", "a compaction of this table is running on this node"
            self.on_result(result)
            return result
        try:
            holder = acquire_lease(self.metadata, lease, self.owner, LEASE_TTL)
            if holder is not None:
                result.outcome, result.error = "busy", f"another node holds the compaction lease ({holder})"
            else:
                keeper = LeaseKeeper(self.metadata, lease, self.owner, LEASE_TTL)
                try:
                    self._attempts(name, result, keeper)
                finally:
                    keeper.stop()
        except MinioDBError as exc:
            result.outcome, result.error = "error", exc.message
            log.warning("compaction of %s failed: %s", name, exc)
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable file: reported, the table stays as it was
            result.outcome, result.error = "error", f"{type(exc).__name__}: {exc}"
            log.exception("compaction of %s failed", name)
        finally:
            local.release()
        result.seconds = time.perf_counter() - started
        if result.outcome == "compacted":
            log.info("compacted %s: %d files -> %d (%d merged into %d, %d -> %d bytes) in %.1fs", name,
                     result.files_before, result.files_after, result.merged_files, result.written_files,
                     result.bytes_before, result.bytes_after, result.seconds)
        self.on_result(result)
        return result

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _attempts(self, name: str, result: CompactionResult, keeper: LeaseKeeper) -> None:
        for attempt in range(1, RETRIES + 1):
            try:
                self._pass(name, result, keeper)
                return
            except FilesChanged as exc:
                result.outcome, result.error = "conflict", exc.message
                log.info("compaction of %s: files changed meanwhile (attempt %d): %s", name, attempt, exc)
            except (Abandoned, NotFound) as exc:  # lease gone, node stopping, or the table was dropped
                result.outcome, result.error = "conflict", exc.message
                return

    def _pass(self, name: str, result: CompactionResult, keeper: LeaseKeeper) -> None:
        m = self.catalog.manifest(name)
        if m is None:
            raise NotFound(f"table {name!r} not found")
        info = m.info
        plan, young = plan_merges(m.files, self.settings, self._clock())
        result.files_before = result.files_before or len(m.files)
        result.young_files = young
        count = len(m.files)
        if not plan:
            result.files_after = count
            result.outcome = "compacted" if result.merged_files else "nothing"
            return
        for day, groups in plan.items():
            written: list[tuple[FileEntry, Path]] = []
            removed = [f.key for g in groups for f in g]
            committing = False
            try:
                for group in groups:
                    self._check(name, keeper)
                    written.append(self._merge(info, day, group))
                self.faults("compaction_uploaded")
                self._check(name, keeper, confirm=True)
                committing = True
                self.metadata.commit_files(name, info.table_id, [e for e, _ in written], remove=removed,
                                           strict=True, operation="compaction")
            except (FilesChanged, NotFound):
                self._discard(written)  # refused: nothing refers to the new objects
                raise
            except BaseException:
                # before the commit: never referenced. A commit that failed otherwise (a lost
                # reply) may have landed: its objects stay (an orphan costs space, never rows)
                self._discard(written, objects=not committing)
                raise
            self.faults("compaction_committed")
            self.catalog.committed(name, info.table_id, [e for e, _ in written], remove=removed)
            for entry, tmp in written:
                self.file_cache.adopt(entry.key, tmp)
                tmp.unlink(missing_ok=True)
            count += len(written) - len(removed)
            result.merged_files += len(removed)
            result.written_files += len(written)
            result.bytes_before += sum(f.size for g in groups for f in g)
            result.bytes_after += sum(e.size for e, _ in written)
            result.rows += sum(e.rows for e, _ in written)
            result.new_keys += [e.key for e, _ in written]
        result.files_after = count
        result.outcome, result.error = "compacted", ""

    def _check(self, name: str, keeper: LeaseKeeper, confirm: bool = False) -> None:
        if not (keeper.confirm() if confirm else keeper.held()):
            raise Abandoned(f"the compaction lease of {name!r} expired; the pass was dropped")
        if self._stop.is_set():
            raise Abandoned(f"the node is stopping; the compaction of {name!r} was dropped")

    def _merge(self, info: TableInfo, day: dt.date, group: list[FileEntry]) -> tuple[FileEntry, Path]:
        """Write the rows of ``group`` into one new object; returns its entry and local file."""
        tmp = self.tmp_dir / f"compact-{uuid.uuid4().hex}.parquet"
        stats = _Stats()
        keys = [f.key for f in group]
        with self.file_cache.pinned(keys):
            try:
                paths = [self.file_cache.path(k)[0] for k in keys]
                reader = pa.RecordBatchReader.from_batches(info.schema, self._batches(paths, info.schema, stats))
                _write_file(reader, tmp, info)
            except (NotFound, FileNotFoundError) as exc:  # retention (or a rewrite) took an input away
                tmp.unlink(missing_ok=True)
                raise FilesChanged(f"an input file of table {info.name!r} is gone", keys) from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        expected = sum(f.rows for f in group)
        if stats.rows != expected:
            tmp.unlink(missing_ok=True)
            raise Internal(f"compaction of {info.name!r} read {stats.rows} rows from {len(keys)} files, "
                           f"the manifest says {expected}: nothing was changed")
        mins, maxs = stats.result()
        seq = self.metadata.next_sequence(f"file:{self.node_id}")
        key = data_file_key(info.name, day, self.node_id, seq)
        try:
            self.store.put_file(key, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        entry = FileEntry(key=key, rows=stats.rows, size=tmp.stat().st_size, min_values=mins, max_values=maxs,
                          node_id=self.node_id, created_at=max(f.created_at for f in group),
                          columns=tuple(info.schema.names), wal_seq=0)
        return entry, tmp

    @staticmethod
    def _batches(paths: list[str], schema: pa.Schema, stats: _Stats) -> Iterator[pa.RecordBatch]:
        for path in paths:
            pf = pq.ParquetFile(path)
            try:
                for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS):
                    batch = conform_batch(batch, schema)
                    stats.add(batch)
                    yield batch
            finally:
                pf.close()

    def _discard(self, written: list[tuple[FileEntry, Path]], objects: bool = True) -> None:
        for _, tmp in written:
            tmp.unlink(missing_ok=True)
        if not written or not objects:
            return
        try:
            self.store.delete_many([e.key for e, _ in written])
        except MinioDBError as exc:  # an orphan object costs space, never correctness
            log.warning("could not delete uncommitted compaction output: %s", exc)

    # -- background ------------------------------------------------------------------------
    def start(self) -> Compactor:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()
