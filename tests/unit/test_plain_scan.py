"""Plain scans (query/plain_scan.py): ``SELECT *`` / columns of one table are streamed by Arrow's
Parquet reader when that gives exactly the normal (DuckDB) path's answer, and only then.

Every answer is compared with the same statement forced through the normal path on the same
node (``engine.plain_scans.enabled = False``), schema metadata included, and with DuckDB over
the table's files; which path ran is read from the result's statistics."""

from __future__ import annotations

import datetime as dt
import decimal
import threading

import duckdb
import pyarrow as pa
import pytest

from clients.errors import Cancelled
from flight_server.config import load_settings
from flight_server.node import Node
from flight_server.query.statement import statement


@pytest.fixture
def node(tmp_path):
    overrides = {"server.data_dir": str(tmp_path), "server.grpc_port": 0, "server.rest_port": 0,
                 "server.metrics_port": 0, "server.host": "127.0.0.1", "query.cache_enabled": False,
                 "query.hot_table_bytes": 0, "query.batch_rows": 1024}
    n = Node(load_settings(None, overrides, environ={})).start()
    yield n
    n.stop()


def _run(node: Node, sql: str, params=None, fast: bool = True) -> tuple[pa.Table, bool]:
    node.engine.plain_scans.enabled = fast
    try:
        r = node.query(sql, params)
    finally:
        node.engine.plain_scans.enabled = True
    try:
        return r.reader.read_all(), bool(r.stats.get("plain_scan"))
    finally:
        r.close()


def _same(node: Node, sql: str, expect_fast: bool = True) -> pa.Table:
    got, fast = _run(node, sql)
    want, slow = _run(node, sql, fast=False)
    assert (fast, slow) == (expect_fast, False), sql
    assert got.schema.equals(want.schema, check_metadata=True), (sql, got.schema, want.schema)
    assert got.equals(want), sql
    return got


def _mixed(start: int, n: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "price": pa.array([None if i % 7 == 0 else decimal.Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
        "big": pa.array([decimal.Decimal(i) * 10**20 for i in ids], pa.decimal128(38, 3)),
        "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 400) for i in ids], pa.date32()),
        "ts": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us")),
        "name": pa.array([None if i % 5 == 0 else f"n{i}" for i in ids], pa.string()),
        "ok": pa.array([None if i % 3 == 0 else i % 2 == 0 for i in ids], pa.bool_()),
        "x": pa.array([i / 3 for i in ids], pa.float64()),
        "Odd Name": pa.array([i % 11 for i in ids], pa.int32()),
    })


def _put(node: Node, name: str, table: pa.Table, flush: bool = True) -> None:
    node.ingest(name, table.to_batches(max_chunksize=700), table.schema, "create_append")
    if flush:
        node.flush(name)


def _files(node: Node, name: str) -> list[str]:
    rt = node.resolver(name, None, include_buffer=False)
    try:
        return list(rt.paths)
    finally:
        rt.release()


PLAIN = [
    "SELECT * FROM mixed",
    "FROM mixed",
    "SELECT name, id FROM mixed",
    "SELECT price AS p, day AS d, ts FROM mixed",
    'SELECT "Odd Name", "odd name" AS again, NAME FROM mixed',
    "SELECT m.id, m.x FROM mixed AS m",
    "SELECT * FROM miniodb.main.mixed",
    "SELECT id, big FROM main.mixed",
    "SELECT id, id AS id2, id FROM mixed",
]


@pytest.mark.parametrize("sql", PLAIN)
def test_plain_scans_equal_the_normal_path_over_files_and_buffer(node, sql):
    _put(node, "mixed", _mixed(0, 3000))
    _put(node, "mixed", _mixed(3000, 2500))
    _put(node, "mixed", _mixed(5500, 1234), flush=False)  # buffered rows follow the files
    got = _same(node, sql)
    assert got.num_rows == 6734


def test_plain_scan_of_files_equals_duckdb_over_the_files(node):
    _put(node, "mixed", _mixed(0, 4000))
    _put(node, "mixed", _mixed(4000, 3000))
    got, fast = _run(node, "SELECT * FROM mixed")
    assert fast
    files = ", ".join(f"'{p}'" for p in _files(node, "mixed"))
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    want = con.sql(f"SELECT * FROM read_parquet([{files}], hive_partitioning=false)").to_arrow_table()
    assert got.column_names == want.column_names
    assert got.to_pylist() == want.to_pylist()  # file order, row order within the files kept


def test_buffer_only_and_files_only_tables(node):
    _put(node, "buffered", _mixed(0, 2000), flush=False)
    assert _same(node, "SELECT * FROM buffered").num_rows == 2000
    _put(node, "flushed", _mixed(0, 2000))
    assert _same(node, "SELECT id, name FROM flushed").num_rows == 2000


def test_statement_shapes_that_are_not_plain_scans(node):
    _put(node, "mixed", _mixed(0, 500))
    _put(node, "other", _mixed(0, 10))
    version = node.catalog.manifest("mixed").version
    for sql, params in [
        ("SELECT * FROM mixed WHERE id > 3", None),
        ("SELECT * FROM mixed WHERE id > ?", [3]),
        ("SELECT * FROM mixed LIMIT 10", None),
        ("SELECT * FROM mixed LIMIT 10 OFFSET 5", None),
        ("SELECT * FROM mixed ORDER BY id DESC", None),
        ("SELECT DISTINCT ok FROM mixed", None),
        ("SELECT count(*) AS n FROM mixed", None),
        ("SELECT ok, count(*) AS n FROM mixed GROUP BY ok", None),
        ("SELECT id + 1 AS id FROM mixed", None),
        ("SELECT * EXCLUDE (big) FROM mixed", None),
        ("SELECT COLUMNS('id') FROM mixed", None),
        ("SELECT * FROM mixed AS m(a, b)", None),
        ("SELECT * FROM mixed USING SAMPLE 100%", None),
        ("SELECT id, row_number() OVER () AS r FROM mixed", None),
        ("SELECT m.id FROM mixed m JOIN other o ON m.id = o.id", None),
        ("WITH c AS (SELECT * FROM mixed) SELECT * FROM c", None),
        ("SELECT * FROM mixed UNION ALL SELECT * FROM other", None),
        ("SELECT * FROM (SELECT * FROM mixed)", None),
        (f"SELECT * FROM mixed AT (VERSION => {version})", None),
        ("SELECT * FROM system.tables", None),
    ]:
        _, fast = _run(node, sql, params)
        assert not fast, sql


def test_plain_scan_shape_from_the_parse_tree():
    assert statement("SELECT * FROM t").plain_scan.columns is None
    assert statement('SELECT a, "B" AS b, t.c FROM miniodb.main.t').plain_scan.columns == ("a", "B", "c")
    assert statement("SELECT x.a FROM t AS x").plain_scan.table == "t"
    for sql in ["SELECT t.a FROM t AS x", "SELECT x.* FROM t", "SELECT * FROM other.t", "SELECT *, a FROM t",
                "SELECT current_date FROM t", "SELECT ? AS p FROM t", "SELECT a FROM t QUALIFY a > 1",
                "SELECT * FROM t, u", "SELECT 1", "SELECT a FROM t HAVING a > 1", "SELECT a FROM t GROUP BY a"]:
        assert statement(sql).plain_scan is None, sql


def test_schema_change_falls_back_to_the_normal_path(node):
    _put(node, "ev", pa.table({"a": pa.array([1, 2], pa.int64()), "k": ["x", "y"]}))
    _same(node, "SELECT * FROM ev")
    _put(node, "ev", pa.table({"k": ["w"], "b": ["new"], "a": pa.array([1.5])}))  # b added, a widened
    _same(node, "SELECT * FROM ev", expect_fast=False)  # files of two schemas, int64 -> double
    _same(node, "SELECT k FROM ev", expect_fast=False)


def test_a_widened_column_in_uniform_files_falls_back(node):
    _put(node, "w", pa.table({"a": pa.array([1, 2], pa.int64()), "k": ["x", "y"]}))
    _put(node, "w", pa.table({"a": pa.array([1.5]), "k": ["z"]}), flush=False)  # table a -> double, file int64
    _same(node, "SELECT a, k FROM w", expect_fast=False)
    _same(node, "SELECT k FROM w")  # k is the same everywhere


def test_duration_columns_fall_back(node):
    t = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                  "d": pa.array([dt.timedelta(seconds=s) for s in (1, 2, 3)], pa.duration("ms"))})
    _put(node, "dur", t)
    _put(node, "dur", t, flush=False)
    _same(node, "SELECT * FROM dur", expect_fast=False)
    _same(node, "SELECT d FROM dur", expect_fast=False)
    _same(node, "SELECT id FROM dur")


def test_client_mapped_types_fall_back(node):
    t = pa.table({"id": pa.array([1, 2], pa.int64()),
                  "tz": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * 2, pa.timestamp("us", "UTC"))})
    _put(node, "tzt", t)
    _same(node, "SELECT * FROM tzt", expect_fast=False)
    _same(node, "SELECT id FROM tzt")


def test_unknown_column_and_table_give_the_normal_paths_errors(node):
    _put(node, "mixed", _mixed(0, 10))
    with pytest.raises(Exception) as fast_err:
        _run(node, "SELECT nope FROM mixed")
    with pytest.raises(Exception) as slow_err:
        _run(node, "SELECT nope FROM mixed", fast=False)
    assert type(fast_err.value) is type(slow_err.value)
    with pytest.raises(Exception, match="not found"):
        _run(node, "SELECT * FROM missing_table")


def test_files_are_released_at_the_end_and_on_close(node):
    _put(node, "mixed", _mixed(0, 5000))
    pins = node.file_cache._pins
    r = node.query("SELECT * FROM mixed")
    assert r.stats.get("plain_scan") and any(pins.values())
    assert r.reader.read_all().num_rows == 5000
    assert not any(pins.values())  # exhausted: released before close
    r.close()
    r = node.query("SELECT * FROM mixed")
    assert r.source.read_next_batch().num_rows > 0
    r.close()  # closed mid-stream
    assert not any(pins.values())
    assert node.query("SELECT count(*) AS n FROM mixed").reader.read_all().column("n").to_pylist() == [5000]


def test_interrupt_stops_a_plain_scan(node):
    _put(node, "mixed", _mixed(0, 20_000))
    r = node.query("SELECT * FROM mixed")
    assert r.stats.get("plain_scan")
    reader = r.source
    assert reader.read_next_batch().num_rows > 0
    threading.Thread(target=r.interrupt).start()
    with pytest.raises(Cancelled):
        while True:
            reader.read_next_batch()
    r.close()
    assert not any(node.file_cache._pins.values())


def test_query_log_counts_a_plain_scan(node):
    _put(node, "mixed", _mixed(0, 3000))
    _put(node, "mixed", _mixed(3000, 100), flush=False)
    r = node.query("SELECT id FROM mixed")
    r.reader.read_all()
    r.close()
    rec = r.record
    assert (rec.files_scanned, rec.buffer_rows, rec.rows, rec.status) == (1, 100, 3100, "finished")


def test_a_hot_table_is_read_from_its_in_memory_copy(tmp_path):
    overrides = {"server.data_dir": str(tmp_path), "server.grpc_port": 0, "server.rest_port": 0,
                 "server.metrics_port": 0, "server.host": "127.0.0.1", "query.cache_enabled": False}
    n = Node(load_settings(None, overrides, environ={})).start()
    try:
        _put(n, "small", _mixed(0, 300))
        _same(n, "SELECT * FROM small")  # the copy is made in the background; the files are read now
        n.engine.hot.wait_idle()
        assert n.engine.hot.stats()["builds"] == 1
        _same(n, "SELECT * FROM small", expect_fast=False)  # the hot copy, in DuckDB
    finally:
        n.stop()
