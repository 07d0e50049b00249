"""Issue 2 acceptance: durable ingest, SQL over it, errors, sandbox — over local and S3 storage."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import adbc_driver_manager
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import errors
from clients.flight import Client
from tests.fixtures.node import NodeProcess


def narrow(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"k": rng.integers(0, 1000, n), "a": rng.integers(0, 1_000_000, n),
                     "b": rng.random(n), "c": rng.random(n)})


def reader(table: pa.Table, rows: int = 200_000) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=rows))


def scalar(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()[0][0]


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path):
    """Environment for a node on the local folder backend or on S3 (moto_server)."""
    if request.param == "local":
        return {"name": "local", "env": {}}
    moto = request.getfixturevalue("moto_server")
    bucket = request.getfixturevalue("s3_bucket")
    env = {"MINIODB_STORAGE_MINIO_ENDPOINT": moto.endpoint, "MINIODB_STORAGE_MINIO_ACCESS_KEY": moto.access_key,
           "MINIODB_STORAGE_MINIO_SECRET_KEY": moto.secret_key, "MINIODB_STORAGE_MINIO_BUCKET": bucket}
    return {"name": "s3", "env": env, "moto": moto, "bucket": bucket}


def object_keys(backend, node) -> list[str]:
    if backend["name"] == "local":
        root = node.data_dir / "objects"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))
    client = backend["moto"].client()
    return sorted(o.object_name for o in client.list_objects(backend["bucket"], recursive=True))


KEY_RE = re.compile(r"^(?P<table>[A-Za-z][A-Za-z0-9_]*)/date=\d{4}-\d{2}-\d{2}/(?P<node>[A-Za-z0-9_.\-]+)-\d{12}\.parquet$")


@pytest.mark.slow
def test_million_rows_ingest_flush_restart(node_factory, backend):
    node = node_factory(env={**backend["env"], "MINIODB_SERVER_NODE_ID": "n1"})
    data = narrow(1_000_000)
    with node.adbc() as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("t", reader(data), mode="create") == 1_000_000
    with node.adbc() as conn:
        assert scalar(conn, "SELECT count(*) FROM t") == 1_000_000
        assert scalar(conn, "SELECT sum(a) FROM t") == pa.compute.sum(data["a"]).as_py()
    node.client().flush("t")
    with node.adbc() as conn:
        assert scalar(conn, "SELECT count(*) FROM t") == 1_000_000
    d = node.client().describe("t")
    assert d["stats"]["rows"] == 1_000_000 and d["stats"]["buffered_rows"] == 0 and d["stats"]["files"] >= 1
    keys = object_keys(backend, node)
    assert keys and all(KEY_RE.match(k) and k.startswith("t/") and "/n1-" in k for k in keys), keys
    node.restart()
    with node.adbc() as conn:
        assert scalar(conn, "SELECT count(*) FROM t") == 1_000_000
        assert scalar(conn, "SELECT sum(a) FROM t") == pa.compute.sum(data["a"]).as_py()


def test_kill9_after_ack_before_flush(node_factory, backend):
    env = {**backend["env"], "MINIODB_BUFFER_FLUSH_INTERVAL": "3600", "MINIODB_BUFFER_SIZE": "100000000"}
    node = node_factory(env=env)
    c = node.client()
    total = 0
    for i in range(5):
        total += c.ingest("events", narrow(10_000, seed=i))
    assert total == 50_000
    node.kill()  # acknowledged, never flushed
    assert object_keys(backend, node) == []
    node.start()
    with node.adbc() as conn:
        assert scalar(conn, "SELECT count(*) FROM events") == 50_000  # every row, exactly once
        expected = sum(pa.compute.sum(narrow(10_000, seed=i)["a"]).as_py() for i in range(5))
        assert scalar(conn, "SELECT sum(a) FROM events") == expected
    # a second crash after a flush must not replay persisted rows
    node.client().flush()
    node.kill()
    node.start()
    with node.adbc() as conn:
        assert scalar(conn, "SELECT count(*) FROM events") == 50_000


def test_sigterm_flushes_and_exits_zero(node_factory, backend):
    node = node_factory(env={**backend["env"], "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"})
    node.client().ingest("s", narrow(1000))
    assert node.terminate() == 0
    keys = object_keys(backend, node)
    assert len([k for k in keys if k.startswith("s/")]) == 1
    assert not list((node.data_dir / "wal").glob("*.arrow"))
    node.start()
    assert node.client().query("SELECT count(*) AS n FROM s").column("n")[0].as_py() == 1000


def test_flush_on_size_and_age(node_factory, backend):
    node = node_factory(env={**backend["env"], "MINIODB_BUFFER_SIZE": "1000", "MINIODB_BUFFER_FLUSH_INTERVAL": "1"})
    c = node.client()
    c.ingest("sz", narrow(2500))  # over the size limit: flushed by the background flusher
    c.ingest("age", narrow(10))  # tiny: flushed once it is older than 1 s
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if c.describe("sz")["stats"]["buffered_rows"] == 0 and c.describe("age")["stats"]["buffered_rows"] == 0:
            break
        time.sleep(0.2)
    assert c.describe("sz")["stats"]["rows"] == 2500
    assert c.describe("age")["stats"]["rows"] == 10
    assert c.query("SELECT count(*) AS n FROM sz").column("n")[0].as_py() == 2500


def test_rows_visible_before_flush_and_pruning(node_factory, backend):
    node = node_factory(env={**backend["env"], "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"})
    c = node.client()
    import datetime as dt

    for day in (1, 2, 3):
        ts = pa.array([dt.datetime(2024, 1, day, h) for h in range(24)], pa.timestamp("us"))
        c.ingest("ts_t", pa.table({"timestamp": ts, "v": pa.array(range(24), pa.int64())}))
        c.flush("ts_t")
    c.ingest("ts_t", pa.table({"timestamp": pa.array([dt.datetime(2024, 1, 4)], pa.timestamp("us")), "v": [99]}))
    assert c.query("SELECT count(*) AS n FROM ts_t").column("n")[0].as_py() == 73  # buffer visible
    d = c.describe("ts_t")
    assert d["time_column"] == "timestamp" and d["stats"]["files"] == 3
    assert d["stats"]["time_min"].startswith("2024-01-01") and d["stats"]["time_max"].startswith("2024-01-03")
    keys = [k for k in object_keys(backend, node) if k.startswith("ts_t/")]
    assert {k.split("/")[1] for k in keys} == {"date=2024-01-01", "date=2024-01-02", "date=2024-01-03"}
    r = c.query("SELECT count(*) AS n, sum(v) AS s FROM ts_t WHERE timestamp >= '2024-01-02' AND timestamp < '2024-01-03'")
    assert r.to_pylist() == [{"n": 24, "s": sum(range(24))}]


def test_schema_evolution(node_factory, backend):
    node = node_factory(env=backend["env"])
    c = node.client()
    c.ingest("ev", pa.table({"a": pa.array([1, 2], pa.int64())}))
    c.flush("ev")
    c.ingest("ev", pa.table({"a": pa.array([1.5]), "b": ["new"]}))  # int widens to float, b is added
    c.flush("ev")
    c.ingest("ev", pa.table({"a": pa.array([7], pa.int32())}))
    t = c.query("SELECT a, b FROM ev ORDER BY a")
    assert t.schema.field("a").type == pa.float64()
    assert t.to_pylist() == [{"a": 1.0, "b": None}, {"a": 1.5, "b": "new"}, {"a": 2.0, "b": None},
                             {"a": 7.0, "b": None}]
    with pytest.raises(errors.InvalidRequest, match="'b'"):
        c.ingest("ev", pa.table({"b": pa.array([1], pa.int64())}))
    assert c.query("SELECT count(*) AS n FROM ev").column("n")[0].as_py() == 4  # nothing partially applied


def test_drop_table_rows_never_return(node_factory, backend):
    node = node_factory(env={**backend["env"], "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"})
    c = node.client()
    c.ingest("gone", narrow(100))
    c.flush("gone")
    c.ingest("gone", narrow(50))  # buffered, in the WAL
    assert c.drop_table("gone") is True
    assert [k for k in object_keys(backend, node) if k.startswith("gone/")] == []
    node.kill()
    node.start()
    c = node.client()
    assert c.tables() == []
    c.ingest("gone", narrow(7), mode="create")
    assert c.query("SELECT count(*) AS n FROM gone").column("n")[0].as_py() == 7
    assert c.drop_table("nope", if_exists=True) is False
    with pytest.raises(errors.NotFound, match="nope"):
        c.drop_table("nope")


def test_ingest_modes(node):
    c = node.client()
    assert c.ingest("m", narrow(10), mode="create") == 10
    with pytest.raises(errors.AlreadyExists):
        c.ingest("m", narrow(1), mode="create")
    with pytest.raises(errors.NotFound, match="'absent'"):
        c.ingest("absent", narrow(1), mode="append")
    c.ingest("m", narrow(5), mode="append")
    c.ingest("m", pa.table({"z": [1, 2]}), mode="replace")
    t = c.query("SELECT * FROM m")
    assert t.column_names == ["z"] and t.num_rows == 2
    assert c.ingest("m", pa.table({"z": [3]}), mode="create_append") == 1


def test_errors_keep_the_node_serving(node):
    c = node.client()
    c.ingest("t", narrow(10))
    with node.adbc() as conn:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            with conn.cursor() as cur:
                cur.adbc_ingest("t", pa.table({"k": ["text"]}), mode="append")
        assert "INVALID_ARGUMENT" in str(e.value) and "'k'" in str(e.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            scalar(conn, "SELECT * FROM missing_table")
        assert "NOT_FOUND" in str(e.value) and "missing_table" in str(e.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            scalar(conn, "SELEC 1")
        assert "INVALID_ARGUMENT" in str(e.value) and "syntax error" in str(e.value)
        for bad in ("SELECT nope FROM t", "SELECT 1/'x'"):
            with pytest.raises(adbc_driver_manager.Error) as e:
                scalar(conn, bad)
            assert "Traceback" not in str(e.value) and ".py" not in str(e.value)
        assert scalar(conn, "SELECT count(*) FROM t") == 10
    with pytest.raises(errors.InvalidRequest, match="invalid table name"):
        c.ingest("1bad", narrow(1))
    with pytest.raises(errors.InvalidRequest, match="invalid table name"):
        c.ingest("x" * 65, narrow(1))
    # raw pyarrow.flight: the status code and a message without a traceback
    raw = flight.connect(node.flight)
    with pytest.raises(pa.ArrowInvalid) as e:
        raw.get_flight_info(flight.FlightDescriptor.for_command(b"garbage"))
    assert "Traceback" not in str(e.value)
    with pytest.raises(pa.ArrowKeyError) as e:
        list(raw.do_action(flight.Action("describe_table", b'{"name": "zzz"}')))
    assert "zzz" in str(e.value) and "Traceback" not in str(e.value)
    assert c.health()["status"] == "ok"


@pytest.fixture(scope="module")
def sandbox_node(tmp_path_factory):
    """One node for the read-only sandbox checks (each refusal leaves the node as it was)."""
    n = NodeProcess(tmp_path_factory.mktemp("sandbox") / "node").start()
    yield n
    n.stop()


@pytest.mark.parametrize("sql,needle", [
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
    ("SELECT * FROM read_text('/etc/hostname')", "disabled"),
    ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("ATTACH '/tmp/x.db' AS x", "ATTACH"),
    ("SET threads = 1", "SET"),
    ("SET enable_external_access = true", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("SELECT 1; SELECT 2", "exactly one"),
])
def test_sandbox_refuses(sandbox_node, sql, needle):
    c = sandbox_node.client()
    with pytest.raises(errors.InvalidRequest, match=needle):
        c.query(sql)
    assert c.query("SELECT 42 AS x").column("x")[0].as_py() == 42


def test_delete_update_forms_without_support_are_unimplemented(node):
    c = node.client()
    c.ingest("t", narrow(1))
    for sql in ("DELETE FROM t USING t AS u", "UPDATE t SET a = 1 RETURNING a"):
        with pytest.raises(errors.Unimplemented, match="supported"):
            c.query(sql)
    assert c.query("SELECT count(*) AS n FROM t").column("n")[0].as_py() == 1


def test_cli_commands(node, tmp_path):
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(narrow(1234), src)
    csv = tmp_path / "in.csv"
    csv.write_text("x,y\n1,a\n2,b\n")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "clients.cli", "--uri", node.flight, *args],
                              capture_output=True, text=True, timeout=120)

    r = run("ingest", str(src), "--table", "cli_t")
    assert r.returncode == 0, r.stderr
    assert "1234 rows" in r.stdout
    assert run("ingest", str(csv), "--table", "cli_csv").returncode == 0
    r = run("tables")
    assert r.stdout.split() == ["cli_csv", "cli_t"]
    r = run("sql", "SELECT count(*) AS n FROM cli_t", "--format", "csv")
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "1234"
    out = tmp_path / "out.parquet"
    assert run("sql", "SELECT * FROM cli_csv ORDER BY x", "--format", "parquet", "--output", str(out)).returncode == 0
    assert pq.read_table(out).to_pylist() == [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    r = run("flush", "--table", "cli_t")
    assert r.returncode == 0 and "1234 rows" in r.stdout
    r = run("sql", "SELECT * FROM nowhere")
    assert r.returncode == 2 and "not_found" in r.stderr and "Traceback" not in r.stderr


def test_bad_config_fails_at_start(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("buffer:\n  sise: 10\n")
    r = subprocess.run([sys.executable, "-m", "clients.cli", "serve", "--config", str(cfg), "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "buffer.sise" in r.stderr


def test_health_and_metrics_listen(node):
    import httpx

    h = httpx.get(node.rest + "/api/v1/health", timeout=10)
    assert h.status_code == 200 and h.json()["checks"]["storage"] == "ok"
    m = httpx.get(node.metrics + "/metrics", timeout=10)
    assert m.status_code == 200 and "miniodb_up 1.0" in m.text


def test_describe_and_status_show_iso_utc_times(node):
    import datetime as dt

    c = node.client()
    c.ingest("when_t", narrow(3), mode="create")
    before = dt.datetime.now(dt.UTC)
    created = dt.datetime.fromisoformat(c.describe("when_t")["created_at"])
    assert created.utcoffset() == dt.timedelta(0) and abs((before - created).total_seconds()) < 3600
    status = c.status()
    started = dt.datetime.fromisoformat(status["node"]["started_at"])
    assert started.utcoffset() == dt.timedelta(0) and started <= dt.datetime.now(dt.UTC)
    assert isinstance(status["node"]["uptime_seconds"], float)  # a duration stays seconds
    for n in status["nodes"]:
        assert dt.datetime.fromisoformat(n["last_seen"]).utcoffset() == dt.timedelta(0)


def test_client_splits_large_batches(node):
    c = Client(node.flight)
    big = narrow(1_000_000)  # one 32 MB batch: over gRPC's 16 MiB message cap unless split
    assert c.ingest("big", pa.Table.from_batches([big.combine_chunks().to_batches()[0]])) == 1_000_000
    r = c.query("SELECT count(*) AS n FROM big")
    assert r.column("n")[0].as_py() == 1_000_000
