"""The batch-id part of the MetadataStore contract (exactly-once ingest), on every backend:
atomic claims, takeover by a node's later incarnation, renewal, release, expiry, and the
record written by ``commit_files`` in the same atomic step as the files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from clients.errors import NotFound
from flight_server.metadata.base import MetadataStore
from flight_server.metadata.redis import RedisMetadataStore
from tests.contract import test_metadata_store as contract
from tests.contract.test_metadata_store import FakeClock, entry, table
from tests.fixtures.helpers import wait_until

store = contract.store  # the same fixtures: every backend


def expire(store: MetadataStore, clock: FakeClock, batch_id: str, seconds: float) -> None:
    """Let ``seconds`` pass: the fake clock for SQLite, the server's own TTL for Redis."""
    clock.now += seconds
    if isinstance(store, RedisMetadataStore):
        c = store._r
        wait_until(lambda: not c.exists(store.k_batch(batch_id)), timeout=10, interval=0.05,
                   what=f"claim of {batch_id} expired")


def test_claim_is_check_and_set(store: MetadataStore) -> None:
    assert store.claim_batch("b1", "n1", "inc1", 30) == ("claimed", 0, "n1")
    assert store.claim_batch("b1", "n2", "inc9", 30) == ("busy", 0, "n1")
    store.finish_batch("b1", 123)
    assert store.claim_batch("b1", "n2", "inc9", 30) == ("done", 123, "")
    assert store.claim_batch("b1", "n1", "inc1", 30) == ("done", 123, "")


def test_concurrent_claims_have_one_winner(store: MetadataStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: store.claim_batch("b", f"n{i}", f"i{i}", 30), range(16)))
    winners = [r for r in results if r[0] == "claimed"]
    assert len(winners) == 1
    assert all(r == ("busy", 0, winners[0][2]) for r in results if r[0] != "claimed")


def test_a_later_incarnation_of_the_node_takes_its_claims_over(store: MetadataStore) -> None:
    store.claim_batch("b", "n1", "before-crash", 30)
    assert store.claim_batch("b", "n1", "after-restart", 30) == ("claimed", 0, "n1")
    assert not store.renew_batch("b", "n1", "before-crash", 30)  # the old incarnation lost it
    assert store.renew_batch("b", "n1", "after-restart", 30)


def test_release_frees_only_the_owners_claim(store: MetadataStore) -> None:
    store.claim_batch("b", "n1", "i1", 30)
    store.release_batch("b", "n2", "i2")  # not the owner: nothing happens
    assert store.claim_batch("b", "n2", "i2", 30)[0] == "busy"
    store.release_batch("b", "n1", "i1")
    assert store.claim_batch("b", "n2", "i2", 30) == ("claimed", 0, "n2")
    store.finish_batch("b", 5)
    store.release_batch("b", "n2", "i2")  # a finished batch stays finished
    assert store.claim_batch("b", "n3", "i3", 30) == ("done", 5, "")


def test_a_dead_owners_claim_expires(store: MetadataStore, clock: FakeClock) -> None:
    store.claim_batch("b", "n1", "i1", 0.3)
    assert store.claim_batch("b", "n2", "i2", 30)[0] == "busy"
    expire(store, clock, "b", 1.0)
    assert not store.renew_batch("b", "n1", "i1", 30)
    assert store.claim_batch("b", "n2", "i2", 30) == ("claimed", 0, "n2")


def test_finished_ids_are_forgotten_after_the_window(store: MetadataStore, clock: FakeClock) -> None:
    store.batch_window = 0.3
    store.finish_batch("b", 7)
    assert store.claim_batch("b", "n1", "i1", 30) == ("done", 7, "")
    expire(store, clock, "b", 1.0)
    assert store.claim_batch("b", "n1", "i1", 30) == ("claimed", 0, "n1")


def test_commit_files_records_batches_with_the_files(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    store.claim_batch("b1", "n1", "i1", 30)
    store.commit_files("t", info.table_id, [entry("t/a.parquet")], watermark=("n1", 3),
                       batches={"b1": 10, "b2": 20})
    assert store.claim_batch("b1", "n2", "i2", 30) == ("done", 10, "")
    assert store.claim_batch("b2", "n2", "i2", 30) == ("done", 20, "")
    store.commit_files("t", info.table_id, [entry("t/b.parquet")])  # no batches: nothing else changes
    assert [f.key for f in store.list_files("t")] == ["t/a.parquet", "t/b.parquet"]


def test_a_refused_commit_records_no_batch(store: MetadataStore) -> None:
    info = store.create_table(table("t"))
    store.drop_table("t")
    with pytest.raises(NotFound):
        store.commit_files("t", info.table_id, [entry("t/a.parquet")], batches={"b1": 10})
    assert store.claim_batch("b1", "n1", "i1", 30) == ("claimed", 0, "n1")
