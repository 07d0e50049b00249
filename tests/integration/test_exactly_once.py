"""Exactly-once ingest with real processes: a batch id (``x-miniodb-batch-id`` on DoPut, REST
``Idempotency-Key``) is applied once after a flush and a restart, under concurrent duplicate
DoPut streams, across a node killed mid-stream, and across two nodes sharing Redis + S3."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import protocol
from clients.proto import FlightSql_pb2 as sql_pb2
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.redis import server_mode_env

CHUNK = 64 * 1024  # wal.chunk_bytes in these tests: a 20k-row batch spans several chunks


def count(client, table: str) -> int:
    return client.query(f"SELECT count(*) AS n FROM {table}").to_pylist()[0]["n"]


def ids(client, table: str) -> list[int]:
    return client.query(f"SELECT id FROM {table} ORDER BY id").column("id").to_pylist()


class StalledPut:
    """A raw pyarrow.flight DoPut on a path descriptor with a batch id: the first batch is sent,
    the rest waits for :meth:`finish` (so several streams with one id overlap for certain)."""

    def __init__(self, uri: str, table: str, data: pa.Table, batch_id: str):
        self.client = flight.FlightClient(uri)
        opts = flight.FlightCallOptions(headers=[(protocol.BATCH_ID_HEADER.encode(), batch_id.encode())])
        self.batches = data.to_batches(max_chunksize=1000)
        self.writer, self.reader = self.client.do_put(flight.FlightDescriptor.for_path(table), data.schema, opts)
        self.writer.write_batch(self.batches[0])

    def finish(self) -> int:
        try:
            for b in self.batches[1:]:
                self.writer.write_batch(b)
            self.writer.done_writing()
            meta = self.reader.read()
            self.writer.close()
            return sql_pb2.DoPutUpdateResult.FromString(meta.to_pybytes()).record_count
        finally:
            self.client.close()


def overlapping_puts(uris: list[str], table: str, data: pa.Table, batch_id: str) -> list[int]:
    """One stalled DoPut per uri (all opened before any finishes), then all finish at once."""
    puts = [StalledPut(uri, table, data, batch_id) for uri in uris]
    go = threading.Barrier(len(puts))

    def run(put: StalledPut) -> int:
        go.wait(30)
        return put.finish()

    with ThreadPoolExecutor(len(puts)) as pool:
        return list(pool.map(run, puts))


def test_a_retry_after_flush_and_restart_is_applied_once(node):
    data = rows(0, 1000)
    with node.client() as c:
        assert c.ingest("eo", data, batch_id="flight-1") == 1000
        assert c.ingest("eo", data, batch_id="flight-1") == 1000  # a plain retry
        assert c.flush()["rows"] == 1000
    metrics = httpx.get(f"{node.metrics}/metrics", timeout=30).text
    assert 'miniodb_ingest_rows_total{table="eo"} 1000.0' in metrics  # the retry is not counted again
    node.restart()
    with node.client() as c:
        assert c.ingest("eo", data, batch_id="flight-1") == 1000  # the id comes from the metadata store
        assert count(c, "eo") == 1000
        assert c.ingest("eo", rows(1000, 10), batch_id="flight-2") == 10  # other ids still apply
        assert count(c, "eo") == 1010


def test_a_rest_idempotency_key_survives_flush_and_restart(node):
    body = {"table": "eo_rest", "records": [{"payload": {"v": i}} for i in range(7)]}
    key = {"Idempotency-Key": "rest-batch-1"}

    def post() -> httpx.Response:
        with httpx.Client(base_url=node.rest + "/api/v1", timeout=60.0) as http:
            return http.post("/data", json=body, headers=key)

    assert post().json()["rows"] == 7
    with node.client() as c:
        c.flush()
    node.restart()
    r = post()
    assert r.status_code == 200 and r.json()["rows"] == 7
    with node.client() as c:
        assert count(c, "eo_rest") == 7


def test_concurrent_doput_streams_with_one_id_apply_once(node_factory):
    n = node_factory(env={"MINIODB_WAL_CHUNK_BYTES": str(CHUNK)})
    data = rows(0, 20_000)
    counts = overlapping_puts([n.flight] * 6, "eo_conc", data, "same-id")
    assert counts == [20_000] * 6
    with n.client() as c:
        assert ids(c, "eo_conc") == list(range(20_000))


def test_a_node_killed_mid_stream_applies_nothing_and_the_retry_applies_the_whole_batch(node_factory):
    n = node_factory(env={"MINIODB_WAL_CHUNK_BYTES": str(CHUNK)})
    data = rows(0, 20_000)
    with n.client() as c:
        c.ingest("eo_kill", rows(-5, 5))  # the table, with 5 rows before
    put = StalledPut(n.flight, "eo_kill", data, "killed")
    for b in put.batches[1:12]:  # about half the stream: several chunks are durable (pending)
        put.writer.write_batch(b)
    wal = n.data_dir / "wal"
    wait_until(lambda: len(list(wal.glob("pending-*.tmp"))) >= 2, timeout=30, interval=0.05,
               what="chunks of the stream durable in the WAL")
    n.kill()
    with pytest.raises(flight.FlightError):
        put.finish()
    n.start()
    with n.client() as c:
        assert ids(c, "eo_kill") == list(range(-5, 0))  # nothing of the broken batch
        assert c.ingest("eo_kill", data, batch_id="killed") == 20_000
        assert c.ingest("eo_kill", data, batch_id="killed") == 20_000
        assert ids(c, "eo_kill") == list(range(-5, 20_000))
    n.kill()  # and the batch survives a crash whole
    n.start()
    with n.client() as c:
        assert ids(c, "eo_kill") == list(range(-5, 20_000))


ABORTING_CLIENT = """
import sys, time
import pyarrow.flight as flight
from tests.fixtures.helpers import rows
data = rows(0, 20_000)
client = flight.FlightClient(sys.argv[1])
opts = flight.FlightCallOptions(headers=[(b"x-miniodb-batch-id", b"aborted")])
writer, _ = client.do_put(flight.FlightDescriptor.for_path("eo_abort"), data.schema, opts)
for b in data.to_batches(max_chunksize=1000)[:12]:
    writer.write_batch(b)
print("sent", flush=True)
time.sleep(600)
"""


def test_a_client_that_dies_mid_stream_leaves_nothing_and_its_retry_applies_the_whole_batch(node_factory):
    n = node_factory(env={"MINIODB_WAL_CHUNK_BYTES": str(CHUNK)})
    with n.client() as c:
        c.ingest("eo_abort", rows(-5, 5))
    wal = n.data_dir / "wal"
    proc = subprocess.Popen([sys.executable, "-c", ABORTING_CLIENT, n.flight], stdout=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout.readline().strip() == b"sent"
        wait_until(lambda: len(list(wal.glob("pending-*.tmp"))) >= 2, timeout=30, interval=0.05,
                   what="chunks of the stream durable in the WAL")
    finally:
        proc.kill()  # kill -9: the DoPut is never finished
        proc.wait(30)
    wait_until(lambda: not list(wal.glob("pending-*.tmp")), timeout=30, interval=0.05,
               what="the node dropped the broken stream's chunks")
    data = rows(0, 20_000)
    with n.client() as c:
        assert ids(c, "eo_abort") == list(range(-5, 0))
        assert c.ingest("eo_abort", data, batch_id="aborted") == 20_000
        assert c.ingest("eo_abort", data, batch_id="aborted") == 20_000
        assert ids(c, "eo_abort") == list(range(-5, 20_000))


@pytest.mark.redis
@pytest.mark.s3
def test_the_same_id_sent_to_two_nodes_is_applied_once(node_factory, redis_server, redis_prefix, moto_server,
                                                       s3_bucket):
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix,
                          WAL_CHUNK_BYTES=str(CHUNK), INGEST_DEDUP_CLAIM_TTL="2")
    a = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-a"}, name="a")
    b = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-b"}, name="b")
    data = rows(0, 20_000)
    # one after the other (a load balancer's retry lands on the other node)
    with a.client() as ca, b.client() as cb:
        assert ca.ingest("eo_two", data, batch_id="lb-1") == 20_000
        assert cb.ingest("eo_two", data, batch_id="lb-1") == 20_000
    # at the same time, on both nodes
    more = rows(20_000, 20_000)
    assert overlapping_puts([a.flight, b.flight, a.flight, b.flight], "eo_two", more, "lb-2") == [20_000] * 4
    with a.client() as ca, b.client() as cb:
        ca.flush()
        cb.flush()
        assert ids(ca, "eo_two") == list(range(40_000))
    # an owner killed mid-stream leaves a claim that expires; the retry on the other node applies it
    last = rows(40_000, 20_000)
    put = StalledPut(a.flight, "eo_two", last, "lb-3")
    wait_until(lambda: redis_server.client().get(f"{redis_prefix}:batch:lb-3"), timeout=30, interval=0.05,
               what="node-a claims lb-3")
    a.kill()
    with pytest.raises(flight.FlightError):
        put.finish()
    with b.client() as cb:
        assert cb.ingest("eo_two", last, batch_id="lb-3") == 20_000
        cb.flush()
        assert ids(cb, "eo_two") == list(range(60_000))
