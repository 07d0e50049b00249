"""Cluster queries with real processes: one redis-server, one moto_server, three nodes.

Any node coordinates; every live node's buffered rows and the committed files are counted
exactly once (pin buffers + watermarks first, then the file snapshot).
"""

from __future__ import annotations

import signal
import threading

import httpx
import pyarrow.flight as flight
import pytest

from clients import errors
from tests.fixtures.helpers import rows, wait_for_live_nodes, wait_until
from tests.fixtures.node import start_all
from tests.fixtures.redis import server_mode_env

pytestmark = [pytest.mark.redis, pytest.mark.s3]

SQL = "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s FROM {t}"


def expect(ids: list[int]) -> list[dict]:
    return [{"n": len(ids), "d": len(set(ids)), "s": sum(ids) if ids else None}]


def cluster_env(moto, bucket, redis, prefix, node_id: str, **extra) -> dict:
    # nothing is flushed unless asked (or by the test's own flush loop); files are fanned out to the
    # peers however small (the local-read shape: COORDINATOR_DISTRIBUTE_MIN_BYTES above the data)
    return {**server_mode_env(moto, bucket, redis, prefix, BUFFER_SIZE="100000000", BUFFER_FLUSH_INTERVAL="3600",
                              **{"COORDINATOR_PEER_TIMEOUT": "10", "COORDINATOR_DISTRIBUTE_MIN_BYTES": "0", **extra}),
            "MINIODB_SERVER_NODE_ID": node_id}


SHAPES = {"fan-out": {}, "local-read": {"COORDINATOR_DISTRIBUTE_MIN_BYTES": str(1 << 40)},
          # local-read, but a peer with more buffered rows than 10 keeps them for a fragment call
          "local-read+fragments": {"COORDINATOR_DISTRIBUTE_MIN_BYTES": str(1 << 40), "COORDINATOR_INLINE_MAX_ROWS": "10"}}


def peer_fragments(node) -> float:
    """Fragments this node ran for a coordinator (miniodb_query_fragments_total{role="peer"})."""
    for line in httpx.get(node.metrics + "/metrics").text.splitlines():
        if line.startswith("miniodb_query_fragments_total{") and 'role="peer"' in line:
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(params=["fan-out"])
def cluster(request, node_factory, redis_server, redis_prefix, moto_server, s3_bucket):
    extra = SHAPES[request.param]
    nodes = start_all([node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"n{i}", **extra),
                                    name=f"n{i}", start=False) for i in range(3)])
    with nodes[0].client() as c:
        wait_for_live_nodes(c, 3)
    return nodes


def _query(node, sql: str):
    """(table, headers) of a query through pyarrow.flight's Flight SQL (the stats headers)."""
    with node.client() as c:
        return c.query(sql)


@pytest.mark.parametrize("cluster", ["fan-out", "local-read"], indirect=True)
def test_rows_buffered_on_any_node_are_seen_by_every_node(cluster, request) -> None:
    a, b, c = cluster
    ids: list[int] = []
    with a.client() as ca, b.client() as cb, c.client() as cc:
        assert ca.ingest("t", rows(0, 100)) == 100
        ids += range(100)
        assert ca.flush()["rows"] == 100  # committed by a
        assert cb.ingest("t", rows(1000, 50)) == 50  # buffered on b only
        ids += range(1000, 1050)
        assert cc.ingest("t", rows(2000, 30)) == 30
        ids += range(2000, 2030)
        for cl in (ca, cb, cc):
            assert cl.query(SQL.format(t="t")).to_pylist() == expect(ids)
            assert cl.last_stats()["nodes"] == "n0,n1,n2" and "missing-nodes" not in cl.last_stats()
        got = ca.query("SELECT id FROM t WHERE id >= 1000 ORDER BY id LIMIT 3").to_pylist()
        assert got == [{"id": 1000}, {"id": 1001}, {"id": 1002}]
        # parameters are bound as typed literals and distributed like any statement
        assert ca.query("SELECT count(*) AS n FROM t WHERE id >= ?", [1000]).to_pylist() == [{"n": 80}]
        with a.adbc() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n, max(id) AS m FROM t WHERE id < ?", parameters=(2010,))
            assert cur.fetchall() == [(160, 2009)]
        nodes = ca.query("SELECT node_id, role, state, last_heartbeat IS NOT NULL AS hb FROM system.nodes "
                         "ORDER BY node_id").to_pylist()
        assert [(n["node_id"], n["role"], n["state"], n["hb"]) for n in nodes] == [
            ("n0", "self", "live", True), ("n1", "peer", "live", True), ("n2", "peer", "live", True)]
        q = ca.query("SELECT nodes, missing_nodes FROM system.queries WHERE sql LIKE 'SELECT count(*)%' "
                     "AND nodes IS NOT NULL").to_pylist()
        assert q and q[-1]["nodes"] == "n0,n1,n2" and q[-1]["missing_nodes"] is None
    # local-read: the peers' few buffered rows came with their pins, no fragment call was made
    fragments = sum(peer_fragments(n) for n in cluster)
    assert (fragments == 0) == (request.node.callspec.params["cluster"] == "local-read"), fragments


@pytest.mark.parametrize("cluster", list(SHAPES), indirect=True)
def test_count_stays_exact_while_nodes_flush(cluster) -> None:
    """Every node ingests and flushes in a loop; each query must count every row acknowledged
    before it started, none twice (distinct ids), and nothing that was never acknowledged."""
    acked = [0, 0, 0]  # rows acknowledged per node (ids 1_000_000 * node + k)
    started = [0, 0, 0]  # rows sent per node (acknowledged or in flight)
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(i: int) -> None:
        with cluster[i].client() as cl:
            k = 0
            while not stop.is_set():
                try:
                    started[i] = k + 20
                    cl.ingest("f", rows(1_000_000 * i + k, 20))
                    k += 20
                    acked[i] = k
                    if k % 60 == 0:
                        cl.flush("f")  # a commit races the queries of the other nodes
                except Exception as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    return

    with cluster[0].client() as c0:
        c0.ingest("f", rows(5_000_000, 1))
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(25):
                low = sum(acked) + 1
                got = c0.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM f").to_pylist()[0]
                high = sum(started) + 1
                assert got["n"] == got["d"], "a row was counted twice"
                assert low <= got["n"] <= high, (low, got, high)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not failures
        total = sum(acked) + 1
        assert c0.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM f").to_pylist() == [
            {"n": total, "d": total}]


def test_forged_fragment_ticket_is_refused(cluster) -> None:
    client = flight.FlightClient(cluster[1].flight)
    forged = b"miniodb-fragment:" + b"0" * 64 + b':{"q":"x","t":"t","sql":"SELECT 1","files":[],"exp":9e12}'
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.do_get(flight.Ticket(forged)).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.do_action(flight.Action("cluster.pin", b'{"q":"x","tables":["t"]}')))
    client.close()


KEYS = ("cluster-key-one-5d1e", "cluster-key-two-90aa")


def test_with_auth_internal_calls_use_the_cluster_credential_and_the_cache_stays_exact(
        node_factory, redis_server, redis_prefix, moto_server, s3_bucket) -> None:
    auth = {"SERVER_AUTH_ENABLED": "true", "SERVER_API_KEYS": ",".join(KEYS), "QUERY_CACHE_ENABLED": "true"}
    a, b = (node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"s{i}", **auth),
                         name=f"s{i}") for i in range(2))
    with a.client(password=KEYS[0], username="u") as ca, b.client(password=KEYS[1], username="u") as cb:
        wait_for_live_nodes(ca, 2)
        assert ca.ingest("s", rows(0, 10)) == 10
        assert cb.ingest("s", rows(100, 5)) == 5  # buffered on b
        assert ca.query(SQL.format(t="s")).to_pylist() == expect([*range(10), *range(100, 105)])
        assert ca.last_stats()["nodes"] == "s0,s1"
        assert ca.query(SQL.format(t="s")).to_pylist() == expect([*range(10), *range(100, 105)])
        assert ca.last_stats()["cache-hit"] == "true"
        assert cb.ingest("s", rows(200, 1)) == 1  # b's buffer moved: the cached answer is no longer it
        assert ca.query(SQL.format(t="s")).to_pylist() == expect([*range(10), *range(100, 105), 200])
        assert ca.last_stats()["cache-hit"] == "false"
    fc = flight.FlightClient(b.flight)
    forged = b"miniodb-fragment:" + b"0" * 64 + b':{"q":"x","t":"s","sql":"SELECT * FROM s","exp":9e12}'
    with pytest.raises(flight.FlightUnauthenticatedError):  # no credential at all
        fc.do_get(flight.Ticket(forged)).read_all()
    key = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {KEYS[0]}".encode())])
    with pytest.raises(flight.FlightUnauthenticatedError):  # a user's key does not make a fragment valid
        fc.do_get(flight.Ticket(forged), options=key).read_all()
    fc.close()
    assert KEYS[0] not in a.log() and KEYS[0] not in b.log()


def test_explain_shows_the_distributed_plan(cluster) -> None:
    with cluster[0].client() as c:
        assert c.ingest("e", rows(0, 10)) == 10
        c.flush()
        plan = {r["explain_key"]: r["explain_value"] for r in c.query("EXPLAIN SELECT sum(v) FROM e").to_pylist()}
    assert plan["nodes"] == "n0, n1, n2"
    assert any(k.startswith("fragment __frag_0") for k in plan)
    assert sum(int(v.split(" ")[0]) for k, v in plan.items() if k.startswith("node ")) == 1  # one file, one node


@pytest.mark.slow
def test_a_killed_peer_is_dropped_and_reported(cluster) -> None:
    a, b, c = cluster
    ids: list[int] = []
    with a.client() as ca, b.client() as cb, c.client() as cc:
        for i, cl in enumerate((ca, cb, cc)):
            assert cl.ingest("k", rows(1000 * i, 200)) == 200
            assert cl.flush()["rows"] == 200  # committed: some files land on every node
            ids += range(1000 * i, 1000 * i + 200)
        assert cc.ingest("k", rows(9000, 7)) == 7  # buffered on c only: lost with it until it returns
        assert ca.query(SQL.format(t="k")).to_pylist() == expect(ids + list(range(9000, 9007)))
    c.kill()
    with a.client() as ca:
        # c is still registered until its TTL: it is tried, fails, and its files move
        result = ca.query(SQL.format(t="k"))
        assert result.to_pylist() == expect(ids)
        # c could not even pin: how many of its rows are missing is unknown (no count header)
        assert ca.last_stats()["missing-nodes"] == "n2" and "missing-rows" not in ca.last_stats()
        assert ca.last_stats()["nodes"] == "n0,n1"
        q = ca.query("SELECT missing_nodes, missing_rows FROM system.queries WHERE missing_nodes IS NOT NULL"
                     ).to_pylist()
        assert q and q[0]["missing_nodes"] == "n2"
        wait_for_live_nodes(ca, 2, what="c left the registry")
        assert ca.query(SQL.format(t="k")).to_pylist() == expect(ids)


@pytest.mark.slow
def test_a_peer_dying_mid_query_has_its_files_replanned(node_factory, redis_server, redis_prefix, moto_server,
                                                        s3_bucket) -> None:
    """c pins its buffered rows, then dies (SIGKILL) on its first fragment: the query completes
    over its files re-placed on a and b, and reports c's pinned rows as missing."""
    env = {i: cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"m{i}") for i in range(3)}
    env[2]["MINIODB_DEBUG_CRASH_AT"] = "cluster_fragment"
    a, b, c = (node_factory(env=env[i], name=f"m{i}") for i in range(3))
    ids: list[int] = []
    with a.client() as ca, b.client() as cb, c.client() as cc:
        wait_for_live_nodes(ca, 3)
        for i, cl in enumerate((ca, cb, cc)):
            for k in range(4):  # several files per node: rendezvous puts some of them on c
                start = 1000 * i + 100 * k
                assert cl.ingest("r", rows(start, 100)) == 100
                assert cl.flush()["rows"] == 100
                ids += range(start, start + 100)
        assert cc.ingest("r", rows(9000, 7)) == 7  # buffered on c
        plan = {r["explain_key"]: r["explain_value"] for r in ca.query(f"EXPLAIN {SQL.format(t='r')}").to_pylist()}
        on_c = int(plan["node m2 / r"].split(" ")[0])  # EXPLAIN pins but runs no fragment
        assert ca.query(SQL.format(t="r")).to_pylist() == expect(ids)  # c's 7 rows went down with it
        stats = ca.last_stats()
        assert stats["missing-nodes"] == "m2" and stats["missing-rows"] == "7" and stats["nodes"] == "m0,m1"
    c.proc.wait(timeout=30)
    assert c.proc.returncode != 0
    metrics = httpx.get(a.metrics + "/metrics").text
    replanned = [ln for ln in metrics.splitlines() if ln.startswith("miniodb_replanned_files_total ")]
    assert replanned and float(replanned[0].split()[1]) == on_c
    assert any(ln.startswith("miniodb_peer_failures_total ") and float(ln.split()[1]) >= 1
               for ln in metrics.splitlines())


def test_a_client_giving_up_stops_the_fan_out(node_factory, redis_server, redis_prefix, moto_server,
                                              s3_bucket) -> None:
    """b hangs (SIGSTOP) with a long peer timeout; the client's call times out: the coordinator
    notices, cancels the peers and fails the query as cancelled instead of waiting for b."""
    a, b = (node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"c{i}",
                                         COORDINATOR_PEER_TIMEOUT="120"), name=f"c{i}") for i in range(2))
    with a.client() as ca, b.client() as cb:
        wait_for_live_nodes(ca, 2)
        assert ca.ingest("w", rows(0, 10)) == 10
        assert cb.ingest("w", rows(10, 10)) == 10
        assert ca.query("SELECT count(*) AS n FROM w").to_pylist() == [{"n": 20}]
    b.proc.send_signal(signal.SIGSTOP)
    try:
        with a.client(timeout=2) as ca, pytest.raises(errors.MinioDBError):
            ca.query("SELECT count(*) AS gave_up FROM w")
        with a.client() as ca:
            sql = "SELECT status, error_code FROM system.queries WHERE sql LIKE '%gave_up%' AND kind = 'SELECT' " \
                  "AND sql NOT LIKE '%system.queries%'"
            wait_until(lambda: ca.query(sql).to_pylist() == [{"status": "cancelled", "error_code": "cancelled"}],
                       timeout=20, what="the coordinator gave up on b when the client did")
    finally:
        b.proc.send_signal(signal.SIGCONT)


def test_a_joining_node_takes_part_once_registered(node_factory, redis_server, redis_prefix, moto_server,
                                                  s3_bucket) -> None:
    a, b = (node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"j{i}"), name=f"j{i}")
            for i in range(2))
    with a.client() as ca:
        wait_for_live_nodes(ca, 2)
        assert ca.ingest("j", rows(0, 10)) == 10
        assert ca.query("SELECT count(*) AS n FROM j").to_pylist() == [{"n": 10}]
        assert ca.last_stats()["nodes"] == "j0,j1"
        c = node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, "j2"), name="j2")
        with c.client() as cc:  # registered before it reports ready; its buffered rows count at once
            assert cc.ingest("j", rows(10, 5)) == 5
        # the coordinator reads the registry at most every half second (one heartbeat TTL is 2 s here)
        wait_until(lambda: ca.query("SELECT count(*) AS n FROM j").to_pylist() == [{"n": 15}], timeout=2,
                   interval=0.1, what="the new node's rows")
        assert ca.last_stats()["nodes"] == "j0,j1,j2"
