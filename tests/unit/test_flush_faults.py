"""The flusher when a commit's reply is lost: the commit may or may not have landed.

A lost reply cannot be produced on demand with a real Redis (it needs the connection to die
after the server ran the script and before the reply arrived), so a thin wrapper around the
real SQLite store plays it: it applies (or not) the commit, then raises ``Unavailable``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from clients.errors import Unavailable
from flight_server.metadata.base import FileEntry
from flight_server.metadata.sqlite import SQLiteMetadataStore
from tests.fixtures.write_path import WritePath


class LostReply:
    """A metadata store whose next commit reply gets lost (after or before applying it)."""

    def __init__(self, inner: SQLiteMetadataStore):
        self.inner = inner
        self.lose: str | None = None  # "after": applied then lost; "before": never applied

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def commit_files(self, *args, **kwargs):
        mode, self.lose = self.lose, None
        if mode == "before":
            raise Unavailable("metadata store unavailable: connection reset")
        version = self.inner.commit_files(*args, **kwargs)
        if mode == "after":
            raise Unavailable("metadata store unavailable: connection reset while reading the reply")
        return version


class Rig(WritePath):
    def __init__(self, root: Path, metadata: LostReply | None = None):
        super().__init__(root, metadata or LostReply(SQLiteMetadataStore(root / "meta.sqlite3")))

    def ingest(self, start: int, count: int) -> None:
        t = pa.table({"id": pa.array(range(start, start + count), pa.int64())})
        self.ingestor.ingest("t", t, t.schema)

    def visible_rows(self) -> int:
        """What a query on this node counts: committed files it sees plus its buffer."""
        m = self.catalog.manifest("t")
        buf = self.buffers.get("t")
        return sum(f.rows for f in m.files) + (buf.rows if buf else 0)

    def committed(self) -> list:
        return self.metadata.inner.list_files("t")


@pytest.mark.parametrize("lost", ["after", "before"])
def test_lost_commit_reply_never_duplicates_rows(tmp_path: Path, lost: str) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 10)
    rig.metadata.lose = lost
    with pytest.raises(Unavailable):
        rig.flusher.flush_table("t")
    assert len(rig.committed()) == (1 if lost == "after" else 0)
    assert rig.buffers.get("t").rows == 10  # the rows are back in the buffer ...
    assert rig.visible_rows() == 10  # ... and the maybe-committed file is not counted twice
    rig.ingest(10, 5)
    assert rig.visible_rows() == 15
    rig.flusher.flush_table("t")  # the retry settles it in one atomic commit
    files = rig.committed()
    assert [f.rows for f in files] == [15]
    assert rig.visible_rows() == 15
    objects = [o.key for o in rig.store.list("t/")]
    assert objects == [files[0].key]  # the superseded object is deleted
    assert rig.wal.segments() == []


def test_crash_after_a_lost_reply_replays_nothing_twice(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 10)
    rig.metadata.lose = "after"
    with pytest.raises(Unavailable):
        rig.flusher.flush_table("t")
    # the process dies here: a new node on the same WAL and metadata
    again = Rig(tmp_path, metadata=LostReply(rig.metadata.inner))
    replayed = again.ingestor.replay(lambda table, table_id: again.metadata.get_watermark("n1", table_id))
    assert replayed == 0  # the watermark committed with the file covers those segments
    assert again.visible_rows() == 10


def test_a_table_dropped_by_another_node_discards_the_flush(tmp_path: Path) -> None:
    """Only the catalog can confirm a drop: here it does (the table is gone from the metadata
    store, as when another node dropped it), so the rows and their WAL segments go."""
    rig = Rig(tmp_path)
    rig.ingest(0, 10)
    rig.metadata.inner.drop_table("t")
    assert rig.flusher.flush_table("t").rows == 0
    assert rig.buffers.get("t").rows == 0
    assert rig.wal.segments() == [] and list(rig.store.list("t/")) == []


def test_a_storage_failure_keeps_the_rows_in_buffer_and_wal(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 10)
    objects = tmp_path / "objects"
    objects.rename(tmp_path / "objects-away")
    objects.write_text("not a folder")  # every upload fails, for real
    with pytest.raises(Exception):  # noqa: B017 - whatever the store raises, nothing is discarded
        rig.flusher.flush_table("t")
    assert rig.buffers.get("t").rows == 10 and len(rig.wal.segments()) == 1
    objects.unlink()
    (tmp_path / "objects-away").rename(objects)
    assert rig.flusher.flush_table("t").rows == 10
    assert rig.wal.segments() == [] and rig.visible_rows() == 10


def test_rows_adopted_while_the_node_looked_dead_are_not_committed_twice(tmp_path: Path) -> None:
    """A node cut off from Redis past node_ttl looks dead; another node adopts its mirrored WAL
    and commits those rows with this node's watermark (adopt.py). When this node flushes the
    same rows afterwards, the commit is fenced: the adopted rows leave its buffer and WAL, the
    rows above the watermark commit normally, and nothing is counted twice."""
    rig = Rig(tmp_path)
    rig.ingest(0, 10)  # WAL segment 1
    rig.ingest(10, 5)  # WAL segment 2
    info = rig.metadata.inner.get_table("t")
    adopted = FileEntry(key="t/date=2026-01-01/n1-adopted.parquet", rows=10, size=1, node_id="n1")
    rig.metadata.inner.commit_files("t", info.table_id, [adopted], watermark=("n1", 1), since=1)
    result = rig.flusher.flush_table("t")  # fenced: segment 1 is committed already
    assert result.rows == 0
    assert rig.buffers.get("t").rows == 5 and len(rig.wal.segments()) == 1
    assert [f.key for f in rig.committed()] == [adopted.key]  # the fenced upload is not referenced
    assert rig.flusher.flush_table("t").rows == 5  # the rest commits
    assert sorted(f.rows for f in rig.committed()) == [5, 10]
    assert rig.buffers.get("t").rows == 0 and rig.wal.segments() == []
    assert [o.key for o in rig.store.list("t/") if "adopted" not in o.key] == [
        f.key for f in rig.committed() if "adopted" not in f.key]


class Outage(LostReply):
    """The store, until ``down`` is set: then every call fails as an unreachable Redis would."""

    down = False

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if callable(attr) and self.down:
            def failing(*args, **kwargs):
                raise Unavailable("metadata store unavailable: no master found")
            return failing
        return attr


def test_an_outage_right_after_a_flush_still_serves_and_takes_the_table(tmp_path: Path) -> None:
    """The catalog's outage rule (catalog.py): a table this node has cached keeps answering.
    A flush's commit must not drop that cache: its rows left the buffer, and the next lookup
    during an outage (before any reload) would find neither them nor the table."""
    rig = Rig(tmp_path, metadata=Outage(SQLiteMetadataStore(tmp_path / "meta.sqlite3")))
    rig.ingest(0, 10)
    rig.flusher.flush_table("t")
    rig.metadata.down = True
    assert rig.visible_rows() == 10  # the committed file, from the cache
    rig.ingest(10, 5)  # still acknowledged during the outage
    assert rig.visible_rows() == 15
    rig.metadata.down = False
    assert rig.visible_rows() == 15  # the store's own manifest once it is back
    assert [f.rows for f in rig.catalog.manifest("t").files] == [10]
