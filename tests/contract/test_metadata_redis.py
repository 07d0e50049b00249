"""The Redis metadata store's own behaviour (the contract every backend keeps is in
test_metadata_store.py): key prefix, no key-space scans, corrupt entries, retries, passwords,
URLs, backend choice and Sentinel."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import AlreadyExists, Internal, InvalidRequest, Unauthenticated
from flight_server.config import RedisSettings, SentinelSettings
from flight_server.metadata import load_metadata_store
from flight_server.metadata.redis import parse_redis_url
from tests.contract.test_metadata_store import (
    FakeClock,
    comparable,
    entry,
    node,
    populate,
    redis_store,
    table,
)


# -- Redis backend specifics ----------------------------------------------------------------
@pytest.mark.redis
def test_redis_keys_live_under_the_prefix(redis_server, redis_prefix: str, clock: FakeClock) -> None:
    s = redis_store(redis_server, redis_prefix, clock)
    other = redis_store(redis_server, redis_prefix + "-other", clock)
    try:
        populate(s)
        s.register_node(node("n1"), ttl=60)
        assert other.list_tables() == [] and other.live_nodes() == []
        c = redis_server.client()
        keys = set(c.scan_iter(match="*", count=1000))
        mine = {k for k in keys if k.startswith(redis_prefix + ":")}
        assert {f"{redis_prefix}:tables", f"{redis_prefix}:files:a", f"{redis_prefix}:versions",
                f"{redis_prefix}:nodes"} <= mine
        assert not {k for k in keys if k.startswith(redis_prefix) and not k.startswith(redis_prefix + ":")}
        c.close()
    finally:
        s.close()
        other.close()


@pytest.mark.redis
def test_redis_never_scans_the_key_space(redis_factory, clock: FakeClock) -> None:
    server = redis_factory("nokeys")
    c = server.client()
    c.config_resetstat()
    s = redis_store(server, "p", clock)
    a, b = populate(s)
    s.register_node(node("n1"), ttl=1)
    clock.now += 5
    s.live_nodes()
    snap = s.snapshot()
    s.drop_table("a")
    s.restore(snap)
    s.list_tables(), s.list_files("a"), s.data_version("a")
    stats = c.info("commandstats")
    assert "cmdstat_keys" not in stats and "cmdstat_scan" not in stats
    s.close()
    c.close()


@pytest.mark.redis
def test_redis_corrupt_entries_are_internal_and_restore_repairs_them(redis_server, redis_prefix: str,
                                                                     clock: FakeClock) -> None:
    s = redis_store(redis_server, redis_prefix, clock)
    populate(s)
    snap = s.snapshot()
    c = redis_server.client()
    c.hset(f"{redis_prefix}:tables", "b", "{not json")
    c.delete(f"{redis_prefix}:versions")
    c.set(f"{redis_prefix}:files:a", "wrong type")
    with pytest.raises(Internal, match="corrupt"):
        s.list_tables()
    with pytest.raises(Internal, match="corrupt"):
        s.list_files("a")
    s.restore(snap)
    assert comparable(s.snapshot()) == comparable(snap)
    assert s.data_version("a") > 0
    c.set(f"{redis_prefix}:tables", "wrong type")  # even the table index itself
    s.restore(snap)
    assert [t.name for t in s.list_tables()] == ["a", "b"]
    c.close()
    s.close()


@pytest.mark.redis
def test_redis_retried_create_is_idempotent(redis_server, redis_prefix: str) -> None:
    s = redis_store(redis_server, redis_prefix)
    info = table("t")
    s.create_table(info)
    s.create_table(info)  # the same incarnation again (a retry after a lost reply): no error
    with pytest.raises(AlreadyExists):
        s.create_table(table("t"))
    s.close()


@pytest.mark.redis
def test_redis_password(redis_factory) -> None:
    server = redis_factory("auth", password="s3cret")
    good = RedisSettings(host="127.0.0.1", port=server.port, password="s3cret")
    s = load_metadata_store(server.url, settings=good)
    s.check()
    s.close()
    for wrong in ("nope", ""):
        bad = load_metadata_store(server.url, settings=RedisSettings(host="127.0.0.1", port=server.port,
                                                                     password=wrong))
        with pytest.raises(Unauthenticated, match="redis.password"):
            bad.check()
        bad.close()


def test_redis_urls() -> None:
    assert parse_redis_url("redis://h:7000/2") == {"mode": "standalone", "host": "h", "port": 7000, "db": 2,
                                                    "password": ""}
    assert parse_redis_url("redis://h")["port"] == 6379
    p = parse_redis_url("redis+sentinel://a:26379,b:26380/mymaster/1")
    assert p["sentinels"] == [("a", 26379), ("b", 26380)] and p["master"] == "mymaster" and p["db"] == 1
    for bad in ("redis://", "redis://h:x/0", "redis+sentinel:///m/0", "redis+sentinel://a:1", "http://h"):
        with pytest.raises(InvalidRequest):
            parse_redis_url(bad)


def test_settings_choose_the_backend(tmp_path: Path) -> None:
    from flight_server.config import load_settings

    embedded = load_settings(overrides={"server.data_dir": str(tmp_path)}, environ={})
    assert embedded.metadata_url.startswith("sqlite://")
    standalone = load_settings(environ={"MINIODB_REDIS_HOST": "r1", "MINIODB_REDIS_PORT": "7000",
                                        "MINIODB_REDIS_DB": "3"})
    assert standalone.metadata_url == "redis://r1:7000/3"
    sentinel = load_settings(environ={"MINIODB_REDIS_SENTINEL_ENABLED": "true",
                                      "MINIODB_REDIS_SENTINEL_MASTER_NAME": "m1",
                                      "MINIODB_REDIS_SENTINEL_ADDERS": "s1:26379, s2:26379"})
    assert sentinel.metadata_url == "redis+sentinel://s1:26379,s2:26379/m1/0"
    assert sentinel.redis.sentinel == SentinelSettings(enabled=True, master_name="m1",
                                                       addrs=("s1:26379", "s2:26379"))


@pytest.mark.redis
def test_redis_sentinel_mode(sentinel_cluster) -> None:
    url = f"redis+sentinel://{','.join(sentinel_cluster.addrs)}/{sentinel_cluster.master_name}/0"
    s = load_metadata_store(url, settings=RedisSettings(prefix="sent"))
    try:
        info = s.create_table(table("t"))
        s.commit_files("t", info.table_id, [entry("t/1.parquet")], watermark=("n1", 1))
        replica = sentinel_cluster.replica.client()
        # the write returned only after the replica confirmed it (WAIT)
        assert replica.hexists("sent:files:t", "t/1.parquet")
        replica.close()
        assert "mymaster" in s.url and "@" not in s.url
    finally:
        s.close()


