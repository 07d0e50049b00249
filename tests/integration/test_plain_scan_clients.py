"""Plain scans through real clients (ADBC and pyarrow.flight) against a real node process: the
answers equal the normal path's (the same statement with ``WHERE true``, which DuckDB runs),
GetFlightInfo's schema equals the streamed one, the node counts the scans it served from
Arrow's Parquet reader, and CancelFlightInfo stops a long plain scan."""

from __future__ import annotations

import datetime as dt
import decimal

import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients import errors
from clients.flight import translate
from clients.protocol import flight_pb2
from tests.fixtures.node import NodeProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("plain"), env={"MINIODB_QUERY_HOT_TABLE_BYTES": "0"}).start()
    yield node
    node.terminate()


def _scans(node: NodeProcess) -> float:
    text = httpx.get(node.metrics + "/metrics", timeout=10).text
    for fam in text_string_to_metric_families(text):
        if fam.name == "miniodb_query_plain_scans":
            return sum(s.value for s in fam.samples if s.name.endswith("_total"))
    raise AssertionError("miniodb_query_plain_scans is not exported")


def _rows(start: int, n: int) -> pa.Table:
    ids = range(start, start + n)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "price": pa.array([None if i % 7 == 0 else decimal.Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
        "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 300) for i in ids], pa.date32()),
        "ts": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us")),
        "name": pa.array([None if i % 5 == 0 else f"n{i}" for i in ids], pa.string()),
        "ok": pa.array([None if i % 3 == 0 else i % 2 == 0 for i in ids], pa.bool_()),
    })


@pytest.fixture(scope="module")
def loaded(server):
    c = server.client()
    c.ingest("pscan", _rows(0, 30_000))
    c.flush("pscan")
    c.ingest("pscan", _rows(30_000, 20_000))
    c.flush("pscan")
    c.ingest("pscan", _rows(50_000, 777))  # buffered
    return server


@pytest.mark.parametrize("select", ["*", "name, id", "price AS p, ts, day, ok"])
def test_pyarrow_flight_plain_scan_equals_the_normal_path(loaded, select):
    c = loaded.client()
    before = _scans(loaded)
    info = c.flight_info(f"SELECT {select} FROM pscan")
    got = c.read(info).read_all()
    assert _scans(loaded) == before + 1  # this one was served by Arrow's reader
    want = c.query(f"SELECT {select} FROM pscan WHERE true")
    assert _scans(loaded) == before + 1  # ... and that one by DuckDB
    assert info.schema.equals(got.schema, check_metadata=True)
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.num_rows == 50_777
    assert got.equals(want)


def test_adbc_plain_scan_equals_the_normal_path(loaded):
    before = _scans(loaded)
    with loaded.adbc() as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM miniodb.main.pscan")
        got = cur.fetch_arrow_table()
        cur.execute("SELECT * FROM miniodb.main.pscan WHERE true")
        want = cur.fetch_arrow_table()
        cur.execute("SELECT id, name AS n FROM pscan")
        subset = cur.fetch_arrow_table()
    assert _scans(loaded) == before + 2
    assert got.num_rows == 50_777
    assert got.schema.equals(want.schema) and got.equals(want)
    assert subset.column("n").equals(want.column("name"))


def test_prepared_plain_scan_schema_equals_the_stream(loaded):
    c = loaded.client()
    before = _scans(loaded)
    with c.prepare("SELECT ts, id AS key, name FROM pscan") as ps:
        info = ps.flight_info()
        got = c.read(info).read_all()
    assert _scans(loaded) == before + 1
    assert ps.dataset_schema.equals(got.schema, check_metadata=True)  # the prepare's schema (normal path)
    assert info.schema.equals(got.schema, check_metadata=True)
    assert got.column_names == ["ts", "key", "name"] and got.num_rows == 50_777


def test_cancel_a_long_plain_scan(server):
    c = server.client()
    big = pa.table({"k": pa.array(range(3_000_000), pa.int64()), "v": pa.array(range(3_000_000), pa.float64())})
    c.ingest("pscan_big", big)
    c.flush("pscan_big")
    before = _scans(server)
    info = c.flight_info("SELECT * FROM pscan_big")
    assert _scans(server) == before + 1
    stream = c._client.do_get(info.endpoints[0].ticket)
    assert stream.read_chunk().data.num_rows > 0
    assert c.cancel(info) == flight_pb2.CANCEL_STATUS_CANCELLED
    with pytest.raises(flight.FlightCancelledError) as exc:
        while True:
            stream.read_chunk()
    assert isinstance(translate(exc.value), errors.Cancelled)
    assert c.query("SELECT count(*) AS n FROM pscan_big").column("n").to_pylist() == [3_000_000]
    assert c.query("SELECT * FROM pscan_big").num_rows == 3_000_000  # the node is fine afterwards


@pytest.mark.redis
@pytest.mark.s3
@pytest.mark.parametrize("shape", ["fan-out", "local-read"])
def test_cluster_plain_scan_equals_the_normal_path(shape, node_factory, redis_server, redis_prefix, moto_server,
                                                   s3_bucket):
    from tests.fixtures.helpers import wait_for_live_nodes
    from tests.integration.test_cluster_queries import SHAPES, cluster_env

    nodes = [node_factory(env={**cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"n{i}",
                                             **SHAPES[shape]), "MINIODB_QUERY_HOT_TABLE_BYTES": "0"},
                          name=f"n{i}") for i in range(2)]
    a, b = nodes
    with a.client() as ca, b.client() as cb:
        wait_for_live_nodes(ca, 2)
        ca.ingest("cps", _rows(0, 4000))
        ca.flush()
        cb.ingest("cps", _rows(4000, 3000))
        cb.flush()
        ca.ingest("cps", _rows(7000, 500))  # buffered on a
        cb.ingest("cps", _rows(7500, 300))  # buffered on b
        for c in (ca, cb):
            got = c.query("SELECT * FROM cps").sort_by("id")
            want = c.query("SELECT * FROM cps WHERE true").sort_by("id")
            assert got.num_rows == 7800
            assert got.schema.equals(want.schema) and got.equals(want)
    assert _scans(a) >= 1 and _scans(b) >= 1  # each coordinator's own part was a plain scan
