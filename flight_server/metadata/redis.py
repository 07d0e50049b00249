"""RedisMetadataStore: the shared catalog of a cluster, in Redis (standalone or behind Sentinel).

URLs (built by :attr:`flight_server.config.Settings.metadata_url`)::

    redis://host:port/db
    redis+sentinel://host1:port1,host2:port2/master_name/db

Passwords, the key prefix and timeouts come from :class:`~flight_server.config.RedisSettings`,
never from the URL.

Key layout (``P`` is the configurable prefix, ``redis.prefix``; every key lives under it)::

    P:tables            hash  table name -> TableInfo JSON
    P:ids               hash  table name -> table_id (the incarnation checked by commits)
    P:versions          hash  table name -> data version (HGET: O(1) per query)
    P:files:{table}     hash  object key -> FileEntry JSON (HVALS: the manifest in one trip)
    P:manifests         set   table names that own a P:files:{table} hash (index, no scans)
    P:watermarks        hash  "node_id|table_id" -> highest persisted WAL sequence
    P:dropped           hash  table_id -> name: tombstones of dropped incarnations (was_dropped)
    P:counters          hash  counter name -> value ("__data_version" is the global version)
    P:nodes             hash  node id -> NodeInfo JSON
    P:nodes:expiry      zset  node id -> expiry time (heartbeat time + TTL)
    P:sync              string marker written before ``WAIT`` (see below)
    P:batch:{id}        string batch-id claim or result, with a TTL (see redis_batches.py)
    P:lease:{name}      string holder of a named lease, with a TTL (see redis_leases.py)
    P:log:{table_id}    hash  version -> Version JSON: the table's version log (redis_versions.py)
    P:logbase:{table_id} hash object key -> FileEntry JSON: the file set before the oldest version
    P:logs              hash  table_id -> table name of every version log (index)
    P:garbage           hash  object key -> {"id", "t"}: files folded out of the logs, for the vacuum

Atomicity: every multi-key change (create, schema CAS, drop, file commit, node expiry) is one
Lua script, so it is all-or-nothing and serialised with every other change; snapshot and
restore are MULTI/EXEC transactions guarded by WATCH. No command scans the key space: every
key is reached through a fixed name or an index. Scripts are written to be safe to re-run,
because a connection lost after the server ran a script makes the client retry it.

Durability under failover: Redis replicates asynchronously, so a write acknowledged by a
master that dies the next instant may be missing on the promoted replica. When the master
has replicas, every write is followed by ``WAIT 1`` on the same connection; a write no
replica confirmed raises ``Unavailable`` (the flusher keeps the rows in its WAL and retries).
A master with no replica attached skips the wait (there is nothing to fail over to).

Errors: connection failures, timeouts and a missing master become ``Unavailable`` with the
address in the message; a rejected password becomes ``Unauthenticated``; a key of the wrong
type or an undecodable entry becomes ``Internal`` naming the key ("corrupt metadata").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from clients.errors import (
    AlreadyExists,
    Conflict,
    Internal,
    InvalidRequest,
    MinioDBError,
    NotFound,
    Unauthenticated,
    Unavailable,
)

from .base import (
    FileEntry,
    FilesChanged,
    MetadataStore,
    NodeInfo,
    TableInfo,
    WatermarkFenced,
)
from .redis_backup import RedisBackup
from .redis_batches import RedisBatchClaims
from .redis_leases import RedisLeases
from .redis_lua import COMMIT, CREATE, DROP, LIVE_NODES, UPDATE, parse_redis_url
from .redis_versions import RedisVersions

__all__ = ["RedisMetadataStore", "parse_redis_url"]

REPLICA_ACK_MS = 2000  # how long a write waits for one replica to confirm it
REPLICA_REFRESH_SECONDS = 2.0  # how often the number of attached replicas is re-read

def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


class RedisMetadataStore(RedisBatchClaims, RedisLeases, RedisBackup, RedisVersions, MetadataStore):
    """The :class:`MetadataStore` contract over one Redis database (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        url: str,
        where: str,
        prefix: str = "miniodb",
        clock: Callable[[], float] = time.time,
        sentinel: Sentinel | None = None,
        replica_ack_ms: int = REPLICA_ACK_MS,
    ):
        if not prefix or any(c in prefix for c in " \r\n"):
            raise InvalidRequest(f"invalid Redis key prefix {prefix!r}")
        self._r = client
        self._sentinel = sentinel
        self.url = url
        self._where = where
        self._clock = clock
        self._ack_ms = replica_ack_ms
        self._replicas = (0, -1e9)  # (attached replicas, monotonic time read)
        self._replica_lock = threading.Lock()
        p = prefix
        self.prefix = p
        self.k_tables, self.k_ids, self.k_versions = f"{p}:tables", f"{p}:ids", f"{p}:versions"
        self.k_manifests, self.k_watermarks, self.k_counters = f"{p}:manifests", f"{p}:watermarks", f"{p}:counters"
        self.k_dropped = f"{p}:dropped"  # table_id -> name: tombstones of dropped incarnations
        self.k_nodes, self.k_expiry = f"{p}:nodes", f"{p}:nodes:expiry"
        self.k_sync = f"{p}:sync"  # replication marker written before WAIT
        self.k_logs, self.k_garbage = f"{p}:logs", f"{p}:garbage"
        self._create = client.register_script(CREATE)
        self._update = client.register_script(UPDATE)
        self._drop = client.register_script(DROP)
        self._commit = client.register_script(COMMIT)
        self._live = client.register_script(LIVE_NODES)
        self._init_batches(client)
        self._init_leases(client)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, settings: Any = None, clock: Callable[[], float] = time.time,
                 **kwargs) -> RedisMetadataStore:
        """Connect as ``url`` says; ``settings`` is a RedisSettings (password, prefix, timeouts)."""
        parts = parse_redis_url(url)
        password = (getattr(settings, "password", "") or parts["password"]) or None
        timeout = float(getattr(settings, "socket_timeout", 5.0) or 5.0)
        prefix = getattr(settings, "prefix", "") or "miniodb"
        # A few quick retries ride over a dropped connection or a failover in progress; longer
        # outages surface as Unavailable so callers (flusher, queries) decide what to do.
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2)
        common = {"db": parts["db"], "password": password, "socket_timeout": timeout,
                  "socket_connect_timeout": min(timeout, 2.0), "retry": retry,
                  "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
                  "decode_responses": True, "health_check_interval": 10}
        if parts["mode"] == "standalone":
            client = redis.Redis(parts["host"], parts["port"], **common)
            where = f"{parts['host']}:{parts['port']}"
            clean = f"redis://{where}/{parts['db']}"
            return cls(client, url=clean, where=f"Redis at {where}", prefix=prefix, clock=clock, **kwargs)
        sentinel_password = getattr(getattr(settings, "sentinel", None), "password", "") or None
        sentinel = Sentinel(
            parts["sentinels"],
            # one quick try per sentinel: the next sentinel is the retry (redis-py's default would
            # retry each dead sentinel ten times with backoff, ~10 s each)
            sentinel_kwargs={"password": sentinel_password, "socket_timeout": min(timeout, 2.0),
                             "socket_connect_timeout": min(timeout, 2.0), "decode_responses": True,
                             "retry": Retry(NoBackoff(), 0)},
        )
        client = sentinel.master_for(parts["master"], **common)
        addrs = ",".join(f"{h}:{p}" for h, p in parts["sentinels"])
        clean = f"redis+sentinel://{addrs}/{parts['master']}/{parts['db']}"
        where = f"Redis master {parts['master']!r} (sentinels {addrs})"
        return cls(client, url=clean, where=where, prefix=prefix, clock=clock, sentinel=sentinel, **kwargs)

    def __repr__(self) -> str:
        return f"RedisMetadataStore({self.url!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> redis.Redis:
        """The connection, for features that keep their own keys under :attr:`prefix` (leases)."""
        return self._r

    # -- plumbing ----------------------------------------------------------------------
    def k_files(self, table: str) -> str:
        return f"{self.prefix}:files:{table}"

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Translate redis-py failures into the project's errors, with the address."""
        try:
            yield
        except MinioDBError:
            raise
        except redis.AuthenticationError as exc:
            raise Unauthenticated(f"{self._where} rejected the credentials ({_reason(exc)}); "
                                  "check redis.password") from exc
        except MasterNotFoundError as exc:
            raise Unavailable(f"metadata store unavailable: no master found for {self._where}") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(f"metadata store unavailable: {self._where} did not answer while "
                              f"trying to {what} ({_reason(exc)})") from exc
        except redis.exceptions.ReadOnlyError as exc:
            raise Unavailable(f"metadata store unavailable: {self._where} is a read-only replica "
                              f"(failover in progress?) while trying to {what}") from exc
        except redis.ResponseError as exc:
            text = str(exc)
            if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                raise Unauthenticated(f"{self._where} refused access ({_reason(exc)}); check redis.password") from exc
            if text.startswith("WRONGTYPE"):
                raise Internal(f"corrupt metadata: a key under {self.prefix!r} has the wrong type "
                               f"while trying to {what}; restore the metadata from a backup") from exc
            raise Internal(f"metadata store error while trying to {what}: {_reason(exc)}") from exc
        except redis.RedisError as exc:
            raise Unavailable(f"metadata store unavailable ({self._where}): {_reason(exc)}") from exc

    def _decode(self, raw: str, what: str) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Internal(f"corrupt metadata: {what} is not valid JSON; restore the metadata from a backup") from exc

    def _table(self, raw: str, name: str) -> TableInfo:
        try:
            return TableInfo.from_json(self._decode(raw, f"the definition of table {name!r}"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, MinioDBError):
                raise
            raise Internal(f"corrupt metadata: the definition of table {name!r} cannot be read; "
                           "restore the metadata from a backup") from exc

    def _entry(self, raw: str, table: str) -> FileEntry:
        try:
            return FileEntry.from_json(self._decode(raw, f"a file entry of table {table!r}"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, MinioDBError):
                raise
            raise Internal(f"corrupt metadata: a file entry of table {table!r} cannot be read") from exc

    def _attached_replicas(self) -> int:
        now = time.monotonic()
        with self._replica_lock:
            count, read_at = self._replicas
            if now - read_at < REPLICA_REFRESH_SECONDS:
                return count
        info = self._r.info("replication")
        count = int(info.get("connected_slaves", 0) or 0) if info.get("role", "master") == "master" else 0
        with self._replica_lock:
            self._replicas = (count, now)
        return count

    def _write(self, what: str, fn: Callable[[redis.Redis], Any]) -> Any:
        """Run the write ``fn(client)``; if the master has replicas, wait until one confirms it.

        The wait is a tiny write plus ``WAIT 1`` on one connection: the replication stream is
        ordered, so a replica that acknowledged the marker also holds every earlier write,
        whichever pooled connection made it.
        """
        with self._guard(what):
            result = fn(self._r)
            if self._attached_replicas() > 0:
                pipe = self._r.pipeline(transaction=False)
                pipe.set(self.k_sync, "1")
                pipe.execute_command("WAIT", 1, self._ack_ms)
                _, acked = pipe.execute()
                if int(acked) < 1:
                    with self._replica_lock:
                        self._replicas = (0, -1e9)  # re-read the replica count next time
                    raise Unavailable(f"metadata store unavailable: no replica of {self._where} confirmed "
                                      f"the write within {self._ack_ms} ms while trying to {what}")
            return result

    # -- tables ------------------------------------------------------------------------
    def create_table(self, info: TableInfo) -> TableInfo:
        keys = [self.k_tables, self.k_ids, self.k_versions, self.k_counters, self.k_files(info.name),
                self.k_manifests]
        args = [info.name, info.table_id, orjson.dumps(info.to_json()).decode()]
        res = self._write(f"create table {info.name!r}", lambda c: self._create(keys=keys, args=args))
        if res[0] == "exists":
            raise AlreadyExists(f"table {info.name!r} already exists")
        return info

    def get_table(self, name: str) -> TableInfo | None:
        with self._guard(f"read table {name!r}"):
            raw = self._r.hget(self.k_tables, name)
        return self._table(raw, name) if raw is not None else None

    def list_tables(self) -> list[TableInfo]:
        with self._guard("list tables"):
            items = self._r.hgetall(self.k_tables)
        return [self._table(raw, name) for name, raw in sorted(items.items())]

    def update_table(self, info: TableInfo, expected_schema_version: int) -> TableInfo:
        keys = [self.k_tables, self.k_ids, self.k_versions, self.k_counters]
        args = [info.name, info.table_id, int(expected_schema_version), int(info.schema_version),
                orjson.dumps(info.to_json()).decode()]
        res = self._write(f"update table {info.name!r}", lambda c: self._update(keys=keys, args=args))
        if res[0] == "notfound":
            raise NotFound(f"table {info.name!r} not found")
        if res[0] == "conflict":
            raise Conflict(f"table {info.name!r} was changed concurrently (schema version {res[1]})")
        if res[0] == "corrupt":
            raise Internal(f"corrupt metadata: the definition of table {info.name!r} cannot be read; "
                           "restore the metadata from a backup")
        return info

    def drop_table(self, name: str) -> list[FileEntry]:
        keys = [self.k_tables, self.k_ids, self.k_versions, self.k_files(name), self.k_manifests,
                self.k_watermarks, self.k_dropped]
        res = self._write(f"drop table {name!r}", lambda c: self._drop(keys=keys, args=[name]))
        if res[0] == "notfound":
            raise NotFound(f"table {name!r} not found")
        entries = []
        for raw in res[1:]:
            try:
                entries.append(self._entry(raw, name))
            except Internal:
                continue  # the table is gone; an unreadable entry only means an object is not deleted
        return sorted(entries, key=lambda f: f.key)

    # -- manifest ----------------------------------------------------------------------
    def commit_files(self, table, table_id, add, remove=(), watermark=None, batches=None, since=None,
                     strict=False, operation="commit") -> int:
        add = list(add)
        remove = list(remove)
        keys = [self.k_ids, self.k_versions, self.k_counters, self.k_files(table), self.k_manifests,
                self.k_watermarks, self.k_log(table_id), self.k_log_base(table_id), self.k_logs]
        fence = int(since) if since is not None and watermark is not None else 0  # WAL sequences start at 1
        args: list[Any] = [table, table_id, fence, "1" if strict else "0", len(add)]
        for f in add:
            args += [f.key, orjson.dumps(f.to_json()).decode()]
        args.append(len(remove))
        args += remove
        if watermark is not None:
            args += [f"{watermark[0]}|{table_id}", int(watermark[1])]
        else:
            args += ["", 0]
        args += [repr(round(float(self._clock()), 6)), operation or "commit"]  # microseconds, as shown
        batch_keys, batch_args = self.commit_batch_args(batches)
        keys += batch_keys
        args += batch_args
        res = self._write(f"commit files of table {table!r}", lambda c: self._commit(keys=keys, args=args))
        if res[0] == "notfound":
            raise NotFound(f"table {table!r} not found (dropped or re-created)")
        if res[0] == "fenced":
            raise WatermarkFenced(f"rows of node {watermark[0]!r} in table {table!r} up to WAL sequence "
                                  f"{int(res[1])} are committed already", int(res[1]))
        if res[0] == "changed":
            missing = sorted(str(k) for k in res[1:])
            raise FilesChanged(f"{len(missing)} file(s) of table {table!r} were replaced meanwhile", missing)
        return int(res[1])

    def list_files(self, table: str) -> list[FileEntry]:
        with self._guard(f"read the manifest of table {table!r}"):
            raws = self._r.hvals(self.k_files(table))
        entries = [self._entry(raw, table) for raw in raws]
        entries.sort(key=lambda f: f.key)
        return entries

    def data_version(self, table: str) -> int:
        return self.data_versions([table])[0]

    def data_versions(self, tables: Sequence[str]) -> list[int]:
        with self._guard(f"read the data version of table {tables[0]!r}" if len(tables) == 1 else
                         "read the data versions of tables"):
            raws = self._r.hmget(self.k_versions, list(tables)) if tables else []
        try:
            return [int(raw) if raw is not None else 0 for raw in raws]
        except ValueError as exc:
            raise Internal("corrupt metadata: the data version of a table is not a number") from exc

    def was_dropped(self, table_id: str) -> bool:
        with self._guard("read a table tombstone"):
            return bool(self._r.hexists(self.k_dropped, table_id))

    def get_watermark(self, node_id: str, table_id: str) -> int:
        with self._guard("read a WAL watermark"):
            raw = self._r.hget(self.k_watermarks, f"{node_id}|{table_id}")
        return int(raw) if raw is not None else 0

    # -- counters ----------------------------------------------------------------------
    def next_sequence(self, name: str, count: int = 1) -> int:
        if count < 1:
            raise InvalidRequest("count must be positive")
        return int(self._write(f"advance counter {name!r}",
                               lambda c: c.hincrby(self.k_counters, name, int(count))))

    # -- nodes -------------------------------------------------------------------------
    def register_node(self, node: NodeInfo, ttl: float) -> None:
        now = self._clock()
        info = NodeInfo(**{**node.to_json(), "last_seen": now})
        with self._guard(f"register node {node.node_id!r}"):
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(self.k_nodes, node.node_id, orjson.dumps(info.to_json()).decode())
            pipe.zadd(self.k_expiry, {node.node_id: now + float(ttl)})
            pipe.execute()

    def unregister_node(self, node_id: str) -> None:
        with self._guard(f"unregister node {node_id!r}"):
            pipe = self._r.pipeline(transaction=True)
            pipe.zrem(self.k_expiry, node_id)
            pipe.hdel(self.k_nodes, node_id)
            pipe.execute()

    def live_nodes(self) -> list[NodeInfo]:
        with self._guard("list live nodes"):
            raws = self._live(keys=[self.k_nodes, self.k_expiry], args=[repr(float(self._clock()))])
        nodes = []
        for raw in raws:
            if raw is None:
                continue  # expiry entry without info: a node that is being unregistered
            try:
                nodes.append(NodeInfo.from_json(orjson.loads(raw)))
            except (orjson.JSONDecodeError, TypeError):
                continue
        return sorted(nodes, key=lambda n: n.node_id)

    # -- lifecycle ---------------------------------------------------------------------
    def check(self) -> None:
        with self._guard("check the connection"):
            self._r.ping()

    def close(self) -> None:
        try:
            self._r.close()
        except redis.RedisError:
            pass
        if self._sentinel is not None:
            for s in self._sentinel.sentinels:
                try:
                    s.close()
                except redis.RedisError:
                    pass
