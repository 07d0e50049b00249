"""Persist: buffer snapshot -> Parquet (LZ4, statistics) -> object store -> catalog commit
-> WAL truncate. Runs on a background flusher (size and age policy) and on demand.

Failure handling: if anything fails (writing, the upload, the commit), the rows go back to
the buffer (still visible, still in the WAL) and the table is retried with capped
exponential backoff. Rows leave memory and the WAL on exactly two paths: after a durable
catalog commit (whose watermark covers their segments), or when the *catalog* confirms the
table was dropped or re-created (a different table_id). A storage "not found" (a bucket
that disappeared, say) is an outage like any other, never a drop.

A commit whose reply was lost (the metadata store went away mid-call) may or may not have
landed. Its key is remembered as *uncertain* and hidden from this node's queries (the rows
are back in the buffer); the next flush of the table commits its new file and removes the
uncertain keys in the same atomic step, so the rows end up in exactly one committed file
whichever way the lost commit went. After a crash the WAL watermark settles it instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clients.errors import MinioDBError, NotFound, Unavailable

from .batches import batch_rows
from .buffer import BufferManager
from .cache import FileCache
from .catalog import Catalog
from .layout import BLOOM_FPP, Layout, layout_of
from .metadata.base import FileEntry, TableInfo, WatermarkFenced
from .paths import data_file_key
from .schema import conform
from .stats import column_stats
from .storage.base import ObjectStore
from .wal import WriteAheadLog

log = logging.getLogger("miniodb.persist")

ROW_GROUP_ROWS = 122_880  # DuckDB's own row group size: good parallelism when reading
# Tables with a sort key: each row group covers a narrower key range, so a range or point query
# decodes fewer rows (one day of a year of events in 3 sorted 1M-row files: 9.5 -> 6.2 ms in
# DuckDB; full scans of the same files were not slower).
SORTED_ROW_GROUP_ROWS = 32_768
# LZ4_RAW, not zstd: DuckDB decompresses it far cheaper. Over TPC-H SF1 (22 queries, DuckDB
# CPU time) zstd files cost 1.26x the CPU of tpchgen's snappy files, LZ4 0.90x, snappy 1.00x;
# LZ4 files are ~1.4x the size of zstd ones. Objects are read far more often than written.
COMPRESSION = "lz4"


@dataclass(frozen=True)
class FlushResult:
    table: str
    rows: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


class Flusher:
    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        store: ObjectStore,
        wal: WriteAheadLog,
        buffers: BufferManager,
        file_cache: FileCache,
        tmp_dir: str | Path,
        clock: Callable[[], float] = time.time,
        on_flushed: Callable[[FlushResult], None] | None = None,
        max_backoff: float = 30.0,
        faults: Callable[[str], None] | None = None,
    ):
        self.node_id = node_id
        self.catalog = catalog
        self.metadata = catalog.metadata
        self.store = store
        self.wal = wal
        self.buffers = buffers
        self.file_cache = file_cache
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.glob("*.parquet"):
            stale.unlink(missing_ok=True)
        self._clock = clock
        self.on_flushed = on_flushed or (lambda r: None)
        self.max_backoff = max_backoff
        self.faults = faults or (lambda step: None)  # crash points for tests (flight_server/faults.py)
        self._table_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # table -> (attempts, next try monotonic)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: dict[str, str] = {}
        self._uncertain: dict[str, tuple[str, frozenset[str]]] = {}  # table -> (table_id, keys)
        self._probed = 0.0  # last backend probe while flushes back off (monotonic)

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._table_locks.setdefault(name, threading.Lock())

    # -- one table ---------------------------------------------------------------------
    def flush_table(self, name: str) -> FlushResult:
        """Flush every row buffered now, one file per chunk of about ``buffer.max_bytes`` (so
        one flush never holds more than that of spilled, memory-mapped rows in memory). A
        flush of the table in progress is waited for (the table's flush lock)."""
        upto = self.buffers.last_seq(name)
        total = FlushResult(name)
        while upto is not None:
            result, last = self._flush_chunk(name)
            total = FlushResult(name, total.rows + result.rows, total.files + result.files,
                                total.bytes + result.bytes, total.seconds + result.seconds)
            if last is None or last >= upto:
                break
        return total

    def _flush_chunk(self, name: str) -> tuple[FlushResult, int | None]:
        """Flush the oldest pending rows (:meth:`BufferManager.take_for_flush`); the result
        and the highest WAL sequence committed (None: nothing was)."""
        started = time.perf_counter()
        with self._lock_for(name):
            batch = self.buffers.take_for_flush(name)
            if batch is None:
                return FlushResult(name), None
            table_id, schema = batch.table_id, batch.schema
            key = None
            committing = False
            prior_id, settle = self._uncertain.get(name, (table_id, frozenset()))
            if prior_id != table_id:  # left over from a dropped incarnation
                self._forget_uncertain(name)
                settle = frozenset()
            tmp = self.tmp_dir / f"{uuid.uuid4().hex}.parquet"
            try:
                data = pa.concat_tables([conform(e.data, schema) for e in batch.entries])
                info = self.catalog.find(name)
                info = info if info is not None and info.table_id == table_id else None
                time_column = info.time_column if info is not None else None
                data = write_table_file(data, tmp, info)
                self.faults("parquet_written")
                size = tmp.stat().st_size
                mins, maxs = column_stats(data)
                seq = self.metadata.next_sequence(f"file:{self.node_id}")
                key = data_file_key(name, self._day(data, time_column, mins), self.node_id, seq)
                self.store.put_file(key, tmp)
                self.faults("object_put")
                entry = FileEntry(key=key, rows=data.num_rows, size=size, min_values=mins, max_values=maxs,
                                  node_id=self.node_id, created_at=self._clock(), columns=tuple(schema.names),
                                  wal_seq=max(batch.seqs))
                with self.buffers.commit_lock(name):
                    committing = True
                    try:
                        # fenced: refused if this node's rows from min(seqs) on are committed already
                        # (adopted from the mirrored WAL while this node looked dead). With an
                        # uncertain commit pending, our own lost commit may have moved the
                        # watermark: the settle keys resolve that case instead.
                        self.metadata.commit_files(name, table_id, [entry], remove=sorted(settle),
                                                   watermark=(self.node_id, max(batch.seqs)),
                                                   batches=batch_rows(batch.entries),
                                                   since=None if settle else min(batch.seqs),
                                                   operation="flush")
                    except WatermarkFenced as fenced:
                        committing = False
                        return self._fenced(batch, key, tmp, fenced.watermark), None
                    self.faults("metadata_committed")
                    self.faults("commit_reply_lost")
                    committing = False
                    self.buffers.mark_committed(batch)
            except BaseException as exc:
                tmp.unlink(missing_ok=True)
                if self._dropped(name, table_id):
                    # the catalog confirms the table is gone (or replaced): its rows must not come back
                    self.buffers.discard_dropped(batch)
                    if key:
                        self._delete_quietly([key])
                    self._forget_uncertain(name)
                    self.wal.remove(batch.seqs, mapped=batch.spilled_seqs)
                    log.info("flush of %s abandoned: the table was dropped (%s)", name, exc)
                    return FlushResult(name), None
                if committing and key:
                    self._uncertain[name] = (table_id, settle | {key})
                    self.catalog.hide(name, [key])
                self.buffers.put_back(batch)  # still in the WAL: retried, never lost
                if isinstance(exc, NotFound):  # the store does not know the table, yet never dropped it
                    lost = Unavailable(f"cannot flush table {name!r}: the metadata store does not know it and "
                                       "has no record of its drop (was it restored empty, or pointed at another "
                                       "deployment?); its rows stay in the buffer and the WAL until the metadata "
                                       "is restored (miniodb restore)")
                    self.last_error[name] = lost.message
                    raise lost from exc
                self.last_error[name] = getattr(exc, "message", "") or str(exc) or type(exc).__name__
                raise
            self.catalog.committed(name, table_id, [entry], remove=sorted(settle))
            if settle:
                self._forget_uncertain(name)
            if tmp.exists():
                self.file_cache.adopt(key, tmp)
                tmp.unlink(missing_ok=True)
            # after the durable commit (the watermark covers them); spilled ones are unlinked
            self.wal.remove(batch.seqs, mapped=batch.spilled_seqs)
            self._failures.pop(name, None)
            self.last_error.pop(name, None)
            result = FlushResult(name, data.num_rows, 1, size, time.perf_counter() - started)
            log.info("flushed %s: %d rows, %d bytes -> %s", name, result.rows, size, key)
            self.on_flushed(result)
            return result, max(batch.seqs)

    def _fenced(self, batch, key: str, tmp: Path, watermark: int) -> FlushResult:
        """Rows up to ``watermark`` were committed by another node (adoption): they leave the
        buffer and the WAL, the uploaded object is never referenced, the rest flush again."""
        tmp.unlink(missing_ok=True)
        gone = self.buffers.settle_committed_elsewhere(batch, watermark)
        self._delete_quietly([key])
        # the watermark is a durable commit of these rows
        self.wal.remove([e.seq for e in gone], mapped=[e.seq for e in gone if e.spilled])
        log.warning("flush of %s: %d rows up to WAL sequence %d were committed already by another node "
                    "(this node's mirrored WAL was adopted); they are dropped here", batch.name,
                    sum(e.rows for e in gone), watermark)
        self.catalog.invalidate(batch.name)
        self.request()
        return FlushResult(batch.name)

    def _dropped(self, name: str, table_id: str) -> bool:
        """True only when the catalog confirms that this incarnation was dropped (or replaced):
        its tombstone exists. A storage error (a missing bucket or object included), an
        unreachable metadata store, or one that does not know the table at all (it came back
        empty) is never taken for a drop: the rows go back to the buffer and stay in the WAL."""
        try:
            info = self.metadata.get_table(name)
            if info is not None and info.table_id == table_id:
                return False
            return self.metadata.was_dropped(table_id)
        except Exception:  # noqa: BLE001 - unknown is not a confirmed drop
            return False

    def _delete_quietly(self, keys: list[str]) -> None:
        try:
            self.store.delete_many(keys)
        except MinioDBError as exc:  # an orphan object costs space, never correctness
            log.warning("could not delete objects %s: %s", keys, exc)

    def _forget_uncertain(self, name: str) -> None:
        """Settled (or abandoned) uncertain commits: their objects are no longer referenced."""
        _, keys = self._uncertain.pop(name, ("", frozenset()))
        if not keys:
            return
        self.catalog.unhide(name, list(keys))
        self.file_cache.discard(list(keys))
        self._delete_quietly(sorted(keys))

    @staticmethod
    def _day(data: pa.Table, time_column: str | None, mins: dict) -> dt.date:
        if time_column and time_column in data.column_names and mins.get(time_column) is not None:
            t = data.schema.field(time_column).type
            raw = mins[time_column]
            try:
                if pa.types.is_timestamp(t):  # plain arithmetic: no pandas import on the flush path
                    per_day = 86_400 * {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.unit]
                    return dt.date(1970, 1, 1) + dt.timedelta(days=raw // per_day)
                if pa.types.is_date32(t):
                    return dt.date(1970, 1, 1) + dt.timedelta(days=raw)
            except (ValueError, OverflowError, pa.ArrowInvalid):
                pass
        return dt.datetime.now(dt.UTC).date()

    def flush_all(self) -> list[FlushResult]:
        results = []
        errors = []
        for name in self.buffers.names():
            try:
                results.append(self.flush_table(name))
            except Exception as exc:  # noqa: BLE001 - flush the others, report the first
                errors.append(exc)
                log.warning("flush of %s failed: %s", name, exc)
        if errors:
            raise errors[0]
        return results

    # -- background --------------------------------------------------------------------
    def request(self) -> None:
        """Wake the background flusher: it flushes every table that is due."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="miniodb-flusher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        lower_thread_priority()  # flushing is background work: ingest and queries go first
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            if self._failures and now - self._probed >= 1.0:
                self._probed = now
                self._retry_if_recovered(now)
            for name in self.buffers.due():
                attempts, next_try = self._failures.get(name, (0, 0.0))
                if now < next_try:
                    continue
                try:
                    self.flush_table(name)
                except MinioDBError as exc:
                    self._backoff(name, attempts, exc)
                except Exception as exc:  # noqa: BLE001 - keep flushing other tables
                    log.exception("flush of %s failed", name)
                    self._backoff(name, attempts, exc)

    def _retry_if_recovered(self, now: float) -> None:
        """While flushes back off, probe the backends once a second; once both answer again,
        retry at once instead of waiting out a backoff that grew during a long outage."""
        try:
            self.metadata.check()
            self.store.check()
        except Exception:  # noqa: BLE001 - still down: keep backing off
            return
        for name, (attempts, next_try) in list(self._failures.items()):
            if next_try > now:
                self._failures[name] = (attempts, now)

    def _backoff(self, name: str, attempts: int, exc: BaseException) -> None:
        delay = min(self.max_backoff, 0.5 * 2**attempts)
        self._failures[name] = (attempts + 1, time.monotonic() + delay)
        self.last_error[name] = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        log.warning("flush of %s failed (attempt %d), retrying in %.1fs: %s", name, attempts + 1, delay, exc)


def write_table_file(data: pa.Table, path: Path, info: TableInfo | None) -> pa.Table:
    """Write ``data`` as a data file of the table ``info`` (the one entry point of flush, WAL
    adoption and compaction): applies the table's layout (:mod:`.layout`: sorted by its sort key,
    in Arrow C++, with ``sorting_columns`` in the footer; bloom filters on its declared columns),
    then :func:`write_parquet`. Returns the rows as written (sorted when the table has a key).
    ``info`` None (a table dropped meanwhile): written as it comes."""
    layout = layout_of(info.config.properties, data.schema) if info is not None else Layout()
    sorting = None
    group_rows = SORTED_ROW_GROUP_ROWS if layout.sort_key else ROW_GROUP_ROWS
    if layout.sort_key and data.num_rows:
        order = pc.sort_indices(data, sort_keys=[(c, "ascending", "at_end") for c in layout.sort_key])
        if not pc.all(pc.equal(order, pa.array(np.arange(data.num_rows, dtype=np.uint64)))).as_py():
            data = data.take(order)  # rows that arrive in key order (time series) skip the copy
        sorting = pq.SortingColumn.from_ordering(data.schema, [(c, "ascending") for c in layout.sort_key],
                                                 null_placement="at_end")
    blooms = None
    if layout.bloom_filter_columns and data.num_rows:
        ndv = max(1, min(data.num_rows, group_rows))
        blooms = {c: {"ndv": ndv, "fpp": BLOOM_FPP} for c in layout.bloom_filter_columns}
    write_parquet(data, path, data.schema, sorting_columns=sorting, bloom_filter_options=blooms,
                  row_group_size=group_rows if layout.sort_key else None)
    return data


def write_parquet(data: pa.Table, path: Path, schema: pa.Schema, **layout) -> None:
    """Write a data file the way every node writes them (flush and WAL adoption): LZ4_RAW
    (see :data:`COMPRESSION`), min/max statistics per row group (DuckDB prunes row groups on them, e.g. by date),
    DuckDB's row-group size, dictionaries where they pay (see :func:`dictionary_columns`), and
    DECIMAL columns stored as INT32/INT64 (precision <= 18) instead of pyarrow's default
    FIXED_LEN_BYTE_ARRAY, which DuckDB decodes several times slower. ``layout``:
    ``sorting_columns``, ``bloom_filter_options`` and ``row_group_size`` from :func:`write_table_file`."""
    options = {"row_group_size": ROW_GROUP_ROWS, **{k: v for k, v in layout.items() if v is not None}}
    pq.write_table(data, path, **parquet_options(data, schema), **options)


def parquet_options(sample: pa.Table, schema: pa.Schema) -> dict:
    """The Parquet writer options of every data file (``pq.write_table`` / ``pq.ParquetWriter``);
    ``sample``: the first rows, which decide the dictionary columns."""
    return {"compression": COMPRESSION, "write_statistics": True, "store_decimal_as_integer": True,
            "use_dictionary": dictionary_columns(sample, schema)}


DICTIONARY_SAMPLE_ROWS = 65_536
DICTIONARY_MAX_SHARE = 0.25  # distinct values / rows in the sample, at most


def dictionary_columns(data: pa.Table, schema: pa.Schema | None = None) -> list[str]:
    """Columns worth dictionary encoding: text and binary always; any other column whose first
    rows are repetitive (at most a quarter distinct: TPC-H's quantities, discounts, dates).
    DuckDB scans those dictionary-encoded about twice as fast as plain; high-cardinality
    numbers stay plain (smaller, and three times faster to write than through a
    dictionary that overflows)."""
    schema = schema if schema is not None else data.schema
    sample = data.slice(0, DICTIONARY_SAMPLE_ROWS)
    limit = max(1, int(sample.num_rows * DICTIONARY_MAX_SHARE))
    out = []
    for f in schema:
        t = f.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
            out.append(f.name)
        elif (pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_temporal(t)
              or pa.types.is_floating(t)) and sample.num_rows and f.name in sample.column_names:
            if pc.count_distinct(sample.column(f.name)).as_py() <= limit:
                out.append(f.name)
    return out


def lower_thread_priority(increment: int = 10) -> None:
    """Raise the nice value of the calling thread only (Linux: threads have their own)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError):
        pass
