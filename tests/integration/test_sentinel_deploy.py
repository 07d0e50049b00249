"""Redis Sentinel from the shipped deploy/redis/ files (tests/fixtures/redis.py ``sentinel_cluster``):
a node in Sentinel mode keeps ingesting through a ``SENTINEL FAILOVER mymaster``, loses no
acknowledged row, and follows the new master (its flushes commit there)."""

from __future__ import annotations

import re
import threading

import pytest
import redis

from clients import errors
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.redis import DEPLOY_REDIS

pytestmark = [pytest.mark.redis]


def test_shipped_files_carry_the_guide_values():
    sentinel = (DEPLOY_REDIS / "sentinel.conf").read_text()
    for line in ("sentinel monitor mymaster redis-master 6379 2", "sentinel down-after-milliseconds mymaster 30000",
                 "sentinel failover-timeout mymaster 180000", "sentinel parallel-syncs mymaster 1", "port 26379"):
        assert re.search(rf"^{re.escape(line)}$", sentinel, re.M), line
    assert re.search(r"^appendonly yes$", (DEPLOY_REDIS / "redis.conf").read_text(), re.M)


@pytest.mark.slow
def test_node_follows_a_sentinel_failover_without_losing_acknowledged_rows(node_factory, sentinel_cluster,
                                                                           tmp_path):
    sc = sentinel_cluster
    master = sc.master.client()
    assert master.config_get("appendonly")["appendonly"] == "yes"  # the shipped redis.conf
    master.close()
    n = node_factory(env={"MINIODB_REDIS_SENTINEL_ENABLED": "true", "MINIODB_REDIS_SENTINEL_MASTER_NAME": "mymaster",
                          "MINIODB_REDIS_SENTINEL_ADDRS": ",".join(sc.addrs), "MINIODB_REDIS_SOCKET_TIMEOUT": "2",
                          "MINIODB_REDIS_PREFIX": "sentinel-deploy", "MINIODB_BUFFER_FLUSH_INTERVAL": "0.3",
                          "MINIODB_SERVER_NODE_ID": "sd-node", "MINIODB_STORAGE_PATH": str(tmp_path / "objects")})
    c = n.client()
    assert c.ingest("ev", rows(0, 100)) == 100
    acked: list[int] = list(range(100))
    stop = threading.Event()

    def writer():
        start = 1_000_000
        with n.client() as w:
            while not stop.is_set():
                try:
                    assert w.ingest("ev", rows(start, 20)) == 20
                    acked.extend(range(start, start + 20))
                except errors.MinioDBError:
                    pass  # not acknowledged: not expected afterwards
                start += 20

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    wait_until(lambda: len(acked) >= 500, what="ingest running")
    old = sc.master_port()
    s = redis.Redis("127.0.0.1", sc.sentinel_ports[0], decode_responses=True, socket_timeout=5)
    assert s.execute_command("SENTINEL FAILOVER", "mymaster")
    s.close()
    new = sc.wait_failover(old)
    assert new == sc.replica.port
    mark = len(acked)
    wait_until(lambda: len(acked) >= mark + 300, what="ingest after the failover")
    stop.set()
    t.join(30)
    wait_until(lambda: (st := c.status()) and not st["buffers"].get("ev", {}).get("rows") and not st["flush_errors"],
               what="everything flushed to the new master")
    promoted = sc.replica.client()
    assert promoted.info("replication")["role"] == "master"
    assert any(k.startswith("sentinel-deploy:") for k in promoted.scan_iter(count=1000))
    promoted.close()
    got = c.query("SELECT id FROM ev ORDER BY id").column("id").to_pylist()
    assert got == sorted(acked)  # every acknowledged row, exactly once
    assert c.health()["checks"]["metadata"] == "ok"
    c.close()
