"""SQLiteMetadataStore: the embedded catalog (one file under the data dir), transactional."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from clients.errors import AlreadyExists, Conflict, InvalidRequest, NotFound, Unavailable

from .base import (
    SNAPSHOT_FORMAT,
    FileEntry,
    FilesChanged,
    MetadataStore,
    NodeInfo,
    TableInfo,
    WatermarkFenced,
)
from .sqlite_versions import SCHEMA as VERSIONS_SCHEMA
from .sqlite_versions import SQLiteVersions

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tables (
    name TEXT PRIMARY KEY, table_id TEXT NOT NULL, info TEXT NOT NULL,
    schema_version INTEGER NOT NULL, data_version INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS files (
    table_name TEXT NOT NULL, key TEXT NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (table_name, key));
CREATE TABLE IF NOT EXISTS watermarks (
    node_id TEXT NOT NULL, table_id TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (node_id, table_id));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY, info TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, state TEXT NOT NULL, rows INTEGER NOT NULL DEFAULT 0,
    node_id TEXT NOT NULL DEFAULT '', incarnation TEXT NOT NULL DEFAULT '', expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS batches_expiry ON batches(expires_at);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dropped (table_id TEXT PRIMARY KEY, name TEXT NOT NULL, dropped_at REAL NOT NULL);
"""


class SQLiteMetadataStore(SQLiteVersions, MetadataStore):
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.url = f"sqlite://{self.path}"
        self._clock = clock
        self._lock = threading.RLock()
        self._purged = 0.0  # when expired batch ids were last deleted
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA + VERSIONS_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"cannot open metadata database {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self):
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise Unavailable(f"metadata database unavailable: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    raise Unavailable(f"metadata database unavailable: {exc}") from exc

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"metadata database unavailable: {exc}") from exc

    # -- tables ------------------------------------------------------------------------
    def create_table(self, info: TableInfo) -> TableInfo:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM tables WHERE name=?", (info.name,)).fetchone():
                raise AlreadyExists(f"table {info.name!r} already exists")
            db.execute("DELETE FROM files WHERE table_name=?", (info.name,))  # a new incarnation starts empty
            db.execute(
                "INSERT INTO tables(name, table_id, info, schema_version, data_version) VALUES (?,?,?,?,?)",
                (info.name, info.table_id, orjson.dumps(info.to_json()).decode(), info.schema_version,
                 self._next_version(db)),
            )
        return info

    def get_table(self, name: str) -> TableInfo | None:
        rows = self._query("SELECT info FROM tables WHERE name=?", (name,))
        return TableInfo.from_json(orjson.loads(rows[0][0])) if rows else None

    def list_tables(self) -> list[TableInfo]:
        return [TableInfo.from_json(orjson.loads(r[0])) for r in self._query("SELECT info FROM tables ORDER BY name")]

    def update_table(self, info: TableInfo, expected_schema_version: int) -> TableInfo:
        with self._tx() as db:
            row = db.execute("SELECT table_id, schema_version FROM tables WHERE name=?", (info.name,)).fetchone()
            if not row or row[0] != info.table_id:
                raise NotFound(f"table {info.name!r} not found")
            if row[1] != expected_schema_version:
                raise Conflict(f"table {info.name!r} was changed concurrently (schema version {row[1]})")
            db.execute(
                "UPDATE tables SET info=?, schema_version=?, data_version=? WHERE name=?",
                (orjson.dumps(info.to_json()).decode(), info.schema_version, self._next_version(db), info.name),
            )
        return info

    def drop_table(self, name: str) -> list[FileEntry]:
        with self._tx() as db:
            row = db.execute("SELECT table_id FROM tables WHERE name=?", (name,)).fetchone()
            if not row:
                raise NotFound(f"table {name!r} not found")
            files = [FileEntry.from_json(orjson.loads(r[0]))
                     for r in db.execute("SELECT entry FROM files WHERE table_name=? ORDER BY key", (name,))]
            db.execute("DELETE FROM files WHERE table_name=?", (name,))
            db.execute("DELETE FROM watermarks WHERE table_id=?", (row[0],))
            db.execute("DELETE FROM tables WHERE name=?", (name,))
            db.execute("INSERT OR REPLACE INTO dropped(table_id, name, dropped_at) VALUES (?,?,?)",
                       (row[0], name, self._clock()))
        return files

    def was_dropped(self, table_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM dropped WHERE table_id=?", (table_id,)))

    # -- manifest ----------------------------------------------------------------------
    def commit_files(self, table, table_id, add, remove=(), watermark=None, batches=None, since=None,
                     strict=False, operation="commit") -> int:
        with self._tx() as db:
            row = db.execute("SELECT table_id FROM tables WHERE name=?", (table,)).fetchone()
            if not row or row[0] != table_id:
                raise NotFound(f"table {table!r} not found (dropped or re-created)")
            if strict and remove:
                present = {k for (k,) in db.execute(
                    f"SELECT key FROM files WHERE table_name=? AND key IN ({','.join('?' * len(remove))})",
                    (table, *remove))}
                missing = sorted(set(remove) - present)
                if missing:
                    raise FilesChanged(f"{len(missing)} file(s) of table {table!r} were replaced meanwhile", missing)
            if watermark is not None and since is not None:
                old = db.execute("SELECT seq FROM watermarks WHERE node_id=? AND table_id=?",
                                 (watermark[0], table_id)).fetchone()
                if old and old[0] >= since:
                    raise WatermarkFenced(f"rows of node {watermark[0]!r} in table {table!r} up to WAL "
                                          f"sequence {old[0]} are committed already", int(old[0]))
            version = self._next_version(db)
            self._log_commit(db, table, table_id, add, remove, version, operation)
            if remove:
                db.executemany("DELETE FROM files WHERE table_name=? AND key=?", [(table, k) for k in remove])
            if add:
                db.executemany(
                    "INSERT OR REPLACE INTO files(table_name, key, entry) VALUES (?,?,?)",
                    [(table, f.key, orjson.dumps(f.to_json()).decode()) for f in add],
                )
            if watermark is not None:
                node_id, seq = watermark
                db.execute(
                    "INSERT INTO watermarks(node_id, table_id, seq) VALUES (?,?,?) "
                    "ON CONFLICT(node_id, table_id) DO UPDATE SET seq=max(seq, excluded.seq)",
                    (node_id, table_id, int(seq)),
                )
            if batches:
                self._record_batches(db, batches)
            db.execute("UPDATE tables SET data_version=? WHERE name=?", (version, table))
        return version

    def _record_batches(self, db: sqlite3.Connection, batches: Mapping[str, int]) -> None:
        expires = self._clock() + self.batch_window
        db.executemany(
            "INSERT OR REPLACE INTO batches(batch_id, state, rows, expires_at) VALUES (?, 'done', ?, ?)",
            [(b, int(rows), expires) for b, rows in batches.items()])

    @staticmethod
    def _next_version(db: sqlite3.Connection) -> int:
        # One global counter: versions are unique across tables and never reused after a drop.
        db.execute(
            "INSERT INTO counters(name, value) VALUES ('__data_version', 1) "
            "ON CONFLICT(name) DO UPDATE SET value=value+1"
        )
        return db.execute("SELECT value FROM counters WHERE name='__data_version'").fetchone()[0]

    def list_files(self, table: str) -> list[FileEntry]:
        rows = self._query("SELECT entry FROM files WHERE table_name=? ORDER BY key", (table,))
        return [FileEntry.from_json(orjson.loads(r[0])) for r in rows]

    def data_version(self, table: str) -> int:
        rows = self._query("SELECT data_version FROM tables WHERE name=?", (table,))
        return rows[0][0] if rows else 0

    def get_watermark(self, node_id: str, table_id: str) -> int:
        rows = self._query("SELECT seq FROM watermarks WHERE node_id=? AND table_id=?", (node_id, table_id))
        return rows[0][0] if rows else 0

    # -- batch ids -----------------------------------------------------------------------
    def claim_batch(self, batch_id, node_id, incarnation, ttl):
        now = self._clock()
        with self._tx() as db:
            if now - self._purged >= 60.0:  # forget expired ids now and then (indexed)
                db.execute("DELETE FROM batches WHERE expires_at <= ?", (now,))
                self._purged = now
            row = db.execute("SELECT state, rows, node_id FROM batches WHERE batch_id=? AND expires_at > ?",
                             (batch_id, now)).fetchone()
            if row is not None and row[0] == "done":
                return "done", int(row[1]), ""
            if row is not None and row[2] != node_id:
                return "busy", 0, row[2]
            db.execute("INSERT OR REPLACE INTO batches(batch_id, state, node_id, incarnation, expires_at) "
                       "VALUES (?, 'run', ?, ?, ?)", (batch_id, node_id, incarnation, now + ttl))
        return "claimed", 0, node_id

    def renew_batch(self, batch_id, node_id, incarnation, ttl) -> bool:
        now = self._clock()
        with self._tx() as db:
            cur = db.execute("UPDATE batches SET expires_at=? WHERE batch_id=? AND state='run' AND node_id=? "
                             "AND incarnation=? AND expires_at > ?", (now + ttl, batch_id, node_id, incarnation, now))
            return cur.rowcount > 0

    def finish_batch(self, batch_id, rows) -> None:
        with self._tx() as db:
            self._record_batches(db, {batch_id: rows})

    def release_batch(self, batch_id, node_id, incarnation) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM batches WHERE batch_id=? AND state='run' AND node_id=? AND incarnation=?",
                       (batch_id, node_id, incarnation))

    # -- leases (a row with an expiry) ----------------------------------------------------
    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT owner FROM leases WHERE name=? AND expires_at > ?", (name, now)).fetchone()
            if row is not None and row[0] != owner:
                return False
            db.execute("INSERT OR REPLACE INTO leases(name, owner, expires_at) VALUES (?,?,?)", (name, owner, now + ttl))
        return True

    def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        with self._tx() as db:
            cur = db.execute("UPDATE leases SET expires_at=? WHERE name=? AND owner=? AND expires_at > ?",
                             (now + ttl, name, owner, now))
            return cur.rowcount > 0

    def release_lease(self, name: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE name=? AND owner=?", (name, owner))

    def lease_holder(self, name: str) -> str | None:
        rows = self._query("SELECT owner FROM leases WHERE name=? AND expires_at > ?", (name, self._clock()))
        return rows[0][0] if rows else None

    # -- counters ----------------------------------------------------------------------
    def next_sequence(self, name: str, count: int = 1) -> int:
        if count < 1:
            raise InvalidRequest("count must be positive")
        with self._tx() as db:
            db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+?",
                (name, count, count),
            )
            return db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()[0]

    # -- nodes -------------------------------------------------------------------------
    def register_node(self, node: NodeInfo, ttl: float) -> None:
        now = self._clock()
        info = NodeInfo(**{**node.to_json(), "last_seen": now})
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO nodes(node_id, info, expires_at) VALUES (?,?,?)",
                (node.node_id, orjson.dumps(info.to_json()).decode(), now + ttl),
            )

    def unregister_node(self, node_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM nodes WHERE node_id=?", (node_id,))

    def live_nodes(self) -> list[NodeInfo]:
        rows = self._query("SELECT info FROM nodes WHERE expires_at > ? ORDER BY node_id", (self._clock(),))
        return [NodeInfo.from_json(orjson.loads(r[0])) for r in rows]

    # -- snapshot ----------------------------------------------------------------------
    def snapshot(self) -> dict:
        with self._tx() as db:  # one consistent read
            tables = [orjson.loads(r[0]) for r in db.execute("SELECT info FROM tables ORDER BY name")]
            files: dict[str, list] = {}
            for name, entry in db.execute("SELECT table_name, entry FROM files ORDER BY table_name, key"):
                files.setdefault(name, []).append(orjson.loads(entry))
            versions = dict(db.execute("SELECT name, data_version FROM tables").fetchall())
            watermarks = {f"{n}|{t}": s for n, t, s in db.execute("SELECT node_id, table_id, seq FROM watermarks")}
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        return {"format": SNAPSHOT_FORMAT, "tables": tables, "files": files, "versions": versions,
                "watermarks": watermarks, "counters": counters}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise InvalidRequest(f"unsupported metadata snapshot format {snapshot.get('format')!r}")
        try:
            tables = [TableInfo.from_json(t) for t in snapshot.get("tables", [])]
            defined = {t.name for t in tables}
            files = {name: [FileEntry.from_json(e).to_json() for e in entries]
                     for name, entries in (snapshot.get("files") or {}).items() if name in defined}
            watermarks = [(*k.split("|", 1), int(seq)) for k, seq in (snapshot.get("watermarks") or {}).items()]
            counters = {str(k): int(v) for k, v in (snapshot.get("counters") or {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"metadata snapshot is malformed: {exc}") from exc
        if any(len(w) != 3 for w in watermarks):
            raise InvalidRequest("metadata snapshot is malformed: a watermark key is not 'node|table_id'")
        with self._tx() as db:
            # Versions only move forward, so caches keyed by data version never serve stale data;
            # counters too, so a file sequence handed out before the restore is never reused.
            current = dict(db.execute("SELECT name, value FROM counters").fetchall())
            floor = max([current.get("__data_version", 0), *counters.values(), 0])
            # the version logs describe the replaced manifests: history restarts from the restored
            # state (objects only they referenced are left in place, never deleted)
            for tbl in ("tables", "files", "watermarks", "counters", "versions", "version_base"):
                db.execute(f"DELETE FROM {tbl}")  # noqa: S608 - fixed names
            for name in current.keys() | counters.keys():
                db.execute("INSERT INTO counters(name, value) VALUES (?,?)",
                           (name, max(int(current.get(name, 0)), counters.get(name, 0))))
            db.execute(
                "INSERT INTO counters(name, value) VALUES ('__data_version', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=?", (floor, floor))
            for t in tables:
                db.execute(
                    "INSERT INTO tables(name, table_id, info, schema_version, data_version) VALUES (?,?,?,?,?)",
                    (t.name, t.table_id, orjson.dumps(t.to_json()).decode(), t.schema_version,
                     self._next_version(db)),
                )
            for name, entries in files.items():
                db.executemany(
                    "INSERT INTO files(table_name, key, entry) VALUES (?,?,?)",
                    [(name, e["key"], orjson.dumps(e).decode()) for e in entries],
                )
            db.executemany("INSERT INTO watermarks(node_id, table_id, seq) VALUES (?,?,?)", watermarks)

    # -- lifecycle ---------------------------------------------------------------------
    def check(self) -> None:
        self._query("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self._db.close()
