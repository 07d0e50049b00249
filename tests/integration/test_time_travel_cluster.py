"""Time travel and restore-table in server mode (Redis metadata, S3 storage, two nodes): a
time-travel query is planned on the coordinator alone (committed files, no buffers of any
node), and restore-table flushes every live node's buffer before its commit."""

from __future__ import annotations

import pytest

from clients.errors import NotFound
from tests.fixtures.helpers import rows, wait_for_live_nodes
from tests.fixtures.node import start_all
from tests.integration.test_cluster_queries import cluster_env

pytestmark = [pytest.mark.redis, pytest.mark.s3]


@pytest.fixture
def pair(node_factory, redis_server, redis_prefix, moto_server, s3_bucket):
    extra = {"SNAPSHOT_VACUUM_INTERVAL": "0", "SNAPSHOT_GRACE_SECONDS": "0", "SNAPSHOT_RETENTION_VERSIONS": "1"}
    nodes = start_all([node_factory(env=cluster_env(moto_server, s3_bucket, redis_server, redis_prefix, f"n{i}", **extra),
                                    name=f"n{i}", start=False) for i in range(2)])
    with nodes[0].client() as c:
        wait_for_live_nodes(c, 2)
    return nodes


def count(client, sql: str) -> int:
    return client.query(sql)["n"][0].as_py()


def test_time_travel_and_restore_in_a_cluster(pair) -> None:
    a, b = pair
    with a.client() as ca, b.client() as cb:
        ca.ingest("t", rows(0, 10))
        ca.flush("t")
        v1 = ca.query("SELECT max(version) AS v FROM system.snapshots WHERE table_name = 't'")["v"][0].as_py()
        cb.ingest("t", rows(100, 5))
        cb.flush("t")  # committed by b
        cb.ingest("t", rows(200, 7))  # buffered on b only
        assert count(ca, "SELECT count(*) AS n FROM t") == 22  # distributed: b's buffer included
        assert count(ca, f"SELECT count(*) AS n FROM t AT (VERSION => {v1})") == 10
        assert "nodes" not in ca.last_stats()  # planned on the coordinator alone
        assert count(ca, "SELECT count(*) AS n FROM t") == 22 and ca.last_stats()["nodes"] == "n0,n1"
        v_now = cb.query("SELECT max(version) AS v FROM system.snapshots")["v"][0].as_py()
        assert count(cb, f"SELECT count(*) AS n FROM t AT (VERSION => {v_now})") == 15  # committed only
        # restore from a: b's buffered rows are flushed first (then undone with everything after v1)
        r = ca.action("restore_table", {"table": "t", "version": v1})
        assert r["rows"] == 10 and r["removed"] == 2
        for cl in (ca, cb):
            assert count(cl, "SELECT count(*) AS n FROM t") == 10
        ops = [s["operation"] for s in ca.query("SELECT operation FROM system.snapshots WHERE table_name = 't' "
                                                "ORDER BY version").to_pylist()]
        assert ops == ["flush", "flush", "flush", "restore"]
        # keep 1 version: the two files the restore removed go (from S3, through the other node)
        assert cb.action("vacuum", {})["deleted"] == 2
        with pytest.raises(NotFound, match="not retained"):
            ca.query(f"SELECT count(*) AS n FROM t AT (VERSION => {v1})")
        assert count(ca, "SELECT count(*) AS n FROM t") == 10
        assert ca.action("vacuum", {})["deleted"] == 0
