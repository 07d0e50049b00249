"""pandas and Polars against a real node: through ADBC and through clients.flight.Client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from clients import errors
from tests.fixtures.node import NodeProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("frames")).start()
    node.client().ingest("trips", pa.table({"id": list(range(10)), "city": ["a", "b"] * 5,
                                            "fare": [float(i) for i in range(10)]}), mode="replace")
    yield node
    node.terminate()


def test_pandas_read_sql_on_adbc(server):
    with server.adbc() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas: "only supports SQLAlchemy ..." on some versions
        df = pd.read_sql("SELECT city, sum(fare) AS total FROM trips GROUP BY city ORDER BY city", conn)
    assert df.to_dict("list") == {"city": ["a", "b"], "total": [20.0, 25.0]}


def test_polars_read_database_on_adbc(server):
    with server.adbc() as conn:
        df = pl.read_database("SELECT id, fare FROM trips WHERE id < 3 ORDER BY id", connection=conn)
        many = pl.read_database("SELECT * FROM trips", connection=conn, iter_batches=True, batch_size=4)
        assert sum(b.height for b in many) == 10
    assert df.to_dict(as_series=False) == {"id": [0, 1, 2], "fare": [0.0, 1.0, 2.0]}


def test_client_dataframes_and_params(server):
    client = server.client()
    assert client.to_pandas("SELECT count(*) AS n FROM trips")["n"][0] == 10
    df = client.to_polars("SELECT id FROM trips WHERE city = ? AND fare > ? ORDER BY id", ["a", 3.0])
    assert df["id"].to_list() == [4, 6, 8]
    assert client.ingest("frames_in", pd.DataFrame({"x": [1, 2], "y": ["p", "q"]}), mode="replace") == 2
    assert client.ingest("frames_in", pl.DataFrame({"x": [3], "y": ["r"]}), mode="append") == 1
    assert client.query("SELECT sum(x) AS s FROM frames_in").column("s").to_pylist() == [6]
    assert client.execute("INSERT INTO frames_in VALUES (?, ?)", [(4, "s"), (5, "t")]) == 2
    assert client.query("SELECT x FROM frames_in WHERE x >= ? ORDER BY x", [4]).column("x").to_pylist() == [4, 5]
    with pytest.raises(errors.NotFound):
        client.to_pandas("SELECT * FROM no_such_frame")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    from tests.fixtures.certs import make_certs

    folder = tmp_path_factory.mktemp("frames-tls")
    certs = make_certs(folder / "tls")
    cert_file, key_file = certs.cert_file, certs.key_file
    node = NodeProcess(folder / "node", env={"MINIODB_SERVER_TLS_ENABLED": "true",
                                             "MINIODB_SERVER_TLS_CERT_FILE": str(cert_file),
                                             "MINIODB_SERVER_TLS_KEY_FILE": str(key_file)}).start()
    node.client(tls_root_certs=certs.ca_pem).ingest("tls_t", pa.table({"v": [1, 2, 3]}))
    yield node, certs.ca_file
    node.terminate()


def test_polars_read_database_uri_adbc(tls_server):
    """``read_database_uri(engine="adbc")`` picks the ADBC driver from the URI scheme, so a node
    is addressed as ``flightsql://host:port`` (TLS). The Go driver trusts the system roots, so
    the reader runs in a process whose ``SSL_CERT_FILE`` names the test CA."""
    node, cert_file = tls_server
    uri = node.flight.replace("grpc+tls://", "flightsql://")
    script = ("import json, sys, polars as pl\n"
              "df = pl.read_database_uri('SELECT sum(v)::BIGINT AS s, count(*) AS n FROM tls_t', sys.argv[1], engine='adbc')\n"
              "print(json.dumps(df.to_dict(as_series=False)))\n")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", script, uri], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "SSL_CERT_FILE": str(cert_file)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"s": [6], "n": [3]}
