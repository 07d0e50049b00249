"""Observability with real processes: Prometheus metrics, the exact result cache, query
statistics (Flight headers/trailers, REST X-MinIODB-* headers), system tables, the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
CACHE_ON = {"MINIODB_QUERY_CACHE_ENABLED": "true"}


def rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "ts": pa.array([1_700_000_000_000_000 + i for i in range(start, start + n)],
                                    pa.timestamp("us", tz="UTC")),
                     "v": pa.array([float(i) for i in range(start, start + n)])})


def scrape(node) -> dict:
    """Metric families by name (the parser drops the _total suffix of counters)."""
    text = httpx.get(node.metrics + "/metrics", timeout=10).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, name: str, sample: str | None = None, **labels) -> float:
    fam = families.get(name)
    if fam is None:
        return 0.0
    total = 0.0
    for s in fam.samples:
        if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


@pytest.fixture(scope="module")
def cnode(tmp_path_factory):
    """One embedded node with the result cache on, shared by the module."""
    from tests.fixtures.node import NodeProcess

    n = NodeProcess(tmp_path_factory.mktemp("obs") / "node", env=CACHE_ON).start()
    yield n
    n.terminate()


def test_metrics_after_ingest_and_a_repeated_query(cnode) -> None:
    with cnode.client() as c:
        assert c.ingest("obs_metrics", rows(0, 500)) == 500
    before = scrape(cnode)
    sql = "SELECT count(*) AS n, sum(v) AS s FROM obs_metrics WHERE id >= 10"
    with cnode.adbc() as conn, conn.cursor() as cur:
        for _ in range(2):
            cur.execute(sql)
            assert cur.fetchall() == [(490, float(sum(range(10, 500))))]
    fams = scrape(cnode)
    assert value(fams, "miniodb_ingest_rows", table="obs_metrics") == 500
    assert value(fams, "miniodb_ingest_bytes", table="obs_metrics") > 0
    assert value(fams, "miniodb_buffer_rows", table="obs_metrics") == 500
    hist = fams["miniodb_query_duration_seconds"]
    assert hist.type == "histogram"
    count = value(fams, "miniodb_query_duration_seconds", "miniodb_query_duration_seconds_count", kind="select")
    assert count - value(before, "miniodb_query_duration_seconds", "miniodb_query_duration_seconds_count",
                         kind="select") == 2
    buckets = [s for s in hist.samples if s.name.endswith("_bucket") and s.labels.get("kind") == "select"]
    assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count
    assert value(fams, "miniodb_query_cache_hit") - value(before, "miniodb_query_cache_hit") == 1
    assert value(fams, "miniodb_query_cache_miss") - value(before, "miniodb_query_cache_miss") == 1
    assert value(fams, "miniodb_query_rows") >= 2
    for name in ("miniodb_up", "miniodb_build_info", "miniodb_wal_bytes", "miniodb_flush_duration_seconds",
                 "miniodb_objects_written", "miniodb_errors", "miniodb_file_cache_hit", "miniodb_file_cache_miss",
                 "miniodb_live_nodes"):
        assert name in fams, name
    assert value(fams, "miniodb_up") == 1 and value(fams, "miniodb_wal_bytes") > 0
    text = httpx.get(cnode.metrics + "/metrics").text
    assert "query_duration" in text and "cache_hit" in text  # the deployment guide's greps
    assert "SELECT" not in text and "obs_metrics WHERE" not in text  # no SQL in labels


@pytest.mark.parametrize("change", ["write", "flush"])
def test_a_write_or_flush_between_two_queries_makes_a_miss(cnode, change) -> None:
    table = f"obs_inval_{change}"
    sql = f"SELECT count(*) AS n, max(id) AS hi FROM {table}"
    with cnode.client() as c:
        c.ingest(table, rows(0, 100))
        assert c.query(sql).to_pylist() == [{"n": 100, "hi": 99}]
        assert c.last_stats()["cache-hit"] == "false"
        assert c.query(sql).to_pylist() == [{"n": 100, "hi": 99}]
        assert c.last_stats()["cache-hit"] == "true"
        if change == "write":
            c.ingest(table, rows(100, 1))
            expected = [{"n": 101, "hi": 100}]
        else:
            c.ingest(table, rows(100, 1))
            assert c.query(sql).to_pylist() == [{"n": 101, "hi": 100}]  # fills the cache for the buffer state
            c.flush(table)
            expected = [{"n": 101, "hi": 100}]
        assert c.query(sql).to_pylist() == expected
        assert c.last_stats()["cache-hit"] == "false"
        assert c.query(sql).to_pylist() == expected
        assert c.last_stats()["cache-hit"] == "true"
        if change == "flush":  # after the flush the answer comes from the Parquet file
            c.ingest(table, rows(101, 1))
            assert c.query(sql).to_pylist() == [{"n": 102, "hi": 101}]
            assert c.last_stats()["cache-hit"] == "false"


def test_volatile_and_system_queries_are_not_cached(cnode) -> None:
    with cnode.client() as c:
        c.ingest("obs_volatile", rows(0, 10))
        for sql in ("SELECT random() AS r FROM obs_volatile LIMIT 1", "SELECT now() AS t",
                    "SELECT current_date AS d", "SELECT count(*) AS n FROM system.queries"):
            first = c.query(sql)
            c.query(sql)
            assert c.last_stats()["cache-hit"] == "false", sql
            assert first.num_rows == 1
        a = c.query("SELECT random() AS r FROM obs_volatile").column("r").to_pylist()
        b = c.query("SELECT random() AS r FROM obs_volatile").column("r").to_pylist()
        assert a != b


def test_statistics_in_flight_headers_and_trailers(cnode) -> None:
    with cnode.client() as c:
        c.ingest("obs_stats", rows(0, 3000))
        c.flush("obs_stats")
        c.ingest("obs_stats", rows(3000, 1000))
        c.flush("obs_stats")
        sql = "SELECT id, v FROM obs_stats WHERE id >= 3500"
        info = c.flight_info(sql)
        after_info = c.last_stats()  # GetFlightInfo response headers (the statement ran there)
        # a small result is read whole in GetFlightInfo: rows are known there already
        assert after_info["cache-hit"] == "false" and after_info["rows"] == "500"
        assert info.total_records == 500 and info.total_bytes > 0
        assert after_info["files-scanned"] == "1" and after_info["files-pruned"] == "1"
        assert float(after_info["duration-ms"]) > 0 and len(after_info["query-id"]) == 16
        table = c._read(info).read_all()
        st = c.last_stats()  # + DoGet trailers at the end of the stream
        assert st["rows"] == str(table.num_rows) == "500"
        assert int(st["bytes"]) >= table.nbytes > 0
        assert st["query-id"] == after_info["query-id"]
        assert float(st["duration-ms"]) >= float(after_info["duration-ms"])
        c.query(sql)  # repeated: a cache hit knows rows and bytes at once
        hit = c.last_stats()
        assert hit["cache-hit"] == "true" and hit["rows"] == "500" and hit["files-scanned"] == "0"


def test_rest_passes_statistics_as_headers(cnode) -> None:
    with cnode.client() as c:
        c.ingest("obs_rest", rows(0, 50))
    with httpx.Client(base_url=cnode.rest, timeout=30) as http:
        for expected_hit in ("false", "true"):
            r = http.post("/api/v1/query", json={"sql": "SELECT count(*) AS n FROM obs_rest"})
            assert r.status_code == 200 and r.json()["rows"] == [[50]]
            h = r.headers
            assert h["x-miniodb-cache-hit"] == expected_hit
            assert len(h["x-miniodb-query-id"]) == 16
            for name in ("x-miniodb-files-scanned", "x-miniodb-files-pruned", "x-miniodb-bytes-read",
                         "x-miniodb-duration-ms"):
                assert name in h, name
        assert h["x-miniodb-rows"] == "1"  # a cache hit knows its size up front
        fams = scrape(cnode)
        assert value(fams, "miniodb_http_requests", route="/api/v1/query", method="POST", status="200") >= 2
        assert value(fams, "miniodb_http_request_duration_seconds", "miniodb_http_request_duration_seconds_count",
                     route="/api/v1/query") >= 2
        http.get("/api/v1/tables/no_such_table_here")
        fams = scrape(cnode)
        assert value(fams, "miniodb_http_requests", route="/api/v1/tables/{name}", status="404") >= 1
        assert not any("no_such_table_here" in str(s.labels) for s in fams["miniodb_http_requests"].samples)


def test_system_tables(cnode) -> None:
    with cnode.client() as c:
        c.ingest("obs_sys", rows(0, 200))
        c.flush("obs_sys")
        c.ingest("obs_sys", rows(200, 20))
        sql = "SELECT count(*) AS n FROM obs_sys WHERE id < 100"
        c.query(sql)
        qid = c.last_stats()["query-id"]
        tables = {r["name"]: r for r in c.query("SELECT * FROM system.tables").to_pylist()}
        t = tables["obs_sys"]
        assert t["rows"] == 200 and t["files"] == 1 and t["buffered_rows"] == 20 and t["data_version"] >= 1
        assert "id int64" in t["schema"]
        files = c.query("SELECT table_name, rows, bytes, key FROM system.files WHERE table_name = 'obs_sys'")
        assert files.num_rows == 1 and files.column("rows").to_pylist() == [200]
        assert files.column("key").to_pylist()[0].startswith("obs_sys/")
        nodes = c.query("SELECT node_id, flight_uri, is_self FROM system.nodes").to_pylist()
        assert [n for n in nodes if n["is_self"]][0]["flight_uri"] == cnode.flight
        q = c.query("SELECT * FROM system.queries WHERE query_id = ?", [qid]).to_pylist()
        assert len(q) == 1
        rec = q[0]
        assert rec["sql"] == sql and rec["kind"] == "SELECT" and rec["status"] == "finished"
        assert rec["rows"] == 1 and rec["bytes"] > 0 and rec["files_scanned"] == 1 and rec["files_pruned"] == 0
        assert rec["buffer_rows"] == 20 and rec["cache_hit"] is False and rec["duration_ms"] > 0
        assert rec["started_at"] is not None and rec["principal"] == ""
        # joins and aggregates over system tables, and a clear error for an unknown one
        joined = c.query("SELECT t.name, count(f.key) AS files FROM system.tables t "
                         "LEFT JOIN system.files f ON f.table_name = t.name WHERE t.name = 'obs_sys' GROUP BY 1")
        assert joined.to_pylist() == [{"name": "obs_sys", "files": 1}]
        from clients.errors import NotFound

        with pytest.raises(NotFound, match="system.queries"):
            c.query("SELECT * FROM system.nope")
        failed = c.query("SELECT status, error_code FROM system.queries WHERE sql LIKE '%system.nope%' "
                         "AND status = 'failed'").to_pylist()
        assert failed and failed[0]["error_code"] == "not_found"
    with cnode.adbc() as conn, conn.cursor() as cur:  # ADBC (prepared statement path) too
        cur.execute("SELECT count(*) FROM system.tables WHERE name = 'obs_sys'")
        assert cur.fetchall() == [(1,)]


def test_query_log_knows_the_end_of_streamed_and_in_process_results(cnode) -> None:
    with cnode.client() as c:
        c.ingest("obs_big", rows(0, 200_000))  # about 4.8 MB: streamed, not read whole in GetFlightInfo
        assert c.query("SELECT * FROM obs_big").num_rows == 200_000
        st = c.last_stats()  # DoGet trailers, sent once the stream has reported its end
        assert st["rows"] == "200000" and int(st["bytes"]) > 1024 * 1024
        streamed = c.query("SELECT status, rows FROM system.queries WHERE query_id = ?", [st["query-id"]])
        assert streamed.to_pylist() == [{"status": "finished", "rows": 200_000}]
        # the source of an INSERT ... SELECT is read in-process by the write path
        c.execute("CREATE TABLE obs_copy AS SELECT id FROM obs_big WHERE id < 10")
        source = c.query("SELECT status, rows FROM system.queries WHERE kind = 'SELECT' "
                         "AND sql LIKE '%obs_big%' AND sql LIKE '%< 10%' AND sql NOT LIKE '%CREATE%'")
        assert source.to_pylist() == [{"status": "finished", "rows": 10}]


def _exported_names(families: dict) -> set[str]:
    names = set()
    for f in families.values():
        names.add(f.name)
        if f.type == "counter":
            names.add(f.name + "_total")
        if f.type == "histogram":
            names.update(f.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_dashboard_references_only_exported_metrics(cnode) -> None:
    dash = json.loads((REPO / "deploy/grafana/distributed-dashboard.json").read_text())
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                exprs.append(o["expr"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(dash)
    referenced = {m for e in exprs for m in re.findall(r"\bminiodb_[a-z0-9_]+", e)}
    assert {"miniodb_ingest_rows_total", "miniodb_query_duration_seconds_bucket", "miniodb_query_cache_hit_total",
            "miniodb_buffer_rows", "miniodb_wal_bytes", "miniodb_flush_duration_seconds_bucket",
            "miniodb_errors_total", "miniodb_live_nodes"} <= referenced
    exported = _exported_names(scrape(cnode))
    assert referenced - exported == set()
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in ("ingest", "p50", "hit ratio", "buffer", "wal", "flush", "errors", "live nodes"):
        assert word in titles, word


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.s3
def test_distributed_cache_is_shared_through_redis_and_stays_exact(node_factory, redis_server, redis_prefix,
                                                                   moto_server, s3_bucket) -> None:
    import time

    from tests.fixtures.redis import server_mode_env

    env = {**server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix),
           "MINIODB_QUERY_CACHE_ENABLED": "true", "MINIODB_QUERY_CACHE_DISTRIBUTED": "true"}
    a = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "cache-a"}, name="a")
    b = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "cache-b"}, name="b")
    sql = "SELECT count(*) AS n, sum(id) AS s FROM shared_t"
    r = redis_server.client()
    with a.client() as ca, b.client() as cb:
        ca.ingest("shared_t", rows(0, 1000))
        ca.flush("shared_t")
        assert ca.query(sql).to_pylist() == [{"n": 1000, "s": sum(range(1000))}]
        assert ca.last_stats()["cache-hit"] == "false"
        deadline = time.monotonic() + 10
        while not list(r.scan_iter(f"{redis_prefix}:qcache:*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cb.query(sql).to_pylist() == [{"n": 1000, "s": sum(range(1000))}]
        assert cb.last_stats()["cache-hit"] == "true"  # computed by A, served to B from Redis
        assert value(scrape(b), "miniodb_query_cache_shared_hit") == 1
        cb.ingest("shared_t", rows(1000, 1))
        cb.flush("shared_t")
        assert ca.query(sql).to_pylist() == [{"n": 1001, "s": sum(range(1001))}]
        assert ca.last_stats()["cache-hit"] == "false"


def test_credentials_are_ignored_when_auth_is_off(cnode) -> None:
    import adbc_driver_flightsql.dbapi as dbapi

    with dbapi.connect(cnode.flight, db_kwargs={"username": "u", "password": "anything"}, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == [(1,)]
