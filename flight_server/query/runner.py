"""Run one client statement: result cache, query log, metrics and statistics around the engine.

``QueryRunner.run(sql, params)`` is what the node's ``query`` does:

1. classify; open a :class:`~flight_server.querylog.QueryRecord` (principal of the call);
2. with the result cache on, build the exact key (below) and answer a hit from the cache;
3. otherwise execute in DuckDB (:class:`~flight_server.query.engine.QueryEngine`);
4. wrap the reader so rows/bytes are counted while it streams; at its end the record
   finishes (statistics, trailers) and a cacheable result of bounded size fills the cache.

The cache key: DuckDB's ``json_serialize_sql`` tree of the statement (positions removed:
whitespace and keyword case do not matter, literals do), the parameters with their types,
and for every table read ``(table_id, schema_version, data_version)`` plus, if this node
buffers rows of it, ``(buffer identity, buffer version)``. Statements that are not
deterministic (``random()``, ``now()``, ``current_date``, sampling, ...) and statements over
``system.*`` tables are never cached.

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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from clients.errors import MinioDBError, Unavailable

from ..buffer import BufferManager, TableBuffer
from ..catalog import Catalog
from ..metrics import Metrics
from ..querylog import QueryLog, QueryRecord, track
from ..result_cache import CacheKey, ResultCache
from .analyze import analyze
from .engine import QueryEngine, QueryResult, classify

log = logging.getLogger("miniodb.query")

# Functions whose value changes between calls: a statement using one is never cached.
VOLATILE_FUNCTIONS = frozenset({
    "random", "rand", "setseed", "gen_random_uuid", "uuid", "uuidv4", "uuidv7", "now", "get_current_time",
    "get_current_timestamp", "current_timestamp", "transaction_timestamp", "statement_timestamp",
    "current_date", "current_time", "today", "localtime", "localtimestamp", "current_localtime",
    "current_localtimestamp", "nextval", "currval", "current_query", "current_setting",
    "get_current_date", "epoch_ms_now",
})
# SQL special values that DuckDB parses as column references
VOLATILE_NAMES = frozenset({"current_timestamp", "current_date", "current_time", "localtime", "localtimestamp",
                            "current_localtimestamp", "current_localtime"})
_STRIP = frozenset({"query_location", "query_location_length"})
_generation = itertools.count(1)


@dataclass(frozen=True)
class Statement:
    digest: str  # normalised statement
    tables: tuple[str, ...]  # base tables read (unqualified names)
    cacheable: bool


def _scan(obj: Any, found: dict) -> Any:
    """Copy of the parse tree without positions; notes volatile functions and sampling."""
    if isinstance(obj, list):
        return [_scan(x, found) for x in obj]
    if not isinstance(obj, dict):
        return obj
    cls = obj.get("class")
    if cls == "FUNCTION" and str(obj.get("function_name", "")).lower() in VOLATILE_FUNCTIONS:
        found["volatile"] = True
    elif cls == "COLUMN_REF":
        names = obj.get("column_names") or []
        if len(names) == 1 and str(names[0]).lower() in VOLATILE_NAMES:
            found["volatile"] = True
    if obj.get("sample") not in (None, {}):
        found["volatile"] = True
    return {k: _scan(v, found) for k, v in obj.items() if k not in _STRIP}


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
                 translate: Callable[[BaseException], MinioDBError] | None = None):
        self.engine = engine
        self.resolve = resolve
        self.catalog = catalog
        self.buffers = buffers
        self.log = querylog
        self.metrics = metrics
        self.cache = cache
        self.scope = scope
        self.translate = translate
        self._statements: dict[str, Statement] = {}
        self._lock = threading.Lock()

    # -- statements ----------------------------------------------------------------------
    def statement(self, sql: str) -> Statement:
        """Normalised form and tables of a SELECT (cached by text)."""
        st = self._statements.get(sql)
        if st is not None:
            return st
        cur = self.engine.cursor()
        try:
            text = cur.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
        finally:
            cur.close()
        tree = orjson.loads(text)
        if tree.get("error"):
            st = Statement("", (), False)
        else:
            found: dict = {}
            clean = _scan(tree.get("statements", []), found)
            analysis = analyze(tree)
            digest = hashlib.sha256(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)).hexdigest()
            st = Statement(digest, tuple(sorted(ref.name for ref in analysis.tables.values())),
                           not found.get("volatile") and not analysis.qualified)
        with self._lock:
            if len(self._statements) >= 4096:
                self._statements.pop(next(iter(self._statements)), None)
            self._statements[sql] = st
        return st

    def cache_key(self, sql: str, params: Any, kind: str) -> CacheKey | None:
        """The exact key of a cacheable SELECT, or None (read before execution: see module doc)."""
        if kind != "SELECT":
            return None
        st = self.statement(sql)
        if not st.cacheable:
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
            with self.buffers.lock:
                buf = self.buffers.get(info.name)
                if buf is not None and buf.table_id == info.table_id and buf.rows:
                    parts.append((buffer_generation(buf), buf.version))
                    shared = False
        raw = orjson.dumps(parts, default=repr)
        return CacheKey(hashlib.sha256(raw).hexdigest(), shared)

    # -- running -------------------------------------------------------------------------
    def run(self, sql: str, params: Any = None) -> QueryResult:
        try:
            kind, _ = classify(sql)
        except MinioDBError as err:
            self.metrics.errors.labels(code=err.code).inc()
            raise
        scope = self.scope()
        nparams = len(params) if isinstance(params, list | tuple | dict) else 0
        record = self.log.start(sql, kind, principal=getattr(scope, "principal", "") or "", params=nparams)
        started = time.perf_counter()
        try:
            key = self.cache_key(sql, params, kind) if self.cache is not None else None
            hit = self.cache.get(key) if key is not None and self.cache is not None else None
            if hit is not None:
                result = QueryResult(hit.table.to_reader(), kind, {"cache_hit": True, "shared_hit": hit.shared})
            else:
                result = self.engine.execute(sql, params, self.resolve, kind=kind)
        except Exception as exc:
            err = self._error(exc)
            record.fail(err.code)
            self.metrics.errors.labels(code=err.code).inc()
            if err is exc:
                raise
            raise err from exc
        m = self.metrics
        m.query_duration.labels(kind=kind.lower()).observe(time.perf_counter() - started)
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
            if result.stats.get("bytes_fetched"):
                m.object_store_read_bytes.inc(result.stats["bytes_fetched"])
        result.stats["query_id"] = record.query_id
        result.stats["cache_hit"] = hit is not None
        return self._tracked(result, record, key if hit is None else None)

    def _tracked(self, result: QueryResult, record: QueryRecord, fill: CacheKey | None) -> QueryResult:
        schema = result.reader.schema
        collect = None
        if fill is not None and self.cache is not None:
            cache = self.cache

            def collect(batches: list[pa.RecordBatch]) -> None:
                cache.put(fill, schema, batches)

        def code_of(exc: BaseException) -> str:
            return self._error(exc).code

        reader = track(result.reader, record, collect,
                       self.cache.entry_max_bytes if self.cache is not None else 0, code_of)
        record.on_end(self._count)
        inner_close = result._close

        def close() -> None:
            record.closed()  # no-op once finished or failed
            inner_close()

        tracked = QueryResult(reader, result.kind, result.stats, close, interrupt=result.interrupt)
        tracked.record = record
        return tracked

    def _count(self, record: QueryRecord) -> None:
        self.metrics.query_rows.inc(record.rows or 0)
        self.metrics.query_bytes.inc(record.bytes or 0)

    def _error(self, exc: BaseException) -> MinioDBError:
        if isinstance(exc, MinioDBError):
            return exc
        if self.translate is not None:
            return self.translate(exc)
        from clients.errors import Internal

        return Internal("internal error")
