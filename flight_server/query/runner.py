"""Run one client statement: result cache, query log, metrics and statistics around the engine.

``QueryRunner.run(statement, params)`` is what the node's ``query`` does:

1. take the statement's analysis (:func:`~flight_server.query.statement.statement`, parsed
   once per text); open a :class:`~flight_server.querylog.QueryRecord` (principal of the call);
2. with the result cache on, build the exact key (below) and answer a hit from the cache;
3. otherwise execute in DuckDB (:class:`~flight_server.query.engine.QueryEngine`);
4. hand back the result with its end hooks: whoever reads it reports the rows and bytes
   (``complete``), so the record finishes (statistics, trailers) and a cacheable result of
   bounded size fills the cache, without a Python step per batch on the Flight path.

``QueryRunner.schema`` answers a statement's result schema without reading data, cached by
statement and the (table id, schema version) of every table it reads: a schema only changes
with them, and clients prepare the same statements again and again.

The cache key: the statement's digest (its normalised parse tree), the parameters with their
types, and for every table read ``(table_id, schema_version, data_version)`` plus, if this
node buffers rows of it, ``(buffer identity, buffer version)``. Statements that are not
deterministic and statements over ``system.*`` tables are never cached (``cacheable``).

The key is read *before* the statement executes. Every component only moves forward
(versions never go back, not even across a metadata restore; a buffer gets a new identity
when recreated), so the answer, computed at a state at least as new as the key, can only be
looked up again by a query that finds exactly that state — when it is still the right
answer. Read after execution, a concurrent write could file an older answer under a newer
key; read before, it cannot.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa

from clients.errors import Internal, MinioDBError, Unavailable

from ..buffer import BufferManager, TableBuffer
from ..catalog import Catalog
from ..metrics import Metrics
from ..querylog import QueryLog, QueryRecord, track
from ..result_cache import CacheKey, ResultCache
from .engine import QueryEngine, QueryResult
from .statement import Statement, as_statement

log = logging.getLogger("miniodb.query")

SCHEMA_CACHE_SIZE = 4096
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?!ANALY[SZ]E\b)", re.I)
_generation = itertools.count(1)


def _params_key(params: Any) -> Any:
    if params is None:
        return None
    if isinstance(params, dict):
        return sorted((str(k), type(v).__name__, repr(v)) for k, v in params.items())
    if isinstance(params, list | tuple):
        return [(type(v).__name__, repr(v)) for v in params]
    return (type(params).__name__, repr(params))


def buffer_generation(buf: TableBuffer) -> int:
    """A process-unique identity of a buffer object (its version restarts with a new object)."""
    gen = buf.__dict__.get("_result_cache_generation")
    if gen is None:
        gen = buf.__dict__.setdefault("_result_cache_generation", next(_generation))
    return gen


class QueryRunner:
    def __init__(self, engine: QueryEngine, resolve: Callable, catalog: Catalog, buffers: BufferManager,
                 querylog: QueryLog, metrics: Metrics, cache: ResultCache | None = None,
                 scope: Callable[[], Any] = lambda: None,
                 translate: Callable[[BaseException], MinioDBError] | None = None, coordinator: Any = None):
        self.engine = engine
        self.resolve = resolve
        self.catalog = catalog
        self.buffers = buffers
        self.log = querylog
        self.metrics = metrics
        self.cache = cache
        self.scope = scope
        self.translate = translate
        self.coordinator = coordinator  # coordinator.Coordinator: SELECTs over every live node
        self._schemas: dict[tuple, pa.Schema] = {}  # see schema()
        self._lock = threading.Lock()
        self._durations: dict[str, Any] = {}  # statement kind -> its query_duration child

    def cache_key(self, st: Statement, params: Any, session: Any = None) -> CacheKey | None:
        """The exact key of a cacheable SELECT, or None (read before execution: see module doc).
        A distributed query's key holds every pinned buffer (``session.signature()``), not only
        this node's; its committed versions are read before the pins (``_key_parts``)."""
        parts = self._key_parts(st, params) if session is None else session.key_parts
        if parts is None:
            return None
        parts, shared = list(parts[0]), parts[1]
        if session is not None:
            parts.append(session.signature())
            shared = shared and not session.buffered
        raw = orjson.dumps(parts, default=repr)
        return CacheKey(hashlib.sha256(raw).hexdigest(), shared)

    def _key_parts(self, st: Statement, params: Any, local: bool = True) -> tuple[list, bool] | None:
        if st.kind != "SELECT" or not st.cacheable:
            return None
        parts: list[Any] = [st.digest, _params_key(params)]
        shared = True
        for name in st.tables:
            try:
                m = self.catalog.manifest(name)
            except Unavailable:
                return None  # the engine reports it; nothing is cached in an outage
            if m is None:
                return None  # NotFound comes from the engine
            info = m.info
            parts.append((info.name, info.table_id, info.schema_version, m.version))
            if not local:
                continue
            with self.buffers.lock:
                buf = self.buffers.get(info.name)
                if buf is not None and buf.table_id == info.table_id and buf.rows:
                    parts.append((buffer_generation(buf), buf.version))
                    shared = False
        return parts, shared

    # -- running -------------------------------------------------------------------------
    def run(self, sql: str | Statement, params: Any = None) -> QueryResult:
        try:
            st = as_statement(sql)
        except MinioDBError as err:
            self.metrics.errors.labels(code=err.code).inc()
            raise
        kind = st.kind
        scope = self.scope()
        nparams = len(params) if isinstance(params, list | tuple | dict) else 0
        record = self.log.start(st.sql, kind, principal=getattr(scope, "principal", "") or "", params=nparams)
        started = time.perf_counter()
        session = None
        try:
            if self.coordinator is not None and kind == "EXPLAIN":
                explained = self._explain(st)
                if explained is not None:
                    record.executed({}, False)
                    return self._tracked(explained, record, None)
            # a distributed query: the committed versions are read before the pins (the key's rule)
            parts = None
            if self.coordinator is not None and self.cache is not None:
                parts = self._key_parts(st, params, local=False)
            if self.coordinator is not None:
                session = self.coordinator.begin(st, params)
            if session is not None:
                session.key_parts = parts
            key = self.cache_key(st, params, session) if self.cache is not None else None
            hit = self.cache.get(key) if key is not None and self.cache is not None else None
            if hit is not None:
                if session is not None:
                    self.coordinator.release(session)
                result = QueryResult(hit.table.to_reader(), kind, {"cache_hit": True, "shared_hit": hit.shared},
                                     table=hit.table)
            elif session is not None:
                result = self.coordinator.execute(session)
            else:
                result = self.engine.execute(st, params, self.resolve)
        except Exception as exc:
            err = self._error(exc)
            record.fail(err.code)
            self.metrics.errors.labels(code=err.code).inc()
            if err is exc:
                raise
            raise err from exc
        m = self.metrics
        duration = self._durations.get(kind)
        if duration is None:  # prometheus looks the child up under a lock on every labels()
            duration = self._durations.setdefault(kind, m.query_duration.labels(kind=kind.lower()))
        duration.observe(time.perf_counter() - started)
        if key is not None:
            if hit is not None:
                m.query_cache_hit.inc()
                if hit.shared:
                    m.query_cache_shared_hit.inc()
            else:
                m.query_cache_miss.inc()
        if hit is not None:
            record.executed({}, True, rows=hit.table.num_rows, nbytes=hit.table.nbytes)
        else:
            record.executed(result.stats, False)
            if result.stats.get("plain_scan"):
                m.query_plain_scans.inc()
            if result.stats.get("bytes_fetched"):
                m.object_store_read_bytes.inc(result.stats["bytes_fetched"])
        result.stats["query_id"] = record.query_id
        result.stats["cache_hit"] = hit is not None
        return self._tracked(result, record, key if hit is None else None)

    def _explain(self, st: Statement) -> QueryResult | None:
        """EXPLAIN of a distributed SELECT: the distributed plan (None: DuckDB's EXPLAIN)."""
        m = _EXPLAIN.match(st.sql)
        if m is None:
            return None
        inner = as_statement(st.sql[m.end():])
        session = self.coordinator.begin(inner)
        if session is None:
            return None
        table = self.coordinator.explain(session)
        return QueryResult(table.to_reader(), st.kind, {}, table=table)

    def _tracked(self, result: QueryResult, record: QueryRecord, fill: CacheKey | None) -> QueryResult:
        """Attach the end hooks: the record finishes (metrics, trailers), the cache fills."""
        cache = self.cache if fill is not None else None
        limit = cache.entry_max_bytes if cache is not None else 0
        schema = result.schema

        def complete(rows: int, nbytes: int, batches: list[pa.RecordBatch] | None = None) -> None:
            if cache is not None and batches is not None and nbytes <= limit:
                try:
                    cache.put(fill, schema, batches)
                except Exception:  # noqa: BLE001 - the cache is an optimisation
                    log.exception("result cache fill failed")
            record.finish(rows, nbytes)

        def failed(exc: BaseException) -> None:
            record.fail(self._error(exc).code)

        def counted(res: QueryResult) -> pa.RecordBatchReader:
            collect = None if cache is None else (lambda batches: cache.put(fill, schema, batches))
            return track(res.source, record, collect, limit, lambda exc: self._error(exc).code)

        record.on_end(self._count)
        inner_close = result._close

        def close() -> None:
            record.closed()  # no-op once finished or failed
            inner_close()

        result._close = close
        result.record = record
        result.keep_bytes = limit
        result.complete, result.failed, result.counted = complete, failed, counted
        return result

    # -- result schemas ------------------------------------------------------------------
    def schema(self, sql: str | Statement, params: Any = None) -> pa.Schema:
        """Result schema of a query without reading data: its tables bind empty (no files, no
        buffer). Cached by statement shape (its tree, filter literals erased: a point lookup
        with another key is a hit) and table schema versions (see the module doc)."""
        st = as_statement(sql)
        key = None
        if params is None and st.cacheable and st.shape:
            versions = []
            for name in st.tables:
                info = self.catalog.find(name)
                if info is None:
                    break
                versions.append((info.table_id, info.schema_version))
            else:
                key = (st.shape, tuple(versions))
                cached = self._schemas.get(key)
                if cached is not None:
                    return cached
        result = self.engine.execute(st, params, lambda name, sets: self.resolve(
            name, sets, files=(), include_buffer=False), schema_only=True)
        try:
            schema = result.schema
        finally:
            result.close()
        if key is not None:
            with self._lock:
                if len(self._schemas) >= SCHEMA_CACHE_SIZE:
                    self._schemas.pop(next(iter(self._schemas)), None)
                self._schemas[key] = schema
        return schema

    def _count(self, record: QueryRecord) -> None:
        self.metrics.query_rows.inc(record.rows or 0)
        self.metrics.query_bytes.inc(record.bytes or 0)

    def _error(self, exc: BaseException) -> MinioDBError:
        if isinstance(exc, MinioDBError):
            return exc
        if self.translate is not None:
            return self.translate(exc)
        return Internal("internal error")
