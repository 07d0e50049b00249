"""Retention: committed files whose newest row is older than the table's ``retention_days``
are removed from the manifest (atomically, as a ``retention`` version). Their objects stay
until the vacuum (:mod:`.vacuum`) deletes them: older versions may still read them.

A file's age is the max of its time column when the table has one, else its commit time.
Buffered rows are never dropped by retention; they age out after their flush.
The removal commits strictly (``FilesChanged`` when a compaction or DML rewrite replaced one of
the files meanwhile; the sweep then re-reads the manifest and tries again), so retention and
compaction never fight: whoever commits second retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pyarrow as pa

from clients.errors import NotFound

from .catalog import Catalog
from .metadata.base import FileEntry, FilesChanged, TableInfo
from .periodic import Periodic
from .storage.base import ObjectStore

log = logging.getLogger("miniodb.retention")
DAY = 86400.0
RETRIES = 3  # fresh attempts of a table's sweep after a concurrent rewrite


def _newest_epoch(entry: FileEntry, info: TableInfo) -> float | None:
    tc = info.time_column
    raw = entry.max_values.get(tc) if tc else None
    if raw is None:
        return entry.created_at or None
    t = info.schema.field(tc).type
    if pa.types.is_timestamp(t):
        per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.unit]
        return raw / per_second
    if pa.types.is_date32(t):
        return raw * DAY
    return entry.created_at or None


def expired_files(info: TableInfo, files: list[FileEntry], days: int, now: float) -> list[FileEntry]:
    if days <= 0:
        return []
    cutoff = now - days * DAY
    out = []
    for f in files:
        newest = _newest_epoch(f, info)
        if newest is not None and newest < cutoff:
            out.append(f)
    return out


class RetentionSweeper:
    def __init__(self, catalog: Catalog, store: ObjectStore, default_days: int, interval: float = 300.0,
                 clock: Callable[[], float] = time.time, on_removed: Callable[[str, list[str]], None] | None = None):
        self.catalog = catalog
        self.store = store
        self.default_days = default_days
        self.interval = interval
        self._clock = clock
        self.on_removed = on_removed or (lambda table, keys: None)
        self._loop = Periodic("miniodb-retention", "retention sweep", self.sweep, lambda: self.interval)

    def sweep(self) -> dict[str, int]:
        """One pass over every table; returns removed file counts per table."""
        removed: dict[str, int] = {}
        now = self._clock()
        for info in self.catalog.list():
            days = info.config.retention_days if info.config.retention_days is not None else self.default_days
            if not days:
                continue
            n = self._sweep_table(info, days, now)
            if n:
                removed[info.name] = n
        return removed

    def _sweep_table(self, info: TableInfo, days: int, now: float) -> int:
        """Remove the table's expired files with a strict commit: a rewrite (compaction, DML)
        that replaced one of them meanwhile wins, and the sweep retries on the new file list."""
        for _ in range(RETRIES):
            m = self.catalog.manifest(info.name)
            if m is None or m.info.table_id != info.table_id:
                return 0
            old = expired_files(m.info, list(m.files), days, now)
            if not old:
                return 0
            keys = [f.key for f in old]
            try:
                self.catalog.metadata.commit_files(info.name, info.table_id, [], remove=keys, strict=True,
                                                   operation="retention")
            except FilesChanged:
                self.catalog.invalidate(info.name)
                continue
            except NotFound:
                return 0
            self.catalog.invalidate(info.name)
            self.on_removed(info.name, keys)
            log.info("retention removed %d files of %s older than %d days", len(keys), info.name, days)
            return len(keys)
        log.info("retention of %s: its files kept changing; retried next sweep", info.name)
        return 0

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
