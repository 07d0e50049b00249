"""Server mode with real processes: nodes on one Redis and one S3 bucket (moto_server).

Covers: two nodes sharing metadata and data, the node registry (heartbeat, TTL expiry) as
seen by ``status``, ``serve --config deploy/miniodb.yaml`` with environment overrides,
periodic metadata backups, and clear startup errors when a backend is unreachable.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.redis import server_mode_env
from tests.fixtures.services import free_port

pytestmark = [pytest.mark.redis, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]


def node_ids(client) -> set[str]:
    return {n.get("node_id") for n in client.status()["nodes"]}


def test_two_nodes_share_one_redis_and_one_bucket(node_factory, redis_server, redis_prefix, moto_server,
                                                  s3_bucket) -> None:
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix)
    a = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-a"}, name="a")
    b = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-b"}, name="b")
    with a.client() as ca, b.client() as cb:
        assert ca.ingest("trips", rows(0, 5000, v_scale=0.5)) == 5000
        flushed = ca.flush()
        assert flushed["rows"] == 5000 and flushed["files"] >= 1
        sql = "SELECT count(*) AS n, sum(id) AS s, min(ts) AS lo, max(v) AS hi FROM trips"
        expected = ca.query(sql).to_pylist()
        assert expected[0]["n"] == 5000
        assert cb.query(sql).to_pylist() == expected  # flushed through A, answered by B
        assert [t["name"] for t in cb.tables()] == ["trips"]
        # the other way round, and a filter that prunes files
        assert cb.ingest("trips", rows(5000, 1000, v_scale=0.5)) == 1000
        cb.flush()
        assert ca.query("SELECT count(*) AS n FROM trips WHERE id >= 5000").to_pylist() == [{"n": 1000}]
        # both nodes appear in each other's status, with their Flight address
        for c in (ca, cb):
            wait_until(lambda c=c: node_ids(c) == {"node-a", "node-b"}, what="both nodes live")
            nodes = {n["node_id"]: n for n in c.status()["nodes"]}
            assert nodes["node-a"]["flight_uri"] == a.flight and nodes["node-b"]["flight_uri"] == b.flight
            assert nodes["node-a"]["version"]
            started = dt.datetime.fromisoformat(nodes["node-a"]["started_at"])  # ISO-8601 UTC, not epoch
            assert started.utcoffset() == dt.timedelta(0) and started.year >= 2024
        status = ca.status()
        assert status["metadata"] == f"redis://127.0.0.1:{redis_server.port}/0"
        assert status["storage"].endswith(f"/{s3_bucket}")
        # a node that stops heartbeating leaves the live set (TTL 2 s: within 4 s of its last beat)
        b.kill()
        wait_until(lambda: node_ids(ca) == {"node-a"}, timeout=20, what="node-b expired")
        # an orderly stop unregisters at once
        a.terminate()


def test_serve_with_the_sample_config_and_env_overrides(node_factory, redis_server, redis_prefix, moto_server,
                                                        s3_bucket) -> None:
    """deploy/miniodb.yaml points at redis-master / minio:9000; MINIODB_* variables override it."""
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, BUFFER_SIZE="7",
                          SERVER_NODE_ID="sample-node", COORDINATOR_ENABLED="false")
    n = node_factory(env=env, args=["--config", str(REPO / "deploy" / "miniodb.yaml")], name="sample")
    with n.client() as c:
        st = c.status()
        assert st["metadata"] == f"redis://127.0.0.1:{redis_server.port}/0"
        assert st["storage"] == f"s3://{moto_server.endpoint}/{s3_bucket}"
        assert st["node"]["node_id"] == "sample-node"
        c.ingest("small", rows(0, 20, v_scale=0.5))
        assert c.describe("small")["config"]["buffer_size"] == 7  # the env value, not the file's
        # 20 rows > buffer size 7: the node flushes on its own
        wait_until(lambda: c.describe("small")["stats"]["rows"] == 20, what="automatic flush")


def test_periodic_metadata_backups(node_factory, redis_server, redis_prefix, moto_server, s3_bucket) -> None:
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, METADATA_BACKUP_ENABLED="true",
                          METADATA_BACKUP_INTERVAL="1", SERVER_NODE_ID="backup-node")
    n = node_factory(env=env, name="backups")
    with n.client() as c:
        c.ingest("t", rows(0, 10, v_scale=0.5))
        c.flush()
        backups = wait_until(lambda: c.action("list_backups")["backups"], timeout=20, what="a periodic backup")
        assert backups[0]["backup_file"].startswith("backup_") and backups[0]["backup_file"].endswith(".json")
        assert backups[0]["key"] == "_meta/backups/" + backups[0]["backup_file"]
        newest = wait_until(lambda: [b for b in c.action("list_backups")["backups"]
                                     if '"t"' in moto_server.client().get_object(s3_bucket, b["key"]).data.decode()],
                            timeout=20, what="a backup listing table t")
        assert newest
        assert c.action("list_backups", {"days": 1})["backups"]


def test_unreachable_redis_is_a_clear_startup_error(node_factory, moto_server, s3_bucket) -> None:
    port = free_port()
    env = server_mode_env(moto_server, s3_bucket) | {"MINIODB_REDIS_HOST": "127.0.0.1",
                                                     "MINIODB_REDIS_PORT": str(port)}
    n = node_factory(env=env, name="noredis", start=False)
    with pytest.raises(RuntimeError) as exc:
        n.start(timeout=60)
    log = str(exc.value)
    assert "cannot start" in log and "metadata store unavailable" in log and f"127.0.0.1:{port}" in log
    assert "Traceback" not in log


def test_unreachable_s3_is_a_clear_startup_error(node_factory, redis_server, redis_prefix) -> None:
    port = free_port()
    env = {"MINIODB_STORAGE_MINIO_ENDPOINT": f"127.0.0.1:{port}", "MINIODB_STORAGE_MINIO_ACCESS_KEY": "k",
           "MINIODB_STORAGE_MINIO_SECRET_KEY": "s", "MINIODB_STORAGE_RETRY_ATTEMPTS": "2",
           "MINIODB_STORAGE_RETRY_MAX_SECONDS": "0.2", "MINIODB_REDIS_HOST": "127.0.0.1",
           "MINIODB_REDIS_PORT": str(redis_server.port), "MINIODB_REDIS_PREFIX": redis_prefix}
    n = node_factory(env=env, name="nos3", start=False)
    with pytest.raises(RuntimeError) as exc:
        n.start(timeout=60)
    log = str(exc.value)
    assert "cannot start" in log and f"127.0.0.1:{port}" in log and "unavailable" in log
    assert "Traceback" not in log
