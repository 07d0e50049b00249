"""Pieces of the cluster query runtime: signed messages, placement, parameter literals, the
planner stand-in's rewrite (checked by running both SQL texts in DuckDB)."""

from __future__ import annotations

import datetime as dt
import decimal

import duckdb
import pyarrow as pa
import pytest

from clients.errors import Unauthenticated
from flight_server.coordinator.cluster import FRAGMENT_PREFIX, Signer, derive_secret, place
from flight_server.coordinator.params import bind_literals
from flight_server.coordinator.plan_stub import plan
from flight_server.metadata.base import FileEntry


def test_signed_messages_round_trip_and_refuse_forgery_and_expiry() -> None:
    now = [1000.0]
    signer = Signer(derive_secret("s3cret", (), ""), clock=lambda: now[0])
    raw = signer.sign({"q": "abc", "sql": "SELECT 1"}, ttl=30)
    assert raw.startswith(FRAGMENT_PREFIX) and b"s3cret" not in raw
    assert signer.verify(raw)["q"] == "abc"
    other = Signer(derive_secret("other", (), ""), clock=lambda: now[0])
    with pytest.raises(Unauthenticated):
        other.verify(raw)
    with pytest.raises(Unauthenticated):
        signer.verify(raw.replace(b"SELECT 1", b"SELECT 2"))
    with pytest.raises(Unauthenticated):
        signer.verify(b"garbage")
    now[0] += 31
    with pytest.raises(Unauthenticated):
        signer.verify(raw)
    assert "s3cret" not in repr(signer)


def test_secret_sources() -> None:
    assert derive_secret("x", ("k",), "d") != derive_secret("", ("k",), "d")
    assert derive_secret("", ("k",), "d") != derive_secret("", (), "d")
    assert derive_secret("", ("k",), "d1") == derive_secret("", ("k",), "d2")  # the key decides


def test_rendezvous_placement_is_stable_and_spread() -> None:
    keys = [f"data/t/2024-01-01/n/{i}.parquet" for i in range(600)]
    three = {k: place(k, ["a", "b", "c"]) for k in keys}
    counts = {n: sum(1 for v in three.values() if v == n) for n in "abc"}
    assert min(counts.values()) > 120  # roughly a third each
    two = {k: place(k, ["a", "b"]) for k in keys}
    # removing c moves only c's files
    assert all(two[k] == three[k] for k in keys if three[k] != "c")


def test_parameters_become_typed_literals_with_the_same_answer() -> None:
    cur = duckdb.connect()
    cur.execute("SET TimeZone='UTC'")
    sql = "SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e, ? AS f, '?' AS g, ? AS h"
    params = [5, "it's", 1.25, dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC), decimal.Decimal("1.25"),
              None, 2**40]
    bound = bind_literals(sql, params, cur)
    assert bound is not None and "?" not in bound.replace("'?'", "")
    want = cur.sql(sql, params=params).to_arrow_table()
    got = cur.sql(bound).to_arrow_table()
    assert got.to_pylist() == want.to_pylist()
    assert got.schema.types[:5] == want.schema.types[:5]
    assert bind_literals(sql, params[:-1], cur) is None  # count mismatch
    assert bind_literals("SELECT $1", [1], cur) is None
    assert bind_literals("SELECT ?", [[1, 2]], cur) is None  # nested: stays local
    assert bind_literals("SELECT ?", {"a": 1}, cur) is None


@pytest.mark.parametrize("sql", [
    "SELECT count(*) AS n, sum(x) AS s FROM t WHERE x > 1",
    "SELECT t.x, u.y FROM t JOIN u ON t.x = u.x ORDER BY t.x",
    "SELECT a.x FROM t AS a WHERE a.x IN (SELECT x FROM u) ORDER BY 1",
    "WITH w AS (SELECT x FROM t) SELECT count(*) AS n FROM w",
])
def test_plan_stub_rows_shape_equals_the_original(sql: str) -> None:
    t = pa.table({"x": pa.array([1, 2, 3, 3], pa.int64())})
    u = pa.table({"x": pa.array([3, 2], pa.int64()), "y": pa.array(["c", "b"])})
    p = plan(sql, {"t": t.schema, "u": u.schema})
    assert p.shape == "rows" and p.fragments
    cur = duckdb.connect()
    cur.register("t", t)
    cur.register("u", u)
    want = cur.sql(sql).to_arrow_table()
    for f in p.fragments:  # two "peers" each hold half of every table
        src = {"t": t, "u": u}[f.table]
        halves = [src.slice(0, src.num_rows // 2), src.slice(src.num_rows // 2)]
        parts = []
        for h in halves:
            peer = duckdb.connect()
            peer.register(f.table, h)
            parts.append(peer.sql(f.sql).to_arrow_table())
        cur.register(f.alias, pa.concat_tables(parts))
    assert cur.sql(p.merge_sql).to_arrow_table() == want
    assert plan("SELECT 1", {}).shape == "local"


def test_file_entries_carry_their_wal_sequence() -> None:
    e = FileEntry(key="k", rows=1, size=2, node_id="n", wal_seq=42)
    assert FileEntry.from_json(e.to_json()) == e
    old = FileEntry(key="k", rows=1, size=2)  # written before wal_seq existed (or adopted): 0 = unknown
    assert "wal_seq" not in old.to_json() and FileEntry.from_json(old.to_json()).wal_seq == 0
