"""WAL mirror and adoption with real processes: one redis-server, one moto_server, two nodes.

A node with ``wal.mirror: object_store`` has every acknowledged segment in the bucket too.
When it dies (``kill -9``) and its data dir is gone, another node adopts its mirrored WAL
within the node TTL plus a few seconds, and every acknowledged row is queryable exactly once;
the node coming back (with an empty disk, or with its old disk) never applies them again.
"""

from __future__ import annotations

import shutil
import threading

import pytest

from flight_server.paths import parse_wal_mirror_key
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.redis import server_mode_env

pytestmark = [pytest.mark.redis, pytest.mark.s3]

SQL = "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s FROM {t}"


def expect(ids: list[int]) -> list[dict]:
    return [{"n": len(ids), "d": len(set(ids)), "s": sum(ids) if ids else None}]


def mirrored(moto, bucket: str, node_id: str) -> list[str]:
    return [o.object_name for o in moto.client().list_objects(bucket, prefix=f"_wal/{node_id}/", recursive=True)]


def mirrored_seqs(moto, bucket: str, node_id: str) -> list[int]:
    """WAL sequences the mirror objects cover (a round's segments may share one bundle)."""
    spans = [parse_wal_mirror_key(k) for k in mirrored(moto, bucket, node_id)]
    return sorted(seq for _, first, last in spans for seq in range(first, last + 1))


def mirror_env(moto, bucket, redis, prefix, node_id: str) -> dict:
    # buffers so large and flushes so rare that nothing is persisted unless asked; each node
    # answers from its own view (coordinator.mode local), so adoption is what makes rows appear
    return {**server_mode_env(moto, bucket, redis, prefix, BUFFER_SIZE="100000000",
                              BUFFER_FLUSH_INTERVAL="3600", WAL_MIRROR="object_store", COORDINATOR_MODE="local"),
            "MINIODB_SERVER_NODE_ID": node_id}


def ingest_concurrently(client_factory, table: str, starts: list[int], count: int) -> None:
    """One ingest per start, all at once (they share mirror rounds); each is acknowledged."""
    acked = []
    errors = []

    def one(start: int) -> None:
        try:
            with client_factory() as c:
                acked.append(c.ingest(table, rows(start, count)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in starts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and acked == [count] * len(starts)


@pytest.mark.slow
def test_a_dead_nodes_mirrored_wal_is_adopted_once(node_factory, redis_server, redis_prefix, moto_server,
                                                   s3_bucket) -> None:
    a = node_factory(env=mirror_env(moto_server, s3_bucket, redis_server, redis_prefix, "node-a"), name="a")
    b = node_factory(env=mirror_env(moto_server, s3_bucket, redis_server, redis_prefix, "node-b"), name="b")
    with a.client() as ca:
        assert ca.ingest("m", rows(0, 100)) == 100
        assert ca.flush()["rows"] == 100  # persisted: its segment must not be adopted again
        ingest_concurrently(a.client, "m", [1000 * k for k in range(1, 9)], 50)
        assert ca.ingest("n", rows(0, 30)) == 30
    m_ids = list(range(100)) + [i for k in range(1, 9) for i in range(1000 * k, 1000 * k + 50)]
    n_ids = list(range(30))
    assert mirrored_seqs(moto_server, s3_bucket, "node-a") == list(range(2, 11))  # 1 was flushed: deleted
    with b.client() as cb:
        assert cb.ingest("m", rows(50_000, 20)) == 20  # B's own buffered rows stay B's
        m_ids += list(range(50_000, 50_020))
        assert cb.query(SQL.format(t="n")).to_pylist() == expect([])  # A's rows live in A's buffer only

        # the disk is lost: kill -9 and delete the data dir
        a.kill()
        shutil.rmtree(a.data_dir)
        wait_until(lambda: cb.query(SQL.format(t="m")).to_pylist() == expect(m_ids), timeout=30,
                   what="node-b adopted node-a's rows of m")
        assert cb.query(SQL.format(t="n")).to_pylist() == expect(n_ids)
        wait_until(lambda: not mirrored(moto_server, s3_bucket, "node-a"), timeout=10, what="mirror deleted")

        # node-a comes back on an empty disk: its new segments are numbered above what was
        # adopted (else replay and adoption would skip them), so they survive the next loss
        a.start()
        with a.client() as ca:
            assert ca.query(SQL.format(t="m")).to_pylist() == expect(m_ids[:-20])  # B's buffer is B's
            assert ca.ingest("m", rows(70_000, 40)) == 40
        m_ids += list(range(70_000, 70_040))
        assert len(mirrored_seqs(moto_server, s3_bucket, "node-a")) == 1

        # killed again, disk intact this time: B adopts, then A restarts and replays nothing twice
        a.kill()
        wait_until(lambda: cb.query(SQL.format(t="m")).to_pylist() == expect(m_ids), timeout=30,
                   what="node-b adopted node-a's second life")
        a.start()
        with a.client() as ca:
            assert ca.status()["buffers"].get("m", {"rows": 0})["rows"] == 0
            assert ca.query(SQL.format(t="m")).to_pylist() == expect([i for i in m_ids if not 50_000 <= i < 50_020])
        assert cb.query(SQL.format(t="m")).to_pylist() == expect(m_ids)
        assert cb.query(SQL.format(t="n")).to_pylist() == expect(n_ids)


def test_a_node_back_on_a_new_disk_restores_its_mirrored_wal(node_factory, redis_server, redis_prefix,
                                                              moto_server, s3_bucket) -> None:
    """Back before anyone adopted it: the node itself restores the segments from the mirror."""
    a = node_factory(env=mirror_env(moto_server, s3_bucket, redis_server, redis_prefix, "solo"), name="solo")
    with a.client() as ca:
        assert ca.ingest("r", rows(0, 200)) == 200
        assert ca.ingest("r", rows(200, 100)) == 100
    a.kill()
    shutil.rmtree(a.data_dir)
    a.start()
    with a.client() as ca:
        assert ca.status()["buffers"]["r"]["rows"] == 300
        assert ca.query(SQL.format(t="r")).to_pylist() == expect(list(range(300)))
        assert ca.flush()["rows"] == 300
        assert ca.query(SQL.format(t="r")).to_pylist() == expect(list(range(300)))
    assert mirrored(moto_server, s3_bucket, "solo") == []  # persisted: mirror objects deleted
