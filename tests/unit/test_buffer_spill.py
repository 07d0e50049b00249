"""Spilling buffered rows to their WAL segments (issue 15, wide ingest): past the capacity bound
the oldest pending entries read their own segment through a memory map instead of holding the
rows in memory; flushes take chunks of about ``buffer.max_bytes``; spilled segments are
unlinked, never recycled."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from flight_server.buffer import BufferEntry, BufferManager
from flight_server.wal import WriteAheadLog
from tests.fixtures.helpers import rows
from tests.fixtures.write_path import WritePath

ENTRY = 1000  # rows per segment; 24 bytes a row
ENTRY_BYTES = rows(0, ENTRY).nbytes


def _append(wal: WriteAheadLog, bm: BufferManager, start: int, data: pa.Table | None = None) -> BufferEntry:
    """One durable segment and its buffer entry, the way ingest adds them (then spills)."""
    data = data if data is not None else rows(start, ENTRY)
    seg = wal.append("t", "id1", data)
    entry = BufferEntry(seg.seq, data, 0.0)
    bm.append("t", "id1", data.schema, entry)
    bm.make_room("t")
    return entry


def _manager(wal: WriteAheadLog, max_entries: int, spill_entries: int) -> BufferManager:
    return BufferManager(1_000_000, 3600, max_entries * ENTRY_BYTES // 2, max_spill_bytes=spill_entries * ENTRY_BYTES,
                         spill_source=wal.map_segment)


def test_past_the_bound_the_oldest_entries_spill_instead_of_blocking(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    bm = _manager(wal, max_entries=4, spill_entries=100)  # capacity bound: 4 entries in memory
    for i in range(12):
        _append(wal, bm, i * ENTRY)
        assert bm.make_room("t")  # never has to wait
    buf = bm.get("t")
    spilled = [e.spilled for e in buf.entries]
    assert spilled == [True] * spilled.count(True) + [False] * spilled.count(False)  # oldest first
    assert spilled.count(True) >= 8 and buf.nbytes < 2 * bm.max_bytes
    assert bm.total_bytes() == buf.nbytes == spilled.count(False) * ENTRY_BYTES
    assert bm.spilled_bytes() == buf.spilled_bytes == spilled.count(True) * ENTRY_BYTES
    assert buf.pending_bytes == 12 * ENTRY_BYTES and buf.rows == 12 * ENTRY
    assert buf.visible().equals(rows(0, 12 * ENTRY))
    assert buf.spilled_seqs() == [e.seq for e in buf.entries if e.spilled]


def test_over_max_spill_bytes_writers_wait_again_until_a_flush(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    bm = _manager(wal, max_entries=2, spill_entries=3)
    for i in range(5):
        _append(wal, bm, i * ENTRY)
    assert bm.spilled_bytes() == 3 * ENTRY_BYTES  # the spill bound
    assert bm.over_capacity("t") and not bm.make_room("t")
    assert not bm.wait_capacity("t", timeout=0.05)
    batch = bm.take_for_flush("t")  # a flush of the oldest (spilled) rows frees spill room
    assert all(e.spilled for e in batch.entries)
    bm.mark_committed(batch)
    assert bm.wait_capacity("t", timeout=5)
    assert bm.get("t").rows == 5 * ENTRY - batch.rows


def test_spilling_off_keeps_todays_backpressure(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    bm = _manager(wal, max_entries=2, spill_entries=0)
    for i in range(3):
        _append(wal, bm, i * ENTRY)
    assert bm.over_capacity("t") and not bm.make_room("t") and bm.spilled_bytes() == 0


def test_an_entry_whose_segment_holds_other_rows_stays_in_memory(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    bm = _manager(wal, max_entries=2, spill_entries=100)
    odd = rows(0, ENTRY)
    seg = wal.append("t", "id1", odd)
    other = odd.replace_schema_metadata({"k": "v"})  # not the schema the segment holds
    bm.append("t", "id1", odd.schema, BufferEntry(seg.seq, other, 0.0))
    seg = wal.append("t", "id1", odd)
    bm.append("t", "id1", odd.schema, BufferEntry(seg.seq, odd.slice(0, 10), 0.0))  # not its rows
    for i in range(2, 4):
        _append(wal, bm, i * ENTRY)
    bm.make_room("t")
    assert [e.spilled for e in bm.get("t").entries] == [False, False, True, True]  # the next ones instead


def test_a_missing_segment_is_not_spilled(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    bm = _manager(wal, max_entries=2, spill_entries=100)
    first = _append(wal, bm, 0)
    wal.segment_path(first.seq).unlink()
    for i in range(1, 3):
        _append(wal, bm, i * ENTRY)
    assert bm.make_room("t")
    assert [e.spilled for e in bm.get("t").entries] == [False, True, True]


def test_flush_takes_prefixes_and_settles_them_by_watermark(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    bm = _manager(wal, max_entries=4, spill_entries=100)  # max_bytes: 2 entries
    for i in range(6):
        _append(wal, bm, i * ENTRY)
    seqs = bm.get("t").seqs()
    batch = bm.take_for_flush("t")
    assert batch.seqs == seqs[:2]  # a prefix of about max_bytes
    assert bm.get("t").flushing_rows == 2 * ENTRY and bm.get("t").pending_rows == 4 * ENTRY
    gone = bm.settle_committed_elsewhere(batch, seqs[0])  # committed elsewhere up to the first
    assert [e.seq for e in gone] == seqs[:1] and bm.get("t").seqs() == seqs[1:]
    batch = bm.take_for_flush("t")
    bm.put_back(batch)
    assert [e.seq for e in bm.get("t").entries] == seqs[1:]  # back in front, in order
    big = BufferManager(1_000_000, 3600, 10, max_spill_bytes=0)
    big.append("u", "id2", rows(0, 1).schema, BufferEntry(1, rows(0, ENTRY), 0.0))
    big.append("u", "id2", rows(0, 1).schema, BufferEntry(2, rows(0, ENTRY), 0.0))
    assert big.take_for_flush("u").seqs == [1]  # at least one entry, even over max_bytes


def _files(rig: WritePath):
    return sorted(rig.catalog.manifest("t").files, key=lambda f: f.wal_seq)


def _committed(rig: WritePath) -> pa.Table:
    parts = [pq.read_table(rig.store.local_path(f.key)) for f in _files(rig)]
    return pa.concat_tables(parts).sort_by("id")


def test_flush_in_chunks_commits_everything_once_with_watermarks(tmp_path):
    rig = WritePath(tmp_path, chunk_bytes=ENTRY_BYTES, max_bytes=3 * ENTRY_BYTES, max_spill_bytes=1 << 30)
    total = 20 * ENTRY
    data = rows(0, total)
    rig.ingestor.ingest("t", data.to_batches(max_chunksize=ENTRY), data.schema)
    buf = rig.buffers.get("t")
    assert buf.spilled_bytes > 0 and buf.nbytes < 2 * rig.buffers.max_bytes
    info = rig.catalog.get("t")
    seqs = buf.seqs()
    calls = []

    def fail_third(step: str) -> None:
        if step == "parquet_written":
            calls.append(step)
            if len(calls) == 3:
                raise OSError("injected")

    rig.flusher.faults = fail_third
    with pytest.raises(OSError):
        rig.flusher.flush_table("t")
    assert len(_files(rig)) == 2 and buf.rows == total - sum(f.rows for f in _files(rig))
    assert rig.metadata.get_watermark("n1", info.table_id) == _files(rig)[-1].wal_seq
    rig.flusher.faults = lambda step: None
    result = rig.flusher.flush_table("t")
    files = _files(rig)
    assert result.rows == total - sum(f.rows for f in files[:2]) and len(files) >= 7
    assert all(f.rows <= 3 * ENTRY for f in files)  # each file holds at most ~max_bytes of rows
    assert [f.wal_seq for f in files] == sorted({f.wal_seq for f in files})
    assert files[-1].wal_seq == max(seqs) == rig.metadata.get_watermark("n1", info.table_id)
    assert _committed(rig).equals(data.sort_by("id"))  # every row exactly once
    assert buf.rows == 0 and rig.buffers.spilled_bytes() == 0 and rig.wal.total_bytes == 0
    assert not list(rig.wal.dir.glob("*.arrow"))


def test_a_snapshot_of_spilled_rows_survives_flush_and_segment_reuse(tmp_path):
    rig = WritePath(tmp_path, chunk_bytes=ENTRY_BYTES, max_bytes=2 * ENTRY_BYTES, max_spill_bytes=1 << 30,
                    recycle_bytes=1 << 30)
    old = rows(0, 12 * ENTRY)
    rig.ingestor.ingest("t", old.to_batches(max_chunksize=ENTRY), old.schema)
    buf = rig.buffers.get("t")
    spilled = buf.spilled_seqs()
    assert len(spilled) >= 6
    snapshot = buf.visible()  # what a running query holds
    rig.flusher.flush_table("t")
    for seq in spilled:
        assert not rig.wal.segment_path(seq).exists()
    free_before = rig.wal.free_bytes
    new = rows(10**6, 12 * ENTRY, v_scale=-7.0)  # same sizes, other values: reuses free files
    rig.ingestor.ingest("t", new.to_batches(max_chunksize=ENTRY), new.schema)
    assert free_before > 0 and rig.wal.free_bytes < free_before
    assert snapshot.to_pylist() == old.to_pylist()
    assert pc.sum(snapshot.column("id")).as_py() == sum(range(12 * ENTRY))


def test_while_a_stream_spills_the_byte_limit_waits_for_its_end(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    bm = _manager(wal, max_entries=2, spill_entries=20)  # flush due at 1 entry; half the spill bound: 10
    bm.stream_started("t")
    for i in range(6):
        _append(wal, bm, i * ENTRY)
    assert bm.spilled_bytes() > 0 and bm.due() == []  # memory stays bounded by spilling
    for i in range(6, 13):
        _append(wal, bm, i * ENTRY)
    assert 2 * bm.spilled_bytes() >= bm.max_spill_bytes and bm.due() == ["t"]  # a long stream flushes as it goes
    bm.stream_finished("t")
    assert bm.due() == ["t"]
    off = _manager(wal, max_entries=2, spill_entries=0)  # no spilling: the byte limit never waits
    off.stream_started("u")
    off.append("u", "id2", rows(0, 1).schema, BufferEntry(1, rows(0, ENTRY), 0.0))
    assert off.due() == ["u"]
