"""Table resolution: a table name -> its committed Parquet files (pruned) + this node's buffer.

The (manifest, buffer) pair is taken under the table's commit lock, so a concurrent flush
moves rows from the buffer to a file either entirely before or entirely after the snapshot.
Files are pinned in the local cache for the life of the query and fetched in parallel.
A time-travel reference (:meth:`TableResolver.at`) binds the files of a retained version
(:mod:`flight_server.snapshots`), without any buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from clients.errors import InvalidRequest, NotFound

from ..buffer import BufferManager
from ..cache import FileCache
from ..catalog import Catalog, Manifest
from ..layout import SORT_KEY, layout_of
from ..metadata.base import FileEntry, TableInfo
from ..schema import conform
from ..snapshots import TableHistory, gone_error, parse_timestamp
from ..stats import Constraint, prune
from .analyze import AtRef
from .engine import QueryEngine, ResolvedTable


class TableResolver:
    def __init__(self, catalog: Catalog, buffers: BufferManager, file_cache: FileCache, engine: QueryEngine,
                 fetch_threads: int = 8):
        self.catalog = catalog
        self.buffers = buffers
        self.file_cache = file_cache
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=fetch_threads, thread_name_prefix="miniodb-fetch")
        self.history: TableHistory | None = None  # time travel (set by the node)

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
        return self._resolved(info.name, info, selected, len(m.files), buffer)

    def at(self, ref: AtRef) -> ResolvedTable:
        """A time-travel reference: the table's committed files at that version (no buffer),
        bound under the reference's view name. Refused (NotFound / InvalidRequest) when the
        version is not retained or its objects are gone: never another state's rows."""
        if self.history is None:
            raise InvalidRequest("time travel is not available on this node")
        if ref.value is None:
            raise InvalidRequest(f"AT ({ref.unit} => ...) of table {ref.name!r} needs a literal value")
        if ref.unit == "VERSION":
            info, e, selected = self.history.at(ref.name, version=ref.value, check_objects="local")
        elif ref.unit == "TIMESTAMP":
            info, e, selected = self.history.at(ref.name, timestamp=parse_timestamp(ref.value), check_objects="local")
        else:
            raise InvalidRequest(f"AT ({ref.unit} => ...) is not supported: use VERSION or TIMESTAMP")
        try:
            return self._resolved(ref.view, info, selected, len(selected), None)
        except NotFound as exc:  # an object fetched from S3 was gone (vacuumed meanwhile)
            raise gone_error(info.name, e.version, [str(exc)]) from exc

    def _resolved(self, name: str, info: TableInfo, selected: Sequence[FileEntry], files_total: int,
                  buffer: pa.Table | None) -> ResolvedTable:
        keys = [f.key for f in selected]
        self.file_cache.pin(keys)
        try:
            fetched = self._fetch(keys)
        except BaseException:
            self.file_cache.unpin(keys)
            raise
        if buffer is not None and not buffer.schema.equals(info.schema):
            buffer = conform(buffer, info.schema)
        file_columns = {c.lower() for f in selected for c in (f.columns or info.schema.names)}
        return ResolvedTable(
            name=name,
            columns=self.engine.duckdb_types(info),
            paths=[p for p, _ in fetched],
            file_columns=file_columns,
            duration_units={f.name.lower(): f.type.unit for f in info.schema if pa.types.is_duration(f.type)},
            buffer=buffer,
            files_total=files_total,
            files_scanned=len(selected),
            bytes_fetched=sum(n for _, n in fetched),
            file_bytes=sum(f.size for f in selected),
            release=lambda: self.file_cache.unpin(keys),
            sort_key=_sort_key(info),
        )

    def _fetch(self, keys: list[str]) -> list[tuple[str, int]]:
        """(local path, bytes downloaded) per key: files already local need no thread hop;
        several missing ones download in parallel."""
        found = [self.file_cache.local(k) for k in keys]
        missing = [k for k, p in zip(keys, found, strict=True) if p is None]
        if not missing:
            return [(p, 0) for p in found]
        got = dict(zip(missing, self._pool.map(self.file_cache.path, missing) if len(missing) > 1
                       else [self.file_cache.path(missing[0])], strict=True))
        return [(p, 0) if p is not None else got[k] for k, p in zip(keys, found, strict=True)]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_SORT_KEYS: dict[tuple[str, int, str], tuple[str, ...]] = {}  # (table id, schema version, property) -> key


def _sort_key(info: TableInfo) -> tuple[str, ...]:
    """The table's declared sort key (``sort_key`` property), checked against its schema; one
    dictionary lookup per query (this runs for every table a query reads)."""
    declared = info.config.properties.get(SORT_KEY) if info.config is not None else None
    if not declared:
        return ()
    cache_key = (info.table_id, info.schema_version, declared)
    found = _SORT_KEYS.get(cache_key)
    if found is None:
        if len(_SORT_KEYS) >= 1024:
            _SORT_KEYS.clear()
        found = _SORT_KEYS[cache_key] = tuple(layout_of({SORT_KEY: declared}, info.schema).sort_key or ())
    return found
