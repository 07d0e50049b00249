"""Hot tables: the committed files of small tables, decoded once into DuckDB memory.

A query over Parquet pays, every time, for binding ``read_parquet`` (file checks, footer
cache lookups, the cast projection) and for decoding the pages it reads. For a small table
that is most of the query: ``SELECT count(*)`` over a 1,000-row table takes DuckDB ~0.7 ms
from a Parquet view and ~0.45 ms from an in-memory table. So the committed files of a table
whose Parquet objects total at most ``query.hot_table_bytes`` are copied, once per set of
files, into a DuckDB table in the internal schema ``__hot``, and queries read that table
(plus the node's buffer, as always) instead of the files.

* The copy is made in the background after the first query that could use it; that query
  and any other until the copy is ready read the files, so no query ever waits for it.
* An entry is valid for exactly the file set (and column types) it was built from: a flush,
  a retention sweep or a schema change gives the table another file set, queries go back
  to the files until the new copy is ready, and the old copy is dropped once no running
  query reads it.
* A table with a declared ``sort_key`` (:mod:`flight_server.layout`) is copied in that order:
  each file is sorted on its own, the copy as a whole, so DuckDB's zone maps skip all but the
  row groups a key range falls in (a one-day range of a year of events: 1 of 25 row groups).
* ``query.hot_cache_bytes`` bounds the memory of all copies (DuckDB's own accounting of its
  in-memory tables); the least recently used copies are dropped first. 0 turns it off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb

from .cursors import quote

log = logging.getLogger("miniodb.query.hot")

SCHEMA = "__hot"
RETRY_AFTER = 30.0  # seconds before a failed copy of the same file set is tried again


@dataclass
class _Entry:
    signature: tuple
    table: str  # qualified DuckDB name
    nbytes: int
    users: int = 0
    retired: bool = False


def _memory_bytes(cur: duckdb.DuckDBPyConnection) -> int:
    rows = cur.execute("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'").fetchall()
    return int(rows[0][0]) if rows else 0


class HotTables:
    def __init__(self, db: duckdb.DuckDBPyConnection, max_table_bytes: int, max_total_bytes: int,
                 select_sql: Callable[[object], str]):
        self._db = db
        self.max_table_bytes = max_table_bytes
        self.max_total_bytes = max_total_bytes
        self._select_sql = select_sql  # ResolvedTable -> "SELECT <columns> FROM read_parquet(...)"
        self._lock = threading.Lock()
        self._current: OrderedDict[str, _Entry] = OrderedDict()  # table (lower) -> entry, LRU order
        self._retired: list[_Entry] = []
        self._pending: set[str] = set()
        self._failed: dict[tuple, float] = {}
        self._seq = 0
        self.builds = 0
        self._pool: ThreadPoolExecutor | None = None
        if self.enabled:
            self._db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miniodb-hot")

    @property
    def enabled(self) -> bool:
        return self.max_table_bytes > 0 and self.max_total_bytes > 0

    @staticmethod
    def signature(rt) -> tuple:
        return tuple(rt.paths), tuple(rt.columns), frozenset(rt.file_columns), tuple(rt.sort_key)

    def acquire(self, rt) -> tuple[str, Callable[[], None]] | None:
        """The in-memory copy of ``rt``'s files and its release, or None (read the files).

        A miss on an eligible table schedules the copy."""
        if not self.enabled or not rt.paths or rt.files_scanned != rt.files_total:
            return None  # off, nothing committed, or pruned (a big table: files it is)
        if rt.file_bytes > self.max_table_bytes:
            return None
        name = rt.name.lower()
        sig = self.signature(rt)
        with self._lock:
            entry = self._current.get(name)
            if entry is not None and entry.signature == sig:
                entry.users += 1
                self._current.move_to_end(name)
                return entry.table, lambda: self._release(entry)
            if name in self._pending or time.monotonic() < self._failed.get(sig, 0.0):
                return None
            self._pending.add(name)
            self._seq += 1
            target = f'{SCHEMA}."h{self._seq}"'
        select = self._select_sql(rt)
        if rt.sort_key:  # each file is sorted by the key; the copy is as a whole, so its zone maps are narrow
            select += " ORDER BY " + ", ".join(quote(c) + " NULLS LAST" for c in rt.sort_key)
        assert self._pool is not None
        try:
            self._pool.submit(self._build, name, sig, target, select, rt.file_bytes)
        except RuntimeError:  # the node is stopping: no more copies
            with self._lock:
                self._pending.discard(name)
        return None

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            drop = entry.retired and entry.users == 0
            if drop:
                self._retired.remove(entry)
        if drop and self._pool is not None:
            try:
                self._pool.submit(self._drop, entry.table)
            except RuntimeError:  # shutting down: the database goes with it
                pass

    def _build(self, name: str, sig: tuple, target: str, select: str, file_bytes: int) -> None:
        cur = self._db.cursor()
        try:
            before = _memory_bytes(cur)
            cur.execute(f"CREATE TABLE {target} AS {select}")
            nbytes = max(0, _memory_bytes(cur) - before)
        except duckdb.Error as exc:
            log.debug("hot copy of %s failed: %s", name, exc)
            with self._lock:
                self._pending.discard(name)
                self._failed[sig] = time.monotonic() + RETRY_AFTER
            cur.close()
            return
        drop: list[str] = []
        with self._lock:
            self._pending.discard(name)
            self.builds += 1
            old = self._current.pop(name, None)
            self._current[name] = _Entry(sig, target, nbytes)
            if old is not None:
                drop += self._retire_locked(old)
            total = sum(e.nbytes for e in self._current.values())
            while total > self.max_total_bytes and self._current:
                _, victim = self._current.popitem(last=False)  # least recently used first
                total -= victim.nbytes
                drop += self._retire_locked(victim)
        for table in drop:
            self._drop(table, cur)
        cur.close()
        log.debug("hot copy of %s: %s, %d bytes in memory (%d bytes of Parquet)", name, target, nbytes, file_bytes)

    def _retire_locked(self, entry: _Entry) -> list[str]:
        if entry.users == 0:
            return [entry.table]
        entry.retired = True
        self._retired.append(entry)
        return []

    def _drop(self, table: str, cur: duckdb.DuckDBPyConnection | None = None) -> None:
        own = cur is None
        cur = cur or self._db.cursor()
        try:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        except duckdb.Error as exc:
            log.debug("dropping hot copy %s failed: %s", table, exc)
        finally:
            if own:
                cur.close()

    def forget(self, table: str) -> None:
        """The table was dropped: its copy goes (once no query reads it)."""
        with self._lock:
            entry = self._current.pop(table.lower(), None)
            drop = self._retire_locked(entry) if entry is not None else []
        for t in drop:
            if self._pool is not None:
                try:
                    self._pool.submit(self._drop, t)
                except RuntimeError:  # stopping: the in-memory database goes with the node
                    pass

    def stats(self) -> dict:
        with self._lock:
            return {"tables": len(self._current), "bytes": sum(e.nbytes for e in self._current.values()),
                    "builds": self.builds, "retired": len(self._retired)}

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until the copies and drops scheduled so far are done (tests, benchmarks)."""
        if self._pool is not None:
            self._pool.submit(lambda: None).result(timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
