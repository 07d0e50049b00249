"""Compaction in server mode (two nodes, one Redis, one S3 bucket on moto_server): one
compactor per table across the cluster (the Redis lease), and distributed queries that stay
exact after the swap while a node holds buffered rows (merged files carry ``wal_seq = 0``).
Nodes run with ``compaction.min_file_age_seconds=0`` and the background compactor off."""

from __future__ import annotations

import pytest

from flight_server.metadata.base import MetadataStore
from tests.contract.test_metadata_store import redis_store
from tests.fixtures.helpers import rows, wait_for_live_nodes
from tests.fixtures.redis import server_mode_env

pytestmark = [pytest.mark.redis, pytest.mark.s3]

FAST = {"MINIODB_COMPACTION_MIN_FILE_AGE_SECONDS": "0", "MINIODB_COMPACTION_ENABLED": "false",
        "MINIODB_COMPACTION_MIN_FILES": "2", "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"}
SQL = "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s FROM trips"


def test_one_compactor_per_table_across_the_cluster(node_factory, redis_server, redis_prefix, moto_server,
                                                    s3_bucket) -> None:
    env = {**server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix), **FAST}
    a = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-a"}, name="a")
    b = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-b"}, name="b")
    meta: MetadataStore = redis_store(redis_server, redis_prefix)
    with a.client() as ca, b.client() as cb:
        wait_for_live_nodes(ca, 2)
        total = 0
        for i in range(12):  # small files from both nodes
            c = ca if i % 2 else cb
            c.ingest("trips", rows(total, 10))
            c.flush("trips")
            total += 10
        assert len(meta.list_files("trips")) == 12
        # another node holds the table's lease: both nodes leave the table alone
        assert meta.acquire_lease("compaction:trips", "node-x:someone", 30)
        for c in (ca, cb):
            [r] = c.compact("trips")["results"]
            assert r["outcome"] == "busy" and "node-x" in r["error"]
        assert len(meta.list_files("trips")) == 12
        meta.release_lease("compaction:trips", "node-x:someone")
        # node B holds rows in its buffer while node A compacts the files B flushed
        cb.ingest("trips", rows(total, 7))
        total += 7
        [r] = ca.compact("trips")["results"]
        assert (r["outcome"], r["files_before"], r["files_after"]) == ("compacted", 12, 1)
        assert meta.lease_holder("compaction:trips") is None  # released after the pass
        [merged] = meta.list_files("trips")
        assert merged.wal_seq == 0 and merged.node_id == "node-a" and merged.rows == total - 7
        expected = {"n": total, "d": total, "s": sum(range(total))}
        for c in (ca, cb):  # exact through either coordinator: B's buffer counted once
            assert c.query(SQL).to_pylist() == [expected]
        cb.flush("trips")
        for c in (ca, cb):
            assert c.query(SQL).to_pylist() == [expected]
        assert cb.query("SELECT count(*) AS n FROM system.files WHERE table_name = 'trips'").to_pylist() == [{"n": 2}]
    meta.close()
