# ruff: noqa: F811 - the ``store`` fixture is imported from the main contract suite
"""The version log part of the MetadataStore contract (flight_server/metadata/versions.py),
against every backend: each commit appends a version atomically with it, a table's file set is
rebuilt at any retained version, trimming folds old versions into the base and turns the keys
they removed into garbage, and a refused commit writes no version."""

from __future__ import annotations

import pytest

from clients.errors import NotFound
from flight_server.metadata.base import FilesChanged, MetadataStore
from flight_server.metadata.versions import fold, trim_count
from tests.contract.test_metadata_store import FakeClock, entry, store, table  # noqa: F401 - fixture


def keys_at(store: MetadataStore, table_id: str, version: int) -> list[str]:
    return [f.key for f in store.version_log(table_id).files_at(version)[1]]


def test_every_commit_is_a_version_with_its_operation_and_time(store: MetadataStore, clock: FakeClock) -> None:
    t = store.create_table(table())
    clock.now = 1000.0
    v1 = store.commit_files("t", t.table_id, [entry("a"), entry("b")], operation="flush")
    clock.now = 2000.0
    v2 = store.commit_files("t", t.table_id, [entry("c")], remove=["a"], strict=True, operation="restore")
    v3 = store.commit_files("t", t.table_id, [], remove=["b"])
    log = store.version_log(t.table_id)
    assert [(e.version, e.operation, e.committed_at) for e in log.entries] == [
        (v1, "flush", 1000.0), (v2, "restore", 2000.0), (v3, "commit", 2000.0)]
    assert log.entries[1].removed == ("a",)
    assert [f.key for f in log.entries[1].added] == ["c"]
    assert log.entries[0].added[0] == entry("a")  # entries round-trip exactly (statistics included)
    assert keys_at(store, t.table_id, v1) == ["a", "b"]
    assert keys_at(store, t.table_id, v2) == ["b", "c"]
    assert keys_at(store, t.table_id, v3) == ["c"]
    assert keys_at(store, t.table_id, v3 + 100) == ["c"]  # a later global version: the newest state
    assert [f.key for f in store.list_files("t")] == ["c"]
    assert store.current_version() >= v3
    assert store.version_logs() == {t.table_id: "t"}


def test_versions_are_global_and_per_incarnation(store: MetadataStore) -> None:
    t = store.create_table(table("t"))
    u = store.create_table(table("u"))
    v1 = store.commit_files("t", t.table_id, [entry("t1")])
    v2 = store.commit_files("u", u.table_id, [entry("u1")])
    v3 = store.commit_files("t", t.table_id, [entry("t2")])
    assert v1 < v2 < v3
    assert keys_at(store, t.table_id, v2) == ["t1"]  # t as it was when u committed
    store.drop_table("t")
    t2 = store.create_table(table("t"))
    store.commit_files("t", t2.table_id, [entry("t9")])
    assert [f.key for f in store.version_log(t2.table_id).files_at(store.current_version())[1]] == ["t9"]
    assert keys_at(store, t.table_id, v3) == ["t1", "t2"]  # the dropped incarnation's history stays until vacuumed
    store.drop_version_log(t.table_id)
    assert not store.version_log(t.table_id).entries
    assert t.table_id not in store.version_logs()


def test_a_version_before_the_log_is_refused(store: MetadataStore) -> None:
    t = store.create_table(table())
    with pytest.raises(NotFound, match="no retained versions"):
        store.version_log(t.table_id).files_at(5)
    v1 = store.commit_files("t", t.table_id, [entry("a")])
    with pytest.raises(NotFound, match=f"oldest retained version is {v1}"):
        store.version_log(t.table_id).files_at(v1 - 1)


def test_refused_commits_write_no_version(store: MetadataStore) -> None:
    t = store.create_table(table())
    store.commit_files("t", t.table_id, [entry("a")])
    with pytest.raises(FilesChanged):
        store.commit_files("t", t.table_id, [entry("b")], remove=["zz"], strict=True)
    with pytest.raises(NotFound):
        store.commit_files("t", "other-id", [entry("b")])
    assert len(store.version_log(t.table_id).entries) == 1


def test_trim_folds_into_the_base_and_collects_garbage(store: MetadataStore, clock: FakeClock) -> None:
    t = store.create_table(table())
    clock.now = 100.0
    v1 = store.commit_files("t", t.table_id, [entry("a"), entry("b")])
    clock.now = 200.0
    v2 = store.commit_files("t", t.table_id, [entry("c")], remove=["a"])
    clock.now = 300.0
    v3 = store.commit_files("t", t.table_id, [entry("d")], remove=["b"])
    v4 = store.commit_files("t", t.table_id, [entry("e")])
    assert store.trim_versions(t.table_id, v2) == 2
    assert store.trim_versions(t.table_id, v2) == 0  # idempotent
    log = store.version_log(t.table_id)
    assert [e.version for e in log.entries] == [v3, v4]
    assert sorted(log.base) == ["b", "c"]
    assert keys_at(store, t.table_id, v3) == ["c", "d"]
    assert keys_at(store, t.table_id, v4) == ["c", "d", "e"]
    with pytest.raises(NotFound, match="not retained"):
        log.files_at(v1)
    assert store.garbage() == {"a": (t.table_id, 200.0)}
    assert log.referenced() == {"c", "d", "e"}  # b: removed by the oldest retained version
    assert log.removals() == {"b": 300.0}
    store.forget_garbage(["a"])
    assert store.garbage() == {}


def test_a_log_started_late_takes_the_manifest_as_its_base(store: MetadataStore) -> None:
    """A commit that finds no log (tables from before versions; after a metadata restore)
    first copies the manifest, so rebuilt file sets never miss older files."""
    t = store.create_table(table())
    store.commit_files("t", t.table_id, [entry("a")])
    snap = store.snapshot()
    store.restore(snap)  # clears the logs: history restarts from the restored state
    assert not store.version_log(t.table_id).entries
    v = store.commit_files("t", t.table_id, [entry("b")])
    assert keys_at(store, t.table_id, v) == ["a", "b"]


def test_time_lookup_and_trim_policy(store: MetadataStore, clock: FakeClock) -> None:
    t = store.create_table(table())
    versions = []
    for i in range(5):
        clock.now = 1000.0 + 100 * i
        versions.append(store.commit_files("t", t.table_id, [entry(f"k{i}")]))
    log = store.version_log(t.table_id)
    assert log.version_at(1250.0) == versions[2]
    assert log.version_at(1200.0) == versions[2]
    with pytest.raises(NotFound, match="at or before"):
        log.version_at(999.0)
    assert trim_count(log, 3, 0, clock.now) == 2  # count
    assert trim_count(log, 100, 150, clock.now) == 3  # age: versions older than 150 s
    assert trim_count(log, 1, 1, clock.now + 1e6) == 4  # the newest is always kept
    base, folded, garbage = fold(log, versions[1])
    assert sorted(base) == ["k0", "k1"] and folded == versions[:2] and garbage == {}
