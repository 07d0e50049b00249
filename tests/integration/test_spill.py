"""Spilling with a real node (issue 15, wide ingest): a small ``buffer.max_bytes`` and several
times that much ingested while flushes cannot finish, so most buffered rows are read from
their memory-mapped WAL segments. Queries (pyarrow.flight and ADBC) stay exact, and kill -9 at
any point (idle, mid-flush of a spilled chunk, between a chunk's commit and its WAL removal)
loses and duplicates nothing."""

from __future__ import annotations

import re
import signal

import httpx
import pyarrow as pa

from tests.fixtures.helpers import rows

SPILL = {"MINIODB_BUFFER_MAX_BYTES": "256KiB", "MINIODB_WAL_CHUNK_BYTES": "64KiB",
         "MINIODB_BUFFER_FLUSH_INTERVAL": "3600", "MINIODB_BUFFER_SIZE": "100000000",
         "MINIODB_WAL_RECYCLE_BYTES": "16MiB"}
PER_INGEST = 40_000  # 960 kB: about twice the bound in memory (2 x 256 KiB)
INGESTS = 3
TOTAL = PER_INGEST * INGESTS
BATCH = 5_000  # 120 kB batches: one WAL segment each (over wal.chunk_bytes)


def chunked(start: int, count: int) -> pa.Table:
    return pa.concat_tables([rows(s, BATCH) for s in range(start, start + count, BATCH)])


def checks(client) -> dict:
    return client.query("SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s, sum(v) AS v FROM t").to_pylist()[0]


def expected(n: int) -> dict:
    return {"n": n, "d": n, "s": n * (n - 1) // 2, "v": float(n * (n - 1) // 2)}


def spilled_bytes(node) -> float:
    text = httpx.get(node.metrics + "/metrics", timeout=10).text
    return float(re.search(r"^miniodb_buffer_spilled_bytes (\S+)$", text, re.M).group(1))


def test_spilled_rows_are_exact_in_queries_and_survive_kill_9_at_every_flush_step(node_factory) -> None:
    # flushes fail (fail:object_put): everything stays buffered, most of it spilled
    n = node_factory(env={**SPILL, "MINIODB_DEBUG_CRASH_AT": "fail:object_put"}, name="spill")
    with n.client() as c:
        for i in range(INGESTS):
            assert c.ingest("t", chunked(i * PER_INGEST, PER_INGEST)) == PER_INGEST
            assert checks(c) == expected((i + 1) * PER_INGEST)  # pyarrow.flight, while spilling
        st = c.status()["buffers"]["t"]
        assert st["rows"] == TOTAL and st["bytes"] < 2 * 256 * 1024  # heap bytes stay bounded
        assert st["spilled_bytes"] == TOTAL * 24 - st["bytes"]
    assert spilled_bytes(n) == st["spilled_bytes"]  # the Prometheus gauge
    conn = n.adbc()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n, sum(id) AS s FROM t")
            assert cur.fetchall() == [(TOTAL, TOTAL * (TOTAL - 1) // 2)]
    finally:
        conn.close()
    n.kill()
    # replay spills again; the first flush (a chunk of spilled rows) dies mid-way
    n.env = {**SPILL, "MINIODB_DEBUG_CRASH_AT": "object_put"}
    n.start()
    assert n.proc.wait(timeout=60) == -signal.SIGKILL
    # the next flush commits a chunk, unlinks its first segment and dies
    n.env = {**SPILL, "MINIODB_DEBUG_CRASH_AT": "wal_remove"}
    n.start()
    assert n.proc.wait(timeout=60) == -signal.SIGKILL
    n.env = SPILL
    n.start()
    with n.client() as c:
        assert checks(c) == expected(TOTAL)
        c.flush()
        assert checks(c) == expected(TOTAL)
        st = c.status()
        assert st["buffers"].get("t", {"rows": 0})["rows"] == 0 and st["wal_bytes"] == 0
        files = c.query("SELECT count(*) AS n FROM system.files WHERE table_name = 't'").to_pylist()[0]["n"]
        assert files >= TOTAL // (2 * BATCH)  # flushed in chunks of about buffer.max_bytes (2 segments)
    assert spilled_bytes(n) == 0
    n.kill()
    n.start()
    with n.client() as c:
        assert checks(c) == expected(TOTAL)
