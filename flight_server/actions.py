"""A node's custom Flight actions (``flush``, ``status``, ``create_table``, ``restore_metadata`` ...)
and the JSON documents they answer: health, status and a table's description.

Times in these documents are ISO-8601 UTC strings (``2024-01-18T10:00:00.123456+00:00``);
durations stay seconds. The metadata store keeps its own epoch floats: this module only shapes
the output.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from clients import protocol
from clients.errors import InvalidRequest, MinioDBError, NotFound

from .dml_hooks import cluster_flush
from .metadata.base import TableConfig
from .schema import schema_from_json

if TYPE_CHECKING:
    from .node import Node

_TABLE_CONFIG_KEYS = {"buffer_size", "flush_interval_seconds", "retention_days", "properties"}


def iso_utc(epoch: float | None) -> str | None:
    """An epoch time in seconds as ISO-8601 UTC; None (or 0: never) stays None."""
    if not epoch:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def node_json(info: dict) -> dict:
    """A registered node (``NodeInfo.to_json()``) with its times as ISO-8601 UTC."""
    return {**info, "started_at": iso_utc(info.get("started_at")), "last_seen": iso_utc(info.get("last_seen"))}


class NodeActions:
    """Dispatches the custom actions of one node and builds its status documents."""

    def __init__(self, node: Node):
        self.node = node
        self._table = self._handlers()

    def __call__(self, name: str, body: dict) -> Any:
        handler = self._table.get(name)
        if handler is None:
            raise NotFound(f"action {name!r} is not available on this node")
        return handler(body)

    def _handlers(self) -> dict:
        n = self.node
        return {
            protocol.ACTION_HEALTH: lambda body: self.health(),
            protocol.ACTION_STATUS: lambda body: self.status(),
            protocol.ACTION_FLUSH: self._flush,
            protocol.ACTION_COMPACT: self._compact,
            protocol.ACTION_LIST_TABLES: self._list_tables,
            protocol.ACTION_DESCRIBE_TABLE: lambda body: self.describe(_required(body, "name")),
            protocol.ACTION_CREATE_TABLE: self._create_table,
            protocol.ACTION_DROP_TABLE: lambda body: {"dropped": n.ingestor.drop_table(
                _required(body, "name"), if_exists=bool(body.get("if_exists")))},
            protocol.ACTION_BACKUP_METADATA: lambda body: n.backups.backup(),
            protocol.ACTION_LIST_BACKUPS: lambda body: {"backups": n.backups.list(body.get("days"))},
            protocol.ACTION_RESTORE_METADATA: self._restore,
            protocol.ACTION_VACUUM: lambda body: n.vacuum.run(body.get("table") or None).to_json(),
            protocol.ACTION_RESTORE_TABLE: lambda body: n.history.restore(
                _required(body, "table"), _required(body, "version"), cluster_flush(n)),
        }

    # -- documents -------------------------------------------------------------------------
    def health(self) -> dict:
        n = self.node
        checks = {"flight": "ok" if n.flight is not None else "down"}
        for name, probe in (("metadata", n.metadata.check), ("storage", n.store.check)):
            checks[name] = _probe(probe)
        ok = all(v == "ok" for v in checks.values())
        return {"status": "ok" if ok else "degraded", "version": n.version, "node_id": n.node_id,
                "checks": checks, "draining": n.draining.is_set(), "wal_replayed": n.wal_replayed}

    def status(self) -> dict:
        n = self.node
        buffers = {}
        for name in n.buffers.names():
            buf = n.buffers.get(name)
            if buf is not None:
                buffers[name] = {"rows": buf.rows, "bytes": buf.nbytes, "spilled_bytes": buf.spilled_bytes,
                                 "flushing_rows": buf.flushing_rows}
        try:
            nodes = [node_json(i.to_json()) for i in n.metadata.live_nodes()]
        except MinioDBError as exc:
            nodes = [{"error": exc.message}]
        return {
            "node": {**node_json(n.node_info().to_json()), "uptime_seconds": time.time() - n.started_at},
            "buffers": buffers,
            "wal_bytes": n.wal.total_bytes,
            "wal_recycled_bytes": n.wal.free_bytes,
            "file_cache": n.file_cache.stats(),
            "hot_tables": n.engine.hot.stats(),
            "query_cache": n.result_cache.stats() if n.result_cache is not None else {"enabled": False},
            "flush_errors": dict(n.flusher.last_error),
            "wal_unreplayed_segments": dict(n.ingestor.unreplayed),  # tables the metadata store lost
            "checks": {"storage": _probe(n.store.check)},  # e.g. down: a bucket that disappeared
            "nodes": nodes,
            "storage": n.store.url if not n.store.url.startswith("s3") else n.store.url.split("@")[-1],
            "metadata": n.metadata.url.split("@")[-1],
        }

    def describe(self, name: str) -> dict:
        n = self.node
        info = n.catalog.get(name)
        stats = n.catalog.stats(name)
        buf = n.buffers.get(name)
        stats["buffered_rows"] = buf.rows if buf is not None and buf.table_id == info.table_id else 0
        stats["rows_total"] = stats["rows"] + stats["buffered_rows"]
        if info.time_column:
            t = info.schema.field(info.time_column).type
            for k in ("time_min", "time_max"):
                stats[k] = _temporal_iso(stats[k], t)
        defaults = {"buffer_size": n.settings.buffer.size,
                    "flush_interval_seconds": n.settings.buffer.flush_interval,
                    "retention_days": n.settings.tables.retention_days}
        cfg = info.config.to_json()
        effective = {k: (cfg[k] if cfg.get(k) is not None else v) for k, v in defaults.items()}
        return {
            "name": info.name,
            "table_id": info.table_id,
            "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in info.schema],
            "schema_ipc": protocol.dumps(info.schema.serialize().to_pybytes()).decode().strip('"'),
            "schema_version": info.schema_version,
            "time_column": info.time_column,
            "config": {**effective, "properties": dict(info.config.properties)},
            "stats": stats,
            "created_at": iso_utc(info.created_at),
        }

    # -- actions ---------------------------------------------------------------------------
    def _flush(self, body: dict) -> dict:
        results = self.node.flush(body.get("table"))
        return {"flushed": [r.__dict__ for r in results if r.rows],
                "rows": sum(r.rows for r in results), "files": sum(r.files for r in results)}

    def _compact(self, body: dict) -> dict:
        table = body.get("table")
        if table is not None and not isinstance(table, str):
            raise InvalidRequest("table must be a string")
        results = self.node.compactor.run(table or None)
        return {"results": [r.to_json() for r in results],
                "min_file_age_seconds": self.node.settings.compaction.min_file_age_seconds}

    def _list_tables(self, body: dict) -> dict:
        tables = self.node.catalog.list(body.get("pattern"))
        return {"tables": [{"name": t.name, "columns": len(t.schema), "time_column": t.time_column}
                           for t in tables]}

    def _create_table(self, body: dict) -> dict:
        name = _required(body, "name")
        schema = schema_from_json(body.get("schema"))
        cfg = body.get("config") or {}
        if not isinstance(cfg, dict):
            raise InvalidRequest("config must be an object")
        unknown = set(cfg) - _TABLE_CONFIG_KEYS
        if unknown:
            raise InvalidRequest(f"unknown table config keys: {', '.join(sorted(unknown))}")
        config = TableConfig.from_json(cfg)
        info = self.node.ingestor.create_table(name, schema, config, if_not_exists=bool(body.get("if_not_exists")))
        return self.describe(info.name)

    def _restore(self, body: dict) -> dict:
        for flag in ("from_latest", "dry_run"):
            if not isinstance(body.get(flag, False), bool):
                raise InvalidRequest(f"{flag} must be true or false")
        return self.node.backups.restore(from_latest=body.get("from_latest", False),
                                         backup_file=body.get("backup_file"), dry_run=body.get("dry_run", False),
                                         on_restored=self._after_restore)

    def _after_restore(self) -> None:
        """Cached manifests and the live-table map must follow the restored metadata."""
        n = self.node
        n.catalog.invalidate_all()
        n.ingestor.reload_tables()
        if n.result_cache is not None:
            n.result_cache.clear()  # not needed for exactness (versions only move forward): memory


def _required(body: dict, key: str) -> Any:
    value = body.get(key)
    if value in (None, ""):
        raise InvalidRequest(f"missing {key!r}")
    return value


def _temporal_iso(raw: Any, t: pa.DataType) -> Any:
    if raw is None:
        return None
    try:
        if pa.types.is_timestamp(t):
            return pa.scalar(raw, pa.int64()).cast(t).as_py().isoformat()
        if pa.types.is_date32(t):
            return (dt.date(1970, 1, 1) + dt.timedelta(days=raw)).isoformat()
    except (ValueError, OverflowError, pa.ArrowInvalid):
        return raw
    return raw


def _probe(check) -> str:
    """``ok`` or ``down: <reason>`` (reported, never raised)."""
    try:
        check()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"down: {getattr(exc, 'message', None) or type(exc).__name__}"
