"""Table resolution: a table name -> its committed Parquet files (pruned) + this node's buffer.

The (manifest, buffer) pair is taken under the table's commit lock, so a concurrent flush
moves rows from the buffer to a file either entirely before or entirely after the snapshot.
Files are pinned in the local cache for the life of the query and fetched in parallel.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from ..buffer import BufferManager
from ..cache import FileCache
from ..catalog import Catalog, Manifest
from ..metadata.base import FileEntry
from ..schema import conform
from ..stats import Constraint, prune
from .engine import QueryEngine, ResolvedTable


class TableResolver:
    def __init__(self, catalog: Catalog, buffers: BufferManager, file_cache: FileCache, engine: QueryEngine,
                 fetch_threads: int = 8):
        self.catalog = catalog
        self.buffers = buffers
        self.file_cache = file_cache
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=fetch_threads, thread_name_prefix="miniodb-fetch")

    def __call__(
        self,
        name: str,
        constraint_sets: list[Sequence[Constraint]] | None,
        files: Sequence[str] | None = None,
        include_buffer: bool = True,
        manifest: Manifest | None = None,  # read by the caller (a coordinator's snapshot)
    ) -> ResolvedTable | None:
        with self.buffers.commit_lock(name):
            m = manifest if manifest is not None else self.catalog.manifest(name)
            if m is None:
                return None
            buffer = None
            if include_buffer:
                with self.buffers.lock:
                    buf = self.buffers.get(m.info.name)
                    if buf is not None and buf.table_id == m.info.table_id:
                        buffer = buf.visible()
        info = m.info
        candidates: Sequence[FileEntry] = m.files
        if files is not None:
            wanted = set(files)
            candidates = [f for f in candidates if f.key in wanted]
        selected = prune(candidates, info.schema, constraint_sets)
        keys = [f.key for f in selected]
        self.file_cache.pin(keys)
        try:
            if len(keys) > 1:
                fetched = list(self._pool.map(self.file_cache.path, keys))
            else:
                fetched = [self.file_cache.path(k) for k in keys]
        except BaseException:
            self.file_cache.unpin(keys)
            raise
        if buffer is not None and not buffer.schema.equals(info.schema):
            buffer = conform(buffer, info.schema)
        file_columns = {c.lower() for f in selected for c in (f.columns or info.schema.names)}
        return ResolvedTable(
            name=info.name,
            columns=self.engine.duckdb_types(info),
            paths=[p for p, _ in fetched],
            file_columns=file_columns,
            duration_units={f.name.lower(): f.type.unit for f in info.schema if pa.types.is_duration(f.type)},
            buffer=buffer,
            files_total=len(m.files),
            files_scanned=len(selected),
            bytes_fetched=sum(n for _, n in fetched),
            file_bytes=sum(f.size for f in selected),
            release=lambda: self.file_cache.unpin(keys),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
