"""The DuckDB engine: one shared database, one sandboxed cursor per request, Arrow streams out.

For each request the engine classifies the statement with DuckDB's parser, finds the tables
it reads (``json_serialize_sql``), asks the resolver for each table's committed Parquet
files (pruned) and this node's buffer, binds them as temporary views on the request's own
cursor and streams the result with DuckDB's Arrow record batch reader.

The database is locked down before any user SQL runs: no file system access outside the
object/cache folders, no extension install or load, configuration locked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from clients.errors import InvalidRequest, NotFound, Unimplemented

from ..metadata.base import TableInfo
from .analyze import Analysis, analyze

log = logging.getLogger("miniodb.query")

# DuckDB statement types that never reach the engine from user SQL, with the reason given.
REFUSED = {
    "COPY": "COPY is not allowed: the node does not read or write files for clients; "
            "stream the result (miniodb sql --format csv|parquet --output FILE)",
    "EXPORT": "EXPORT DATABASE is not allowed: the node does not write files for clients",
    "ATTACH": "ATTACH is not allowed: queries read only MinIODB tables",
    "DETACH": "DETACH is not allowed",
    "SET": "SET is not allowed: engine settings are fixed by the server configuration",
    "VARIABLE_SET": "SET VARIABLE is not allowed",
    "LOAD": "INSTALL/LOAD is not allowed: extensions cannot be installed or loaded",
    "EXTENSION": "extensions cannot be installed or loaded",
    "PRAGMA": "PRAGMA is not allowed: engine settings are fixed by the server configuration",
    "TRANSACTION": "transactions are not supported: each statement is atomic on its own",
    "VACUUM": "VACUUM is not allowed",
    "CALL": "CALL is not allowed",
    "ALTER": "ALTER is not supported; tables evolve on ingest (new nullable columns, int->float)",
    "PREPARE": "PREPARE is not supported in SQL text; use Flight SQL prepared statements",
    "EXECUTE": "EXECUTE is not supported in SQL text; use Flight SQL prepared statements",
}
QUERY_KINDS = {"SELECT", "EXPLAIN"}


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


@dataclass
class QueryResult:
    reader: pa.RecordBatchReader
    kind: str
    stats: dict[str, Any] = field(default_factory=dict)
    _close: Callable[[], None] = lambda: None

    @property
    def schema(self) -> pa.Schema:
        return self.reader.schema

    def close(self) -> None:
        self._close()


def classify(sql: str) -> tuple[str, duckdb.Statement]:
    """Statement kind from DuckDB's parser; exactly one statement is accepted."""
    if not sql or not sql.strip():
        raise InvalidRequest("empty SQL statement")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidRequest(str(exc).strip()) from exc
    if len(statements) != 1:
        raise InvalidRequest(f"expected exactly one SQL statement, got {len(statements)}")
    st = statements[0]
    return st.type.name, st


def refuse(kind: str) -> None:
    if kind in REFUSED:
        raise InvalidRequest(REFUSED[kind])
    if kind in ("DELETE", "UPDATE"):
        raise Unimplemented(
            f"{kind} is not supported yet; supported are SELECT, CREATE TABLE, DROP TABLE and INSERT"
        )
    if kind not in QUERY_KINDS:
        raise InvalidRequest(f"{kind} statements are not supported here")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


class QueryEngine:
    def __init__(self, allowed_dirs: Sequence[str], threads: int = 0, memory_limit: str = "",
                 batch_rows: int = 65536, temp_dir: str = ""):
        self.batch_rows = batch_rows
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
        self._db.execute("SET TimeZone='UTC'")
        self._db.execute("SET lock_configuration=true")
        self._types_cache: dict[tuple[str, int], list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._active: dict[int, duckdb.DuckDBPyConnection] = {}

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

    def analyze(self, cur: duckdb.DuckDBPyConnection, sql: str) -> Analysis:
        text = cur.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
        tree = orjson.loads(text)
        if tree.get("error"):
            raise InvalidRequest(tree.get("error_message") or "invalid SQL")
        return analyze(tree)

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | None,
        resolve: Callable[[str, list | None], ResolvedTable | None],
        kind: str | None = None,
    ) -> QueryResult:
        """Run one SELECT; ``resolve(name, constraint_sets)`` binds each table it reads."""
        started = time.perf_counter()
        if kind is None:
            kind, _ = classify(sql)
        refuse(kind)
        cur = self._db.cursor()
        resolved: list[ResolvedTable] = []

        def close() -> None:
            for r in resolved:
                r.release()
            resolved.clear()
            try:
                cur.close()
            except duckdb.Error:
                pass

        try:
            if kind == "SELECT":
                analysis = self.analyze(cur, sql)
                for key, ref in analysis.tables.items():
                    sets = None if ref.unconstrained else ref.constraint_sets
                    rt = resolve(ref.name, sets)
                    if rt is None:
                        raise NotFound(f"table {ref.name!r} not found", detail={"table": ref.name})
                    resolved.append(rt)
                    self._bind(cur, key, rt)
            rel = cur.sql(sql, params=list(params) if params else None)
            if rel is None:
                raise InvalidRequest("statement returns no result")
            reader = rel.to_arrow_reader(self.batch_rows)
        except BaseException:
            close()
            raise
        stats = {
            "files_total": sum(r.files_total for r in resolved),
            "files_scanned": sum(r.files_scanned for r in resolved),
            "files_pruned": sum(r.files_total - r.files_scanned for r in resolved),
            "bytes_fetched": sum(r.bytes_fetched for r in resolved),
            "buffer_rows": sum(r.buffer.num_rows for r in resolved if r.buffer is not None),
            "plan_seconds": time.perf_counter() - started,
        }
        return QueryResult(reader, kind, stats, close)

    def _bind(self, cur: duckdb.DuckDBPyConnection, name: str, rt: ResolvedTable) -> None:
        parts = []
        if rt.paths:
            cols = ", ".join(
                f"CAST({_quote(c)} AS {t}) AS {_quote(c)}" if c.lower() in rt.file_columns
                else f"CAST(NULL AS {t}) AS {_quote(c)}"
                for c, t in rt.columns
            )
            files = ", ".join(_lit(p) for p in rt.paths)
            parts.append(f"SELECT {cols} FROM read_parquet([{files}], union_by_name=true)")
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
        self._db.close()
