"""Statements of a known shape run in one DuckDB step (query/direct.py): the answers and the
Arrow schemas are those of the relation path, for every shape; shapes whose result types are
mapped for clients (INTERVAL, ENUM, ...) and system tables never run directly."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from flight_server.config import load_settings
from flight_server.node import Node
from flight_server.query import direct


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    overrides = {"server.data_dir": str(tmp_path_factory.mktemp("direct")), "server.grpc_port": 0,
                 "server.rest_port": 0, "server.metrics_port": 0, "server.host": "127.0.0.1",
                 "query.cache_enabled": False, "query.hot_table_bytes": 0}
    n = Node(load_settings(None, overrides, environ={})).start()
    t = pa.table({"id": pa.array(range(1000), pa.int64()),
                  "price": pa.array([decimal.Decimal(i) / 100 for i in range(1000)], pa.decimal128(12, 2)),
                  "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 300) for i in range(1000)]),
                  "ts": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i) for i in range(1000)],
                                 pa.timestamp("us")),
                  "name": pa.array([f"n{i % 37}" if i % 11 else None for i in range(1000)])})
    n.ingest("items", t.slice(0, 600).to_batches(), t.schema, "create_append")
    n.flush("items")
    n.ingest("items", t.slice(600).to_batches(), t.schema, "append")  # flushed and buffered rows
    yield n
    n.stop()


def _run(node: Node, sql: str, params=None) -> pa.Table:
    r = node.query(sql, params)
    try:
        return r.reader.read_all()
    finally:
        r.close()


def _relation_path(node: Node, monkeypatch, sql: str, params=None) -> pa.Table:
    with monkeypatch.context() as m:
        m.setattr(direct.DirectRuns, "get", lambda self, key: None)
        return _run(node, sql, params)


SHAPES = [
    ("SELECT count(*) FROM items WHERE id = {k}", None),
    ("SELECT * FROM items WHERE id BETWEEN {k} AND {k} + 5 ORDER BY id", None),
    ("SELECT name, count(*) AS n, sum(price) AS s FROM items WHERE day >= DATE '2024-03-01' + {k} "
     "GROUP BY name ORDER BY name NULLS FIRST", None),
    ("SELECT ts, price * 2 AS p2 FROM items WHERE ts < TIMESTAMP '2024-01-01 05:00:00' AND id > {k} ORDER BY ts",
     None),
    ("SELECT id, name FROM items WHERE id = ? OR id = {k} ORDER BY id", [3]),
    ("SELECT 1 AS k, 'x' AS s WHERE {k} > 0", None),  # no table: SELECT 1 style
]


@pytest.mark.skipif(not direct.available(), reason="this DuckDB has no one-step entry point")
@pytest.mark.parametrize(("template", "params"), SHAPES)
def test_direct_runs_equal_the_relation_path(node, monkeypatch, template, params):
    keys = [5, 77, 500, 640, 999]
    node.engine.direct = direct.DirectRuns()
    first = _run(node, template.format(k=keys[0]), params)  # learns the shape
    assert len(node.engine.direct._known) == 1
    calls: list = []
    real = direct.DirectRuns.run

    def counted(*args):
        calls.append(args)
        return real(*args)

    for k in keys[1:]:
        sql = template.format(k=k)
        calls.clear()
        monkeypatch.setattr(direct.DirectRuns, "run", staticmethod(counted))
        got = _run(node, sql, params)
        monkeypatch.setattr(direct.DirectRuns, "run", staticmethod(real))
        want = _relation_path(node, monkeypatch, sql, params)
        assert calls, f"{sql} did not run directly"
        assert got.schema == want.schema == first.schema
        assert got.to_pylist() == want.to_pylist()


def test_mapped_types_never_run_directly(node):
    node.engine.direct = direct.DirectRuns()
    for k in (1, 2, 3):
        got = _run(node, f"SELECT INTERVAL {k} HOUR AS i, ts - TIMESTAMP '2024-01-01' AS d FROM items WHERE id = {k}")
        assert got.schema.field("i").type == pa.duration("us")
        assert got.column("d").to_pylist() == [dt.timedelta(minutes=k)]
    assert not node.engine.direct._known


def test_system_tables_and_new_column_types_take_the_relation_path(node):
    node.engine.direct = direct.DirectRuns()
    _run(node, "SELECT count(*) FROM system.tables")
    assert not node.engine.direct._known
    _run(node, "SELECT count(*) FROM items WHERE id = 1")
    assert len(node.engine.direct._known) == 1
    # a widened schema gives the table other column types: another key, learned anew
    extra = pa.table({"id": pa.array([5000], pa.int64()), "extra": pa.array([1.5])})
    node.ingest("items", extra.to_batches(), extra.schema, "append")
    assert _run(node, "SELECT count(*) FROM items WHERE id = 2").column(0).to_pylist() == [1]
    assert len(node.engine.direct._known) == 2


@pytest.mark.skipif(not direct.available(), reason="this DuckDB has no one-step entry point")
@pytest.mark.parametrize(("sql", "values"), [
    ("SELECT count(*) AS n, sum(price) AS s FROM items WHERE ts >= ? AND ts < ?",
     [(dt.datetime(2024, 1, 1, 0, k), dt.datetime(2024, 1, 1, 2, k)) for k in (0, 7, 13, 59)]),
    ("SELECT id, name FROM items WHERE day = ? ORDER BY id", [(dt.date(2024, 1, 1) + dt.timedelta(days=k),)
                                                             for k in (0, 3, 200, 299)]),
    ("SELECT id, price FROM items WHERE price = ? OR price = ? ORDER BY id",
     [(decimal.Decimal("1.50"), decimal.Decimal("2.25")), (decimal.Decimal("3.10"), decimal.Decimal("9.99")),
      (decimal.Decimal("4.07"), decimal.Decimal("5.00"))]),  # same digits: same DECIMAL(3, 2)
])
def test_dates_timestamps_and_decimals_run_directly(node, monkeypatch, sql, values):
    """Bound date, timestamp and decimal values (ADBC binds them from Arrow) have a known DuckDB
    type, so a parameterised lookup runs in one step like one with literals."""
    node.engine.direct = direct.DirectRuns()
    _run(node, sql, list(values[0]))
    calls: list = []
    real = direct.DirectRuns.run
    monkeypatch.setattr(direct.DirectRuns, "run", staticmethod(lambda *a: calls.append(a) or real(*a)))
    for row in values[1:]:
        got = _run(node, sql, list(row))
        want = _relation_path(node, monkeypatch, sql, list(row))
        assert got.schema == want.schema
        assert got.to_pylist() == want.to_pylist()
    assert len(calls) == len(values) - 1


@pytest.mark.skipif(not direct.available(), reason="this DuckDB has no one-step entry point")
def test_an_integer_parameter_keeps_the_type_its_range_gives():
    """DuckDB types a Python int by its range (INTEGER .. UHUGEINT, which clients get as text):
    a shape learned with a small value never runs a huge one with the small one's types."""
    kinds = [direct.param_kind(v) for v in (5, -(1 << 31), 1 << 31, (1 << 63), (1 << 64), 1 << 127, 1 << 128)]
    assert kinds == ["int32", "int32", "int64", "uint64", "int128", "uint128", None]
    assert direct.param_kind(decimal.Decimal("1.50")) != direct.param_kind(decimal.Decimal("123.4"))
    assert direct.param_kind(dt.datetime(2024, 1, 1)) != direct.param_kind(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert direct.param_kind(dt.datetime(2024, 1, 1)) != direct.param_kind(dt.date(2024, 1, 1))
    assert direct.param_kind([1, 2]) is None


def test_a_huge_integer_parameter_gets_the_relation_paths_types(node, monkeypatch):
    node.engine.direct = direct.DirectRuns()
    sql = "SELECT ? AS x FROM items WHERE id = 1"
    assert _run(node, sql, [5]).schema.field("x").type == pa.int32()  # learned: INTEGER, no mapping
    for value in (1 << 40, (1 << 64) - 1, 1 << 127):
        got = _run(node, sql, [value])
        want = _relation_path(node, monkeypatch, sql, [value])
        assert got.schema == want.schema
        assert got.to_pylist() == want.to_pylist()
    assert _run(node, sql, [1 << 127]).column(0).to_pylist() == [str(1 << 127)]  # UHUGEINT: text
