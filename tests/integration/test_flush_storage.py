"""A bucket that disappears while the node runs (issue 12, section 1), with real processes:
redis-server, moto_server and a node. The bug was: a flush read the store's NoSuchBucket as
"table dropped", printed "flushed 0 rows" and recycled the WAL, losing acknowledged rows.

The policy: the node refuses to flush into a missing bucket (it creates its bucket only at
start). Flushes fail with a clear error, health and status say why, the rows stay in the
buffer and the WAL (across kill -9 too), and the next flush after the bucket is back works.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clients import errors
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.redis import server_mode_env

pytestmark = [pytest.mark.redis, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]


def take_bucket_away(s3, bucket: str) -> dict[str, bytes]:
    """Empty and delete the bucket through the S3 API; returns its objects (to restore later)."""
    saved = {o.object_name: s3.get_object(bucket, o.object_name).data
             for o in s3.list_objects(bucket, recursive=True)}
    for key in saved:
        s3.remove_object(bucket, key)
    s3.remove_bucket(bucket)
    assert not s3.bucket_exists(bucket)
    return saved


def bring_bucket_back(s3, bucket: str, saved: dict[str, bytes]) -> None:
    import io

    s3.make_bucket(bucket)
    for key, data in saved.items():
        s3.put_object(bucket, key, io.BytesIO(data), len(data))


def flushed_everything(client) -> bool:
    client.flush()
    return all(b["rows"] == 0 for b in client.status()["buffers"].values())


def counts(client, table: str) -> tuple[int, int]:
    r = client.query(f"SELECT count(*) AS n, count(DISTINCT id) AS d FROM {table}").to_pylist()[0]
    return r["n"], r["d"]


def test_a_missing_bucket_refuses_flushes_and_loses_no_row(node_factory, redis_server, redis_prefix,
                                                          moto_server, s3_bucket) -> None:
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, SERVER_NODE_ID="bucket-node",
                          BUFFER_FLUSH_INTERVAL="0.3", STORAGE_RETRY_ATTEMPTS="2",
                          STORAGE_RETRY_MAX_SECONDS="0.2")
    n = node_factory(env=env, name="bucket")
    s3 = moto_server.client()
    c = n.client()
    c.ingest("o", rows(0, 100))
    assert c.flush()["rows"] == 100
    saved = take_bucket_away(s3, s3_bucket)

    # acknowledged while the bucket is missing (ingest needs only the WAL)
    assert c.ingest("o", rows(100, 100)) == 100
    with pytest.raises(errors.Unavailable) as err:
        c.flush()
    assert f"bucket '{s3_bucket}' does not exist at {moto_server.endpoint}" in err.value.message
    cli = subprocess.run([sys.executable, "-m", "clients.cli", "--uri", n.flight, "flush"], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert cli.returncode != 0 and "flushed 0 rows" not in cli.stdout and "does not exist" in cli.stderr
    health = c.health()
    assert health["status"] == "degraded" and "does not exist" in health["checks"]["storage"]
    rest = httpx.get(f"{n.rest}/api/v1/health", timeout=30)
    assert rest.status_code == 503 and "does not exist" in rest.json()["checks"]["storage"]
    wait_until(lambda: "does not exist" in c.status()["flush_errors"].get("o", ""), what="flush error in status")
    st = c.status()
    assert st["buffers"]["o"]["rows"] == 100 and st["wal_bytes"] > 0
    assert st["checks"]["storage"].startswith("down: ") and "does not exist" in st["checks"]["storage"]
    assert c.query("SELECT count(*) AS n FROM o WHERE id >= 100").to_pylist() == [{"n": 100}]

    # kill -9 while the bucket is missing; the operator restores it; nothing was lost
    n.kill()
    bring_bucket_back(s3, s3_bucket, saved)
    n.start()
    c = n.client()
    assert counts(c, "o") == (200, 200)
    wait_until(lambda: flushed_everything(c), what="the replayed rows flushed")
    assert counts(c, "o") == (200, 200) and c.status()["wal_bytes"] == 0

    # the same without a restart: once the bucket is back, the next flush succeeds
    saved = take_bucket_away(s3, s3_bucket)
    assert c.ingest("o", rows(200, 50)) == 50
    with pytest.raises(errors.Unavailable):
        c.flush()
    bring_bucket_back(s3, s3_bucket, saved)
    wait_until(lambda: c.health()["status"] == "ok", what="storage healthy again")
    wait_until(lambda: flushed_everything(c), what="flushed")
    wait_until(lambda: not c.status()["flush_errors"], what="flush errors cleared")
    assert counts(c, "o") == (250, 250)
    n.kill()
    n.start()
    assert counts(n.client(), "o") == (250, 250)


def test_a_metadata_store_that_comes_back_empty_loses_no_row(node_factory, redis_server, redis_prefix,
                                                            moto_server, s3_bucket) -> None:
    """The metadata side of the same bug: Redis restarted without its data (or the node pointed
    at an empty one) no longer knows the table. That is not a drop (no tombstone), so the flush
    refuses, the WAL keeps the rows across kill -9, and a metadata restore brings them all back."""
    from clients import protocol

    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, SERVER_NODE_ID="meta-node",
                          BUFFER_FLUSH_INTERVAL="3600")
    n = node_factory(env=env, name="meta")
    c = n.client()
    c.ingest("m", rows(0, 100))
    assert c.flush()["rows"] == 100
    c.action(protocol.ACTION_BACKUP_METADATA)
    assert c.ingest("m", rows(100, 50)) == 50  # acknowledged, buffered

    r = redis_server.client()
    wiped = [k for k in r.scan_iter(f"{redis_prefix}:*")]
    assert wiped
    r.delete(*wiped)  # the metadata store comes back empty
    with pytest.raises(errors.Unavailable) as err:
        c.flush()
    assert "does not know it" in err.value.message
    assert c.status()["buffers"]["m"]["rows"] == 50

    n.kill()
    n.start()  # replay keeps the segments of the unknown table instead of discarding them
    c = n.client()
    assert sum(c.status()["wal_unreplayed_segments"].values()) >= 1
    restored = c.action(protocol.ACTION_RESTORE_METADATA, {"from_latest": True})
    assert restored
    n.terminate()
    n.start()
    c = n.client()
    assert counts(c, "m") == (150, 150)
    assert c.status()["wal_unreplayed_segments"] == {}
    wait_until(lambda: flushed_everything(c), what="the recovered rows flushed")
    assert counts(c, "m") == (150, 150)
