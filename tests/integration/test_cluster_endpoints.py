"""Opt-in multi-endpoint FlightInfo for plain scans, over a real 3-node cluster (redis-server
+ moto_server): one endpoint per node holding data, each with that node's location and a signed,
expiring ticket; the same rows as the default single endpoint, through pyarrow.flight and ADBC."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import protocol
from clients.protocol import flight_pb2, sql_pb2
from tests.fixtures.helpers import rows, wait_for_live_nodes
from tests.fixtures.node import start_all
from tests.integration.test_cluster_queries import cluster_env

pytestmark = [pytest.mark.redis, pytest.mark.s3]

SCAN = "SELECT id, v * 2 AS w FROM t WHERE id % 3 <> 1"
PIN_TTL = 4  # n2's pins (and so its endpoint tickets) expire after this many seconds


@pytest.fixture
def cluster(node_factory, redis_server, redis_prefix, moto_server, s3_bucket):
    """n0, n1: the option off (the default); n2: coordinator.multi_endpoint on, short pin TTL.
    Data: 100 rows committed by n0, 50 buffered on n1, 30 buffered on n2. The tables are small
    enough for the local-read shape: the endpoints still are one per node holding data."""
    extra = {2: {"COORDINATOR_MULTI_ENDPOINT": "true", "COORDINATOR_PIN_TTL": str(PIN_TTL)}}
    nodes = start_all([node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"n{i}",
                                                    COORDINATOR_DISTRIBUTE_MIN_BYTES=str(1 << 40),
                                                    **extra.get(i, {})),
                                    name=f"n{i}", start=False) for i in range(3)])
    with nodes[0].client() as c0, nodes[1].client() as c1, nodes[2].client() as c2:
        wait_for_live_nodes(c0, 3)
        assert c0.ingest("t", rows(0, 100)) == 100
        assert c0.flush()["rows"] == 100
        assert c1.ingest("t", rows(1000, 50)) == 50
        assert c2.ingest("t", rows(2000, 30)) == 30
    return nodes


def expected() -> list[tuple]:
    ids = [*range(100), *range(1000, 1050), *range(2000, 2030)]
    return sorted((i, i * 2.0) for i in ids if i % 3 != 1)


def _desc(sql: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(protocol.pack(sql_pb2.CommandStatementQuery(query=sql)))


def _read(info: flight.FlightInfo, home: str) -> tuple[pa.Table, set[str]]:
    """Every endpoint read from its own location (or from ``home`` when it has none)."""
    tables, where = [], set()
    for ep in info.endpoints:
        uri = ep.locations[0].uri.decode() if ep.locations else home
        where.add(uri)
        fc = flight.FlightClient(uri)
        try:
            t = fc.do_get(ep.ticket).read_all()
        finally:
            fc.close()
        assert t.schema.equals(info.schema), "every endpoint returns the FlightInfo's types"
        tables.append(t)
    return pa.concat_tables(tables), where


def _sorted(t: pa.Table) -> list[tuple]:
    return sorted(zip(t.column("id").to_pylist(), t.column("w").to_pylist(), strict=True))


def test_plain_scan_answers_one_endpoint_per_node_with_the_same_rows(cluster) -> None:
    n0, n1, n2 = cluster
    off = flight.FlightClient(n0.flight)
    single = off.get_flight_info(_desc(SCAN))
    assert len(single.endpoints) == 1 and not single.endpoints[0].locations  # the option is off on n0
    one = off.do_get(single.endpoints[0].ticket).read_all()
    off.close()
    assert _sorted(one) == expected()

    on = flight.FlightClient(n2.flight)
    info = on.get_flight_info(_desc(SCAN))
    on.close()
    assert info.schema.equals(single.schema)
    # n1 and n2 hold pinned rows: their endpoints point at them; n0's file sits on one of the three
    assert 2 <= len(info.endpoints) <= 3
    got, where = _read(info, n2.flight)
    assert {n1.flight, n2.flight} <= where
    assert _sorted(got) == expected()

    # anything that is not a plain scan keeps the single endpoint, even with the option on
    on = flight.FlightClient(n2.flight)
    for sql in ("SELECT id FROM t ORDER BY id", "SELECT count(*) FROM t", "SELECT DISTINCT id FROM t",
                "SELECT id FROM t LIMIT 5", "SELECT id FROM t WHERE id IN (SELECT id FROM t WHERE id < 3)"):
        assert len(on.get_flight_info(_desc(sql)).endpoints) == 1, sql
    on.close()


def test_forged_or_expired_endpoint_tickets_are_refused(cluster) -> None:
    n0, n1, n2 = cluster
    fc = flight.FlightClient(n2.flight)
    info = fc.get_flight_info(_desc(SCAN))
    ep = next(e for e in info.endpoints if e.locations and e.locations[0].uri.decode() == n1.flight)
    raw = ep.ticket.ticket
    forged = raw.replace(b'"pin":true', b'"pin":false') if b'"pin":true' in raw else raw[:-2] + b"0}"
    assert forged != raw
    target = flight.FlightClient(n1.flight)
    with pytest.raises(flight.FlightUnauthenticatedError):
        target.do_get(flight.Ticket(forged)).read_all()
    assert target.do_get(ep.ticket).read_all().num_rows > 0  # the genuine one works (within its TTL)
    time.sleep(PIN_TTL + 1)
    with pytest.raises(flight.FlightUnauthenticatedError):  # expired with its pin
        target.do_get(ep.ticket).read_all()
    target.close()
    fc.close()


def test_adbc_reads_the_endpoints_when_the_session_option_is_set(cluster) -> None:
    n0 = cluster[0]
    with n0.adbc() as conn:
        conn.adbc_connection.set_options(**{"adbc.flight.sql.session.optionbool.miniodb.multi_endpoint": "true"})
        with conn.cursor() as cur:
            cur.execute(SCAN)
            got = cur.fetch_arrow_table()
        assert _sorted(got) == expected()
        # the multi-endpoint path ran (no coordinator-side execution of the statement was logged)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM system.queries WHERE sql = ?", parameters=(SCAN,))
            assert cur.fetchall() == [(0,)]
        conn.adbc_connection.set_options(**{"adbc.flight.sql.session.optionbool.miniodb.multi_endpoint": "false"})
        with conn.cursor() as cur:
            cur.execute(SCAN)
            assert _sorted(cur.fetch_arrow_table()) == expected()
            cur.execute("SELECT count(*) FROM system.queries WHERE sql = ?", parameters=(SCAN,))
            assert cur.fetchall() == [(1,)]


def test_the_session_option_is_validated(cluster) -> None:
    fc = flight.FlightClient(cluster[0].flight)
    req = flight_pb2.SetSessionOptionsRequest()
    req.session_options["miniodb.multi_endpoint"].string_value = "maybe"
    body = [r.body.to_pybytes() for r in fc.do_action(flight.Action("SetSessionOptions", req.SerializeToString()))]
    result = protocol.decode(flight_pb2.SetSessionOptionsResult, body[0])
    assert result.errors["miniodb.multi_endpoint"].value == flight_pb2.SetSessionOptionsResult.INVALID_VALUE
    fc.close()


KEYS = ("endpoint-key-one-7c2a", "endpoint-key-two-41fe")


def test_adbc_with_auth_sends_its_credential_to_every_location(
        node_factory, redis_server, redis_prefix, moto_server, s3_bucket) -> None:
    auth = {"SERVER_AUTH_ENABLED": "true", "SERVER_API_KEYS": ",".join(KEYS), "COORDINATOR_MULTI_ENDPOINT": "true"}
    a, b = (node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"a{i}", **auth),
                         name=f"a{i}") for i in range(2))
    with a.client(password=KEYS[0], username="u") as ca, b.client(password=KEYS[1], username="u") as cb:
        wait_for_live_nodes(ca, 2)
        assert ca.ingest("t", rows(0, 10)) == 10
        assert cb.ingest("t", rows(100, 5)) == 5  # buffered on b: its endpoint must be read from b
    fc = flight.FlightClient(a.flight)
    token = fc.authenticate_basic_token("u", KEYS[0])
    info = fc.get_flight_info(_desc("SELECT id FROM t"), flight.FlightCallOptions(headers=[token]))
    fc.close()
    assert len(info.endpoints) == 2 and {e.locations[0].uri.decode() for e in info.endpoints} == {a.flight, b.flight}
    with a.adbc(db_kwargs={"username": "u", "password": KEYS[0]}) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM t")
        assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == [*range(10), *range(100, 105)]
    nobody = flight.FlightClient(b.flight)
    ep = next(e for e in info.endpoints if e.locations[0].uri.decode() == b.flight)
    with pytest.raises(flight.FlightUnauthenticatedError):  # a valid ticket still needs a credential
        nobody.do_get(ep.ticket).read_all()
    nobody.close()
