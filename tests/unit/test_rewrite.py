"""The DML rewriter (flight_server/rewrite.py) in process, on the real SQLite store and local
object store: what a rewritten entry inherits, pruning, and the strict-commit retry when
another rewrite (another node's DML, a compaction) wins the race. A concurrent commit cannot
be timed from outside a process, so the ``dml_uploaded`` crash point plays the other writer:
it commits a competing rewrite between this statement's uploads and its commit.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot

from clients.errors import Conflict, InvalidRequest, NotFound
from flight_server.dml import dml_plan
from flight_server.dml_hooks import where_constraints
from flight_server.rewrite import TableRewriter
from tests.fixtures.write_path import WritePath


class Rig(WritePath):
    def __init__(self, root: Path):
        super().__init__(root)
        self.flushes: list[str] = []
        self.hook = lambda step: None
        self.rewriter = self.make_rewriter(root / "dml")

    def make_rewriter(self, tmp: Path, node_id: str = "n1", hooked: bool = True) -> TableRewriter:
        def flush(table: str) -> None:
            self.flushes.append(table)
            self.flusher.flush_table(table)

        return TableRewriter(node_id, self.catalog, self.store, self.cache, tmp, flush=flush,
                             constraints=where_constraints(),
                             faults=(lambda step: self.hook(step)) if hooked else None)

    def ingest(self, start: int, count: int, flush: bool = True) -> None:
        t = pa.table({"id": pa.array(range(start, start + count), pa.int64()),
                      "v": pa.array([f"s{i}" for i in range(start, start + count)])})
        self.ingestor.ingest("t", t, t.schema, "create_append")
        if flush:
            self.flusher.flush_table("t")

    def run(self, sql: str, params: list | None = None, rewriter: TableRewriter | None = None) -> int:
        return (rewriter or self.rewriter).apply(dml_plan(sqlglot.parse_one(sql, read="duckdb"), params or []))

    def files(self):
        return self.metadata.list_files("t")

    def ids(self) -> list[int]:
        import pyarrow.parquet as pq

        out: list[int] = []
        for f in self.files():
            out += pq.read_table(self.cache.path(f.key)[0]).column("id").to_pylist()
        buf = self.buffers.get("t")
        if buf is not None and buf.rows:
            out += [i for e in buf.entries for i in e.data.column("id").to_pylist()]
        return sorted(out)


def test_rewrite_inherits_node_id_wal_seq_and_created_at(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 10)
    rig.ingest(10, 10)
    before = {f.key: f for f in rig.files()}
    assert rig.run("UPDATE t SET v = 'x' WHERE id = 15") == 1
    after = rig.files()
    assert len(after) == 2
    untouched = [f for f in after if f.key in before]
    new = [f for f in after if f.key not in before]
    assert len(untouched) == 1 and len(new) == 1  # only the file with a match was rewritten
    old = next(f for k, f in before.items() if k not in {u.key for u in untouched})
    assert (new[0].node_id, new[0].wal_seq, new[0].created_at) == (old.node_id, old.wal_seq, old.created_at)
    assert new[0].wal_seq > 0
    assert new[0].key.split("/")[1] == old.key.split("/")[1]  # same date= partition
    assert new[0].rows == 10 and new[0].min_values["id"] == 10
    assert rig.store.exists(old.key)  # replaced objects stay for the vacuum (16a)


def test_a_whole_file_deleted_is_only_removed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 5)
    rig.ingest(5, 5)
    keys = {f.key for f in rig.files()}
    assert rig.run("DELETE FROM t WHERE id < ?", [5]) == 5
    assert {f.key for f in rig.files()} < keys and len(rig.files()) == 1
    assert rig.ids() == list(range(5, 10))


def test_buffered_rows_are_flushed_first(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 5)
    rig.ingest(5, 5, flush=False)
    assert rig.run("DELETE FROM t WHERE id % 2 = 0") == 5
    assert rig.flushes == ["t"]
    assert rig.ids() == [1, 3, 5, 7, 9]


def test_bad_statements_write_nothing_and_flush_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 5)
    rig.ingest(5, 5, flush=False)
    keys = [f.key for f in rig.files()]
    with pytest.raises(InvalidRequest, match="nope"):
        rig.run("DELETE FROM t WHERE nope = 1")
    with pytest.raises(InvalidRequest, match="Could not convert"):
        rig.run("UPDATE t SET id = 'abc' WHERE id = 1")
    with pytest.raises(InvalidRequest, match="not in table"):
        rig.run("UPDATE t SET nope = 1")
    with pytest.raises(NotFound):
        rig.run("DELETE FROM missing WHERE id = 1")
    assert rig.flushes == [] and [f.key for f in rig.files()] == keys
    assert rig.ids() == list(range(10))


def test_a_competing_rewrite_makes_the_statement_start_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 10)
    other = rig.make_rewriter(tmp_path / "other", node_id="n2", hooked=False)  # another node's DML
    fired = []

    def compete(step: str) -> None:
        if step == "dml_uploaded" and not fired:
            fired.append(step)
            assert rig.run("DELETE FROM t WHERE id = 0", rewriter=other) == 1
    rig.hook = compete
    assert rig.run("UPDATE t SET id = id + 100 WHERE id < 3") == 2  # exact: row 0 went first
    assert rig.ids() == [*range(3, 10), 101, 102]
    referenced = {f.key for f in rig.files()}
    dml_objects = {o.key for o in rig.store.list("t/")}
    # the loser's uncommitted upload was deleted; the replaced objects stay (vacuum's job)
    assert len(dml_objects) == 3 and referenced < dml_objects


def test_gives_up_with_conflict_when_it_keeps_losing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ingest(0, 50)
    other = rig.make_rewriter(tmp_path / "other", node_id="n2", hooked=False)
    counter = iter(range(50))

    def compete(step: str) -> None:
        if step == "dml_uploaded":
            rig.run("DELETE FROM t WHERE id = ?", [next(counter)], rewriter=other)
    rig.hook = compete
    with pytest.raises(Conflict, match="gave up"):
        rig.run("DELETE FROM t WHERE id >= 40")
    rig.hook = lambda step: None
    assert rig.ids() == list(range(rig.rewriter.retries, 50))  # only the winners' deletes applied


@pytest.mark.parametrize(("sql", "params"), [("DELETE FROM t WHERE id = 15", []),
                                             ("DELETE FROM t WHERE id = ?", [15]),
                                             ("UPDATE t SET v = 'x' WHERE id >= ? AND id < 17", [15])])
def test_files_are_pruned_by_their_statistics(tmp_path: Path, sql: str, params: list) -> None:
    rig = Rig(tmp_path)
    for start in (0, 10, 20):
        rig.ingest(start, 10)
    holder = [f.key for f in rig.files() if f.min_values["id"] == 10]
    read: list[str] = []
    real = rig.cache.path
    rig.cache.path = lambda key: (read.append(key), real(key))[1]
    changed = rig.run(sql, params)
    assert changed == (1 if sql.startswith("DELETE") else 2)
    assert read == holder  # only the file holding ids 10..19 was read


def test_a_value_failing_on_a_later_file_writes_nothing_and_leaves_no_object(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for start, v in ((0, "7"), (5, "x")):  # the second file's text is no number
        t = pa.table({"id": pa.array(range(start, start + 5), pa.int64()), "v": [v] * 5})
        rig.ingestor.ingest("t", t, t.schema, "create_append")
        rig.flusher.flush_table("t")
    keys = sorted(f.key for f in rig.files())
    objects = sorted(o.key for o in rig.store.list("t/"))
    with pytest.raises(InvalidRequest, match="x"):
        rig.run("UPDATE t SET id = CAST(v AS BIGINT)")
    assert sorted(f.key for f in rig.files()) == keys
    assert sorted(o.key for o in rig.store.list("t/")) == objects  # the first file's rewrite was removed
    assert rig.ids() == list(range(10))
