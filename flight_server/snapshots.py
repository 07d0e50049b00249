"""Table history for users: a table's files at a version or a time (time travel),
``system.snapshots`` and ``restore-table``. The log itself: :mod:`.metadata.versions`.

Version numbers are the global data versions commits return, so ``VERSION => N`` means "the
table as it was after its newest commit numbered ``<= N``": ``N`` need not be one of the
table's own versions, and one ``N`` reads several tables at one consistent point (the session
option ``miniodb.as_of_version``). A version that is not retained, or not reached yet, is
refused (NotFound / InvalidRequest), never answered from another state.

Restore: flush the table's buffers first (every live node's, through ``dml_hooks.cluster_flush``), then
one strict commit that makes the manifest equal the version's file set: the files added since
are removed, the files removed since are added back (their objects must still exist: the
vacuum keeps every object a retained version references). The restore is itself a new version.
It is one atomic commit, so a crash before it changes nothing and a crash after it loses nothing;
rows flushed concurrently (committed between reading the manifest and the commit) stay.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from clients.errors import Conflict, InvalidRequest, NotFound

from .catalog import Catalog
from .metadata.base import FileEntry, FilesChanged, MetadataStore, TableInfo
from .metadata.versions import Version, check_version
from .storage.base import ObjectStore

log = logging.getLogger("miniodb.snapshots")

RESTORE_ATTEMPTS = 5


def parse_timestamp(text: str) -> float:
    """An ISO timestamp (naive: UTC) -> epoch seconds."""
    try:
        when = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"invalid timestamp {text!r}: expected ISO 8601, e.g. '2025-01-31 12:00:00'") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def gone_error(table: str, version: int, keys: list[str]) -> NotFound:
    return NotFound(f"version {version} of table {table!r} cannot be read: {len(keys)} of its objects were "
                    f"deleted by the vacuum (e.g. {keys[0]!r})", detail={"table": table, "version": version})


class TableHistory:
    def __init__(self, catalog: Catalog, metadata: MetadataStore, store: ObjectStore,
                 faults: Callable[[str], None] = lambda step: None):
        self.catalog = catalog
        self.metadata = metadata
        self.store = store
        self.faults = faults  # crash points (tests only): restore_flushed, restore_committed

    def at(self, table: str, version: int | None = None, timestamp: float | None = None,
           check_objects: bool | str = False) -> tuple[TableInfo, Version, list[FileEntry]]:
        """The table's definition, the version read and its file set (sorted by key)."""
        info = self.catalog.get(table)
        vlog = self.metadata.version_log(info.table_id)
        if timestamp is not None:
            version = vlog.version_at(timestamp, info.name)
        else:
            version = check_version(version)
            newest = self.metadata.current_version()
            if version > newest:
                raise InvalidRequest(f"version {version} does not exist yet: the newest version is {newest}",
                                     detail={"table": info.name, "version": version})
        entry, files = vlog.files_at(version, info.name)
        if check_objects:  # every object (a HEAD each on S3): restore; queries check local objects only
            gone = [f.key for f in files if not self._exists(f.key, check_objects == "local")]
            if gone:
                raise gone_error(info.name, version, gone)
        return info, entry, files

    def _exists(self, key: str, local_only: bool) -> bool:
        path = self.store.local_path(key)
        if path is not None:
            return path.exists()
        return True if local_only else self.store.exists(key)

    def snapshots(self) -> list[dict]:
        """One row per retained version of every table (system.snapshots)."""
        out = []
        for info in self.catalog.list():
            vlog = self.metadata.version_log(info.table_id)
            for e, files, rows in vlog.summaries():
                out.append({"table_name": info.name, "version": e.version, "committed_at": e.committed_at,
                            "operation": e.operation, "files": files, "rows": rows, "added": len(e.added),
                            "removed": len(e.removed)})
        return out

    def restore(self, table: str, version: int, flush_everywhere: Callable[[str], None]) -> dict:
        """Make ``table`` hold exactly what it held at ``version`` (a new version)."""
        info, entry, files = self.at(table, version)  # refuse early, before flushing anything
        flush_everywhere(info.name)
        self.faults("restore_flushed")
        for _ in range(RESTORE_ATTEMPTS):
            info, entry, files = self.at(table, version, check_objects=True)
            current = {f.key: f for f in self.metadata.list_files(info.name)}
            target = {f.key: f for f in files}
            remove = sorted(current.keys() - target.keys())
            add = [target[k] for k in sorted(target.keys() - current.keys())]
            if not remove and not add:
                return {"table": info.name, "restored_from": entry.version,
                        "version": self.metadata.data_version(info.name), "added": 0, "removed": 0,
                        "files": len(files), "rows": sum(f.rows for f in files)}
            try:
                new = self.metadata.commit_files(info.name, info.table_id, add, remove=remove, strict=True,
                                                 operation="restore")
            except FilesChanged:
                continue  # a concurrent rewrite took some files: read the manifest again
            finally:
                self.catalog.invalidate(info.name)
            self.faults("restore_committed")
            log.info("table %s restored to version %d as version %d (+%d -%d files)", info.name, entry.version,
                     new, len(add), len(remove))
            return {"table": info.name, "restored_from": entry.version, "version": new, "added": len(add),
                    "removed": len(remove), "files": len(files), "rows": sum(f.rows for f in files)}
        raise Conflict(f"table {table!r} kept changing while restoring it; try again")
