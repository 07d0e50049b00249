"""Vacuum: the only place that deletes objects of live tables (DROP TABLE deletes its own at once).

DML, compaction, restore-table and retention remove files from the manifest and leave the
objects in place; each removal is in the table's version log (:mod:`.metadata.versions`). A
run of the vacuum, on any node (periodically, every ``snapshot.vacuum_interval`` seconds, or
``miniodb vacuum``):

1. trims every version log to ``snapshot.retention_versions`` versions committed within
   ``snapshot.retention_seconds`` (the newest version is always kept); keys the trimmed
   versions removed become garbage;
2. collects the keys still referenced: every table's current manifest and every file set of a
   retained version;
3. deletes each candidate (garbage, keys removed by retained versions, every file of a dropped
   incarnation's history) that nothing references and whose removal was committed more than
   ``snapshot.grace_seconds`` ago (queries that were reading it have finished), then forgets it.

Idempotent and safe on several nodes at once: trimming is atomic in the store, deleting a
missing object is fine, and a key referenced again (a restore brought it back) is kept and
forgotten as garbage. Deletion goes through ``retire(table, keys)`` (the node passes the backup
service's, which keeps objects a metadata backup may still list).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import SnapshotSettings
from .metadata.base import MetadataStore
from .metadata.versions import trim_count
from .periodic import Periodic

log = logging.getLogger("miniodb.vacuum")


@dataclass
class VacuumResult:
    trimmed: int = 0  # versions folded out of the logs
    deleted: int = 0  # objects deleted
    pending: int = 0  # unreferenced objects still inside the grace period
    tables: dict[str, int] = field(default_factory=dict)  # table -> objects deleted

    def to_json(self) -> dict:
        return {"trimmed": self.trimmed, "deleted": self.deleted, "pending": self.pending, "tables": self.tables}


class Vacuum:
    def __init__(self, metadata: MetadataStore, settings: SnapshotSettings,
                 retire: Callable[[str, list[str]], None], clock: Callable[[], float] = time.time,
                 on_deleted: Callable[[str, list[str]], None] | None = None):
        self.metadata = metadata
        self.settings = settings
        self.retire = retire
        self._clock = clock
        self.on_deleted = on_deleted or (lambda table, keys: None)
        self._run_lock = threading.Lock()  # one run at a time on this node
        self._loop = Periodic("miniodb-vacuum", "vacuum", self.run, lambda: self.settings.vacuum_interval)

    def run(self, table: str | None = None) -> VacuumResult:
        """One pass (over ``table`` only, if given)."""
        with self._run_lock:
            return self._run(table)

    def _run(self, only: str | None) -> VacuumResult:
        s, md, now = self.settings, self.metadata, self._clock()
        out = VacuumResult()
        live = {t.table_id: t.name for t in md.list_tables()}
        referenced: set[str] = set()
        for name in live.values():
            referenced.update(f.key for f in md.list_files(name))
        candidates: dict[str, tuple[str, float]] = {}  # key -> (table name, removed at)
        dropped: list[tuple[str, str]] = []
        for tid, name in md.version_logs().items():
            vlog = md.version_log(tid)
            if tid in live:
                n = trim_count(vlog, s.retention_versions, s.retention_seconds, now)
                if n and only in (None, name):
                    out.trimmed += md.trim_versions(tid, vlog.entries[n - 1].version)
                    vlog = md.version_log(tid)
                referenced |= vlog.referenced()
                for k, t in vlog.removals().items():
                    candidates[k] = (name, t)
            elif md.was_dropped(tid) and only in (None, name):
                # a dropped incarnation: every file its history knew goes, from its last commit on
                last = vlog.entries[-1].committed_at if vlog.entries else 0.0
                for k in [*vlog.base, *(f.key for e in vlog.entries for f in e.added)]:
                    candidates[k] = (name, last)
                dropped.append((tid, name))
        names = {**md.version_logs(), **live}
        ids = {name: tid for tid, name in names.items()}
        done: set[str] = set()  # deleted already, while a retained version still names them
        for k, (tid, t) in md.garbage().items():
            if t < 0:
                done.add(k)
            else:
                candidates.setdefault(k, (names.get(tid, ""), t))
        stale = [k for k in done if k not in candidates]  # their version was trimmed since
        for k in done:
            candidates.pop(k, None)
        cutoff = now - s.grace_seconds
        doomed: dict[str, list[str]] = {}
        forget: list[str] = []
        waiting: set[str] = set()
        for k, (name, t) in sorted(candidates.items()):
            if only is not None and name != only:
                continue
            if k in referenced:
                forget.append(k)  # referenced again (restored): no longer garbage
            elif t <= cutoff:
                doomed.setdefault(name, []).append(k)
            else:
                out.pending += 1
                waiting.add(name)
        garbage = md.garbage()
        for name, keys in doomed.items():
            self.retire(name, keys)
            self.on_deleted(name, keys)
            out.tables[name] = len(keys)
            out.deleted += len(keys)
            log.info("vacuum deleted %d objects of %s", len(keys), name or "<unknown table>")
            forget.extend(k for k in keys if k in garbage)
            # keys a retained version still lists as removed: remember they are gone
            md.add_garbage(ids.get(name, ""), {k: -1.0 for k in keys if k not in garbage})
        md.forget_garbage(forget + stale)
        for tid, name in dropped:
            if name not in waiting:
                md.drop_version_log(tid)  # every object of its history is gone
        return out

    # -- background ------------------------------------------------------------------------
    def start(self) -> Vacuum:
        if self.settings.vacuum_interval > 0:
            self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()
