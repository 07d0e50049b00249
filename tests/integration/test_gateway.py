"""The REST gateway over real HTTP (httpx) to a real node (``miniodb serve`` on port 0)."""

from __future__ import annotations

import io
import itertools
import re

import httpx
import orjson
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from tests.fixtures.node import NodeProcess

MAX_BODY = 1024 * 1024
_names = (f"t{i}" for i in itertools.count())


def new_table() -> str:
    return f"gw_{next(_names)}"


@pytest.fixture(scope="module")
def gw_node(tmp_path_factory):
    """One embedded node for the module; the REST port runs the gateway (body limit 1 MiB)."""
    n = NodeProcess(tmp_path_factory.mktemp("gateway") / "node",
                    env={"MINIODB_SERVER_MAX_REQUEST_BYTES": str(MAX_BODY)})
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def http(gw_node):
    with httpx.Client(base_url=gw_node.rest + "/api/v1", timeout=60.0) as c:
        yield c


def write(http: httpx.Client, body) -> httpx.Response:
    return http.post("/data", content=body if isinstance(body, bytes) else orjson.dumps(body))


def query(http: httpx.Client, sql: str, **kw) -> dict:
    r = http.post("/query", json={"sql": sql, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def rows_of(http: httpx.Client, sql: str) -> list[dict]:
    res = query(http, sql)
    names = [c["name"] for c in res["columns"]]
    return [dict(zip(names, row, strict=True)) for row in res["rows"]]


def count(http: httpx.Client, table: str) -> int:
    return query(http, f"SELECT count(*) FROM {table}")["rows"][0][0]


def assert_error(r: httpx.Response, status: int, code: str | None = None, mention: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"ok", "error", "code", "status"}, body
    assert body["ok"] is False and body["status"] == status
    if code:
        assert body["code"] == code, body
    if mention:
        assert mention in body["error"], body
    assert "Traceback" not in body["error"] and ".py" not in body["error"], body
    return body


# -- service -------------------------------------------------------------------------------

def test_health_reports_node_checks(http, gw_node):
    r = http.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["checks"] == {"flight": "ok", "metadata": "ok", "storage": "ok"}
    assert h["node_id"] and h["version"]


def test_status_and_openapi(http):
    st = http.get("/status").json()
    assert st["ok"] is True and "buffers" in st and st["nodes"]
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/data" in doc["paths"]
    docs = http.get("/docs")
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text


def test_docs_page_needs_nothing_from_the_internet_and_shows_every_operation(http, gw_node):
    page = http.get("/docs").text
    assert not re.findall(r'(?:src|href)\s*=\s*"(?:https?:)?//', page)  # no CDN, no external asset
    assert "<script src" not in page and "<link" not in page
    doc = http.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert f'id="{op["operationId"]}"' in page and f"<code>/api/v1{path}</code>" in page
            for status in op["responses"]:
                assert f"<td><b>{status}</b></td>" in page
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    root = httpx.get(gw_node.rest + "/", timeout=30)  # the web console, which links to the docs
    assert root.status_code == 200 and root.headers["content-type"].startswith("text/html")
    assert 'href="/api/v1/docs"' in root.text
    assert not re.findall(r'(?:src|href)\s*=\s*"(?:https?:)?//', root.text)  # no CDN


def test_openapi_document_is_valid(http):
    from openapi_spec_validator import validate

    validate(http.get("/openapi.json").json())


# -- data round trip ----------------------------------------------------------------------

def test_single_record_round_trip_and_payload_id(http):
    t = new_table()
    r = write(http, {"table": t, "id": "rec-1", "timestamp": "2024-03-01T12:00:00.123456Z",
                     "payload": {"id": 42, "Timestamp": "not the record time", "user": "ada", "amount": 12.5,
                                 "ok": True, "meta": {"k": [1, 2]}}})
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "table": t, "rows": 1}
    row = rows_of(http, f"SELECT * FROM {t}")[0]
    assert row["id"] == "rec-1"  # the payload key 'id' did not overwrite it
    assert row["payload_id"] == 42
    assert row["payload_Timestamp"] == "not the record time"
    assert row["timestamp"].startswith("2024-03-01T12:00:00.123456")
    assert row["user"] == "ada" and row["amount"] == 12.5 and row["ok"] is True
    assert orjson.loads(row["meta"]) == {"k": [1, 2]}  # nested objects are JSON text
    desc = http.get(f"/tables/{t}").json()
    types = {c["name"]: c["type"] for c in desc["schema"]}
    assert types["timestamp"] == "timestamp[us, tz=UTC]" and types["id"] == "string"
    assert types["payload_id"] == "int64" and types["meta"] == "string"


def test_batch_round_trip_timestamps_and_generated_ids(http):
    t = new_table()
    records = [
        {"id": "a", "timestamp": 1_700_000_000_123, "payload": {"n": 1, "s": "x"}},
        {"timestamp": "2024-01-01T02:00:00+02:00", "payload": {"n": 2}},
        {"payload": {"n": 3, "s": None}},
    ]
    r = write(http, {"table": t, "records": records})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == 3
    rows = rows_of(http, f"SELECT id, epoch_ms(timestamp) AS ms, n, s FROM {t} ORDER BY n")
    assert rows[0] == {"id": "a", "ms": 1_700_000_000_123, "n": 1, "s": "x"}
    assert rows[1]["ms"] == 1_704_067_200_000  # 2024-01-01T00:00:00Z
    assert rows[2]["s"] is None
    ids = [row["id"] for row in rows]
    assert all(ids) and len(set(ids)) == 3  # missing ids are generated, unique
    now_ms = rows[2]["ms"]
    assert now_ms > 1_704_067_200_000  # default timestamp: the time of the request


def test_schema_evolution(http):
    t = new_table()
    assert write(http, {"table": t, "records": [{"payload": {"a": 1, "b": "x"}}]}).status_code == 200
    r = write(http, {"table": t, "records": [{"payload": {"a": 2.5, "c": True}}, {"payload": {"a": 3}}]})
    assert r.status_code == 200, r.text
    types = {c["name"]: c["type"] for c in http.get(f"/tables/{t}").json()["schema"]}
    assert types["a"] == "double" and types["b"] == "string" and types["c"] == "bool"  # int widened to float
    rows = rows_of(http, f"SELECT a, b, c FROM {t} ORDER BY a")
    assert rows == [{"a": 1.0, "b": "x", "c": None}, {"a": 2.5, "b": None, "c": True},
                    {"a": 3.0, "b": None, "c": None}]


def test_idempotency_key_applies_a_batch_once(http):
    t = new_table()
    body = {"table": t, "records": [{"payload": {"v": i}} for i in range(5)]}
    for _ in range(2):
        r = http.post("/data", json=body, headers={"Idempotency-Key": f"{t}-batch-1"})
        assert r.status_code == 200 and r.json()["rows"] == 5
    assert count(http, t) == 5


# -- query formats ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fmt_table(http):
    t = new_table()
    records = [{"id": str(i), "timestamp": 1_700_000_000_000 + i,
                "payload": {"i": i, "f": i / 2, "s": f"s{i}", "b": i % 2 == 0}} for i in range(50)]
    assert write(http, {"table": t, "records": records}).status_code == 200
    return t


def test_query_json(http, fmt_table):
    res = query(http, f"SELECT i, f, s, b FROM {fmt_table} ORDER BY i", limit=10)
    assert [c["name"] for c in res["columns"]] == ["i", "f", "s", "b"]
    assert res["columns"][0]["type"] == "int64"
    assert res["row_count"] == 10 and len(res["rows"]) == 10
    assert res["rows"][3] == [3, 1.5, "s3", False]
    assert res["duration_ms"] >= 0


@pytest.mark.parametrize("how", ["param", "accept"])
def test_query_arrow(http, fmt_table, how):
    kw = {"params": {"format": "arrow"}} if how == "param" else {
        "headers": {"accept": "application/vnd.apache.arrow.stream"}}
    r = http.post("/query", json={"sql": f"SELECT * FROM {fmt_table} ORDER BY i"}, **kw)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.apache.arrow.stream")
    table = ipc.open_stream(r.content).read_all()
    assert table.num_rows == 50 and table.column("i").to_pylist() == list(range(50))
    df = table.to_pandas()
    assert df["s"].iloc[7] == "s7"


@pytest.mark.parametrize("how", ["param", "accept"])
def test_query_csv(http, fmt_table, how):
    kw = {"params": {"format": "csv"}} if how == "param" else {"headers": {"accept": "text/csv"}}
    r = http.post("/query", json={"sql": f"SELECT i, f, s, b FROM {fmt_table} ORDER BY i", "limit": 20}, **kw)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = pacsv.read_csv(io.BytesIO(r.content))
    assert table.num_rows == 20 and table.column("s").to_pylist()[:2] == ["s0", "s1"]
    df = pd.read_csv(io.BytesIO(r.content))
    assert list(df.columns) == ["i", "f", "s", "b"] and df["f"].iloc[4] == 2.0


@pytest.mark.parametrize("how", ["param", "accept"])
def test_query_parquet(http, fmt_table, how):
    kw = {"params": {"format": "parquet"}} if how == "param" else {
        "headers": {"accept": "application/vnd.apache.parquet"}}
    r = http.post("/query", json={"sql": f"SELECT * FROM {fmt_table} ORDER BY i"}, **kw)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.apache.parquet")
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == 50 and table.column("b").to_pylist()[:3] == [True, False, True]
    df = pd.read_parquet(io.BytesIO(r.content))
    assert df["i"].sum() == sum(range(50))


def test_query_empty_result_in_every_format(http, fmt_table):
    sql = f"SELECT i, s FROM {fmt_table} WHERE i < 0"
    assert query(http, sql)["rows"] == []
    for fmt, read in (("arrow", lambda b: ipc.open_stream(b).read_all()),
                      ("parquet", lambda b: pq.read_table(io.BytesIO(b)))):
        r = http.post("/query", params={"format": fmt}, json={"sql": sql})
        assert r.status_code == 200
        t = read(r.content)
        assert t.num_rows == 0 and t.schema.names == ["i", "s"]
    assert http.post("/query", params={"format": "csv"}, json={"sql": sql}).status_code == 200


def test_large_result_streams(http):
    n = 300_000
    with http.stream("POST", "/query", json={"sql": f"SELECT range AS v, 'row ' || range AS s FROM range({n})"},
                     params={"format": "arrow"}) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers  # chunked: written while read from Flight
        chunks = list(r.iter_bytes())
    assert len(chunks) > 1
    table = ipc.open_stream(b"".join(chunks)).read_all()
    assert table.num_rows == n and table.column("v")[n - 1].as_py() == n - 1
    res = query(http, f"SELECT range AS v FROM range({n})")
    assert res["row_count"] == n and res["rows"][-1] == [n - 1]


def test_query_params(http, fmt_table):
    r = http.post("/query", json={"sql": f"SELECT count(*) FROM {fmt_table} WHERE i >= ? AND s <> ?",
                                  "params": [10, "s12"]})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [[39]]
    r = http.post("/query", params={"format": "csv"},
                  json={"sql": f"SELECT i FROM {fmt_table} WHERE i < ? ORDER BY i", "params": {"n": 3}})
    assert r.status_code == 200 and r.text.split() == ["\"i\"", "0", "1", "2"], r.text
    assert_error(http.post("/query", json={"sql": "SELECT ?", "params": [{"a": [1, "x"]}]}), 400)
    assert_error(http.post("/query", json={"sql": "SELECT ? + 1", "params": [1, 2, 3]}), 400)


# -- tables -------------------------------------------------------------------------------

def test_table_crud(http):
    t = new_table()
    body = {"name": t, "schema": [{"name": "k", "type": "int64", "nullable": False}, {"name": "v", "type": "string"}],
            "config": {"buffer_size": 5000, "flush_interval_seconds": 30, "retention_days": 7,
                       "properties": {"owner": "team-a"}}}
    r = http.post("/tables", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == t and [c["name"] for c in created["schema"]] == ["k", "v"]
    assert_error(http.post("/tables", json=body), 409, "already_exists")
    again = http.post("/tables", json={**body, "if_not_exists": True})
    assert again.status_code == 201 and again.json()["table_id"] == created["table_id"]

    desc = http.get(f"/tables/{t}").json()
    assert desc["config"]["buffer_size"] == 5000 and desc["config"]["retention_days"] == 7
    assert desc["config"]["properties"] == {"owner": "team-a"}
    assert desc["stats"]["rows_total"] == 0 and "schema_ipc" not in desc

    other = new_table()
    assert http.post("/tables", json={"name": other}).status_code == 201  # default schema: id, timestamp
    assert [c["name"] for c in http.get(f"/tables/{other}").json()["schema"]] == ["id", "timestamp"]
    listed = {x["name"] for x in http.get("/tables", params={"pattern": "gw_t*"}).json()["tables"]}
    assert {t, other} <= listed
    assert http.get("/tables", params={"pattern": "no_such_*"}).json()["tables"] == []

    r = http.delete(f"/tables/{t}")
    assert r.status_code == 200 and r.json()["dropped"] is True
    assert_error(http.delete(f"/tables/{t}"), 404, "not_found")
    r = http.delete(f"/tables/{t}", params={"if_exists": "true"})
    assert r.status_code == 200 and r.json()["dropped"] is False
    assert_error(http.get(f"/tables/{t}"), 404, "not_found")
    assert http.delete(f"/tables/{other}").status_code == 200


def test_flush_route(http):
    t = new_table()
    write(http, {"table": t, "records": [{"payload": {"x": i}} for i in range(10)]})
    r = http.post("/flush", json={"table": t})
    assert r.status_code == 200 and r.json()["rows"] == 10
    assert http.get(f"/tables/{t}").json()["stats"]["rows"] == 10
    assert http.post("/flush").status_code == 200  # every table, empty body
    assert_error(http.post("/flush", json={"table": "gw_missing_table"}), 404, "not_found")


# -- bad input ----------------------------------------------------------------------------

def _table_exists(http, t: str) -> bool:
    return any(x["name"] == t for x in http.get("/tables").json()["tables"])


def test_bad_writes_write_nothing(http):
    t = new_table()
    assert write(http, {"table": t, "records": [{"payload": {"n": 1, "s": "a"}}]}).status_code == 200
    bad = [
        (b'{"table": "x", "records": [', 400, "malformed JSON"),
        (b"[1, 2]", 400, None),
        ({"table": "bad name!", "payload": {"a": 1}}, 400, "invalid table name"),
        ({"table": t}, 400, "payload"),
        ({"table": t, "records": []}, 400, "empty"),
        ({"table": t, "records": [{"payload": {"n": 2}}, {"payload": {"n": "two"}}]}, 400, "'n'"),
        ({"table": t, "records": [{"payload": {"n": 2}}, {"payload": {"n": True}}]}, 400, "'n'"),
        ({"table": t, "records": [{"payload": {"s": "b"}}, {"payload": {"s": 5}}]}, 400, "'s'"),
        ({"table": t, "records": [{"payload": {"n": 3}}, {"payload": {"n": 4}, "timestamp": "yesterday"}]}, 400,
         "record 1"),
        ({"table": t, "records": [{"payload": {"n": 3}}, {"payload": [1]}]}, 400, "record 1"),
        ({"table": t, "records": [{"payload": {"n": 3}}, "x"]}, 400, "record 1"),
        ({"table": t, "records": [{"payload": {"n": 3}, "extra": 1}]}, 400, "extra"),
        (b'{"table": "%s", "records": [{"payload": {"n": 18446744073709551615}}]}' % t.encode(), 400, "'n'"),
        ({"table": t, "records": [{"payload": {"n": 5, "N": 6}}]}, 400, None),
        ({"table": t, "records": [{"payload": {"id": 1, "payload_id": 2}}]}, 400, "payload_id"),
        # conflicts with the table's schema (n is int64, s is string): the node names the column
        ({"table": t, "records": [{"payload": {"n": 5}}, {"payload": {"n": 6}}], "x": 1}, 400, None),
        ({"table": t, "records": [{"payload": {"n": "five"}}]}, 400, "'n'"),
        ({"table": t, "records": [{"payload": {"s": 1.5}}]}, 400, "'s'"),
    ]
    for body, status, mention in bad:
        assert_error(write(http, body), status, mention=mention)
    assert count(http, t) == 1
    assert rows_of(http, f"SELECT n, s FROM {t}") == [{"n": 1, "s": "a"}]
    assert not _table_exists(http, "bad name!")


def test_type_conflict_in_new_table_creates_nothing(http):
    t = new_table()
    r = write(http, {"table": t, "records": [{"payload": {"v": 1}}, {"payload": {"v": "x"}}]})
    assert_error(r, 400, "invalid_request", "'v'")
    assert not _table_exists(http, t)


def test_body_over_the_limit_is_413(http):
    t = new_table()
    big = orjson.dumps({"table": t, "records": [{"payload": {"s": "x" * 1000}}] * 1200})
    assert len(big) > MAX_BODY
    assert_error(write(http, big), 413, "payload_too_large")

    def chunks():  # no Content-Length: refused while reading
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    assert_error(http.post("/data", content=chunks()), 413, "payload_too_large")
    assert_error(http.post("/query", content=b'{"sql": "' + b" " * (MAX_BODY + 10) + b'SELECT 1"}'), 413)
    assert not _table_exists(http, t)
    assert http.get("/health").status_code == 200


def test_bad_queries_and_routes(http):
    assert_error(http.post("/query", json={"sql": "SELEC 1"}), 400, "invalid_request")
    assert_error(http.post("/query", json={"sql": "SELECT * FROM gw_no_such_table"}), 404, "not_found")
    assert_error(http.post("/query", json={}), 400, mention="sql")
    assert_error(http.post("/query", json={"sql": "SELECT 1", "limit": -1}), 400, mention="limit")
    assert_error(http.post("/query", json={"sql": "SELECT 1", "limit": "10"}), 400, mention="limit")
    assert_error(http.post("/query", json={"sql": "SELECT 1", "bogus": 1}), 400, mention="bogus")
    assert_error(http.post("/query", params={"format": "xml"}, json={"sql": "SELECT 1"}), 400, mention="format")
    assert_error(http.post("/query", content=b"not json"), 400, mention="malformed JSON")
    assert_error(http.post("/query", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"}), 400)
    assert_error(http.get("/nope"), 404, "not_found")
    assert_error(http.put("/tables"), 405)
    assert_error(http.post("/tables", json={"name": "1bad"}), 400, "invalid_request")
    assert_error(http.post("/tables", json={"name": "gw_ok", "schema": [{"name": "a", "type": "nope"}]}), 400)
    assert_error(http.post("/tables", json={"name": "gw_ok", "config": {"buffer_size": -5}}), 400)
    assert_error(http.post("/tables", json={"name": "gw_ok", "config": {"nope": 1}}), 400)
    assert_error(http.post("/tables", json={"name": "gw_ok", "if_not_exists": "yes"}), 400)
    assert_error(http.delete("/tables/gw_ok", params={"if_exists": "maybe"}), 400)
    assert_error(http.get("/tables/bad-name"), 400)
    assert_error(http.get("/metadata/backups", params={"days": "soon"}), 400)
    assert_error(http.post("/metadata/restore", json={}), 400)
    assert_error(http.post("/metadata/restore", json={"backup_file": 5}), 400)
    assert_error(http.post("/data", headers={"authorization": "Weird xyz"}, json={"table": "a", "payload": {}}), 401)
    assert not _table_exists(http, "gw_ok")
    assert http.get("/health").status_code == 200  # still serving


# -- metadata backup and restore ------------------------------------------------------------

def test_backup_and_restore_round_trip(http):
    t = new_table()
    assert write(http, {"table": t, "records": [{"id": str(i), "payload": {"v": i}} for i in range(20)]}
                 ).status_code == 200
    assert http.post("/flush", json={"table": t}).json()["rows"] == 20
    r = http.post("/metadata/backup")
    if r.status_code == 404 and "not available" in r.json()["error"]:
        pytest.fail("the node has no backup_metadata action")
    assert r.status_code == 201, r.text
    backup_file = r.json()["backup_file"]
    listed = http.get("/metadata/backups", params={"days": 30}).json()["backups"]
    assert backup_file in [b["backup_file"] for b in listed]
    status = http.get("/metadata/status").json()
    assert status["healthy"] is True and status["backups"]["count"] >= 1

    assert http.delete(f"/tables/{t}").status_code == 200
    dry = http.post("/metadata/restore", json={"backup_file": backup_file, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert not _table_exists(http, t)  # a dry run changes nothing
    real = http.post("/metadata/restore", json={"backup_file": backup_file})
    assert real.status_code == 200, real.text
    assert _table_exists(http, t)
    assert rows_of(http, f"SELECT count(*) AS n, sum(v) AS s FROM {t}") == [{"n": 20, "s": sum(range(20))}]
    latest = http.post("/metadata/restore", json={"from_latest": True, "dry_run": True})
    assert latest.status_code == 200, latest.text
    assert_error(http.post("/metadata/restore", json={"backup_file": "backup_19700101_000000.json"}), 404)
