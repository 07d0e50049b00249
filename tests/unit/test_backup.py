"""BackupService over real backends (SQLite metadata, a local object folder), with a fake clock."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from clients.errors import InvalidRequest, NotFound
from flight_server.backup import BackupService
from flight_server.metadata.base import FileEntry, TableInfo
from flight_server.metadata.sqlite import SQLiteMetadataStore
from flight_server.storage import LocalObjectStore

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2024, 1, 18, 3, 0, 0, tzinfo=dt.UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path: Path):
    clock = Clock()
    meta = SQLiteMetadataStore(tmp_path / "meta.sqlite3", clock=clock)
    store = LocalObjectStore(tmp_path / "objects")
    svc = BackupService(meta, store, clock=clock, retention_days=30, node_id="n1", version="9.9")
    yield svc, meta, store, clock
    meta.close()


def add_table(meta, store, name: str, files: int) -> TableInfo:
    info = meta.create_table(TableInfo(name=name, table_id=uuid.uuid4().hex, schema=pa.schema([("x", pa.int64())])))
    entries = []
    for i in range(files):
        key = f"{name}/date=2024-01-01/n1-{i:012d}.parquet"
        store.put_bytes(key, b"PAR1")
        entries.append(FileEntry(key=key, rows=10, size=4))
    meta.commit_files(name, info.table_id, entries, watermark=("n1", files))
    return info


def test_backup_writes_a_named_json_snapshot(rig) -> None:
    svc, meta, store, clock = rig
    add_table(meta, store, "a", 2)
    r = svc.backup()
    assert r["backup_file"] == "backup_20240118_030000.json"
    assert r["key"] == "_meta/backups/backup_20240118_030000.json"
    assert (r["tables"], r["files"]) == (1, 2)
    doc = orjson.loads(store.get_bytes(r["key"]))
    assert doc["format"] == 1 and doc["node_id"] == "n1" and doc["miniodb_version"] == "9.9"
    assert [t["name"] for t in doc["tables"]] == ["a"] and len(doc["files"]["a"]) == 2
    assert set(doc) >= {"tables", "files", "versions", "watermarks", "counters", "created_at"}


def test_list_newest_first_with_days_filter_and_retention(rig) -> None:
    svc, meta, store, clock = rig
    names = []
    for _ in range(3):
        names.append(svc.backup()["backup_file"])
        clock.now += 10 * DAY
    assert [b["backup_file"] for b in svc.list()] == names[::-1]
    assert [b["backup_file"] for b in svc.list(days=15)] == [names[2]]  # now = +30 days
    with pytest.raises(InvalidRequest):
        svc.list(days=-1)
    clock.now += 5 * DAY  # the first backup is now 35 days old
    r = svc.backup()
    assert r["pruned"] == [names[0]]
    assert [b["backup_file"] for b in svc.list()] == [r["backup_file"], names[2], names[1]]


def test_restore_argument_checks(rig) -> None:
    svc, *_ = rig
    with pytest.raises(NotFound, match="no metadata backup"):
        svc.restore(from_latest=True)
    for kwargs in ({}, {"from_latest": True, "backup_file": "backup_20240101_000000.json"}):
        with pytest.raises(InvalidRequest, match="exactly one"):
            svc.restore(**kwargs)
    for bad in ("../x.json", "backup_../../etc.json", "_meta/backups/../../x", "notabackup.json", "backup_.txt"):
        with pytest.raises(InvalidRequest, match="invalid backup file name"):
            svc.restore(backup_file=bad)
    with pytest.raises(NotFound, match="backup_20000101_000000.json"):
        svc.restore(backup_file="backup_20000101_000000.json")


def test_restore_rejects_damaged_backups(rig) -> None:
    svc, meta, store, _ = rig
    store.put_bytes("_meta/backups/backup_20240101_000000.json", b"{not json")
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        svc.restore(backup_file="backup_20240101_000000.json")
    store.put_bytes("_meta/backups/backup_20240101_000001.json", b'{"format": 7}')
    with pytest.raises(InvalidRequest, match="unsupported format"):
        svc.restore(backup_file="_meta/backups/backup_20240101_000001.json")


def test_dry_run_reports_and_restore_applies(rig) -> None:
    svc, meta, store, clock = rig
    a = add_table(meta, store, "a", 2)
    add_table(meta, store, "b", 1)
    name = svc.backup()["backup_file"]
    before = meta.snapshot()
    meta.drop_table("b")
    meta.commit_files("a", a.table_id, [FileEntry(key="a/new.parquet", rows=1, size=1)],
                      remove=["a/date=2024-01-01/n1-000000000000.parquet"])
    add_table(meta, store, "c", 1)
    called = []
    report = svc.restore(backup_file=name, dry_run=True, on_restored=lambda: called.append(1))
    assert report["dry_run"] and not report["applied"] and not called
    assert report["tables"] == {"added": ["b"], "removed": ["c"], "changed": [], "unchanged": 1, "total": 2}
    assert (report["files"]["added"], report["files"]["removed"]) == (2, 2)  # a: +1 -1, b: +1, c: -1
    assert meta.get_table("c") is not None  # nothing changed
    report = svc.restore(from_latest=True, on_restored=lambda: called.append(1))
    assert report["applied"] and called == [1]
    after = meta.snapshot()
    assert after["tables"] == before["tables"] and after["files"] == before["files"]


def test_dropped_objects_are_kept_while_a_backup_lists_them(rig) -> None:
    svc, meta, store, clock = rig
    add_table(meta, store, "early", 1)
    svc.retire("early", [f.key for f in meta.drop_table("early")])  # no backup yet: deleted at once
    assert list(store.list("early/")) == []
    add_table(meta, store, "a", 2)
    add_table(meta, store, "b", 1)
    svc.backup()
    keys_a = [f.key for f in meta.drop_table("a")]
    svc.retire("a", keys_a)
    keys_b = [f.key for f in meta.drop_table("b")]
    svc.retire("b", keys_b)
    assert [o.key for o in store.list("a/")] == keys_a  # kept: the backup lists them
    assert len(list(store.list("_meta/trash/"))) == 2
    report = svc.restore(from_latest=True, dry_run=True)
    assert report["files"]["missing_count"] == 0
    # b comes back with a restore, a stays dropped
    snap = orjson.loads(store.get_bytes(svc.list()[0]["key"]))
    snap["tables"] = [t for t in snap["tables"] if t["name"] == "b"]
    meta.restore(snap)
    assert svc.purge_trash() == 0  # too young
    clock.now += 31 * DAY
    assert svc.purge_trash() == 2  # a's objects go, b's stay: the metadata uses them again
    assert list(store.list("a/")) == [] and [o.key for o in store.list("b/")] == keys_b
    assert list(store.list("_meta/trash/")) == []


def test_restore_leaves_out_entries_whose_object_is_gone(rig) -> None:
    svc, meta, store, _ = rig
    add_table(meta, store, "a", 3)
    svc.backup()
    gone = "a/date=2024-01-01/n1-000000000001.parquet"
    store.delete(gone)
    report = svc.restore(from_latest=True)
    assert report["files"]["missing"] == [gone] and report["files"]["missing_count"] == 1
    assert gone not in {f.key for f in meta.list_files("a")} and len(meta.list_files("a")) == 2
