"""Faults with real processes on loopback: Redis Sentinel failover, Redis down, S3 down, and a
metadata backup/restore round trip. The promise under test: every acknowledged row is there
afterwards, exactly once.

The 20-second outages are what the product promises to ride out; those tests are ``slow``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clients import errors
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.redis import server_mode_env

pytestmark = [pytest.mark.redis, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 20.0


class Writer:
    """Ingests small batches of fresh ids in a loop; remembers exactly what was acknowledged."""

    def __init__(self, client, table: str, batch: int = 50, start: int = 1_000_000):
        self.client, self.table, self.batch = client, table, batch
        self.next = start
        self.acked: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            start, self.next = self.next, self.next + self.batch
            try:
                n = self.client.ingest(self.table, rows(start, self.batch))
                assert n == self.batch
                self.acked.extend(range(start, start + self.batch))
            except errors.MinioDBError as exc:
                self.failures.append(f"{exc.code}: {exc.message}")
            time.sleep(0.02)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def acked_count(self) -> int:
        return len(self.acked)

    def wait_acks(self, more: int, timeout: float = 60.0) -> None:
        target = len(self.acked) + more
        wait_until(lambda: len(self.acked) >= target, timeout=timeout, what=f"{more} more acknowledged rows")


def ids_in(client, table: str) -> list[int]:
    return client.query(f"SELECT id FROM {table} ORDER BY id").column("id").to_pylist()


def flushed_everything(client) -> bool:
    """One explicit flush succeeded and nothing is left in this node's buffers."""
    client.flush()
    return all(b["rows"] == 0 for b in client.status()["buffers"].values())


def assert_exactly(client, table: str, expected: list[int]) -> None:
    got = ids_in(client, table)
    assert len(got) == len(set(got)), "a row was applied twice"
    missing = sorted(set(expected) - set(got))
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {missing[:5]}"
    assert got == sorted(expected)


# -- 1. Sentinel failover ----------------------------------------------------------------------
@pytest.mark.slow
def test_sentinel_failover_keeps_every_acknowledged_row(node_factory, sentinel_cluster, moto_server,
                                                        s3_bucket) -> None:
    env = server_mode_env(moto_server, s3_bucket, sentinel=sentinel_cluster, prefix="failover",
                          SERVER_NODE_ID="fo-node", BUFFER_FLUSH_INTERVAL="0.3")
    n = node_factory(env=env, name="failover")
    c = n.client()
    c.ingest("events", rows(0, 100))  # the node knows the table before the fault
    c.flush()
    expected = list(range(100))
    old_master = sentinel_cluster.master.port
    with Writer(c, "events") as w:
        w.wait_acks(500)
        sentinel_cluster.master.kill()  # kill -9 while the client ingests
        new_master = sentinel_cluster.wait_failover(old_master)
        assert new_master == sentinel_cluster.replica.port
        w.wait_acks(1000)  # ingest resumes (and never stopped: the WAL acknowledges it)
        # the node reconnects to the promoted replica: flushes land there again
        wait_until(lambda: flushed_everything(c), what="a flush on the promoted master")
        w.wait_acks(300)
    assert not w.failures, w.failures[:3]
    expected += w.acked
    wait_until(lambda: flushed_everything(c), what="final flush")
    assert_exactly(c, "events", expected)
    promoted = sentinel_cluster.replica.client()
    assert promoted.info("replication")["role"] == "master"
    assert promoted.hlen("failover:files:events") >= 2
    promoted.close()
    assert c.health()["checks"]["metadata"] == "ok"
    # a restarted node (WAL replay + watermarks) sees the same rows, still exactly once
    c.close()
    n.kill()
    n.start()
    with n.client() as c2:
        assert_exactly(c2, "events", expected)


# -- 2. Redis down for 20 s --------------------------------------------------------------------
@pytest.mark.slow
def test_redis_outage_keeps_ingest_acknowledged_and_loses_nothing(node_factory, redis_factory, moto_server,
                                                                  s3_bucket) -> None:
    r = redis_factory("outage")
    env = server_mode_env(moto_server, s3_bucket, r, prefix="outage", SERVER_NODE_ID="outage-node",
                          BUFFER_FLUSH_INTERVAL="0.3")
    n = node_factory(env=env, name="outage")
    c = n.client()
    c.ingest("events", rows(0, 100))
    c.flush()
    expected = list(range(100))
    with Writer(c, "events") as w:
        w.wait_acks(200)
        r.stop()
        outage_started = time.monotonic()
        # ingest keeps being acknowledged (WAL + buffer); the rows are visible on this node
        w.wait_acks(300)
        seen = c.query("SELECT count(*) AS n FROM events").to_pylist()[0]["n"]
        assert seen >= 100 + 200
        # a query that needs metadata the node does not hold: UNAVAILABLE with a clear message
        with pytest.raises(errors.Unavailable) as exc:
            c.query("SELECT * FROM never_seen")
        assert "never_seen" in exc.value.message and "metadata store unavailable" in exc.value.message
        with pytest.raises(errors.Unavailable):
            c.tables()
        # flushes fail and are retried with backoff; the node reports why
        with pytest.raises(errors.Unavailable):
            c.flush("events")
        wait_until(lambda: "events" in c.status()["flush_errors"], what="a failed background flush")
        assert c.health()["status"] == "degraded"
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        r.start()
        # everything converges: the background flusher catches up on its own
        wait_until(lambda: not c.status()["flush_errors"] and c.health()["status"] == "ok",
                   what="background flushes succeed again")
        w.wait_acks(200)
    assert not w.failures, w.failures[:3]
    expected += w.acked
    wait_until(lambda: flushed_everything(c), what="final flush")
    assert_exactly(c, "events", expected)
    assert [t["name"] for t in c.tables()] == ["events"]
    c.close()
    n.kill()  # what was flushed is in Redis + S3, what was not is in the WAL
    n.start()
    with n.client() as c2:
        assert_exactly(c2, "events", expected)


# -- 3. S3 down for 20 s -----------------------------------------------------------------------
@pytest.mark.slow
def test_s3_outage_keeps_the_wal_and_loses_nothing(node_factory, redis_server, redis_prefix, moto_server,
                                                   s3_bucket) -> None:
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, SERVER_NODE_ID="s3-node",
                          BUFFER_FLUSH_INTERVAL="0.3", STORAGE_RETRY_ATTEMPTS="3",
                          STORAGE_RETRY_MAX_SECONDS="0.5")
    n = node_factory(env=env, name="s3outage")
    c = n.client()
    c.ingest("events", rows(0, 100))
    c.flush()
    expected = list(range(100))
    try:
        with Writer(c, "events") as w:
            w.wait_acks(200)
            moto_server.stop()  # keeps its objects and restores them at start
            outage_started = time.monotonic()
            w.wait_acks(300)
            wait_until(lambda: "events" in c.status()["flush_errors"], what="a failed background flush")
            st = c.status()
            assert st["wal_bytes"] > 0 and st["buffers"]["events"]["rows"] > 0  # the WAL is kept
            # flushed files are in the local cache: queries still answer, buffer included
            assert c.query("SELECT count(*) AS n FROM events").to_pylist()[0]["n"] >= 300
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
            moto_server.start()
            wait_until(lambda: not c.status()["flush_errors"], what="background flushes succeed again")
            w.wait_acks(200)
    finally:
        moto_server.start()
    assert not w.failures, w.failures[:3]
    expected += w.acked
    wait_until(lambda: flushed_everything(c), what="final flush")
    assert_exactly(c, "events", expected)
    # the data is in the bucket: read every committed object straight from S3
    s3 = moto_server.client()
    keys = [o.object_name for o in s3.list_objects(s3_bucket, prefix="events/", recursive=True)]
    assert keys
    in_bucket = pa.concat_tables([pq.read_table(io.BytesIO(s3.get_object(s3_bucket, k).data)) for k in keys])
    ids = in_bucket.column("id").to_pylist()
    assert set(expected) <= set(ids)
    assert c.status()["wal_bytes"] == 0  # everything persisted: the WAL was truncated


# -- 5. metadata backup / restore round trip ---------------------------------------------------
QUERIES = [
    "SELECT count(*) AS n, sum(id) AS s FROM trips",
    "SELECT count(*) AS n, min(ts) AS lo, max(ts) AS hi FROM trips WHERE ts >= '2023-11-14 23:00:00'",
    "SELECT id % 7 AS k, count(*) AS n, avg(v) AS a FROM trips GROUP BY 1 ORDER BY 1",
    "SELECT count(*) AS n, max(v) AS hi FROM zones",
    "SELECT t.id, z.v FROM trips t JOIN zones z ON t.id = z.id ORDER BY t.id LIMIT 5",
]


def answers(client) -> list:
    return [client.query(q).to_pylist() for q in QUERIES]


def cli(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clients.cli", "--uri", uri, *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_metadata_round_trip_backup_drop_corrupt_restore(node_factory, redis_server, redis_prefix, moto_server,
                                                         s3_bucket) -> None:
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, SERVER_NODE_ID="rt-node")
    n = node_factory(env=env, name="roundtrip")
    c = n.client()
    for i in range(3):  # several files per table
        c.ingest("trips", rows(i * 1000, 1000))
        c.flush()
    c.ingest("zones", rows(0, 50))
    c.flush()
    before = answers(c)
    tables_before = [t["name"] for t in c.tables()]

    done = cli(n.flight, "backup")
    assert done.returncode == 0, done.stderr
    assert "backup_" in done.stdout and "2 tables, 4 files" in done.stdout
    listed = cli(n.flight, "backups", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 1

    c.drop_table("trips")
    dry = cli(n.flight, "restore", "--from-latest", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["applied"] is False
    assert report["tables"]["added"] == ["trips"] and report["tables"]["unchanged"] == 1
    assert report["files"]["added"] == 3 and report["files"]["removed"] == 0
    assert report["files"]["missing_count"] == 0  # dropped objects were kept: a backup lists them

    rc = redis_server.client()
    rc.hset(f"{redis_prefix}:tables", "zones", "{corrupt")  # corrupt a key
    rc.close()
    with pytest.raises(errors.NotFound):
        c.query(QUERIES[0])
    with pytest.raises(errors.Internal, match="corrupt"):
        c.tables()
    report = json.loads(cli(n.flight, "restore", "--from-latest", "--dry-run").stdout)
    assert "corrupt" in report["current_metadata_error"]  # the report says why it cannot compare
    with pytest.raises(errors.NotFound):  # a dry run changes nothing
        c.query(QUERIES[0])

    bad = cli(n.flight, "restore", "--file", "../../etc/passwd")
    assert bad.returncode == 2 and "invalid backup file name" in bad.stderr
    missing = cli(n.flight, "restore", "--file", "backup_19990101_000000.json")
    assert missing.returncode == 2 and "not found" in missing.stderr

    done = cli(n.flight, "restore", "--from-latest")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["applied"] is True
    assert [t["name"] for t in c.tables()] == tables_before  # the tables are listed again
    assert answers(c) == before  # and answer exactly as at backup time
    # ingest and flush keep working on the restored tables
    c.ingest("trips", rows(10_000, 10))
    c.flush()
    assert c.query("SELECT count(*) AS n FROM trips").to_pylist() == [{"n": 3010}]
    # a node that never saw the old metadata agrees
    other = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "rt-other"}, name="other")
    with other.client() as c2:
        assert c2.query(QUERIES[3]).to_pylist() == before[3]
    c.close()
