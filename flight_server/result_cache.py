"""The exact query result cache: a local LRU of Arrow tables (bounded by bytes), optionally
backed by a level shared between nodes through Redis (``query.cache_distributed``).

This module only stores and fetches; :mod:`flight_server.query.runner` builds the keys. A
key digests the normalised statement (DuckDB's own parse tree), the parameters and the
state of every table the statement reads — table id, schema version, data version (bumped
by every commit, on every node) and, when this node holds buffered rows of the table, the
buffer's identity and version (bumped by every write). So a write or a flush always changes
the key: no stale answer is ever served, nothing has to be invalidated, and old entries age
out of the LRU. See the runner for why the key is taken *before* the statement runs.

Only results that do not depend on this node's buffer (every table read has no buffered
rows here) are shared through Redis: they are a function of committed data alone, so every
node computes the same answer for the same key. Shared entries are Arrow IPC streams
(zstd), at most ``entry_max_bytes`` each, with a TTL; the shared level is best effort: a
Redis failure is logged once, skipped for a while, and never fails a query.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

log = logging.getLogger("miniodb.result_cache")

SHARED_TTL_SECONDS = 3600
SHARED_TIMEOUT_SECONDS = 0.5
BREAKER_SECONDS = 10.0
MAX_PENDING_WRITES = 8


@dataclass(frozen=True)
class CacheKey:
    digest: str
    shared: bool  # the result depends on committed data only (may go to the shared level)


@dataclass(frozen=True)
class CacheHit:
    table: pa.Table
    shared: bool  # came from the shared level


class RedisSharedCache:
    """Result entries in Redis under ``{prefix}:qcache:{digest}`` (binary values, TTL)."""

    def __init__(self, client: Any, prefix: str = "miniodb", ttl: int = SHARED_TTL_SECONDS,
                 clock=time.monotonic):
        self.client = client
        self.prefix = f"{prefix}:qcache:"
        self.ttl = ttl
        self._clock = clock
        self._down_until = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miniodb-qcache")
        self._pending = threading.BoundedSemaphore(MAX_PENDING_WRITES)

    @classmethod
    def from_metadata_url(cls, url: str, redis_settings: Any) -> RedisSharedCache | None:
        """A client of the metadata Redis (standalone or Sentinel), or None if metadata is not Redis."""
        if not url.startswith(("redis://", "rediss://", "redis+sentinel://")):
            return None
        import redis
        from redis.sentinel import Sentinel

        from .metadata.redis import parse_redis_url

        parts = parse_redis_url(url)
        password = (getattr(redis_settings, "password", "") or parts.get("password")) or None
        common = {"db": parts["db"], "password": password, "socket_timeout": SHARED_TIMEOUT_SECONDS,
                  "socket_connect_timeout": SHARED_TIMEOUT_SECONDS}
        if parts["mode"] == "standalone":
            client = redis.Redis(parts["host"], parts["port"], **common)
        else:
            sentinel_password = getattr(getattr(redis_settings, "sentinel", None), "password", "") or None
            sentinel = Sentinel(parts["sentinels"], sentinel_kwargs={
                "password": sentinel_password, "socket_timeout": SHARED_TIMEOUT_SECONDS,
                "socket_connect_timeout": SHARED_TIMEOUT_SECONDS})
            client = sentinel.master_for(parts["master"], **common)
        return cls(client, prefix=getattr(redis_settings, "prefix", "") or "miniodb")

    def _available(self) -> bool:
        return self._clock() >= self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        if self._available():
            log.warning("shared result cache unavailable (%s: %s); skipping it for %.0fs", what,
                        type(exc).__name__, BREAKER_SECONDS)
        self._down_until = self._clock() + BREAKER_SECONDS

    def get(self, digest: str) -> bytes | None:
        if not self._available():
            return None
        try:
            return self.client.get(self.prefix + digest)
        except Exception as exc:  # noqa: BLE001 - best effort
            self._failed("get", exc)
            return None

    def put_async(self, digest: str, payload: bytes) -> None:
        if not self._available() or not self._pending.acquire(blocking=False):
            return  # Redis is down, or writes are backed up: skip this one

        def write() -> None:
            try:
                self.client.set(self.prefix + digest, payload, ex=self.ttl)
            except Exception as exc:  # noqa: BLE001 - best effort
                self._failed("set", exc)
            finally:
                self._pending.release()

        self._pool.submit(write)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing
            pass


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


class ResultCache:
    """Local LRU of result tables by Arrow bytes, with an optional shared level."""

    def __init__(self, max_bytes: int, entry_max_bytes: int, shared: RedisSharedCache | None = None):
        self.max_bytes = max_bytes
        self.entry_max_bytes = min(entry_max_bytes, max_bytes)
        self.shared = shared
        self._entries: OrderedDict[str, pa.Table] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.shared_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CacheHit | None:
        with self._lock:
            table = self._entries.get(key.digest)
            if table is not None:
                self._entries.move_to_end(key.digest)
                self.hits += 1
                return CacheHit(table, False)
        if key.shared and self.shared is not None:
            payload = self.shared.get(key.digest)
            if payload is not None:
                try:
                    table = from_ipc(payload)
                except (pa.ArrowInvalid, OSError):
                    log.warning("dropping a corrupt shared result cache entry")
                    payload = None
                if payload is not None:
                    self._store(key.digest, table)
                    with self._lock:
                        self.hits += 1
                        self.shared_hits += 1
                    return CacheHit(table, True)
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: CacheKey, schema: pa.Schema, batches: list[pa.RecordBatch]) -> bool:
        """Keep a complete result; False if it is over the entry size cap."""
        table = pa.Table.from_batches(batches, schema=schema)
        if table.nbytes > self.entry_max_bytes:
            return False
        self._store(key.digest, table)
        if key.shared and self.shared is not None:
            payload = to_ipc(table)
            if len(payload) <= self.entry_max_bytes:
                self.shared.put_async(key.digest, payload)
        return True

    def _store(self, digest: str, table: pa.Table) -> None:
        size = table.nbytes
        with self._lock:
            old = self._entries.pop(digest, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._entries[digest] = table
            self.bytes += size
            while self.bytes > self.max_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes,
                    "entry_max_bytes": self.entry_max_bytes, "hits": self.hits, "shared_hits": self.shared_hits,
                    "misses": self.misses, "shared": self.shared is not None}

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()
