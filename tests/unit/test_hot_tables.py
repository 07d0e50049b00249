"""Hot tables (query/hot.py): small tables' committed files served from a DuckDB in-memory
copy, rebuilt in the background when the file set changes, never stale, bounded in memory."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clients.errors import MinioDBError
from flight_server.config import load_settings
from flight_server.node import Node


def _node(tmp_path, **query) -> Node:
    overrides = {"server.data_dir": str(tmp_path), "server.grpc_port": 0, "server.rest_port": 0,
                 "server.metrics_port": 0, "server.host": "127.0.0.1", "query.cache_enabled": False}
    overrides.update({f"query.{k}": v for k, v in query.items()})
    return Node(load_settings(None, overrides, environ={})).start()


@pytest.fixture
def node(tmp_path):
    n = _node(tmp_path)
    yield n
    n.stop()


def _rows(start: int, n: int, extra: bool = False) -> pa.Table:
    cols = {"id": pa.array(range(start, start + n), pa.int64()), "v": pa.array([float(i) for i in range(n)])}
    if extra:
        cols["tag"] = pa.array([f"t{i}" for i in range(n)])
    return pa.table(cols)


def _q(node: Node, sql: str) -> pa.Table:
    r = node.query(sql)
    try:
        return r.reader.read_all()
    finally:
        r.close()


def _hot_tables(node: Node) -> list[str]:
    cur = node.engine.cursor()
    try:
        return [r[0] for r in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = '__hot' ORDER BY 1").fetchall()]
    finally:
        cur.close()


def _settle(node: Node) -> None:
    node.engine.hot.wait_idle()


def test_small_table_is_copied_once_and_answers_the_same(node):
    node.ingest("h", _rows(0, 1000).to_batches(), _rows(0, 1).schema, "create")
    node.flush("h")
    sql = "SELECT count(*) AS n, sum(id) AS s FROM h WHERE v >= 10"
    from_files = _q(node, sql)  # first query reads the files and schedules the copy
    _settle(node)
    assert node.engine.hot.stats()["tables"] == 1 and len(_hot_tables(node)) == 1
    assert node.status()["hot_tables"]["tables"] == 1 and node.status()["hot_tables"]["bytes"] > 0
    for _ in range(3):
        assert _q(node, sql).equals(from_files)
    assert node.engine.hot.stats()["builds"] == 1


def test_a_flush_changes_the_file_set_and_queries_never_see_a_stale_copy(node):
    node.ingest("h", _rows(0, 100).to_batches(), _rows(0, 1).schema, "create")
    node.flush("h")
    _q(node, "SELECT count(*) FROM h")
    _settle(node)
    node.ingest("h", _rows(100, 50).to_batches(), _rows(0, 1).schema, "append")
    assert _q(node, "SELECT count(*) AS n FROM h").column("n").to_pylist() == [150]  # copy + buffer
    node.flush("h")
    assert _q(node, "SELECT count(*) AS n FROM h").column("n").to_pylist() == [150]  # new files: not the copy
    _settle(node)
    assert _q(node, "SELECT count(*) AS n, max(id) AS m FROM h").to_pylist() == [{"n": 150, "m": 149}]
    assert node.engine.hot.stats()["builds"] == 2
    assert len(_hot_tables(node)) == 1  # the old copy was dropped


def test_schema_evolution_gives_a_new_copy_with_the_new_column(node):
    node.ingest("h", _rows(0, 10).to_batches(), _rows(0, 1).schema, "create")
    node.flush("h")
    _q(node, "SELECT count(*) FROM h")
    _settle(node)
    node.ingest("h", _rows(10, 5, extra=True).to_batches(), _rows(0, 1, extra=True).schema, "append")
    node.flush("h")
    _q(node, "SELECT count(*) FROM h")
    _settle(node)
    out = _q(node, "SELECT count(tag) AS tagged, count(*) AS n FROM h").to_pylist()
    assert out == [{"tagged": 5, "n": 15}]


def test_drop_removes_the_copy_and_budget_evicts_the_least_recently_used(tmp_path):
    node = _node(tmp_path, hot_cache_bytes=1)  # smaller than any copy: each build evicts itself
    try:
        node.ingest("a", _rows(0, 100).to_batches(), _rows(0, 1).schema, "create")
        node.flush("a")
        _q(node, "SELECT count(*) FROM a")
        _settle(node)
        assert node.engine.hot.stats()["tables"] == 0 and _hot_tables(node) == []
    finally:
        node.stop()
    node = _node(tmp_path / "b")
    try:
        node.ingest("a", _rows(0, 100).to_batches(), _rows(0, 1).schema, "create")
        node.flush("a")
        _q(node, "SELECT count(*) FROM a")
        _settle(node)
        assert len(_hot_tables(node)) == 1
        node.ingestor.drop_table("a")
        _settle(node)
        assert _hot_tables(node) == [] and node.engine.hot.stats()["tables"] == 0
    finally:
        node.stop()


def test_off_and_not_for_pruned_or_large_tables(tmp_path):
    node = _node(tmp_path, hot_table_bytes=0)
    try:
        node.ingest("a", _rows(0, 100).to_batches(), _rows(0, 1).schema, "create")
        node.flush("a")
        _q(node, "SELECT count(*) FROM a")
        assert not node.engine.hot.enabled and node.engine.hot.stats()["builds"] == 0
    finally:
        node.stop()
    node = _node(tmp_path / "small", hot_table_bytes=64 * 1024)
    try:
        rng = np.random.default_rng(7)
        big = pa.table({"id": rng.integers(0, 1 << 62, 20_000), "v": rng.random(20_000)})
        node.ingest("big", big.to_batches(), big.schema, "create")  # ~320 KB of Parquet
        node.flush("big")
        for i in range(2):
            node.ingest("p", _rows(i * 100, 100).to_batches(), _rows(0, 1).schema, "create_append")
            node.flush("p")
        assert _q(node, "SELECT count(*) AS n FROM big").column("n").to_pylist() == [20_000]
        assert _q(node, "SELECT count(*) AS n FROM p WHERE id >= 150").column("n").to_pylist() == [50]  # pruned
        _settle(node)
        assert node.engine.hot.stats()["builds"] == 0
        _q(node, "SELECT count(*) FROM p")  # all files: eligible
        _settle(node)
        assert node.engine.hot.stats()["builds"] == 1
        assert _q(node, "SELECT count(*) AS n FROM p WHERE id >= 150").column("n").to_pylist() == [50]
    finally:
        node.stop()


def test_internal_copies_are_not_user_tables(node):
    node.ingest("h", _rows(0, 10).to_batches(), _rows(0, 1).schema, "create")
    node.flush("h")
    _q(node, "SELECT count(*) FROM h")
    _settle(node)
    [copy] = _hot_tables(node)
    with pytest.raises(MinioDBError):
        _q(node, f'SELECT * FROM __hot."{copy}"')


def test_a_sorted_table_is_copied_in_its_key_order(node):
    """Each flushed file is sorted by the table's sort key on its own; the hot copy is sorted as
    a whole, so a key range reads one row group of it, and every answer stays the same."""
    node.execute_update("CREATE TABLE ev (ts BIGINT, v DOUBLE) WITH (sort_key = 'ts')")
    rng = np.random.default_rng(7)
    for part in range(3):  # three files, each spanning the whole key range
        ts = rng.permutation(np.arange(part, 300_000, 3, dtype=np.int64))
        t = pa.table({"ts": pa.array(ts), "v": pa.array(ts.astype(np.float64) / 2)})
        node.ingest("ev", t.to_batches(), t.schema, "append")
        node.flush("ev")
    sql = "SELECT count(*) AS n, sum(v) AS s FROM ev WHERE ts >= 120000 AND ts < 121000"
    want = {"n": 1000, "s": sum(range(120000, 121000)) / 2}
    assert _q(node, sql).to_pylist() == [want]  # from the files; schedules the copy
    _settle(node)
    (copy,) = _hot_tables(node)
    cur = node.engine.cursor()
    try:
        keys = cur.execute(f'SELECT ts FROM __hot."{copy}"').fetchnumpy()["ts"]
        plan = cur.execute(f'EXPLAIN ANALYZE SELECT sum(v) FROM __hot."{copy}" WHERE ts >= 120000 AND ts < 121000'
                           ).fetchall()[0][1]
    finally:
        cur.close()
    assert len(keys) == 300_000 and bool(np.all(np.diff(keys) >= 0))
    assert "Row Groups Scanned: 1 /" in plan
    assert _q(node, sql).to_pylist() == [want]  # now from the copy
