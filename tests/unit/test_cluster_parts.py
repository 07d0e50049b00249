"""Pieces of the cluster query runtime: signed messages, placement, parameter literals, the
planner stand-in's rewrite (checked by running both SQL texts in DuckDB)."""

from __future__ import annotations

import datetime as dt
import decimal

import duckdb
import pytest

from clients.errors import Unauthenticated
from flight_server.coordinator.cluster import FRAGMENT_PREFIX, Signer, derive_secret, place
from flight_server.coordinator.params import bind_literals
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


def test_file_entries_carry_their_wal_sequence() -> None:
    e = FileEntry(key="k", rows=1, size=2, node_id="n", wal_seq=42)
    assert FileEntry.from_json(e.to_json()) == e
    old = FileEntry(key="k", rows=1, size=2)  # written before wal_seq existed (or adopted): 0 = unknown
    assert "wal_seq" not in old.to_json() and FileEntry.from_json(old.to_json()).wal_seq == 0
