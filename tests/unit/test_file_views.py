"""A table's view over its committed files (query/engine.py): files that share one schema are
read without ``union_by_name``; files written before a schema change (a column added, an int
widened to float) are read by name; the answers are the same either way."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from flight_server.config import load_settings
from flight_server.node import Node


@pytest.fixture
def node(tmp_path):
    overrides = {"server.data_dir": str(tmp_path), "server.grpc_port": 0, "server.rest_port": 0,
                 "server.metrics_port": 0, "server.host": "127.0.0.1", "query.cache_enabled": False,
                 "query.hot_table_bytes": 0}
    n = Node(load_settings(None, overrides, environ={})).start()
    yield n
    n.stop()


def _q(node: Node, sql: str) -> list[dict]:
    r = node.query(sql)
    try:
        return r.reader.read_all().to_pylist()
    finally:
        r.close()


def _put(node: Node, name: str, table: pa.Table, flush: bool = True) -> None:
    node.ingest(name, table.to_batches(), table.schema, "create_append")
    if flush:
        node.flush(name)


def _select(node: Node, name: str) -> str:
    rt = node.resolver(name, None, include_buffer=False)
    try:
        return node.engine._file_select(rt)
    finally:
        rt.release()


def _rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "d": pa.array([dt.timedelta(seconds=i) for i in range(n)], pa.duration("ms")),
                     "s": pa.array([f"s{i}" for i in range(start, start + n)])})


def test_files_with_one_schema_are_read_without_union_by_name(node):
    for start in (0, 100, 200):
        _put(node, "same", _rows(start, 100))
    _put(node, "same", _rows(300, 5), flush=False)  # buffered rows too
    assert "union_by_name" not in _select(node, "same")
    got = _q(node, "SELECT count(*) AS n, sum(id) AS s, max(d) AS d, min(s) AS m FROM same")
    assert got == [{"n": 305, "s": sum(range(305)), "d": dt.timedelta(seconds=99), "m": "s0"}]


def test_files_from_before_a_schema_change_are_read_by_name(node):
    _put(node, "ev", pa.table({"a": pa.array([1, 2], pa.int64()), "k": ["x", "y"]}))
    _put(node, "ev", pa.table({"a": pa.array([3], pa.int64()), "k": ["z"]}))
    assert "union_by_name" not in _select(node, "ev")
    _put(node, "ev", pa.table({"k": ["w"], "b": ["new"], "a": pa.array([1.5])}))  # b added, a widened, reordered
    assert "union_by_name=true" in _select(node, "ev")
    _put(node, "ev", pa.table({"a": pa.array([7], pa.int32())}), flush=False)
    assert _q(node, "SELECT a, k, b FROM ev ORDER BY a") == [
        {"a": 1.0, "k": "x", "b": None}, {"a": 1.5, "k": "w", "b": "new"}, {"a": 2.0, "k": "y", "b": None},
        {"a": 3.0, "k": "z", "b": None}, {"a": 7.0, "k": None, "b": None}]


def test_a_reused_view_follows_the_pruned_file_set(node, monkeypatch):
    """A file-only view reads its files from a cursor variable: a lookup that prunes to another
    file changes the variable, not the view, and still reads exactly its own file."""
    for start in (0, 100, 200):
        _put(node, "parts", _rows(start, 100))
    created = []
    real = node.engine._bind
    monkeypatch.setattr(node.engine, "_bind", lambda *a: created.append(a[3]) or real(*a))
    for k in (5, 150, 250, 42, 199, 205, 5, 299, 100):
        got = _q(node, f"SELECT count(*) AS n, min(s) AS s FROM parts WHERE id = {k}")
        assert got == [{"n": 1, "s": f"s{k}"}]
    assert _q(node, "SELECT count(*) AS n FROM parts WHERE id >= 150") == [{"n": 150}]
    assert _q(node, "SELECT count(*) AS n FROM parts WHERE id = 1000") == [{"n": 0}]  # no file at all
    assert all(var is not None for var in created if var)
    assert len(created) <= 3, f"views re-created {len(created)} times"  # at most once per pooled cursor used
