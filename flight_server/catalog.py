"""Catalog: table definitions and manifests over the MetadataStore, with a version-keyed cache.

Every lookup asks the store for the table's data version (one cheap call) and reuses the
cached definition and manifest while it has not moved, so planning stays flat as the
manifest grows and a commit made by any node is seen by the next query.

Metadata outage: if the store is unavailable, a table whose manifest this node has cached
keeps being served from that cache (ingest into it is still acknowledged, queries answer
from the cached files plus this node's buffer). Such an answer may miss files other nodes
committed during the outage; it never misses a row written through this node. A table the
node holds no cached definition of answers ``Unavailable`` with the store's message.

Hidden keys: a flush whose commit outcome is unknown (the reply was lost) hides its object
key until a later commit settles it, because its rows are back in this node's buffer;
counting the file too would show them twice.
"""

from __future__ import annotations

import fnmatch
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from clients.errors import AlreadyExists, InvalidRequest, NotFound, Unavailable

from .layout import layout_of
from .metadata.base import FileEntry, MetadataStore, TableConfig, TableInfo
from .paths import is_valid_table_name
from .schema import detect_time_column, normalize_schema


@dataclass(frozen=True)
class Manifest:
    version: int
    info: TableInfo
    files: tuple[FileEntry, ...]


def check_table_name(name: str) -> None:
    if not is_valid_table_name(name):
        raise InvalidRequest(
            f"invalid table name {name!r}: must match ^[A-Za-z][A-Za-z0-9_]{{0,63}}$", detail={"table": name}
        )


def validate_config(config: TableConfig) -> TableConfig:
    if config.buffer_size is not None and (not isinstance(config.buffer_size, int) or config.buffer_size <= 0):
        raise InvalidRequest("config buffer_size must be a positive integer")
    if config.flush_interval_seconds is not None and (
        not isinstance(config.flush_interval_seconds, int | float) or config.flush_interval_seconds <= 0
    ):
        raise InvalidRequest("config flush_interval_seconds must be a positive number")
    if config.retention_days is not None and (not isinstance(config.retention_days, int) or config.retention_days < 0):
        raise InvalidRequest("config retention_days must be a non-negative integer")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in dict(config.properties).items()):
        raise InvalidRequest("config properties must map strings to strings")
    return config


class Catalog:
    def __init__(self, metadata: MetadataStore, clock: Callable[[], float] = time.time):
        self.metadata = metadata
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, Manifest] = {}
        self._hidden: dict[str, frozenset[str]] = {}  # table -> keys of commits with unknown outcome

    # -- definitions -------------------------------------------------------------------
    def create(self, name: str, schema: pa.Schema, config: TableConfig | None = None,
               if_not_exists: bool = False, time_column: str | None = None) -> TableInfo:
        check_table_name(name)
        schema = normalize_schema(schema)
        if len(schema) == 0:
            raise InvalidRequest(f"table {name!r} needs at least one column")
        config = validate_config(config or TableConfig())
        tc = time_column or config.properties.get("time_column") or detect_time_column(schema)
        if tc and tc not in schema.names:
            raise InvalidRequest(f"time column {tc!r} is not a column of table {name!r}")
        layout_of(config.properties, schema, strict=True)  # a sort key or bloom column must exist
        info = TableInfo(name=name, table_id=uuid.uuid4().hex, schema=schema, config=config,
                         time_column=tc, schema_version=1, created_at=self._clock())
        try:
            return self.metadata.create_table(info)
        except AlreadyExists:
            if if_not_exists:
                return self.get(name)
            raise

    def find(self, name: str) -> TableInfo | None:
        m = self.manifest(name)
        return m.info if m else None

    def get(self, name: str) -> TableInfo:
        info = self.find(name)
        if info is None:
            raise NotFound(f"table {name!r} not found", detail={"table": name})
        return info

    def list(self, pattern: str | None = None) -> list[TableInfo]:
        tables = self.metadata.list_tables()
        if pattern:
            tables = [t for t in tables if fnmatch.fnmatchcase(t.name.lower(), pattern.lower())]
        return tables

    def update_schema(self, info: TableInfo, schema: pa.Schema) -> TableInfo:
        new = info.with_schema(schema)
        self.metadata.update_table(new, info.schema_version)
        self.invalidate(info.name)
        return new

    def drop(self, name: str) -> list[FileEntry]:
        check_table_name(name)
        files = self.metadata.drop_table(name)
        self.invalidate(name)
        return files

    # -- manifests ---------------------------------------------------------------------
    def manifests(self, names: Sequence[str]) -> list[Manifest | None]:
        """:meth:`manifest` of each table, their data versions read in one metadata round trip."""
        try:
            versions = self.metadata.data_versions(names)
        except Unavailable:
            return [self.manifest(n) for n in names]  # the outage rule of manifest()
        out = []
        for name, version in zip(names, versions, strict=True):
            with self._lock:
                cached = self._cache.get(name)
            if version and cached is not None and cached.version == version:
                out.append(self._visible(cached))
            else:
                out.append(self.manifest(name))
        return out

    def cached(self, name: str) -> Manifest | None:
        """The manifest this node last read of ``name`` (no metadata call; None: never read)."""
        with self._lock:
            m = self._cache.get(name)
        return self._visible(m) if m is not None else None

    def manifest(self, name: str) -> Manifest | None:
        """Definition + committed files of a table, refreshed only when its version moved."""
        with self._lock:
            cached = self._cache.get(name)
        try:
            version = self.metadata.data_version(name)
            if version == 0:
                self.invalidate(name)
                return None
            if cached is not None and cached.version == version:
                return self._visible(cached)
            info = self.metadata.get_table(name)
            if info is None:
                self.invalidate(name)
                return None
            files = tuple(self.metadata.list_files(name))
        except Unavailable as exc:
            if cached is not None:
                return self._visible(cached)  # outage: serve what this node holds (see module doc)
            raise Unavailable(f"table {name!r} cannot be resolved: this node holds no cached definition "
                              f"of it and {exc.message}", detail={"table": name}) from exc
        m = Manifest(version, info, files)
        with self._lock:
            cur = self._cache.get(name)
            if cur is None or cur.version <= version:
                self._cache[name] = m
        return self._visible(m)

    def _visible(self, m: Manifest) -> Manifest:
        hidden = self._hidden.get(m.info.name)
        if not hidden:
            return m
        return Manifest(m.version, m.info, tuple(f for f in m.files if f.key not in hidden))

    def hide(self, name: str, keys: list[str]) -> None:
        """Leave ``keys`` out of the table's manifest on this node (commit outcome unknown)."""
        with self._lock:
            self._hidden[name] = self._hidden.get(name, frozenset()) | frozenset(keys)

    def unhide(self, name: str, keys: list[str]) -> None:
        with self._lock:
            left = self._hidden.get(name, frozenset()) - frozenset(keys)
            if left:
                self._hidden[name] = left
            else:
                self._hidden.pop(name, None)

    def committed(self, name: str, table_id: str, add: Sequence[FileEntry], remove: Sequence[str] = ()) -> None:
        """After this node's own commit to ``name``: the cached manifest (if any) takes the
        change but keeps its version, so the next lookup still reloads the table from the store,
        while a metadata outage before that lookup serves a manifest holding the committed
        files. Dropping the cache instead (as :meth:`invalidate` does) would make the table
        unresolvable in that outage: the flushed rows already left this node's buffer, and its
        ingest would answer ``Unavailable``."""
        with self._lock:
            m = self._cache.get(name)
            if m is None:
                return
            if m.info.table_id != table_id:
                self._cache.pop(name, None)
                return
            gone = set(remove) | {f.key for f in add}
            files = sorted([f for f in m.files if f.key not in gone] + list(add), key=lambda f: f.key)
            self._cache[name] = Manifest(m.version, m.info, tuple(files))

    def invalidate(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)

    def invalidate_all(self) -> None:
        """Forget every cached definition and manifest (after a metadata restore)."""
        with self._lock:
            self._cache.clear()

    def stats(self, name: str) -> dict:
        m = self.manifest(name)
        if m is None:
            raise NotFound(f"table {name!r} not found", detail={"table": name})
        tc = m.info.time_column
        mins = [f.min_values.get(tc) for f in m.files if tc and f.min_values.get(tc) is not None]
        maxs = [f.max_values.get(tc) for f in m.files if tc and f.max_values.get(tc) is not None]
        return {
            "rows": sum(f.rows for f in m.files),
            "files": len(m.files),
            "bytes": sum(f.size for f in m.files),
            "time_column": tc,
            "time_min": min(mins) if mins else None,
            "time_max": max(maxs) if maxs else None,
            "data_version": m.version,
        }
