"""The result cache (local LRU by bytes + the Redis-shared level) and the query log pieces
it works with (counting reader, end hooks, literal masking)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from clients.errors import InvalidRequest
from flight_server.query.statement import statement
from flight_server.query.system import mask_literals
from flight_server.querylog import CANCELLED, FAILED, FINISHED, QueryLog, track
from flight_server.result_cache import CacheKey, RedisSharedCache, ResultCache


def table(n: int, width: int = 1) -> pa.Table:
    return pa.table({f"c{i}": pa.array(range(n), pa.int64()) for i in range(width)})


def key(name: str, shared: bool = False) -> CacheKey:
    return CacheKey(name, shared)


def test_lru_by_bytes_and_entry_cap() -> None:
    t = table(1000)  # 8000 bytes
    cache = ResultCache(max_bytes=20_000, entry_max_bytes=10_000)
    for name in ("a", "b"):
        assert cache.put(key(name), t.schema, t.to_batches())
    assert cache.get(key("a")).table.equals(t)  # a is now the most recent
    assert cache.put(key("c"), t.schema, t.to_batches())  # 24000 > 20000: evicts b (least recent)
    assert cache.get(key("b")) is None
    assert cache.get(key("a")) is not None and cache.get(key("c")) is not None
    assert cache.bytes <= cache.max_bytes and len(cache) == 2
    big = table(2000)  # 16000 bytes > entry cap
    assert not cache.put(key("big"), big.schema, big.to_batches())
    assert cache.get(key("big")) is None
    st = cache.stats()
    assert st["hits"] == 3 and st["misses"] == 2 and st["entries"] == 2
    cache.clear()
    assert cache.get(key("a")) is None and cache.bytes == 0


def test_results_are_kept_as_given_empty_and_multi_batch() -> None:
    cache = ResultCache(max_bytes=1 << 20, entry_max_bytes=1 << 20)
    parts = [table(3).to_batches()[0], table(2).to_batches()[0]]
    cache.put(key("multi"), parts[0].schema, parts)
    assert cache.get(key("multi")).table.num_rows == 5
    empty = table(0)
    cache.put(key("empty"), empty.schema, [])
    hit = cache.get(key("empty"))
    assert hit is not None and hit.table.num_rows == 0 and hit.table.schema.equals(empty.schema)


@pytest.mark.redis
def test_shared_level_through_real_redis(redis_server, redis_prefix) -> None:
    import redis

    def shared():
        return RedisSharedCache(redis.Redis("127.0.0.1", redis_server.port), prefix=redis_prefix)

    a = ResultCache(1 << 20, 64 * 1024, shared())
    b = ResultCache(1 << 20, 64 * 1024, shared())
    t = table(100, width=3)
    a.put(key("k1", shared=True), t.schema, t.to_batches())
    a.put(key("k2", shared=False), t.schema, t.to_batches())  # depends on a's buffer: stays local
    a.shared._pool.submit(lambda: None).result(timeout=10)  # writes are asynchronous
    hit = b.get(key("k1", shared=True))
    assert hit is not None and hit.shared and hit.table.equals(t)
    assert b.get(key("k1", shared=True)).shared is False  # now held locally
    assert b.get(key("k2", shared=True)) is None
    # an entry over the per-entry cap is not shared (incompressible values: random bytes)
    import os

    noisy = pa.table({"b": pa.array([os.urandom(1024) for _ in range(100)], pa.binary())})
    c = ResultCache(1 << 20, 64 * 1024, shared())
    c.put(key("k3", shared=True), noisy.schema, noisy.to_batches())
    c.shared._pool.submit(lambda: None).result(timeout=10)
    assert b.get(key("k3", shared=True)) is None
    assert redis_server.client().ttl(f"{redis_prefix}:qcache:k1") > 0
    for x in (a, b, c):
        x.close()


def test_shared_level_down_is_skipped_quietly() -> None:
    import redis

    from tests.fixtures.services import free_port

    dead = RedisSharedCache(redis.Redis("127.0.0.1", free_port(), socket_timeout=0.2, socket_connect_timeout=0.2))
    cache = ResultCache(1 << 20, 1 << 20, dead)
    t = table(10)
    assert cache.get(key("x", shared=True)) is None  # the failure opens the breaker
    assert not dead._available()
    cache.put(key("x", shared=True), t.schema, t.to_batches())  # local only
    assert cache.get(key("x", shared=True)).table.equals(t)
    cache.close()


def test_query_log_ring_and_tracked_reader() -> None:
    log = QueryLog("n1", capacity=3)
    recs = [log.start(f"SELECT {i}", "SELECT") for i in range(5)]
    assert [r.sql for r in log.records()] == ["SELECT 2", "SELECT 3", "SELECT 4"]
    assert log.find(recs[0].query_id) is None and log.find(recs[4].query_id) is recs[4]

    rec = recs[4]
    rec.executed({"files_total": 3, "files_scanned": 1, "files_pruned": 2, "bytes_fetched": 10}, False)
    ended, kept = [], []
    rec.on_end(lambda r: ended.append((r.rows, r.bytes)))
    data = table(10, width=2)
    batches = data.to_batches(max_chunksize=4)
    reader = track(pa.RecordBatchReader.from_batches(data.schema, batches), rec, kept.extend, collect_limit=1 << 20)
    assert not ended and rec.rows is None
    assert reader.read_all().num_rows == 10
    assert rec.status == FINISHED and ended == [(10, data.nbytes)] and len(kept) == 3
    headers = dict(rec.header_items())
    assert headers["x-miniodb-rows"] == "10" and headers["x-miniodb-files-pruned"] == "2"
    assert headers["x-miniodb-cache-hit"] == "false" and float(headers["x-miniodb-duration-ms"]) >= 0
    late = []
    rec.on_end(lambda r: late.append(r.rows))  # after the end: runs at once
    assert late == [10]


def test_tracked_reader_limits_collection_and_records_failures() -> None:
    log = QueryLog("n1")
    rec = log.start("SELECT big", "SELECT")
    data = table(1000)
    kept: list = []
    reader = track(pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=100)), rec,
                   lambda b: kept.append(b), collect_limit=3000)
    reader.read_all()
    assert kept == [] and rec.rows == 1000  # over the limit: nothing handed to the cache

    rec2 = log.start("SELECT fails", "SELECT")

    def broken():
        yield data.to_batches()[0]
        raise pa.ArrowInvalid("boom")

    reader = track(pa.RecordBatchReader.from_batches(data.schema, broken()), rec2, code_of=lambda e: "invalid_request")
    with pytest.raises(pa.ArrowInvalid):
        reader.read_all()
    assert rec2.status == FAILED and rec2.error_code == "invalid_request"
    rec3 = log.start("SELECT closed", "SELECT")
    rec3.closed()
    assert rec3.status == CANCELLED
    rec3.finish(1, 1)  # too late: stays cancelled
    assert rec3.status == CANCELLED


def test_mask_literals_uses_the_sql_parser() -> None:
    cur = duckdb.connect()
    masked = mask_literals(cur, "SELECT * FROM t WHERE name = 'alice' AND age > 30 LIMIT 5")
    assert "alice" not in masked and "30" not in masked and "?" in masked and "FROM t" in masked
    masked = mask_literals(cur, "select 'secret' as x, [1, 2] l from t where d = DATE '2024-01-01'")
    assert "secret" not in masked and "2024" not in masked
    assert mask_literals(cur, "SELEC nonsense 'x'") == "<hidden>"


def test_statement_normalisation() -> None:
    a = statement("select  count(*) from t where a = 5")
    b = statement("SELECT count(*)\nFROM t\n  WHERE a=5")
    c = statement("SELECT count(*) FROM t WHERE a = 6")
    assert a.digest == b.digest != c.digest and a.cacheable and a.tables == ("t",)
    assert statement("SELECT count(*) AS n FROM t WHERE a = 5").digest != a.digest  # aliases matter
    join = statement("WITH x AS (SELECT * FROM u) SELECT * FROM x JOIN t USING (id)")
    assert join.tables == ("t", "u") and join.cacheable


def test_statements_that_differ_only_in_filter_literals_share_a_shape() -> None:
    """The schema cache keys on the shape: a filter's literals never change the result types,
    literals anywhere else may (round(x, 1) vs round(x, 2) of a DECIMAL)."""
    a = statement("SELECT count(*) FROM t WHERE k = 12345")
    assert a.shape == statement("SELECT count(*) FROM t WHERE k = 777").shape and a.digest != statement(
        "SELECT count(*) FROM t WHERE k = 777").digest
    assert statement("SELECT k, sum(v) FROM t WHERE d >= DATE '2024-01-01' GROUP BY k HAVING sum(v) > 5").shape == \
        statement("SELECT k, sum(v) FROM t WHERE d >= DATE '2025-03-01' GROUP BY k HAVING sum(v) > 9").shape
    assert statement("SELECT round(x, 1) FROM t").shape != statement("SELECT round(x, 2) FROM t").shape
    assert statement("SELECT 1 FROM t WHERE k = 1").shape != statement("SELECT 2 FROM t WHERE k = 1").shape
    assert statement("SELECT count(*) FROM t WHERE k = 1").shape != statement("SELECT count(*) FROM u WHERE k = 1").shape


def test_a_schema_is_computed_once_per_shape(tmp_path) -> None:
    from flight_server.config import load_settings
    from flight_server.node import Node

    overrides = {"server.data_dir": str(tmp_path), "server.grpc_port": 0, "server.rest_port": 0,
                 "server.metrics_port": 0, "server.host": "127.0.0.1"}
    node = Node(load_settings(None, overrides, environ={})).start()
    try:
        t = pa.table({"k": pa.array([1, 2, 3], pa.int64()), "v": pa.array([1.5, 2.5, 3.5])})
        node.ingest("t", t.to_batches(), t.schema, "create_append")
        engine, calls = node.runner.engine, []
        execute = engine.execute

        def counted(*args, **kwargs):
            calls.append(kwargs.get("schema_only", False))
            return execute(*args, **kwargs)

        engine.execute = counted
        first = node.query_schema("SELECT k, v * 2 AS w FROM t WHERE k = 1")
        second = node.query_schema("SELECT k, v * 2 AS w FROM t WHERE k = 3")
        third = node.query_schema("SELECT k, v * 3 AS w FROM t WHERE k = 3")
        assert first == second == third and first.names == ["k", "w"] and calls == [True, True]
    finally:
        node.stop()


@pytest.mark.parametrize("sql", [
    "SELECT random() FROM t", "SELECT now()", "SELECT current_date", "SELECT CURRENT_TIMESTAMP",
    "SELECT gen_random_uuid()", "SELECT * FROM t USING SAMPLE 10", "SELECT * FROM t TABLESAMPLE 5%",
    "SELECT * FROM system.queries", "SELECT * FROM t WHERE ts > now() - INTERVAL 1 HOUR",
])
def test_statements_that_are_never_cached(sql) -> None:
    assert not statement(sql).cacheable


def test_a_statement_that_does_not_parse_is_a_client_error() -> None:
    with pytest.raises(InvalidRequest):
        statement("SELEC broken")
