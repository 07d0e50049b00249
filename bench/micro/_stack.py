"""A node's storage stack in a temp folder, assembled in-process for the micro-benchmarks:
local object store, SQLite metadata, catalog, WAL, buffers, file cache, flusher."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from flight_server.buffer import BufferEntry, BufferManager
from flight_server.cache import FileCache
from flight_server.catalog import Catalog
from flight_server.metadata.base import TableInfo
from flight_server.metadata.sqlite import SQLiteMetadataStore
from flight_server.persist import Flusher
from flight_server.storage.local import LocalObjectStore
from flight_server.wal import WriteAheadLog


@dataclass
class Stack:
    root: Path
    store: LocalObjectStore
    metadata: SQLiteMetadataStore
    catalog: Catalog
    wal: WriteAheadLog
    buffers: BufferManager
    file_cache: FileCache
    flusher: Flusher

    def create(self, name: str, schema: pa.Schema) -> TableInfo:
        return self.catalog.create(name, schema)

    def buffer(self, info: TableInfo, data: pa.Table) -> None:
        """Ingest's durable half: WAL segment (fsync) then buffer entry."""
        seg = self.wal.append(info.name, info.table_id, data)
        self.buffers.append(info.name, info.table_id, info.schema,
                            BufferEntry(seg.seq, data, time.monotonic()))

    def close(self) -> None:
        self.metadata.close()


def make_stack(root: Path, sync: bool = True) -> Stack:
    store = LocalObjectStore(root / "objects")
    metadata = SQLiteMetadataStore(root / "metadata.sqlite3")
    catalog = Catalog(metadata)
    wal = WriteAheadLog(root / "wal", sync=sync)
    buffers = BufferManager(default_rows=10**9, default_interval=10**9, max_bytes=1 << 40)
    file_cache = FileCache(store, root / "cache", 1 << 30)
    flusher = Flusher("bench", catalog, store, wal, buffers, file_cache, root / "tmp")
    return Stack(root, store, metadata, catalog, wal, buffers, file_cache, flusher)
