"""API keys and TLS with real processes and real clients: ADBC (Basic and bearer header),
pyarrow.flight, the project client, REST over httpx; a self-signed CA for grpc+tls/https."""

from __future__ import annotations

import base64
import ssl

import adbc_driver_flightsql as adbc_flightsql
import adbc_driver_flightsql.dbapi as dbapi
import adbc_driver_manager
import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import errors
from clients.flight import Client
from tests.fixtures.certs import make_certs

KEYS = ("obs-key-alpha-7f3a91", "obs-key-beta-22c0e5")
AUTH = {"MINIODB_SERVER_AUTH_ENABLED": "true", "MINIODB_SERVER_API_KEYS": ",".join(KEYS),
        "MINIODB_QUERY_CACHE_ENABLED": "true"}
AUTH_HEADER = adbc_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value
TLS_ROOTS = adbc_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value


def small() -> pa.Table:
    return pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["alice", "bob", "carol"]})


def adbc(uri: str, **db_kwargs):
    return dbapi.connect(uri, db_kwargs=db_kwargs, autocommit=True)


def adbc_query(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def unauthenticated(exc: BaseException) -> bool:
    text = str(exc)
    return "UNAUTHENTICATED" in text.upper() or isinstance(exc, flight.FlightUnauthenticatedError)


@pytest.fixture(scope="module")
def anode(tmp_path_factory):
    from tests.fixtures.node import NodeProcess

    n = NodeProcess(tmp_path_factory.mktemp("auth") / "node", env=AUTH).start()
    with Client(n.flight, token=KEYS[0]) as c:
        c.ingest("secured", small())
    yield n
    n.terminate()


def test_adbc_with_username_and_password(anode) -> None:
    with adbc(anode.flight, username="reporting", password=KEYS[1]) as conn:
        assert adbc_query(conn, "SELECT count(*) FROM secured") == [(3,)]
        assert adbc_query(conn, "SELECT name FROM secured WHERE id = 2") == [("bob",)]


def test_adbc_with_a_bearer_header(anode) -> None:
    with adbc(anode.flight, **{AUTH_HEADER: f"Bearer {KEYS[0]}"}) as conn:
        assert adbc_query(conn, "SELECT count(*) FROM secured") == [(3,)]


@pytest.mark.parametrize("kwargs", [{}, {"username": "u", "password": "wrong-key"},
                                    {AUTH_HEADER: "Bearer wrong-key"}, {AUTH_HEADER: "Bearer mdb1.x.y.z.w"}])
def test_adbc_without_a_valid_key_fails(anode, kwargs) -> None:
    with pytest.raises(adbc_driver_manager.Error) as exc:
        with adbc(anode.flight, **kwargs) as conn:
            adbc_query(conn, "SELECT count(*) FROM secured")
    assert unauthenticated(exc.value), exc.value
    for key in KEYS:
        assert key not in str(exc.value)


def test_pyarrow_flight_basic_then_token_and_bearer_key(anode) -> None:
    fc = flight.FlightClient(anode.flight)
    header = fc.authenticate_basic_token("any-user", KEYS[0])
    assert header[0] == b"authorization" and header[1].startswith(b"Bearer mdb1.")
    assert KEYS[0].encode() not in header[1]
    token_opts = flight.FlightCallOptions(headers=[header])
    assert [a.type for a in fc.list_actions(token_opts)]
    key_opts = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {KEYS[1]}".encode())])
    assert [a.type for a in fc.list_actions(key_opts)]
    basic = base64.b64encode(f"x:{KEYS[1]}".encode())
    basic_opts = flight.FlightCallOptions(headers=[(b"authorization", b"Basic " + basic)])
    assert [a.type for a in fc.list_actions(basic_opts)]  # Basic on any call, not only the handshake
    for bad in ([], [(b"authorization", b"Bearer nope")], [(b"authorization", b"Basic " + base64.b64encode(b"x:y"))]):
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(fc.list_actions(flight.FlightCallOptions(headers=bad)))
    with pytest.raises(flight.FlightUnauthenticatedError):
        fc.authenticate_basic_token("u", "wrong")
    fc.close()
    # the project client, both ways, and the same error class without a key
    with Client(anode.flight, username="u", password=KEYS[1]) as c:
        assert c.query("SELECT count(*) AS n FROM secured").to_pylist() == [{"n": 3}]
    with Client(anode.flight, token=header[1].decode().split(" ", 1)[1]) as c:  # a token issued earlier
        assert c.query("SELECT count(*) AS n FROM secured").to_pylist() == [{"n": 3}]
    with Client(anode.flight) as c, pytest.raises(errors.Unauthenticated):
        c.query("SELECT 1")


def test_rest_with_and_without_a_key(anode) -> None:
    with httpx.Client(base_url=anode.rest + "/api/v1", timeout=30) as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"  # stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
            r = http.post("/query", json={"sql": "SELECT count(*) AS n FROM secured"}, headers=headers)
            assert r.status_code == 401, r.text
            body = r.json()
            assert body["ok"] is False and body["code"] == "unauthenticated" and body["status"] == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/tables").status_code == 401
        for public in ("/docs", "/openapi.json"):  # the API's description is no secret: a browser reads it
            assert http.get(public).status_code == 200
        assert httpx.get(anode.rest + "/", timeout=30).status_code == 200  # the console page holds no data
        ok = http.post("/query", json={"sql": "SELECT count(*) AS n FROM secured"},
                       headers={"Authorization": f"Bearer {KEYS[1]}"})
        assert ok.status_code == 200 and ok.json()["rows"] == [[3]]
        assert http.get("/tables", headers={"Authorization": f"Bearer {KEYS[0]}"}).status_code == 200
    metrics = httpx.get(anode.metrics + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "miniodb_errors_total{code=\"unauthenticated\"}" in metrics.text


def test_other_principals_queries_are_masked_and_secrets_stay_out_of_logs(anode) -> None:
    with Client(anode.flight, token=KEYS[0]) as alice, Client(anode.flight, token=KEYS[1]) as bob:
        alice.query("SELECT id FROM secured WHERE name = 'alice-secret-literal' AND id > 41")
        mine = alice.query("SELECT principal, sql FROM system.queries "
                           "WHERE sql LIKE '%alice-secret-literal%'").to_pylist()
        assert mine and mine[0]["principal"].startswith("key-")
        seen_by_bob = bob.query("SELECT principal, sql FROM system.queries WHERE principal = ?",
                                [mine[0]["principal"]]).to_pylist()
        assert seen_by_bob
        texts = " ".join(r["sql"] for r in seen_by_bob)
        assert "alice-secret-literal" not in texts and "41" not in texts and "FROM secured" in texts
        assert "?" in texts
    log = anode.log()
    metrics = httpx.get(anode.metrics + "/metrics").text
    for key in KEYS:
        assert key not in log and key not in metrics
    assert "mdb1." not in log and "mdb1." not in metrics


# -- TLS ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    from tests.fixtures.node import NodeProcess

    certs = make_certs(tmp_path_factory.mktemp("certs"))
    env = {"MINIODB_SERVER_TLS_ENABLED": "true", "MINIODB_SERVER_TLS_CERT_FILE": str(certs.cert_file),
           "MINIODB_SERVER_TLS_KEY_FILE": str(certs.key_file), **AUTH}
    n = NodeProcess(tmp_path_factory.mktemp("tls") / "node", env=env).start()
    yield n, certs
    n.terminate()


def test_tls_adbc_and_https(tls) -> None:
    node, certs = tls
    assert node.flight.startswith("grpc+tls://") and node.rest.startswith("https://")
    assert node.metrics.startswith("https://")
    with Client(node.flight, token=KEYS[0], tls_root_certs=certs.ca_pem) as c:
        assert c.ingest("over_tls", small()) == 3
    with adbc(node.flight, username="u", password=KEYS[0], **{TLS_ROOTS: certs.ca_pem.decode()}) as conn:
        assert adbc_query(conn, "SELECT count(*) FROM over_tls") == [(3,)]
    ctx = ssl.create_default_context(cafile=str(certs.ca_file))
    with httpx.Client(base_url=node.rest + "/api/v1", verify=ctx, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        r = http.post("/query", json={"sql": "SELECT count(*) AS n FROM over_tls"},
                      headers={"Authorization": f"Bearer {KEYS[1]}"})
        assert r.status_code == 200 and r.json()["rows"] == [[3]]
        assert r.headers["x-miniodb-query-id"]
    assert "miniodb_up 1.0" in httpx.get(node.metrics + "/metrics", verify=ctx, timeout=10).text


def test_plaintext_and_untrusted_clients_fail_cleanly(tls) -> None:
    node, certs = tls
    port = node.flight.rsplit(":", 1)[1]
    plain = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    with pytest.raises(flight.FlightUnavailableError):
        list(plain.list_actions(flight.FlightCallOptions(timeout=10)))
    plain.close()
    with Client(f"grpc://127.0.0.1:{port}", token=KEYS[0], timeout=10) as c, pytest.raises(errors.Unavailable):
        c.health()
    untrusted = flight.FlightClient(node.flight)  # system roots do not know the test CA
    with pytest.raises(flight.FlightUnavailableError):
        list(untrusted.list_actions(flight.FlightCallOptions(timeout=10)))
    untrusted.close()
    with pytest.raises(adbc_driver_manager.Error):
        with adbc(f"grpc://127.0.0.1:{port}", username="u", password=KEYS[0]) as conn:
            adbc_query(conn, "SELECT 1")
    rest_port = node.rest.rsplit(":", 1)[1]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{rest_port}/api/v1/health", timeout=10)
    with pytest.raises(httpx.ConnectError):  # TLS, but a CA the client does not trust
        httpx.get(node.rest + "/api/v1/health", timeout=10)
    metrics_port = node.metrics.rsplit(":", 1)[1]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    # the node still serves after the failed handshakes
    ctx = ssl.create_default_context(cafile=str(certs.ca_file))
    assert httpx.get(node.rest + "/api/v1/health", verify=ctx, timeout=10).status_code == 200
    assert httpx.get(node.metrics + "/metrics", verify=ctx, timeout=10).status_code == 200
