"""The flush path under faults (issue 12, section 2): a real node dies, or fails, at each step of
a flush (``debug.crash_at``, see flight_server/faults.py), then a kill -9 and a restart with
the crash point off. Every case ends with exactly the acknowledged rows: none lost, none twice.

Both backends: embedded (SQLite + local folder) and server mode (redis-server + moto_server).
"""

from __future__ import annotations

import signal

import pytest

from clients import errors
from tests.fixtures.helpers import rows
from tests.fixtures.redis import server_mode_env

# Run as one chain per backend (each restart is armed with the next step), so the matrix costs
# one node start per step; every restart first checks the rows left by the previous fault.
# The first step commits the rows flushed "earlier" (the commit lands, the WAL removal fails).
# wal_remove comes before the steps that leave committed segments behind: the restart after
# those removes them during replay, which would fire a wal_remove crash point at start.
STEPS = ["fail:wal_remove", "parquet_written", "fail:object_put", "object_put", "wal_remove",
         "commit_reply_lost", "metadata_committed"]
QUIET = {"MINIODB_BUFFER_FLUSH_INTERVAL": "3600", "MINIODB_BUFFER_SIZE": "100000000"}  # explicit flushes only


@pytest.fixture(params=["embedded", "server"])
def backend_env(request) -> dict:
    if request.param == "embedded":
        return dict(QUIET)
    moto = request.getfixturevalue("moto_server")
    bucket = request.getfixturevalue("s3_bucket")
    redis = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("redis_prefix")
    return {**server_mode_env(moto, bucket, redis, prefix, SERVER_NODE_ID="crash-node"), **QUIET}


def counts(client) -> tuple[int, int]:
    r = client.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM t").to_pylist()[0]
    return r["n"], r["d"]


@pytest.mark.slow
def test_a_fault_at_every_flush_step_loses_and_duplicates_nothing(node_factory, backend_env) -> None:
    n = node_factory(env=backend_env, name="crash", start=False)
    acked = 0
    for step in STEPS:
        n.env = {**backend_env, "MINIODB_DEBUG_CRASH_AT": step}
        n.start()
        c = n.client()
        if acked:  # the rows left by the previous fault: each exactly once
            assert counts(c) == (acked, acked), f"after the fault before {step}"
        for size in (30, 20):  # two ingests: two WAL segments in the flush
            assert c.ingest("t", rows(acked, size)) == size
            acked += size
        with pytest.raises(errors.MinioDBError) as err:
            c.flush()
        if step.startswith("fail:") or step == "commit_reply_lost":
            assert "injected" in err.value.message, step
            assert counts(c) == (acked, acked), f"while alive after {step}"
            n.kill()
        else:  # the node killed itself at the step
            assert n.proc.wait(timeout=30) == -signal.SIGKILL, step
    n.env = backend_env
    n.start()
    with n.client() as c:
        assert counts(c) == (acked, acked)
        c.flush()
        assert counts(c) == (acked, acked)
        st = c.status()
        assert st["buffers"].get("t", {"rows": 0})["rows"] == 0 and st["wal_bytes"] == 0
    n.kill()
    n.start()
    with n.client() as c:
        assert counts(c) == (acked, acked)
