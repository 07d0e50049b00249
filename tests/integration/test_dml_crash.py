"""kill -9 in the middle of a DELETE/UPDATE (issue 16): the node dies at a DML crash point
(``debug.crash_at``, flight_server/faults.py) - after the rewritten files are uploaded and
before the commit, or right after the commit - then restarts with the crash point off. The
table is exactly as before or exactly as after the statement: no row lost, none twice."""

from __future__ import annotations

import pyarrow as pa
import pytest

from clients import errors
from tests.fixtures.redis import server_mode_env

QUIET = {"MINIODB_BUFFER_FLUSH_INTERVAL": "3600", "MINIODB_BUFFER_SIZE": "100000000"}
CASES = [  # (crash step, statement, the table after it if it committed)
    ("dml_uploaded", "DELETE FROM t WHERE id % 2 = 0", "before"),
    ("dml_committed", "DELETE FROM t WHERE id % 2 = 0", "after"),
    ("dml_uploaded", "UPDATE t SET v = 'u' WHERE id >= 90", "before"),
    ("dml_committed", "UPDATE t SET v = 'u' WHERE id >= 90", "after"),
]


def _contents(client) -> list[tuple]:
    return [(r["id"], r["v"]) for r in client.query("SELECT id, v FROM t ORDER BY id, v").to_pylist()]


def _expected(sql: str, when: str) -> list[tuple]:
    ids = list(range(120))
    if when == "before":
        return [(i, "a") for i in ids]
    if sql.startswith("DELETE"):
        return [(i, "a") for i in ids if i % 2]
    return [(i, "u" if i >= 90 else "a") for i in ids]


def _run_case(n, env: dict, step: str, sql: str, when: str) -> None:
    n.env = {**env, "MINIODB_DEBUG_CRASH_AT": step}
    n.start()
    c = n.client()
    c.execute("DROP TABLE IF EXISTS t")
    assert c.ingest("t", pa.table({"id": list(range(100)), "v": ["a"] * 100})) == 100
    c.flush("t")
    assert c.ingest("t", pa.table({"id": list(range(100, 120)), "v": ["a"] * 20})) == 20  # buffered
    with pytest.raises(errors.MinioDBError):
        c.execute(sql)  # the node kills itself at the crash point
    n.proc.wait(timeout=30)
    n.env = dict(env)
    n.start()
    c = n.client()
    got = _contents(c)
    assert got == _expected(sql, when), (step, sql)
    # the table stays writable: the statement again, then a new row
    again = c.execute(sql)
    assert _contents(c) == _expected(sql, "after")
    if sql.startswith("DELETE"):
        assert again == (60 if when == "before" else 0)
    else:
        assert again == 30  # rows matched (set again to the same value)
    assert c.ingest("t", pa.table({"id": [1000], "v": ["z"]})) == 1
    assert len(_contents(c)) == len(_expected(sql, "after")) + 1
    n.terminate()


@pytest.mark.parametrize(("step", "sql", "when"), CASES, ids=[f"{s}-{q.split()[0]}" for s, q, _ in CASES])
def test_kill_during_dml_leaves_the_table_before_or_after(node_factory, step, sql, when) -> None:
    n = node_factory(env=QUIET, name="dml-crash", start=False)
    _run_case(n, QUIET, step, sql, when)


@pytest.mark.slow
def test_kill_during_dml_in_server_mode(node_factory, redis_server, redis_prefix, moto_server, s3_bucket) -> None:
    env = {**server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, SERVER_NODE_ID="dml-crash"), **QUIET}
    n = node_factory(env=env, name="dml-crash-s", start=False)
    for step, sql, when in CASES[:2]:
        _run_case(n, env, step, sql, when)
