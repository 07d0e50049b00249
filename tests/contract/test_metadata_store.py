"""One MetadataStore contract, run against every backend (embedded SQLite, Redis).

The contract is the docstring of :mod:`flight_server.metadata.base`. The last section holds
what only the Redis backend has (key prefix, Sentinel URLs, no key-space scans, corrupt keys).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from clients.errors import (
    AlreadyExists,
    Conflict,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from flight_server.config import RedisSettings
from flight_server.metadata import load_metadata_store
from flight_server.metadata.base import (
    FileEntry,
    FilesChanged,
    MetadataStore,
    NodeInfo,
    TableConfig,
    TableInfo,
    WatermarkFenced,
)
from flight_server.metadata.redis import RedisMetadataStore
from flight_server.metadata.sqlite import SQLiteMetadataStore
from tests.fixtures.services import free_port


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def redis_store(server, prefix: str, clock=None, **settings) -> RedisMetadataStore:
    rs = RedisSettings(host="127.0.0.1", port=server.port, prefix=prefix, socket_timeout=2.0, **settings)
    kw = {"clock": clock} if clock is not None else {}
    return load_metadata_store(server.url, settings=rs, **kw)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[MetadataStore]:
    if request.param == "sqlite":
        s: MetadataStore = load_metadata_store(f"sqlite://{tmp_path / 'meta.sqlite3'}", clock=clock)
    else:
        s = redis_store(request.getfixturevalue("redis_server"), request.getfixturevalue("redis_prefix"), clock)
    yield s
    s.close()


SCHEMA = pa.schema([pa.field("ts", pa.timestamp("us", tz="UTC")), pa.field("v", pa.int64()),
                    pa.field("s", pa.string())])


def table(name: str = "t", **kw) -> TableInfo:
    kw.setdefault("table_id", uuid.uuid4().hex)
    kw.setdefault("schema", SCHEMA)
    return TableInfo(name=name, **kw)


def entry(key: str, rows: int = 10, **kw) -> FileEntry:
    kw.setdefault("min_values", {"v": 1, "s": "a", "ts": 1_700_000_000_000_000})
    kw.setdefault("max_values", {"v": 9, "s": "z", "ts": 1_700_000_100_000_000})
    kw.setdefault("columns", ("ts", "v", "s"))
    return FileEntry(key=key, rows=rows, size=rows * 100, node_id="n1", created_at=123.5, **kw)


# -- tables ---------------------------------------------------------------------------------
def test_create_get_list(store: MetadataStore) -> None:
    assert store.get_table("t") is None
    assert store.list_tables() == []
    info = table("t", config=TableConfig(buffer_size=10, flush_interval_seconds=1.5, retention_days=3,
                                         properties={"time_column": "ts"}),
                 time_column="ts", created_at=42.25)
    assert store.create_table(info) == info
    got = store.get_table("t")
    assert got.schema.equals(info.schema)
    assert (got.name, got.table_id, got.config, got.time_column, got.schema_version, got.created_at) == (
        "t", info.table_id, info.config, "ts", 1, 42.25)
    store.create_table(table("b"))
    store.create_table(table("a"))
    assert [t.name for t in store.list_tables()] == ["a", "b", "t"]


def test_create_twice_is_already_exists(store: MetadataStore) -> None:
    store.create_table(table("t"))
    with pytest.raises(AlreadyExists):
        store.create_table(table("t"))
    assert len(store.list_tables()) == 1


def test_names_are_exact(store: MetadataStore) -> None:
    store.create_table(table("Trips"))
    assert store.get_table("trips") is None
    assert store.get_table("Trips") is not None


def test_update_table_is_compare_and_set(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    v0 = store.data_version("t")
    wider = info.with_schema(SCHEMA.append(pa.field("x", pa.float64())))
    store.update_table(wider, expected_schema_version=1)
    got = store.get_table("t")
    assert got.schema_version == 2 and got.schema.names == ["ts", "v", "s", "x"]
    assert store.data_version("t") > v0  # a schema change moves the data version (caches reload)
    with pytest.raises(Conflict):
        store.update_table(info.with_schema(SCHEMA.append(pa.field("y", pa.int8()))), expected_schema_version=1)
    assert store.get_table("t").schema.names == ["ts", "v", "s", "x"]


def test_update_missing_or_replaced_table_is_not_found(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        store.update_table(table("nope").with_schema(SCHEMA), expected_schema_version=1)
    old = store.create_table(table("t"))
    store.drop_table("t")
    store.create_table(table("t"))
    with pytest.raises(NotFound):  # the old incarnation is gone
        store.update_table(old.with_schema(SCHEMA), expected_schema_version=1)


def test_drop_table_returns_files_and_forgets_everything(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    store.commit_files("t", info.table_id, [entry("t/b.parquet"), entry("t/a.parquet")], watermark=("n1", 7))
    dropped = store.drop_table("t")
    assert [f.key for f in dropped] == ["t/a.parquet", "t/b.parquet"]
    assert store.get_table("t") is None
    assert store.list_files("t") == []
    assert store.data_version("t") == 0
    assert store.get_watermark("n1", info.table_id) == 0
    with pytest.raises(NotFound):
        store.drop_table("t")


def test_recreated_table_starts_empty(store: MetadataStore) -> None:
    old = store.create_table(table("t"))
    store.commit_files("t", old.table_id, [entry("t/a.parquet")], watermark=("n1", 3))
    store.drop_table("t")
    new = store.create_table(table("t"))
    assert new.table_id != old.table_id
    assert store.list_files("t") == []
    assert store.get_watermark("n1", new.table_id) == 0
    with pytest.raises(NotFound):  # a flush of the old incarnation must not land in the new one
        store.commit_files("t", old.table_id, [entry("t/late.parquet")])
    assert store.list_files("t") == []


# -- manifest -------------------------------------------------------------------------------
def test_commit_files_add_remove_sorted(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    v1 = store.commit_files("t", info.table_id, [entry("t/c.parquet"), entry("t/a.parquet")])
    assert v1 == store.data_version("t")
    v2 = store.commit_files("t", info.table_id, [entry("t/b.parquet", rows=5)], remove=["t/c.parquet"])
    assert v2 > v1
    files = store.list_files("t")
    assert [f.key for f in files] == ["t/a.parquet", "t/b.parquet"]
    assert files[1] == entry("t/b.parquet", rows=5)  # every field round-trips
    store.commit_files("t", info.table_id, [], remove=["t/missing.parquet"])  # removing nothing is fine
    assert [f.key for f in store.list_files("t")] == ["t/a.parquet", "t/b.parquet"]


def test_data_versions_of_several_tables_in_one_read(store: MetadataStore) -> None:
    a, b = store.create_table(table("a")), store.create_table(table("b"))
    store.commit_files("a", a.table_id, [entry("a/x.parquet")])
    store.commit_files("b", b.table_id, [entry("b/x.parquet")])
    store.commit_files("b", b.table_id, [entry("b/y.parquet")])
    got = store.data_versions(["b", "missing", "a"])
    assert got == [store.data_version("b"), 0, store.data_version("a")] and got[0] != got[2]
    assert store.data_versions([]) == []


def test_commit_same_key_twice_replaces(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    store.commit_files("t", info.table_id, [entry("t/a.parquet", rows=1)])
    store.commit_files("t", info.table_id, [entry("t/a.parquet", rows=2)])
    assert [(f.key, f.rows) for f in store.list_files("t")] == [("t/a.parquet", 2)]


def test_commit_to_missing_table_changes_nothing(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    v = store.data_version("t")
    with pytest.raises(NotFound):
        store.commit_files("nope", info.table_id, [entry("nope/a.parquet")], watermark=("n1", 5))
    with pytest.raises(NotFound):
        store.commit_files("t", "wrong-id", [entry("t/a.parquet")], watermark=("n1", 5))
    assert store.list_files("t") == [] and store.list_files("nope") == []
    assert store.data_version("t") == v
    assert store.get_watermark("n1", info.table_id) == 0


def test_a_drop_leaves_a_tombstone_an_unknown_table_has_none(store: MetadataStore) -> None:
    old = store.create_table(table("t"))
    assert not store.was_dropped(old.table_id)
    store.drop_table("t")
    new = store.create_table(table("t"))  # replaced: same name, new incarnation
    assert store.was_dropped(old.table_id) and not store.was_dropped(new.table_id)
    assert not store.was_dropped("never-seen")  # unknown is not dropped (a store that lost its data)


def test_strict_commit_replaces_exactly_the_files_it_read(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    store.commit_files("t", info.table_id, [entry("t/a.parquet"), entry("t/b.parquet"), entry("t/c.parquet")])
    # a compaction read a+b; meanwhile a rewrite replaced b: the compaction's swap must not land
    store.commit_files("t", info.table_id, [entry("t/b2.parquet")], remove=["t/b.parquet"], strict=True)
    v = store.data_version("t")
    with pytest.raises(FilesChanged) as changed:
        store.commit_files("t", info.table_id, [entry("t/ab.parquet")], remove=["t/a.parquet", "t/b.parquet"],
                           strict=True)
    assert changed.value.missing == ["t/b.parquet"] and isinstance(changed.value, Conflict)
    assert [f.key for f in store.list_files("t")] == ["t/a.parquet", "t/b2.parquet", "t/c.parquet"]
    assert store.data_version("t") == v
    # not strict (settling an uncertain flush): a missing key is simply not there
    store.commit_files("t", info.table_id, [], remove=["t/zz.parquet", "t/c.parquet"])
    assert [f.key for f in store.list_files("t")] == ["t/a.parquet", "t/b2.parquet"]


def test_commit_fenced_by_a_watermark_writes_nothing(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    store.commit_files("t", info.table_id, [entry("t/adopted.parquet")], watermark=("n1", 7), since=5)
    v = store.data_version("t")
    # rows 6..9 of n1: 6 and 7 are committed already (e.g. adopted while n1 looked dead)
    with pytest.raises(WatermarkFenced) as fenced:
        store.commit_files("t", info.table_id, [entry("t/late.parquet")], watermark=("n1", 9), since=6,
                           batches={"b-late": 4})
    assert fenced.value.watermark == 7 and isinstance(fenced.value, Conflict)
    assert [f.key for f in store.list_files("t")] == ["t/adopted.parquet"]
    assert store.data_version("t") == v and store.get_watermark("n1", info.table_id) == 7
    assert store.claim_batch("b-late", "n1", "i1", ttl=5)[0] == "claimed"  # not recorded as done
    # the rows above the watermark commit; another node's watermark does not fence
    store.commit_files("t", info.table_id, [entry("t/rest.parquet")], watermark=("n1", 9), since=8)
    store.commit_files("t", info.table_id, [entry("t/n2.parquet")], watermark=("n2", 3), since=1)
    assert [f.key for f in store.list_files("t")] == ["t/adopted.parquet", "t/n2.parquet", "t/rest.parquet"]
    assert store.get_watermark("n1", info.table_id) == 9


def test_watermark_is_per_node_and_incarnation_and_only_grows(store: MetadataStore) -> None:
    a = store.create_table(table("a"))
    b = store.create_table(table("b"))
    store.commit_files("a", a.table_id, [entry("a/1.parquet")], watermark=("n1", 10))
    store.commit_files("a", a.table_id, [entry("a/2.parquet")], watermark=("n1", 4))  # late, lower
    store.commit_files("a", a.table_id, [entry("a/3.parquet")], watermark=("n2", 3))
    store.commit_files("b", b.table_id, [entry("b/1.parquet")])
    assert store.get_watermark("n1", a.table_id) == 10
    assert store.get_watermark("n2", a.table_id) == 3
    assert store.get_watermark("n1", b.table_id) == 0
    assert store.get_watermark("n3", a.table_id) == 0


def test_data_version_unknown_is_zero_and_versions_are_global(store: MetadataStore) -> None:
    assert store.data_version("nope") == 0
    a = store.create_table(table("a"))
    b = store.create_table(table("b"))
    seen = {store.data_version("a"), store.data_version("b")}
    for i in range(5):
        seen.add(store.commit_files("a", a.table_id, [entry(f"a/{i}.parquet")]))
        seen.add(store.commit_files("b", b.table_id, [entry(f"b/{i}.parquet")]))
    assert len(seen) == 12 and 0 not in seen  # never reused, even across tables
    store.drop_table("a")
    recreated = store.create_table(table("a"))
    assert store.data_version("a") > max(seen)
    assert store.commit_files("a", recreated.table_id, []) > max(seen)


def test_concurrent_commits_lose_nothing(store: MetadataStore) -> None:
    info = store.create_table(table("t"))

    def commit(i: int) -> int:
        return store.commit_files("t", info.table_id, [entry(f"t/{i:04d}.parquet")], watermark=("n1", i))

    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(commit, range(64)))
    assert len(set(versions)) == 64
    assert [f.key for f in store.list_files("t")] == [f"t/{i:04d}.parquet" for i in range(64)]
    assert store.get_watermark("n1", info.table_id) == 63
    assert store.data_version("t") == max(versions)


def test_large_manifest_round_trips(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    store.commit_files("t", info.table_id, [entry(f"t/{i:05d}.parquet") for i in range(2500)])
    store.commit_files("t", info.table_id, [entry(f"t/x{i:05d}.parquet") for i in range(9000)],
                       remove=[f"t/{i:05d}.parquet" for i in range(0, 2500, 2)])
    files = store.list_files("t")
    assert len(files) == 1250 + 9000
    assert files == sorted(files, key=lambda f: f.key)


# -- counters -------------------------------------------------------------------------------
def test_next_sequence(store: MetadataStore) -> None:
    assert store.next_sequence("file:n1") == 1
    assert store.next_sequence("file:n1") == 2
    assert store.next_sequence("file:n1", count=10) == 12
    assert store.next_sequence("file:n2") == 1
    with pytest.raises(InvalidRequest):
        store.next_sequence("file:n1", count=0)


def test_next_sequence_is_atomic(store: MetadataStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: store.next_sequence("c"), range(200)))
    assert sorted(values) == list(range(1, 201))


# -- nodes ----------------------------------------------------------------------------------
def node(node_id: str, **kw) -> NodeInfo:
    return NodeInfo(node_id=node_id, flight_uri=f"grpc://127.0.0.1:{hash(node_id) % 1000 + 1000}",
                    version="1.2.3", started_at=100.0, **kw)


def test_nodes_register_heartbeat_expire(store: MetadataStore, clock: FakeClock) -> None:
    assert store.live_nodes() == []
    store.register_node(node("b"), ttl=10)
    store.register_node(node("a"), ttl=10)
    live = store.live_nodes()
    assert [n.node_id for n in live] == ["a", "b"]
    assert live[0].flight_uri == node("a").flight_uri and live[0].version == "1.2.3"
    assert live[0].started_at == 100.0 and live[0].last_seen == clock.now
    clock.now += 6
    store.register_node(node("a"), ttl=10)  # heartbeat
    clock.now += 6  # b: 12 s since its last heartbeat > ttl
    assert [n.node_id for n in store.live_nodes()] == ["a"]
    clock.now += 5
    assert store.live_nodes() == []
    store.register_node(node("b"), ttl=10)  # comes back
    assert [n.node_id for n in store.live_nodes()] == ["b"]
    store.unregister_node("b")
    store.unregister_node("never-registered")
    assert store.live_nodes() == []


# -- snapshot / restore ---------------------------------------------------------------------
def populate(store: MetadataStore) -> tuple[TableInfo, TableInfo]:
    a = store.create_table(table("a", time_column="ts", config=TableConfig(buffer_size=5)))
    b = store.create_table(table("b"))
    store.commit_files("a", a.table_id, [entry("a/1.parquet"), entry("a/2.parquet")], watermark=("n1", 4))
    store.commit_files("b", b.table_id, [entry("b/1.parquet")], watermark=("n2", 9))
    store.next_sequence("file:n1", 5)
    return a, b


def comparable(snap: dict) -> dict:
    """A snapshot without the parts that may legitimately differ after a restore."""
    return {k: v for k, v in snap.items() if k not in ("versions", "counters")}


def test_snapshot_shape(store: MetadataStore) -> None:
    a, b = populate(store)
    snap = store.snapshot()
    assert snap["format"] == 1
    assert [t["name"] for t in snap["tables"]] == ["a", "b"]
    assert TableInfo.from_json(snap["tables"][0]).config.buffer_size == 5
    assert [e["key"] for e in snap["files"]["a"]] == ["a/1.parquet", "a/2.parquet"]
    assert snap["watermarks"] == {f"n1|{a.table_id}": 4, f"n2|{b.table_id}": 9}
    assert snap["versions"] == {"a": store.data_version("a"), "b": store.data_version("b")}
    assert snap["counters"]["file:n1"] == 5
    import orjson

    assert orjson.loads(orjson.dumps(snap)) == snap  # JSON-able


def test_restore_round_trip(store: MetadataStore) -> None:
    a, b = populate(store)
    before = store.snapshot()
    # damage: drop a, re-create b, add files, a new table
    store.drop_table("a")
    store.drop_table("b")
    c = store.create_table(table("c"))
    store.commit_files("c", c.table_id, [entry("c/1.parquet")], watermark=("n1", 99))
    store.create_table(table("b"))
    store.register_node(node("n1"), ttl=60)
    store.restore(before)
    after = store.snapshot()
    assert comparable(after) == comparable(before)
    assert [t.name for t in store.list_tables()] == ["a", "b"]
    assert store.get_table("b").table_id == b.table_id
    assert [f.key for f in store.list_files("a")] == ["a/1.parquet", "a/2.parquet"]
    assert store.list_files("c") == [] and store.data_version("c") == 0
    assert store.get_watermark("n1", a.table_id) == 4
    assert store.get_watermark("n1", c.table_id) == 0
    assert [n.node_id for n in store.live_nodes()] == ["n1"]  # nodes are not part of the metadata
    # commits keep working on the restored incarnations
    store.commit_files("a", a.table_id, [entry("a/3.parquet")], watermark=("n1", 5))
    assert len(store.list_files("a")) == 3


def test_restore_moves_versions_and_counters_forward(store: MetadataStore) -> None:
    a, _ = populate(store)
    snap = store.snapshot()
    seen = [store.data_version("a"), store.data_version("b")]
    for i in range(3):
        seen.append(store.commit_files("a", a.table_id, [entry(f"a/x{i}.parquet")]))
    seq = store.next_sequence("file:n1", 100)  # handed out after the backup
    store.restore(snap)
    # caches keyed by data version must never see an old version number again
    assert store.data_version("a") > max(seen) and store.data_version("b") > max(seen)
    assert store.data_version("a") != store.data_version("b")
    # a sequence handed out before the restore is never handed out again (object keys stay unique)
    assert store.next_sequence("file:n1") > seq
    assert store.snapshot()["counters"]["file:n1"] > seq


def test_restore_is_idempotent_and_into_an_empty_store(store: MetadataStore, tmp_path: Path) -> None:
    populate(store)
    snap = store.snapshot()
    store.restore(snap)
    store.restore(snap)
    assert comparable(store.snapshot()) == comparable(snap)
    fresh = SQLiteMetadataStore(tmp_path / "fresh.sqlite3")  # a snapshot moves between backends
    fresh.restore(snap)
    assert comparable(fresh.snapshot()) == comparable(snap)
    fresh.close()


def test_restore_ignores_files_of_tables_it_does_not_define(store: MetadataStore) -> None:
    populate(store)
    snap = store.snapshot()
    snap["files"]["ghost"] = [entry("ghost/1.parquet").to_json()]
    store.restore(snap)
    assert "ghost" not in store.snapshot()["files"]
    store.create_table(table("ghost"))
    assert store.list_files("ghost") == []


def test_restore_rejects_bad_snapshots_without_touching_anything(store: MetadataStore) -> None:
    populate(store)
    snap = store.snapshot()
    for bad in ({"format": 99}, {**snap, "format": None}, {**snap, "tables": [{"name": "x"}]}):
        with pytest.raises(InvalidRequest):
            store.restore(bad)
    assert comparable(store.snapshot()) == comparable(snap)


# -- unavailable ----------------------------------------------------------------------------
def test_unreachable_backend_is_unavailable(request: pytest.FixtureRequest, store: MetadataStore,
                                            tmp_path: Path) -> None:
    if isinstance(store, SQLiteMetadataStore):
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        with pytest.raises(Unavailable):
            SQLiteMetadataStore(blocker / "meta.sqlite3")
        return
    dead = RedisSettings(host="127.0.0.1", port=free_port(), socket_timeout=0.5)
    s = load_metadata_store(f"redis://127.0.0.1:{dead.port}/0", settings=dead)
    for call in (s.check, s.list_tables, lambda: s.data_version("t"), lambda: s.next_sequence("x"),
                 lambda: s.live_nodes(), s.snapshot):
        with pytest.raises(Unavailable) as exc:
            call()
        assert f"127.0.0.1:{dead.port}" in exc.value.message


def test_threads_share_one_store(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                store.data_version("t")
                store.list_files("t")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        store.commit_files("t", info.table_id, [entry(f"t/{i}.parquet")])
    for t in threads:
        t.join()
    assert not errors
