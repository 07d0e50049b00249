"""Ingest without a node process: one-batch and multi-batch DoPut streams, the table-schema
fast path of resolve_for_write, and the buffer's running totals used by the flush policy."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest

from clients.errors import AlreadyExists, NotFound
from flight_server.buffer import BufferEntry, BufferManager
from flight_server.wal import WriteAheadLog
from tests.fixtures.write_path import WritePath


class Rig(WritePath):
    def __init__(self, root: Path, chunk_bytes: int = 1 << 20):
        super().__init__(root, chunk_bytes=chunk_bytes)

    def buffered(self, name: str = "t") -> list[int]:
        buf = self.buffers.get(name)
        return pa.concat_tables([e.data for e in buf.entries]).column("id").to_pylist()


def _batch(start: int, n: int) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(range(start, start + n), pa.int64()),
                            "v": pa.array([float(i) for i in range(n)])})


def test_one_batch_stream_is_one_durable_segment(tmp_path):
    rig = Rig(tmp_path)
    b = _batch(0, 100)
    res = rig.ingestor.ingest("t", iter([b]), b.schema)
    assert res.rows == 100
    segs = rig.wal.segments()
    assert [s.rows for s in segs] == [100] and not list((tmp_path / "wal").glob("*.tmp"))
    assert rig.buffered() == list(range(100))


def test_multi_batch_stream_commits_chunks_in_order(tmp_path):
    b = _batch(0, 1000)
    rig = Rig(tmp_path, chunk_bytes=2 * b.nbytes)  # a chunk every two batches
    batches = [_batch(i * 1000, 1000) for i in range(5)]
    res = rig.ingestor.ingest("t", iter(batches), b.schema)
    assert res.rows == 5000
    segs = rig.wal.segments()
    assert [s.rows for s in segs] == [2000, 2000, 1000]
    ids = [WriteAheadLog.read(s).column("id").to_pylist() for s in segs]
    assert sum(ids, []) == list(range(5000))  # sequence order == stream order == buffer order
    assert rig.buffered() == list(range(5000))
    assert [e.seq for e in rig.buffers.get("t").entries] == [s.seq for s in segs]


def test_table_dropped_during_a_one_batch_stream(tmp_path):
    rig = Rig(tmp_path)
    b = _batch(0, 10)
    rig.ingestor.ingest("t", iter([b]), b.schema)

    def stream():
        rig.ingestor.drop_table("t")
        yield b

    with pytest.raises(NotFound):
        rig.ingestor.ingest("t", stream(), b.schema, mode="append")
    assert rig.wal.segments() == [] and not list((tmp_path / "wal").glob("*.tmp"))
    assert rig.buffers.get("t") is None


def test_resolve_modes_with_the_tables_own_schema(tmp_path):
    rig = Rig(tmp_path)
    b = _batch(0, 10)
    first = rig.ingestor.resolve_for_write("t", b.schema, "create")
    assert rig.ingestor.resolve_for_write("t", b.schema, "append") == first  # same schema: as it is
    with pytest.raises(AlreadyExists):
        rig.ingestor.resolve_for_write("t", b.schema, "create")
    wider = b.schema.append(pa.field("extra", pa.string()))
    evolved = rig.ingestor.resolve_for_write("t", wider, "create_append")
    assert evolved.schema.names == ["id", "v", "extra"] and evolved.schema_version == first.schema_version + 1
    assert rig.ingestor.resolve_for_write("t", b.schema, "append").schema.names == ["id", "v", "extra"]
    replaced = rig.ingestor.resolve_for_write("t", b.schema, "replace")
    assert replaced.table_id != first.table_id and replaced.schema.names == ["id", "v"]


def _entry(seq: int, rows: int) -> BufferEntry:
    return BufferEntry(seq, pa.table({"id": pa.array(range(rows), pa.int64())}), time.monotonic())


def test_buffer_totals_follow_the_flush_life_cycle():
    bm = BufferManager(1_000_000, 3600, 1 << 30)
    schema = pa.schema([("id", pa.int64())])
    buf = bm.append("t", "id1", schema, _entry(1, 3))
    assert (buf.rows, buf.pending_rows, buf.nbytes, buf.pending_bytes) == (3, 3, 24, 24)
    bm.append("t", "id1", schema, _entry(2, 4))
    assert (buf.rows, buf.pending_rows, buf.pending_bytes) == (7, 7, 56)
    batch = bm.take_for_flush("t")  # a flush takes the rows; they stay visible
    assert batch.seqs == [1, 2] and batch.rows == 7
    assert bm.take_for_flush("t") is None  # one flush per table at a time
    bm.append("t", "id1", schema, _entry(3, 1))
    assert (buf.rows, buf.pending_rows, buf.flushing_rows, buf.nbytes, buf.pending_bytes) == (8, 1, 7, 64, 8)
    assert buf.visible().num_rows == 8
    bm.put_back(batch)  # ... and puts them back, in front, when it fails
    assert (buf.rows, buf.pending_rows, buf.flushing_rows, buf.nbytes) == (8, 8, 0, 64)
    assert [e.seq for e in buf.entries] == [1, 2, 3]
    bm.put_back(batch)  # settling a batch twice changes nothing
    assert buf.rows == 8
    batch = bm.take_for_flush("t")
    bm.mark_committed(batch)  # committed: the rows leave the buffer
    assert (buf.rows, buf.nbytes, buf.visible()) == (0, 0, None)
    bm.append("t", "id1", schema, _entry(4, 2))
    batch = bm.take_for_flush("t")
    bm.discard_dropped(batch)
    assert (buf.rows, buf.seqs()) == (0, [])


def test_a_batch_of_a_replaced_incarnation_does_not_touch_the_new_buffer():
    bm = BufferManager(1_000_000, 3600, 1 << 30)
    schema = pa.schema([("id", pa.int64())])
    bm.append("t", "old", schema, _entry(1, 3))
    batch = bm.take_for_flush("t")
    new = bm.append("t", "new", schema, _entry(2, 5))  # dropped and re-created meanwhile
    bm.put_back(batch)
    assert (new.rows, new.seqs()) == (5, [2])


def test_a_stream_resolved_before_a_concurrent_evolution_keeps_the_new_columns(tmp_path):
    """Writer A resolved the table, writer B then added a column and committed, then A
    committed with its older schema: B's column must stay in the buffer (and so in the flush)."""
    rig = Rig(tmp_path, chunk_bytes=1)  # each batch its own chunk
    a = pa.record_batch({"id": pa.array([1, 2], pa.int64())})
    b = pa.record_batch({"id": pa.array([3], pa.int64()), "extra": pa.array(["x"])})
    rig.ingestor.ingest("t", iter([a]), a.schema)

    def stream_a():
        yield a
        rig.ingestor.ingest("t", iter([b]), b.schema)  # B, while A's stream is open
        yield a

    rig.ingestor.ingest("t", stream_a(), a.schema)
    buf = rig.buffers.get("t")
    assert buf.schema.names == ["id", "extra"]
    rows = buf.visible().to_pylist()
    assert {"id": 3, "extra": "x"} in rows and len(rows) == 7
