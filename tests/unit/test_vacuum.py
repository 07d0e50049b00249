"""The vacuum over a real SQLite store and local object store, with a clock the test moves:
the grace period, retained versions, objects brought back by a restore, dropped tables."""

from __future__ import annotations

import pyarrow as pa

from flight_server.config import SnapshotSettings
from flight_server.metadata.base import FileEntry, TableInfo
from flight_server.metadata.sqlite import SQLiteMetadataStore
from flight_server.storage.local import LocalObjectStore
from flight_server.vacuum import Vacuum


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(tmp_path, **settings):
    clock = Clock()
    md = SQLiteMetadataStore(tmp_path / "m.sqlite3", clock=clock)
    store = LocalObjectStore(tmp_path / "objects")
    deleted: list[str] = []

    def retire(table, keys):
        deleted.extend(keys)
        store.delete_many(keys)

    vac = Vacuum(md, SnapshotSettings(**settings), retire, clock=clock)
    info = md.create_table(TableInfo("t", "id1", pa.schema([("v", pa.int64())])))
    return clock, md, store, vac, info, deleted


def put(store, *keys) -> list[FileEntry]:
    for k in keys:
        store.put_bytes(k, b"x")
    return [FileEntry(key=k, rows=1, size=1) for k in keys]


def test_grace_period_and_retained_versions(tmp_path) -> None:
    clock, md, store, vac, info, deleted = setup(tmp_path, retention_versions=2, grace_seconds=60)
    md.commit_files("t", info.table_id, put(store, "t/a", "t/b"))
    clock.now = 1010.0
    md.commit_files("t", info.table_id, put(store, "t/c"), remove=["t/a"])  # compaction-like
    r = vac.run()
    assert (r.trimmed, r.deleted, r.pending) == (0, 0, 0)  # t/a: the first version still reads it
    clock.now = 1020.0
    md.commit_files("t", info.table_id, put(store, "t/d"), remove=["t/b"])
    r = vac.run()  # keeps the last 2 versions: t/a is unreferenced, removed 10 s ago: grace
    assert (r.trimmed, r.deleted, r.pending) == (1, 0, 1) and store.exists("t/a")
    clock.now = 1071.0
    r = vac.run()
    assert r.deleted == 1 and deleted == ["t/a"] and not store.exists("t/a")
    assert store.exists("t/b")  # the oldest retained version reads it
    assert vac.run().deleted == 0  # remembered as deleted while a retained version still names it


def test_an_object_brought_back_is_kept(tmp_path) -> None:
    clock, md, store, vac, info, deleted = setup(tmp_path, retention_versions=1, grace_seconds=0)
    a = put(store, "t/a")
    md.commit_files("t", info.table_id, a)
    md.commit_files("t", info.table_id, [], remove=["t/a"])
    md.commit_files("t", info.table_id, a, operation="restore")  # restored before any vacuum ran
    clock.now = 2000.0
    assert vac.run().deleted == 0 and store.exists("t/a") and md.garbage() == {}


def test_a_dropped_table_loses_its_whole_history(tmp_path) -> None:
    clock, md, store, vac, info, deleted = setup(tmp_path, retention_versions=10, grace_seconds=0)
    md.commit_files("t", info.table_id, put(store, "t/a"))
    md.commit_files("t", info.table_id, put(store, "t/b"), remove=["t/a"])
    md.drop_table("t")  # DROP TABLE deletes the current files itself (t/b); history: t/a
    clock.now = 2000.0
    r = vac.run()
    assert sorted(deleted) == ["t/a", "t/b"] and r.deleted == 2
    assert md.version_logs() == {} and not md.version_log(info.table_id).entries
