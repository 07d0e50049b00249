"""The DuckDB engine: one shared database, one sandboxed cursor per request, Arrow streams out.

For each request the engine takes the statement's analysis (:mod:`.statement`: its kind and
the tables it reads, parsed once per text), asks the resolver for each table's committed
Parquet files (pruned) and this node's buffer, binds them as temporary views on the request's
own cursor and streams the result with DuckDB's Arrow record batch reader.

The database is locked down before any user SQL runs: no file system access outside the
object/cache folders, no extension install or load, configuration locked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from clients.errors import InvalidRequest, NotFound

from .. import client_types
from ..metadata.base import TableInfo
from ..statements import refuse
from ..stats import bind_params
from .cursors import CursorPool, set_files
from .cursors import lit as _lit
from .cursors import quote as _quote
from .direct import DirectRuns
from .hot import SCHEMA as HOT_SCHEMA
from .hot import HotTables
from .plain_scan import PlainScans
from .statement import Statement, as_statement

log = logging.getLogger("miniodb.query")

BATCH_TARGET_BYTES = 4 * 1024 * 1024  # result batches stay far below gRPC's 16 MiB message cap
_FIXED_WIDTH = {"BOOLEAN": 1, "TINYINT": 1, "UTINYINT": 1, "SMALLINT": 2, "USMALLINT": 2, "INTEGER": 4,
                "UINTEGER": 4, "FLOAT": 4, "DATE": 4, "BIGINT": 8, "UBIGINT": 8, "DOUBLE": 8, "TIME": 8,
                "HUGEINT": 16, "UHUGEINT": 16, "UUID": 16, "INTERVAL": 16}


def batch_rows_for(types: Sequence[Any], max_rows: int, target_bytes: int = BATCH_TARGET_BYTES) -> int:
    """Rows per result batch so one batch is about ``target_bytes`` (estimated from the types)."""
    width = 0
    for t in types:
        name = str(t).upper()
        fixed = _FIXED_WIDTH.get(name)
        if fixed is None:
            fixed = 8 if name.startswith(("TIMESTAMP", "DECIMAL", "ENUM")) else 256 if name.endswith(
                ("]", ")")) or name.startswith(("STRUCT", "MAP", "UNION", "LIST")) else 64
        width += fixed + 1
    return max(1024, min(max_rows, target_bytes // max(width, 1)))


@dataclass
class ResolvedTable:
    name: str
    columns: list[tuple[str, str]]  # (name, DuckDB type)
    paths: list[str]  # local Parquet files to read
    file_columns: set[str]  # lower-cased columns present in at least one file
    buffer: pa.Table | None
    files_total: int = 0
    files_scanned: int = 0
    bytes_fetched: int = 0
    release: Callable[[], None] = lambda: None
    file_bytes: int = 0  # size of the selected Parquet objects
    hot: str | None = None  # the in-memory copy of those files read instead (query/hot.py)
    duration_units: dict[str, str] = field(default_factory=dict)  # Arrow duration columns (Parquet: int64)
    sort_key: tuple[str, ...] = ()  # the table's declared sort key (layout.py): its hot copy is kept in that order


def _noop(*_: Any) -> None:
    return None


@dataclass(eq=False)
class QueryResult:
    """A statement's result: ``source`` is the C++ reader (DuckDB's, or a cached table's).

    Whoever reads the result reports its end: :meth:`complete` with the rows and bytes read
    (and the batches, when they were kept: the result cache may take them), :meth:`failed`
    when reading raised; :meth:`close` releases the cursor (a result closed before either
    counts as cancelled). The Flight server reads ``source`` without a Python step per batch
    where it can (:mod:`flight_server.flightsql.results`). ``reader`` is for in-process
    consumers (INSERT ... SELECT): ``source`` counted as it is read, reporting its own end.
    """

    source: pa.RecordBatchReader
    kind: str
    stats: dict[str, Any] = field(default_factory=dict)
    _close: Callable[[], None] = _noop
    interrupt: Callable[[], None] = _noop  # stops the running query (cancellation)
    record: Any = None  # querylog.QueryRecord (statistics), set by the query runner
    table: pa.Table | None = None  # the whole result, when it is in memory already (cache hit)
    keep_bytes: int = 0  # a result up to this size is worth handing back in complete() (cache fill)
    complete: Callable[[int, int, list[pa.RecordBatch] | None], None] = _noop
    failed: Callable[[BaseException], None] = _noop
    counted: Callable[[QueryResult], pa.RecordBatchReader] | None = None
    _reader: pa.RecordBatchReader | None = None

    @property
    def schema(self) -> pa.Schema:
        return self.source.schema

    @property
    def reader(self) -> pa.RecordBatchReader:
        if self._reader is None:
            self._reader = self.counted(self) if self.counted is not None else self.source
        return self._reader

    def close(self) -> None:
        self._close()


_DURATION_TO_US = {"s": " * 1000000", "ms": " * 1000", "us": "", "ns": " // 1000"}


def _file_cast(column: str, duckdb_type: str, duration_unit: str | None) -> str:
    """A Parquet column in the table's type. Arrow durations are stored as int64 in Parquet
    (DuckDB reads BIGINT, which does not cast to INTERVAL): counted back into an interval."""
    if duration_unit is not None and duckdb_type == "INTERVAL":
        return f"to_microseconds(CAST({_quote(column)} AS BIGINT){_DURATION_TO_US[duration_unit]})"
    return f"CAST({_quote(column)} AS {duckdb_type})"


class FileSchemas:
    """The column names and types of Parquet files, read once per path from their footers.

    Data files are immutable (an object key is never rewritten), so a path's schema never
    changes. When every file of a table has the same schema, its view reads them without
    ``union_by_name``, which would bind every file's schema again on every query; files
    written before a schema change (a column added, a type widened) keep it.
    """

    def __init__(self, size: int = 65_536):
        self.size = size
        self._schemas: OrderedDict[str, tuple | None] = OrderedDict()
        self._shared: dict[tuple, tuple] = {}  # one copy of each distinct schema (many files share one)
        self._lock = threading.Lock()

    def _schema(self, path: str) -> tuple | None:
        with self._lock:
            if path in self._schemas:
                self._schemas.move_to_end(path)
                return self._schemas[path]
        try:
            schema = tuple((f.name, str(f.type)) for f in pq.read_schema(path))
        except (OSError, pa.ArrowException):  # unreadable here: let DuckDB bind (and report) it
            schema = None
        with self._lock:
            if schema is not None:
                schema = self._shared.setdefault(schema, schema)
            self._schemas[path] = schema
            while len(self._schemas) > self.size:
                self._schemas.popitem(last=False)
            if len(self._shared) > self.size:  # rare: many distinct schemas; start over
                self._shared.clear()
        return schema

    def columns(self, path: str) -> tuple | None:
        """``((name, Arrow type as text), ...)`` of a file (None: unreadable here)."""
        return self._schema(path)

    def uniform(self, paths: Sequence[str]) -> bool:
        """True when all ``paths`` have one and the same schema (known)."""
        first = None
        for i, path in enumerate(paths):
            schema = self._schema(path)
            if schema is None:
                return False
            if i == 0:
                first = schema
            elif schema != first:
                return False
        return True


class QueryEngine:
    def __init__(self, allowed_dirs: Sequence[str], threads: int = 0, memory_limit: str = "",
                 batch_rows: int = 65536, temp_dir: str = "", max_batch_bytes: int = BATCH_TARGET_BYTES,
                 hot_table_bytes: int = 0, hot_cache_bytes: int = 0):
        self.batch_rows = batch_rows
        self.max_batch_bytes = max_batch_bytes
        config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self._db = duckdb.connect(":memory:", config=config)
        dirs = [d if d.endswith("/") else d + "/" for d in allowed_dirs]
        if temp_dir:
            self._db.execute(f"SET temp_directory={_lit(temp_dir)}")
            dirs.append(temp_dir.rstrip("/") + "/")
        self._db.execute(f"SET allowed_directories=[{', '.join(_lit(d) for d in dirs)}]")
        self._db.execute("SET enable_external_access=false")
        # GLOBAL: a plain SET of these is the connection's own, and every request runs on a
        # cursor (a connection of its own), which would not see it.
        self._db.execute("SET GLOBAL TimeZone='UTC'")
        # Objects are immutable (a key is never rewritten), so Parquet footers can be cached.
        # (File blocks are left to the OS page cache: DuckDB's own block cache grows the RSS.)
        self._db.execute("SET GLOBAL parquet_metadata_cache=true")
        self._db.execute("SET lock_configuration=true")
        self._types_cache: dict[tuple[str, int], list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._active: dict[int, duckdb.DuckDBPyConnection] = {}
        self.system_tables: Any = None  # query.system.SystemTables: binds system.* per request
        self.time_travel: Callable[[Any], ResolvedTable] | None = None  # AtRef -> its view (resolve.py)
        self._cursors = CursorPool(self._db)
        # schema-only requests (prepares) bind file-less views: their own cursors, so they never
        # replace the file views a query cursor keeps (two view rebuilds per prepared query)
        self._schema_cursors = CursorPool(self._db, size=2)
        self.file_schemas = FileSchemas()
        self.direct = DirectRuns()  # shapes whose result needs no type mapping: one DuckDB step (direct.py)
        self.hot = HotTables(self._db, hot_table_bytes, hot_cache_bytes, self._file_select)
        self.plain_scans = PlainScans(self.file_schemas, self._plain_schema, lambda types: batch_rows_for(
            types, self.batch_rows, self.max_batch_bytes))

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._db.cursor()

    def duckdb_types(self, info: TableInfo) -> list[tuple[str, str]]:
        key = (info.table_id, info.schema_version)
        cached = self._types_cache.get(key)
        if cached is not None:
            return cached
        cur = self._db.cursor()
        try:
            empty = info.schema.empty_table()
            cur.register("__schema_probe", empty)
            rows = cur.execute("DESCRIBE SELECT * FROM __schema_probe").fetchall()
        finally:
            cur.close()
        out = [(r[0], r[1]) for r in rows]
        with self._lock:
            self._types_cache[key] = out
        return out

    def execute(
        self,
        statement: Statement | str,
        params: Sequence[Any] | None,
        resolve: Callable[[str, list | None], ResolvedTable | None],
        schema_only: bool = False,
    ) -> QueryResult:
        """Run one SELECT; ``resolve(name, constraint_sets)`` binds each table it reads.

        ``schema_only``: bind the statement but run nothing (an empty result of its schema)."""
        started = time.perf_counter()
        st = as_statement(statement)
        kind, sql = st.kind, st.bound_sql or st.sql  # bound: time-travel references read their views
        refuse(kind)
        pool = self._schema_cursors if schema_only else self._cursors
        cur, views = pool.take()
        resolved: list[ResolvedTable] = []
        state: dict[str, Any] = {"closed": False, "reuse": True, "reader": None, "fast": None}
        guard = threading.Lock()
        plain = kind == "SELECT" and not schema_only and not params and st.plain_scan is not None

        def close() -> None:
            if state["fast"] is not None:
                state["fast"][2]()  # stop Arrow's reader before its files are unpinned
            for r in resolved:
                r.release()
            resolved.clear()
            with guard:
                if state["closed"]:
                    return
                state["closed"] = True
                given, state["given"] = state.get("given"), True
            if not given:
                pool.give(cur, views, state["reader"], state["reuse"])

        def interrupt() -> None:
            with guard:  # never interrupt a cursor that went back to the pool
                if not state["closed"]:
                    state["reuse"] = False
                    if state["fast"] is not None:
                        state["fast"][1]()
                    else:
                        cur.interrupt()

        try:
            if kind == "SELECT":
                if st.analysis is None:
                    raise InvalidRequest(st.error or "invalid SQL")
                analysis = st.analysis
                for schema, name in analysis.qualified:
                    if schema == HOT_SCHEMA:  # the node's internal copies are not tables of the user
                        raise NotFound(f"table {schema}.{name!r} not found", detail={"table": name})
                wanted = set()
                for key, ref in analysis.tables.items():
                    sets = None if ref.unconstrained else bind_params(ref.constraint_sets, params)
                    rt = resolve(ref.name, sets)
                    if rt is None:
                        raise NotFound(f"table {ref.name!r} not found", detail={"table": ref.name})
                    resolved.append(rt)
                    hot = self.hot.acquire(rt)
                    if hot is not None:
                        rt.hot, release_hot, release_files = hot[0], hot[1], rt.release
                        rt.release = lambda f=release_files, h=release_hot: (f(), h())
                    if plain:  # Arrow's Parquet reader, when it gives exactly this (plain_scan.py)
                        state["fast"] = self.plain_scans.open(st, rt)
                        if state["fast"] is not None:
                            break
                    wanted.add(rt.name.lower())
                    pool.bind(cur, views, key, rt, self._bind, self.file_schemas.uniform)
                if state["fast"] is not None:  # the cursor runs nothing: it goes back as it was now
                    with guard:
                        state["given"] = True
                    pool.give(cur, views, None, True)
                    return self._result(state["fast"][0], kind, resolved, started, close, interrupt, plain_scan=True)
                for view, ref in analysis.at_refs.items():  # t AT (VERSION => n): committed files only
                    if self.time_travel is None:
                        raise InvalidRequest("time travel is not available on this node")
                    rt = self.time_travel(ref)
                    resolved.append(rt)
                    wanted.add(view)
                    pool.bind(cur, views, view, rt, self._bind)
                pool.forget(cur, views, keep=wanted)
                if analysis.qualified and self.system_tables is not None:
                    state["reuse"] = False  # per-request system bindings: not for the pool
                    sql = self.system_tables.bind(cur, sql, analysis)
            direct = DirectRuns.key(st, resolved, params) if kind == "SELECT" else None
            rows = None if schema_only else self.direct.get(direct)
            if rows is not None:  # types known, no mapping: parse, bind and run in one step
                reader = self.direct.run(cur, sql, params, rows)
            else:
                rel = cur.sql(sql, params=list(params) if params else None)
                if rel is None:
                    raise InvalidRequest("statement returns no result")
                unmapped = not client_types.needs_mapping(rel.types)
                rel, to_client = client_types.project(rel)  # types every client can take (client_types.py)
                rows = batch_rows_for(rel.types, self.batch_rows, self.max_batch_bytes)
                if unmapped:
                    self.direct.learn(direct, rows)
                if schema_only:  # the bound types, as DuckDB converts them to Arrow, without executing
                    rel = cur.sql("SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {_quote(c)}" for c, t in zip(
                        rel.columns, rel.types, strict=True)) + " WHERE false")
                reader = to_client(rel.to_arrow_reader(rows))
            state["reader"] = reader
        except BaseException:
            state["reuse"] = False
            close()
            raise
        return self._result(reader, kind, resolved, started, close, interrupt)

    @staticmethod
    def _result(reader: pa.RecordBatchReader, kind: str, resolved: list[ResolvedTable], started: float,
                close: Callable[[], None], interrupt: Callable[[], None], plain_scan: bool = False) -> QueryResult:
        stats = {
            "files_total": sum(r.files_total for r in resolved),
            "files_scanned": sum(r.files_scanned for r in resolved),
            "files_pruned": sum(r.files_total - r.files_scanned for r in resolved),
            "bytes_fetched": sum(r.bytes_fetched for r in resolved),
            "buffer_rows": sum(r.buffer.num_rows for r in resolved if r.buffer is not None),
            "plan_seconds": time.perf_counter() - started,
        }
        if plain_scan:
            stats["plain_scan"] = True
        return QueryResult(reader, kind, stats, close, interrupt=interrupt)

    def _plain_schema(self, st: Statement, rt: ResolvedTable) -> pa.Schema:
        """The normal path's result schema of ``st`` over ``rt``'s columns (no files, no buffer)."""
        empty = ResolvedTable(name=rt.name, columns=rt.columns, paths=[], file_columns=set(), buffer=None,
                              duration_units=rt.duration_units)
        result = self.execute(st, None, lambda name, sets: empty, schema_only=True)
        try:
            return result.schema
        finally:
            result.close()

    def _file_select(self, rt: ResolvedTable, files_var: str | None = None) -> str:
        """The table's committed files as one SELECT in its current column types (by name
        across files only when their schemas differ: :class:`FileSchemas`); ``files_var``: the
        file list is that cursor variable's (set here), see :meth:`CursorPool.bind`."""
        cols = ", ".join(
            f"{_file_cast(c, t, rt.duration_units.get(c.lower()))} AS {_quote(c)}" if c.lower() in rt.file_columns
            else f"CAST(NULL AS {t}) AS {_quote(c)}"
            for c, t in rt.columns
        )
        files = "[" + ", ".join(_lit(p) for p in rt.paths) + "]"
        if files_var is not None:
            return f"SELECT {cols} FROM read_parquet(getvariable({_lit(files_var)}))"
        union = ", union_by_name=true" if len(rt.paths) > 1 and not self.file_schemas.uniform(rt.paths) else ""
        return f"SELECT {cols} FROM read_parquet({files}{union})"

    def _bind(self, cur: duckdb.DuckDBPyConnection, name: str, rt: ResolvedTable, files_var: str | None = None) -> None:
        parts = []
        if rt.hot:
            parts.append(f"SELECT * FROM {rt.hot}")
        elif rt.paths:
            if files_var is not None:
                set_files(cur, files_var, rt.paths)
            parts.append(self._file_select(rt, files_var))
        if rt.buffer is not None and rt.buffer.num_rows:
            buf = f"__buf_{name}"
            cur.register(buf, rt.buffer)
            parts.append(f"SELECT * FROM {_quote(buf)}")
        if not parts:
            cols = ", ".join(f"CAST(NULL AS {t}) AS {_quote(c)}" for c, t in rt.columns)
            parts.append(f"SELECT {cols} WHERE false")
        body = " UNION ALL ".join(parts)
        cur.execute(f"CREATE OR REPLACE TEMP VIEW {_quote(rt.name)} AS {body}")

    def close(self) -> None:
        self.hot.close()
        self._cursors.close()
        self._schema_cursors.close()
        self._db.close()
