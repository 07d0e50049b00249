"""Exactly-once ingest without a node process: all-or-nothing batches in the WAL (chunks,
completion marker, replay), ids that survive a flush and a restart, concurrent duplicates,
and claims held by another node (flight_server/batches.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from clients.errors import InvalidRequest, Unavailable
from flight_server.batches import BatchLedger
from flight_server.metadata.sqlite import SQLiteMetadataStore
from tests.fixtures.write_path import WritePath


class Rig(WritePath):
    """One node's ingest path over ``root`` (a new Rig on the same root is a restart)."""

    def __init__(self, root: Path, chunk_bytes: int = 1 << 20, node_id: str = "n1", **ledger):
        metadata = SQLiteMetadataStore(root / "meta.sqlite3")
        self.ledger = BatchLedger(metadata, node_id, **ledger)
        super().__init__(root, metadata, node_id, chunk_bytes, per_node_dirs=True, ledger=self.ledger)
        self.ingestor.replay(lambda table, table_id: self.metadata.get_watermark(node_id, table_id))

    def ids(self, name: str = "t") -> list[int]:
        buf = self.buffers.get(name)
        files = self.metadata.list_files(name)
        out = buf.visible().column("id").to_pylist() if buf is not None and buf.visible() is not None else []
        return out + [0] * sum(f.rows for f in files)  # flushed rows counted, not read


def _batch(start: int, n: int) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(range(start, start + n), pa.int64()),
                            "v": pa.array([float(i) for i in range(n)])})


SCHEMA = _batch(0, 1).schema
CHUNK = _batch(0, 1000).nbytes * 2  # a chunk every two 1000-row batches


def _batches(count: int = 5) -> list[pa.RecordBatch]:
    return [_batch(i * 1000, 1000) for i in range(count)]


def test_a_large_batch_with_an_id_is_one_step_with_a_completion_marker(tmp_path):
    rig = Rig(tmp_path, chunk_bytes=CHUNK)
    res = rig.ingestor.ingest("t", iter(_batches()), SCHEMA, batch_id="big")
    assert (res.rows, res.duplicate) == (5000, False)
    segs = rig.wal.segments()
    assert [s.rows for s in segs] == [2000, 2000, 1000]
    assert all(s.batch_part and s.batch_id == "big" for s in segs)
    assert [s.batch_rows for s in segs] == [None, None, 5000]  # the marker is in the last one
    assert rig.ids() == list(range(5000))
    again = rig.ingestor.ingest("t", iter(_batches()), SCHEMA, batch_id="big")
    assert (again.rows, again.duplicate) == (5000, True)
    assert len(rig.ids()) == 5000 and len(rig.wal.segments()) == 3


def test_an_exact_multiple_of_the_chunk_still_ends_with_the_marker(tmp_path):
    rig = Rig(tmp_path, chunk_bytes=CHUNK)
    rig.ingestor.ingest("t", iter(_batches(4)), SCHEMA, batch_id="even")
    assert [(s.rows, s.batch_rows) for s in rig.wal.segments()] == [(2000, None), (2000, 4000)]


def test_a_stream_that_fails_partway_applies_nothing_and_its_retry_applies_all(tmp_path):
    rig = Rig(tmp_path, chunk_bytes=CHUNK)
    rig.ingestor.ingest("t", iter([_batch(-10, 10)]), SCHEMA)  # the table exists, 10 rows

    def broken():
        yield from _batches()[:3]  # one full chunk made durable, then the client goes away
        raise ConnectionError("client aborted the DoPut")

    with pytest.raises(ConnectionError):
        rig.ingestor.ingest("t", broken(), SCHEMA, batch_id="b")
    assert len(rig.ids()) == 10 and len(rig.wal.segments()) == 1
    assert not list(rig.wal.dir.glob("*.tmp"))
    res = rig.ingestor.ingest("t", iter(_batches()), SCHEMA, batch_id="b")
    assert (res.rows, res.duplicate) == (5000, False)
    assert sorted(rig.ids()) == list(range(-10, 5000))


def test_replay_ignores_a_batch_without_its_marker_and_a_retry_applies_it_whole(tmp_path):
    rig = Rig(tmp_path, chunk_bytes=CHUNK)
    info = rig.ingestor.resolve_for_write("t", SCHEMA, "create_append")
    # a crash between the renames of a batch's chunks: one published, the marked one not
    part = rig.wal.open_segment("t", info.table_id, SCHEMA, "b", atomic=True)
    part.write(_batch(0, 1000))
    part.commit()
    rig.ingestor.ingest("t", iter(_batches(3)), SCHEMA, batch_id="whole")  # complete: 3000 rows
    restarted = Rig(tmp_path, chunk_bytes=CHUNK)
    assert sorted(restarted.ids()) == list(range(3000))  # "b" is ignored, "whole" replayed
    assert {s.batch_id for s in restarted.wal.segments()} == {"whole"}  # the fragment is removed
    assert restarted.ingestor.ingest("t", iter(_batches(3)), SCHEMA, batch_id="whole").duplicate
    res = restarted.ingestor.ingest("t", iter(_batches(2)), SCHEMA, batch_id="b")
    assert (res.rows, res.duplicate) == (2000, False)
    assert len(restarted.ids()) == 5000


def test_ids_survive_a_flush_and_a_restart(tmp_path):
    rig = Rig(tmp_path)
    assert rig.ingestor.ingest("t", iter([_batch(0, 100)]), SCHEMA, batch_id="k").rows == 100
    assert rig.flusher.flush_table("t").rows == 100
    assert rig.wal.segments() == []
    restarted = Rig(tmp_path)  # empty WAL, fresh memory: the id comes from the metadata store
    res = restarted.ingestor.ingest("t", iter([_batch(0, 100)]), SCHEMA, batch_id="k")
    assert (res.rows, res.duplicate) == (100, True)
    assert len(restarted.ids()) == 100


def test_the_flush_commit_records_the_ids_of_its_rows(tmp_path):
    """Even when the record at acknowledgement time never reached the store (a crash right
    after the WAL commit), the files' commit records the id."""
    rig = Rig(tmp_path)
    info = rig.ingestor.resolve_for_write("t", SCHEMA, "create_append")
    seg = rig.wal.open_segment("t", info.table_id, SCHEMA, "lost", atomic=True)
    seg.write(_batch(0, 50))
    seg.mark_complete(50)
    seg.commit()
    restarted = Rig(tmp_path)
    restarted.metadata.release_batch("lost", "n1", restarted.ledger.incarnation)
    with restarted.metadata._tx() as db:  # as if the replay's record had failed too
        db.execute("DELETE FROM batches")
    restarted.flusher.flush_table("t")
    assert restarted.metadata.claim_batch("lost", "n2", "x", 30) == ("done", 50, "")


def test_concurrent_duplicates_wait_for_the_original_and_get_its_count(tmp_path):
    rig = Rig(tmp_path)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        calls.append(1)
        started.set()
        release.wait(30)
        yield _batch(0, 300)

    def send(_):
        return rig.ingestor.ingest("t", slow(), SCHEMA, batch_id="same")

    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(send, 0)
        assert started.wait(30)
        others = [pool.submit(send, i) for i in range(1, 6)]
        release.set()
        results = [first.result(), *(f.result() for f in others)]
    assert len(calls) == 1 and [r.rows for r in results] == [300] * 6
    assert sum(not r.duplicate for r in results) == 1
    assert len(rig.ids()) == 300


def test_when_the_original_fails_a_waiting_duplicate_applies_the_batch(tmp_path):
    rig = Rig(tmp_path)
    started, release = threading.Event(), threading.Event()

    def failing():
        started.set()
        release.wait(30)
        raise ConnectionError("the first client went away")
        yield  # pragma: no cover - a generator

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(rig.ingestor.ingest, "t", failing(), SCHEMA, "create_append", "x")
        assert started.wait(30)
        second = pool.submit(rig.ingestor.ingest, "t", iter([_batch(0, 40)]), SCHEMA, "create_append", "x")
        release.set()
        with pytest.raises(ConnectionError):
            first.result()
        res = second.result()
    assert (res.rows, res.duplicate) == (40, False)
    assert len(rig.ids()) == 40


def test_a_claim_held_by_another_node_is_waited_for(tmp_path):
    sleeps = []
    rig = Rig(tmp_path, node_id="n1", wait=5.0, sleep=lambda s: (sleeps.append(s), finish()))
    other = rig.metadata
    other.claim_batch("c", "n2", "other", 30)  # node n2 is applying batch "c"

    def finish():
        if len(sleeps) == 3:
            other.finish_batch("c", 77)  # n2 acknowledges 77 rows while n1 polls

    res = rig.ingestor.ingest("t", iter([_batch(0, 77)]), SCHEMA, batch_id="c")
    assert (res.rows, res.duplicate) == (77, True)
    assert sleeps[:3] == [0.05, 0.1, 0.2]  # backoff
    assert rig.buffers.get("t") is None  # nothing applied here


def test_a_claim_that_outlives_the_wait_is_unavailable(tmp_path):
    now = [0.0]

    def sleep(s):
        now[0] += s

    rig = Rig(tmp_path, wait=2.0, clock=lambda: now[0], sleep=sleep)
    rig.metadata.claim_batch("c", "n2", "other", 3600)
    with pytest.raises(Unavailable, match="being applied by node 'n2'"):
        rig.ingestor.ingest("t", iter([_batch(0, 5)]), SCHEMA, batch_id="c")
    assert 1.0 <= now[0] <= 2.0


def test_the_owner_renews_its_claim_while_applying(tmp_path):
    rig = Rig(tmp_path)
    seen = []

    def stream():
        rig.ledger.renew_once()
        seen.append(rig.metadata.claim_batch("r", "n2", "other", 30))
        yield _batch(0, 3)

    rig.ingestor.ingest("t", stream(), SCHEMA, batch_id="r")
    assert seen == [("busy", 0, "n1")]
    assert rig.metadata.claim_batch("r", "n2", "other", 30) == ("done", 3, "")


def test_a_batch_the_store_could_not_record_is_acknowledged_and_recorded_later(tmp_path):
    """The store fails right after the WAL commit (a fault a real store cannot be made to have at
    that instant): the rows are durable, so the DoPut succeeds; the id is recorded later."""
    rig = Rig(tmp_path)
    real = rig.metadata.finish_batch
    failing = [True]

    def finish(batch_id, rows):
        if failing[0]:
            raise Unavailable("metadata store unavailable: injected")
        real(batch_id, rows)

    rig.metadata.finish_batch = finish
    res = rig.ingestor.ingest("t", iter([_batch(0, 9)]), SCHEMA, batch_id="u")
    assert (res.rows, res.duplicate) == (9, False)
    assert rig.ingestor.ingest("t", iter([_batch(0, 9)]), SCHEMA, batch_id="u").duplicate  # from memory
    assert rig.metadata.claim_batch("u", "n2", "other", 30) == ("busy", 0, "n1")  # still claimed
    failing[0] = False
    rig.ledger.renew_once()
    assert rig.metadata.claim_batch("u", "n2", "other", 30) == ("done", 9, "")


@pytest.mark.parametrize("bad", ["x" * 257, "tab\there", "é"])
def test_batch_ids_are_short_printable_ascii(tmp_path, bad):
    rig = Rig(tmp_path)
    with pytest.raises(InvalidRequest):
        rig.ingestor.ingest("t", iter([_batch(0, 1)]), SCHEMA, batch_id=bad)
    assert rig.buffers.get("t") is None
