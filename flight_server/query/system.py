"""Read-only system tables, queryable with plain SQL: ``system.queries``, ``system.tables``,
``system.files``, ``system.nodes``, ``system.snapshots`` (the retained versions of every table).

DuckDB reserves the name ``system`` for its own catalog (``system.x`` resolves there, and a
schema named ``system`` would make every reference ambiguous), and ATTACH is refused by the
sandbox. So the request's statement is rewritten on DuckDB's own parse tree: each
``system.<name>`` base-table reference becomes ``__system_<name>``, an Arrow table
registered on the request's cursor only, and ``json_deserialize_sql`` prints the statement
back. Nothing is written to the shared database; the tables are built at query time.

``system.queries``: the node's ring of recent statements (:mod:`flight_server.querylog`).
When authentication is on, another principal's statements are shown with every literal
replaced by ``?`` (DuckDB's parser finds the literals), so no values leak between users.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from clients.errors import InvalidRequest, MinioDBError, NotFound

from .analyze import Analysis

log = logging.getLogger("miniodb.system")

PREFIX = "__system_"
HIDDEN_SQL = "<hidden>"
_TS = pa.timestamp("us", tz="UTC")

QUERIES_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("node_id", pa.string()), ("principal", pa.string()), ("started_at", _TS),
    ("kind", pa.string()), ("sql", pa.string()), ("status", pa.string()), ("cache_hit", pa.bool_()),
    ("files_total", pa.int64()), ("files_scanned", pa.int64()), ("files_pruned", pa.int64()),
    ("bytes_read", pa.int64()), ("buffer_rows", pa.int64()), ("params", pa.int64()),
    ("rows", pa.int64()), ("bytes", pa.int64()), ("execute_ms", pa.float64()), ("duration_ms", pa.float64()),
    ("error_code", pa.string()), ("nodes", pa.string()), ("missing_nodes", pa.string()),
    ("missing_rows", pa.int64()),
])
TABLES_SCHEMA = pa.schema([
    ("name", pa.string()), ("table_id", pa.string()), ("columns", pa.int64()), ("time_column", pa.string()),
    ("schema_version", pa.int64()), ("data_version", pa.int64()), ("files", pa.int64()), ("rows", pa.int64()),
    ("bytes", pa.int64()), ("buffered_rows", pa.int64()), ("created_at", _TS), ("schema", pa.string()),
])
FILES_SCHEMA = pa.schema([
    ("table_name", pa.string()), ("key", pa.string()), ("rows", pa.int64()), ("bytes", pa.int64()),
    ("node_id", pa.string()), ("created_at", _TS), ("columns", pa.int64()), ("min_values", pa.string()),
    ("max_values", pa.string()),
])
SNAPSHOTS_SCHEMA = pa.schema([
    ("table_name", pa.string()), ("version", pa.int64()), ("committed_at", _TS), ("operation", pa.string()),
    ("files", pa.int64()), ("rows", pa.int64()), ("added", pa.int64()), ("removed", pa.int64()),
])
NODES_SCHEMA = pa.schema([
    ("node_id", pa.string()), ("flight_uri", pa.string()), ("rest_uri", pa.string()),
    ("metrics_uri", pa.string()), ("version", pa.string()), ("started_at", _TS), ("is_self", pa.bool_()),
    ("state", pa.string()), ("last_heartbeat", _TS), ("role", pa.string()),
])


def _ts(epoch: float | None) -> dt.datetime | None:
    if not epoch:
        return None
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def mask_literals(cur: duckdb.DuckDBPyConnection, sql: str) -> str:
    """``sql`` with every literal replaced by ``?`` (DuckDB's parser); ``<hidden>`` if it cannot."""
    try:
        tree = orjson.loads(cur.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
        if tree.get("error"):
            return HIDDEN_SQL

        def walk(o: Any) -> Any:
            if isinstance(o, list):
                return [walk(x) for x in o]
            if not isinstance(o, dict):
                return o
            if o.get("class") == "CONSTANT":
                return {"class": "PARAMETER", "type": "VALUE_PARAMETER", "alias": o.get("alias", ""),
                        "query_location": o.get("query_location", 0), "identifier": "?"}
            return {k: walk(v) for k, v in o.items()}

        text = cur.execute("SELECT json_deserialize_sql(?::JSON)", [orjson.dumps(walk(tree)).decode()]).fetchall()
        return str(text[0][0]).replace("$?", "?")
    except (duckdb.Error, orjson.JSONDecodeError, IndexError, TypeError):
        return HIDDEN_SQL


class SystemTables:
    """Builds the system tables of one node and binds them into a request's cursor."""

    def __init__(self, node: Any, principal: Callable[[], str] = lambda: "", masked: bool = False):
        self.node = node
        self.principal = principal
        self.masked = masked  # auth on: other principals' SQL loses its literals
        self.builders: dict[str, Callable[[duckdb.DuckDBPyConnection], pa.Table]] = {
            "queries": self.queries, "tables": self.tables, "files": self.files, "nodes": self.nodes,
            "snapshots": self.snapshots}

    # -- binding -------------------------------------------------------------------------
    def bind(self, cur: duckdb.DuckDBPyConnection, sql: str, analysis: Analysis) -> str:
        """Register the system tables ``sql`` reads on ``cur``; the statement to run instead."""
        wanted = {name.lower() for schema, name in analysis.qualified if schema == "system"}
        if not wanted:
            return sql
        unknown = wanted - set(self.builders)
        if unknown:
            raise NotFound(f"system table {sorted(unknown)[0]!r} not found; system tables: "
                           f"{', '.join('system.' + n for n in sorted(self.builders))}")
        for name in sorted(wanted):
            cur.register(PREFIX + name, self.builders[name](cur))
        return self.rewrite(cur, sql)

    @staticmethod
    def rewrite(cur: duckdb.DuckDBPyConnection, sql: str) -> str:
        tree = orjson.loads(cur.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
        if tree.get("error"):
            raise InvalidRequest(tree.get("error_message") or "invalid SQL")

        def walk(o: Any) -> None:
            if isinstance(o, list):
                for x in o:
                    walk(x)
            elif isinstance(o, dict):
                if (o.get("type") == "BASE_TABLE" and str(o.get("schema_name", "")).lower() == "system"
                        and not o.get("catalog_name")):
                    name = PREFIX + str(o["table_name"]).lower()
                    o["table_name"], o["schema_name"] = name, ""
                    o["qualified_name"] = {"path": [name]}
                for v in o.values():
                    walk(v)

        walk(tree)
        rows = cur.execute("SELECT json_deserialize_sql(?::JSON)", [orjson.dumps(tree).decode()]).fetchall()
        return rows[0][0]

    # -- the tables ----------------------------------------------------------------------
    def queries(self, cur: duckdb.DuckDBPyConnection) -> pa.Table:
        me = self.principal()
        cols: dict[str, list] = {f.name: [] for f in QUERIES_SCHEMA}
        for r in self.node.querylog.records():
            sql = r.sql
            if self.masked and r.principal != me:
                sql = getattr(r, "_masked", None)
                if sql is None:
                    sql = mask_literals(cur, r.sql)
                    r._masked = sql
            values = {"query_id": r.query_id, "node_id": r.node_id, "principal": r.principal,
                      "started_at": _ts(r.started_at), "kind": r.kind, "sql": sql, "status": r.status,
                      "cache_hit": r.cache_hit, "files_total": r.files_total, "files_scanned": r.files_scanned,
                      "files_pruned": r.files_pruned, "bytes_read": r.bytes_read, "buffer_rows": r.buffer_rows,
                      "params": r.params, "rows": r.rows, "bytes": r.bytes, "execute_ms": r.execute_ms,
                      "duration_ms": r.duration_ms, "error_code": r.error_code or None,
                      "nodes": ",".join(r.nodes) or None, "missing_nodes": ",".join(r.missing_nodes) or None,
                      "missing_rows": r.missing_rows if r.missing_nodes else None}
            for k, v in values.items():
                cols[k].append(v)
        return pa.table(cols, schema=QUERIES_SCHEMA)

    def tables(self, cur: duckdb.DuckDBPyConnection) -> pa.Table:
        node = self.node
        cols: dict[str, list] = {f.name: [] for f in TABLES_SCHEMA}
        for info in node.catalog.list():
            try:
                m = node.catalog.manifest(info.name)
            except MinioDBError:
                m = None
            files = m.files if m is not None else ()
            buf = node.buffers.get(info.name)
            buffered = buf.rows if buf is not None and buf.table_id == info.table_id else 0
            values = {"name": info.name, "table_id": info.table_id, "columns": len(info.schema),
                      "time_column": info.time_column, "schema_version": info.schema_version,
                      "data_version": m.version if m is not None else None, "files": len(files),
                      "rows": sum(f.rows for f in files), "bytes": sum(f.size for f in files),
                      "buffered_rows": buffered, "created_at": _ts(info.created_at),
                      "schema": ", ".join(f"{f.name} {f.type}" for f in info.schema)}
            for k, v in values.items():
                cols[k].append(v)
        return pa.table(cols, schema=TABLES_SCHEMA)

    def files(self, cur: duckdb.DuckDBPyConnection) -> pa.Table:
        node = self.node
        cols: dict[str, list] = {f.name: [] for f in FILES_SCHEMA}
        for info in node.catalog.list():
            try:
                m = node.catalog.manifest(info.name)
            except MinioDBError:
                continue
            for f in (m.files if m is not None else ()):
                values = {"table_name": info.name, "key": f.key, "rows": f.rows, "bytes": f.size,
                          "node_id": f.node_id, "created_at": _ts(f.created_at),
                          "columns": len(f.columns) if f.columns else len(info.schema),
                          "min_values": orjson.dumps(dict(f.min_values), default=str).decode(),
                          "max_values": orjson.dumps(dict(f.max_values), default=str).decode()}
                for k, v in values.items():
                    cols[k].append(v)
        return pa.table(cols, schema=FILES_SCHEMA)

    def snapshots(self, cur: duckdb.DuckDBPyConnection) -> pa.Table:
        """Every retained version of every table (flight_server/snapshots.py)."""
        rows = self.node.history.snapshots()
        cols: dict[str, list] = {f.name: [r[f.name] for r in rows] for f in SNAPSHOTS_SCHEMA}
        cols["committed_at"] = [_ts(t) for t in cols["committed_at"]]
        return pa.table(cols, schema=SNAPSHOTS_SCHEMA)

    def nodes(self, cur: duckdb.DuckDBPyConnection) -> pa.Table:
        node = self.node
        try:
            live = list(node.metadata.live_nodes())
        except MinioDBError as exc:
            log.warning("system.nodes: registry unavailable: %s", exc.message)
            live = []
        if not any(n.node_id == node.node_id for n in live):
            live.append(node.node_info())
        cols: dict[str, list] = {f.name: [] for f in NODES_SCHEMA}
        for n in sorted(live, key=lambda n: n.node_id):
            values = {"node_id": n.node_id, "flight_uri": n.flight_uri, "rest_uri": n.rest_uri,
                      "metrics_uri": n.metrics_uri, "version": n.version, "started_at": _ts(n.started_at),
                      "is_self": n.node_id == node.node_id, "state": "live",
                      "last_heartbeat": _ts(n.last_seen) if n.last_seen else None,
                      "role": "self" if n.node_id == node.node_id else "peer"}
            for k, v in values.items():
                cols[k].append(v)
        return pa.table(cols, schema=NODES_SCHEMA)
