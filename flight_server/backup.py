"""Metadata backups: JSON snapshots of the whole catalog in the object store, and restores.

A backup is :meth:`MetadataStore.snapshot` (tables with schemas and configs, the file
manifest, data versions, WAL watermarks, counters) plus when/who took it, written as one
object ``_meta/backups/backup_YYYYMMDD_HHMMSS.json`` (UTC) next to the data it describes.
Backups older than the retention (30 days by default) are deleted after each new backup.

Restore loads a backup (the latest, or a named file), compares it with the current metadata
and, unless ``dry_run``, replaces the metadata with it. The report says what changes: tables
added, removed or changed, file entries added and removed. Data versions and counters only
move forward across a restore (see the store contract), so no cache keyed by version can
serve an answer from before it, and no object key is ever reused.

A backup only helps if the objects it lists still exist. Dropping a table therefore does not
delete its objects while any backup exists: they are listed in a *trash* record
(``_meta/trash/…``) and deleted once they are older than the retention (every backup that
could list them has expired by then) and the current metadata does not use them again. A
restore that still finds a listed object missing leaves that entry out and reports it,
since an entry without its object would fail every query on the table.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from clients.errors import InvalidRequest, MinioDBError, NotFound

from . import paths
from .metadata.base import SNAPSHOT_FORMAT, MetadataStore
from .storage.base import ObjectStore

log = logging.getLogger("miniodb.backup")

SNAPSHOT_KEYS = ("format", "tables", "files", "versions", "watermarks", "counters")
REPORT_KEYS_LIMIT = 50  # keys listed by name in a report; the counts are always complete


class BackupService:
    def __init__(
        self,
        metadata: MetadataStore,
        store: ObjectStore,
        clock: Callable[[], float] = time.time,
        retention_days: int = 30,
        node_id: str = "",
        version: str = "",
    ):
        self.metadata = metadata
        self.store = store
        self._clock = clock
        self.retention_days = retention_days
        self.node_id = node_id
        self.version = version

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    # -- backup ------------------------------------------------------------------------
    def backup(self) -> dict:
        """Write a snapshot of all metadata now; returns what was written."""
        now = self._now()
        snap = self.metadata.snapshot()
        doc = {**snap, "created_at": now.isoformat(), "node_id": self.node_id, "miniodb_version": self.version}
        data = orjson.dumps(doc)
        key = paths.backup_key(now)
        self.store.put_bytes(key, data)
        pruned = self.prune()
        result = {
            "backup_file": paths.backup_name(now),
            "key": key,
            "created_at": now.isoformat(),
            "tables": len(snap["tables"]),
            "files": sum(len(v) for v in snap["files"].values()),
            "bytes": len(data),
            "pruned": pruned,
        }
        log.info("metadata backup %s: %d tables, %d files", result["backup_file"], result["tables"],
                 result["files"])
        return result

    def list(self, days: float | None = None) -> list[dict]:
        """Backups in the store, newest first; ``days`` keeps only those younger than that."""
        if days is not None and (not isinstance(days, int | float) or isinstance(days, bool) or days < 0):
            raise InvalidRequest("days must be a non-negative number")
        cutoff = self._now() - dt.timedelta(days=days) if days is not None else None
        out = []
        for obj in self.store.list(paths.BACKUP_PREFIX):
            name = obj.key.rsplit("/", 1)[-1]
            if not paths.BACKUP_FILE.match(name):
                continue
            when = paths.parse_backup_name(name) or obj.last_modified
            if cutoff is not None and when is not None and when < cutoff:
                continue
            out.append({"backup_file": name, "key": obj.key, "size": obj.size,
                        "created_at": when.isoformat() if when else None})
        out.sort(key=lambda b: (b["created_at"] or "", b["backup_file"]), reverse=True)
        return out

    def latest_age(self) -> float | None:
        """Seconds since the newest backup was taken (None: there is none)."""
        backups = self.list()
        if not backups or not backups[0]["created_at"]:
            return None
        return (self._now() - dt.datetime.fromisoformat(backups[0]["created_at"])).total_seconds()

    def prune(self) -> list[str]:
        """Delete backups older than the retention; returns their names."""
        if self.retention_days <= 0:
            return []
        cutoff = self._now() - dt.timedelta(days=self.retention_days)
        old = []
        for obj in self.store.list(paths.BACKUP_PREFIX):
            when = paths.parse_backup_name(obj.key)
            if when is not None and when < cutoff:
                old.append(obj.key)
        self.store.delete_many(old)
        return [k.rsplit("/", 1)[-1] for k in old]

    # -- restore -----------------------------------------------------------------------
    def _resolve(self, from_latest: bool, backup_file: str | None) -> str:
        if bool(from_latest) == bool(backup_file):
            raise InvalidRequest("restore needs exactly one of from_latest=true or backup_file")
        if from_latest:
            backups = self.list()
            if not backups:
                raise NotFound("there is no metadata backup to restore")
            return backups[0]["key"]
        if not isinstance(backup_file, str):
            raise InvalidRequest("backup_file must be a string")
        name = backup_file[len(paths.BACKUP_PREFIX):] if backup_file.startswith(paths.BACKUP_PREFIX) else backup_file
        if not paths.BACKUP_FILE.match(name):
            raise InvalidRequest(f"invalid backup file name {backup_file!r}: expected backup_YYYYMMDD_HHMMSS.json")
        return paths.BACKUP_PREFIX + name

    def load(self, key: str) -> dict:
        try:
            raw = self.store.get_bytes(key)
        except NotFound as exc:
            raise NotFound(f"backup {key.rsplit('/', 1)[-1]!r} not found") from exc
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"backup {key.rsplit('/', 1)[-1]!r} is not valid JSON") from exc
        if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
            fmt = doc.get("format") if isinstance(doc, dict) else None
            raise InvalidRequest(f"backup {key.rsplit('/', 1)[-1]!r} has unsupported format {fmt!r}")
        if not isinstance(doc.get("tables"), list) or not isinstance(doc.get("files", {}), dict):
            raise InvalidRequest(f"backup {key.rsplit('/', 1)[-1]!r} is malformed")
        return doc

    def restore(self, from_latest: bool = False, backup_file: str | None = None, dry_run: bool = False,
                on_restored: Callable[[], None] | None = None) -> dict:
        key = self._resolve(from_latest, backup_file)
        doc = self.load(key)
        snap = {k: doc.get(k, {} if k != "tables" else []) for k in SNAPSHOT_KEYS}
        missing = self._missing_objects(snap)
        if missing:
            snap["files"] = {t: [e for e in entries if e.get("key") not in missing]
                             for t, entries in snap["files"].items()}
        try:
            current: dict | None = self.metadata.snapshot()
            current_error = None
        except MinioDBError as exc:
            if exc.code == "unavailable":
                raise
            current, current_error = None, exc.message  # corrupt metadata: exactly what a restore is for
        report = diff(current, snap)
        report.update({
            "backup_file": key.rsplit("/", 1)[-1],
            "created_at": doc.get("created_at"),
            "dry_run": bool(dry_run),
            "applied": False,
        })
        report["files"]["missing"] = sorted(missing)[:REPORT_KEYS_LIMIT]
        report["files"]["missing_count"] = len(missing)
        if current_error:
            report["current_metadata_error"] = current_error
        if not dry_run:
            self.metadata.restore(snap)
            report["applied"] = True
            if on_restored is not None:
                on_restored()
            log.warning("metadata restored from %s: %s", report["backup_file"], {
                k: report["tables"][k] for k in ("added", "removed", "changed")})
        return report

    def _missing_objects(self, snap: dict) -> set[str]:
        missing: set[str] = set()
        for table, entries in (snap.get("files") or {}).items():
            if not entries:
                continue
            try:
                present = {o.key for o in self.store.list(paths.table_prefix(table))}
            except InvalidRequest:
                present = set()
            missing |= {e.get("key") for e in entries if e.get("key") not in present}
        return missing

    # -- objects of dropped tables -----------------------------------------------------
    def retire(self, table: str, keys: list[str]) -> None:
        """Objects of a dropped table: delete now, or keep them while a backup may list them."""
        if not keys:
            return
        if not any(True for _ in self.store.list(paths.BACKUP_PREFIX)):
            self.store.delete_many(keys)
            return
        record = {"table": table, "dropped_at": self._now().isoformat(), "node_id": self.node_id, "keys": keys}
        self.store.put_bytes(paths.trash_key(self._now(), table, uuid.uuid4().hex[:12]), orjson.dumps(record))

    def purge_trash(self) -> int:
        """Delete retired objects older than the retention that the metadata does not use."""
        cutoff = self._now() - dt.timedelta(days=max(0, self.retention_days))
        deleted = 0
        for obj in self.store.list(paths.TRASH_PREFIX):
            when = paths.parse_trash_time(obj.key)
            if when is None or when >= cutoff:
                continue
            try:
                record = orjson.loads(self.store.get_bytes(obj.key))
                table, keys = record["table"], list(record["keys"])
            except (NotFound, orjson.JSONDecodeError, KeyError, TypeError):
                self.store.delete(obj.key)
                continue
            in_use = {f.key for f in self.metadata.list_files(table)}  # a restore brought them back
            doomed = [k for k in keys if k not in in_use]
            self.store.delete_many(doomed)
            self.store.delete(obj.key)
            deleted += len(doomed)
        return deleted


def diff(current: dict | None, target: dict) -> dict:
    """What replacing ``current`` by ``target`` changes (``current`` None: unreadable)."""
    cur_tables = {t["name"]: t for t in (current or {}).get("tables", [])}
    new_tables = {t["name"]: t for t in target.get("tables", [])}
    changed = sorted(n for n in cur_tables.keys() & new_tables.keys() if cur_tables[n] != new_tables[n])
    cur_files = _keys(current or {})
    new_files = _keys(target)
    added = new_files - cur_files
    removed = cur_files - new_files
    per_table: dict[str, dict[str, int]] = {}
    for t, _k in added:
        per_table.setdefault(t, {"added": 0, "removed": 0})["added"] += 1
    for t, _k in removed:
        per_table.setdefault(t, {"added": 0, "removed": 0})["removed"] += 1
    return {
        "tables": {
            "added": sorted(new_tables.keys() - cur_tables.keys()),
            "removed": sorted(cur_tables.keys() - new_tables.keys()),
            "changed": changed,
            "unchanged": len(cur_tables.keys() & new_tables.keys()) - len(changed),
            "total": len(new_tables),
        },
        "files": {"added": len(added), "removed": len(removed), "by_table": per_table,
                  "total": len(new_files)},
    }


def _keys(snap: dict) -> set[tuple[str, Any]]:
    return {(t, e.get("key")) for t, entries in (snap.get("files") or {}).items() for e in entries}
