"""Three real nodes behind HAProxy running the shipped ``deploy/haproxy/haproxy.cfg``.

The nodes listen on 127.0.0.2-4 with the same ports, as cluster nodes do, share one Redis
and one object store folder, and HAProxy finds them by DNS (``server-template``) through a
test DNS server (tests/fixtures/haproxy.py). Flight SQL (ADBC and pyarrow.flight) and REST go
through the load balancer; a drained node leaves the pool before it exits with no failed
query; a node killed with ``kill -9`` is marked down and new connections keep working.
"""

from __future__ import annotations

import os
import subprocess
import threading

import adbc_driver_flightsql.dbapi as dbapi
import httpx
import pytest

from clients.flight import Client
from tests.fixtures.haproxy import HAPROXY_CFG, same_free_ports
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.node import start_all
from tests.fixtures.services import which_or_unavailable

pytestmark = [pytest.mark.redis]
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
NAME = "miniodb.cluster.test"
COUNT_SQL = "SELECT count(*) AS n, sum(id) AS s FROM lbt"


@pytest.fixture
def cluster(node_factory, haproxy_factory, dns_server, redis_server, redis_prefix, tmp_path):
    grpc, rest, metrics = same_free_ports(HOSTS, 3)
    env = {"MINIODB_REDIS_HOST": "127.0.0.1", "MINIODB_REDIS_PORT": str(redis_server.port),
           "MINIODB_REDIS_PREFIX": redis_prefix, "MINIODB_STORAGE_PATH": str(tmp_path / "shared-objects"),
           "MINIODB_METADATA_NODE_TTL": "2", "MINIODB_SERVER_DRAIN_DELAY": "3",
           "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"}
    nodes = start_all([node_factory(env={**env, "MINIODB_SERVER_NODE_ID": f"lb-{i}"}, name=f"node{i}", start=False,
                                    args=["--host", h, "--flight-port", str(grpc), "--rest-port", str(rest),
                                          "--metrics-port", str(metrics)]) for i, h in enumerate(HOSTS)])
    dns = dns_server(NAME, HOSTS)
    lb = haproxy_factory(NAME, dns.address, grpc, rest, metrics, slots=4)
    wait_until(lambda: lb.up("miniodb-grpc") == lb.up("miniodb-rest") == len(HOSTS), what="all nodes UP in HAProxy")
    with Client(lb.flight) as c:
        assert c.ingest("lbt", rows(0, 3000)) == 3000  # through the LB: one node buffers them
    for n in nodes:  # every node answers from the same committed files
        with n.client() as c:
            c.flush()
    return nodes, lb


def _expected() -> list[tuple]:
    return [(3000, sum(range(3000)))]


def test_the_shipped_config_is_valid_with_its_defaults():
    """``haproxy -c`` with the production defaults (DNS name tasks.miniodb, ports 8080/8081/9090/8404)."""
    binary = which_or_unavailable("haproxy")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # no MINIODB_* override: the file's own defaults
    r = subprocess.run([binary, "-c", "-f", str(HAPROXY_CFG)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    text = HAPROXY_CFG.read_text()
    for needle in ("proto h2", "option httpchk GET /api/v1/health/ready", "server-template miniodb",
                   "use-service prometheus-exporter", "resolvers dns"):
        assert needle in text, needle


@pytest.mark.slow
def test_flight_sql_and_rest_through_the_load_balancer(cluster):
    nodes, lb = cluster
    with dbapi.connect(lb.flight, autocommit=True) as conn, conn.cursor() as cur:
        for _ in range(9):  # one connection: HAProxy balances each gRPC request
            cur.execute(COUNT_SQL)
            assert cur.fetchall() == _expected()
    sessions = [int(row["stot"] or 0) for row in lb.stats("miniodb-grpc")]
    assert sum(1 for n in sessions if n > 0) >= 2, sessions  # requests of one connection spread out
    with Client(lb.flight) as c:  # pyarrow.flight
        assert c.query(COUNT_SQL).to_pylist() == [{"n": 3000, "s": sum(range(3000))}]
    for _ in range(3):
        r = httpx.post(f"{lb.rest}/api/v1/query", json={"sql": COUNT_SQL}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [[3000, sum(range(3000))]]
        assert httpx.get(f"{lb.rest}/api/v1/health/ready", timeout=30).status_code == 200
    m = httpx.get(f"http://127.0.0.1:{lb.ports['metrics']}/metrics", timeout=30)
    assert m.status_code == 200 and "miniodb" in m.text
    prom = httpx.get(f"{lb.stats_url}/metrics", timeout=30)
    assert prom.status_code == 200 and "haproxy_backend_active_servers" in prom.text


@pytest.mark.slow
def test_drain_leaves_the_pool_before_exit_and_kill_9_is_routed_around(cluster):
    nodes, lb = cluster
    failures: list[BaseException] = []
    done = {"n": 0}
    stop = threading.Event()

    def loop():
        with Client(lb.flight) as c:
            while not stop.is_set():
                try:
                    assert c.query(COUNT_SQL).to_pylist() == [{"n": 3000, "s": sum(range(3000))}]
                    done["n"] += 1
                except BaseException as exc:  # noqa: BLE001 - collected, asserted below
                    failures.append(exc)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    wait_until(lambda: done["n"] >= 5, what="query loop running")
    drained = nodes[0]
    assert lb.up("miniodb-grpc") == 3
    drained.proc.send_signal(15)
    up_while_alive = []
    while drained.proc.poll() is None:
        up_while_alive.append(lb.up("miniodb-grpc"))
    assert drained.proc.wait() == 0
    assert 2 in up_while_alive and min(up_while_alive) == 2, up_while_alive  # out of the pool before it exited
    before = done["n"]
    wait_until(lambda: done["n"] >= before + 5, what="queries after the drain")
    stop.set()
    t.join(30)
    assert not failures, failures[:3]

    victim = nodes[1]
    victim.kill()  # kill -9: no drain at all
    wait_until(lambda: lb.up("miniodb-grpc") == 1, what="HAProxy marks the killed node down")
    for _ in range(4):  # new connections keep working, on the one node left
        with dbapi.connect(lb.flight, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(COUNT_SQL)
            assert cur.fetchall() == _expected()
        assert httpx.get(f"{lb.rest}/api/v1/health/ready", timeout=30).status_code == 200

