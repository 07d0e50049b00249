"""The version log of the SQLite store (mixed into SQLiteMetadataStore); model: :mod:`.versions`.

Tables: ``versions`` (one row per commit of a table incarnation), ``version_base`` (the file
set before a log's oldest entry) and ``garbage`` (objects folded out of every log, awaiting
the vacuum). The commit's row is written inside the commit's own transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from .base import FileEntry
from .versions import Version, VersionLog, fold

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    table_id TEXT NOT NULL, version INTEGER NOT NULL, table_name TEXT NOT NULL,
    committed_at REAL NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (table_id, version));
CREATE TABLE IF NOT EXISTS version_base (
    table_id TEXT NOT NULL, key TEXT NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (table_id, key));
CREATE TABLE IF NOT EXISTS garbage (key TEXT PRIMARY KEY, table_id TEXT NOT NULL, removed_at REAL NOT NULL);
"""


class SQLiteVersions:
    def _log_commit(self, db: sqlite3.Connection, table: str, table_id: str, add: Sequence[FileEntry],
                    remove: Sequence[str], version: int, operation: str) -> None:
        """Append the commit to the log (called inside the commit's transaction, before the
        manifest changes: an empty log first takes the current manifest as its base)."""
        if db.execute("SELECT 1 FROM versions WHERE table_id=? LIMIT 1", (table_id,)).fetchone() is None:
            db.execute("DELETE FROM version_base WHERE table_id=?", (table_id,))
            db.execute("INSERT INTO version_base(table_id, key, entry) "
                       "SELECT ?, key, entry FROM files WHERE table_name=?", (table_id, table))
        v = Version(version, round(self._clock(), 6), operation or "commit", tuple(add), tuple(remove))
        db.execute("INSERT OR REPLACE INTO versions(table_id, version, table_name, committed_at, entry) "
                   "VALUES (?,?,?,?,?)", (table_id, version, table, v.committed_at, orjson.dumps(v.to_json()).decode()))

    @staticmethod
    def _read_log(db: sqlite3.Connection, table_id: str) -> VersionLog:
        base = {k: FileEntry.from_json(orjson.loads(e)) for k, e in db.execute(
            "SELECT key, entry FROM version_base WHERE table_id=?", (table_id,))}
        entries = tuple(Version.from_json(orjson.loads(e)) for (e,) in db.execute(
            "SELECT entry FROM versions WHERE table_id=? ORDER BY version", (table_id,)))
        return VersionLog(table_id, base, entries)

    def version_log(self, table_id: str) -> VersionLog:
        with self._tx() as db:  # one consistent read
            return self._read_log(db, table_id)

    def version_logs(self) -> dict[str, str]:
        rows = self._query("SELECT table_id, table_name FROM versions v "
                           "WHERE version=(SELECT max(version) FROM versions WHERE table_id=v.table_id)")
        return dict(rows)

    def trim_versions(self, table_id: str, upto: int) -> int:
        with self._tx() as db:
            log = self._read_log(db, table_id)
            base, folded, garbage = fold(log, upto)
            if not folded:
                return 0
            db.execute("DELETE FROM version_base WHERE table_id=?", (table_id,))
            db.executemany("INSERT INTO version_base(table_id, key, entry) VALUES (?,?,?)",
                           [(table_id, k, orjson.dumps(f.to_json()).decode()) for k, f in base.items()])
            db.executemany("DELETE FROM versions WHERE table_id=? AND version=?", [(table_id, v) for v in folded])
            db.executemany("INSERT OR REPLACE INTO garbage(key, table_id, removed_at) VALUES (?,?,?)",
                           [(k, table_id, t) for k, t in garbage.items()])
        return len(folded)

    def drop_version_log(self, table_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM versions WHERE table_id=?", (table_id,))
            db.execute("DELETE FROM version_base WHERE table_id=?", (table_id,))

    def garbage(self) -> dict[str, tuple[str, float]]:
        return {k: (tid, float(t)) for k, tid, t in self._query("SELECT key, table_id, removed_at FROM garbage")}

    def add_garbage(self, table_id: str, removed) -> None:
        if removed:
            with self._tx() as db:
                db.executemany("INSERT OR REPLACE INTO garbage(key, table_id, removed_at) VALUES (?,?,?)",
                               [(k, table_id, float(t)) for k, t in removed.items()])

    def forget_garbage(self, keys: list[str]) -> None:
        if keys:
            with self._tx() as db:
                db.executemany("DELETE FROM garbage WHERE key=?", [(k,) for k in keys])

    def current_version(self) -> int:
        rows = self._query("SELECT value FROM counters WHERE name='__data_version'")
        return int(rows[0][0]) if rows else 0
