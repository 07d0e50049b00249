"""WAL mirror (group commit, deletion, start-up reconcile) and adoption (lease, watermark).

Real WAL files, a real local-folder object store and, for adoption, a real redis-server.
A store that holds or fails an upload on purpose stands in for a slow or broken object
store: that timing cannot be produced for real on demand.
"""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clients.errors import Unavailable
from flight_server.adopt import WalAdopter
from flight_server.catalog import Catalog
from flight_server.config import RedisSettings
from flight_server.metadata import load_metadata_store
from flight_server.paths import wal_mirror_bundle_key, wal_mirror_key, wal_mirror_prefix
from flight_server.storage.local import LocalObjectStore
from flight_server.wal import WriteAheadLog
from flight_server.wal_mirror import WalMirror

DATA = pa.table({"id": pa.array(range(10), pa.int64())})


class HeldStore(LocalObjectStore):
    """Uploads wait for ``release`` while ``hold`` is set; ``fail`` makes them fail."""

    def __init__(self, root):
        super().__init__(root)
        self.hold = threading.Event()
        self.release = threading.Event()
        self.fail = False
        self.puts = 0

    def put_file(self, key, path):
        self.puts += 1
        if self.fail:
            raise Unavailable("object store down (test)")
        if self.hold.is_set():
            self.release.wait(30)
        return super().put_file(key, path)


def wait_for(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def mirrored(store, node="n1") -> list[str]:
    return [o.key for o in store.list(wal_mirror_prefix(node))]


@pytest.fixture
def setup(tmp_path):
    store = HeldStore(tmp_path / "objects")
    wal = WriteAheadLog(tmp_path / "wal")
    mirror = WalMirror(store, "n1", retry_seconds=0.2).attach(wal)
    yield store, wal, mirror
    store.release.set()
    mirror.stop()


def test_an_append_returns_once_its_segment_is_mirrored(setup) -> None:
    store, wal, mirror = setup
    seg = wal.append("t", "id1", DATA)
    assert mirrored(store) == [wal_mirror_key("n1", seg.seq)]
    assert store.get_bytes(wal_mirror_key("n1", seg.seq)) == seg.path.read_bytes()
    wal.remove([seg.seq])  # persisted: the mirror object goes too
    assert mirrored(store) == []


def test_concurrent_appends_share_one_upload_round(setup) -> None:
    store, wal, mirror = setup
    store.hold.set()
    first = threading.Thread(target=wal.append, args=("t", "id1", DATA))
    first.start()
    wait_for(lambda: store.puts == 1)  # round 1 is uploading the first segment
    others = [threading.Thread(target=wal.append, args=("t", "id1", DATA)) for _ in range(5)]
    for t in others:
        t.start()
    wait_for(lambda: mirror.waiting == 5)  # all five wait for the next round
    assert mirror.rounds == 0
    store.release.set()
    for t in [first, *others]:
        t.join(30)
    assert mirror.rounds == 2 and mirror.uploaded == 6 and mirror.objects == 2
    assert mirrored(store) == [wal_mirror_key("n1", 1), wal_mirror_bundle_key("n1", 2, 6)]  # one PUT for five
    wal.remove([2, 3, 4, 5])
    assert len(mirrored(store)) == 2  # the bundle still holds segment 6
    wal.remove([1, 6])
    assert mirrored(store) == []


def test_a_failed_upload_fails_the_ingest_and_keeps_the_local_segment(setup) -> None:
    store, wal, mirror = setup
    store.fail = True
    with pytest.raises(Unavailable, match="could not be mirrored"):
        wal.append("t", "id1", DATA)
    assert len(wal.segments()) == 1 and mirrored(store) == []


def test_a_segment_removed_while_waiting_or_uploading_leaves_no_object(setup) -> None:
    store, wal, mirror = setup
    store.hold.set()
    results = []
    t1 = threading.Thread(target=lambda: results.append(wal.append("t", "id1", DATA)))
    t1.start()
    wait_for(lambda: store.puts == 1)
    t2 = threading.Thread(target=lambda: results.append(wal.append("t", "id1", DATA)))
    t2.start()
    wait_for(lambda: mirror.waiting == 1)
    wal.remove([1, 2])  # persisted already: one is uploading, one is waiting
    store.release.set()
    t1.join(30)
    t2.join(30)
    assert len(results) == 2  # both acknowledged: their rows are persisted
    assert store.puts == 1 and mirrored(store) == []


def test_reconcile_restores_a_lost_disk(tmp_path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    old = WriteAheadLog(tmp_path / "wal-old")
    mirror = WalMirror(store, "n1").attach(old)
    segs = [old.append("t", "id1", DATA) for _ in range(3)]
    mirror.stop()
    fresh = WriteAheadLog(tmp_path / "wal-new")  # the replacement disk
    assert WalMirror(store, "n1").reconcile(fresh) == (3, 0)
    restored = fresh.segments()
    assert [s.seq for s in restored] == [s.seq for s in segs]
    assert all(WriteAheadLog.read(s).equals(DATA) for s in restored)
    assert fresh.append("t", "id1", DATA).seq > segs[-1].seq  # numbered above what came back


def test_reconcile_uploads_segments_written_while_the_mirror_was_off(tmp_path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    wal = WriteAheadLog(tmp_path / "wal")
    segs = [wal.append("t", "id1", DATA) for _ in range(3)]
    assert WalMirror(store, "n1").reconcile(wal) == (0, 3)
    assert mirrored(store) == [wal_mirror_bundle_key("n1", 1, 3)]
    fresh = WriteAheadLog(tmp_path / "wal-new")  # and the bundle restores a lost disk
    again = WalMirror(store, "n1")
    assert again.reconcile(fresh) == (3, 0)
    assert [s.path.read_bytes() for s in fresh.segments()] == [s.path.read_bytes() for s in segs]
    again.attach(fresh)
    fresh.remove([1, 2])
    assert len(mirrored(store)) == 1
    fresh.remove([3])
    assert mirrored(store) == []
    again.stop()


@pytest.mark.redis
def test_adoption_commits_once_with_the_watermark(tmp_path, redis_server, redis_prefix) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    meta = load_metadata_store(redis_server.url, settings=RedisSettings(
        host="127.0.0.1", port=redis_server.port, prefix=redis_prefix, socket_timeout=2.0))
    catalog = Catalog(meta)
    info = catalog.create("t", DATA.schema)
    dead = WriteAheadLog(tmp_path / "wal-dead")
    segs = [dead.append("t", info.table_id, pa.table({"id": pa.array(range(k * 10, k * 10 + 10), pa.int64())}))
            for k in range(4)]
    WalMirror(store, "dead").reconcile(dead)  # segments 1-4 in one bundle
    mirror = WalMirror(store, "dead").attach(dead)
    segs.append(dead.append("t", info.table_id, pa.table({"id": pa.array(range(40, 50), pa.int64())})))
    mirror.stop()  # segment 5 alone
    meta.commit_files("t", info.table_id, [], watermark=("dead", segs[0].seq))  # the first was flushed
    adopter = WalAdopter("live", meta, catalog, store, node_ttl=2.0, tmp_dir=tmp_path / "tmp")
    other = adopter.lease("dead")
    assert other.acquire()  # another adopter (or the node itself) holds the lease: hands off
    assert adopter.scan_once() == 0 and len(mirrored(store, "dead")) == 2
    other.release()
    assert adopter.scan_once() == 40  # segments 2-5; the first is covered by the watermark
    assert meta.get_watermark("dead", info.table_id) == segs[-1].seq
    files = meta.list_files("t")
    assert [f.rows for f in files] == [40] and files[0].node_id == "dead"
    adopted = pq.read_table(pa.BufferReader(store.get_bytes(files[0].key)))
    assert sorted(adopted.column("id").to_pylist()) == list(range(10, 50))
    assert mirrored(store, "dead") == []
    assert adopter.scan_once() == 0  # nothing left, nothing twice
    meta.close()


class CrashingDeletes(LocalObjectStore):
    """The adopter "crashes" right after its commit: deleting the mirror objects raises."""

    crash = True

    def delete_many(self, keys):
        if self.crash:
            raise RuntimeError("adopter crashed (test)")
        super().delete_many(keys)


@pytest.mark.redis
def test_an_adopter_crashing_after_its_commit_is_not_repeated(tmp_path, redis_server, redis_prefix) -> None:
    store = CrashingDeletes(tmp_path / "objects")
    meta = load_metadata_store(redis_server.url, settings=RedisSettings(
        host="127.0.0.1", port=redis_server.port, prefix=redis_prefix, socket_timeout=2.0))
    catalog = Catalog(meta)
    info = catalog.create("t", DATA.schema)
    dead = WriteAheadLog(tmp_path / "wal-dead")
    for _ in range(2):
        dead.append("t", info.table_id, DATA)
    WalMirror(store, "dead").reconcile(dead)
    first = WalAdopter("live-1", meta, catalog, store, node_ttl=2.0, tmp_dir=tmp_path / "tmp1")
    with pytest.raises(RuntimeError, match="crashed"):
        first.scan_once()
    assert [f.rows for f in meta.list_files("t")] == [20] and len(mirrored(store, "dead")) == 1
    store.crash = False
    second = WalAdopter("live-2", meta, Catalog(meta), store, node_ttl=2.0,
                        tmp_dir=tmp_path / "tmp2")
    assert second.scan_once() == 0  # the watermark covers both segments: nothing twice
    assert [f.rows for f in meta.list_files("t")] == [20] and mirrored(store, "dead") == []
    meta.close()


@pytest.mark.redis
def test_the_segments_of_a_dropped_table_are_not_adopted(tmp_path, redis_server, redis_prefix) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    meta = load_metadata_store(redis_server.url, settings=RedisSettings(
        host="127.0.0.1", port=redis_server.port, prefix=redis_prefix, socket_timeout=2.0))
    catalog = Catalog(meta)
    old = catalog.create("t", DATA.schema)
    dead = WriteAheadLog(tmp_path / "wal-dead")
    dead.append("t", old.table_id, DATA)
    WalMirror(store, "dead").reconcile(dead)
    catalog.drop("t")
    catalog.create("t", DATA.schema)  # a new incarnation of the name
    adopter = WalAdopter("live", meta, catalog, store, node_ttl=2.0, tmp_dir=tmp_path / "tmp")
    assert adopter.scan_once() == 0
    assert meta.list_files("t") == [] and mirrored(store, "dead") == []
    meta.close()


@pytest.mark.redis
def test_adoption_takes_whole_batches_only_and_records_their_ids(tmp_path, redis_server, redis_prefix) -> None:
    """An all-or-nothing batch (exactly-once id) is adopted whole or not at all, as replay does,
    and its id is recorded with the file, so the client's retry on a live node is not applied twice."""
    store = LocalObjectStore(tmp_path / "objects")
    meta = load_metadata_store(redis_server.url, settings=RedisSettings(
        host="127.0.0.1", port=redis_server.port, prefix=redis_prefix, socket_timeout=2.0))
    catalog = Catalog(meta)
    info = catalog.create("t", DATA.schema)
    dead = WriteAheadLog(tmp_path / "wal-dead")

    def part(batch_id: str, start: int, complete_rows: int | None) -> None:
        w = dead.open_segment("t", info.table_id, DATA.schema, batch_id, atomic=True)
        w.write(pa.record_batch([pa.array(range(start, start + 10), pa.int64())], schema=DATA.schema))
        if complete_rows is not None:
            w.mark_complete(complete_rows)
        w.commit()

    part("whole", 0, None)
    part("whole", 10, 20)  # two segments, the last with the completion marker
    part("torn", 100, None)  # the node died before this batch's last segment: never acknowledged
    dead.append("t", info.table_id, pa.table({"id": pa.array(range(200, 205), pa.int64())}))  # no id
    WalMirror(store, "dead").reconcile(dead)
    adopter = WalAdopter("live", meta, catalog, store, node_ttl=2.0, tmp_dir=tmp_path / "tmp")
    assert adopter.scan_once() == 25
    adopted = pq.read_table(pa.BufferReader(store.get_bytes(meta.list_files("t")[0].key)))
    assert sorted(adopted.column("id").to_pylist()) == [*range(20), *range(200, 205)]
    assert meta.claim_batch("whole", "live", "i1", ttl=5) == ("done", 20, "")
    assert meta.claim_batch("torn", "live", "i1", ttl=5)[0] == "claimed"  # its retry applies it whole
    meta.close()
