import pyarrow as pa

from flight_server.wal import WriteAheadLog


def _t(n):
    return pa.table({"a": list(range(n))})


def test_append_replay_remove(tmp_path):
    wal = WriteAheadLog(tmp_path)
    s1 = wal.append("t", "id1", _t(3), batch_id="b1")
    s2 = wal.append("u", "id2", _t(2))
    assert s2.seq == s1.seq + 1
    segs = WriteAheadLog(tmp_path).segments()
    assert [(s.table, s.table_id, s.rows, s.batch_id) for s in segs] == [("t", "id1", 3, "b1"), ("u", "id2", 2, "")]
    assert WriteAheadLog.read(segs[0]).column("a").to_pylist() == [0, 1, 2]
    assert not (WriteAheadLog.read(segs[0]).schema.metadata or {})
    wal.remove([s1.seq])
    assert [s.seq for s in WriteAheadLog(tmp_path).segments()] == [s2.seq]


def test_sequence_never_reused_after_truncation(tmp_path):
    wal = WriteAheadLog(tmp_path)
    seqs = [wal.append("t", "id", _t(1)).seq for _ in range(3)]
    wal.remove(seqs)
    again = WriteAheadLog(tmp_path)
    assert again.append("t", "id", _t(1)).seq > max(seqs)


def test_incomplete_segment_is_ignored(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.append("t", "id", _t(1))
    (tmp_path / "00000000000000000099.arrow.tmp").write_bytes(b"partial")
    (tmp_path / "00000000000000000098.arrow").write_bytes(b"garbage")
    segs = WriteAheadLog(tmp_path).segments()
    assert [s.rows for s in segs] == [1]
    assert not (tmp_path / "00000000000000000099.arrow.tmp").exists()


def test_total_bytes_tracks_segments(tmp_path):
    wal = WriteAheadLog(tmp_path)
    s = wal.append("t", "id", _t(100))
    assert wal.total_bytes == s.size > 0
    wal.remove([s.seq])
    assert wal.total_bytes == 0


def test_sequence_is_taken_at_publish_not_at_open(tmp_path):
    """Concurrent DoPuts: the segment that joins the buffer first gets the lower number."""
    wal = WriteAheadLog(tmp_path)
    first_opened = wal.open_segment("t", "id", _t(1).schema)
    second_opened = wal.open_segment("t", "id", _t(1).schema)
    for w in (first_opened, second_opened):
        w.write(_t(1).to_batches()[0])
        w.sync()
    later = second_opened.publish()
    earlier_opened_published_last = first_opened.publish()
    assert earlier_opened_published_last.seq > later.seq
    assert [s.seq for s in WriteAheadLog(tmp_path).segments()] == [later.seq, earlier_opened_published_last.seq]


def test_aborted_segment_leaves_nothing(tmp_path):
    wal = WriteAheadLog(tmp_path)
    w = wal.open_segment("t", "id", _t(1).schema)
    w.write(_t(1).to_batches()[0])
    w.abort()
    assert list(tmp_path.iterdir()) == [] and WriteAheadLog(tmp_path).segments() == []


def _free_files(path):
    return sorted(p.name for p in path.glob("free-*.wal"))


def test_removed_segment_is_recycled_and_overwritten_exactly(tmp_path):
    wal = WriteAheadLog(tmp_path, recycle_bytes=1 << 30)
    big = wal.append("t", "id", _t(50_000))
    wal.remove([big.seq])
    [free] = _free_files(tmp_path)
    inode = (tmp_path / free).stat().st_ino
    assert wal.free_bytes == big.size and wal.total_bytes == 0
    small = wal.append("t", "id", _t(7))  # overwrites the recycled file from the start
    assert _free_files(tmp_path) == [] and wal.free_bytes == 0
    assert small.path.stat().st_ino == inode
    assert small.path.stat().st_size == small.size < big.size  # cut to its own length
    [seg] = WriteAheadLog(tmp_path, recycle_bytes=1 << 30).segments()
    assert WriteAheadLog.read(seg).column("a").to_pylist() == list(range(7))


def test_recycling_keeps_at_most_recycle_bytes(tmp_path):
    wal = WriteAheadLog(tmp_path, recycle_bytes=1)  # smaller than any segment
    s = wal.append("t", "id", _t(10))
    wal.remove([s.seq])
    assert _free_files(tmp_path) == [] and wal.free_bytes == 0
    off = WriteAheadLog(tmp_path / "off", recycle_bytes=0)
    s = off.append("t", "id", _t(10))
    off.remove([s.seq])
    assert list((tmp_path / "off").glob("*.wal")) == []


def test_free_files_survive_a_restart_and_are_never_replayed(tmp_path):
    wal = WriteAheadLog(tmp_path, recycle_bytes=1 << 30)
    s = wal.append("t", "id", _t(1000))
    wal.remove([s.seq])
    again = WriteAheadLog(tmp_path, recycle_bytes=1 << 30)
    assert again.segments() == [] and again.free_bytes == s.size
    # a crash while a recycled file was being overwritten leaves only a pending .tmp: removed at start
    w = again.open_segment("t", "id", _t(1).schema)
    w.write(_t(1).to_batches()[0])
    assert _free_files(tmp_path) == []
    third = WriteAheadLog(tmp_path, recycle_bytes=1 << 30)
    assert third.segments() == [] and list(tmp_path.glob("*.tmp")) == []
    w.abort()


def test_a_segment_whose_write_failed_is_never_published(tmp_path):
    """A real write failure (the file size limit, EFBIG, as a full disk would give ENOSPC):
    the half-written segment can neither be synced nor published, and abort leaves nothing."""
    import resource
    import signal

    import pytest

    wal = WriteAheadLog(tmp_path)
    wal.append("t", "id", _t(10))
    writer = wal.open_segment("t", "id", _t(1).schema)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(OSError):
            writer.write(pa.record_batch({"a": list(range(100_000))}))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    with pytest.raises(OSError):
        writer.sync()  # the stream would otherwise be closed, fsynced and renamed into place
    writer.abort()
    assert [s.rows for s in WriteAheadLog(tmp_path).segments()] == [10]
    assert not list(tmp_path.glob("*.tmp"))
