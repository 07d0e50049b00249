"""Redis Sentinel from the shipped deploy/redis/ files (tests/fixtures/redis.py ``sentinel_cluster``):
a node in Sentinel mode keeps ingesting while the master is killed (SIGKILL), loses no
acknowledged row nor duplicates one, and follows the promoted replica (its commits land there)."""

from __future__ import annotations

import re
import threading

import pytest

from clients import errors
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.redis import DEPLOY_REDIS

pytestmark = [pytest.mark.redis]

PREFIX = "sentinel-deploy"


def test_shipped_files_carry_the_guide_values():
    sentinel = (DEPLOY_REDIS / "sentinel.conf").read_text()
    for line in ("sentinel monitor mymaster redis-master 6379 2", "sentinel down-after-milliseconds mymaster 30000",
                 "sentinel failover-timeout mymaster 180000", "sentinel parallel-syncs mymaster 1", "port 26379"):
        assert re.search(rf"^{re.escape(line)}$", sentinel, re.M), line
    assert re.search(r"^appendonly yes$", (DEPLOY_REDIS / "redis.conf").read_text(), re.M)


class Writer(threading.Thread):
    """Ingests batches of 20 rows with increasing ids; records acknowledged and failed ids."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.acked: list[int] = []
        self.failed: list[int] = []  # not acknowledged: may or may not be stored
        self.stop = threading.Event()

    def run(self):
        start = 1_000_000
        with self.node.client() as w:
            while not self.stop.is_set():
                ids = range(start, start + 20)
                try:
                    assert w.ingest("ev", rows(start, 20)) == 20
                    self.acked.extend(ids)
                except errors.MinioDBError:
                    self.failed.extend(ids)
                start += 20


def data_version(server) -> int:
    c = server.client()
    try:
        return int(c.hget(f"{PREFIX}:counters", "__data_version") or 0)
    finally:
        c.close()


@pytest.mark.slow
def test_node_survives_a_killed_master_without_losing_or_duplicating_acknowledged_rows(node_factory,
                                                                                       sentinel_cluster, tmp_path):
    sc = sentinel_cluster
    master = sc.master.client()
    assert master.config_get("appendonly")["appendonly"] == "yes"  # the shipped redis.conf
    master.close()
    n = node_factory(env={"MINIODB_REDIS_SENTINEL_ENABLED": "true", "MINIODB_REDIS_SENTINEL_MASTER_NAME": "mymaster",
                          "MINIODB_REDIS_SENTINEL_ADDRS": ",".join(sc.addrs), "MINIODB_REDIS_SOCKET_TIMEOUT": "2",
                          "MINIODB_REDIS_PREFIX": PREFIX, "MINIODB_BUFFER_FLUSH_INTERVAL": "0.3",
                          "MINIODB_SERVER_NODE_ID": "sd-node", "MINIODB_STORAGE_PATH": str(tmp_path / "objects")})
    c = n.client()
    assert c.ingest("ev", rows(0, 100)) == 100
    w = Writer(n)
    w.acked.extend(range(100))
    w.start()
    wait_until(lambda: len(w.acked) >= 500 and data_version(sc.master) > 1, what="ingest and flushes running")

    old = sc.master_port()
    assert old == sc.master.port
    sc.master.kill()  # SIGKILL: no shutdown, no last replication
    assert sc.wait_failover(old) == sc.replica.port
    promoted = sc.replica.client()
    assert promoted.info("replication")["role"] == "master"
    promoted.close()
    version_at_failover = data_version(sc.replica)
    mark = len(w.acked)
    wait_until(lambda: len(w.acked) >= mark + 300, timeout=60, what="ingest after the failover")
    w.stop.set()
    w.join(30)
    assert not w.is_alive()

    wait_until(lambda: (st := c.status()) and not st["buffers"].get("ev", {}).get("rows") and not st["flush_errors"],
               timeout=60, what="everything flushed to the new master")
    assert data_version(sc.replica) > version_at_failover  # the node commits to the promoted replica

    total, distinct = c.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM ev").to_pylist()[0].values()
    assert total == distinct  # no row twice
    got = set(c.query("SELECT id FROM ev").column("id").to_pylist())
    assert set(w.acked) <= got  # every acknowledged row
    assert got <= set(w.acked) | set(w.failed)  # and nothing that was never sent
    assert c.health()["checks"]["metadata"] == "ok"
    c.close()
