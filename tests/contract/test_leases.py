"""The lease part of the MetadataStore contract (one compactor per table across the cluster),
on every backend: exclusive acquire, owner-checked renew and release, expiry of a dead
holder's lease, and one winner among concurrent acquirers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flight_server.metadata.base import MetadataStore
from flight_server.metadata.redis import RedisMetadataStore
from tests.contract import test_metadata_store as contract
from tests.contract.test_metadata_store import FakeClock
from tests.fixtures.helpers import wait_until

store = contract.store  # the same fixtures: every backend


def expire(store: MetadataStore, clock: FakeClock, name: str, seconds: float) -> None:
    """Let ``seconds`` pass: the fake clock for SQLite, the server's own TTL for Redis."""
    clock.now += seconds
    if isinstance(store, RedisMetadataStore):
        c = store._r
        wait_until(lambda: not c.exists(store.k_lease(name)), timeout=10, interval=0.05,
                   what=f"lease {name} expired")


def test_a_lease_has_one_holder(store: MetadataStore) -> None:
    assert store.lease_holder("compaction:t") is None
    assert store.acquire_lease("compaction:t", "a", 30)
    assert not store.acquire_lease("compaction:t", "b", 30)
    assert store.lease_holder("compaction:t") == "a"
    assert store.acquire_lease("compaction:t", "a", 30)  # the holder again: extended, still held
    assert store.acquire_lease("compaction:u", "b", 30)  # other names are independent
    assert store.lease_holder("compaction:u") == "b"


def test_only_the_holder_renews_and_releases(store: MetadataStore) -> None:
    store.acquire_lease("l", "a", 30)
    assert not store.renew_lease("l", "b", 30)
    store.release_lease("l", "b")  # not the holder: nothing happens
    assert store.lease_holder("l") == "a"
    assert store.renew_lease("l", "a", 30)
    store.release_lease("l", "a")
    assert store.lease_holder("l") is None
    assert not store.renew_lease("l", "a", 30)  # released: nothing to renew
    assert store.acquire_lease("l", "b", 30)


def test_a_dead_holders_lease_expires(store: MetadataStore, clock: FakeClock) -> None:
    assert store.acquire_lease("l", "dead", 0.3)
    assert not store.acquire_lease("l", "b", 30)
    expire(store, clock, "l", 1.0)
    assert store.lease_holder("l") is None
    assert not store.renew_lease("l", "dead", 30)  # too late: it cannot come back
    assert store.acquire_lease("l", "b", 30)
    store.release_lease("l", "dead")  # a late release of the old holder leaves the new one alone
    assert store.lease_holder("l") == "b"


def test_renewal_keeps_a_lease_alive(store: MetadataStore, clock: FakeClock) -> None:
    store.acquire_lease("l", "a", 0.6)
    for _ in range(3):
        clock.now += 0.3
        assert store.renew_lease("l", "a", 0.6)
    assert not store.acquire_lease("l", "b", 30)


def test_concurrent_acquirers_have_one_winner(store: MetadataStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: store.acquire_lease("l", f"n{i}", 30), range(16)))
    assert won.count(True) == 1
    assert store.lease_holder("l") == f"n{won.index(True)}"
